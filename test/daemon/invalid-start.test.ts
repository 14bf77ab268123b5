/** A daemon whose first revision is invalid: not ready, says why with file:line, serves the admin port, stops cleanly; fixing the file makes it ready. */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createDaemon } from "../../engine/daemon.js";
import { MAIN } from "../gitops/fixture.js";

const repo = mkdtempSync(join(tmpdir(), "viw-inv-repo-"));
const data = mkdtempSync(join(tmpdir(), "viw-inv-data-"));
afterAll(() => {
  rmSync(repo, { recursive: true, force: true });
  rmSync(data, { recursive: true, force: true });
});

describe("first revision invalid", () => {
  it("is not ready, names the error, becomes ready once fixed, and stops", async () => {
    for (const f of ["policies", "profiles", "detections", "dashboards", "pins"]) cpSync(join(MAIN, f), join(repo, f), { recursive: true });
    const file = join(repo, "policies", "governance.yaml");
    const good = readFileSync(file, "utf8");
    writeFileSync(file, good.replace("approvals: 2", "approvals: two"));
    const listen = Object.fromEntries(["admin", "issuance", "pki", "syslog", "bulk"].map((n) => [n, { host: "127.0.0.1", port: 0 }]));
    const daemon = createDaemon({ repo, data, dev: true, listen, logger: pino({ level: "silent" }) });
    await daemon.start();
    const admin = daemon.adminUrl;
    let s: any;
    for (let i = 0; i < 100 && !(s = await (await fetch(`${admin}/v1/status`)).json()).last_attempt; i++) await new Promise((r) => setTimeout(r, 50));
    expect(s.applied).toBeNull();
    expect(s.last_attempt.errors[0]).toMatchObject({ file: "policies/governance.yaml", line: expect.any(Number) });
    const ready = await fetch(`${admin}/readyz`);
    expect(ready.status).toBe(503);
    expect((await ready.json()).reason).toBe("no revision applied yet");

    writeFileSync(file, good);
    await daemon.reconciler.whenReady();
    await daemon.whenListening();
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
    await daemon.stop();
  }, 60_000);

  it("a daemon that never got a valid revision still stops promptly", async () => {
    const d2 = mkdtempSync(join(tmpdir(), "viw-inv-data-"));
    const bad = mkdtempSync(join(tmpdir(), "viw-inv-repo-"));
    cpSync(join(MAIN, "policies"), join(bad, "policies"), { recursive: true });
    writeFileSync(join(bad, "policies", "governance.yaml"), "id: governance\nkind: governance\nrelaxation: {approvals: x}\n");
    const daemon = createDaemon({ repo: bad, data: d2, dev: true, listen: { admin: { host: "127.0.0.1", port: 0 } }, logger: pino({ level: "silent" }) });
    await daemon.start();
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await daemon.stop();
    expect(Date.now() - t0).toBeLessThan(5000);
    rmSync(d2, { recursive: true, force: true });
    rmSync(bad, { recursive: true, force: true });
  }, 30_000);
});
