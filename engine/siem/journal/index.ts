/**
 * The journal: the durable, ordered log between ingest and every consumer
 * (indexers, detector, sealer). `openJournal` gives the SQLite implementation
 * of the shared contract; `consume` is the loop every consumer runs.
 */
export type { Journal, JournalItem, JournalRecord, NormalizedEvent } from "./contract.js";
export { openJournal, LocalJournal, RAW_JSON, rawJson, canonicalJsonOf } from "./journal.js";
export type { RawRecord, TextChunk } from "./journal.js";
export type { JournalOptions, JournalStats } from "./journal.js";
export { consume } from "./consume.js";
export type { Consumer, ConsumeOptions } from "./consume.js";
