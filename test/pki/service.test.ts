import { execFileSync } from "node:child_process";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServiceError } from "../../engine/gitops/service.js";
import { Authority, createPkiService, initCa, KeyRing } from "../../engine/pki/index.js";
import { api, loadState, makeCsr, REPO, run, startPki, type Pki } from "./fixture.js";

describe("a new revision changes what the next request may get, without restart", () => {
  let p: Pki;
  let repo: string;
  beforeAll(async () => {
    p = await startPki();
    repo = mkdtempSync(join(tmpdir(), "viw-pki-repo-"));
    execFileSync("cp", ["-r", join(REPO, "profiles"), join(REPO, "policies"), join(REPO, "pins"), join(REPO, "detections"), join(REPO, "dashboards"), repo]);
  }, 60_000);
  afterAll(async () => {
    await p?.cleanup();
    rmSync(repo, { recursive: true, force: true });
  });

  it("narrows validity.max and the allowed names, then authorises the admin for tls-gateway", async () => {
    const { csr } = makeCsr(p.dir, "rev", "/CN=gw.viworks.example");
    expect((await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr, validity: "120d" })).status).toBe(201);

    const prof = join(repo, "profiles/tls-gateway.yaml");
    writeFileSync(prof, readFileSync(prof, "utf8").replace("max: 180d", "max: 60d").replace("default: 90d", "default: 45d"));
    const pol = join(repo, "policies/issuance.yaml");
    writeFileSync(pol, readFileSync(pol, "utf8").replace("profiles: [log-shipper]", "profiles: [log-shipper, tls-gateway]"));
    const next = await loadState(repo);
    expect(next.revision).not.toBe(p.state.revision);
    (await p.svc.prepare(next, p.state)).commit();

    const r = await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr, validity: "120d" });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/validity.max 60d/);
    const ok = await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr }, "admin");
    expect(ok.status).toBe(201);
    expect(ok.body.revision).toBe(next.revision);
    expect(Date.parse(ok.body.not_after) - Date.parse(ok.body.not_before)).toBe(45 * 86400_000);
  });

  it("switches an issuer's OCSP responder to issuer-signed in a new revision; openssl verifies it", async () => {
    const f = join(repo, "profiles/issuers/int-vpn.yaml");
    writeFileSync(f, readFileSync(f, "utf8").replace("responder: delegated", "responder: issuer"));
    const next = await loadState(repo);
    (await p.svc.prepare(next, p.state)).commit();
    const { csr } = makeCsr(p.dir, "vpn-ocsp", "/CN=ovpn.b.viworks.example");
    const r = await api(p, "POST", "/v1/certs/issue/server", { profile: "vpn-server", csr });
    expect(r.status).toBe(201);
    const leaf = join(p.dir, "vpn-ocsp.crt");
    writeFileSync(leaf, r.body.certificate);
    const o = await run("openssl", ["ocsp", "-issuer", join(p.data, "pki/certs/int-vpn.crt"), "-cert", leaf, "-url", `${p.pki}/ocsp`, "-CAfile", p.files.root, "-resp_text"]);
    expect(o.stdout + o.stderr).toMatch(/Response verify OK/);
    expect(o.stdout).toMatch(/vpn-ocsp.crt: good/);
    expect(o.stdout).not.toMatch(/OCSP Signing/); // no delegated certificate in the response
  });

  it("refuses a revision whose issuer key is missing, naming the issuer file, and keeps serving the old one", async () => {
    const keyFile = join(p.data, "keys/int-vpn.key");
    renameSync(keyFile, keyFile + ".away");
    const fresh = createPkiService({ dataDir: p.data, provider: p.keys });
    try {
      const err = await fresh.prepare(p.state, undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ServiceError);
      expect((err as ServiceError).message).toMatch(/issuer int-vpn: its key file:int-vpn.key cannot be opened: .*no such key file/);
      expect((err as ServiceError).diagnostics[0]).toMatchObject({ file: "profiles/issuers/int-vpn.yaml", kind: "issuer", id: "int-vpn" });
    } finally {
      await fresh.close();
      renameSync(keyFile + ".away", keyFile);
    }
    const { csr } = makeCsr(p.dir, "still", "/CN=ovpn.a.viworks.example");
    expect((await api(p, "POST", "/v1/certs/issue/server", { profile: "vpn-server", csr })).status).toBe(201);
  });
});

describe("store durability and CRL numbers across restarts", () => {
  it("never reuses a CRL number and supersedes rotated certificates after the overlap", async () => {
    const dir = mkdtempSync(join(tmpdir(), "viw-pki-restart-"));
    const state = await loadState();
    const keys = new KeyRing({ dataDir: dir });
    try {
      await initCa({ dataDir: dir, state, provider: keys });
      let now = Date.now();
      const a = new Authority({ dataDir: dir, now: () => new Date(now), rotateOverlap: "1h" });
      a.swap(await a.build(state, keys));
      const n1 = (await a.refreshCrl("int-tls")).number;
      const n2 = (await a.refreshCrl("int-tls")).number;
      expect(n2).toBe(n1 + 1);
      const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const first = await a.issueForEngine("engine-listener", k.publicKey, { cn: "localhost", dns: ["localhost"] });
      a.store.supersede(first.serial, "00", now + 3600_000);
      await a.tick();
      expect(a.certificate(first.serial).status).toBe("good");
      now += 3600_000 + 1000;
      await a.tick();
      expect(a.certificate(first.serial)).toMatchObject({ status: "revoked", reason: "superseded" });
      // The delegated OCSP responder certificate (30d) is renewed once two thirds of it have passed.
      const before = a.runtime!.responders.get("int-tls")!.certs[0]!;
      now += 15 * 86400_000;
      await a.tick();
      expect(a.runtime!.responders.get("int-tls")!.certs[0]!.equals(before)).toBe(true);
      now += 6 * 86400_000;
      await a.tick();
      const after = a.runtime!.responders.get("int-tls")!.certs[0]!;
      expect(after.equals(before)).toBe(false);
      expect(new X509Certificate(after).checkIssued(new X509Certificate(readFileSync(join(dir, "pki/certs/int-tls.crt"))))).toBe(true);
      await a.close();

      const b = new Authority({ dataDir: dir });
      b.swap(await b.build(state, keys));
      const n3 = (await b.refreshCrl("int-tls")).number;
      expect(n3).toBeGreaterThan(n2 + 1); // the revocation above published one more
      expect(b.certificate(first.serial).status).toBe("revoked");
      const crl = join(dir, "x.crl");
      writeFileSync(crl, (await b.crl("int-tls")).der);
      expect((await run("openssl", ["crl", "-inform", "DER", "-in", crl, "-noout", "-text"])).stdout).toMatch(new RegExp(`Serial Number: ${first.serial.toUpperCase()}[\\s\\S]*Superseded`));
      await b.close();
    } finally {
      await keys.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("closing the service", () => {
  it("does not wait for a client stuck in its TLS handshake (nor for a keep-alive one)", async () => {
    const p = await startPki();
    const url = new URL(p.issuance);
    // One TCP connection that never sends a ClientHello, one that sent half of one.
    const { connect } = await import("node:net");
    const silent = connect(Number(url.port), url.hostname);
    const half = connect(Number(url.port), url.hostname, () => half.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])));
    await Promise.all([silent, half].map((s) => new Promise((r) => s.once("connect", r))));
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await p.cleanup();
    // Without tracking the raw sockets, server.close() waits for the 120 s handshake timeout.
    expect(Date.now() - started).toBeLessThan(10_000);
    for (const s of [silent, half]) {
      await new Promise((r) => (s.destroyed ? r(undefined) : s.once("close", r)));
      expect(s.destroyed).toBe(true);
    }
  }, 60_000);
});
