// Issuance cost in instructions per certificate, per thread, for a machine too
// loaded for CPU-time figures (issue #3: the issuance API's event loop is the
// throughput limit, so what counts is what stays on the main thread). The
// engine's issuance API (as test/pki/fixture.ts starts it, software keys) runs
// under valgrind's callgrind with --separate-threads, which counts the
// instructions of every thread whatever else the machine runs; pki-load.mjs
// drives it from outside (16 keep-alive mTLS clients, the bench's CSRs).
// Instrumentation is switched on after a warm-up (JIT, SQLite pages). V8 runs
// --single-threaded so its compiler and GC work is counted on the main thread.
// Kernel work (socket writes, fdatasync) is not counted.
// Needs valgrind; a run takes a few minutes.
//
// Usage: npx tsc -p tsconfig.json && node test/bench/pki-instructions.mjs
//   VIW_BENCH_CERTS (default 300 measured), VIW_BENCH_WARMUP (default 2000: V8 tiers the hot path up by invocation counts),
//   VIW_BENCH_WORKERS (the engine's cryptoWorkers; default: both 0 and 1, side by side),
//   VIW_BENCH_DIST (compiled engine dir, default dist/engine), VIW_BENCH_KEEP=DIR keeps the dumps.
import { execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { requireValgrind, spawnUnderCallgrind } from "./callgrind.mjs";
const REPO = resolve(import.meta.dirname, "../..");
const DIST = resolve(process.env.VIW_BENCH_DIST ?? join(REPO, "dist/engine"));
const LOAD = join(import.meta.dirname, "pki-load.mjs");

if (process.argv[2] === "serve") {
  // The server: the PKI service listening on loopback; told over IPC when the measured window starts and ends.
  const cfg = JSON.parse(process.argv[3]);
  const { loadSnapshot, readDirSnapshot } = await import(join(DIST, "config/index.js"));
  const { createPkiService, KeyRing } = await import(join(DIST, "pki/index.js"));
  const snapshot = await readDirSnapshot(REPO);
  for (const f of snapshot.files) if (/^profiles\/[^/]+\.ya?ml$/.test(f.path) && f.bytes) f.bytes = Buffer.from(f.bytes.toString("utf8").replace(/^pin_set: .*$/m, ""));
  const state = loadSnapshot(snapshot).state;
  const keys = new KeyRing({ dataDir: cfg.data });
  const svc = createPkiService({ dataDir: cfg.data, provider: keys, cryptoWorkers: cfg.workers });
  (await svc.prepare(state, undefined)).commit();
  const urls = await svc.listen({ issuance: { host: "127.0.0.1", port: 0, tls: { cert: readFileSync(cfg.listenerCrt), key: readFileSync(cfg.listenerKey), ca: readFileSync(cfg.ca) } } });
  process.send({ url: urls.issuance });
  process.on("message", () => process.send({}));
} else {
  requireValgrind("pki-instructions");
  const COUNT = Number(process.env.VIW_BENCH_CERTS ?? 300);
  const WARMUP = Number(process.env.VIW_BENCH_WARMUP ?? 2000);
  const ARMS = process.env.VIW_BENCH_WORKERS ? process.env.VIW_BENCH_WORKERS.split(",").map(Number) : [0, 1];
  const dir = mkdtempSync(join(tmpdir(), "viw-pki-ir-"));
  // A CA with software keys, the listener and client certificates, made once (natively) for every arm.
  const { loadSnapshot, readDirSnapshot } = await import(join(DIST, "config/index.js"));
  const { createPkiService, initCa, KeyRing } = await import(join(DIST, "pki/index.js"));
  const snapshot = await readDirSnapshot(REPO);
  for (const f of snapshot.files) if (/^profiles\/[^/]+\.ya?ml$/.test(f.path) && f.bytes) f.bytes = Buffer.from(f.bytes.toString("utf8").replace(/^pin_set: .*$/m, ""));
  const state = loadSnapshot(snapshot).state;
  const data = join(dir, "data");
  const keys = new KeyRing({ dataDir: data });
  await initCa({ dataDir: data, state, provider: keys });
  const svc = createPkiService({ dataDir: data, provider: keys, cryptoWorkers: 0 });
  (await svc.prepare(state, undefined)).commit();
  const files = { ca: join(dir, "ca.pem"), listenerCrt: join(dir, "listener.crt"), listenerKey: join(dir, "listener.key"), cliCrt: join(dir, "cli.crt"), cliKey: join(dir, "cli.key") };
  const lk = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const l = await svc.issueForEngine("engine-listener", lk.publicKey, { cn: "localhost", dns: ["localhost"], ip: ["127.0.0.1"] });
  writeFileSync(files.listenerCrt, l.certificate + l.chain.slice(0, -1).join(""));
  writeFileSync(files.listenerKey, lk.privateKey.export({ type: "pkcs8", format: "pem" }));
  const ck = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const c = await svc.issueForEngine("backend-client", ck.publicKey, { cn: "backend.viworks.example", dns: ["backend.viworks.example"] });
  writeFileSync(files.cliCrt, c.certificate + c.chain.slice(0, -1).join(""));
  writeFileSync(files.cliKey, ck.privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(files.ca, [...state.issuers.keys()].map((id) => readFileSync(join(data, "pki/certs", `${id}.crt`), "utf8")).join(""));
  await svc.close();
  await keys.close();
  const bodies = Array.from({ length: 32 }, (_, i) => {
    execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, `c${i}.key`), "-out", join(dir, `c${i}.csr`), "-subj", "/CN=gw.viworks.example", "-addext", "subjectAltName=DNS:gw.viworks.example"], { stdio: "pipe" });
    return JSON.stringify({ profile: "tls-gateway", csr: readFileSync(join(dir, `c${i}.csr`), "utf8") });
  });

  /** One arm under callgrind: instructions per certificate of each thread over COUNT certificates after WARMUP others. */
  async function measure(workers) {
    const armData = join(dir, `data-${workers}`);
    cpSync(data, armData, { recursive: true });
    const out = join(dir, `callgrind-${workers}`);
    const { child, reply } = spawnUnderCallgrind(`${out}.%p`, [import.meta.filename, "serve", JSON.stringify({ workers, data: armData, ...files })], ["--separate-threads=yes"]);
    const { url } = await reply();
    // One load process: its warm-up requests (and the connections' TLS handshakes), then the measured ones.
    const loadCfg = { url: `${url}/v1/certs/issue/server`, concurrency: 16, seconds: 36000, count: WARMUP + COUNT, bodies, ca: files.ca, cert: files.cliCrt, key: files.cliKey, gate: true };
    const warm = spawn(process.execPath, [LOAD, JSON.stringify({ ...loadCfg, count: WARMUP })], { stdio: ["pipe", "pipe", "pipe"] });
    warm.stderr.once("data", () => warm.stdin.end("go\n"));
    await new Promise((resolve) => warm.once("exit", resolve));
    const loader = spawn(process.execPath, [LOAD, JSON.stringify({ ...loadCfg, count: COUNT })], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    loader.stdout.on("data", (d) => (stdout += d));
    await new Promise((resolve) => loader.stderr.once("data", resolve));
    execFileSync("callgrind_control", ["--instr=on", String(child.pid)], { stdio: "pipe" });
    loader.stdin.end("go\n");
    await new Promise((resolve) => loader.once("exit", resolve));
    execFileSync("callgrind_control", ["--dump", String(child.pid)], { stdio: "pipe" });
    child.kill("SIGKILL");
    const r = JSON.parse(stdout);
    if (r.statuses["201"] !== COUNT) throw new Error(`arm ${workers}: ${JSON.stringify(r.statuses)}`);
    // --separate-threads: one dump per thread, NAME.PID.PART-THREAD; thread 1 is the event loop.
    const threads = new Map();
    const steady = new Map();
    for (const n of readdirSync(dir).filter((x) => x.startsWith(`callgrind-${workers}.`) && /\.\d+\.\d+-\d+$/.test(x))) {
      const t = Number(/-(\d+)$/.exec(n)[1]);
      const ir = Number(/^summary:\s*(\d+)/m.exec(readFileSync(join(dir, n), "utf8"))?.[1] ?? 0);
      threads.set(t, (threads.get(t) ?? 0) + ir);
      // V8's optimising compiler still runs in the window (tier-up goes by invocation counts, and under
      // callgrind the warm-up is short): a one-time cost, so the steady figure leaves it out.
      const annotated = ir ? execFileSync("callgrind_annotate", ["--inclusive=yes", join(dir, n)], { encoding: "utf8", maxBuffer: 1 << 28 }) : "";
      const compile = Number(/^\s*([\d,]+) \([^)]*\)\s+\?\?\?:v8::internal::compiler::PipelineCompilationJob::ExecuteJobImpl/m.exec(annotated)?.[1]?.replace(/,/g, "") ?? 0);
      steady.set(t, (steady.get(t) ?? 0) + ir - compile);
      if (process.env.VIW_BENCH_KEEP) cpSync(join(dir, n), join(process.env.VIW_BENCH_KEEP, n));
    }
    const main = threads.get(1) ?? 0;
    let total = 0;
    let steadyTotal = 0;
    for (const v of threads.values()) total += v;
    for (const v of steady.values()) steadyTotal += v;
    return {
      main: main / COUNT,
      total: total / COUNT,
      steadyMain: (steady.get(1) ?? 0) / COUNT,
      steadyTotal: steadyTotal / COUNT,
      others: [...steady].filter(([t, v]) => t !== 1 && v > 0.01 * steadyTotal).map(([t, v]) => `thread ${t}: ${(v / COUNT / 1e6).toFixed(2)}M`),
    };
  }

  const load0 = loadavg();
  const results = await Promise.all(ARMS.map(async (w) => [w, await measure(w)]));
  const lines = [
    `issuance API (TLS 1.3 mTLS, software keys, 16 keep-alive clients), callgrind --separate-threads, node --single-threaded, ${COUNT} certificates measured after ${WARMUP}`,
    `load average before ${load0.map((x) => x.toFixed(2)).join(" ")} (does not change instruction counts)`,
    ...results.map(
      ([w, r]) =>
        `cryptoWorkers ${w}: event loop ${(r.steadyMain / 1e6).toFixed(2)}M instructions/cert, all threads ${(r.steadyTotal / 1e6).toFixed(2)}M${r.others.length ? ` (${r.others.join(", ")})` : ""}; with V8's optimising compiler still at work in the window: ${(r.main / 1e6).toFixed(2)}M and ${(r.total / 1e6).toFixed(2)}M`,
    ),
  ];
  if (results.length === 2) lines.push(`event loop with/without workers: ${(results[1][1].steadyMain / results[0][1].steadyMain).toFixed(3)}; all threads: ${(results[1][1].steadyTotal / results[0][1].steadyTotal).toFixed(3)}`);
  console.log(lines.map((l) => "  " + l).join("\n"));
  rmSync(dir, { recursive: true, force: true });
}
