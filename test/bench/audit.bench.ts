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

// The audit's own work per session without the network: its two records (file lines + journal copies) as the hooks write them.
{
  const N = 4000;
  const info = () => ({ listener: "issuance", component: "pki", id: "0123456789abcdef00000001", srcIp: "203.0.113.12", srcPort: 40000, dstIp: "10.0.0.1", dstPort: 8444, subjectDn: "CN=backend.viworks.example,O=ViWorkS", serial: "1f2e3d4c5b6a", ja3: "0".repeat(32), offered: ["TLSv1.3"], sni: "localhost" });
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const session = info();
    audit.writeTlsSession({ session, event: "ACCESS_SESSION_ESTABLISH_SUCCESS", outcome: "Success", result: "success", severity: "info", info: "", errorCode: undefined, durationMs: 3, tlsVersion: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384", journal: undefined });
    audit.writeTlsSession({ session, event: "ACCESS_SESSION_TERMINATED", outcome: "Success", result: "success", severity: "info", info: "close_notify from client", errorCode: "close_notify_client", durationMs: 5, bytesIn: 500, bytesOut: 3000, journal: undefined });
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
