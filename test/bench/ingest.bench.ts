// Ingest benchmark, side by side in one run (issue #4 "Performance"):
//   syslog/TLS → parse → normalize → journal (fsynced) → embedded store, in its own process,
//   vs rsyslog receiving the same stream over TLS into a file (imtcp + gtls → omfile);
//   signed bulk HTTPS → journal (200 after fsync) → store;
//   peak memory (VmHWM) of the engine process; restart time with a large journal.
// The engine process is the SIEM service alone with its one sink, the embedded store: the daemon's
// other journal consumers (detector, sealer) do not run here. CPU per event is given per thread
// (main; the journal's and the store's writer threads; V8/libuv helpers) from /proc/PID/task.
// Run: npx vitest bench --run test/bench/ingest.bench.ts   (BENCH_EVENTS=300000 by default)
//   BENCH_ONLY=syslog,rsyslog,bulk,restart picks parts; BENCH_RUNS=3 runs each;
//   VIW_CHILD_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p" profiles the engine process.
import { afterAll, bench, describe } from "vitest";
import { execFile, spawn } from "node:child_process";
import { Agent, request } from "node:https";
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { openJournal } from "../../engine/siem/index.js";
import { startServiceChild } from "../siem/ingest/child.js";
import { newShipper, signBody } from "../siem/ingest/harness.js";
import { makePki } from "../siem/ingest/pki.js";

const run = promisify(execFile);
const N = Number(process.env.BENCH_EVENTS ?? 300_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ONLY = new Set((process.env.BENCH_ONLY ?? "syslog,rsyslog,bulk,restart").split(","));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pki = makePki();
const results: Record<string, number[]> = {};
const record = (k: string, v: number) => (results[k] ??= []).push(v);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** CPU seconds (user + system) a process has used so far: CPU per event is steadier than events/s on a shared machine. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * CPU seconds per thread of a process (tid -> user + system). Node names every thread "node", so the
 * report tells the main thread (tid = pid) from the rest by CPU: the two busiest others are the
 * journal's and the store's writer threads, the remainder V8's and libuv's helpers.
 */
function threadCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8").split(") ")[1]!.split(" ");
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** µs per event by thread between two threadCpu samples: main, the two busiest others, the rest. */
function perThread(pid: number, before: Map<number, number>, after: Map<number, number>, n: number): [string, number][] {
  const d = [...after].map(([tid, s]) => [tid, s - (before.get(tid) ?? 0)] as [number, number]);
  const main = d.find(([tid]) => tid === pid)?.[1] ?? 0;
  const others = d.filter(([tid]) => tid !== pid).sort((a, b) => b[1] - a[1]);
  const us = (s: number) => (s * 1e6) / n;
  return [["main", us(main)], ["busiest other (a writer thread)", us(others[0]?.[1] ?? 0)], ["second busiest other (a writer thread)", us(others[1]?.[1] ?? 0)], ["rest (V8/libuv helpers)", us(others.slice(2).reduce((a, [, s]) => a + s, 0))]];
}

function event(i: number): Record<string, unknown> {
  return {
    timestamp: new Date(Date.UTC(2026, 10, 22, 10, 0, 0) + i).toISOString(),
    env: "prod", site: "fra1", tenant_id: "t-42", user_id: `u-${i % 5000}`, device_id: `d-${i % 9000}`, session_id: `s-${i}`,
    src_ip: `198.51.${(i >> 8) & 255}.${i & 255}`, src_port: 1024 + (i % 60000), dst_ip: "203.0.113.10", dst_port: 443, proto: "tcp",
    component: "gateway", action: i % 3 === 0 ? "login" : "tls_handshake", result: i % 7 === 0 ? "failure" : "success", severity: "info", tls_ja3: "e7d705a3286e19ea42f587b344ee6865",
  };
}

// one stream of octet-counted RFC 5424 frames with JSON MSGs, used for both receivers
const work = mkdtempSync(join(tmpdir(), "viw-bench-"));
const streamFile = join(work, "stream.bin");
{
  const parts: Buffer[] = [];
  for (let i = 0; i < N; i++) {
    const msg = `<134>1 2026-11-22T10:00:00.000Z gw1.gw.viworks.example vpn-gw - - - ${JSON.stringify(event(i))}`;
    parts.push(Buffer.from(`${Buffer.byteLength(msg)} ${msg}`));
  }
  writeFileSync(streamFile, Buffer.concat(parts));
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function send(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(import.meta.dirname, "tls-send.mjs"), "127.0.0.1", String(port), pki.files["int-tls.crt"]!, pki.files["gw1.crt"]!, pki.files["gw1.key"]!, streamFile], { stdio: ["ignore", "pipe", "inherit"] });
    p.stdout!.once("data", () => resolve());
    p.once("exit", (code) => (code ? reject(new Error(`sender exited ${code}`)) : resolve()));
  });
}

async function engineSyslog(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "viw-bench-engine-"));
  const child = await startServiceChild({ dataDir, pkiDir: pki.dir, syslogPort: 0, bulkPort: 0, shippers: {} });
  try {
    const port = Number(child.syslog.split(":").pop());
    const c0 = cpuSeconds(child.proc.pid!);
    const t0cpu = threadCpu(child.proc.pid!);
    const t0 = performance.now();
    void send(port);
    let s = await child.status(true);
    let seen = -1;
    let stalledSince = performance.now();
    while (!(s.lastSeq >= N && s.cursors.store! >= N)) {
      await sleep(100);
      s = await child.status(true);
      // a run that stops moving is reported, not waited on forever
      const progress = s.lastSeq + s.cursors.store!;
      if (progress !== seen) {
        seen = progress;
        stalledSince = performance.now();
      } else if (performance.now() - stalledSince > 30_000) throw new Error(`syslog run stalled: ${JSON.stringify(s)}`);
    }
    const dt = (performance.now() - t0) / 1000;
    record("engine syslog/TLS → journal → store (events/s)", N / dt);
    record("engine syslog/TLS CPU per event, all threads (µs)", ((cpuSeconds(child.proc.pid!) - c0) * 1e6) / N);
    for (const [name, us] of perThread(child.proc.pid!, t0cpu, threadCpu(child.proc.pid!), N)) record(`  syslog CPU per event, ${name} (µs)`, us);
    record("engine peak RSS after syslog run (MB)", s.vmHwmKb / 1024);
  } finally {
    await child.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function rsyslogFile(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "viw-bench-rsyslog-"));
  const port = await freePort();
  const out = join(dir, "out.log");
  writeFileSync(
    join(dir, "rsyslog.conf"),
    `global(workDirectory="${dir}" DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="${pki.files["int-tls.crt"]}"
  DefaultNetstreamDriverCertFile="${pki.files["server.crt"]}" DefaultNetstreamDriverKeyFile="${pki.files["server.key"]}" maxMessageSize="64k")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")
template(name="msgonly" type="string" string="%msg%\\n")
ruleset(name="bench") { action(type="omfile" file="${out}" template="msgonly") }
input(type="imtcp" port="${port}" ruleset="bench")
`,
  );
  const proc = spawn("rsyslogd", ["-n", "-f", join(dir, "rsyslog.conf"), "-i", join(dir, "pid")], { stdio: "ignore" });
  try {
    for (let i = 0; i < 100; i++) {
      const ok = await run("sh", ["-c", `ss -ltn | grep -q ':${port} '`]).then(() => true, () => false);
      if (ok) break;
      await sleep(50);
    }
    const c0 = cpuSeconds(proc.pid!);
    const t0 = performance.now();
    void send(port);
    let lines = 0;
    let offset = 0;
    const buf = Buffer.alloc(1 << 20);
    while (lines < N) {
      await sleep(10);
      if (!existsSync(out)) continue;
      const fd = openSync(out, "r");
      const size = statSync(out).size;
      while (offset < size) {
        const n = readSync(fd, buf, 0, buf.length, offset);
        for (let i = 0; i < n; i++) if (buf[i] === 0x0a) lines++;
        offset += n;
      }
      closeSync(fd);
    }
    record("rsyslog imtcp+gtls → omfile (events/s)", N / ((performance.now() - t0) / 1000));
    record("rsyslog CPU per event (µs)", ((cpuSeconds(proc.pid!) - c0) * 1e6) / N);
  } finally {
    proc.kill("SIGTERM");
    await new Promise((r) => proc.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function engineBulk(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "viw-bench-bulk-"));
  const gw = newShipper("vector-gw");
  const child = await startServiceChild({ dataDir, pkiDir: pki.dir, syslogPort: 0, bulkPort: 0, shippers: { "vector-gw": gw.publicRaw } });
  const c = pki.client("gw1");
  const agent = new Agent({ keepAlive: true, maxSockets: 4, ca: pki.caCert, key: c.key, cert: c.cert });
  try {
    const per = 5000;
    const bodies: { body: Buffer; sig: string }[] = [];
    for (let k = 0; k < N / per; k++) {
      const body = Buffer.from(Array.from({ length: per }, (_, i) => JSON.stringify(event(k * per + i))).join("\n"));
      bodies.push({ body, sig: signBody(gw, body) });
    }
    const post = (b: { body: Buffer; sig: string }) =>
      new Promise<void>((resolve, reject) => {
        const req = request(`${child.bulk}/v1/ingest/bulk`, { method: "POST", agent, headers: { "Viw-Key-Id": "vector-gw", "Viw-Signature": b.sig, "Content-Length": b.body.length } }, (res) => {
          let t = "";
          res.on("data", (d) => (t += d));
          res.on("end", () => (res.statusCode === 200 && JSON.parse(t).accepted === per ? resolve() : reject(new Error(`${res.statusCode} ${t}`))));
        });
        req.on("error", reject);
        req.end(b.body);
      });
    const c0 = cpuSeconds(child.proc.pid!);
    const t0cpu = threadCpu(child.proc.pid!);
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < bodies.length) await post(bodies[next++]!);
    }));
    const acked = (performance.now() - t0) / 1000;
    let s = await child.status(true);
    while (s.cursors.store! < N) {
      await sleep(100);
      s = await child.status(true);
    }
    const stored = (performance.now() - t0) / 1000;
    record("engine bulk HTTPS, acknowledged (events/s)", N / acked);
    record("engine bulk HTTPS → store (events/s)", N / stored);
    record("engine bulk CPU per event, all threads (µs)", ((cpuSeconds(child.proc.pid!) - c0) * 1e6) / N);
    for (const [name, us] of perThread(child.proc.pid!, t0cpu, threadCpu(child.proc.pid!), N)) record(`  bulk CPU per event, ${name} (µs)`, us);
    record("engine peak RSS after bulk run (MB)", s.vmHwmKb / 1024);
  } finally {
    agent.destroy();
    await child.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function restartWithLargeJournal(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "viw-bench-restart-"));
  try {
    const file = join(dir, "journal.db");
    const j = openJournal(file, { consumers: ["stuck"], highWater: Number.MAX_SAFE_INTEGER });
    const target = Number(process.env.BENCH_JOURNAL_MB ?? 1024) * 1024 * 1024;
    const batch = Array.from({ length: 10_000 }, (_, i) => ({ index: "viw-tunnel", event: { event_id: `r-${i}`, received_at: "2026-11-22T10:00:00.000Z", ...event(i) } as never }));
    while (statSync(file).size + (existsSync(file + "-wal") ? statSync(file + "-wal").size : 0) < target) await j.append(batch);
    await j.close();
    const size = statSync(file).size;
    const t0 = performance.now();
    const again = openJournal(file, { consumers: ["stuck"] });
    const first = again.read(again.cursor("stuck"), 1000);
    const ms = performance.now() - t0;
    if (first.length === 0) throw new Error("nothing to read");
    await again.close();
    record(`journal reopen with ${(size / 1024 / 1024) | 0} MB, ready to read (ms)`, ms);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe(`ingest, ${N} events`, () => {
  bench("syslog/TLS: engine (fsynced journal + store) vs rsyslog (file)", async () => {
    if (ONLY.has("syslog")) await engineSyslog();
    if (ONLY.has("rsyslog")) await rsyslogFile();
  }, { iterations: RUNS, warmupIterations: 0, time: 0 });
  bench("bulk HTTPS: engine", async () => {
    if (ONLY.has("bulk")) await engineBulk();
  }, { iterations: RUNS, warmupIterations: 0, time: 0 });
  bench("restart with a large journal", async () => {
    if (ONLY.has("restart")) await restartWithLargeJournal();
  }, { iterations: 1, warmupIterations: 0, time: 0 });
});

afterAll(() => {
  const lines = Object.entries(results).map(([k, xs]) => `  ${k}: median ${median(xs).toFixed(0)} (runs: ${xs.map((x) => x.toFixed(0)).join(", ")})`);
  const e = results["engine syslog/TLS → journal → store (events/s)"];
  const r = results["rsyslog imtcp+gtls → omfile (events/s)"];
  if (e && r) lines.push(`  ratio engine/rsyslog (syslog/TLS): ${(median(e) / median(r)).toFixed(2)}`);
  const ec = results["engine syslog/TLS CPU per event, all threads (µs)"];
  const rc = results["rsyslog CPU per event (µs)"];
  if (ec && rc) lines.push(`  CPU per event engine/rsyslog (syslog/TLS): ${(median(ec) / median(rc)).toFixed(2)}`);
  console.log(`\nviw ingest benchmark (${N} events; shared 2-core machine; load average ${loadavg().map((x) => x.toFixed(2)).join(" ")})\n${lines.join("\n")}`);
  rmSync(work, { recursive: true, force: true });
  rmSync(pki.dir, { recursive: true, force: true });
});
