import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { PinSetDoc } from "../../engine/config/index.js";
import { main as agentMain } from "../../engine/cli/agent.js";
import { installPair, ManualClock, pinOf, pinOfKey, recoverPair, renewOnce, runAgent } from "../../engine/pki/pins/index.js";
import { startStandIn, type StandIn } from "./standin.js";

let dir: string;
let api: StandIn;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "viw-agent-"));
  api = await startStandIn(dir);
});
afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  api.pinSets.clear();
  api.down = false;
  api.calls.length = 0;
  vi.restoreAllMocks();
});

let n = 0;
/** A gateway enrolled with a first certificate: its cert and key files. */
async function gateway(days = 90) {
  const sub = mkdtempSync(join(dir, `gw${++n}-`));
  const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const cert = join(sub, "gw.crt");
  const key = join(sub, "gw.key");
  writeFileSync(cert, await api.enrol(k.publicKey, "gw.viworks.example", "tls-gateway", days));
  writeFileSync(key, k.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  return { sub, cert, key, pin: pinOfKey(k.privateKey) };
}
const opts = (g: { cert: string; key: string; sub: string }, extra: Record<string, unknown> = {}) => ({
  certFile: g.cert,
  keyFile: g.key,
  url: api.url,
  ca: api.files.ca,
  clientCert: api.files.clientCrt,
  clientKey: api.files.clientKey,
  profile: "tls-gateway",
  exec: `echo "$VIW_CERT $VIW_KEY" >> ${join(g.sub, "reloads")}`,
  ...extra,
});
const reloads = (g: { sub: string }) => (existsSync(join(g.sub, "reloads")) ? readFileSync(join(g.sub, "reloads"), "utf8").trim().split("\n") : []);
function pinSet(phase: PinSetDoc["roll"]["phase"], primary: string, backup: string): PinSetDoc {
  return { id: "gateway", profile: "tls-gateway", hosts: ["gw.viworks.example"], pins: [{ sha256: primary, role: "primary" }, { sha256: backup, role: "backup" }], roll: { phase, since: "2026-11-01", window: "30d", ...(phase === "cutover" ? { to: backup } : {}) } };
}

describe("viw agent renew (against a stand-in issuance API over mTLS)", () => {
  it("rotates with a new key: both files replaced atomically, key mode 0600, subject and SANs kept, reload command run", async () => {
    const g = await gateway();
    const before = new X509Certificate(readFileSync(g.cert));
    const r = await renewOnce(opts(g));
    expect(r).toMatchObject({ via: "rotate", key: "new", keyChanged: true });
    expect(api.calls).toEqual([{ path: "/v1/certs/rotate", status: 201 }]);
    const after = new X509Certificate(readFileSync(g.cert));
    expect(after.serialNumber).not.toBe(before.serialNumber);
    expect(after.subject).toBe("CN=gw.viworks.example");
    expect(after.subjectAltName).toBe("DNS:gw.viworks.example");
    // The certificate is for the key in the key file, and it is a new key.
    const key = createPrivateKey(readFileSync(g.key));
    expect(after.publicKey.equals(createPublicKey(key))).toBe(true);
    expect(pinOfKey(key)).not.toBe(g.pin);
    expect(pinOf(readFileSync(g.cert)).pin).toBe(r.pin);
    expect(statSync(g.key).mode & 0o777).toBe(0o600);
    expect(existsSync(g.key + ".viw-new") || existsSync(g.cert + ".viw-new") || existsSync(g.key + ".viw-tmp")).toBe(false);
    expect(reloads(g)).toEqual([`${g.cert} ${g.key}`]);
  });

  it("pinned profile in phase stable: the new key is refused by the pin set, the agent renews the pinned key instead", async () => {
    const g = await gateway();
    const backup = generateKeyPairSync("ec", { namedCurve: "P-256" });
    api.pinSets.set("gateway", pinSet("stable", g.pin, pinOfKey(backup.privateKey)));
    const keyBefore = readFileSync(g.key, "utf8");
    const logs: string[] = [];
    const r = await renewOnce(opts(g, { log: (l: string) => logs.push(l) }));
    expect(r).toMatchObject({ key: "current", keyChanged: false, pin: g.pin });
    expect(api.calls.map((c) => [c.status, c.code])).toEqual([[400, "pin_not_allowed"], [201, undefined]]);
    expect(logs.join("\n")).toContain("pin set gateway is in phase stable: only the primary key " + g.pin);
    expect(readFileSync(g.key, "utf8")).toBe(keyBefore);
    expect(pinOf(readFileSync(g.cert)).pin).toBe(g.pin);
  });

  it("cutover: the current key is refused, the deployed backup key (--backup-key) is certified and becomes the key file", async () => {
    const g = await gateway();
    const backup = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const backupFile = join(g.sub, "backup.key");
    writeFileSync(backupFile, backup.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    const backupPin = pinOfKey(backup.privateKey);
    api.pinSets.set("gateway", pinSet("cutover", g.pin, backupPin));
    const r = await renewOnce(opts(g, { backupKey: backupFile }));
    expect(r).toMatchObject({ key: "backup", keyChanged: true, pin: backupPin });
    expect(api.calls.map((c) => c.code ?? c.status)).toEqual(["pin_not_allowed", "pin_not_allowed", 201]);
    expect(pinOf(readFileSync(g.cert)).pin).toBe(backupPin);
    expect(pinOf(readFileSync(g.key)).pin).toBe(backupPin);
    // Without the backup key the agent fails with the pin set's message, and changes nothing.
    const g2 = await gateway();
    api.pinSets.set("gateway", pinSet("cutover", g2.pin, backupPin));
    const certBefore = readFileSync(g2.cert, "utf8");
    await expect(renewOnce(opts(g2))).rejects.toThrow(/pin set gateway is in phase cutover: only the backup key/);
    expect(readFileSync(g2.cert, "utf8")).toBe(certBefore);
    expect(reloads(g2)).toEqual([]);
  });

  it("a revoked certificate (e.g. emergency rotation) is replaced by a fresh issue under --profile", async () => {
    const g = await gateway();
    api.revoke(new X509Certificate(readFileSync(g.cert)).serialNumber);
    const r = await renewOnce(opts(g));
    expect(r.via).toBe("issue");
    // (In between it looks for a successor an emergency rotation may have issued: none here.)
    expect(api.calls.map((c) => `${c.path} ${c.status}`).filter((c) => !/^\/v1\/certs\/[0-9a-f]+ /.test(c))).toEqual(["/v1/certs/rotate 409", "/v1/certs/issue/server 201"]);
    expect(new X509Certificate(readFileSync(g.cert)).subject).toBe("CN=gw.viworks.example");
  });

  it("the CLI: --once prints the result; an unreachable API exits 1 naming it; bad usage exits 2", async () => {
    const g = await gateway();
    const out: string[] = [];
    const err: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
    vi.spyOn(process.stderr, "write").mockImplementation((s) => (err.push(String(s)), true));
    const args = ["renew", "--cert", g.cert, "--key", g.key, "--url", api.url, "--ca", api.files.ca, "--client-cert", api.files.clientCrt, "--client-key", api.files.clientKey, "--exec", "true", "--once"];
    expect(await agentMain(args)).toBe(0);
    const printed = JSON.parse(out.join(""));
    expect(printed).toMatchObject({ key: "new", via: "rotate" });
    expect(printed.pin).toBe(pinOf(readFileSync(g.cert)).pin);
    api.down = true;
    expect(await agentMain(args)).toBe(1);
    expect(err.join("")).toContain("/v1/certs/rotate: HTTP 503 key_unavailable: issuer key unavailable");
    await expect(agentMain(["renew", "--cert", g.cert])).rejects.toThrow(/--cert and --key are required/);
    await expect(agentMain(["renew", "--cert", g.cert, "--key", g.key, "--key-type", "dsa"])).rejects.toThrow(/--key-type must be one of/);
    await expect(agentMain(["frobnicate"])).rejects.toThrow(/unknown agent command/);
  });

  it("the loop on a moved clock: nothing before 2/3 of the lifetime, renewal after it, backoff while the API is down", async () => {
    const g = await gateway(90);
    const clock = new ManualClock(Date.now());
    const lines: string[] = [];
    const renewer = runAgent({ ...opts(g), clock, log: (l) => lines.push(l) });
    const serial0 = new X509Certificate(readFileSync(g.cert)).serialNumber;
    clock.advance(55 * 86_400_000);
    await renewer.idle();
    expect(api.calls).toEqual([]);
    api.down = true;
    clock.advance(6 * 86_400_000); // past 60 days
    await renewer.idle();
    expect(api.calls.map((c) => c.status)).toEqual([503]);
    expect(lines.some((l) => /renewal attempt 1 failed: .*503.*retrying in \d+ s/.test(l))).toBe(true);
    expect(new X509Certificate(readFileSync(g.cert)).serialNumber).toBe(serial0);
    api.down = false;
    clock.set(renewer.nextAt!);
    await renewer.idle();
    renewer.stop();
    expect(api.calls.map((c) => c.status)).toEqual([503, 201]);
    expect(new X509Certificate(readFileSync(g.cert)).serialNumber).not.toBe(serial0);
    expect(reloads(g)).toHaveLength(1);
  });
});

describe("atomic install of the certificate and key pair", () => {
  it("a crash between the two renames is finished on the next start; an incomplete staging is dropped", () => {
    const sub = mkdtempSync(join(dir, "pair-"));
    const cert = join(sub, "c.pem");
    const key = join(sub, "k.pem");
    installPair(cert, key, "CERT1", "KEY1");
    expect([readFileSync(cert, "utf8"), readFileSync(key, "utf8")]).toEqual(["CERT1", "KEY1"]);
    expect(statSync(key).mode & 0o777).toBe(0o600);
    // Crash after the certificate's rename: the staged key is still there.
    writeFileSync(cert, "CERT2");
    writeFileSync(key + ".viw-new", "KEY2");
    expect(recoverPair(cert, key)).toBe(true);
    expect([readFileSync(cert, "utf8"), readFileSync(key, "utf8")]).toEqual(["CERT2", "KEY2"]);
    // Crash while staging (no staged key yet): the staged certificate is dropped, the old pair stays.
    writeFileSync(cert + ".viw-new", "CERT3-partial");
    expect(recoverPair(cert, key)).toBe(false);
    expect(existsSync(cert + ".viw-new")).toBe(false);
    expect([readFileSync(cert, "utf8"), readFileSync(key, "utf8")]).toEqual(["CERT2", "KEY2"]);
  });
});
