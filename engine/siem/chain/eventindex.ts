/**
 * The event index: event_id → (manifest seq, leaf index), so GET /v1/proof
 * finds an event in one lookup however many batches the chain holds. It is a
 * cache of what the WORM store already says: written by the sealer after each
 * manifest is durable (in the background, in slices: the daemon keeps
 * serving), idempotent (a batch indexed twice changes nothing),
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
  /** Where the event probably is (an answer must be checked against the batch: hashes may collide). */
  find(eventId: string): EventLocation | undefined;
  /** True when every sealed batch is indexed or in `lagging()`: a miss then means "not sealed" unless a lagging batch holds it. */
  readonly complete: boolean;
  /** Sealed batches whose events are still being written to the index. */
  lagging(): readonly number[];
}

/** Rows per INSERT statement, and per transaction: a big batch is indexed in slices so the event loop keeps turning. */
const ROWS = 256;
const SLICE = 32 * ROWS;
/** loc = seq · 2^24 + leaf: up to 16.7 M events a batch, 2^29 batches, within a safe integer. */
const LEAF_BITS = 2 ** 24;

/**
 * 64-bit hash of an event id (two 32-bit FNV-1a/Murmur-style lanes), the
 * table's INTEGER PRIMARY KEY. Hand-written because it runs once per sealed
 * event: an integer key is several times cheaper to insert than the id as
 * TEXT, and node:crypto costs ~1 µs a call in binding overhead alone. A
 * collision only makes one lookup fall back to the search (answers are
 * checked against the batch line).
 */
function hashLanes(id: string): [number, number] {
  let a = 0x811c9dc5 | 0;
  let b = 0x9747b28c | 0;
  for (let k = 0; k < id.length; k++) {
    const c = id.charCodeAt(k);
    a = Math.imul(a ^ c, 16777619);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  b = Math.imul(b ^ (b >>> 13), 0x85ebca6b);
  return [a | 0, (b ^ (b >>> 16)) >>> 0];
}

export function eventKey(id: string): bigint {
  const [hi, lo] = hashLanes(id);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export class EventIndex implements EventLocator {
  private db: Database.Database;
  private insertMany: Database.Statement;
  private insertOne: Database.Statement;
  private insertBatch: Database.Statement;
  private selectEvent: Database.Statement;
  /** Set once catchUp has indexed every manifest up to the tip it was given, and cleared if a write fails. */
  private caughtUp = false;
  private failed = false;
  /** Batches queued or being indexed, oldest first, and the promise of the queue's end. */
  private queued: number[] = [];
  private queue: Promise<void> = Promise.resolve();
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
    this.insertMany = db.prepare(`INSERT OR IGNORE INTO events (h, loc) VALUES ${Array(ROWS).fill("(?,?)").join(",")}`);
    this.insertOne = db.prepare("INSERT OR IGNORE INTO events (h, loc) VALUES (?, ?)");
    this.insertBatch = db.prepare("INSERT OR IGNORE INTO batches (seq, count) VALUES (?, ?)");
    this.selectEvent = db.prepare("SELECT loc FROM events WHERE h = ?");
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
      db.pragma("cache_size = -32768");
      db.exec(`
        CREATE TABLE IF NOT EXISTS events (h INTEGER PRIMARY KEY, loc INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, count INTEGER NOT NULL);
      `);
      db.prepare("SELECT seq FROM batches ORDER BY seq DESC LIMIT 1").get();
      db.prepare("SELECT loc FROM events LIMIT 1").get();
      return db;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  get complete(): boolean {
    return this.caughtUp && !this.failed;
  }

  lagging(): readonly number[] {
    return this.queued;
  }

  /**
   * Queues sealed batch `seq` (its event ids in leaf order; an empty batch
   * too, so catchUp knows it is done). Indexed in order, in slices, after the
   * caller's seal: lookups meanwhile search the lagging batches.
   */
  add(seq: number, eventIds: readonly string[]): Promise<void> {
    this.queued.push(seq);
    const run = this.queue.then(async () => {
      try {
        await this.write(seq, eventIds);
      } catch (e) {
        this.failed = true;
        this.onError?.(new Error(`event index: batch ${seq} not indexed (${(e as Error).message}); proof lookups search the batches until it is rebuilt`));
      } finally {
        this.queued.splice(this.queued.indexOf(seq), 1);
      }
    });
    this.queue = run;
    return run;
  }

  /** Resolves when every queued batch is indexed. */
  drained(): Promise<void> {
    return this.queue;
  }

  private async write(seq: number, ids: readonly string[]): Promise<void> {
    const n = ids.length;
    const hi = new Int32Array(n);
    const lo = new Uint32Array(n);
    for (let i = 0; i < n; i++) [hi[i], lo[i]] = hashLanes(ids[i]!);
    // Keys in ascending order touch each b-tree page once: a batch inserted sorted costs a fraction of leaf order.
    let order: Uint32Array;
    if (n < LEAF_BITS) {
      // Sorted as (top 40 bits of the key, leaf) packed in one 64-bit word: a native typed-array sort, no comparator calls.
      const packed = new BigInt64Array(n);
      for (let i = 0; i < n; i++) packed[i] = (BigInt(hi[i]!) << 32n) | (BigInt(lo[i]! >>> 24) << 24n) | BigInt(i);
      packed.sort();
      order = new Uint32Array(n);
      for (let k = 0; k < n; k++) order[k] = Number(packed[k]! & 0xffffffn);
    } else order = Uint32Array.from({ length: n }, (_, i) => i);
    const params: (bigint | number)[] = new Array(2 * ROWS);
    const key = (i: number) => (BigInt(hi[i]!) << 32n) | BigInt(lo[i]!);
    const slice = this.db.transaction((from: number, to: number, last: boolean) => {
      let k = from;
      for (; k + ROWS <= to; k += ROWS) {
        for (let r = 0; r < ROWS; r++) {
          const i = order[k + r]!;
          params[2 * r] = key(i);
          params[2 * r + 1] = seq * LEAF_BITS + i;
        }
        this.insertMany.run(params);
      }
      for (; k < to; k++) this.insertOne.run(key(order[k]!), seq * LEAF_BITS + order[k]!);
      if (last) this.insertBatch.run(seq, n);
    });
    // A damaged line of a rebuilt batch has id "": its row matches no real lookup, and answers are checked anyway.
    let from = 0;
    do {
      const to = Math.min(n, from + SLICE);
      slice(from, to, to === n);
      from = to;
      if (from < n) await new Promise((r) => setImmediate(r));
    } while (from < n);
  }

  find(eventId: string): EventLocation | undefined {
    try {
      const row = this.selectEvent.get(eventKey(eventId)) as { loc: number } | undefined;
      return row ? { seq: Math.floor(row.loc / LEAF_BITS), leaf: row.loc % LEAF_BITS } : undefined;
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
   * the WORM store, in the background of the daemon (each batch in slices).
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
        await this.write(seq, ids);
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
