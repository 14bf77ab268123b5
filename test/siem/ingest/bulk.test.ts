import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { queryEvents } from "../../../engine/siem/index.js";
import { newShipper, signBody, startHarness, type Harness } from "./harness.js";

const run = promisify(execFile);
let h: Harness;
let n = 0;

/** curl as a shipper would run it: mTLS with the given client certificate, signed NDJSON body. */
async function post(body: Buffer, opts: { keyId?: string; signature?: string; client?: string; gzip?: boolean } = {}): Promise<{ status: number; json: any; headers: string }> {
  const file = join(h.dataDir, `body-${++n}`);
  writeFileSync(file, body);
  const client = h.pki.client(opts.client ?? "gw1");
  const args = ["-sS", "--cacert", h.pki.files["int-tls.crt"]!, "--cert", client.certFile, "--key", client.keyFile, "-D", "-", "-o", `${file}.out`, "-w", "%{http_code}",
    "-H", "Content-Type: application/x-ndjson", "--data-binary", `@${file}`, `${h.bulk}/v1/ingest/bulk`];
  if (opts.keyId !== "") args.push("-H", `Viw-Key-Id: ${opts.keyId ?? "vector-gw"}`);
  if (opts.signature !== "") args.push("-H", `Viw-Signature: ${opts.signature ?? signBody(h.shippers.gw, body)}`);
  if (opts.gzip) args.push("-H", "Content-Encoding: gzip");
  const { stdout } = await run("curl", args, { maxBuffer: 1 << 20 });
  const status = Number(stdout.slice(-3));
  const { readFileSync } = await import("node:fs");
  const text = readFileSync(`${file}.out`, "utf8");
  return { status, json: text ? JSON.parse(text) : undefined, headers: stdout.slice(0, -3) };
}

const line = (o: Record<string, unknown>) => JSON.stringify(o);
const metric = async (name: string, labels: Record<string, string>) => {
  const m = (await h.service.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return m?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
};

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe("bulk HTTPS ingest (curl, mTLS, Ed25519)", () => {
  it("accepts signed NDJSON, reports per-line errors, answers only after the journal commit, stores the events", async () => {
    const body = Buffer.from(
      [
        line({ event_id: "bulk-1", timestamp: "2026-11-22T10:00:00Z", action: "login", result: "success", user_id: "u-1", src_ip: "198.51.100.7" }),
        line({ event_id: "bulk-2", timestamp: "2026-11-22T10:00:01Z", action: "login", src_port: "not-a-port" }),
        "",
        line({ event_id: "bulk-3", timestamp: "2026-11-22T10:00:02Z", action: "ovpn_connect", bytes_in: "12" }),
        "{not json",
      ].join("\n") + "\n",
    );
    const before = h.service.journal.lastSeq();
    const r = await post(body);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ accepted: 2, rejected: 2 });
    expect(r.json.errors).toEqual([
      { line: 2, message: 'src_port: expected an integer, got "not-a-port"' },
      { line: 5, message: expect.stringMatching(/^invalid JSON/) },
    ]);
    expect(typeof r.json.received_at).toBe("string");
    // durable before the answer: the journal already holds them
    const recs = h.service.journal.read(before, 100).map((x) => x.event.event_id);
    expect(recs).toEqual(["bulk-1", "bulk-3"]);
    await h.service.idle();
    const q = queryEvents(h.service.store!, { where: { in: [{ var: "event_id" }, ["bulk-1", "bulk-2", "bulk-3"]] } });
    expect(q.total).toBe(2);
    expect(q.hits.map((e) => e.event_id)).toEqual(["bulk-3", "bulk-1"]); // newest first
    expect(queryEvents(h.service.store!, { index: "viw-tunnel-2026.11.22" }).hits[0]).toMatchObject({ event_id: "bulk-3", bytes_in: 12 });
  });

  it("accepts a gzip body signed over the compressed bytes; the same events again are stored once", async () => {
    const raw = Buffer.from(line({ event_id: "gz-1", timestamp: "2026-11-22T11:00:00Z", action: "spa_open" }) + "\n");
    const gz = gzipSync(raw);
    expect((await post(gz, { gzip: true })).json).toMatchObject({ accepted: 1, rejected: 0 });
    expect((await post(raw)).json).toMatchObject({ accepted: 1 });
    await h.service.idle();
    expect(queryEvents(h.service.store!, { where: { "==": [{ var: "event_id" }, "gz-1"] } }).total).toBe(1);
  });

  it("401 for a wrong signature, a missing signature and an unknown shipper: nothing of the body is stored", async () => {
    const body = Buffer.from(line({ event_id: "forged-1", action: "login" }) + "\n");
    const other = newShipper("vector-gw");
    const wrong = await post(body, { signature: signBody(other, body) });
    expect(wrong.status).toBe(401);
    expect(wrong.json.error).toMatchObject({ code: "bad_signature", message: expect.stringContaining("vector-gw") });
    const tampered = await post(Buffer.from(line({ event_id: "forged-1", action: "login", user_id: "x" }) + "\n"), { signature: signBody(h.shippers.gw, body) });
    expect(tampered.status).toBe(401);
    expect((await post(body, { signature: "" })).json.error.code).toBe("no_signature");
    const unknown = await post(body, { keyId: "nobody" });
    expect(unknown.status).toBe(401);
    expect(unknown.json.error.message).toMatch(/unknown shipper `nobody`/);
    await h.service.idle();
    expect(queryEvents(h.service.store!, { where: { "==": [{ var: "event_id" }, "forged-1"] } }).total).toBe(0);
    // the refusals are events too, and counted
    expect(queryEvents(h.service.store!, { where: { "==": [{ var: "error_code" }, "bad_signature"] } }).total).toBe(2);
    expect(await metric("viw_ingest_rejected_total", { path: "bulk", reason: "bad_signature" })).toBe(2);
    expect(await metric("viw_ingest_rejected_total", { path: "bulk", reason: "unknown_shipper" })).toBe(1);
  });

  it("403 when the client certificate is not the shipper's identity; a certificate of an unknown CA fails the handshake", async () => {
    const body = Buffer.from(line({ event_id: "id-1", action: "login" }) + "\n");
    const r = await post(body, { client: "stranger" });
    expect(r.status).toBe(403);
    expect(r.json.error.message).toMatch(/CN=host\.other\.example/);
    await expect(post(body, { client: "rogue-gw" })).rejects.toThrow();
  });

  it("413 for a gzip bomb, too many lines, a body over the limit; invalid UTF-8 and depth bombs are per-line errors", async () => {
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    const r = await post(bomb, { gzip: true });
    expect(r.status).toBe(413);
    expect(r.json.error).toMatchObject({ code: "gzip_too_large", message: expect.stringMatching(/decompressed body exceeds/) });

    const many = Buffer.from("{}\n".repeat(50_001));
    expect((await post(many)).json.error.code).toBe("too_many_lines");

    const big = Buffer.alloc(16 * 1024 * 1024 + 10, 0x20);
    const tooBig = await post(big);
    expect(tooBig.status).toBe(413);

    const mixed = Buffer.concat([
      Buffer.from(line({ event_id: "utf-ok", action: "login" }) + "\n"),
      Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d, 0x0a]),
      Buffer.from('{"x":' + "[".repeat(5000) + "]".repeat(5000) + "}\n"),
    ]);
    const m = await post(mixed);
    expect(m.json).toMatchObject({ accepted: 1, rejected: 2, errors: [{ line: 2, message: "invalid UTF-8" }, { line: 3, message: expect.stringMatching(/x: nested deeper than/) }] });
    expect(await metric("viw_ingest_rejected_total", { path: "bulk", reason: "gzip_too_large" })).toBe(1);
    // the listener is unaffected
    expect((await post(Buffer.from(line({ event_id: "after-bad", action: "login" }) + "\n"))).status).toBe(200);
  });

  it("wrong path and method are named", async () => {
    const { stdout } = await run("curl", ["-sS", "--cacert", h.pki.files["int-tls.crt"]!, "--cert", h.pki.files["gw1.crt"]!, "--key", h.pki.files["gw1.key"]!, `${h.bulk}/v1/ingest/bulk`]);
    expect(JSON.parse(stdout).error.message).toMatch(/use POST/);
  });
});

describe("bulk back-pressure", () => {
  it("503 with Retry-After when the journal is past its high-water mark, and an event says so", async () => {
    const { openJournal } = await import("../../../engine/siem/index.js");
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "viw-bp-"));
    const journal = openJournal(join(dir, "journal.db"), { consumers: ["store", "stuck"], highWater: 5 });
    const saved = h;
    const bp = await startHarness({ journal }, undefined, dir);
    h = bp;
    try {
      const body = Buffer.from(Array.from({ length: 6 }, (_, i) => line({ event_id: `bp-${i}`, action: "login" })).join("\n"));
      expect((await post(body)).status).toBe(200);
      const r = await post(Buffer.from(line({ event_id: "bp-x", action: "login" })));
      expect(r.status).toBe(503);
      expect(r.headers).toMatch(/retry-after: 1/i);
      expect(r.json.error.code).toBe("backpressure");
      await new Promise((res) => setTimeout(res, 1300));
      expect(journal.read(0, 100).some((x) => x.event.error_code === "backpressure_on")).toBe(true);
    } finally {
      h = saved;
      await bp.close();
      await journal.close();
    }
  });
});
