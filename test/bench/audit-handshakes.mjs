// TLS session audit cost on an issuance-like listener, on the compiled engine
// (dist/, as `viw run` executes it; build with `npx tsc -p tsconfig.json`).
// https, TLS 1.3 only, client certificate required; every connection a new
// full mTLS handshake with one request (audit-load.mjs, 8 concurrent); the
// handler identifies the client from its certificate, as the issuance API does.
// Modes, alternated round by round in one process after a warm-up of each:
//   plain           no audit
//   audited         AuditLog file + real SQLite journal + JA3 peek (what the daemon runs)
//   audited-no-ja3  the same without the ClientHello peek
// Prints medians of handshakes/s and of this process's CPU per handshake,
// with ratios vs plain.
// Usage: node test/bench/audit-handshakes.mjs   (VIW_BENCH_SECONDS=2, VIW_BENCH_ROUNDS=5)
import { execFile as execFileCb, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { AuditLog, auditTlsServer } from "../../dist/engine/audit/index.js";
import { openJournal } from "../../dist/engine/siem/journal/index.js";

const execFile = promisify(execFileCb);
const SECONDS = Number(process.env.VIW_BENCH_SECONDS ?? 2);
const ROUNDS = Number(process.env.VIW_BENCH_ROUNDS ?? 5);
const LOAD = join(import.meta.dirname, "audit-load.mjs");

const dir = mkdtempSync(join(tmpdir(), "viw-audit-hs-"));
const osl = (args, input) => execFileSync("openssl", args, { cwd: dir, input, stdio: ["pipe", "pipe", "pipe"] });
const key = (n) => osl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${n}.key`]);
key("ca");
osl(["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=Bench CA", "-days", "2", "-out", "ca.crt"]);
writeFileSync(join(dir, "srv.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
for (const [n, subj, ext] of [["srv", "/CN=localhost", ["-extfile", "srv.ext"]], ["cli", "/O=ViWorkS/CN=backend.viworks.example", []]]) {
  key(n);
  const csr = osl(["req", "-new", "-key", `${n}.key`, "-subj", subj]);
  osl(["x509", "-req", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", ...ext, "-out", `${n}.crt`], csr);
}
const f = (n) => join(dir, n);
const journal = openJournal(f("journal.db"));
const audit = new AuditLog(f("audit"), { journal });

async function measure(mode, seconds) {
  const server = https.createServer(
    { key: readFileSync(f("srv.key")), cert: readFileSync(f("srv.crt")), ca: readFileSync(f("ca.crt")), requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3", handshakeTimeout: 10_000 },
    // Like the issuance API (engine/pki/api.ts): the client is identified from its certificate on each connection.
    (req, res) => res.end(req.socket.getPeerX509Certificate()?.subject ?? "anonymous"),
  );
  if (mode !== "plain") auditTlsServer(server, { listener: "issuance", audit, component: "pki", ja3: mode === "audited", isRevoked: () => false });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const cpu0 = process.cpuUsage();
  const { stdout } = await execFile(process.execPath, [LOAD, JSON.stringify({ port: server.address().port, ca: f("ca.crt"), cert: f("cli.crt"), key: f("cli.key"), seconds, concurrency: 8 })]);
  await audit.flush();
  const cpu = process.cpuUsage(cpu0);
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  const out = JSON.parse(stdout);
  if (out.failed) throw new Error(`${mode}: ${out.failed} handshakes failed`);
  return { rate: out.rate, cpu: (cpu.user + cpu.system) / Math.max(1, out.count) };
}

const modes = ["plain", "audited", "audited-no-ja3"];
for (const m of modes) await measure(m, 1);
const runs = Object.fromEntries(modes.map((m) => [m, { rate: [], cpu: [] }]));
for (let r = 0; r < ROUNDS; r++) {
  for (const m of modes) {
    const x = await measure(m, SECONDS);
    runs[m].rate.push(x.rate);
    runs[m].cpu.push(x.cpu);
  }
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const base = { rate: median(runs.plain.rate), cpu: median(runs.plain.cpu) };
for (const m of modes) {
  const rate = median(runs[m].rate);
  const cpu = median(runs[m].cpu);
  console.log(
    `  ${m.padEnd(15)} ${rate.toFixed(0).padStart(5)} handshakes/s (ratio ${(rate / base.rate).toFixed(3)})  server CPU ${cpu.toFixed(0)} µs/handshake (ratio ${(cpu / base.cpu).toFixed(3)})  rates: ${runs[m].rate.map((x) => x.toFixed(0)).join(", ")}`,
  );
}
const st = audit.stats();
console.log(`  audit lines written: ${st.lines}, journaled: ${st.journaled}, errors: ${st.writeErrors + st.journalErrors}`);
await audit.close();
await journal.close();
rmSync(dir, { recursive: true, force: true });
