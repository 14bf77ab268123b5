import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import Fastify, { type FastifyInstance } from "fastify";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../../engine/cli/query.js";
import { UsageError } from "../../../engine/cli/main.js";
import { openStore, queryPlugin } from "../../../engine/siem/index.js";

let data: string;
let admin: FastifyInstance;
let adminUrl: string;

async function viw(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, "write").mockImplementation((s) => ((err += String(s)), true));
  try {
    return { code: await main(argv), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

beforeAll(async () => {
  data = mkdtempSync(join(tmpdir(), "viw-query-cli-"));
  const store = openStore(join(data, "store", "events.db"));
  const t = (m: number) => new Date(Date.now() - m * 60_000).toISOString();
  store.add([
    { index: "viw-auth", event: { event_id: "q1", timestamp: t(5), received_at: t(5), action: "login", result: "failure", user_id: "u1" } },
    { index: "viw-auth", event: { event_id: "q2", timestamp: t(3), received_at: t(3), action: "login", result: "success", user_id: "u1" } },
    { index: "viw-tunnel", event: { event_id: "q3", timestamp: t(120), received_at: t(120), action: "spa_open" } },
  ]);
  admin = Fastify();
  await admin.register(queryPlugin(() => store));
  adminUrl = await admin.listen({ host: "127.0.0.1", port: 0 });
});
afterAll(async () => {
  await admin.close();
  rmSync(data, { recursive: true, force: true });
});

describe("viw query", () => {
  it("reads DATA/store directly: index, since, where, newest first", async () => {
    const r = await viw("--data", data, "--index", "viw-auth", "--since", "1h");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    expect(out.total).toBe(2);
    expect(out.hits.map((h: { event_id: string }) => h.event_id)).toEqual(["q2", "q1"]);
    const w = await viw("--data", data, "--where", JSON.stringify({ "==": [{ var: "result" }, "failure"] }), "--format", "ndjson");
    expect(w.out.trim().split("\n").map((l) => JSON.parse(l).event_id)).toEqual(["q1"]);
    expect(w.err).toBe("1 of 1\n");
    const g = await viw("--data", data, "--group-by", "action");
    expect(JSON.parse(g.out).buckets).toEqual([{ key: "login", count: 2 }, { key: "spa_open", count: 1 }]);
  });

  it("asks the admin port with --admin", async () => {
    const r = await viw("--admin", adminUrl, "--index", "viw-tunnel", "--limit", "5");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ total: 1, hits: [{ event_id: "q3" }] });
    const bad = await viw("--admin", adminUrl, "--since", "last week");
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/since: expected a duration/);
  });

  it("errors: a bad filter names the parameter; no store says where it looked; usage errors exit 2", async () => {
    const bad = await viw("--data", data, "--where", "{oops");
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^viw query: where: not JSON/);
    const none = await viw("--data", join(data, "nope"));
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no event store at .*nope\/store\/events\.db/);
    await expect(viw("--bogus")).rejects.toBeInstanceOf(UsageError);
    await expect(viw("--limit", "x")).rejects.toBeInstanceOf(UsageError);
  });
});
