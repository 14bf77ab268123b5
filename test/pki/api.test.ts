import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CertStore } from "../../engine/pki/index.js";
import { api, makeCsr, run, startPki, type Pki } from "./fixture.js";

let p: Pki;
beforeAll(async () => {
  p = await startPki();
}, 60_000);
afterAll(async () => p?.cleanup());

const chainOf = (id: string) => join(p.data, "pki/certs", `${id}.crt`);

describe("issuance API over mTLS (curl)", () => {
  it("issues a tls-gateway certificate that openssl verifies as sslserver, recorded with revision and profile", async () => {
    const { csr } = makeCsr(p.dir, "gw1", "/CN=gw.viworks.example", "DNS:gw.viworks.example,DNS:edge1.gw.viworks.example");
    const r = await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr, validity: "30d" });
    expect(r.status).toBe(201);
    expect(r.body.profile).toBe("tls-gateway");
    expect(r.body.revision).toBe(p.state.revision);
    expect(r.body.serial).toMatch(/^[0-9a-f]{32}$/);
    expect(r.body.chain).toHaveLength(2);
    expect(Date.parse(r.body.not_after) - Date.parse(r.body.not_before)).toBe(30 * 86400_000);
    expect(r.body.not_before).toMatch(/:\d\d\.000Z$/);
    const leaf = join(p.dir, "gw1.crt");
    writeFileSync(leaf, r.body.certificate);
    const v = await run("openssl", ["verify", "-CAfile", p.files.root, "-untrusted", chainOf("int-tls"), "-purpose", "sslserver", leaf]);
    expect(v.stdout).toMatch(/gw1.crt: OK/);
    const text = (await run("openssl", ["x509", "-in", leaf, "-noout", "-text"])).stdout;
    expect(text).toMatch(/DNS:gw.viworks.example, DNS:edge1.gw.viworks.example/);
    expect(text).toMatch(/OCSP - URI:http:\/\/pki.viworks.example\/ocsp/);
    expect(text).toMatch(/URI:http:\/\/pki.viworks.example\/crl\/int-tls.crl/);
    expect(text).toMatch(/TLS Web Server Authentication/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/); // no keyEncipherment for an EC key
    expect(text).toMatch(/Subject Key Identifier/);
    expect(text).toMatch(/Authority Key Identifier/);
    const status = await api(p, "GET", `/v1/certs/${r.body.serial}`);
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ status: "good", profile: "tls-gateway", revision: p.state.revision, client: "backend", issuer: "int-tls" });
    // Durable: another handle on the database sees it.
    const other = new CertStore(p.data);
    expect(other.get(r.body.serial)?.profile).toBe("tls-gateway");
    await other.close();
  });

  it("issues a device client certificate verifiable as sslclient, with the URN SAN from the request", async () => {
    const { csr } = makeCsr(p.dir, "dev1", "/CN=laptop-7");
    const id = "0123456789abcdef0123456789abcdef";
    const r = await api(p, "POST", "/v1/certs/issue/client", { profile: "device-desktop", csr, sans: { uri: [`urn:viworks:device:${id}`] } });
    expect(r.status).toBe(201);
    const leaf = join(p.dir, "dev1.crt");
    writeFileSync(leaf, r.body.certificate);
    const v = await run("openssl", ["verify", "-CAfile", p.files.root, "-untrusted", chainOf("int-device"), "-purpose", "sslclient", leaf]);
    expect(v.stdout).toMatch(/OK/);
  });

  it("serves the chain and 404s unknown serials and issuers", async () => {
    const chain = await api(p, "GET", "/v1/ca/chain?issuer=int-vpn");
    expect(chain.status).toBe(200);
    expect(String(chain.body).match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(String(chain.body).startsWith(readFileSync(chainOf("int-vpn"), "utf8"))).toBe(true);
    expect((await api(p, "GET", "/v1/ca/chain?issuer=nope")).status).toBe(404);
    const nf = await api(p, "GET", "/v1/certs/abcdef");
    expect(nf.status).toBe(404);
    expect(nf.body.error.code).toBe("not_found");
  });

  it("refuses a client without a certificate, with only TLS 1.2, and with an unauthorised certificate", async () => {
    const none = await api(p, "GET", "/v1/ca/chain?issuer=int-tls", undefined, "none");
    expect(none.curl).not.toBe(0);
    expect(none.status).not.toBe(200);
    const tls12 = await api(p, "GET", "/v1/ca/chain?issuer=int-tls", undefined, "backend", ["--tls-max", "1.2"]);
    expect(tls12.curl).not.toBe(0);
    expect(tls12.stderr).toMatch(/alert|version|SSL|TLS/i);
    const { csr } = makeCsr(p.dir, "gw-s", "/CN=gw.viworks.example");
    const stranger = await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr }, "stranger");
    expect(stranger.status).toBe(403);
    expect(stranger.body.error.code).toBe("client_not_authorized");
    expect(stranger.body.error.message).toMatch(/CN=stranger.viworks.example .*not an issuance client/);
    const admin = await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr }, "admin");
    expect(admin.status).toBe(403);
    expect(admin.body.error).toMatchObject({ code: "profile_not_allowed", field: "profile" });
  });

  it("rotates: same subject and SANs, predecessor scheduled for superseded revocation", async () => {
    const a = makeCsr(p.dir, "rot1", "/CN=gw.viworks.example", "DNS:gw.viworks.example");
    const first = await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr: a.csr });
    const b = makeCsr(p.dir, "rot2", "/CN=other", "DNS:x.gw.viworks.example");
    const second = await api(p, "POST", "/v1/certs/rotate", { serial: first.body.serial, csr: b.csr });
    expect(second.status).toBe(201);
    expect(second.body.predecessor.serial).toBe(first.body.serial);
    const text = (await run("openssl", ["x509", "-noout", "-subject", "-ext", "subjectAltName"], second.body.certificate)).stdout;
    expect(text).toMatch(/CN ?= ?gw.viworks.example/);
    expect(text).toMatch(/DNS:gw.viworks.example/);
    expect(text).not.toMatch(/x.gw/);
    const again = await api(p, "POST", "/v1/certs/rotate", { serial: first.body.serial, csr: b.csr });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("already_rotated");
  });
});

describe("bad input gets a clear 4xx, nothing is issued, the server keeps serving", () => {
  const bad = async (body: unknown, path = "/v1/certs/issue/server") => {
    const r = await api(p, "POST", path, body);
    return r;
  };

  it("garbage CSR", async () => {
    const r = await bad({ profile: "tls-gateway", csr: "hello" });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "bad_csr", field: "csr" });
    const r2 = await bad({ profile: "tls-gateway", csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" });
    expect(r2.status).toBe(400);
    expect(r2.body.error.message).toMatch(/not a PKCS#10/);
  });

  it("CSR with a bad signature", async () => {
    const { csr } = makeCsr(p.dir, "badsig", "/CN=gw.viworks.example", "DNS:gw.viworks.example");
    const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ""), "base64");
    der[der.length - 5] ^= 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    const r = await bad({ profile: "tls-gateway", csr: tampered });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "bad_csr_signature", field: "csr" });
  });

  it("unknown profile, wrong usage", async () => {
    const { csr } = makeCsr(p.dir, "up", "/CN=gw.viworks.example");
    const r = await bad({ profile: "no-such", csr });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "unknown_profile", field: "profile" });
    const w = await bad({ profile: "device-desktop", csr });
    expect(w.status).toBe(400);
    expect(w.body.error.code).toBe("wrong_usage");
  });

  it("SAN outside policy, IP outside range, CN not in SANs", async () => {
    const { csr } = makeCsr(p.dir, "evil", "/CN=evil.example.com", "DNS:evil.example.com");
    const r = await bad({ profile: "tls-gateway", csr });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("san_not_allowed");
    expect(r.body.error.message).toMatch(/DNS SAN evil.example.com is outside profile tls-gateway's allowed names/);
    const { csr: c2 } = makeCsr(p.dir, "ip", "/CN=gw.viworks.example");
    const r2 = await bad({ profile: "tls-gateway", csr: c2, sans: { dns: ["gw.viworks.example"], ip: ["192.0.2.1"] } });
    expect(r2.status).toBe(400);
    expect(r2.body.error).toMatchObject({ code: "san_not_allowed", field: "sans.ip" });
    const r3 = await bad({ profile: "vpn-server", csr: c2 });
    expect(r3.status).toBe(400);
    expect(r3.body.error.message).toMatch(/cn_pattern/);
  });

  it("validity too long, key type not allowed", async () => {
    const { csr } = makeCsr(p.dir, "long", "/CN=gw.viworks.example");
    const r = await bad({ profile: "tls-gateway", csr, validity: "400d" });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "validity_too_long", field: "validity" });
    expect(r.body.error.message).toMatch(/exceeds profile tls-gateway's validity.max 180d/);
    const p384 = makeCsr(p.dir, "p384", "/CN=api.viworks.example", undefined, ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]);
    const k = await bad({ profile: "backend-api", csr: p384.csr });
    expect(k.status).toBe(400);
    expect(k.body.error.code).toBe("key_type");
  });

  it("oversized body and not-JSON", async () => {
    const r = await bad(JSON.stringify({ profile: "tls-gateway", csr: "x".repeat(200_000) }));
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe("too_large");
    const j = await bad("{not json");
    expect(j.status).toBe(400);
    expect(j.body.error.code).toBe("bad_json");
  });

  it("an issuer key that becomes unavailable gives 503 naming it, and service resumes when it is back", async () => {
    const { KeyError } = await import("../../engine/pki/index.js");
    // The signer that makes leaf certificates (on the crypto workers when there are some).
    const issuer = p.svc.authority.runtime!.issuers.get("int-tls")!;
    const signer = (issuer.leafSigner ?? issuer.signer)!;
    const real = signer.sign;
    (signer as { sign: unknown }).sign = () => Promise.reject(new KeyError("PKCS#11 token `viw` not found", true));
    const { csr } = makeCsr(p.dir, "u503", "/CN=gw.viworks.example");
    try {
      const r = await bad({ profile: "tls-gateway", csr });
      expect(r.status).toBe(503);
      expect(r.body.error.code).toBe("key_unavailable");
      expect(r.body.error.message).toMatch(/issuer int-tls's key is unavailable: PKCS#11 token `viw` not found/);
    } finally {
      (signer as { sign: unknown }).sign = real;
    }
    expect((await bad({ profile: "tls-gateway", csr })).status).toBe(201);
  });

  it("nothing was issued by the refused requests and the server still serves", async () => {
    const store = new CertStore(p.data);
    const all = (store as unknown as { db: { prepare(s: string): { get(): { n: number } } } }).db.prepare("SELECT count(*) AS n FROM certs WHERE profile IN ('tls-gateway','vpn-server','backend-api') AND subject LIKE '%evil%'").get();
    await store.close();
    expect(all.n).toBe(0);
    const { csr } = makeCsr(p.dir, "after", "/CN=gw.viworks.example");
    expect((await bad({ profile: "tls-gateway", csr })).status).toBe(201);
  });
});
