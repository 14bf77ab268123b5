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
