/**
 * The journal's contract, shared by ingest (the writer) and every consumer
 * (store/Elasticsearch indexers, detector, sealer). Implemented in this folder
 * on SQLite (better-sqlite3, WAL, synchronous=FULL, group commit).
 */

/** A normalized event (spec §3.5 fields, DESIGN §5), as stored and sealed. */
export interface NormalizedEvent {
  event_id: string;
  timestamp: string;
  received_at: string;
  action?: string;
  [field: string]: unknown;
}

export interface JournalRecord {
  /** Monotonic, gap-free within one journal, never reused. */
  seq: number;
  /** The viw-* index routing chose (without the day suffix). */
  index: string;
  event: NormalizedEvent;
}

/** What is appended: the routed index, the event, and optionally its JSON text. */
export interface JournalItem {
  index: string;
  event: NormalizedEvent;
  json?: string;
}

export interface Journal {
  /**
   * Resolves once the events are durable (fsynced); only then may a sender be
   * acknowledged. `json`, when given, is the event's JSON text already made
   * (the normalizer's canonical JSON): the journal stores it instead of
   * serializing the event again, so it must describe `event` exactly.
   */
  append(events: readonly JournalItem[]): Promise<{ first: number; last: number }>;
  /** Records with seq > after, in order, at most `limit`. */
  read(after: number, limit: number): JournalRecord[];
  lastSeq(): number;
  /** A consumer's durable position: the last seq it has fully handled. */
  cursor(consumer: string): number;
  commitCursor(consumer: string, seq: number): void;
  /** Called after each durable append; returns an unsubscribe function. */
  onAppend(listener: (last: number) => void): () => void;
  close(): Promise<void>;
}
