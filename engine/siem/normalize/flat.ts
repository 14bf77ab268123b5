import { hash } from "node:crypto";
import { isIP } from "node:net";
import { EVENT_FIELDS } from "../../config/index.js";
import type { NormalizedEvent } from "../journal/index.js";
import type { Enricher } from "./enrich.js";
import type { Router } from "./route.js";

/**
 * The common shipper event — one flat JSON object of schema fields already in
 * their canonical type and form — normalized straight from its text: no
 * JSON.parse, no object per event, no serializer. The canonical JSON is
 * assembled from the input's own value texts, which are already RFC 8785 for
 * such values (a string without escapes or control characters is written by
 * JSON.stringify exactly as it stands; a number whose text is
 * String(Number(text)) is its own canonical form), in the schema's key order,
 * known in advance. On the syslog path JSON.parse, the mapper, the serializer
 * and the garbage they left were two thirds of the main thread's per-event
 * work; this is the product's own hot path, hence hand-written.
 *
 * Anything else — an escape anywhere, a nested object or array, a duplicate or
 * reserved key, a value the mapper would coerce (a number as a string, a
 * non-canonical time or number, an IPv6 in capitals) or refuse — answers
 * undefined and takes the general path (JSON.parse + mapper + serializer),
 * which gives the same result (property-tested against it) and every error.
 */

/** Field kinds the fast path tells apart (EVENT_FIELDS types, with the fields handled specially). */
const enum Kind {
  String,
  Integer,
  Number,
  Ip,
  Time,
  Object,
  EventId,
  ReceivedAt,
}

/** Schema fields in RFC 8785 key order (UTF-16 code units: JS sort), with what goes before each value. */
const FIELDS = Object.keys(EVENT_FIELDS).sort();
const SLOT = new Map<string, number>(FIELDS.map((f, i) => [f, i]));
const KIND: Kind[] = FIELDS.map((f) => {
  if (f === "event_id") return Kind.EventId;
  if (f === "received_at") return Kind.ReceivedAt;
  switch (EVENT_FIELDS[f]) {
    case "string":
      return Kind.String;
    case "integer":
      return Kind.Integer;
    case "number":
      return Kind.Number;
    case "ip":
      return Kind.Ip;
    case "time":
      return Kind.Time;
    default:
      return Kind.Object;
  }
});
const OPEN = FIELDS.map((f) => `{"${f}":`);
const NEXT = FIELDS.map((f) => `,"${f}":`);
const S = (f: string): number => SLOT.get(f)!;
const TIMESTAMP = S("timestamp");
const EVENT_ID = S("event_id");
const RECEIVED_AT = S("received_at");
const ASN = S("asn");
const COUNTRY = S("country");
const SRC_IP = S("src_ip");
const ACTION = S("action");
const EXTRA = S("extra");

/** Same as the mapper's: a toISOString text with a day every month has is kept as it is. */
const CANONICAL_TIME = /^"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z"$/;
/**
 * What the fast path does not take anywhere in the text: escapes, raw control
 * characters (whitespace between tokens too: shippers write compact JSON) and
 * surrogates (JSON.stringify escapes a lone one).
 */
const UNSAFE = /[\u0000-\u001f\\\ud800-\udfff]/g;

/** A normalized event whose object is made from its JSON only if someone asks for it (the journal stores the text). */
class FlatResult {
  readonly ok = true;
  private parsed: NormalizedEvent | undefined;
  constructor(
    readonly index: string,
    readonly json: string,
  ) {}
  get event(): NormalizedEvent {
    return (this.parsed ??= JSON.parse(this.json) as NormalizedEvent);
  }
}

export interface FlatContext {
  receivedAt: string;
  timestamp?: string;
}

/**
 * The flat-event normalizer of one Normalizer (its router and enricher).
 * Not reentrant: it keeps its per-event slots between calls.
 */
export class FlatNormalizer {
  /** Per slot: the value's canonical text for this event (undefined: absent). */
  private readonly vals: (string | undefined)[] = new Array<string | undefined>(FIELDS.length).fill(undefined);
  private quotedAt = { iso: "", text: "" };
  private quotedTs = { iso: "", text: "" };

  constructor(
    private readonly router: Router,
    private readonly enricher: Enricher,
    private readonly enriches: boolean,
  ) {}

  /**
   * `text` from `start` to its end (trailing whitespace allowed) as a
   * normalized event, or undefined when it is not a flat canonical event (the
   * caller then takes the general path).
   */
  normalize(text: string, start: number, ctx: FlatContext): FlatResult | undefined {
    let end = text.length;
    while (end > start && isSpace(text.charCodeAt(end - 1))) end--;
    UNSAFE.lastIndex = start;
    const bad = UNSAFE.exec(text);
    if (bad !== null && bad.index < end) return undefined;
    const vals = this.vals;
    vals.fill(undefined);
    let extraKeys: string[] | undefined;
    let extraVals: string[] | undefined;
    let p = start;
    if (text.charCodeAt(p) !== 0x7b /* { */) return undefined;
    p++;
    if (text.charCodeAt(p) === 0x7d /* } */) p++;
    else {
      for (;;) {
        if (text.charCodeAt(p) !== 0x22) return undefined;
        const keyEnd = text.indexOf('"', p + 1);
        if (keyEnd < 0 || keyEnd >= end) return undefined;
        const key = text.slice(p + 1, keyEnd);
        p = keyEnd + 1;
        if (text.charCodeAt(p) !== 0x3a /* : */) return undefined;
        p++;
        // the value's text, as it stands
        const v0 = p;
        const c = text.charCodeAt(p);
        if (c === 0x22) {
          const q = text.indexOf('"', p + 1);
          if (q < 0 || q >= end) return undefined;
          p = q + 1;
        } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
          p++;
          for (;;) {
            const d = text.charCodeAt(p);
            if ((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) p++;
            else break;
          }
        } else if (text.startsWith("true", p)) p += 4;
        else if (text.startsWith("false", p)) p += 5;
        else if (text.startsWith("null", p)) p += 4;
        else return undefined; // an object, an array, or not JSON
        const raw = text.slice(v0, p);
        const slot = SLOT.get(key);
        if (slot === undefined) {
          if (key === "__proto__" || !canonicalScalar(raw, c)) return undefined;
          (extraKeys ??= []).push(key);
          (extraVals ??= []).push(raw);
        } else if (c === 0x6e /* null: a schema field given as null is left out */) {
          if (vals[slot] !== undefined) return undefined;
        } else {
          if (vals[slot] !== undefined || !fits(KIND[slot]!, raw, c)) return undefined;
          vals[slot] = raw;
        }
        const sep = text.charCodeAt(p);
        p++;
        if (sep === 0x2c /* , */) continue;
        if (sep === 0x7d /* } */) break;
        return undefined;
      }
    }
    if (p !== end) return undefined;
    if (extraKeys !== undefined && !this.extra(extraKeys, extraVals!)) return undefined;
    // the shipper's received_at is checked (fits) but replaced
    vals[RECEIVED_AT] = undefined;
    if (vals[TIMESTAMP] === undefined) vals[TIMESTAMP] = ctx.timestamp !== undefined ? this.quote(this.quotedTs, ctx.timestamp) : this.quote(this.quotedAt, ctx.receivedAt);
    const receivedAt = this.quote(this.quotedAt, ctx.receivedAt);
    let json: string;
    if (vals[EVENT_ID] === undefined) {
      // the id hashes the event as the shipper sent it (plus the defaulted timestamp), before enrichment
      const hashed = this.assemble();
      vals[EVENT_ID] = `"${hash("sha256", hashed, "hex")}"`;
      vals[RECEIVED_AT] = receivedAt;
      this.enrich();
      json = this.assemble();
    } else {
      vals[RECEIVED_AT] = receivedAt;
      this.enrich();
      json = this.assemble();
    }
    // flattened now, as the general path does (the text outlives several young-generation collections)
    void ((json as unknown as number) | 0);
    const action = vals[ACTION];
    return new FlatResult(this.router.route(action === undefined ? undefined : action.slice(1, -1)), json);
  }

  /** The unknown keys as the `extra` object's canonical text (keys sorted); false for a repeated key. */
  private extra(keys: string[], raws: string[]): boolean {
    const order = keys.map((_, i) => i);
    if (keys.length > 1) order.sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0));
    let s = "";
    for (let i = 0; i < order.length; i++) {
      const k = order[i]!;
      if (i > 0 && keys[order[i - 1]!] === keys[k]) return false;
      s += `${i === 0 ? "{" : ","}"${keys[k]}":${raws[k]}`;
    }
    this.vals[EXTRA] = s + "}";
    return true;
  }

  private enrich(): void {
    const vals = this.vals;
    const ip = vals[SRC_IP];
    if (!this.enriches || ip === undefined || (vals[ASN] !== undefined && vals[COUNTRY] !== undefined)) return;
    const probe: Record<string, unknown> = { src_ip: ip.slice(1, -1) };
    if (vals[ASN] !== undefined) probe.asn = 0;
    if (vals[COUNTRY] !== undefined) probe.country = "";
    this.enricher.enrich(probe);
    if (vals[ASN] === undefined && typeof probe.asn === "number" && Number.isFinite(probe.asn)) vals[ASN] = String(probe.asn);
    if (vals[COUNTRY] === undefined && typeof probe.country === "string") vals[COUNTRY] = JSON.stringify(probe.country);
  }

  private assemble(): string {
    const vals = this.vals;
    let s = "";
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i];
      if (v === undefined) continue;
      s += (s === "" ? OPEN[i]! : NEXT[i]!) + v;
    }
    return s === "" ? "{}" : s + "}";
  }

  /** `"iso"`, remembered: one receive time serves a whole read or request. */
  private quote(memo: { iso: string; text: string }, iso: string): string {
    if (memo.iso !== iso) {
      memo.iso = iso;
      memo.text = JSON.stringify(iso);
    }
    return memo.text;
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** A number text that is its own canonical form (and so valid JSON); true, false, null; a string (no escapes: checked). */
function canonicalScalar(raw: string, c: number): boolean {
  if (c === 0x22 || c === 0x74 || c === 0x66 || c === 0x6e) return true;
  const n = Number(raw);
  return Number.isFinite(n) && String(n) === raw;
}

/** Whether the value text is what the mapper would keep unchanged for a field of this kind. */
function fits(kind: Kind, raw: string, c: number): boolean {
  switch (kind) {
    case Kind.String:
      return c === 0x22;
    case Kind.EventId:
      return c === 0x22 && raw.length > 2 && raw.length <= 258;
    case Kind.Integer: {
      if (c === 0x22 || c === 0x74 || c === 0x66) return false;
      const n = Number(raw);
      return Number.isSafeInteger(n) && String(n) === raw;
    }
    case Kind.Number: {
      if (c === 0x22 || c === 0x74 || c === 0x66) return false;
      const n = Number(raw);
      return Number.isFinite(n) && String(n) === raw;
    }
    case Kind.Ip: {
      if (c !== 0x22) return false;
      const ip = raw.slice(1, -1);
      const v = isIP(ip);
      return v === 4 || (v === 6 && ip === ip.toLowerCase());
    }
    case Kind.Time:
    case Kind.ReceivedAt:
      return c === 0x22 && CANONICAL_TIME.test(raw);
    default:
      return false;
  }
}
