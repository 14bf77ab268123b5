// Detection throughput in instructions per event (issue #5), for a machine too loaded for CPU-time figures: the
// throughput workload of detect.bench.ts (the default rules + 100 generated rules, a fresh Engine over 200,000
// pre-parsed events) run under valgrind's callgrind, which counts the instructions and simulated cache misses of
// the process whatever else the machine runs. Instrumentation is on only for the second pass over the stream (the
// first warms the JIT); V8 runs --single-threaded so its compiler and GC work is counted in the process.
// Needs valgrind (apt-get install valgrind); a run takes ~6 minutes.
//
// Usage: npx tsc -p tsconfig.json && node test/bench/detect-instructions.mjs
//   VIW_BENCH_DIST (default ./dist: the built engine to measure, e.g. another revision's build),
//   VIW_BENCH_KEEP=FILE keeps the callgrind dump (callgrind_annotate FILE).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { requireValgrind } from "./callgrind.mjs";
import { events, generatedRules, stateWith } from "./detect-workload.mjs";

const ROOT = resolve(import.meta.dirname, "../..");
const DIST = resolve(process.env.VIW_BENCH_DIST ?? join(ROOT, "dist"));
const BATCH = 200_000;

if (process.argv[2] === "child") {
  const engineDir = pathToFileURL(join(DIST, "engine")).href;
  const config = await import(`${engineDir}/config/index.js`);
  const { compileRules, Engine } = await import(`${engineDir}/siem/detect/index.js`);
  const rules = compileRules(await stateWith(config, ROOT, generatedRules()));
  const stream = events(BATCH, Date.parse("2026-11-23T10:00:00Z"));
  const toggle = (on) => execFileSync("callgrind_control", ["-i", on ? "on" : "off", String(process.pid)], { stdio: "ignore" });
  let alerts = 0;
  for (let pass = 0; pass < 2; pass++) {
    const engine = new Engine(rules, { onAlert: () => alerts++ });
    if (pass === 1) toggle(true);
    for (let i = 0; i < stream.length; i++) engine.process(stream[i]);
    if (pass === 1) toggle(false);
  }
  console.log(JSON.stringify({ rules: rules.length, alerts: alerts / 2 }));
  process.exit(0);
}

requireValgrind("detect-instructions");
const dir = mkdtempSync(join(tmpdir(), "viw-detect-ir-"));
const out = process.env.VIW_BENCH_KEEP ?? join(dir, "callgrind.out");
const load = loadavg()[0];
const run = spawnSync(
  "valgrind",
  ["--tool=callgrind", "--instr-atstart=no", "--cache-sim=yes", `--callgrind-out-file=${out}`, process.execPath, "--single-threaded", import.meta.filename, "child"],
  { encoding: "utf8", env: process.env, maxBuffer: 64 << 20 },
);
if (run.status !== 0) {
  console.error(run.stderr.slice(-4000));
  process.exit(1);
}
const info = JSON.parse(run.stdout.trim().split("\n").pop());
const events_ = readFileSync(out, "utf8").match(/^events: (.*)$/m)[1].split(" ");
const totals = readFileSync(out, "utf8").match(/^totals: (.*)$/m)[1].split(" ").map(Number);
const per = (name) => totals[events_.indexOf(name)] / BATCH;
console.log(
  `detect-instructions: ${info.rules} rules, ${BATCH} events (${info.alerts} alerts): ${Math.round(per("Ir")).toLocaleString("en")} instructions/event, ` +
    `${Math.round(per("Dr") + per("Dw")).toLocaleString("en")} data refs/event, ${per("D1mr").toFixed(0)} D1 read misses/event, ${(per("DLmr") + per("DLmw")).toFixed(1)} LL misses/event ` +
    `(callgrind's cache model); at 1 instruction/cycle on 3 GHz that is ${Math.round(3e9 / per("Ir")).toLocaleString("en")} events/s; load ${load.toFixed(2)}`,
);
if (!process.env.VIW_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
