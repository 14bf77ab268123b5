import { afterEach, describe, expect, it } from "vitest";
import Fastify from "fastify";
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { aggregateEvents, explainQuery, openStore, queryEvents, queryPlugin, QueryError, type EventStore } from "../../../engine/siem/index.js";

const dirs: string[] = [];
const stores: EventStore[] = [];
function store(): EventStore {
  const d = mkdtempSync(join(tmpdir(), "viw-store-"));
  dirs.push(d);
  const s = openStore(join(d, "store", "events.db"));
  stores.push(s);
  return s;
}
afterEach(() => {
  for (const s of stores.splice(0)) if (s.db.open) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const now = new Date("2026-11-22T12:00:00.000Z");
const ev = (id: string, index: string, ts: string, more: Record<string, unknown> = {}) => ({ index, event: { event_id: id, timestamp: ts, received_at: ts, ...more } });

function seed(s: EventStore) {
  s.add([
    ev("a1", "viw-auth", "2026-11-22T11:59:00.000Z", { action: "login", result: "failure", user_id: "u1", component: "backend" }),
    ev("a2", "viw-auth", "2026-11-22T11:30:00.000Z", { action: "login", result: "success", user_id: "u1", component: "backend" }),
    ev("a3", "viw-auth", "2026-11-21T23:00:00.000Z", { action: "otp_verify", result: "failure", user_id: "u2", component: "backend" }),
    ev("t1", "viw-tunnel", "2026-11-22T11:58:00.000Z", { action: "ovpn_connect", user_id: "u1", extra: { client_version: "3.1" } }),
    ev("t2", "viw-tunnel", "2026-10-01T00:00:00.000Z", { action: "spa_open" }),
  ]);
}

describe("embedded store", () => {
  it("is idempotent by event_id", () => {
    const s = store();
    expect(s.add([ev("x", "viw-auth", "2026-11-22T10:00:00Z"), ev("x", "viw-auth", "2026-11-22T10:00:00Z")])).toBe(1);
    expect(s.add([ev("x", "viw-auth", "2026-11-22T10:00:00Z"), ev("y", "viw-auth", "2026-11-22T10:00:00Z")])).toBe(1);
    expect(s.count()).toBe(2);
  });

  it("is exactly-once by the full event_id when ids share an integer key (probing), and across a restart", () => {
    const s = store();
    // the first 13 hex digits are the key: these three share it
    const a = "0123456789abc" + "0".repeat(51);
    const b = "0123456789abc" + "1".repeat(51);
    const c = "0123456789abc";
    expect(s.add([ev(a, "viw-auth", "2026-11-22T10:00:00Z"), ev(b, "viw-auth", "2026-11-22T10:00:01Z")])).toBe(2);
    expect(s.add([ev(b, "viw-auth", "2026-11-22T10:00:01Z"), ev(c, "viw-auth", "2026-11-22T10:00:02Z"), ev(a, "viw-auth", "2026-11-22T10:00:00Z")])).toBe(1);
    // text ids (not hex) are hashed: many similar ones stay distinct and each is stored once
    const ids = Array.from({ length: 2000 }, (_, i) => `b-${i}`);
    expect(s.add(ids.map((id) => ev(id, "viw-auth", "2026-11-22T10:00:00Z")))).toBe(2000);
    expect(s.add(ids.map((id) => ev(id, "viw-auth", "2026-11-22T10:00:00Z")))).toBe(0);
    const file = s.file;
    s.close();
    const again = openStore(file);
    stores.push(again);
    expect(again.add([ev(c, "viw-auth", "2026-11-22T10:00:02Z"), ev(b, "viw-auth", "2026-11-22T10:00:01Z")])).toBe(0);
    expect(again.count()).toBe(2003);
    expect((again.db.prepare("SELECT COUNT(DISTINCT event_id) AS n FROM events").get() as { n: number }).n).toBe(2003);
  });

  it("is exactly-once when shared keys and repeats fall inside one multi-row insert, on both threads", async () => {
    // 10 keys shared by 13 ids each, every id twice, shuffled: a 50-row statement holds collisions and repeats
    const ids = Array.from({ length: 130 }, (_, i) => `${(0x1000000000000 + (i % 10)).toString(16)}${i.toString(16).padStart(51, "0")}`);
    const order = [...ids, ...ids].map((id, i) => ({ id, k: (i * 7919) % 260 })).sort((a, b) => a.k - b.k).map((x) => x.id);
    const rows = order.map((id, i) => ev(id, "viw-auth", new Date(Date.UTC(2026, 10, 22, 10) + i).toISOString(), { action: "login", user_id: `u${i % 3}` }));
    const s = store();
    expect(s.add(rows.slice(0, 150))).toBe(new Set(order.slice(0, 150)).size);
    expect(s.add(rows)).toBe(130 - new Set(order.slice(0, 150)).size);
    expect(s.add(rows)).toBe(0);
    expect((s.db.prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d, COUNT(DISTINCT eid) AS k FROM events").get() as object)).toEqual({ n: 130, d: 130, k: 130 });
    // the writer thread (journal text) agrees, batch after batch
    const w = store();
    const text = (xs: typeof rows) => xs.map((r) => `${r.index}\t${JSON.stringify(r.event)}\n`).join("");
    expect(await w.writeText(text(rows.slice(0, 199)))).toBe(new Set(order.slice(0, 199)).size);
    expect(await w.writeText(text(rows))).toBe(130 - new Set(order.slice(0, 199)).size);
    expect((w.db.prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM events").get() as object)).toEqual({ n: 130, d: 130 });
    // each row carries its own columns (not a neighbour's from the same statement)
    const bad = w.db.prepare("SELECT COUNT(*) AS n FROM events WHERE json_extract(doc, '$.event_id') != event_id OR json_extract(doc, '$.user_id') != user_id OR ts != unixepoch(json_extract(doc, '$.timestamp'), 'subsec') * 1000").get() as { n: number };
    expect(bad.n).toBe(0);
  });

  it("upgrades a store written with event_id as its unique key, keeping rows and their order", () => {
    const d = mkdtempSync(join(tmpdir(), "viw-store-"));
    dirs.push(d);
    const file = join(d, "events.db");
    const old = new Database(file);
    old.exec(`CREATE TABLE events (rid INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, idx TEXT NOT NULL, ts INTEGER NOT NULL, component TEXT, action TEXT, user_id TEXT, doc TEXT NOT NULL);
      CREATE INDEX events_ts ON events (ts); CREATE INDEX events_idx_ts ON events (idx, ts);`);
    const put = old.prepare("INSERT INTO events (event_id, idx, ts, doc) VALUES (?, ?, ?, ?)");
    for (const [id, t] of [["o1", "2026-11-22T10:00:00.000Z"], ["o2", "2026-11-22T10:00:00.000Z"]] as const) put.run(id, "viw-auth", Date.parse(t), JSON.stringify({ event_id: id, timestamp: t, received_at: t }));
    old.close();
    const s = openStore(file);
    stores.push(s);
    expect(s.add([ev("o2", "viw-auth", "2026-11-22T10:00:00.000Z"), ev("o3", "viw-auth", "2026-11-22T10:00:00.000Z")])).toBe(1);
    // same time: arrival order is kept (newest first)
    expect(queryEvents(s, {}, now).hits.map((e) => e.event_id)).toEqual(["o3", "o2", "o1"]);
    const names = (s.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'").all() as { name: string }[]).map((r) => r.name);
    expect(names).toEqual(expect.arrayContaining(["events_ts", "events_idx_ts", "events_component_action_ts", "events_user_ts"]));
  });

  it("reads a flat event's columns from its JSON text exactly as JSON.parse would, and defers to it otherwise (property)", async () => {
    const { fieldsOf } = await import("../../../engine/siem/store/store.js");
    const fc = (await import("fast-check")).default;
    const nasty = fc.string({ unit: fc.constantFrom("\"", "\\", ",", ":", "{", "[", "a", "é", "😀", "\n", '","action":"x', '\\"', "\u2028") });
    const str = fc.oneof(fc.string({ unit: "binary" }), nasty);
    const keys = ["event_id", "timestamp", "received_at", "component", "action", "user_id", "error_msg", "extra", "x,\"action\":"];
    const value = fc.oneof({ weight: 8, arbitrary: str }, { weight: 1, arbitrary: fc.integer() }, { weight: 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.jsonValue() });
    const wanted = ["event_id", "timestamp", "received_at", "component", "action", "user_id"] as const;
    let fast = 0;
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...keys), value), fc.option(fc.record({ event_id: str, timestamp: str, received_at: str }), { nil: undefined }), (more, base) => {
        const doc = JSON.stringify({ ...base, ...more });
        const e = JSON.parse(doc) as Record<string, unknown>;
        const f = fieldsOf(doc) as Record<string, unknown> | undefined;
        const flat = !doc.slice(1).includes("{") && !doc.includes("[");
        const plain = wanted.every((k) => e[k] === undefined || typeof e[k] === "string") && ["event_id", "timestamp", "received_at"].every((k) => typeof e[k] === "string");
        if (flat && plain) {
          fast++;
          return f !== undefined && wanted.every((k) => f[k] === e[k]);
        }
        return f === undefined || wanted.every((k) => f[k] === (typeof e[k] === "string" ? e[k] : undefined));
      }),
      { numRuns: 5000 },
    );
    expect(fast).toBeGreaterThan(100);
  });

  it("has indexes for time, index, component/action and user, and uses them", () => {
    const s = store();
    const names = (s.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'").all() as { name: string }[]).map((r) => r.name);
    expect(names).toEqual(expect.arrayContaining(["events_ts", "events_idx_ts", "events_component_action_ts", "events_user_ts"]));
    const plan = s.db.prepare("EXPLAIN QUERY PLAN SELECT doc FROM events WHERE idx = ? AND ts >= ? ORDER BY ts DESC").all("viw-auth", 0) as { detail: string }[];
    expect(plan.map((p) => p.detail).join(" ")).toMatch(/events_idx_ts/);
    // /v1/query: equalities on user or component/action in the JSON Logic filter reach the indexes
    seed(s);
    const byUser = { where: { "==": [{ var: "user_id" }, "u1"] }, since: "2026-11-01T00:00:00Z" };
    expect(explainQuery(s, byUser, now).join(" ")).toMatch(/events_user_ts/);
    const byComponent = { where: { and: [{ "==": [{ var: "component" }, "backend"] }, { in: [{ var: "action" }, ["login", "otp_verify"]] }, { "==": [{ var: "result" }, "failure"] }] } };
    expect(explainQuery(s, byComponent, now).join(" ")).toMatch(/events_component_action_ts/);
    // the same answers as a filter SQL cannot take (a computed value)
    const computed = (field: string, value: string) => ({ "==": [{ var: field }, { cat: [value.slice(0, 1), value.slice(1)] }] });
    expect(queryEvents(s, byUser, now)).toEqual(queryEvents(s, { ...byUser, where: computed("user_id", "u1") }, now));
    expect(queryEvents(s, byUser, now).total).toBe(3);
    expect(queryEvents(s, byComponent, now)).toEqual(queryEvents(s, { where: { and: [computed("component", "backend"), { in: [{ var: "action" }, { merge: [["login"], ["otp_verify"]] }] }, { "==": [{ var: "result" }, "failure"] }] } }, now));
    expect(queryEvents(s, byComponent, now).hits.map((e) => e.event_id)).toEqual(["a1", "a3"]);
  });

  it("queries: index (all days or one day, globs), since/until, JSON Logic, limit, newest first, total", () => {
    const s = store();
    seed(s);
    expect(queryEvents(s, {}, now).hits.map((e) => e.event_id)).toEqual(["a1", "t1", "a2", "a3", "t2"]);
    expect(queryEvents(s, { index: "viw-auth" }, now).total).toBe(3);
    expect(queryEvents(s, { index: "viw-auth-2026.11.22" }, now).hits.map((e) => e.event_id)).toEqual(["a1", "a2"]);
    expect(queryEvents(s, { index: "viw-*" }, now).total).toBe(5);
    expect(queryEvents(s, { since: "1h" }, now).hits.map((e) => e.event_id)).toEqual(["a1", "t1", "a2"]);
    expect(queryEvents(s, { since: "2026-11-21T00:00:00Z", until: "2026-11-22T11:59:00Z" }, now).hits.map((e) => e.event_id)).toEqual(["t1", "a2", "a3"]);
    expect(queryEvents(s, { where: JSON.stringify({ and: [{ "==": [{ var: "result" }, "failure"] }, { "==": [{ var: "user_id" }, "u1"] }] }) }, now).hits.map((e) => e.event_id)).toEqual(["a1"]);
    expect(queryEvents(s, { where: { "==": [{ var: "extra.client_version" }, "3.1"] } }, now).hits.map((e) => e.event_id)).toEqual(["t1"]);
    expect(queryEvents(s, { limit: 2 }, now)).toMatchObject({ total: 5, hits: [{ event_id: "a1" }, { event_id: "t1" }] });
    expect(queryEvents(s, { limit: 0, where: { "==": [{ var: "user_id" }, "u1"] } }, now)).toEqual({ total: 3, hits: [] });
  });

  it("names the bad query parameter", () => {
    const s = store();
    const err = (q: Parameters<typeof queryEvents>[1]) => {
      try {
        queryEvents(s, q, now);
      } catch (e) {
        return e as QueryError;
      }
      throw new Error("no error");
    };
    expect(err({ since: "yesterday" })).toMatchObject({ field: "since" });
    expect(err({ where: "{nope" })).toMatchObject({ field: "where", message: expect.stringMatching(/not JSON/) });
    expect(err({ where: { frobnicate: [1] } })).toMatchObject({ field: "where", message: expect.stringMatching(/unknown operator `frobnicate`/) });
    expect(err({ limit: -1 })).toMatchObject({ field: "limit" });
    expect(err({ index: "viw auth; drop" })).toMatchObject({ field: "index" });
  });

  it("aggregates: count by field and by time bucket", () => {
    const s = store();
    seed(s);
    expect(aggregateEvents(s, { index: "viw-auth", groupBy: "result" }, now)).toEqual({ total: 3, buckets: [{ key: "failure", count: 2 }, { key: "success", count: 1 }] });
    expect(aggregateEvents(s, { since: "1h", interval: "1h" }, now).buckets).toEqual([{ time: "2026-11-22T11:00:00.000Z", count: 3 }]);
  });

  it("retention deletes whole days before the period, with per-index overrides", () => {
    const s = store();
    seed(s);
    s.add([ev("old-edge", "viw-auth", "2025-10-22T23:59:59.000Z"), ev("keep-edge", "viw-auth", "2025-10-23T00:00:01.000Z")]);
    // 13mo before 2026-11-22T12:00 is 2025-10-22T12:00: the whole day 2025-10-22 is kept, days before it go
    expect(s.enforceRetention({ events: "13mo" }, now)).toBe(0);
    s.add([ev("gone", "viw-auth", "2025-10-21T23:59:59.000Z")]);
    expect(s.enforceRetention({ events: "13mo" }, now)).toBe(1);
    expect(s.enforceRetention({ events: "13mo", indices: { "viw-tunnel": "30d" } }, now)).toBe(1); // t2 (2026-10-01)
    expect(queryEvents(s, { index: "viw-tunnel" }, now).hits.map((e) => e.event_id)).toEqual(["t1"]);
    expect(s.count()).toBe(6);
  });

  it("GET /v1/query: the admin port's handler, 400 naming the parameter", async () => {
    const s = store();
    seed(s);
    const app = Fastify();
    await app.register(queryPlugin(() => s));
    const ok = await app.inject({ method: "GET", url: `/v1/query?index=viw-auth&where=${encodeURIComponent(JSON.stringify({ "==": [{ var: "user_id" }, "u2"] }))}&limit=10` });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ total: 1, hits: [{ event_id: "a3" }] });
    const grouped = await app.inject({ method: "GET", url: "/v1/query?index=viw-auth&group_by=user_id" });
    expect(grouped.json().buckets).toEqual([{ key: "u1", count: 2 }, { key: "u2", count: 1 }]);
    const bad = await app.inject({ method: "GET", url: "/v1/query?limit=lots" });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toEqual({ error: { code: "bad_query", message: 'limit: expected an integer, got "lots"', field: "limit" } });
    await app.close();
  });
});
