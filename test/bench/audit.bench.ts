/**
 * TLS session audit cost (target: auditing costs <= 5% of handshakes/s on 8444).
 *  - Handshakes: test/bench/audit-handshakes.mjs on the compiled engine (dist/):
 *    the engine's issuance listener (createPkiService; TLS 1.3 only, client
 *    certificate required) in two server processes pinned to CPU 0, audit off
 *    and audit on (as engine/daemon.ts attaches it), the load generator pinned
 *    to CPU 1, A/B interleaved rounds; medians, per-round ratios and spread,
 *    server CPU per handshake as each server measures it, the load average.
 *  - The audit's own bookkeeping per session without the network (two lines,
 *    two journal events), as a share of an unaudited handshake's server CPU.
 *  - Formatting one line (vitest bench).
 * Figures on the shared 2-core machine are noisy (the handshake rate is bound
 * by scheduling latency when other agents load it); read the CPU ratios, the
 * client CPU (the same in both arms: a noise gauge) and the bookkeeping share
 * together.
 *
 *   npm run bench -- test/bench/audit.bench.ts     (builds dist/ first)
 *   or: npx tsc -p tsconfig.json && npx vitest bench --run test/bench/audit.bench.ts
 *   (VIW_BENCH_SECONDS, VIW_BENCH_ROUNDS)
 */
import { execFile as execFileCb } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { bench, describe } from "vitest";
import { AuditLog, formatAuditFields } from "../../engine/audit/index.js";
import { openJournal } from "../../engine/siem/journal/index.js";

const execFile = promisify(execFileCb);
const dir = mkdtempSync(join(tmpdir(), "viw-audit-bench-"));
const journal = openJournal(join(dir, "journal.db"));
const audit = new AuditLog(join(dir, "audit"), { journal });

// Handshakes on the compiled engine, in its own process (vitest's module runner is not what `viw run` executes).
const { stdout: handshakes } = await execFile(process.execPath, [join(import.meta.dirname, "audit-handshakes.mjs")], { env: { ...process.env } });
const lines = handshakes.trimEnd().split("\n").map((l) => l.trim());
const plainCpu = Number(/audit off .* server CPU\s+(\d+) µs/.exec(handshakes)?.[1] ?? NaN);

// The audit's own work per session without the network: two lines (file + journal copy) as the hooks write them.
{
  const N = 4000;
  const fields = [["ClientIP", "203.0.113.12"], ["ServerIP", "10.0.0.1"], ["SubjectID", "CN=backend.viworks.example,O=ViWorkS"], ["Outcome", "Success"], ["Info", ""]] as const;
  const draft = (action: string) => ({ timestamp: "", component: "pki", action, result: "success", session_id: "x", src_ip: "203.0.113.12", src_port: 40000, dst_ip: "10.0.0.1", dst_port: 8444, proto: "tcp", tls_ja3: "0".repeat(32), extra: { listener: "issuance", subject_dn: "CN=backend.viworks.example,O=ViWorkS" } });
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    audit.writeSession("issuance", "ACCESS_SESSION_ESTABLISH_SUCCESS", fields, draft("tls_session_establish"));
    audit.writeSession("issuance", "ACCESS_SESSION_TERMINATED", fields, draft("tls_session_terminate"));
    if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
  await audit.flush();
  const c = process.cpuUsage(c0);
  const perSession = (c.user + c.system) / N;
  lines.push(`audit bookkeeping per session (2 lines + 2 journal events, no network): ${perSession.toFixed(0)} µs CPU = ${((100 * perSession) / plainCpu).toFixed(1)}% of an unaudited handshake's server CPU`);
}
process.stdout.write("\n" + lines.map((l) => "  " + l).join("\n") + "\n\n");
await audit.close();
await journal.close();
rmSync(dir, { recursive: true, force: true });

describe("audit", () => {
  const fields = [["ClientIP", "203.0.113.12"], ["ServerIP", "10.0.0.1"], ["SubjectID", "CN=backend.viworks.example,O=ViWorkS"], ["Outcome", "Success"], ["Info", ""]] as const;
  bench("format one ACCESS_SESSION line", () => void formatAuditFields("ACCESS_SESSION_ESTABLISH_SUCCESS", fields));
});
