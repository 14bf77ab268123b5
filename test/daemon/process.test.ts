/**
 * `viw run --dev --repo DIR` as a real process (what `npm start` runs): it
 * comes up, serves every listener, picks up an edited file, reconciles on
 * SIGHUP, and drains on SIGTERM with exit 0. Needs the build (dist/), made in
 * beforeAll as `npm test` does.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readTimeline } from "../../engine/gitops/index.js";
import { MAIN } from "../gitops/fixture.js";

let repo: string;
let data: string;
let child: ChildProcess | undefined;
let stdout = "";

async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 30_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}\n${stdout.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function status(admin: string): Promise<any> {
  return (await fetch(`${admin}/v1/status`)).json();
}

beforeAll(() => {
  // tsc emits even when a file elsewhere has a type error (other areas in flight); the daemon's own files are checked separately.
  spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: MAIN, stdio: "ignore" });
  repo = mkdtempSync(join(tmpdir(), "viw-proc-repo-"));
  data = mkdtempSync(join(tmpdir(), "viw-proc-data-"));
  for (const f of ["policies", "profiles", "detections", "dashboards", "pins"]) cpSync(join(MAIN, f), join(repo, f), { recursive: true });
}, 120_000);

afterAll(() => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
  if (repo) rmSync(repo, { recursive: true, force: true });
  if (data) rmSync(data, { recursive: true, force: true });
});

describe("viw run --dev as a process", () => {
  it("is ready within 30 s, follows edits, reconciles on SIGHUP, drains on SIGTERM", async () => {
    const t0 = Date.now();
    const listen = ["admin", "issuance", "pki", "syslog", "bulk"].flatMap((n) => ["--listen", `${n}=127.0.0.1:0`]);
    child = spawn(process.execPath, [join(MAIN, "dist/engine/cli/main.js"), "run", "--dev", "--repo", repo, "--data", data, ...listen], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (c) => (stdout += c));
    child.stderr!.on("data", (c) => (stdout += c));
    const endpointsFile = join(data, "run", "endpoints.json");
    const endpoints = await until("endpoints.json", () => (existsSync(endpointsFile) ? JSON.parse(readFileSync(endpointsFile, "utf8")) : undefined));
    expect(Object.keys(endpoints).sort()).toEqual(["admin", "bulk", "issuance", "pki", "syslog"]);
    await until("readyz", async () => ((await fetch(`${endpoints.admin}/readyz`)).status === 200 ? true : undefined));
    expect(Date.now() - t0).toBeLessThan(30_000);
    const first = await status(endpoints.admin);
    expect(first.trust.mode).toBe("unsigned");
    expect(first.trust.warning).toMatch(/without signature checks/);
    for (const f of ["backend-client.crt", "backend-client.key", "shipper-dev.key", "ca-chain.pem"]) expect(existsSync(join(data, "dev", f))).toBe(true);
    // Logs are JSON lines (pino).
    expect(JSON.parse(stdout.split("\n")[0]!).msg).toBeTruthy();

    // Every TLS session on the issuance port is audited (Dogtag format) and journaled: a TLS 1.2 client is refused
    // with the version named, the dev client certificate is established with its DN.
    const issuance = new URL(endpoints.issuance);
    spawnSync("openssl", ["s_client", "-tls1_2", "-connect", `127.0.0.1:${issuance.port}`], { input: "", timeout: 10_000 });
    const dev = join(data, "dev");
    const curl = spawnSync("curl", ["-s", "--cert", join(dev, "backend-client.crt"), "--key", join(dev, "backend-client.key"), "--cacert", join(dev, "ca-chain.pem"), `${endpoints.issuance}/v1/ca/chain?issuer=int-tls`], { encoding: "utf8", timeout: 10_000 });
    expect(curl.stdout).toContain("BEGIN CERTIFICATE");
    const auditLog = join(data, "audit", "audit.log");
    const lines = await until("audit lines", () => {
      const text = existsSync(auditLog) ? readFileSync(auditLog, "utf8") : "";
      return /ESTABLISH_FAILURE.*protocol version/.test(text) && /ESTABLISH_SUCCESS\]\[ClientIP=[^\]]*\]\[ServerIP=[^\]]*\]\[SubjectID=[^\]]*backend\.viworks\.example/.test(text) ? text : undefined;
    }, 10_000);
    expect(lines).toMatch(/\[issuance\] \[AuditEvent=ACCESS_SESSION_ESTABLISH_FAILURE\]\[ClientIP=127\.0\.0\.1\]\[ServerIP=127\.0\.0\.1\]\[AttemptedID=\]\[Outcome=Failure\]\[Info=protocol version not allowed/);
    const where = encodeURIComponent(JSON.stringify({ "==": [{ var: "error_code" }, "protocol_version"] }));
    const events = await until("the session events in the store", async () => {
      const r = (await (await fetch(`${endpoints.admin}/v1/query?index=viw-pki&since=1h&where=${where}`)).json()) as { total: number; hits: { action: string; result: string }[] };
      return r.total > 0 ? r : undefined;
    }, 10_000);
    expect(events.hits[0]).toMatchObject({ action: "tls_session_establish", result: "failure", component: "pki" });

    // An edited file is live within 2 s.
    const profile = join(repo, "profiles", "backend-api.yaml");
    writeFileSync(profile, readFileSync(profile, "utf8").replace("default: 90d", "default: 80d"));
    const edited = Date.now();
    const second = await until("the edit to be live", async () => {
      const s = await status(endpoints.admin);
      return s.applied.revision !== first.applied.revision ? s : undefined;
    }, 5000);
    expect(Date.now() - edited).toBeLessThan(2000);
    expect(second.services.pki.revision).toBe(second.applied.revision);

    // SIGHUP forces a reconcile even of a remembered refusal.
    writeFileSync(profile, readFileSync(profile, "utf8").replace("default: 80d", "default: oops"));
    const refused = await until("the refusal", async () => {
      const s = await status(endpoints.admin);
      return s.last_attempt.ok === false ? s : undefined;
    }, 5000);
    const at = refused.last_attempt.at;
    child.kill("SIGHUP");
    await until("the forced retry", async () => ((await status(endpoints.admin)).last_attempt.at !== at ? true : undefined), 5000);

    // SIGTERM: exit 0, timeline closed with a "stopped" entry.
    const exited = new Promise<number | null>((r) => child!.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    const t = await readTimeline(data);
    expect(t.ok).toBe(true);
    expect(t.entries.at(-1)!.type).toBe("stopped");
    expect(t.entries.filter((e) => e.type === "applied")).toHaveLength(2);
  }, 90_000);
});
