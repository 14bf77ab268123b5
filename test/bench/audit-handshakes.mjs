// TLS session audit cost on the real issuance listener (issue #8: auditing
// must not cut handshakes/s on 8444 by more than 5%), on the compiled engine
// (dist/, as `viw run` executes it; build with `npx tsc -p tsconfig.json`).
//
// Two server processes run the engine's own PKI service (createPkiService:
// the issuance API, https, TLS 1.3 only, client certificate required) on the
// same CA: arm "off" without the audit, arm "on" with what the daemon attaches
// (auditTlsServer with the AuditLog file, a real SQLite journal, the JA3 peek,
// the revocation check against the CA's store, the idle sweeper). Both are
// pinned to CPU 0 (taskset), the load generator (audit-load.mjs) to CPU 1.
// Every connection is a new full TLS 1.3 mTLS handshake (no resumption) with
// one GET /v1/ca/chain request, 8 concurrent.
// Rounds alternate the arms A/B then B/A (off,on,on,off,...) so drift in
// the machine's load hits both alike. Each server reports its own CPU time
// (process.cpuUsage, including the audit's deferred file/journal writes,
// which are flushed before the round ends) and the handshakes it admitted.
// Prints per arm: median handshakes/s and server CPU µs per handshake with
// their spread, the median of the per-round on/off ratios, and the load average.
//
// Usage: node test/bench/audit-handshakes.mjs
//   VIW_BENCH_SECONDS (default 2), VIW_BENCH_ROUNDS (default 20: shorter rounds keep the two arms of a pair
//   closer in time, so a change in the machine's load hits both; more of them steady the median ratio), VIW_BENCH_CONCURRENCY (8),
//   VIW_BENCH_PROFILE=DIR writes the servers' --cpu-prof profiles there;
//   VIW_BENCH_NODE_ARGS (e.g. --perf-basic-prof) is added to the servers' node options;
//   VIW_BENCH_WITHOUT=ja3,journal,revocation leaves those parts out of the audited arm (where the cost goes);
//   VIW_BENCH_HEAP=DIR writes each server's sampled allocations (collected objects included) there.
// On a loaded machine the CPU figures swing by ±20% per round; test/bench/audit-instructions.mjs
// counts instructions per handshake instead (callgrind), which the load does not change.
import { execFile as execFileCb, execFileSync, fork } from "node:child_process";
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const DIST = join(import.meta.dirname, "../../dist/engine");
const REPO = join(import.meta.dirname, "../..");

if (process.argv[2] === "serve") await serve(JSON.parse(process.argv[3]));
// The CA and certificates only (for test/bench/audit-instructions.mjs): prints the files as JSON.
else if (process.argv[2] === "make-ca") process.stdout.write(JSON.stringify(await makeCa(process.argv[3])) + "\n");
else await drive();

async function drive() {
  const execFile = promisify(execFileCb);
  const SECONDS = Number(process.env.VIW_BENCH_SECONDS ?? 2);
  const ROUNDS = Number(process.env.VIW_BENCH_ROUNDS ?? 20);
  const CONCURRENCY = Number(process.env.VIW_BENCH_CONCURRENCY ?? 8);
  const LOAD = join(import.meta.dirname, "audit-load.mjs");
  const pin = (() => {
    try {
      execFileSync("taskset", ["-p", String(process.pid)], { stdio: "pipe" });
      return true;
    } catch {
      return false;
    }
  })();

  const dir = mkdtempSync(join(tmpdir(), "viw-audit-hs-"));
  const files = await makeCa(dir);
  const servers = {};
  for (const arm of ["off", "on"]) {
    const data = join(dir, `data-${arm}`);
    cpSync(files.data, data, { recursive: true });
    const execArgv = [
      ...(process.env.VIW_BENCH_PROFILE ? ["--cpu-prof", "--cpu-prof-dir", process.env.VIW_BENCH_PROFILE, "--cpu-prof-name", `audit-${arm}.cpuprofile`] : []),
      ...(process.env.VIW_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean),
    ];
    const child = fork(import.meta.filename, ["serve", JSON.stringify({ arm, data, dir, ...files })], { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const ready = await reply(child);
    if (pin) execFileSync("taskset", ["-a", "-p", "-c", "0", String(child.pid)], { stdio: "pipe" });
    servers[arm] = { child, port: ready.port };
    if (execArgv.length) console.error(`audit ${arm}: server pid ${child.pid}`);
  }
  const round = async (arm, seconds) => {
    const { child, port } = servers[arm];
    child.send({ cmd: "start" });
    await reply(child);
    const cfg = JSON.stringify({ port, ca: files.ca, cert: files.cliCrt, key: files.cliKey, seconds, concurrency: CONCURRENCY, path: "/v1/ca/chain?issuer=int-backend" });
    const { stdout } = await execFile(pin ? "taskset" : process.execPath, pin ? ["-c", "1", process.execPath, LOAD, cfg] : [LOAD, cfg]);
    child.send({ cmd: "stop" });
    const srv = await reply(child);
    const out = JSON.parse(stdout);
    if (out.failed) throw new Error(`arm ${arm}: ${out.failed} handshakes failed`);
    return { rate: out.rate, cpu: srv.cpuUs / Math.max(1, srv.handshakes), client: out.cpuUs, handshakes: srv.handshakes, count: out.count };
  };

  const load0 = loadavg();
  for (const arm of ["off", "on", "off", "on"]) await round(arm, 1); // warm-up (JIT, SQLite pages)
  const runs = { off: [], on: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const arm of r % 2 ? ["on", "off"] : ["off", "on"]) runs[arm].push(await round(arm, SECONDS));
  }
  const load1 = loadavg();
  const stats = {};
  for (const arm of ["off", "on"]) {
    servers[arm].child.send({ cmd: "exit" });
    stats[arm] = await reply(servers[arm].child);
  }

  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const quart = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))];
    return `[${q(0).toFixed(3)} / ${q(0.25).toFixed(3)} / ${q(0.75).toFixed(3)} / ${q(1).toFixed(3)}]`;
  };
  const spread = (xs) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`;
  const out = [];
  out.push(`issuance listener (TLS 1.3, client certificate required), daemon callbacks as in engine/daemon.ts${process.env.VIW_BENCH_WITHOUT ? `, audited arm WITHOUT ${process.env.VIW_BENCH_WITHOUT}` : ""}, ${ROUNDS} rounds x ${SECONDS} s per arm, ${CONCURRENCY} concurrent full handshakes, ${pin ? "server pinned to CPU 0, load to CPU 1" : "not pinned (no taskset)"}`);
  out.push(`load average before ${load0.map((x) => x.toFixed(2)).join(" ")}, after ${load1.map((x) => x.toFixed(2)).join(" ")}`);
  for (const arm of ["off", "on"]) {
    const rs = runs[arm];
    out.push(
      `audit ${arm.padEnd(3)}  ${median(rs.map((x) => x.rate)).toFixed(0).padStart(5)} handshakes/s (rounds ${spread(rs.map((x) => x.rate))})   server CPU ${median(rs.map((x) => x.cpu)).toFixed(0).padStart(4)} µs/handshake (rounds ${spread(rs.map((x) => x.cpu))})   client CPU ${median(rs.map((x) => x.client)).toFixed(0)} µs`,
    );
  }
  const rateRatios = runs.on.map((x, i) => x.rate / runs.off[i].rate);
  const cpuRatios = runs.on.map((x, i) => x.cpu / runs.off[i].cpu);
  const m = (arm, k) => median(runs[arm].map((x) => x[k]));
  out.push(`ratio on/off handshakes/s: ${(m("on", "rate") / m("off", "rate")).toFixed(3)} (medians); per round median ${median(rateRatios).toFixed(3)}, [min / q1 / q3 / max] ${quart(rateRatios)}`);
  out.push(`ratio on/off server CPU per handshake: ${(m("on", "cpu") / m("off", "cpu")).toFixed(3)} (medians); per round median ${median(cpuRatios).toFixed(3)}, [min / q1 / q3 / max] ${quart(cpuRatios)}`);
  out.push(`audit arm: ${stats.on.lines} audit lines written, ${stats.on.journaled} journaled, ${stats.on.errors} errors; ${stats.on.established} sessions established`);
  console.log(out.map((l) => "  " + l).join("\n"));
  rmSync(dir, { recursive: true, force: true });
}

/** The next IPC message from a server child (or its exit). */
function reply(child) {
  return new Promise((resolve, reject) => {
    const onExit = (code) => reject(new Error(`bench server exited (${code})`));
    child.once("exit", onExit);
    child.once("message", (msg) => {
      child.off("exit", onExit);
      resolve(msg);
    });
  });
}

/** A CA made by the engine itself (software keys), the listener's certificate and a Backend client certificate. */
async function makeCa(dir) {
  const { loadSnapshot, readDirSnapshot } = await import(`${DIST}/config/index.js`);
  const { createPkiService, initCa, KeyRing } = await import(`${DIST}/pki/index.js`);
  const snapshot = await readDirSnapshot(REPO);
  // The default pin sets are the production keys, which fresh keys cannot match (as test/pki/fixture.ts does).
  for (const f of snapshot.files) if (/^profiles\/[^/]+\.ya?ml$/.test(f.path) && f.bytes) f.bytes = Buffer.from(f.bytes.toString("utf8").replace(/^pin_set: .*$/m, ""));
  const { state, errors } = loadSnapshot(snapshot);
  if (!state) throw new Error(JSON.stringify(errors));
  const data = join(dir, "data");
  const keys = new KeyRing({ dataDir: data });
  await initCa({ dataDir: data, state, provider: keys });
  const svc = createPkiService({ dataDir: data, provider: keys });
  (await svc.prepare(state, undefined)).commit();
  const pem = (k) => k.export({ type: "pkcs8", format: "pem" });
  const issue = async (profile, cn, names) => {
    const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const out = await svc.issueForEngine(profile, k.publicKey, { cn, ...names });
    return { crt: out.certificate + out.chain.slice(0, -1).join(""), key: pem(k.privateKey) };
  };
  const listener = await issue("engine-listener", "localhost", { dns: ["localhost"], ip: ["127.0.0.1"] });
  const client = await issue("backend-client", "backend.viworks.example", { dns: ["backend.viworks.example"] });
  const f = (n, s) => (writeFileSync(join(dir, n), s), join(dir, n));
  const files = {
    data,
    ca: f("ca-chain.pem", [...state.issuers.keys()].map((id) => readFileSync(join(data, "pki/certs", `${id}.crt`), "utf8")).join("")),
    srvCrt: f("listener.crt", listener.crt),
    srvKey: f("listener.key", listener.key),
    cliCrt: f("client.crt", client.crt),
    cliKey: f("client.key", client.key),
  };
  await svc.close();
  await keys.close();
  return files;
}

/** One arm's server: the PKI service's issuance listener, audited as engine/daemon.ts does when arm is "on". */
async function serve(cfg) {
  const { loadSnapshot, readDirSnapshot } = await import(`${DIST}/config/index.js`);
  const { createPkiService, KeyRing, normalizeSerial } = await import(`${DIST}/pki/index.js`);
  const { AuditLog, auditTlsServer } = await import(`${DIST}/audit/index.js`);
  const { openJournal } = await import(`${DIST}/siem/journal/index.js`);
  const { Router } = await import(`${DIST}/siem/normalize/index.js`);
  const snapshot = await readDirSnapshot(REPO);
  for (const f of snapshot.files) if (/^profiles\/[^/]+\.ya?ml$/.test(f.path) && f.bytes) f.bytes = Buffer.from(f.bytes.toString("utf8").replace(/^pin_set: .*$/m, ""));
  const { state } = loadSnapshot(snapshot);
  const keys = new KeyRing({ dataDir: cfg.data });
  const svc = createPkiService({ dataDir: cfg.data, provider: keys });
  (await svc.prepare(state, undefined)).commit();
  let audit, journal, session;
  const on = cfg.arm === "on";
  // Where the cost goes: VIW_BENCH_WITHOUT=ja3,journal,revocation leaves those parts out of the audited arm.
  const ablate = new Set((process.env.VIW_BENCH_WITHOUT ?? "").split(",").filter(Boolean));
  if (on) {
    mkdirSync(join(cfg.data, "journal"), { recursive: true });
    if (!ablate.has("journal")) journal = openJournal(join(cfg.data, "journal", "journal.db"), { consumers: ["detector", "sealer"] });
    // As engine/daemon.ts routes: one Router per applied routing table.
    const routers = new WeakMap();
    const route = (action) => (routers.get(state.routing) ?? routers.set(state.routing, new Router(state.routing)).get(state.routing)).route(action);
    audit = new AuditLog(join(cfg.data, "audit"), { journal, route });
  }
  // As engine/daemon.ts checks revocation: the store's cached answer (dropped on every revocation).
  const isRevoked = (serial) => svc.authority.store.isRevoked(normalizeSerial(serial) ?? serial);
  let handshakes = 0;
  let allHandshakes = 0;
  const urls = await svc.listen({
    issuance: { host: "127.0.0.1", port: 0, tls: { cert: readFileSync(cfg.srvCrt), key: readFileSync(cfg.srvKey), ca: readFileSync(cfg.ca) } },
    beforeListen: (_name, server) => {
      if (on) session = auditTlsServer(server, { listener: "issuance", audit, component: "pki", ja3: !ablate.has("ja3"), ...(ablate.has("revocation") ? {} : { isRevoked }), idleTimeoutMs: 300_000 });
      server.on("secureConnection", () => void (handshakes++, allHandshakes++));
    },
  });
  let cpu0;
  // VIW_BENCH_HEAP=DIR: what each arm allocates during the rounds (sampled, objects collected since included), by function.
  const heap = process.env.VIW_BENCH_HEAP ? new (await import("node:inspector")).Session() : undefined;
  const post = (method, params) => new Promise((resolve, reject) => heap.post(method, params, (err, r) => (err ? reject(err) : resolve(r))));
  if (heap) {
    heap.connect();
    await post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  }
  process.on("message", async (msg) => {
    if (msg.cmd === "start") {
      await audit?.flush();
      // Under audit-instructions.mjs (--expose-gc): both arms start counting from a collected heap, so a
      // full collection that falls inside the short window in one arm only does not decide the ratio.
      globalThis.gc?.();
      handshakes = 0;
      cpu0 = process.cpuUsage();
      process.send({ ok: true });
    } else if (msg.cmd === "stop") {
      // The audit's deferred work (file write, journal group commit) belongs to the round.
      await audit?.flush();
      const c = process.cpuUsage(cpu0);
      process.send({ cpuUs: c.user + c.system, handshakes });
    } else if (msg.cmd === "exit") {
      if (heap) writeFileSync(join(process.env.VIW_BENCH_HEAP, `audit-${cfg.arm}.heapprofile`), JSON.stringify({ ...(await post("HeapProfiler.stopSampling")).profile, handshakes: allHandshakes }));
      const st = audit?.stats();
      await session?.shutdown(100);
      await svc.close();
      await audit?.close();
      await journal?.close();
      await keys.close();
      process.send({ lines: st?.lines ?? 0, journaled: st?.journaled ?? 0, errors: (st?.writeErrors ?? 0) + (st?.journalErrors ?? 0), established: handshakes });
      process.disconnect();
    }
  });
  process.send({ port: Number(new URL(urls.issuance).port) });
}
