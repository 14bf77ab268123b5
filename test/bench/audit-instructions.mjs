// TLS session audit cost in instructions per handshake (issue #8: auditing must
// not cut handshakes/s on 8444 by more than 5%), for a machine too loaded for
// CPU-time figures: the same two servers as test/bench/audit-handshakes.mjs
// (the engine's issuance listener, arm "off" without the audit, arm "on" with
// what the daemon attaches), each run under valgrind's callgrind, which counts
// the instructions every thread executes whatever else the machine runs.
// Instrumentation is switched on only after a warm-up (JIT, SQLite pages) and
// covers the load plus the audit's deferred writes (flushed before the count
// is read). V8 runs --single-threaded so its compiler and GC work is counted
// in the process, not left to timing between threads. Kernel work (fsync,
// syscalls) is not counted: the journal appends once per second.
// Needs valgrind (apt-get install valgrind); a run takes ~5 minutes.
//
// Usage: npx tsc -p tsconfig.json && node test/bench/audit-instructions.mjs
//   VIW_BENCH_HANDSHAKES (default 400: measured handshakes per arm, the same workload in both;
//   ~1-3 handshakes/s under callgrind), VIW_BENCH_WARMUP (default 400 handshakes: V8 tiers code up by
//   invocation counts, and at 100 TurboFan was still compiling the audit's code in the window), VIW_BENCH_WITHOUT
//   as in audit-handshakes.mjs, VIW_BENCH_KEEP=DIR keeps the callgrind dumps there (callgrind_annotate),
//   VIW_BENCH_NODE_ARGS adds node options (--perf-basic-prof: KEEP also gets V8's JIT code map, to name JS functions).
import { execFile as execFileCb, execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { requireValgrind, spawnUnderCallgrind } from "./callgrind.mjs";

const execFile = promisify(execFileCb);
const COUNT = Number(process.env.VIW_BENCH_HANDSHAKES ?? 400);
const WARMUP = Number(process.env.VIW_BENCH_WARMUP ?? 400);
const BENCH = join(import.meta.dirname, "audit-handshakes.mjs");
const NODE_ARGS = (process.env.VIW_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
const LOAD = join(import.meta.dirname, "audit-load.mjs");
requireValgrind("audit-instructions");

const dir = mkdtempSync(join(tmpdir(), "viw-audit-ir-"));
const files = JSON.parse(execFileSync(process.execPath, [BENCH, "make-ca", dir], { encoding: "utf8" }));

/** One arm under callgrind: instructions per handshake over COUNT handshakes after WARMUP others. */
async function measure(arm) {
  const data = join(dir, `data-${arm}`);
  cpSync(files.data, data, { recursive: true });
  const out = join(dir, `callgrind-${arm}`);
  const { child, reply } = spawnUnderCallgrind(`${out}.%p`, ["--expose-gc", ...NODE_ARGS, BENCH, "serve", JSON.stringify({ arm, data, dir, ...files })]);
  const { port } = await reply();
  const load = (count) =>
    execFile(process.execPath, [LOAD, JSON.stringify({ port, ca: files.ca, cert: files.cliCrt, key: files.cliKey, seconds: 3600, count, concurrency: 2, path: "/v1/ca/chain?issuer=int-backend" })]);
  await load(WARMUP);
  child.send({ cmd: "start" });
  await reply();
  execFileSync("callgrind_control", ["--instr=on", String(child.pid)], { stdio: "pipe" });
  const { stdout } = await load(COUNT);
  child.send({ cmd: "stop" });
  const { handshakes } = await reply();
  execFileSync("callgrind_control", ["--dump", String(child.pid)], { stdio: "pipe" });
  child.kill("SIGKILL");
  // the dump callgrind_control asked for is the file with a part number (the final one, at exit, is not written)
  const dump = readdirSync(dir).filter((n) => n.startsWith(`callgrind-${arm}.`) && /\.\d+\.\d+$/.test(n));
  const instructions = Math.max(0, ...dump.map((n) => Number(/^summary:\s*(\d+)/m.exec(readFileSync(join(dir, n), "utf8"))?.[1] ?? 0)));
  // VIW_BENCH_KEEP=DIR keeps the dumps (callgrind_annotate DIR/callgrind-on.* shows where the instructions go)
  if (process.env.VIW_BENCH_KEEP) {
    for (const n of dump) cpSync(join(dir, n), join(process.env.VIW_BENCH_KEEP, n));
    // with VIW_BENCH_NODE_ARGS=--perf-basic-prof: V8's map of JIT code addresses to JS function names, to name callgrind's 0x... functions
    const map = `/tmp/perf-${child.pid}.map`;
    if (existsSync(map)) cpSync(map, join(process.env.VIW_BENCH_KEEP, `perf-${arm}.map`));
  }
  const failed = JSON.parse(stdout).failed;
  if (!handshakes || !instructions) throw new Error(`arm ${arm}: ${handshakes} handshakes, ${instructions} instructions counted`);
  // TurboFan's own work (functions of v8::internal::compiler): code still being optimized in the window is
  // warm-up, not the steady cost of a handshake; shown apart so the two can be told apart.
  let compiler = 0;
  for (const n of dump) {
    const annotated = execFileSync("callgrind_annotate", ["--threshold=100", join(dir, n)], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
    for (const m of annotated.matchAll(/^\s*([\d,]+) \([\s\d.]+%\)\s+\S*v8::internal::compiler::/gm)) compiler += Number(m[1].replaceAll(",", ""));
  }
  return { handshakes, failed, perHandshake: instructions / handshakes, compilerPerHandshake: compiler / handshakes };
}

const load0 = loadavg();
// Both arms at once: the counts do not depend on the machine's load, only the handshakes/s under valgrind do.
const [off, on] = await Promise.all([measure("off"), measure("on")]);
const line = (arm, r) =>
  `audit ${arm.padEnd(3)}  ${(r.perHandshake / 1e6).toFixed(2).padStart(6)} M instructions/handshake (${r.handshakes} handshakes measured${r.failed ? `, ${r.failed} failed` : ""}), of which TurboFan compiling ${(r.compilerPerHandshake / 1e6).toFixed(2)} M`;
const steady = (r) => r.perHandshake - r.compilerPerHandshake;
console.log(
  [
    `issuance listener (TLS 1.3, client certificate required), daemon callbacks as in engine/daemon.ts${process.env.VIW_BENCH_WITHOUT ? `, audited arm WITHOUT ${process.env.VIW_BENCH_WITHOUT}` : ""}; callgrind, node --single-threaded, ${COUNT} handshakes measured per arm after ${WARMUP} warm-up handshakes`,
    `load average before ${load0.map((x) => x.toFixed(2)).join(" ")} (does not change instruction counts)`,
    line("off", off),
    line("on", on),
    `ratio on/off instructions per handshake: ${(on.perHandshake / off.perHandshake).toFixed(3)} (the audit's share: ${(100 * (1 - off.perHandshake / on.perHandshake)).toFixed(1)}% of an audited handshake)`,
    `ratio on/off without TurboFan's compiling (warm-up left in the window): ${(steady(on) / steady(off)).toFixed(3)}`,
  ]
    .map((l) => "  " + l)
    .join("\n"),
);
rmSync(dir, { recursive: true, force: true });
