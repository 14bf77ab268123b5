import { createHash, hash, randomBytes } from "node:crypto";
import { canonicalJson, type DesiredState } from "../../config/index.js";
import type { NormalizedEvent } from "../journal/index.js";
import { noEnrichment, type Enricher } from "./enrich.js";
import { FlatNormalizer } from "./flat.js";
import { eventSerializer, insertLate, LATE_FIELDS, type EventSerializer } from "./canonical.js";
import { schemaMapper, type FieldError, type Mapper } from "./mapper.js";
import { Router } from "./route.js";

/** `json`: the event's RFC 8785 canonical JSON, for the journal (written once, shared by every consumer). */
export type NormalizeResult = { ok: true; index: string; event: NormalizedEvent; json: string } | { ok: false; errors: FieldError[] };

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
  private readonly serialize: EventSerializer = eventSerializer();
  private readonly marks = new Int32Array(LATE_FIELDS.length);
  private readonly flat: FlatNormalizer;
  readonly router: Router;

  constructor(
    routing: DesiredState["routing"],
    private readonly enricher: Enricher = noEnrichment,
  ) {
    this.router = new Router(routing);
    this.flat = new FlatNormalizer(this.router, enricher, enricher !== noEnrichment);
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
    const id = out.event_id;
    let json: string;
    if (typeof id !== "string" || id === "") {
      if (id === "") return { ok: false, errors: [{ field: "event_id", message: "must not be empty" }] };
      // the hashed text becomes the stored JSON: the fields set after hashing are spliced in, not serialized again
      const text = this.serialize(out, this.marks);
      const missing = [out.asn === undefined, out.country === undefined, true, true];
      out.event_id = hash("sha256", text, "hex");
      out.received_at = ctx.receivedAt;
      this.enricher.enrich(out);
      json = insertLate(text, this.marks, missing, out);
    } else {
      if (id.length > 256) return { ok: false, errors: [{ field: "event_id", message: "longer than 256 characters" }] };
      out.received_at = ctx.receivedAt;
      this.enricher.enrich(out);
      json = this.serialize(out);
    }
    // Flattened now (ToNumber flattens a rope in place, as pino's flatstr does): the text outlives several
    // young-generation collections (journal tail), and as a rope of ~10 strings it made each one copy them all.
    void ((json as unknown as number) | 0);
    return { ok: true, index: this.router.route(out.action), event: out as NormalizedEvent, json };
  }

  /**
   * A JSON object's text from `start` (at its `{`) to the end of `text`, when
   * it is a flat event the fast path takes (flat.ts); else undefined, and the
   * caller parses it and calls `normalize`. The result's `event` is parsed
   * from its JSON only when read.
   */
  parseFlat(text: string, start: number, ctx: NormalizeContext): Extract<NormalizeResult, { ok: true }> | undefined {
    return this.flat.normalize(text, start, ctx);
  }

  /**
   * One NDJSON line or syslog JSON MSG, by the general path. The bulk
   * listener stays on it: there the lines are slices of the request body and
   * the fast path's results, made from slices of them, doubled the GC helper
   * threads' work (6 -> 13 us CPU per event) and raised peak memory from
   * ~435 to ~495 MB in the ingest bench; its main-thread gain (20 -> 18 us)
   * did not pay for that. The syslog listener takes `parseFlat`.
   */
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
