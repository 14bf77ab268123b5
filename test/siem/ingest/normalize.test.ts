import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { canonicalJson, DEFAULT_INDEX, DEFAULT_ROUTES } from "../../../engine/config/index.js";
import { createEnricher, MAX_DEPTH, Normalizer } from "../../../engine/siem/normalize/index.js";

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

describe("canonicalForm", () => {
  it("equals canonicalJson (RFC 8785) for flat and nested events", async () => {
    const { canonicalForm } = await import("../../../engine/siem/normalize/index.js");
    const fc = await import("fast-check");
    const flat = fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null)));
    fc.assert(fc.property(flat, (o) => canonicalForm(o) === canonicalJson(o)), { numRuns: 500 });
    fc.assert(fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (o) => canonicalForm(o as Record<string, unknown>) === canonicalJson(o)), { numRuns: 200 });
  });
});
