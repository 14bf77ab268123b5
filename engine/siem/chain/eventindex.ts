/**
 * The event index: event_id → (manifest seq, leaf index), so GET /v1/proof
 * finds an event in one lookup however many batches the chain holds. It is a
 * cache of what the WORM store already says: written by the sealer after each
 * manifest is durable, idempotent (a batch indexed twice changes nothing),
 * and rebuilt from the WORM store when missing or unreadable. A lookup's
 * answer is always checked against the batch file, so a stale or wrong index
 * can make a lookup slower, never wrong.
 */
import Database from "better-sqlite3";
import { mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { MANIFEST_FILE } from "./format.js";
import { parseManifest } from "./verify.js";
import type { WormStore } from "./worm.js";

export interface EventLocation {
  seq: number;
  leaf: number;
}

/** What proof lookups need from an index. */
export interface EventLocator {
  find(eventId: string): EventLocation | undefined;
  /** True when every sealed batch is indexed: a miss then means "not sealed", no search needed. */
  readonly complete: boolean;
}

export class EventIndex implements EventLocator {
  private db: Database.Database;
  private insertEvent!: Database.Statement;
  private insertBatch!: Database.Statement;
  private selectEvent!: Database.Statement;
  private addTx!: (seq: number, ids: readonly string[]) => void;
  /** Set once catchUp has indexed every manifest up to the tip it was given, and cleared if a write fails. */
  private caughtUp = false;
  private failed = false;
  /** Whether open() found no usable index and started an empty one. */
  readonly created: boolean;

  private constructor(
    readonly file: string,
    private readonly onError?: (err: unknown) => void,
  ) {
    mkdirSync(dirname(file), { recursive: true });
    let created = false;
    let db: Database.Database;
    try {
      db = EventIndex.connect(file);
      created = (db.prepare("SELECT count(*) AS n FROM batches").get() as { n: number }).n === 0;
    } catch (e) {
      // Unreadable (truncated, not a database, corrupt): it is only a cache, start over from WORM.
      onError?.(new Error(`event index ${file} is unreadable (${(e as Error).message}); rebuilding it from the WORM store`));
      for (const suffix of ["", "-wal", "-shm"]) rmSync(file + suffix, { force: true });
      db = EventIndex.connect(file);
      created = true;
    }
    this.db = db;
    this.created = created;
    this.prepare();
  }

  static open(file: string, onError?: (err: unknown) => void): EventIndex {
    return new EventIndex(file, onError);
  }

  private static connect(file: string): Database.Database {
    const db = new Database(file);
    try {
      db.pragma("journal_mode = WAL");
      // NORMAL in WAL: a power loss may drop the newest transactions, never corrupt; catchUp re-indexes what is missing.
      db.pragma("synchronous = NORMAL");
      db.exec(`
        CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, leaf INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, count INTEGER NOT NULL);
      `);
      db.prepare("SELECT seq FROM batches ORDER BY seq DESC LIMIT 1").get();
      db.prepare("SELECT seq, leaf FROM events LIMIT 1").get();
      return db;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  private prepare(): void {
    // A repeated event_id keeps its first (oldest) location: INSERT OR IGNORE also makes a replay a no-op.
    this.insertEvent = this.db.prepare("INSERT OR IGNORE INTO events (event_id, seq, leaf) VALUES (?, ?, ?)");
    this.insertBatch = this.db.prepare("INSERT OR IGNORE INTO batches (seq, count) VALUES (?, ?)");
    this.selectEvent = this.db.prepare("SELECT seq, leaf FROM events WHERE event_id = ?");
    this.addTx = this.db.transaction((seq: number, ids: readonly string[]) => {
      for (let i = 0; i < ids.length; i++) if (ids[i]) this.insertEvent.run(ids[i], seq, i);
      this.insertBatch.run(seq, ids.length);
    });
  }

  get complete(): boolean {
    return this.caughtUp && !this.failed;
  }

  /** Records the events of sealed batch `seq` in leaf order (an empty batch too, so catchUp knows it is done). */
  add(seq: number, eventIds: readonly string[]): void {
    try {
      this.addTx(seq, eventIds);
    } catch (e) {
      this.failed = true;
      this.onError?.(new Error(`event index: batch ${seq} not indexed (${(e as Error).message}); proof lookups search the batches until it is rebuilt`));
    }
  }

  find(eventId: string): EventLocation | undefined {
    try {
      return this.selectEvent.get(eventId) as EventLocation | undefined;
    } catch (e) {
      this.failed = true;
      this.onError?.(new Error(`event index lookup failed (${(e as Error).message}); searching the batches`));
      return undefined;
    }
  }

  /** Sequence numbers of indexed batches in [from, to]. */
  private indexedBetween(from: number, to: number): Set<number> {
    const rows = this.db.prepare("SELECT seq FROM batches WHERE seq BETWEEN ? AND ?").pluck().all(from, to) as number[];
    return new Set(rows);
  }

  /**
   * Indexes every manifest 0..tipSeq the index does not have yet, reading
   * the WORM store; yields to the event loop between batches so the daemon
   * keeps serving while a large chain is rebuilt.
   */
  async catchUp(worm: WormStore, tipSeq: number, stop: { stopped: boolean } = { stopped: false }): Promise<number> {
    let added = 0;
    const names = (await worm.list("manifests/")).filter((n) => MANIFEST_FILE.test(n));
    const STEP = 4096;
    for (let from = 0; from <= tipSeq; from += STEP) {
      const to = Math.min(tipSeq, from + STEP - 1);
      const have = this.indexedBetween(from, to);
      for (let seq = from; seq <= to; seq++) {
        if (stop.stopped) return added;
        if (have.has(seq)) continue;
        const name = names[seq];
        const bytes = name ? await worm.get(name) : undefined;
        const m = bytes ? parseManifest(bytes) : "missing";
        if (typeof m === "string") {
          this.failed = true;
          throw new Error(`event index: manifest ${seq}: ${m}`);
        }
        let ids: string[] = [];
        if (m.batch) {
          const content = await worm.get(m.batch);
          // Expired by retention (or lost): nothing to find there; a lookup falls back to the search.
          if (content) ids = eventIdsOf(content);
        }
        this.add(seq, ids);
        added++;
        await new Promise((r) => setImmediate(r));
      }
    }
    if (!this.failed) this.caughtUp = true;
    return added;
  }

  /** Counts for status and tests. */
  stats(): { events: number; batches: number } {
    return {
      events: (this.db.prepare("SELECT count(*) FROM events").pluck().get() as number) ?? 0,
      batches: (this.db.prepare("SELECT count(*) FROM batches").pluck().get() as number) ?? 0,
    };
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** The event_id of each line of a batch file, in leaf order (a line without one gets "" so leaf numbers stay right). */
export function eventIdsOf(content: Buffer): string[] {
  const ids: string[] = [];
  let at = 0;
  while (at < content.length) {
    let lf = content.indexOf(0x0a, at);
    if (lf < 0) lf = content.length;
    let id = "";
    try {
      const v = JSON.parse(content.toString("utf8", at, lf)) as { event_id?: unknown };
      if (typeof v.event_id === "string") id = v.event_id;
    } catch {
      // A damaged line: verify-logs reports it; the index just has no entry for it.
    }
    ids.push(id);
    at = lf + 1;
  }
  return ids;
}
