import Database from "better-sqlite3";
import { mkdirSync, statfsSync } from "node:fs";
import { dirname } from "node:path";
import type { Journal, JournalRecord, NormalizedEvent } from "./contract.js";

export interface JournalOptions {
  /** Appends arriving within this many ms share one transaction (one fsync). Default 2. */
  groupMs?: number;
  /** A group is committed at once when it reaches this many events. Default 20,000. */
  maxGroup?: number;
  /**
   * Back-pressure: the journal reports full when this many records lie between
   * the slowest consumer and the head. Default 2,000,000.
   */
  highWater?: number;
  /** Back-pressure: full when the journal's filesystem has less than this free. Default 64 MiB. */
  minFreeBytes?: number;
  /** Consumers known before they first read: nothing they have not passed is compacted. */
  consumers?: readonly string[];
}

export interface JournalStats {
  lastSeq: number;
  /** Lowest cursor over every registered consumer (what compaction may delete up to). */
  minCursor: number;
  backlog: number;
  cursors: Record<string, number>;
  full: boolean;
  appendedGroups: number;
  appendedEvents: number;
}

/**
 * The record's event as the journal holds it (JSON text), attached to records
 * that `read` returns: a sink that stores JSON (the embedded store) takes it
 * instead of serializing the event again. A symbol, so it is invisible to
 * JSON.stringify and to consumers that do not ask for it.
 */
export const RAW_JSON: unique symbol = Symbol("viw.journal.rawJson");

/** The raw JSON text of a record read from a LocalJournal, if it has it. */
export function rawJson(record: JournalRecord): string | undefined {
  return (record as JournalRecord & { [RAW_JSON]?: string })[RAW_JSON];
}

interface Pending {
  items: readonly { index: string; event: NormalizedEvent }[];
  resolve: (r: { first: number; last: number }) => void;
  reject: (e: Error) => void;
}

/**
 * The durable, ordered log between ingest and its consumers, on SQLite: WAL
 * with synchronous=FULL makes every commit fsynced and atomic, so a kill -9 or
 * power loss keeps exactly the committed groups. Appends are grouped: every
 * append arriving within `groupMs` joins one transaction, and each resolves
 * only after that transaction committed — the moment a sender may be acked.
 * Sequence numbers are assigned here (not SQLite rowids) and the last one is
 * kept in `meta`, so they are never reused even after compaction empties the
 * table.
 */
export class LocalJournal implements Journal {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly groupMs: number;
  private readonly maxGroup: number;
  private readonly highWater: number;
  private readonly minFreeBytes: number;
  private pending: Pending[] = [];
  private pendingCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private last: number;
  private readonly listeners = new Set<(last: number) => void>();
  private closed = false;
  private diskCheckedAt = 0;
  private diskFull = false;
  private groups = 0;
  private events = 0;
  private readonly stmt: {
    insert: Database.Statement;
    setLast: Database.Statement;
    read: Database.Statement;
    getCursor: Database.Statement;
    setCursor: Database.Statement;
    register: Database.Statement;
    cursors: Database.Statement;
    minCursor: Database.Statement;
    deleteUpTo: Database.Statement;
    drop: Database.Statement;
  };
  private readonly writeGroup: (groups: Pending[], first: number) => number;

  constructor(file: string, opts: JournalOptions = {}) {
    this.file = file;
    this.groupMs = opts.groupMs ?? 2;
    this.maxGroup = opts.maxGroup ?? 20_000;
    this.highWater = opts.highWater ?? 2_000_000;
    this.minFreeBytes = opts.minFreeBytes ?? 64 * 1024 * 1024;
    mkdirSync(dirname(file), { recursive: true });
    const db = new Database(file);
    this.db = db;
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("cache_size = -32768");
    db.exec(`
      CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, idx TEXT NOT NULL, event TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    const metaLast = (db.prepare("SELECT value FROM meta WHERE key = 'last_seq'").get() as { value: number } | undefined)?.value ?? 0;
    const maxRow = (db.prepare("SELECT MAX(seq) AS m FROM records").get() as { m: number | null }).m ?? 0;
    this.last = Math.max(metaLast, maxRow);
    this.stmt = {
      insert: db.prepare("INSERT INTO records (seq, idx, event) VALUES (?, ?, ?)"),
      setLast: db.prepare("INSERT INTO meta (key, value) VALUES ('last_seq', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
      read: db.prepare("SELECT seq, idx, event FROM records WHERE seq > ? ORDER BY seq LIMIT ?"),
      getCursor: db.prepare("SELECT seq FROM cursors WHERE consumer = ?"),
      setCursor: db.prepare("INSERT INTO cursors (consumer, seq) VALUES (?, ?) ON CONFLICT(consumer) DO UPDATE SET seq = excluded.seq"),
      register: db.prepare("INSERT OR IGNORE INTO cursors (consumer, seq) VALUES (?, ?)"),
      cursors: db.prepare("SELECT consumer, seq FROM cursors"),
      minCursor: db.prepare("SELECT MIN(seq) AS m FROM cursors"),
      deleteUpTo: db.prepare("DELETE FROM records WHERE seq <= ?"),
      drop: db.prepare("DELETE FROM cursors WHERE consumer = ?"),
    };
    this.writeGroup = db.transaction((groups: Pending[], first: number) => {
      let seq = first;
      for (const g of groups) {
        for (const { index, event } of g.items) this.stmt.insert.run(seq++, index, JSON.stringify(event));
      }
      this.stmt.setLast.run(seq - 1);
      return seq - 1;
    });
    for (const c of opts.consumers ?? []) this.register(c);
  }

  append(events: readonly { index: string; event: NormalizedEvent }[]): Promise<{ first: number; last: number }> {
    if (this.closed) return Promise.reject(new Error("journal is closed"));
    if (events.length === 0) return Promise.resolve({ first: this.last + 1, last: this.last });
    return new Promise((resolve, reject) => {
      this.pending.push({ items: events, resolve, reject });
      this.pendingCount += events.length;
      if (this.pendingCount >= this.maxGroup) {
        if (!this.immediate) this.immediate = setImmediate(() => this.flush());
      } else if (!this.timer && !this.immediate) {
        this.timer = setTimeout(() => this.flush(), this.groupMs);
      }
    });
  }

  /** Commits everything pending as one transaction; synchronous (better-sqlite3), so no interleaving. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    const groups = this.pending;
    if (groups.length === 0) return;
    this.pending = [];
    this.pendingCount = 0;
    const first = this.last + 1;
    let last: number;
    try {
      last = this.writeGroup(groups, first);
    } catch (err) {
      for (const g of groups) g.reject(err as Error);
      return;
    }
    this.last = last;
    this.groups++;
    let seq = first;
    for (const g of groups) {
      g.resolve({ first: seq, last: seq + g.items.length - 1 });
      seq += g.items.length;
      this.events += g.items.length;
    }
    for (const l of this.listeners) {
      try {
        l(last);
      } catch {
        // a listener's failure is its own; the append is durable regardless
      }
    }
  }

  read(after: number, limit: number): JournalRecord[] {
    const rows = this.stmt.read.all(after, limit) as { seq: number; idx: string; event: string }[];
    return rows.map((r) => ({ seq: r.seq, index: r.idx, event: JSON.parse(r.event) as NormalizedEvent, [RAW_JSON]: r.event }));
  }

  lastSeq(): number {
    return this.last;
  }

  cursor(consumer: string): number {
    const row = this.stmt.getCursor.get(consumer) as { seq: number } | undefined;
    if (row) return row.seq;
    this.register(consumer);
    return (this.stmt.getCursor.get(consumer) as { seq: number }).seq;
  }

  commitCursor(consumer: string, seq: number): void {
    if (seq > this.last) throw new Error(`cursor ${consumer}: seq ${seq} is past the journal's head ${this.last}`);
    this.stmt.setCursor.run(consumer, seq);
  }

  /**
   * Makes a consumer known so compaction keeps what it has not read. A new
   * consumer starts before the oldest record still held.
   */
  register(consumer: string): void {
    const oldest = (this.db.prepare("SELECT MIN(seq) AS m FROM records").get() as { m: number | null }).m;
    this.stmt.register.run(consumer, oldest === null ? this.last : oldest - 1);
  }

  /** Forgets a consumer that was removed for good (its cursor no longer holds records back). */
  dropConsumer(consumer: string): void {
    this.stmt.drop.run(consumer);
  }

  onAppend(listener: (last: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private minCursor(): number {
    const m = (this.stmt.minCursor.get() as { m: number | null }).m;
    return m ?? 0;
  }

  /** Deletes the records every registered consumer has passed; none when no consumer is registered. */
  compact(): number {
    const m = (this.stmt.minCursor.get() as { m: number | null }).m;
    if (m === null || m <= 0) return 0;
    return this.stmt.deleteUpTo.run(m).changes;
  }

  /**
   * Whether ingest must push back: the slowest consumer is more than
   * `highWater` records behind, or the disk is nearly full (checked at most
   * once a second: statfs is a syscall).
   */
  isFull(): boolean {
    const now = Date.now();
    if (now - this.diskCheckedAt > 1000) {
      this.diskCheckedAt = now;
      try {
        const s = statfsSync(dirname(this.file));
        this.diskFull = s.bavail * s.bsize < this.minFreeBytes;
      } catch {
        this.diskFull = false;
      }
    }
    return this.diskFull || this.last + this.pendingCount - this.minCursor() > this.highWater;
  }

  stats(): JournalStats {
    const cursors: Record<string, number> = {};
    for (const r of this.stmt.cursors.all() as { consumer: string; seq: number }[]) cursors[r.consumer] = r.seq;
    const minCursor = this.minCursor();
    return {
      lastSeq: this.last,
      minCursor,
      backlog: this.last - minCursor,
      cursors,
      full: this.isFull(),
      appendedGroups: this.groups,
      appendedEvents: this.events,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.listeners.clear();
    this.db.close();
  }
}

export function openJournal(file: string, opts?: JournalOptions): LocalJournal {
  return new LocalJournal(file, opts);
}
