import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { canonicalJson, DEFAULT_INDEX, DEFAULT_ROUTES, EVENT_FIELDS } from "../../../engine/config/index.js";
import { createEnricher, eventSerializer, insertLate, LATE_FIELDS, MAX_DEPTH, Normalizer } from "../../../engine/siem/normalize/index.js";

const routing = { routes: DEFAULT_ROUTES.map((r) => ({ ...r, actions: [...r.actions] })), default: DEFAULT_INDEX };
const ctx = { receivedAt: "2026-11-22T10:00:00.000Z" };

describe("normalizer", () => {
  const n = new Normalizer(routing);

  it("coerces schema fields, keeps unknown fields under extra, routes by action", () => {
    const r = n.normalize(
      { timestamp: "2026-11-22T09:59:59Z", action: "ovpn_connect", src_ip: "[2001:DB8::1]", src_port: "443", bytes_in: 10, duration_ms: "1.5", asn: "AS64500", client_version: "3.1", extra: { pin: "abc" } },
      ctx,
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.index).toBe("viw-tunnel");
    expect(r.event).toMatchObject({ timestamp: "2026-11-22T09:59:59.000Z", src_ip: "2001:db8::1", src_port: 443, bytes_in: 10, duration_ms: 1.5, asn: 64500, received_at: ctx.receivedAt });
    expect(r.event.extra).toEqual({ client_version: "3.1", pin: "abc" });
  });

  it("routes with the table: exact, glob and default", () => {
    const route = (action?: string) => (n.normalize({ action }, ctx) as { index: string }).index;
    expect(route("login")).toBe("viw-auth");
    expect(route("cert_issue")).toBe("viw-pki");
    expect(route("tls_session_terminate")).toBe("viw-pki");
    expect(route("alert")).toBe("viw-alerts");
    expect(route("something_new")).toBe("viw-other");
    expect(route(undefined)).toBe("viw-other");
  });

  it("reports every coercion error by field and stores nothing half-converted", () => {
    const r = n.normalize({ src_port: "http", src_ip: "999.1.1.1", timestamp: "yesterday", rc: 1.5, user_id: { a: 1 } }, ctx);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.field).sort()).toEqual(["rc", "src_ip", "src_port", "timestamp", "user_id"]);
    expect(r.errors.find((e) => e.field === "src_port")!.message).toMatch(/expected an integer, got "http"/);
  });

  it("event_id: the shipper's, else SHA-256 of the canonical event (without received_at), equal whenever received", () => {
    expect((n.normalize({ event_id: "abc", action: "login" }, ctx) as { event: { event_id: string } }).event.event_id).toBe("abc");
    const a = n.normalize({ action: "login", user_id: "u1", timestamp: "2026-11-22T09:00:00Z" }, ctx);
    const b = n.normalize({ timestamp: "2026-11-22T09:00:00.000Z", user_id: "u1", action: "login" }, { receivedAt: "2026-11-22T11:00:00.000Z" });
    expect(a.ok && b.ok).toBe(true);
    if (!a.ok || !b.ok) return;
    expect(a.event.event_id).toBe(b.event.event_id);
    const expected = createHash("sha256").update(canonicalJson({ action: "login", user_id: "u1", timestamp: "2026-11-22T09:00:00.000Z" })).digest("hex");
    expect(a.event.event_id).toBe(expected);
  });

  it("refuses non-objects, JSON depth bombs and prototype keys", () => {
    expect(n.parse("[1,2]", ctx)).toMatchObject({ ok: false, errors: [{ message: /expected a JSON object/ }] });
    expect(n.parse("{bad", ctx)).toMatchObject({ ok: false, errors: [{ message: /invalid JSON/ }] });
    const bomb = '{"x":' + "[".repeat(100_000) + "]".repeat(100_000) + "}";
    expect(n.parse(bomb, ctx)).toMatchObject({ ok: false, errors: [{ field: "x", message: `nested deeper than ${MAX_DEPTH} levels` }] });
    const proto = n.parse('{"__proto__":{"polluted":1},"action":"login"}', ctx);
    expect(proto.ok).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("enriches country from src_ip with the shipped MMDB, never overwriting the shipper's value", async () => {
    const en = new Normalizer(routing, await createEnricher());
    const r = en.normalize({ src_ip: "8.8.8.8" }, ctx);
    expect(r.ok && r.event.country).toBe("US");
    const kept = en.normalize({ src_ip: "8.8.8.8", country: "FR" }, ctx);
    expect(kept.ok && kept.event.country).toBe("FR");
    const priv = en.normalize({ src_ip: "10.1.2.3" }, ctx);
    expect(priv.ok && priv.event.country).toBeUndefined();
    // enrichment does not change the event id
    expect(r.ok && r.event.event_id).toBe((n.normalize({ src_ip: "8.8.8.8" }, ctx) as { event: { event_id: string } }).event.event_id);
  });
});

describe("ASN from the shipped range table (@ip-location-db/asn, CC BY 4.0)", () => {
  it("agrees with the package's own dotted-address CSV on both ends of sampled IPv4 and IPv6 ranges", async () => {
    const { AsnTable, defaultAsnCsvDir } = await import("../../../engine/siem/normalize/index.js");
    const { readFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const dir = defaultAsnCsvDir();
    const t0 = performance.now();
    const table = await AsnTable.load(dir);
    console.log(`ASN table loaded in ${(performance.now() - t0).toFixed(0)} ms`);
    for (const file of ["asn-ipv4.csv", "asn-ipv6.csv"]) {
      const lines = readFileSync(join(dir, file), "utf8").trim().split("\n");
      // every 997th range: start and end map to its ASN (the dotted file is parsed independently of the numeric one)
      for (let i = 0; i < lines.length; i += 997) {
        const [start, end, asn] = lines[i]!.split(",");
        expect(table.lookup(start!), `${file} line ${i + 1} start`).toBe(Number(asn));
        expect(table.lookup(end!), `${file} line ${i + 1} end`).toBe(Number(asn));
      }
    }
    expect(table.lookup("1.0.0.1")).toBe(13335); // the first range of the database: Cloudflare's 1.0.0.0/24
    expect(table.lookup("10.1.2.3")).toBeUndefined(); // private space is announced by no one
    expect(table.lookup("::1")).toBeUndefined();
  });

  it("enriches asn from src_ip, never overwriting the shipper's value, with the event id unchanged", async () => {
    const en = new Normalizer(routing, await createEnricher());
    const r = en.normalize({ src_ip: "1.0.0.1" }, ctx);
    expect(r.ok && r.event.asn).toBe(13335);
    const kept = en.normalize({ src_ip: "1.0.0.1", asn: "AS64500" }, ctx);
    expect(kept.ok && kept.event.asn).toBe(64500);
    const priv = en.normalize({ src_ip: "192.168.1.1" }, ctx);
    expect(priv.ok && priv.event.asn).toBeUndefined();
    expect(r.ok && r.event.event_id).toBe((new Normalizer(routing).normalize({ src_ip: "1.0.0.1" }, ctx) as { event: { event_id: string } }).event.event_id);
    const off = new Normalizer(routing, await createEnricher({ asnCsvDir: false }));
    const none = off.normalize({ src_ip: "1.0.0.1" }, ctx);
    expect(none.ok && none.event.asn).toBeUndefined();
  });
});

describe("time coercion", () => {
  it("keeps a time already in toISOString form and agrees with Date.parse + toISOString on any ISO-shaped text", async () => {
    const { coerce } = await import("../../../engine/siem/normalize/mapper.js");
    const d = (n: number, w = 2) => fc.integer({ min: 0, max: n }).map((x) => String(x).padStart(w, "0"));
    const shaped = fc.tuple(d(9999, 4), d(19), d(39), d(29), d(69), d(69), d(999, 3)).map(([y, mo, da, h, mi, se, ms]) => `${y}-${mo}-${da}T${h}:${mi}:${se}.${ms}Z`);
    fc.assert(
      fc.property(fc.oneof(shaped, fc.date({ min: new Date(0), max: new Date("9999-12-31T23:59:59.999Z"), noInvalidDate: true }).map((x) => x.toISOString())), (text) => {
        const errors: { field: string; message: string }[] = [];
        const got = coerce.time(text, "timestamp", errors);
        const ms = Date.parse(text);
        const want = Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
        return got === want && errors.length === (want === undefined ? 1 : 0);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("canonical event JSON (generated serializer)", () => {
  const fields = Object.keys(EVENT_FIELDS);
  // values as shippers send them after coercion, and worse: unicode, escapes, lone surrogates, -0, huge and tiny numbers, nulls, nesting
  const scalar = fc.oneof(
    fc.string({ unit: "binary" }),
    fc.string({ unit: fc.constantFrom("\"", "\\", "\n", "\u0000", "\u001f", "\u2028", "é", "😀", "\ud800", "\udfff", "a", "<", "/") }),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom(-0, 1e21, 1e-7, 5e-324, Number.MAX_SAFE_INTEGER, 0.1 + 0.2),
    fc.boolean(),
    fc.constant(null),
  );
  const value = fc.oneof({ weight: 6, arbitrary: scalar }, { weight: 1, arbitrary: fc.jsonValue() }, { weight: 1, arbitrary: fc.dictionary(fc.string({ unit: "binary" }), fc.jsonValue()) });
  const event = fc.dictionary(fc.constantFrom(...fields), value, { maxKeys: fields.length });

  it("equals canonicalJson (RFC 8785) byte for byte on random events, fields missing or present", () => {
    const ser = eventSerializer();
    fc.assert(fc.property(event, (o) => ser(o) === canonicalJson(o)), { numRuns: 3000 });
    expect(ser({})).toBe("{}");
    expect(ser({ action: undefined, user_id: "u" })).toBe('{"user_id":"u"}');
  });

  it("splicing the late fields into the hashed text gives the canonical JSON of the finished event", () => {
    const ser = eventSerializer();
    const late = fc.record({ asn: fc.option(fc.integer({ min: 1, max: 4e9 }), { nil: undefined }), country: fc.option(fc.string({ unit: "binary" }), { nil: undefined }), event_id: fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 64, maxLength: 64 }), received_at: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()) });
    fc.assert(
      fc.property(event, late, (o, add) => {
        const base: Record<string, unknown> = { ...o };
        for (const k of LATE_FIELDS) delete base[k];
        if (Math.abs(Number(add.asn)) % 2 === 1) base.asn = 7; // sometimes the shipper already gave one
        const marks = new Int32Array(LATE_FIELDS.length);
        const text = ser(base, marks);
        const missing = LATE_FIELDS.map((k) => base[k] === undefined);
        for (const k of LATE_FIELDS) if (base[k] === undefined && add[k] !== undefined) base[k] = add[k];
        return insertLate(text, marks, missing, base) === canonicalJson(base);
      }),
      { numRuns: 3000 },
    );
  });

  it("the normalizer's JSON is the canonical JSON of its event; event_id is SHA-256 of the canonical event before event_id, received_at and enrichment", async () => {
    const en = new Normalizer(routing, await createEnricher());
    for (const src of [{ src_ip: "1.0.0.1", action: "login", user_id: "ü\"x" }, { src_ip: "1.0.0.1" }, {}, { event_id: "given", extra: { a: [1, { b: null }] } }, { asn: 5, src_ip: "1.0.0.1", bytes_in: "12" }]) {
      const r = en.normalize({ ...src }, ctx);
      expect(r.ok).toBe(true);
      if (!r.ok) continue;
      expect(r.json).toBe(canonicalJson(r.event));
      if (src.event_id === undefined) {
        const { event_id, received_at, ...rest } = r.event;
        const before: Record<string, unknown> = { ...rest };
        if (!("asn" in src)) delete before.asn;
        delete before.country;
        expect(event_id).toBe(createHash("sha256").update(canonicalJson(before)).digest("hex"));
        expect(received_at).toBe(ctx.receivedAt);
      }
    }
  });
});
