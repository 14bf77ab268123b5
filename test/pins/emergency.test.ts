/**
 * Emergency rotation on the engine's own PKI: every live certificate of the
 * gateway pin set's profile revoked (CRL and OCSP updated before it returns),
 * the ones whose key the pin set still accepts reissued for the same key, and
 * the gateway agent picking up its successor without a new key.
 */
import { X509Certificate } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSnapshot, readDirSnapshot, type DesiredState } from "../../engine/config/index.js";
import { authorityPki, emergencyRotate, emergencyRoutes, pinOf, renewOnce } from "../../engine/pki/pins/index.js";
import { api, loadState, makeCsr, REPO, run, startPki, type Pki } from "../pki/fixture.js";

const work = mkdtempSync(join(tmpdir(), "viw-emergency-"));
const hex = (s: string) => s.toLowerCase().replace(/^0+/, "");
let p: Pki;
let state: DesiredState;
const gwKey = makeCsr(work, "gw-primary", "/CN=gw.viworks.example", "DNS:gw.viworks.example");
const backupKey = makeCsr(work, "gw-backup", "/CN=gw.viworks.example");
const primaryPin = pinOf(gwKey.csr).pin;

beforeAll(async () => {
  // The default config, with the gateway pin set pinning this test's keys.
  const repo = join(work, "repo");
  for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(REPO, f), join(repo, f), { recursive: true });
  const yaml = readFileSync(join(repo, "pins/gateway.yaml"), "utf8")
    .replace("OwBrGMlpxCGg058WxNYnpfVDIR4IeBhwzS0tkXB/KMY=", primaryPin)
    .replace("RqKLJuEe0msolyS8tLNrgkgKmjyrpWmLwNfqMbo/mQ8=", pinOf(backupKey.csr).pin);
  writeFileSync(join(repo, "pins/gateway.yaml"), yaml);
  const r = loadSnapshot(await readDirSnapshot(repo));
  expect(r.errors).toEqual([]);
  state = r.state!;
  p = await startPki({ state });
}, 60_000);
afterAll(async () => {
  await p?.cleanup();
  rmSync(work, { recursive: true, force: true });
});

async function issue(name: string, profile: string, cn: string, csr: string) {
  const r = await api(p, "POST", "/v1/certs/issue/server", { profile, csr });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const file = join(p.dir, `${name}.crt`);
  writeFileSync(file, r.body.certificate);
  return { serial: r.body.serial as string, file, certificate: r.body.certificate as string };
}
const status = async (serial: string) => (await api(p, "GET", `/v1/certs/${serial}`)).body;
const ocsp = (file: string) => run("openssl", ["ocsp", "-issuer", join(p.data, "pki/certs/int-tls.crt"), "-cert", file, "-url", `${p.pki}/ocsp`, "-CAfile", p.files.root]);

describe("emergency rotation of a pin set", () => {
  it("revokes every live certificate of the set's profile, reissues those of pinned keys for the same key, CRL and OCSP updated", async () => {
    const g1 = await issue("g1", "tls-gateway", "gw.viworks.example", gwKey.csr);
    const edge = makeCsr(work, "edge1", "/CN=edge1.gw.viworks.example", "DNS:edge1.gw.viworks.example");
    // A key the pin set does not list: certified under an earlier revision, before the profile was bound to the set
    // (the pin gate refuses it today).
    await (await p.svc.prepare(await loadState(REPO), state)).commit();
    const stray = await issue("stray", "tls-gateway", "edge1.gw.viworks.example", edge.csr);
    const applied = await p.svc.prepare(state, undefined);
    applied.commit();
    const vpn = await issue("vpn", "vpn-server", "ovpn.ams1.viworks.example", makeCsr(work, "vpn", "/CN=ovpn.ams1.viworks.example", "DNS:ovpn.ams1.viworks.example").csr);
    const pki = authorityPki(p.svc.authority);

    const dry = await emergencyRotate(state, { pinSet: "gateway", reason: "cACompromise", dryRun: true }, pki);
    expect(dry.revoked.map((r) => r.serial)).toEqual([g1.serial]);
    expect(dry.not_reissued.map((r) => r.serial)).toEqual([stray.serial]);
    expect((await status(g1.serial)).status).toBe("good");

    const report = await emergencyRotate(state, { pinSet: "gateway", reason: "cACompromise" }, pki);
    expect(report).toMatchObject({ profile: "tls-gateway", pin_set: "gateway", reason: "cACompromise", dry_run: false, failed: [] });
    expect(report.revoked).toHaveLength(1);
    const successor = report.revoked[0]!.successor!;
    // The OCSP status is the engine responder's signed answer, asked after the revocation.
    expect(report.revoked[0]).toMatchObject({ serial: g1.serial, spki_sha256: primaryPin, ocsp: "revoked" });
    expect(report.not_reissued).toEqual([{ serial: stray.serial, spki_sha256: pinOf(edge.csr).pin, why: expect.stringMatching(/^pin set gateway is in phase stable: only the primary key .* which is not in the pin set/), ocsp: "revoked" }]);
    expect(report.crl_numbers["int-tls"]).toBeGreaterThan(0);

    // Store, CRL and OCSP agree, and the other profile is untouched.
    expect(await status(g1.serial)).toMatchObject({ status: "revoked", reason: "cACompromise", superseded_by: successor });
    expect((await status(stray.serial)).status).toBe("revoked");
    expect((await status(vpn.serial)).status).toBe("good");
    const next = await status(successor);
    expect(next).toMatchObject({ status: "good", profile: "tls-gateway", spki_sha256: primaryPin, sans: { dns: ["gw.viworks.example"] } });
    const crl = Buffer.from(await (await fetch(`${p.pki}/crl/int-tls.crl`)).arrayBuffer());
    writeFileSync(join(work, "int-tls.crl"), crl);
    const text = (await run("openssl", ["crl", "-inform", "DER", "-in", join(work, "int-tls.crl"), "-noout", "-text"])).stdout.replace(/\s+/g, " ");
    for (const s of [g1.serial, stray.serial]) expect(text.toLowerCase()).toContain(`serial number: ${s.toLowerCase()}`);
    expect(text).toContain("CA Compromise");
    expect((await ocsp(g1.file)).stdout).toMatch(/: revoked/);

    // The gateway's agent: its rotate is refused (revoked), it installs the successor for its own key.
    const certFile = join(work, "gw.crt");
    const keyFile = join(work, "gw.key");
    writeFileSync(certFile, g1.certificate);
    writeFileSync(keyFile, gwKey.key, { mode: 0o600 });
    const r = await renewOnce({ certFile, keyFile, url: p.issuance, ca: p.files.root, clientCert: p.files.backendCrt, clientKey: p.files.backendKey, reuseKey: true });
    expect(r).toMatchObject({ via: "pickup", key: "current", keyChanged: false, pin: primaryPin });
    expect(hex(new X509Certificate(readFileSync(certFile)).serialNumber)).toBe(hex(successor));
    expect(readFileSync(keyFile, "utf8")).toBe(gwKey.key);
    // The file is leaf + intermediate: it verifies to the root on its own.
    expect((await run("openssl", ["verify", "-CAfile", p.files.root, "-untrusted", certFile, certFile])).stdout).toContain(": OK");

    // keyCompromise of the primary: revoked, nothing reissued for that key.
    const kc = await emergencyRotate(state, { pinSet: "gateway", reason: "keyCompromise", pins: [primaryPin] }, pki);
    expect(kc.revoked).toEqual([]);
    expect(kc.not_reissued).toEqual([{ serial: successor, spki_sha256: primaryPin, why: "key compromised: its holder must present a new key", ocsp: "revoked" }]);
    expect((await status(successor)).status).toBe("revoked");
  });

  it("the admin route: bad reason 400, unknown set 404, dry run 200", async () => {
    const app = Fastify();
    await app.register(emergencyRoutes({ state: () => state, pki: authorityPki(p.svc.authority) }));
    const bad = await app.inject({ method: "POST", url: "/v1/pins/gateway/emergency-rotate", payload: { reason: "oops" } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({ code: "bad_reason", field: "reason" });
    const missing = await app.inject({ method: "POST", url: "/v1/pins/nope/emergency-rotate", payload: { reason: "superseded" } });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.message).toContain('no pin set "nope"');
    const badPins = await app.inject({ method: "POST", url: "/v1/profiles/vpn-server/emergency-rotate", payload: { reason: "superseded", pins: [1] } });
    expect(badPins.statusCode).toBe(400);
    const dry = await app.inject({ method: "POST", url: "/v1/profiles/vpn-server/emergency-rotate", payload: { reason: "superseded", dry_run: true } });
    expect(dry.statusCode).toBe(200);
    expect(dry.json()).toMatchObject({ profile: "vpn-server", dry_run: true, failed: [] });
    expect(dry.json().revoked.length).toBeGreaterThan(0);
    await app.close();
  });
});
