/**
 * TLS session audit cost on an issuance-like listener (https, TLS 1.3 only,
 * client certificate required): full mTLS handshakes per second, new
 * connection each (no resumption), from a load process with 8 concurrent
 * clients, against the same server
 *   - plain (no audit),
 *   - audited (AuditLog file + real SQLite journal, JA3 peek),
 *   - audited without the JA3 peek,
 * alternated round by round in one run; medians, ratios vs plain, and the
 * server's CPU time per handshake (process.cpuUsage, the less noisy figure
 * on a shared 2-core machine). Target: audited >= 95% of plain.
 *
 *   npx vitest bench --run test/bench/audit.bench.ts   (VIW_BENCH_SECONDS, default 4)
 */
import { execFile as execFileCb } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { bench, describe } from "vitest";
import { AuditLog, auditTlsServer, formatAuditFields } from "../../engine/audit/index.js";
import { openJournal } from "../../engine/siem/journal/index.js";
import { makePki } from "../audit/helpers.js";

const execFile = promisify(execFileCb);
const SECONDS = Number(process.env.VIW_BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.VIW_BENCH_ROUNDS ?? 3);
const CONCURRENCY = 8;
const LOAD = join(import.meta.dirname, "audit-load.mjs");

const dir = mkdtempSync(join(tmpdir(), "viw-audit-bench-"));
const pki = makePki(dir);
const journal = openJournal(join(dir, "journal.db"));
const audit = new AuditLog(join(dir, "audit"), { journal });

type Mode = "plain" | "audited" | "audited-no-ja3";

async function measure(mode: Mode): Promise<{ rate: number; cpuUs: number; failed: number }> {
  const server = https.createServer(
    { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert), ca: readFileSync(pki.ca), requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3", handshakeTimeout: 10_000 },
    (_req, res) => res.end("ok"),
  );
  if (mode !== "plain") auditTlsServer(server, { listener: "issuance", audit, component: "pki", ja3: mode === "audited", isRevoked: () => false });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const cpu0 = process.cpuUsage();
  const { stdout } = await execFile(process.execPath, [LOAD, JSON.stringify({ port, ca: pki.ca, cert: pki.clients.good.cert, key: pki.clients.good.key, seconds: SECONDS, concurrency: CONCURRENCY })]);
  await audit.flush();
  const cpu = process.cpuUsage(cpu0);
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  const out = JSON.parse(stdout) as { count: number; failed: number; rate: number };
  return { rate: out.rate, cpuUs: (cpu.user + cpu.system) / Math.max(1, out.count), failed: out.failed };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const modes: Mode[] = ["plain", "audited", "audited-no-ja3"];
const runs: Record<Mode, { rate: number[]; cpu: number[] }> = { plain: { rate: [], cpu: [] }, audited: { rate: [], cpu: [] }, "audited-no-ja3": { rate: [], cpu: [] } };
await measure("plain"); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const mode of modes) {
    const m = await measure(mode);
    if (m.failed) throw new Error(`${mode}: ${m.failed} handshakes failed`);
    runs[mode].rate.push(m.rate);
    runs[mode].cpu.push(m.cpuUs);
  }
}
const base = { rate: median(runs.plain.rate), cpu: median(runs.plain.cpu) };
const lines = modes.map((mode) => {
  const rate = median(runs[mode].rate);
  const cpu = median(runs[mode].cpu);
  return `${mode.padEnd(15)} ${rate.toFixed(0).padStart(6)} handshakes/s (ratio ${(rate / base.rate).toFixed(3)})  server CPU ${cpu.toFixed(0)} µs/handshake (ratio ${(cpu / base.cpu).toFixed(3)})  runs: ${runs[mode].rate.map((x) => x.toFixed(0)).join(", ")}`;
});
// The audit's own work per session without the network: two lines (file + journal copy) as the hooks write them.
{
  const N = 4000;
  const fields = [["ClientIP", "203.0.113.12"], ["ServerIP", "10.0.0.1"], ["SubjectID", "CN=backend.viworks.example,O=ViWorkS"], ["Outcome", "Success"], ["Info", ""]] as const;
  const draft = (action: string) => ({ timestamp: new Date().toISOString(), component: "pki", action, result: "success", session_id: "x", src_ip: "203.0.113.12", src_port: 40000, dst_ip: "10.0.0.1", dst_port: 8444, proto: "tcp", tls_ja3: "0".repeat(32), extra: { listener: "issuance", subject_dn: "CN=backend.viworks.example,O=ViWorkS" } });
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    audit.write("issuance", "ACCESS_SESSION_ESTABLISH_SUCCESS", fields, draft("tls_session_establish"));
    audit.write("issuance", "ACCESS_SESSION_TERMINATED", fields, draft("tls_session_terminate"));
    if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
  await audit.flush();
  const c = process.cpuUsage(c0);
  const perSession = (c.user + c.system) / N;
  lines.push(`audit bookkeeping per session (2 lines + 2 journal events, no network): ${perSession.toFixed(0)} µs CPU = ${((100 * perSession) / base.cpu).toFixed(1)}% of a plain handshake's server CPU`);
}
lines.push(`audit lines written: ${audit.stats().lines}, journaled: ${audit.stats().journaled}, journal errors: ${audit.stats().journalErrors}`);
process.stdout.write("\n" + lines.map((l) => "  " + l).join("\n") + "\n\n");
await audit.close();
await journal.close();
rmSync(dir, { recursive: true, force: true });

describe("audit", () => {
  const fields = [["ClientIP", "203.0.113.12"], ["ServerIP", "10.0.0.1"], ["SubjectID", "CN=backend.viworks.example,O=ViWorkS"], ["Outcome", "Success"], ["Info", ""]] as const;
  bench("format one ACCESS_SESSION line", () => void formatAuditFields("ACCESS_SESSION_ESTABLISH_SUCCESS", fields));
});
