import { createHash, randomBytes } from "node:crypto";
import { canonicalJson, type DesiredState } from "../../config/index.js";
import type { NormalizedEvent } from "../journal/index.js";
import { noEnrichment, type Enricher } from "./enrich.js";
import { schemaMapper, type FieldError, type Mapper } from "./mapper.js";
import { Router } from "./route.js";

export type NormalizeResult = { ok: true; index: string; event: NormalizedEvent } | { ok: false; errors: FieldError[] };

export interface NormalizeContext {
  /** ISO time the engine received the event (one value per read or request). */
  receivedAt: string;
  /** A timestamp from the transport (the syslog header) used when the event has none. */
  timestamp?: string;
}

/**
 * Shipper objects to normalized events (spec §3.5, DESIGN §5): coerced
 * schema fields, unknown fields under `extra`, `event_id` (the shipper's, else
 * SHA-256 of the canonical event before enrichment, so both shipping paths and
 * any enrichment database agree on it), `received_at`, asn/country enrichment
 * that never overwrites, and the routed index.
 */
export class Normalizer {
  private readonly mapper: Mapper = schemaMapper();
  readonly router: Router;

  constructor(
    routing: DesiredState["routing"],
    private readonly enricher: Enricher = noEnrichment,
  ) {
    this.router = new Router(routing);
  }

  /** With another routing table, sharing the enricher (a revision swap). */
  withRouting(routing: DesiredState["routing"]): Normalizer {
    return new Normalizer(routing, this.enricher);
  }

  normalize(src: unknown, ctx: NormalizeContext): NormalizeResult {
    if (src === null || typeof src !== "object" || Array.isArray(src)) {
      return { ok: false, errors: [{ field: "", message: `expected a JSON object, got ${src === null ? "null" : Array.isArray(src) ? "an array" : typeof src}` }] };
    }
    const out: Record<string, unknown> = {};
    const extra: Record<string, unknown> = {};
    const errors: FieldError[] = [];
    if (this.mapper(src as Record<string, unknown>, out, extra, errors) > 0) return { ok: false, errors };
    for (const _ in extra) {
      out.extra = extra;
      break;
    }
    delete out.received_at;
    if (out.timestamp === undefined) out.timestamp = ctx.timestamp ?? ctx.receivedAt;
    if (typeof out.event_id !== "string" || out.event_id === "") {
      if (out.event_id === "") return { ok: false, errors: [{ field: "event_id", message: "must not be empty" }] };
      out.event_id = createHash("sha256").update(canonicalForm(out)).digest("hex");
    } else if ((out.event_id as string).length > 256) {
      return { ok: false, errors: [{ field: "event_id", message: "longer than 256 characters" }] };
    }
    out.received_at = ctx.receivedAt;
    this.enricher.enrich(out);
    return { ok: true, index: this.router.route(out.action), event: out as NormalizedEvent };
  }

  /** One NDJSON line or syslog JSON MSG. */
  parse(text: string, ctx: NormalizeContext): NormalizeResult {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      return { ok: false, errors: [{ field: "", message: `invalid JSON: ${(err as Error).message}` }] };
    }
    return this.normalize(value, ctx);
  }
}

/**
 * RFC 8785 canonical JSON of a normalized event, fast. Most events are flat
 * (strings and finite numbers): for them JSON.stringify of a copy whose keys
 * are inserted in sorted order writes exactly the canonical form (JCS
 * serializes strings and numbers with JSON.stringify, as canonicalJson itself
 * does), on the ingest hot path. The sorted key order is cached per shape
 * (the event's own key order): a shipper sends few shapes, and a plain
 * JSON.stringify of a consistently shaped object is V8's fast path, ~1.5x
 * cheaper than JSON.stringify with a key-list replacer. Nested values (extra,
 * alert) take the general path.
 */
export function canonicalForm(event: Record<string, unknown>): string {
  const keys = Object.keys(event);
  for (const k of keys) {
    const v = event[k];
    if (v !== null && typeof v === "object") return canonicalJson(event);
  }
  const shape = keys.join("\u0000");
  let sorted = SORTED_KEYS.get(shape);
  if (sorted === undefined) {
    if (SORTED_KEYS.size >= 1024) SORTED_KEYS.clear();
    sorted = keys.sort();
    // integer-like keys are enumerated numerically whatever the insertion order: those take the key-list replacer
    if (sorted.some((k) => /^\d/.test(k) || k === "__proto__")) sorted = null;
    SORTED_KEYS.set(shape, sorted);
  }
  if (sorted === null || sorted.length !== keys.length) return JSON.stringify(event, Object.keys(event).sort());
  const copy: Record<string, unknown> = {};
  for (const k of sorted) {
    // the shape string is ambiguous when keys contain NUL: the cached list must name exactly this event's keys
    if (!Object.hasOwn(event, k)) return JSON.stringify(event, Object.keys(event).sort());
    copy[k] = event[k];
  }
  return JSON.stringify(copy);
}

const SORTED_KEYS = new Map<string, string[] | null>();

/** An `ingest_error` event: what the engine refused and why (DESIGN §5 action). */
export function ingestErrorEvent(
  receivedAt: string,
  fields: { error_code: string; error_msg: string; src_ip?: string; src_port?: number; component?: string; extra?: Record<string, unknown> },
): NormalizedEvent {
  const event: Record<string, unknown> = {
    timestamp: receivedAt,
    component: fields.component ?? "viw-ingest",
    action: "ingest_error",
    result: "failure",
    severity: "warning",
    error_code: fields.error_code,
    error_msg: fields.error_msg,
  };
  if (fields.src_ip !== undefined) event.src_ip = fields.src_ip;
  if (fields.src_port !== undefined) event.src_port = fields.src_port;
  if (fields.extra) event.extra = fields.extra;
  event.event_id = createHash("sha256").update(canonicalJson(event)).update(randomBytes(16)).digest("hex");
  event.received_at = receivedAt;
  return event as NormalizedEvent;
}
