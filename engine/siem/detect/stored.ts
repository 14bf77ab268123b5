/**
 * Reading stored events back for the detector: `viw replay` (two revisions
 * over the store) and warming a changed rule's window at a reload.
 */
import type { NormalizedEvent } from "../journal/contract.js";
import type { EventStore } from "../store/index.js";

/**
 * The stored events with event time in [fromMs, toMs], oldest first, alerts left out.
 * Reads the store's own table (store.ts): its query API answers newest first
 * and capped, and both uses want every event of the range, oldest first.
 */
export function* storedBetween(store: EventStore, fromMs: number, toMs = Number.MAX_SAFE_INTEGER): Generator<NormalizedEvent> {
  const rows = store.db
    .prepare("SELECT doc FROM events WHERE ts >= ? AND ts <= ? AND idx NOT LIKE 'viw-alerts%' ORDER BY ts, rid")
    .iterate(Math.max(-Number.MAX_SAFE_INTEGER, Math.floor(fromMs)), Math.min(Number.MAX_SAFE_INTEGER, Math.ceil(toMs))) as Iterable<{ doc: string }>;
  for (const r of rows) yield JSON.parse(r.doc) as NormalizedEvent;
}
