// The SIEM service in its own process, for kill -9 tests and benchmarks.
// argv[2]: JSON {repo, dataDir, pkiDir, syslogPort, bulkPort, shippers: {id: base64 raw key}, sink?}
// Prints {"syslog","bulk"} once listening; answers "status" lines on stdin with
// {lastSeq, cursors, stored, vmHwmKb} ("status-lite": without the store count); SIGTERM closes (drains) and exits.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createSiemService } from "../../../engine/siem/index.js";
import { testStateFrom } from "./state.js";

const cfg = JSON.parse(process.argv[2]!) as { repo: string; dataDir: string; pkiDir: string; syslogPort: number; bulkPort: number; shippers: Record<string, string> };
const pem = (f: string) => readFileSync(join(cfg.pkiDir, f), "utf8");
const state = await testStateFrom(cfg.repo, cfg.shippers);
const service = await createSiemService({ dataDir: cfg.dataDir, enrich: false });
(await service.prepare(state, undefined)).commit();
const tls = { key: pem("server.key"), cert: pem("server.crt"), ca: [pem("int-tls.crt")], issuers: { "int-tls": pem("int-tls.crt") } };
const addrs = await service.listen({ syslog: { port: cfg.syslogPort, tls }, bulk: { port: cfg.bulkPort, tls } });
process.stdout.write(JSON.stringify(addrs) + "\n");

function hwm(): number {
  const m = /VmHWM:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) : 0;
}
createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = line.trim();
  if (cmd === "status" || cmd === "status-lite") {
    // status-lite skips COUNT(*) over the store, which would skew a benchmark that polls
    const s = service.journal.stats();
    process.stdout.write(JSON.stringify({ lastSeq: s.lastSeq, cursors: s.cursors, stored: cmd === "status" ? service.store?.count() : -1, vmHwmKb: hwm() }) + "\n");
  }
});
// VIW_GC_STATS=1: the main thread's time in each kind of garbage collection, on stderr at exit (benchmark profiling)
const gc: Record<string, { n: number; ms: number }> = {};
if (process.env.VIW_GC_STATS) {
  const { PerformanceObserver, constants } = await import("node:perf_hooks");
  const kinds: Record<number, string> = { [constants.NODE_PERFORMANCE_GC_MINOR]: "minor", [constants.NODE_PERFORMANCE_GC_MAJOR]: "major", [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental", [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb" };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const k = kinds[(e.detail as { kind: number }).kind] ?? "other";
      const g = (gc[k] ??= { n: 0, ms: 0 });
      g.n++;
      g.ms += e.duration;
    }
  }).observe({ entryTypes: ["gc"] });
}
process.on("SIGTERM", () => {
  if (process.env.VIW_GC_STATS) process.stderr.write(`gc: ${JSON.stringify(gc)} lastSeq ${service.journal.lastSeq()}\n`);
  void service.close().then(() => process.exit(0));
});
