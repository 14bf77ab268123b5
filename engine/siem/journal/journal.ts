import Database from "better-sqlite3";
import { mkdirSync, statfsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { Worker } from "node:worker_threads";
import { canonicalJson } from "../../config/index.js";
import type { Journal, JournalItem, JournalRecord, NormalizedEvent } from "./contract.js";

export interface JournalOptions {
  /** Unused since commits moved to the writer thread (groups form while a commit is in flight); kept for callers. */
  groupMs?: number;
  /** Most events in one commit. Default 50,000. */
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
/**
 * The same text when it is known to be the event's RFC 8785 canonical JSON
 * (the normalizer's, else canonicalJson at append; for an event without a
 * canonical form, a NaN, JSON.stringify's, whose parse is canonical again):
 * every record appended since the journal first opened with this code.
 * Records from older journals hold JSON.stringify's text and have none.
 */
const CANONICAL_JSON: unique symbol = Symbol("viw.journal.canonicalJson");

/** The raw JSON text of a record read from a LocalJournal, if it has it. */
export function rawJson(record: JournalRecord): string | undefined {
  return (record as JournalRecord & { [RAW_JSON]?: string })[RAW_JSON];
}

/** The record's event as RFC 8785 canonical JSON, when the journal holds it in that form (a sealer takes it as is). */
export function canonicalJsonOf(record: JournalRecord): string | undefined {
  return (record as JournalRecord & { [CANONICAL_JSON]?: string })[CANONICAL_JSON];
}

interface Pending {
  /**
   * The append's records as `index TAB json LF` lines, made (and flattened) at
   * append: the events and their texts then die young instead of surviving
   * the collections that run while a commit is in flight (the main thread's
   * GC was a fifth of its syslog work when they were held until posted).
   */
  text: string;
  count: number;
  resolve: (r: { first: number; last: number }) => void;
  reject: (e: Error) => void;
}

/**
 * The writer thread. A commit with synchronous=FULL waits for fsync (several
 * ms here); done on the main thread it stalls every listener, so the ingest
 * rate becomes group size / fsync time. Here the fsync runs beside the event
 * loop and the next group forms while it waits (classic group commit). The
 * code is a string (an eval worker) because Node 20 cannot load the .ts
 * sources into a Worker without a build step; it only inserts rows the main
 * thread has already numbered and serialized.
 */
const WRITER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
db.pragma("busy_timeout = 10000");
const insert = db.prepare("INSERT INTO groups (first, last, data) VALUES (?, ?, ?)");
const setLast = db.prepare("INSERT INTO meta (key, value) VALUES ('last_seq', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
const write = db.transaction((first, last, data) => {
  insert.run(first, last, data);
  setLast.run(last);
});
parentPort.on("message", (m) => {
  if (m.close) { db.close(); parentPort.close(); return; }
  try { write(m.first, m.last, m.data); parentPort.postMessage({ ok: true }); }
  catch (e) { parentPort.postMessage({ ok: false, error: String((e && e.message) || e), code: e && e.code }); }
});
`;

/** A record as the journal holds it: the event's JSON text, not parsed (for sinks that store JSON). */
export interface RawRecord {
  seq: number;
  index: string;
  json: string;
}

/**
 * One commit group: records first..last as the `index TAB json LF` lines it
 * was written as. Split into per-record strings only when a consumer reads
 * records one by one (`lines`); a sink taking text (`readText`) gets slices.
 */
interface Group {
  first: number;
  last: number;
  data: string;
  /** Characters held, for the tail cache's bound. */
  size: number;
  index?: string[];
  json?: string[];
  /** Where each line starts (and, last, the end), computed when a read starts inside the group. */
  starts?: Int32Array;
}

/** Records of a journal as text: `index TAB json LF` lines for the records up to and including `seq`, `count` of them. */
export interface TextChunk {
  seq: number;
  count: number;
  text: string;
}

/** Committed groups kept decoded in memory, so consumers near the head never touch SQLite: 16 Mi characters of JSON (peak memory stays under 500 MB). */
const TAIL_CHARS = 16 * 1024 * 1024;

/**
 * The durable, ordered log between ingest and its consumers, on SQLite: WAL
 * with synchronous=FULL makes every commit fsynced and atomic, so a kill -9 or
 * power loss keeps exactly the committed groups. Appends are grouped: the
 * appends of one event-loop turn, and all that arrive while a commit is in
 * flight on the writer thread, form the next transaction; each resolves only
 * after its transaction committed — the moment a sender may be acked.
 *
 * One row per commit group (`groups`: first..last and the records as
 * `index TAB json LF` lines), not one per record: a row per record cost ~20 µs
 * of SQLite B-tree work per event on the writer thread, a row per group costs
 * one insert per commit. Sequence numbers are assigned here (a record's seq is
 * `first` + its line number) and the last one is kept in `meta`, so they are
 * never reused even after compaction empties the table. SQLite still gives the
 * atomicity and torn-tail safety a hand-written log would have to rebuild.
 */
export class LocalJournal implements Journal {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly maxGroup: number;
  private readonly highWater: number;
  private readonly minFreeBytes: number;
  private pending: Pending[] = [];
  private pendingCount = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private inflight: { groups: Pending[]; group: Group } | undefined;
  private readonly writer: Worker;
  private failed: Error | undefined;
  private drained: (() => void)[] = [];
  private last: number;
  /** Records at or below this were compacted away. */
  private floor = 0;
  /** The first seq appended in canonical JSON (CANONICAL_JSON). */
  private readonly canonicalFrom: number;
  /** Recently committed groups, oldest first, bounded by TAIL_CHARS. */
  private tail: Group[] = [];
  private tailChars = 0;
  /** Groups decoded from the database (consumers behind the tail), a few. */
  private decoded: Group[] = [];
  private readonly listeners = new Set<(last: number) => void>();
  private closed = false;
  private diskCheckedAt = 0;
  private diskFull = false;
  private minCursorAt = 0;
  private minCursorCached = 0;
  private groups = 0;
  private events = 0;
  private readonly stmt: {
    groupAt: Database.Statement;
    groupAfter: Database.Statement;
    getCursor: Database.Statement;
    setCursor: Database.Statement;
    register: Database.Statement;
    cursors: Database.Statement;
    minCursor: Database.Statement;
    oldest: Database.Statement;
    countUpTo: Database.Statement;
    deleteUpTo: Database.Statement;
    straddling: Database.Statement;
    trim: Database.Statement;
    drop: Database.Statement;
  };

  constructor(file: string, opts: JournalOptions = {}) {
    this.file = file;
    this.maxGroup = opts.maxGroup ?? 50_000;
    this.highWater = opts.highWater ?? 2_000_000;
    this.minFreeBytes = opts.minFreeBytes ?? 64 * 1024 * 1024;
    mkdirSync(dirname(file), { recursive: true });
    const db = new Database(file);
    this.db = db;
    db.pragma("journal_mode = WAL");
    // This connection commits only cursors and compaction (appends are the writer thread's, FULL). A cursor
    // lost to a power cut replays records, which every consumer handles (at-least-once, idempotent effects),
    // so its commits need not each wait for an fsync: that wait was 13% of the detector's latency.
    db.pragma("synchronous = NORMAL");
    db.pragma("cache_size = -32768");
    // the writer thread holds the write lock briefly per commit; cursor commits wait for it
    db.pragma("busy_timeout = 10000");
    db.exec(`
      CREATE TABLE IF NOT EXISTS groups (first INTEGER PRIMARY KEY, last INTEGER NOT NULL, data TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    // journals written before groups: one row per record becomes a one-record group
    if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'").get()) {
      db.transaction(() => {
        db.exec("INSERT OR IGNORE INTO groups (first, last, data) SELECT seq, seq, idx || char(9) || event || char(10) FROM records; DROP TABLE records;");
      })();
    }
    const metaLast = (db.prepare("SELECT value FROM meta WHERE key = 'last_seq'").get() as { value: number } | undefined)?.value ?? 0;
    const maxRow = (db.prepare("SELECT last AS m FROM groups ORDER BY first DESC LIMIT 1").get() as { m: number } | undefined)?.m ?? 0;
    this.last = Math.max(metaLast, maxRow);
    const canonicalFrom = (db.prepare("SELECT value FROM meta WHERE key = 'canonical_from'").get() as { value: number } | undefined)?.value;
    this.canonicalFrom = canonicalFrom ?? this.last + 1;
    if (canonicalFrom === undefined) db.prepare("INSERT INTO meta (key, value) VALUES ('canonical_from', ?)").run(this.canonicalFrom);
    this.stmt = {
      groupAt: db.prepare("SELECT first, last, data FROM groups WHERE first <= ? ORDER BY first DESC LIMIT 1"),
      groupAfter: db.prepare("SELECT first, last, data FROM groups WHERE first > ? ORDER BY first LIMIT 1"),
      getCursor: db.prepare("SELECT seq FROM cursors WHERE consumer = ?"),
      setCursor: db.prepare("INSERT INTO cursors (consumer, seq) VALUES (?, ?) ON CONFLICT(consumer) DO UPDATE SET seq = excluded.seq"),
      register: db.prepare("INSERT OR IGNORE INTO cursors (consumer, seq) VALUES (?, ?)"),
      cursors: db.prepare("SELECT consumer, seq FROM cursors"),
      minCursor: db.prepare("SELECT MIN(seq) AS m FROM cursors"),
      oldest: db.prepare("SELECT first AS m FROM groups ORDER BY first LIMIT 1"),
      // groups are ordered: `first <= m` bounds the scan by the primary key
      countUpTo: db.prepare("SELECT COALESCE(SUM(last - first + 1), 0) AS n FROM groups WHERE first <= ? AND last <= ?"),
      deleteUpTo: db.prepare("DELETE FROM groups WHERE first <= ? AND last <= ?"),
      straddling: db.prepare("SELECT first, last, data FROM groups WHERE first <= ? AND last > ?"),
      trim: db.prepare("UPDATE groups SET first = ?, data = ? WHERE first = ?"),
      drop: db.prepare("DELETE FROM cursors WHERE consumer = ?"),
    };
    const oldest = (this.stmt.oldest.get() as { m: number } | undefined)?.m;
    this.floor = oldest === undefined ? this.last : oldest - 1;
    this.writer = new Worker(WRITER, { eval: true, workerData: { file, driver: createRequire(import.meta.url).resolve("better-sqlite3") } });
    this.writer.on("message", (m: { ok: boolean; error?: string; code?: string }) => this.committed(m));
    this.writer.on("error", (err) => this.fail(err));
    this.writer.on("exit", (code) => {
      if (!this.closed) this.fail(new Error(`journal writer thread exited (${code})`));
    });
    this.writer.unref();
    for (const c of opts.consumers ?? []) this.register(c);
  }

  append(events: readonly JournalItem[]): Promise<{ first: number; last: number }> {
    if (this.closed) return Promise.reject(new Error("journal is closed"));
    if (this.failed) return Promise.reject(this.failed);
    if (events.length === 0) return Promise.resolve({ first: this.last + 1, last: this.last });
    let text = "";
    try {
      // V8 builds this as a rope, flattened once below: cheaper than join() over an array
      for (const item of events) text += item.index + "\t" + (item.json ?? canonicalText(item.event)) + "\n";
    } catch (err) {
      // an event that cannot be serialized fails its own append only
      return Promise.reject(err as Error);
    }
    void ((text as unknown as number) | 0);
    return new Promise((resolve, reject) => {
      this.pending.push({ text, count: events.length, resolve, reject });
      this.pendingCount += events.length;
      // appends of this turn of the event loop join the group; while a commit is in flight they wait for it
      if (!this.inflight && !this.scheduled) this.scheduled = setImmediate(() => this.post());
    });
  }

  /** Numbers and serializes the pending group and hands it to the writer thread. */
  private post(): void {
    this.scheduled = undefined;
    if (this.inflight || this.pending.length === 0) return;
    let groups = this.pending;
    let count = this.pendingCount;
    if (count > this.maxGroup) {
      // the first few appends up to maxGroup; the rest form the next group
      let n = 0;
      let k = 0;
      while (k < groups.length && (k === 0 || n + groups[k]!.count <= this.maxGroup)) n += groups[k++]!.count;
      groups = this.pending.slice(0, k);
      this.pending = this.pending.slice(k);
      this.pendingCount -= n;
      count = n;
    } else {
      this.pending = [];
      this.pendingCount = 0;
    }
    const first = this.last + 1;
    let data = groups[0]!.text;
    for (let k = 1; k < groups.length; k++) data += groups[k]!.text;
    for (const g of groups) g.text = "";
    this.inflight = { groups, group: { first, last: first + count - 1, data, size: data.length } };
    this.writer.ref();
    this.writer.postMessage({ first, last: first + count - 1, data });
  }

  private committed(m: { ok: boolean; error?: string; code?: string }): void {
    const done = this.inflight;
    this.inflight = undefined;
    this.writer.unref();
    if (!done) return;
    if (!m.ok) {
      const err = new Error(`journal write failed: ${m.error}`);
      for (const g of done.groups) g.reject(err);
      if (m.code === "SQLITE_FULL") {
        // disk full: SQLite rolled the group back (no seq was used), so the journal stays usable once space
        // is freed; these appends fail (their senders retry) and back-pressure holds the rest off meanwhile
        this.diskFull = true;
        this.diskCheckedAt = Date.now();
        if (this.pending.length) this.post();
        else this.wakeDrained();
        return;
      }
      this.fail(err);
      return;
    }
    const group = done.group;
    this.last = group.last;
    this.groups++;
    this.tail.push(group);
    this.tailChars += group.size;
    while (this.tail.length > 1 && this.tailChars > TAIL_CHARS) this.tailChars -= this.tail.shift()!.size;
    let seq = group.first;
    for (const g of done.groups) {
      g.resolve({ first: seq, last: seq + g.count - 1 });
      seq += g.count;
      this.events += g.count;
    }
    for (const l of this.listeners) {
      try {
        l(group.last);
      } catch {
        // a listener's failure is its own; the append is durable regardless
      }
    }
    if (this.pending.length) this.post();
    else this.wakeDrained();
  }

  /** A write error is fatal (disk, I/O): later appends fail at once instead of leaving gaps. */
  private fail(err: Error): void {
    this.failed ??= err;
    const pending = this.pending;
    this.pending = [];
    this.pendingCount = 0;
    for (const g of pending) g.reject(this.failed);
    if (this.inflight) {
      for (const g of this.inflight.groups) g.reject(this.failed);
      this.inflight = undefined;
    }
    this.wakeDrained();
  }

  private wakeDrained(): void {
    const waiters = this.drained;
    this.drained = [];
    for (const w of waiters) w();
  }

  /** Resolves once every append made so far is committed (or failed). */
  flush(): Promise<void> {
    if (!this.inflight && this.pending.length === 0) return Promise.resolve();
    if (!this.inflight && !this.scheduled) this.scheduled = setImmediate(() => this.post());
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** The committed group holding `seq`, or the next one after it; undefined past the head. */
  private groupFrom(seq: number): Group | undefined {
    if (seq > this.last) return undefined;
    const tail = this.tail;
    if (tail.length > 0 && seq >= tail[0]!.first) {
      let lo = 0;
      let hi = tail.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (tail[mid]!.first <= seq) lo = mid;
        else hi = mid - 1;
      }
      const g = tail[lo]!;
      if (seq <= g.last) return g;
    }
    for (const g of this.decoded) if (g.first <= seq && seq <= g.last) return g;
    type Row = { first: number; last: number; data: string };
    let row = this.stmt.groupAt.get(seq) as Row | undefined;
    if (!row || row.last < seq) row = this.stmt.groupAfter.get(seq) as Row | undefined;
    // bounded by the announced head: the writer thread's commit is visible a moment before its reply arrives
    if (!row || row.first > this.last) return undefined;
    const g: Group = { first: row.first, last: row.last, data: row.data, size: row.data.length };
    this.decoded.push(g);
    if (this.decoded.length > 2) this.decoded.shift();
    return g;
  }

  private scan(after: number, limit: number, take: (g: Group, k: number, seq: number) => void): void {
    let seq = Math.max(after, this.floor) + 1;
    let n = 0;
    while (n < limit) {
      const g = this.groupFrom(seq);
      if (!g) return;
      if (seq < g.first) seq = g.first;
      lines(g);
      for (; seq <= g.last && n < limit; seq++, n++) take(g, seq - g.first, seq);
    }
  }

  /**
   * Records after `after` (at most `limit`) as text, a slice of each group's
   * lines: for a sink that takes `index TAB json` lines as they are (the
   * embedded store), with no string or object per record on this thread.
   */
  readText(after: number, limit: number): TextChunk[] {
    const out: TextChunk[] = [];
    let seq = Math.max(after, this.floor) + 1;
    let n = 0;
    while (n < limit) {
      const g = this.groupFrom(seq);
      if (!g) break;
      if (seq < g.first) seq = g.first;
      const count = Math.min(g.last - seq + 1, limit - n);
      const whole = seq === g.first && count === g.last - g.first + 1;
      const text = whole ? g.data : g.data.slice(lineStart(g, seq - g.first), lineStart(g, seq - g.first + count));
      seq += count;
      n += count;
      out.push({ seq: seq - 1, count, text });
    }
    return out;
  }

  read(after: number, limit: number): JournalRecord[] {
    const out: JournalRecord[] = [];
    this.scan(after, limit, (g, k, seq) => {
      const json = g.json![k]!;
      out.push({ seq, index: g.index![k]!, event: JSON.parse(json) as NormalizedEvent, [RAW_JSON]: json, [CANONICAL_JSON]: seq >= this.canonicalFrom ? json : undefined } as JournalRecord);
    });
    return out;
  }

  /** Like `read`, without parsing the events: for sinks that store the JSON as it is. */
  readRaw(after: number, limit: number): RawRecord[] {
    const out: RawRecord[] = [];
    this.scan(after, limit, (g, k, seq) => out.push({ seq, index: g.index![k]!, json: g.json![k]! }));
    return out;
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
    this.minCursorAt = 0;
  }

  /**
   * Makes a consumer known so compaction keeps what it has not read. A new
   * consumer starts before the oldest record still held.
   */
  register(consumer: string): void {
    this.stmt.register.run(consumer, this.floor);
    this.minCursorAt = 0;
  }

  /** Forgets a consumer that was removed for good (its cursor no longer holds records back). */
  dropConsumer(consumer: string): void {
    this.stmt.drop.run(consumer);
    this.minCursorAt = 0;
  }

  onAppend(listener: (last: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private minCursor(): number {
    const m = (this.stmt.minCursor.get() as { m: number | null }).m;
    this.minCursorAt = Date.now();
    this.minCursorCached = m ?? 0;
    return this.minCursorCached;
  }

  /**
   * The slowest cursor for back-pressure, read at most every 100 ms (or after
   * this journal moved a cursor): isFull runs per read of every syslog
   * connection, and a read of the cursors table cost ~1.5 µs per event there.
   */
  private recentMinCursor(): number {
    return Date.now() - this.minCursorAt < 100 ? this.minCursorCached : this.minCursor();
  }

  /**
   * Deletes the records every registered consumer has passed; none when no
   * consumer is registered. Whole groups are deleted; a group the slowest
   * consumer is inside of is rewritten without its passed records.
   */
  compact(): number {
    const m = Math.min((this.stmt.minCursor.get() as { m: number | null }).m ?? 0, this.last);
    if (m <= this.floor) return 0;
    let deleted = 0;
    this.db.transaction(() => {
      deleted = (this.stmt.countUpTo.get(m, m) as { n: number }).n;
      this.stmt.deleteUpTo.run(m, m);
      const row = this.stmt.straddling.get(m, m) as { first: number; last: number; data: string } | undefined;
      if (row) {
        let at = 0;
        for (let k = row.first; k <= m; k++) at = row.data.indexOf("\n", at) + 1;
        this.stmt.trim.run(m + 1, row.data.slice(at), row.first);
        deleted += m + 1 - row.first;
      }
    })();
    this.floor = m;
    this.decoded = this.decoded.filter((g) => g.last > m);
    return deleted;
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
    return this.diskFull || this.last + this.pendingCount - this.recentMinCursor() > this.highWater;
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
    await this.flush();
    this.closed = true;
    this.listeners.clear();
    const exited = new Promise<void>((resolve) => this.writer.once("exit", () => resolve()));
    this.writer.ref();
    this.writer.postMessage({ close: true });
    await exited;
    this.db.close();
  }
}

/** canonicalJson, or JSON.stringify's text for an event canonicalJson refuses (NaN, Infinity), whose parse is canonical again. */
function canonicalText(event: NormalizedEvent): string {
  try {
    return canonicalJson(event);
  } catch {
    const text = JSON.stringify(event);
    return canonicalJson(JSON.parse(text));
  }
}

/** Splits a group into its records' index and JSON strings (once; slices of its text). */
function lines(g: Group): void {
  if (g.json) return;
  const { first, last, data } = g;
  const n = last - first + 1;
  const index: string[] = new Array(n);
  const json: string[] = new Array(n);
  let at = 0;
  for (let k = 0; k < n; k++) {
    const tab = data.indexOf("\t", at);
    const nl = data.indexOf("\n", tab);
    if (tab < 0 || nl < 0) throw new Error(`journal group ${first}..${last} is damaged at record ${first + k}`);
    index[k] = data.slice(at, tab);
    json[k] = data.slice(tab + 1, nl);
    at = nl + 1;
  }
  g.index = index;
  g.json = json;
}

/** Offset in the group's text where its k-th record (0-based) starts; k = count gives the end. */
function lineStart(g: Group, k: number): number {
  if (!g.starts) {
    const n = g.last - g.first + 1;
    const starts = new Int32Array(n + 1);
    let at = 0;
    for (let i = 0; i < n; i++) {
      starts[i] = at;
      const nl = g.data.indexOf("\n", at);
      if (nl < 0) throw new Error(`journal group ${g.first}..${g.last} is damaged at record ${g.first + i}`);
      at = nl + 1;
    }
    starts[n] = at;
    g.starts = starts;
  }
  return g.starts[k]!;
}

export function openJournal(file: string, opts?: JournalOptions): LocalJournal {
  return new LocalJournal(file, opts);
}
