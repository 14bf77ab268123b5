/**
 * The spec's pin-roll test (viworks_pki_siem.md §9.1) end to end on the
 * default config, one pull request per phase: deploy a backup pin, measure
 * adoption, cut over, issue for the new key and refuse the old one, retire the
 * old pin, and the pin-roll-mismatch rule fires for a client presenting the
 * retired pin after the window. A cutover to an undeployed key fails
 * `viw validate` with the reason.
 */
import { execFileSync } from "node:child_process";
import { createPublicKey } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { main as validateMain } from "../../engine/cli/validate.js";
import { loadSnapshot, readDirSnapshot, type DesiredState, type NormalizedEvent } from "../../engine/config/index.js";
import { checkPinSetRevision, checkProfileIssuance, pinOf, PinTelemetry, renewOnce } from "../../engine/pki/pins/index.js";
import { compileRules, Engine, type AlertEvent } from "../../engine/siem/detect/index.js";
import { startStandIn } from "./standin.js";

const ROOT = join(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "viw-pinroll-"));
const repo = join(dir, "repo");
for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(ROOT, f), join(repo, f), { recursive: true });
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** A gateway key and CSR made by openssl, and its pin as `viw pin` computes it. */
function gatewayKey(name: string) {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=gw.viworks.example", "-addext", "subjectAltName=DNS:gw.viworks.example"], { stdio: "pipe" });
  const r = pinOf(readFileSync(csr));
  return { key, csr, pin: r.pin, spki: r.spki };
}
const P = gatewayKey("primary-2026a");
const B = gatewayKey("backup-2026b");
const C = gatewayKey("next-2027");

/** pins/gateway.yaml as each pull request writes it. */
function writeGateway(pins: string, roll: string): void {
  writeFileSync(
    join(repo, "pins/gateway.yaml"),
    `id: gateway
title: Gateway front door
profile: tls-gateway
hosts: [gw.viworks.example, "*.gw.viworks.example"]
pins:
${pins}
roll:
${roll}
ct:
  domains: [gw.viworks.example]
  allowed_issuers: [int-tls]
`,
  );
}
async function load(): Promise<DesiredState> {
  const r = loadSnapshot(await readDirSnapshot(repo));
  expect(r.errors).toEqual([]);
  return r.state!;
}
const issuance = (s: DesiredState, key: { spki: Buffer }, at: string) => checkProfileIssuance(s.pinSets, s.profiles.get("tls-gateway")!, key.spki, at);

function detector(state: DesiredState) {
  const alerts: AlertEvent[] = [];
  const engine = new Engine(compileRules(state, (id) => id === "pin-roll-mismatch"), { onAlert: (a) => alerts.push(a), latenessMs: 0 });
  let i = 0;
  const check = (device: string, pin: string, at: string) =>
    engine.process({ event_id: `pc-${++i}`, timestamp: at, received_at: at, action: "pin_check", result: "success", device_id: device, extra: { pin, pin_set: "gateway", client_version: "3.2.0" } } as NormalizedEvent);
  return { alerts, check };
}

describe("pin roll of the gateway pin set, one pull request per phase", () => {
  it("stable -> backup-deployed -> cutover -> retired, with issuance, telemetry and the mismatch rule at each step", async () => {
    // PR 1, stable: the gateway's key is the primary, the sealed backup key is pinned in clients.
    writeGateway(`  - {sha256: ${P.pin}, role: primary, label: gateway key 2026a}\n  - {sha256: ${B.pin}, role: backup, label: gateway key 2026b}`, `  phase: stable\n  since: 2026-10-01\n  window: 30d\n  adoption_threshold: 0.95`);
    const stable = await load();
    expect(issuance(stable, P, "2026-10-15")).toBeNull();
    expect(issuance(stable, B, "2026-10-15")?.message).toContain("pin set gateway is in phase stable: only the primary key " + P.pin);

    // PR 2, backup-deployed: clients ship both pins; telemetry measures who carries the backup.
    writeGateway(`  - {sha256: ${P.pin}, role: primary, label: gateway key 2026a}\n  - {sha256: ${B.pin}, role: backup, label: gateway key 2026b}`, `  phase: backup-deployed\n  since: 2026-11-01\n  window: 30d\n  adoption_threshold: 0.95`);
    const deployed = await load();
    expect(checkPinSetRevision(stable.pinSets.get("gateway"), deployed.pinSets.get("gateway"))).toEqual([]);
    const tel = new PinTelemetry({ now: () => Date.parse("2026-11-19T00:00:00Z") });
    tel.setPinSets(deployed.pinSets);
    for (let d = 0; d < 20; d++) {
      tel.observe({ event_id: `a${d}`, timestamp: "2026-11-18T10:00:00Z", received_at: "2026-11-18T10:00:00Z", action: "pin_check", device_id: `dev-${d}`, extra: { pin: P.pin, pin_set: "gateway", client_version: "3.2.0" } });
      if (d < 18) tel.observe({ event_id: `b${d}`, timestamp: "2026-11-18T10:00:00Z", received_at: "2026-11-18T10:00:00Z", action: "pin_check", device_id: `dev-${d}`, extra: { pin: B.pin, pin_set: "gateway", client_version: "3.2.0" } });
    }
    expect(tel.pinStatus("gateway")).toMatchObject({ phase: "backup-deployed", adoption: { devices: 20, adopted: 18, ratio: 0.9 }, cutover_safe: false });
    tel.observe({ event_id: "b18", timestamp: "2026-11-18T11:00:00Z", received_at: "2026-11-18T11:00:00Z", action: "pin_check", device_id: "dev-18", extra: { pin: B.pin, pin_set: "gateway", client_version: "3.3.0" } });
    expect(tel.pinStatus("gateway")).toMatchObject({ adoption: { adopted: 19, ratio: 0.95 }, cutover_safe: true });

    // PR 3, cutover to the backup: certificates only for the backup key.
    writeGateway(
      `  - {sha256: ${P.pin}, role: primary, label: gateway key 2026a}\n  - {sha256: ${B.pin}, role: backup, label: gateway key 2026b}`,
      `  phase: cutover\n  since: 2026-11-20\n  to: ${B.pin}\n  window: 30d\n  adoption_threshold: 0.95`,
    );
    const cutover = await load();
    expect(checkPinSetRevision(deployed.pinSets.get("gateway"), cutover.pinSets.get("gateway"))).toEqual([]);
    expect(issuance(cutover, B, "2026-11-21")).toBeNull();
    expect(issuance(cutover, P, "2026-11-21")).toEqual({
      code: "pin_not_allowed",
      message: `pin set gateway is in phase cutover: only the backup key ${B.pin} (gateway key 2026b) may be certified; this CSR's key is ${P.pin} (the outgoing primary, gateway key 2026a); the set is rolling away from this key: renew with the backup key`,
    });
    // The gateway's agent renews: its current key is refused, the backup key is certified over mTLS.
    const api = await startStandIn(dir);
    try {
      api.pinSets.clear();
      for (const [id, s] of cutover.pinSets) api.pinSets.set(id, s);
      const gw = { cert: join(dir, "gw.crt"), key: join(dir, "gw.key") };
      writeFileSync(gw.cert, await api.enrol(createPublicKey(readFileSync(P.key)), "gw.viworks.example"));
      writeFileSync(gw.key, readFileSync(P.key));
      const r = await renewOnce({ certFile: gw.cert, keyFile: gw.key, url: api.url, ca: api.files.ca, clientCert: api.files.clientCrt, clientKey: api.files.clientKey, backupKey: B.key, profile: "tls-gateway" });
      expect(r).toMatchObject({ key: "backup", pin: B.pin });
      expect(pinOf(readFileSync(gw.cert)).pin).toBe(B.pin);
      expect(api.calls.filter((c) => c.code === "pin_not_allowed")).toHaveLength(2); // a new key, then the old key
    } finally {
      await api.close();
    }
    // During the window the old pin is still fine; after it, a client presenting it is a mismatch.
    const during = detector(cutover);
    during.check("d-old", P.pin, "2026-12-10T10:00:00Z");
    during.check("d-new", B.pin, "2026-12-10T10:00:00Z");
    expect(during.alerts).toHaveLength(0);
    during.check("d-old", P.pin, "2026-12-20T00:00:01Z");
    expect(during.alerts).toHaveLength(1);

    // PR 4, retired: the old pin is retired, the backup is now the primary, and the next backup is already pinned.
    writeGateway(
      `  - {sha256: ${B.pin}, role: primary, label: gateway key 2026b}\n  - {sha256: ${C.pin}, role: backup, label: gateway key 2027 (sealed)}\n  - {sha256: ${P.pin}, role: retired, label: gateway key 2026a, retired_at: 2026-12-20}`,
      `  phase: retired\n  since: 2026-12-20\n  window: 30d\n  adoption_threshold: 0.95`,
    );
    const retired = await load();
    expect(checkPinSetRevision(cutover.pinSets.get("gateway"), retired.pinSets.get("gateway"))).toEqual([]);
    expect(issuance(retired, B, "2026-12-21")).toBeNull();
    expect(issuance(retired, P, "2026-12-21")?.message).toContain(`this CSR's key is ${P.pin} (a retired pin, gateway key 2026a)`);
    expect(issuance(retired, C, "2026-12-21")?.message).toContain("certify the backup key only after a pull request moves the set to cutover");
    const after = detector(retired);
    after.check("d-7", B.pin, "2026-12-24T09:00:00Z");
    after.check("d-8", C.pin, "2026-12-24T09:00:00Z");
    expect(after.alerts).toHaveLength(0);
    after.check("d-9", P.pin, "2026-12-24T09:00:00Z");
    expect(after.alerts).toHaveLength(1);
    expect(after.alerts[0]).toMatchObject({ action: "alert", severity: "high" });
    expect(JSON.stringify(after.alerts[0])).toContain("d-9");
  });

  it("a pull request that cuts over to an undeployed key fails viw validate with the reason", async () => {
    writeGateway(`  - {sha256: ${P.pin}, role: primary, label: gateway key 2026a}\n  - {sha256: ${B.pin}, role: backup, label: gateway key 2026b}`, `  phase: cutover\n  since: 2026-11-20\n  to: ${C.pin}\n  window: 30d`);
    const out: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    expect(await validateMain(["--repo", repo, "--format", "json"])).toBe(1);
    const res = JSON.parse(out.join(""));
    expect(res.valid).toBe(false);
    expect(res.errors).toEqual([expect.objectContaining({ file: "pins/gateway.yaml", kind: "pinset", id: "gateway", message: `roll.to \`${C.pin}\` is not one of this set's pins` })]);
    expect(res.errors[0].line).toBe(readFileSync(join(repo, "pins/gateway.yaml"), "utf8").split("\n").findIndex((l) => l.includes(`to: ${C.pin}`)) + 1);

    // Adding the key as a backup in the same pull request passes the single-revision check,
    // but against the pull request's base (a real git commit) it is still undeployed: `viw validate --base` says so.
    const git = (...args: string[]) => execFileSync("git", ["-C", repo, ...args], { stdio: "pipe" }).toString();
    git("init", "-q", "-b", "main");
    writeGateway(`  - {sha256: ${P.pin}, role: primary}\n  - {sha256: ${B.pin}, role: backup}`, `  phase: backup-deployed\n  since: 2026-11-01\n  window: 30d`);
    git("add", ".");
    git("-c", "user.name=t", "-c", "user.email=t@example", "commit", "-q", "-m", "backup deployed");
    writeGateway(`  - {sha256: ${P.pin}, role: primary}\n  - {sha256: ${B.pin}, role: backup}\n  - {sha256: ${C.pin}, role: backup}`, `  phase: cutover\n  since: 2026-11-20\n  to: ${C.pin}\n  window: 30d`);
    const validate = async (...args: string[]) => {
      const stdout: string[] = [];
      const stderr: string[] = [];
      vi.spyOn(process.stdout, "write").mockImplementation((s) => (stdout.push(String(s)), true));
      vi.spyOn(process.stderr, "write").mockImplementation((s) => (stderr.push(String(s)), true));
      try {
        return { code: await validateMain(["--repo", repo, ...args]), out: stdout.join(""), err: stderr.join("") };
      } finally {
        vi.restoreAllMocks();
      }
    };
    expect((await validate()).code).toBe(0);
    const toLine = readFileSync(join(repo, "pins/gateway.yaml"), "utf8").split("\n").findIndex((l) => l.includes(`to: ${C.pin}`)) + 1;
    const reason = `roll.to: cutover to ${C.pin}, which was not a pin in the previous revision: clients cannot carry a backup added in the same change; deploy it as a backup first`;
    const text = await validate("--base", "HEAD");
    expect(text.code).toBe(1);
    expect(text.out).toBe(`pins/gateway.yaml:${toLine}:7: error: ${reason}\n`);
    const json = await validate("--base", "main", "--format", "json");
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toEqual({ valid: false, errors: [{ file: "pins/gateway.yaml", line: toLine, col: 7, message: reason, kind: "pinset", id: "gateway" }] });
    // The same cutover, once an earlier pull request deployed the key as a backup, is a legal step.
    writeGateway(`  - {sha256: ${P.pin}, role: primary}\n  - {sha256: ${B.pin}, role: backup}\n  - {sha256: ${C.pin}, role: backup}`, `  phase: backup-deployed\n  since: 2026-11-01\n  window: 30d`);
    git("add", ".");
    git("-c", "user.name=t", "-c", "user.email=t@example", "commit", "-q", "-m", "deploy C as a backup");
    writeGateway(`  - {sha256: ${P.pin}, role: primary}\n  - {sha256: ${B.pin}, role: backup}\n  - {sha256: ${C.pin}, role: backup}`, `  phase: cutover\n  since: 2026-11-20\n  to: ${C.pin}\n  window: 30d`);
    expect((await validate("--base", "HEAD")).out).toMatch(/^valid: .*, no pin-roll problem against HEAD\n$/);
    // A base that is not a revision of the repo is a usage error.
    await expect(validate("--base", "no-such-rev")).rejects.toThrow(/--base no-such-rev: unknown revision/);
  });
});
