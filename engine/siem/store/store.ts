import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { periodStart } from "../../config/index.js";
import { rawJson, type JournalRecord, type NormalizedEvent } from "../journal/index.js";

export interface StoredEvent {
  index: string;
  event: NormalizedEvent;
}

/** The stored document: the journal's own JSON text when the record came from it. */
function docOf(r: StoredEvent): string {
  return ("seq" in r && rawJson(r as JournalRecord)) || JSON.stringify(r.event);
}

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
  private readonly insert: Database.Statement;
  private readonly insertBatch: (records: readonly StoredEvent[]) => number;

  constructor(file: string, opts: { readonly?: boolean } = {}) {
    this.file = file;
    if (!opts.readonly) mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    if (!opts.readonly) {
      this.db.pragma("journal_mode = WAL");
      // FULL: the journal cursor is committed after this commit, so this one must be durable first
      this.db.pragma("synchronous = FULL");
      // event_id is a random hash: its unique index is written at random pages,
      // so the default 2 MB page cache thrashes once the store outgrows it
      this.db.pragma("cache_size = -65536");
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS events (
          rid INTEGER PRIMARY KEY,
          event_id TEXT NOT NULL UNIQUE,
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
      `);
    }
    this.db.pragma("busy_timeout = 5000");
    this.insert = opts.readonly
      ? (undefined as unknown as Database.Statement)
      : this.db.prepare("INSERT OR IGNORE INTO events (event_id, idx, ts, component, action, user_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?)");
    this.insertBatch = this.db.transaction((records: readonly StoredEvent[]) => {
      let added = 0;
      for (const r of records) {
        const { index, event } = r;
        const ts = Date.parse(event.timestamp);
        added += this.insert.run(
          event.event_id,
          index,
          Number.isFinite(ts) ? ts : Date.parse(event.received_at),
          str(event.component),
          str(event.action),
          str(event.user_id),
          docOf(r),
        ).changes;
      }
      return added;
    });
  }

  /** Stores a batch in one transaction; returns how many were new (the rest were already stored). */
  add(records: readonly StoredEvent[]): number {
    return this.insertBatch(records);
  }

  /** The journal consumer's handler. */
  handle = (records: JournalRecord[]): void => {
    this.add(records);
  };

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

  close(): void {
    this.db.close();
  }
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

export function openStore(file: string, opts?: { readonly?: boolean }): EventStore {
  return new EventStore(file, opts);
}
