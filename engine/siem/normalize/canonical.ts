import { canonicalJson, EVENT_FIELDS } from "../../config/index.js";
import { SCHEMA_VERSION } from "./mapper.js";

/**
 * RFC 8785 canonical JSON of a normalized event (an object whose keys are
 * schema fields). With `marks`, it records where each of LATE_FIELDS would go
 * in the result (its length before that key), for `insertLate`.
 */
export type EventSerializer = (event: Readonly<Record<string, unknown>>, marks?: Int32Array) => string;

/** Fields the normalizer sets after hashing the event: spliced into the hashed text rather than serializing twice. */
export const LATE_FIELDS = ["asn", "country", "event_id", "received_at"] as const;

let cached: { version: number; serializer: EventSerializer } | undefined;

/**
 * The canonical serializer for the current schema, generated once from
 * EVENT_FIELDS like the mapper: the keys' RFC 8785 order (UTF-16 code units)
 * is known when the code is generated, so there is no key listing, sorting or
 * copying per event — the generic canonicalJson (or a sorted copy handed to
 * JSON.stringify) cost twice as much on the ingest hot path, where every event
 * without a shipper id is hashed. Strings and finite numbers are written with
 * JSON.stringify, which is what RFC 8785 prescribes for them (and what
 * canonicalJson does); anything else (extra, alert, an unexpected type) goes
 * through canonicalJson. Only for objects the mapper built: a key outside the
 * schema would be left out, so other objects take canonicalJson. The source
 * is built only from the frozen field table, so `new Function` is safe here.
 */
export function eventSerializer(): EventSerializer {
  if (cached?.version === SCHEMA_VERSION) return cached.serializer;
  const keys = Object.keys(EVENT_FIELDS).sort();
  const lines: string[] = [];
  for (const k of keys) {
    const late = (LATE_FIELDS as readonly string[]).indexOf(k);
    if (late >= 0) lines.push(`if (m !== undefined) m[${late}] = s.length;`);
    const open = JSON.stringify("{" + JSON.stringify(k) + ":");
    const next = JSON.stringify("," + JSON.stringify(k) + ":");
    lines.push(`v = o[${JSON.stringify(k)}]; if (v !== undefined) { s += s === "" ? ${open} : ${next}; s += typeof v === "string" || (typeof v === "number" && v - v === 0) ? J(v) : C(v); }`);
  }
  const body = `
    return function canonicalEvent(o, m) {
      let s = "";
      let v;
      ${lines.join("\n      ")}
      return s === "" ? "{}" : s + "}";
    };`;
  const serializer = new Function("J", "C", body)(JSON.stringify, canonicalJson) as EventSerializer;
  cached = { version: SCHEMA_VERSION, serializer };
  return serializer;
}

/**
 * `text` (the serializer's output for an event without some LATE_FIELDS, and
 * the marks it recorded) with those fields added from `event`: the canonical
 * JSON of the event as it is now, without serializing it again. `missing[i]`
 * says LATE_FIELDS[i] was absent when `text` was made.
 */
export function insertLate(text: string, marks: Int32Array, missing: readonly boolean[], event: Readonly<Record<string, unknown>>): string {
  let out = text;
  // from the last position back, so the earlier marks still hold
  for (let i = LATE_FIELDS.length - 1; i >= 0; i--) {
    if (!missing[i]) continue;
    const k = LATE_FIELDS[i]!;
    const v = event[k];
    if (v === undefined) continue;
    const value = typeof v === "string" || (typeof v === "number" && v - v === 0) ? JSON.stringify(v) : canonicalJson(v);
    const at = marks[i]!;
    if (at === 0) out = out === "{}" ? `{"${k}":${value}}` : `{"${k}":${value},${out.slice(1)}`;
    else out = `${out.slice(0, at)},"${k}":${value}${out.slice(at)}`;
  }
  return out;
}
