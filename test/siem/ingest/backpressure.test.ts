// Back-pressure with real clients: curl for bulk, `openssl s_client` for syslog/TLS,
// and a real full filesystem (a small tmpfs mounted by the test; skipped when mounting is not permitted).
import { afterEach, describe, expect, it } from "vitest";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { openJournal, type LocalJournal } from "../../../engine/siem/index.js";
import { signBody, startHarness, type Harness } from "./harness.js";
import { makePki } from "./pki.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Reply {
  status: number;
  headers: string;
  json: any;
}

/** curl as a shipper runs it: mTLS, signed NDJSON body. */
async function curlPost(h: Harness, body: Buffer, dir: string, name: string): Promise<Reply> {
  const file = join(dir, name);
  writeFileSync(file, body);
  const c = h.pki.client("gw1");
  const { stdout } = await run("curl", ["-sS", "--cacert", h.pki.files["int-tls.crt"]!, "--cert", c.certFile, "--key", c.keyFile, "-D", "-", "-o", `${file}.out`, "-w", "%{http_code}",
    "-H", `Viw-Key-Id: vector-gw`, "-H", `Viw-Signature: ${signBody(h.shippers.gw, body)}`, "--data-binary", `@${file}`, `${h.bulk}/v1/ingest/bulk`], { maxBuffer: 1 << 20 });
  const text = readFileSync(`${file}.out`, "utf8");
  return { status: Number(stdout.slice(-3)), headers: stdout.slice(0, -3), json: text ? JSON.parse(text) : undefined };
}

const ndjson = (prefix: string, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => JSON.stringify({ event_id: `${prefix}-${i}`, action: "login", user_id: `u-${i}`, pad: "p".repeat(300) })).join("\n") + "\n");

/** Octet-counted RFC 5424 frames with JSON MSGs. */
function frames(prefix: string, n: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const msg = `<134>1 2026-11-22T10:00:00.000Z gw1 vpn-gw - - - ${JSON.stringify({ event_id: `${prefix}-${i}`, action: "gw_health", pad: "q".repeat(200) })}`;
    parts.push(Buffer.from(`${Buffer.byteLength(msg)} ${msg}`));
  }
  return Buffer.concat(parts);
}

/** openssl s_client sending a file of frames with the gw1 client certificate; killed by the cleanup. */
function opensslSend(h: Harness, file: string): ChildProcess {
  const c = h.pki.client("gw1");
  const p = spawn("sh", ["-c", `exec openssl s_client -quiet -connect 127.0.0.1:${h.syslogPort} -CAfile ${h.pki.files["int-tls.crt"]} -cert ${c.certFile} -key ${c.keyFile} < ${file}`], { stdio: "ignore" });
  cleanups.push(() => {
    p.kill("SIGKILL");
  });
  return p;
}

/** Events in the journal still held (compaction removes what every consumer passed: use for short windows only). */
function idsIn(journal: LocalJournal, prefix: string): string[] {
  return journal.readRaw(0, 10_000_000).map((r) => JSON.parse(r.json).event_id as string).filter((id) => id.startsWith(prefix));
}

/** Events with this id prefix in the embedded store. */
function stored(h: Harness, prefix: string): number {
  return (h.service.store!.db.prepare("SELECT COUNT(*) AS n FROM events WHERE event_id GLOB ?").get(`${prefix}*`) as { n: number }).n;
}

const metric = async (h: Harness, name: string, labels: Record<string, string>) => {
  const m = (await h.service.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return m?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
};

/** Waits until `fn` stops changing for `stableMs` (polled), returns the value. */
async function plateau(fn: () => number, stableMs: number, timeoutMs = 30_000): Promise<number> {
  let v = fn();
  let since = Date.now();
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    await sleep(100);
    const now = fn();
    if (now !== v) {
      v = now;
      since = Date.now();
    } else if (Date.now() - since >= stableMs) return v;
  }
  throw new Error("value never settled");
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = "condition"): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe("bulk: too many bytes in flight", () => {
  it("concurrent curl uploads past maxInFlightBytes get 429 with Retry-After; retried, every event is stored once", async () => {
    const h = await startHarness({ bulk: { maxInFlightBytes: 1_500_000 } });
    cleanups.push(() => h.close());
    const dir = mkdtempSync(join(tmpdir(), "viw-429-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const bodies = Array.from({ length: 6 }, (_, k) => ndjson(`conc${k}`, 3000)); // ~1 MB each
    let refused: Reply | undefined;
    const pending = new Set(bodies.keys());
    for (let round = 0; pending.size > 0 && round < 50; round++) {
      const replies = await Promise.all([...pending].map(async (k) => [k, await curlPost(h, bodies[k]!, dir, `b${k}-${round}`)] as const));
      for (const [k, r] of replies) {
        if (r.status === 200) {
          expect(r.json.accepted).toBe(3000);
          pending.delete(k);
        } else {
          expect(r.status).toBe(429);
          refused ??= r;
        }
      }
      if (pending.size > 0) await sleep(1000); // Retry-After: 1
    }
    expect(pending.size).toBe(0);
    expect(refused).toBeDefined();
    expect(refused!.headers).toMatch(/retry-after: 1/i);
    expect(refused!.json.error).toMatchObject({ code: "busy", message: expect.stringMatching(/too many bulk bytes in flight/) });
    expect(await metric(h, "viw_ingest_bulk_requests_total", { code: "429" })).toBeGreaterThan(0);
    expect(await metric(h, "viw_ingest_backpressure_total", { path: "bulk" })).toBeGreaterThan(0);
    // a refused request journaled nothing: exactly the 18,000 events were accepted, and stored
    expect(await metric(h, "viw_ingest_events_accepted_total", { path: "bulk" })).toBe(6 * 3000);
    await h.service.idle();
    expect(stored(h, "conc")).toBe(6 * 3000);
  }, 120_000);
});

describe("journal high-water mark", () => {
  it("syslog stops reading (the sender is held by TCP, nothing dropped), resumes as the consumer catches up; events say so", async () => {
    const dir = mkdtempSync(join(tmpdir(), "viw-hw-"));
    const journal = openJournal(join(dir, "journal", "journal.db"), { consumers: ["store", "stuck"], highWater: 2000 });
    const h = await startHarness({ journal, syslog: { recheckMs: 50 } }, undefined, dir);
    cleanups.push(async () => {
      await h.close();
      await journal.close();
    });
    const N = 30_000; // ~8 MB: more than loopback socket buffers hold
    const file = join(dir, "frames.bin");
    writeFileSync(file, frames("hw", N));
    opensslSend(h, file);
    await until(() => journal.lastSeq() > 2000, 30_000, "the first events");
    const held = await plateau(() => journal.lastSeq(), 1500);
    // stopped well short of the stream: the listener is not reading
    expect(held).toBeLessThan(N / 2);
    await until(() => journal.read(0, 1_000_000).some((r) => r.event.error_code === "backpressure_on"), 5000, "the backpressure_on event");
    expect(await metric(h, "viw_ingest_backpressure_total", { path: "syslog" })).toBeGreaterThan(0);

    // the slow consumer catches up: reading resumes and every frame arrives, once
    const drain = setInterval(() => journal.commitCursor("stuck", journal.lastSeq()), 20);
    try {
      await until(() => stored(h, "hw-") >= N, 90_000, "every syslog event");
    } finally {
      clearInterval(drain);
    }
    expect(await metric(h, "viw_ingest_events_accepted_total", { path: "syslog" })).toBe(N);
    expect(stored(h, "hw-")).toBe(N);
    // (the journal may have compacted it by now: the store keeps it)
    await until(() => !!h.service.store!.db.prepare("SELECT 1 FROM events WHERE json_extract(doc, '$.error_code') = 'backpressure_off'").get(), 10_000, "the backpressure_off event");
  }, 120_000);
});

/** A tmpfs of `mb` MiB mounted for the test, or undefined when mounting is not permitted (not root). */
function tmpfs(mb: number): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), "viw-tmpfs-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${mb}m`, "tmpfs", dir], { stdio: "ignore" });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  cleanups.push(() => {
    execFileSync("umount", ["-l", dir], { stdio: "ignore" });
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Fills the filesystem of `dir` until `leaveBytes` remain free; returns the filler's path. */
function fill(dir: string, leaveBytes: number): string {
  const free = Number(execFileSync("df", ["-B1", "--output=avail", dir], { encoding: "utf8" }).trim().split("\n").pop());
  const filler = join(dir, "filler");
  writeFileSync(filler, Buffer.alloc(Math.max(0, free - leaveBytes)));
  return filler;
}

const canMount = process.getuid?.() === 0;

describe("disk full", () => {
  it.skipIf(!canMount)("below the free-space floor: bulk answers 503 with Retry-After, syslog stops reading, an event says so; freed space resumes both", async () => {
    const mnt = tmpfs(48);
    if (!mnt) return;
    const dataDir = join(mnt, "data");
    mkdirSync(dataDir);
    const journal = openJournal(join(dataDir, "journal", "journal.db"), { consumers: ["store"], minFreeBytes: 16 * 1024 * 1024 });
    const pki = makePki();
    const h = await startHarness({ journal, syslog: { recheckMs: 50 } }, pki, dataDir);
    cleanups.push(async () => {
      await h.service.close();
      await journal.close();
      rmSync(pki.dir, { recursive: true, force: true });
    });
    const work = mkdtempSync(join(tmpdir(), "viw-df-"));
    cleanups.push(() => rmSync(work, { recursive: true, force: true }));
    expect((await curlPost(h, ndjson("ok", 10), work, "first")).status).toBe(200);

    const filler = fill(mnt, 8 * 1024 * 1024);
    await sleep(1100); // the free-space check is cached for a second
    const r = await curlPost(h, ndjson("df", 10), work, "full");
    expect(r.status).toBe(503);
    expect(r.headers).toMatch(/retry-after: 1/i);
    expect(r.json.error).toMatchObject({ code: "backpressure", message: expect.stringMatching(/disk is full/) });
    await until(() => journal.read(0, 1_000_000).some((x) => x.event.error_code === "backpressure_on"), 5000, "the backpressure_on event");

    const before = journal.lastSeq();
    const file = join(work, "frames.bin");
    writeFileSync(file, frames("dfs", 200));
    opensslSend(h, file);
    await sleep(1500);
    // at most the first read got in before the listener paused
    expect(await metric(h, "viw_ingest_events_accepted_total", { path: "syslog" })).toBeLessThan(200);

    rmSync(filler);
    await until(async () => (await metric(h, "viw_ingest_events_accepted_total", { path: "syslog" })) === 200, 30_000, "syslog to resume");
    await h.service.idle();
    expect(stored(h, "dfs-")).toBe(200);
    expect(journal.lastSeq()).toBeGreaterThan(before);
    expect((await curlPost(h, ndjson("df", 10), work, "again")).status).toBe(200);
  }, 120_000);

  it.skipIf(!canMount)("a write that hits ENOSPC fails only its own requests (503, retried later), the journal keeps working once space is freed", async () => {
    const mnt = tmpfs(48);
    if (!mnt) return;
    const dataDir = join(mnt, "data");
    mkdirSync(dataDir);
    // no free-space floor: the disk really fills under the journal
    const journal = openJournal(join(dataDir, "journal", "journal.db"), { consumers: ["store"], minFreeBytes: 0 });
    const pki = makePki();
    const h = await startHarness({ journal }, pki, dataDir);
    cleanups.push(async () => {
      await h.service.close();
      await journal.close();
      rmSync(pki.dir, { recursive: true, force: true });
    });
    const work = mkdtempSync(join(tmpdir(), "viw-enospc-"));
    cleanups.push(() => rmSync(work, { recursive: true, force: true }));
    expect((await curlPost(h, ndjson("pre", 10), work, "pre")).status).toBe(200);
    await h.service.idle();
    const head = journal.lastSeq();

    const filler = fill(mnt, 64 * 1024);
    const r = await curlPost(h, ndjson("nospace", 3000), work, "big"); // ~1 MB: cannot fit
    expect(r.status).toBe(503);
    expect(r.headers).toMatch(/retry-after: 1/i);
    expect(journal.lastSeq()).toBe(head); // nothing half-applied, no seq used
    expect(idsIn(journal, "nospace")).toEqual([]);

    rmSync(filler);
    await sleep(1100);
    const again = await curlPost(h, ndjson("nospace", 3000), work, "retry");
    expect(again.status).toBe(200);
    expect(again.json.accepted).toBe(3000);
    expect(journal.read(head, 1)[0]!.seq).toBe(head + 1); // gap-free: the failed group used no seq
    expect(idsIn(journal, "nospace").length).toBe(3000);
    await h.service.idle();
    expect(stored(h, "nospace-")).toBe(3000);
  }, 120_000);
});
