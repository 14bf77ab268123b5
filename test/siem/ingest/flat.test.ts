// The flat fast path (engine/siem/normalize/flat.ts) against the general path
// (JSON.parse + mapper + serializer): whenever it takes an event, the stored
// JSON, event_id and index are the general path's, byte for byte, with and
// without the shipped enrichment databases.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { DEFAULT_INDEX, DEFAULT_ROUTES, EVENT_FIELDS } from "../../../engine/config/index.js";
import { createEnricher, Normalizer, type Enricher, type NormalizeResult } from "../../../engine/siem/normalize/index.js";

const routing = { routes: DEFAULT_ROUTES.map((r) => ({ ...r, actions: [...r.actions] })), default: DEFAULT_INDEX };
const SCHEMA = Object.keys(EVENT_FIELDS);

/** The general path only (what `parse` did before the fast path). */
function general(n: Normalizer, text: string, ctx: { receivedAt: string; timestamp?: string }): NormalizeResult | "invalid" {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return "invalid";
  }
  return n.normalize(v, ctx);
}

// value texts: canonical ones the fast path should take, and every kind it must leave to the general path
const str = fc.oneof(
  fc.constantFrom("prod", "login", "tls_handshake", "u-1", "", "x y", "é", "日本", "a\"b", "back\\slash", "tab\tx", "ctl\u0001", "\u2028", "😀", "\ud800"),
  fc.string({ maxLength: 12 }),
);
const valueText = fc.oneof(
  { weight: 6, arbitrary: str.map((s) => JSON.stringify(s)) },
  { weight: 1, arbitrary: fc.constantFrom('"\\u0041"', '"\\/"', '"a\\nb"') },
  // raw (unescaped) texts JSON.stringify never writes: a lone surrogate, control characters (invalid JSON), a pair
  { weight: 1, arbitrary: fc.constantFrom('"\ud800"', '"a\udfffb"', '"tab\there"', '"nl\nx"', '"\u0000"', '"😀"', '"\u2028"') },
  { weight: 3, arbitrary: fc.integer({ min: -100000, max: 100000 }).map(String) },
  { weight: 1, arbitrary: fc.constantFrom("0", "-0", "1.0", "1.5", "1e3", "1E3", "12345678901234567890", "9007199254740993", "0.1", "-1.25e-7", "1e21", "01", "1.", "-", "+1") },
  { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)) },
  { weight: 1, arbitrary: fc.constantFrom("true", "false", "null") },
  { weight: 3, arbitrary: fc.constantFrom('"198.51.100.7"', '"2001:db8::1"', '"2001:DB8::1"', '"[2001:db8::1]"', '"999.1.1.1"', '"::ffff:198.51.100.1"') },
  { weight: 3, arbitrary: fc.constantFrom('"2026-11-22T10:00:00.000Z"', '"2026-11-22T10:00:00Z"', '"2026-02-30T10:00:00.000Z"', '"2026-11-29T10:00:00.000Z"', "1763800000", '"1763800000000"', '"yesterday"') },
  { weight: 1, arbitrary: fc.constantFrom("{}", '{"a":1}', "[1,2]", "[]", '{"b":{"c":[true]}}') },
  { weight: 1, arbitrary: fc.constantFrom('"AS64500"', '"64500"', '"' + "e".repeat(256) + '"', '"' + "e".repeat(257) + '"') },
);
const unknownKey = fc.oneof(fc.constantFrom("pin", "client_version", "zeta", "Alpha", "1", "constructor", "__proto__", "a b", "é", "extra_field"), fc.string({ maxLength: 6 }).map((s) => s.replace(/["\\\u0000-\u001f]/g, "")));
const plain = fc.stringMatching(/^[a-zA-Z0-9_.:@ -]{0,12}$/).map((s) => JSON.stringify(s));
/** Mostly the canonical text of the field's type (what the fast path takes), sometimes a near miss, sometimes anything. */
function typedValue(field: string): fc.Arbitrary<string> {
  const type = EVENT_FIELDS[field];
  const edge: Record<string, fc.Arbitrary<string>> = {
    string: fc.oneof(plain, fc.constantFrom("1", "true", '""')),
    integer: fc.oneof(fc.integer({ min: -1e9, max: 1e9 }).map(String), fc.constantFrom("1.0", "-0", "1e3", "9007199254740993", '"443"', "0")),
    number: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)), fc.constantFrom("1.50", "-0", "1e3", "1E-7", '"1.5"', "2.5")),
    ip: fc.oneof(fc.ipV4().map((s) => JSON.stringify(s)), fc.ipV6().map((s) => JSON.stringify(s)), fc.constantFrom('"2001:DB8::1"', '"[::1]"', '"1.2.3"')),
    time: fc.oneof(fc.date({ min: new Date(0), max: new Date(Date.UTC(2100, 0, 1)), noInvalidDate: true }).map((d) => JSON.stringify(d.toISOString())), fc.constantFrom('"2026-11-22T10:00:00Z"', "1763800000", '"2026-11-22T10:00:00.000+00:00"')),
    object: fc.constantFrom("null", "{}", '{"pin":"x"}', "1"),
  };
  const canonical = edge[type!]!;
  return fc.oneof({ weight: 12, arbitrary: canonical }, { weight: 1, arbitrary: fc.constant("null") }, { weight: 1, arbitrary: valueText });
}
const pair: fc.Arbitrary<[string, string]> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...SCHEMA).chain((k) => typedValue(k).map((v): [string, string] => [k, v])) },
  { weight: 1, arbitrary: fc.tuple(unknownKey, fc.oneof({ weight: 4, arbitrary: plain }, { weight: 1, arbitrary: valueText })) },
);
const objectText = fc.tuple(fc.array(pair, { maxLength: 10 }), fc.constantFrom("", "", "", "", " ", "\n", "\r\n", "x")).map(([pairs, tail]) => "{" + pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",") + "}" + tail);
const ctxArb = fc.record({ receivedAt: fc.constantFrom("2026-11-22T10:00:01.000Z", "2026-11-23T00:00:00.000Z"), timestamp: fc.option(fc.constant("2026-11-22T09:00:00.000Z"), { nil: undefined }) });

/** What a shipper typically sends: every schema field in its canonical form (the bench's events). */
function typical(i: number): Record<string, unknown> {
  return {
    timestamp: new Date(Date.UTC(2026, 10, 22, 10, 0, 0) + i).toISOString(),
    env: "prod", site: "fra1", tenant_id: "t-42", user_id: `u-${i % 5000}`, device_id: `d-${i % 9000}`, session_id: `s-${i}`,
    src_ip: i % 5 === 0 ? `2001:db8::${i.toString(16)}` : `198.51.${(i >> 8) & 255}.${i & 255}`, src_port: 1024 + (i % 60000), dst_ip: "203.0.113.10", dst_port: 443, proto: "tcp",
    component: "gateway", action: i % 3 === 0 ? "login" : "tls_handshake", result: i % 7 === 0 ? "failure" : "success", severity: "info", tls_ja3: "e7d705a3286e19ea42f587b344ee6865",
    ...(i % 4 === 0 ? { duration_ms: i / 8, client_version: "3.1" } : {}),
    ...(i % 11 === 0 ? { event_id: `shipper-${i}` } : {}),
  };
}

describe("flat fast path", () => {
  let enricher: Enricher;
  beforeAll(async () => {
    enricher = await createEnricher({});
  }, 60_000);

  for (const enriched of [false, true]) {
    it(`gives the general path's JSON, event_id and index for every event it takes (property${enriched ? ", enriched" : ""})`, () => {
      const n = enriched ? new Normalizer(routing, enricher) : new Normalizer(routing);
      let taken = 0;
      fc.assert(
        fc.property(objectText, ctxArb, (text, ctx) => {
          const fast = n.parseFlat(text, 0, ctx);
          if (fast === undefined) return;
          taken++;
          const slow = general(n, text, ctx);
          expect(slow).not.toBe("invalid");
          if (slow === "invalid" || !slow.ok) throw new Error(`the fast path took what the general path refuses: ${text}`);
          expect(fast.json).toBe(slow.json);
          expect(fast.index).toBe(slow.index);
          expect(fast.event).toEqual(JSON.parse(slow.json));
          // parse() (the general path, the bulk listener's) answers with the same text
          expect(n.parse(text, ctx)).toMatchObject({ ok: true, json: fast.json });
        }),
        { numRuns: 3000 },
      );
      // the generator is not only giving the fast path what it turns away
      expect(taken).toBeGreaterThan(600);
    });
  }

  it("takes every typical shipper event, enriched as the general path does", () => {
    const n = new Normalizer(routing, enricher);
    for (let i = 0; i < 500; i++) {
      const text = JSON.stringify(typical(i));
      const fast = n.parseFlat(text, 0, { receivedAt: "2026-11-22T10:00:01.000Z" });
      expect(fast, text).toBeDefined();
      const slow = general(n, text, { receivedAt: "2026-11-22T10:00:01.000Z" });
      expect(slow).toMatchObject({ ok: true, json: fast!.json, index: fast!.index });
    }
    // enrichment reaches the fast path's events (a public address the shipped databases know)
    const r = n.parseFlat('{"action":"login","src_ip":"8.8.8.8"}', 0, { receivedAt: "2026-11-22T10:00:01.000Z" })!;
    expect(r.event).toMatchObject({ asn: 15169, country: "US" });
  });

  it("leaves to the general path what needs its coercion or its errors", () => {
    const n = new Normalizer(routing);
    const ctx = { receivedAt: "2026-11-22T10:00:01.000Z" };
    for (const text of ['{"src_port":"443"}', '{"timestamp":"2026-11-22T10:00:00Z"}', '{"src_ip":"2001:DB8::1"}', '{"a":{"b":1}}', '{"action":"a\\"b"}', '{ "action":"login"}', '{"event_id":""}', '{"a":1,"a":2}', '{"__proto__":1}', '{"rc":1.5}', "[1]", "{"]) {
      expect(n.parseFlat(text, 0, ctx), text).toBeUndefined();
    }
    // and parse() still answers with the general path's errors for them
    expect(n.parse('{"rc":1.5}', ctx)).toMatchObject({ ok: false, errors: [{ field: "rc" }] });
    expect(n.parse('{"src_port":"443"}', ctx)).toMatchObject({ ok: true, event: { src_port: 443 } });
  });
});
