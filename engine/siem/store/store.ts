import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { Worker } from "node:worker_threads";
import { periodStart } from "../../config/index.js";
import { rawJson, type JournalRecord, type NormalizedEvent, type RawRecord } from "../journal/index.js";

export interface StoredEvent {
  index: string;
  event: NormalizedEvent;
}

/**
 * `eid` is a 52-bit integer key for event_id: the unique index holds 8-byte
 * integers instead of 64-character hex strings, five times smaller, so a
 * batch of inserts at random positions dirties far fewer pages (measured:
 * 27 -> 18 µs CPU and 82 -> 47 µs wall per event on the store's writer
 * thread). The full event_id is still compared, so exactly-once holds even
 * when two ids share a key (`storeEvent` probes the next key).
 */
const INSERT_SQL = "INSERT OR IGNORE INTO events (eid, event_id, idx, ts, component, action, user_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const ID_AT_SQL = "SELECT event_id FROM events WHERE eid = ?";

function docOf(r: StoredEvent): string {
  return ("seq" in r && rawJson(r as JournalRecord)) || JSON.stringify(r.event);
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS events (
    rid INTEGER PRIMARY KEY,
    eid INTEGER NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    idx TEXT NOT NULL,
    ts INTEGER NOT NULL,
    component TEXT,
    action TEXT,
    user_id TEXT,
    doc TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
  CREATE INDEX IF NOT EXISTS events_idx_ts ON events (idx, ts);
  CREATE INDEX IF NOT EXISTS events_component_action_ts ON events (component, action, ts);
  CREATE INDEX IF NOT EXISTS events_user_ts ON events (user_id, ts) WHERE user_id IS NOT NULL;
`;

/** A store written before `eid` (event_id TEXT UNIQUE): rebuilt in one transaction, rows and their order kept. */
function migrateToEid(db: Database.Database): void {
  db.transaction(() => {
    db.exec(`
      DROP INDEX IF EXISTS events_ts; DROP INDEX IF EXISTS events_idx_ts;
      DROP INDEX IF EXISTS events_component_action_ts; DROP INDEX IF EXISTS events_user_ts;
      ALTER TABLE events RENAME TO events_v1;
    `);
    db.exec(SCHEMA);
    const put = db.prepare("INSERT OR IGNORE INTO events (rid, eid, event_id, idx, ts, component, action, user_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    type Row = { rid: number; event_id: string; idx: string; ts: number; component: string | null; action: string | null; user_id: string | null; doc: string };
    for (const r of db.prepare("SELECT rid, event_id, idx, ts, component, action, user_id, doc FROM events_v1 ORDER BY rid").all() as Row[]) {
      let eid = eidOf(r.event_id);
      // event_ids were unique: a refused insert is a shared key, so the next key
      while (put.run(r.rid, eid, r.event_id, r.idx, r.ts, r.component, r.action, r.user_id, r.doc).changes === 0) eid = eid >= 0xfffffffffffff ? 0 : eid + 1;
    }
    db.exec("DROP TABLE events_v1");
  })();
}

/**
 * The key of an event_id: the first 52 bits of an engine id (SHA-256 hex),
 * else a 52-bit hash of the text. Self-contained (no outside names): the
 * writer thread runs it from its source text.
 */
function eidOf(id: string): number {
  if (id.length >= 13 && /^[0-9a-f]{13}/.test(id)) return parseInt(id.slice(0, 13), 16);
  // two independent 32-bit multiplicative hashes, 26 bits of each (hand-written: no library hashes to a number this cheaply)
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ id.length;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 15), 0x2c1b3c6d);
  h2 = Math.imul(h2 ^ (h2 >>> 13), 0x297a2d39);
  return ((h1 >>> 6) * 0x4000000) + (h2 >>> 6);
}

/** Rows per multi-row INSERT. */
const ROWS_PER_INSERT = 50;
const INSERT_ROWS_SQL = `INSERT OR IGNORE INTO events (eid, event_id, idx, ts, component, action, user_id, doc) VALUES ${Array(ROWS_PER_INSERT).fill("(?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}`;

interface Statement {
  run(...a: unknown[]): { changes: number };
}

/**
 * Inserts events unless their event_id is stored already, ROWS_PER_INSERT
 * rows per statement: one INSERT per row spent ~40% of SQLite's instructions
 * per event on running the statement (callgrind: 28.5k -> 16.7k instructions
 * per event over the insert alone). `add` collects a row; `flush` inserts what
 * is held (a remainder row by row); both return how many were new. A row a
 * multi-row statement ignored is the same event again, a row a NOT NULL
 * column refused (ignored, as before), or another event_id with the same
 * eid: that one takes the next free key. Self-contained: both threads run it
 * (the writer from its source).
 */
function storeRows(insertRows: Statement, insert: Statement, idAt: { get(eid: number): unknown }, eidOf: (id: string) => number, perInsert: number) {
  const v: unknown[] = new Array(perInsert * 8);
  let n = 0;
  const text = (x: unknown) => (typeof x === "string" ? x : null);
  /** Row `r` of v inserted alone, probing the next keys while another event_id holds its key. */
  const single = (r: number): number => {
    const o = r * 8;
    for (;;) {
      if (insert.run(v[o], v[o + 1], v[o + 2], v[o + 3], v[o + 4], v[o + 5], v[o + 6], v[o + 7]).changes > 0) return 1;
      const other = idAt.get(v[o] as number) as { event_id: string } | undefined;
      if (!other || other.event_id === v[o + 1]) return 0;
      // another id with the same key: the next key (rare; ids are hashes)
      v[o] = (v[o] as number) >= 0xfffffffffffff ? 0 : (v[o] as number) + 1;
    }
  };
  const flush = (): number => {
    let added = 0;
    if (n === perInsert) {
      added = insertRows.run(v).changes;
      if (added < n) {
        for (let r = 0; r < n; r++) {
          const other = idAt.get(v[r * 8] as number) as { event_id: string } | undefined;
          // inserted now or before, or refused by a NOT NULL column
          if (!other || other.event_id === v[r * 8 + 1]) continue;
          added += single(r);
        }
      }
    } else for (let r = 0; r < n; r++) added += single(r);
    n = 0;
    return added;
  };
  return {
    add(index: string, e: StoreFields, doc: string): number {
      let ts = Date.parse(e.timestamp);
      if (!Number.isFinite(ts)) ts = Date.parse(e.received_at);
      const o = n * 8;
      v[o] = eidOf(String(e.event_id));
      v[o + 1] = e.event_id;
      v[o + 2] = index;
      v[o + 3] = ts;
      v[o + 4] = text(e.component);
      v[o + 5] = text(e.action);
      v[o + 6] = text(e.user_id);
      v[o + 7] = doc;
      return ++n === perInsert ? flush() : 0;
    },
    flush,
    /** Forgets held rows (a transaction that failed rolled them back). */
    clear(): void {
      n = 0;
    },
  };
}

/** What storeRows reads of an event. */
export type StoreFields = Pick<NormalizedEvent, "event_id" | "timestamp" | "received_at"> & { component?: unknown; action?: unknown; user_id?: unknown };

/**
 * The columns of a flat event from its JSON text without parsing it all:
 * JSON.parse of the whole document was ~4 µs of the store thread's ~18 µs per
 * event, for five short strings. Hand-written because it is that hot path.
 * Sound for a flat object written by JSON.stringify or the canonical
 * serializer (no whitespace): there `,"key":` cannot occur inside a string
 * value (its quote would be escaped), so the first match is the top-level key.
 * Anything else — a nested object or array (a `{` or `[` anywhere, even inside
 * a string), a required field that is not a plain string — answers undefined
 * and the caller parses the document. Self-contained: the writer thread runs
 * it from its source text.
 */
export function fieldsOf(doc: string): StoreFields | undefined {
  if (doc.charCodeAt(0) !== 123 || doc.charCodeAt(1) !== 34 || doc.indexOf("{", 1) >= 0 || doc.indexOf("[") >= 0) return undefined;
  // the value of the top-level key `pattern` names (`,"key":`), undefined when absent, null when not a plain string
  const get = (pattern: string): string | undefined | null => {
    let start: number;
    const at = doc.indexOf(pattern);
    if (at >= 0) start = at + pattern.length;
    else if (doc.startsWith(pattern.slice(1), 1)) start = pattern.length;
    else return undefined;
    if (doc.charCodeAt(start) !== 34) return null;
    let end = start;
    for (;;) {
      end = doc.indexOf('"', end + 1);
      if (end < 0) return null;
      let k = end - 1;
      while (doc.charCodeAt(k) === 92) k--;
      if ((end - 1 - k) % 2 === 0) break; // an even run of backslashes: this quote ends the string
    }
    const raw = doc.slice(start + 1, end);
    return raw.indexOf("\\") < 0 ? raw : (JSON.parse(doc.slice(start, end + 1)) as string);
  };
  const event_id = get(',"event_id":');
  const timestamp = get(',"timestamp":');
  const received_at = get(',"received_at":');
  const component = get(',"component":');
  const action = get(',"action":');
  const user_id = get(',"user_id":');
  if (typeof event_id !== "string" || typeof timestamp !== "string" || typeof received_at !== "string" || component === null || action === null || user_id === null) return undefined;
  return { event_id, timestamp, received_at, component, action, user_id };
}

/**
 * The store's writer thread, used by the journal consumer (`write`): an
 * insert into the events table with its unique event_id and four indexes costs
 * ~20 µs of SQLite work per event, and the fsync of the commit waits on the
 * disk; on the main thread that stalled every listener for the length of each
 * batch. Here it runs beside the event loop and parses the journal's JSON
 * itself, so the main thread hands over strings it already had. An eval
 * worker because Node 20 cannot load the .ts sources into a Worker.
 */
const WRITER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
db.pragma("cache_size = -65536");
db.pragma("busy_timeout = 10000");
// fewer, larger checkpoints: each one rewrites the index pages the batches touched
db.pragma("wal_autocheckpoint = 16384");
const eidOf = ${eidOf.toString()};
const storeRows = ${storeRows.toString()};
const fieldsOf = ${fieldsOf.toString()};
const rows = storeRows(db.prepare(${JSON.stringify(INSERT_ROWS_SQL)}), db.prepare(${JSON.stringify(INSERT_SQL)}), db.prepare(${JSON.stringify(ID_AT_SQL)}), eidOf, ${ROWS_PER_INSERT});
// records come as one text, "index TAB json" lines (JSON text has no raw LF): one string to copy between threads, not two per record
const write = db.transaction((text) => {
  rows.clear();
  let added = 0;
  for (let at = 0; at < text.length; ) {
    const tab = text.indexOf("\\t", at);
    let nl = text.indexOf("\\n", tab);
    if (nl < 0) nl = text.length;
    const doc = text.slice(tab + 1, nl);
    added += rows.add(text.slice(at, tab), fieldsOf(doc) ?? JSON.parse(doc), doc);
    at = nl + 1;
  }
  return added + rows.flush();
});
parentPort.on("message", (m) => {
  if (m.close) { db.close(); parentPort.close(); return; }
  try { parentPort.postMessage({ id: m.id, ok: true, added: write(m.text) }); }
  catch (e) { parentPort.postMessage({ id: m.id, ok: false, error: String((e && e.message) || e) }); }
});
`;

/**
 * The embedded event store (the default sink): SQLite at DATA/store/events.db.
 * Idempotent by event_id (a replayed journal batch, or the same event over
 * both shipping paths, is stored once). Indexed for the queries dashboards and
 * rules make: time range, index + time, component/action + time, user + time.
 * Retention deletes whole UTC days.
 */
export class EventStore {
  readonly file: string;
  readonly db: Database.Database;
  private readonly insertBatch: (records: readonly StoredEvent[]) => number;

  constructor(file: string, opts: { readonly?: boolean } = {}) {
    this.file = file;
    if (!opts.readonly) mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    this.db.pragma("busy_timeout = 5000");
    if (!opts.readonly) {
      // 16 KiB pages (a new database only): fewer B-tree splits per insert, ~30% less CPU per event measured
      this.db.pragma("page_size = 16384");
      this.db.pragma("journal_mode = WAL");
      // FULL: the journal cursor is committed after this commit, so this one must be durable first
      this.db.pragma("synchronous = FULL");
      // event_id is a random hash: its unique index is written at random pages,
      // so the default 2 MB page cache thrashes once the store outgrows it
      this.db.pragma("cache_size = -65536");
      if (this.db.prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'event_id'").get() && !this.db.prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'eid'").get()) {
        migrateToEid(this.db);
      }
      this.db.exec(SCHEMA);
    }
    const rows = opts.readonly ? undefined : storeRows(this.db.prepare(INSERT_ROWS_SQL), this.db.prepare(INSERT_SQL), this.db.prepare(ID_AT_SQL), eidOf, ROWS_PER_INSERT);
    this.insertBatch = this.db.transaction((records: readonly StoredEvent[]) => {
      if (!rows) throw new Error("the store is open read-only");
      rows.clear();
      let added = 0;
      for (const r of records) added += rows.add(r.index, r.event, docOf(r));
      return added + rows.flush();
    });
  }

  /** Stores a batch in one transaction; returns how many were new (the rest were already stored). */
  add(records: readonly StoredEvent[]): number {
    return this.insertBatch(records);
  }

  /** The journal consumer's handler (synchronous, on the calling thread). */
  handle = (records: JournalRecord[]): void => {
    this.add(records);
  };

  private writer: Worker | undefined;
  private writes = new Map<number, { resolve: (added: number) => void; reject: (e: Error) => void }>();
  private nextWrite = 0;

  /**
   * Stores journal records on the store's writer thread, in one transaction;
   * resolves with how many were new once it is committed (fsynced), the
   * moment the consumer may move its cursor.
   */
  write(records: readonly RawRecord[]): Promise<number> {
    let text = "";
    for (const r of records) text += r.index + "\t" + r.json + "\n";
    return this.writeText(text);
  }

  /** Like `write`, for records as the journal's text (`index TAB json LF` lines, LocalJournal.readText). */
  writeText(text: string): Promise<number> {
    if (text.length === 0) return Promise.resolve(0);
    const w = (this.writer ??= this.startWriter());
    const id = ++this.nextWrite;
    return new Promise((resolve, reject) => {
      this.writes.set(id, { resolve, reject });
      w.ref();
      w.postMessage({ id, text });
    });
  }

  private startWriter(): Worker {
    const w = new Worker(WRITER, { eval: true, workerData: { file: this.file, driver: createRequire(import.meta.url).resolve("better-sqlite3") } });
    w.on("message", (m: { id: number; ok: boolean; added?: number; error?: string }) => {
      const p = this.writes.get(m.id);
      this.writes.delete(m.id);
      if (this.writes.size === 0) w.unref();
      if (m.ok) p?.resolve(m.added ?? 0);
      else p?.reject(new Error(`store write failed: ${m.error}`));
    });
    const failAll = (err: Error) => {
      for (const p of this.writes.values()) p.reject(err);
      this.writes.clear();
      this.writer = undefined;
    };
    w.on("error", failAll);
    w.on("exit", (code) => failAll(new Error(`store writer thread exited (${code})`)));
    w.unref();
    return w;
  }

  /**
   * The stored events with event time in [fromMs, toMs], oldest first, alerts
   * left out: what replaying the store into detection rules needs (`viw
   * replay`, warming a changed rule), where the query API answers newest
   * first and capped.
   */
  *eventsBetween(fromMs: number, toMs = Number.MAX_SAFE_INTEGER): Generator<NormalizedEvent> {
    const rows = this.db
      .prepare("SELECT doc FROM events WHERE ts >= ? AND ts <= ? AND idx NOT LIKE 'viw-alerts%' ORDER BY ts, rid")
      .iterate(Math.max(-Number.MAX_SAFE_INTEGER, Math.floor(fromMs)), Math.min(Number.MAX_SAFE_INTEGER, Math.ceil(toMs))) as Iterable<{ doc: string }>;
    for (const r of rows) yield JSON.parse(r.doc) as NormalizedEvent;
  }

  count(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM events").get() as { n: number }).n;
  }

  /**
   * Deletes the events of every UTC day that lies wholly before the retention
   * period (`events`, with per-index overrides). Returns how many were deleted.
   */
  enforceRetention(retention: { events: string; indices?: Readonly<Record<string, string>> }, now = new Date()): number {
    const cutoffDay = (period: string) => {
      const d = periodStart(period, now);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    };
    const overrides = Object.entries(retention.indices ?? {});
    let deleted = 0;
    const tx = this.db.transaction(() => {
      for (const [index, period] of overrides) {
        deleted += this.db.prepare("DELETE FROM events WHERE idx = ? AND ts < ?").run(index, cutoffDay(period)).changes;
      }
      const others = overrides.map(([i]) => i);
      const sql = `DELETE FROM events WHERE ts < ?${others.length ? ` AND idx NOT IN (${others.map(() => "?").join(",")})` : ""}`;
      deleted += this.db.prepare(sql).run(cutoffDay(retention.events), ...others).changes;
    });
    tx();
    return deleted;
  }

  /** Closes the database; the writer thread finishes the write in hand first. */
  close(): void {
    const w = this.writer;
    this.writer = undefined;
    if (w) {
      w.removeAllListeners("exit");
      w.postMessage({ close: true });
    }
    this.db.close();
  }
}


export function openStore(file: string, opts?: { readonly?: boolean }): EventStore {
  return new EventStore(file, opts);
}
