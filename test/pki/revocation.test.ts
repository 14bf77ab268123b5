import { request as httpsRequest, createServer } from "node:https";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authority, toPem } from "../../engine/pki/index.js";
import { api, makeCsr, run, startPki, type Pki } from "./fixture.js";

let p: Pki;
beforeAll(async () => {
  p = await startPki();
}, 60_000);
afterAll(async () => p?.cleanup());

const certOf = (id: string) => join(p.data, "pki/certs", `${id}.crt`);

async function issue(name: string, profile: string, subj: string, sans?: string) {
  const { csr, key, keyPath } = makeCsr(p.dir, name, subj, sans);
  const r = await api(p, "POST", `/v1/certs/issue/${profile.startsWith("device") || profile === "vpn-client" ? "client" : "server"}`, { profile, csr });
  expect(r.status).toBe(201);
  const file = join(p.dir, `${name}.crt`);
  writeFileSync(file, r.body.certificate);
  return { ...r.body, file, key, keyPath } as { serial: string; certificate: string; chain: string[]; file: string; key: string; keyPath: string };
}

async function fetchCrl(issuer: string, ext = "crl"): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const res = await fetch(`${p.pki}/crl/${issuer}.${ext}`);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

async function ocsp(issuer: string, cert: string, extra: string[] = []) {
  return run("openssl", ["ocsp", "-issuer", certOf(issuer), "-cert", cert, "-url", `${p.pki}/ocsp`, "-CAfile", p.files.root, ...extra]);
}

describe("spec §9.1: a tls-gateway certificate serves TLS", () => {
  it("a node https server serves with the issued certificate and reloads a rotated one", async () => {
    const gw = await issue("gw-serve", "tls-gateway", "/CN=gw.viworks.example", "DNS:gw.viworks.example");
    const server = createServer({ cert: gw.certificate + gw.chain[0], key: gw.key }, (_req, res) => res.end("hello from gw"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const get = () =>
      new Promise<{ body: string; serial: string }>((resolve, reject) => {
        const req = httpsRequest({ host: "127.0.0.1", port, servername: "gw.viworks.example", ca: readFileSync(p.files.root), agent: false }, (res) => {
          const serial = (res.socket as import("node:tls").TLSSocket).getPeerCertificate().serialNumber.toLowerCase();
          let b = "";
          res.on("data", (c) => (b += c));
          res.on("end", () => resolve({ body: b, serial }));
        });
        req.on("error", reject);
        req.end();
      });
    try {
      const first = await get();
      expect(first.body).toBe("hello from gw");
      expect(first.serial.replace(/^0+/, "")).toBe(gw.serial.replace(/^0+/, ""));
      const { csr, key } = makeCsr(p.dir, "gw-serve2", "/CN=gw.viworks.example");
      const rot = await api(p, "POST", "/v1/certs/rotate", { serial: gw.serial, csr });
      expect(rot.status).toBe(201);
      server.setSecureContext({ cert: rot.body.certificate + rot.body.chain[0], key });
      const second = await get();
      expect(second.serial.replace(/^0+/, "")).toBe(rot.body.serial.replace(/^0+/, ""));
    } finally {
      server.close();
    }
  });
});

describe("spec §9.1: revoking a vpn-server certificate shows REVOKED in CRL and OCSP", () => {
  it("CRL: openssl verify -crl_check fails with 'certificate revoked'; OCSP: Response verify OK + revoked", async () => {
    const vpn = await issue("vpn1", "vpn-server", "/CN=ovpn.site1.viworks.example");
    const keep = await issue("vpn2", "vpn-server", "/CN=ovpn.site2.viworks.example");

    const before = await ocsp("int-vpn", vpn.file);
    expect(before.stdout + before.stderr).toMatch(/Response verify OK/);
    expect(before.stdout).toMatch(/vpn1.crt: good/);

    const crl0 = await fetchCrl("int-vpn");
    writeFileSync(join(p.dir, "crl0.der"), crl0.body);
    const n0 = Number(/X509v3 CRL Number:\s+(\d+)/.exec((await run("openssl", ["crl", "-inform", "DER", "-in", join(p.dir, "crl0.der"), "-noout", "-text"])).stdout)?.[1] ?? NaN);

    const rv = await api(p, "POST", "/v1/certs/revoke", { serial: vpn.serial, reason: "keyCompromise" });
    expect(rv.status).toBe(200);
    expect(rv.body.reason).toBe("keyCompromise");

    const pem = await fetchCrl("int-vpn", "pem");
    expect(pem.status).toBe(200);
    expect(pem.body.toString()).toMatch(/-----BEGIN X509 CRL-----/);
    const crlFile = join(p.dir, "int-vpn.crl.pem");
    writeFileSync(crlFile, pem.body);
    const crlText = (await run("openssl", ["crl", "-in", crlFile, "-noout", "-text"])).stdout;
    expect(crlText).toMatch(/Version 2/);
    expect(crlText).toMatch(/Authority Key Identifier/);
    expect(crlText).toMatch(new RegExp(`Serial Number: ${vpn.serial.toUpperCase()}`));
    expect(crlText).toMatch(/Key Compromise/);
    const n1 = Number(/X509v3 CRL Number:\s+(\d+)/.exec(crlText)?.[1]);
    expect(n1).toBeGreaterThan(n0);
    const lastUpdate = Date.parse(/Last Update: (.*)/.exec(crlText)![1]!);
    const nextUpdate = Date.parse(/Next Update: (.*)/.exec(crlText)![1]!);
    expect(nextUpdate - lastUpdate).toBe(30 * 3600_000); // 24h interval + 6h grace
    expect(await run("openssl", ["crl", "-in", crlFile, "-noout", "-CAfile", certOf("int-vpn")])).toMatchObject({ code: 0 });

    const chain = join(p.dir, "vpn-chain.pem");
    writeFileSync(chain, readFileSync(p.files.root, "utf8") + readFileSync(certOf("int-vpn"), "utf8"));
    const revoked = await run("openssl", ["verify", "-crl_check", "-CAfile", chain, "-CRLfile", crlFile, vpn.file]);
    expect(revoked.code).not.toBe(0);
    expect(revoked.stdout + revoked.stderr).toMatch(/certificate revoked/);
    const good = await run("openssl", ["verify", "-crl_check", "-CAfile", chain, "-CRLfile", crlFile, keep.file]);
    expect(good.stdout).toMatch(/vpn2.crt: OK/);

    const after = await ocsp("int-vpn", vpn.file);
    expect(after.stdout + after.stderr).toMatch(/Response verify OK/);
    expect(after.stdout).toMatch(/vpn1.crt: revoked/);
    expect(after.stdout).toMatch(/Reason: keyCompromise/);
    const still = await ocsp("int-vpn", keep.file);
    expect(still.stdout).toMatch(/vpn2.crt: good/);

    const st = await api(p, "GET", `/v1/certs/${vpn.serial}`);
    expect(st.body).toMatchObject({ status: "revoked", reason: "keyCompromise" });
    const twice = await api(p, "POST", "/v1/certs/revoke", { serial: vpn.serial, reason: "keyCompromise" });
    expect(twice.status).toBe(409);
    const badReason = await api(p, "POST", "/v1/certs/revoke", { serial: keep.serial, reason: "because" });
    expect(badReason.status).toBe(400);
    expect(badReason.body.error.field).toBe("reason");
  });
});

describe("OCSP responder", () => {
  it("GET form is cacheable (max-age, ETag, Last-Modified, 304) and a POST nonce is echoed fresh", async () => {
    const c = await issue("ocsp1", "tls-gateway", "/CN=gw.viworks.example");
    const reqFile = join(p.dir, "ocsp1.req");
    await run("openssl", ["ocsp", "-issuer", certOf("int-tls"), "-cert", c.file, "-no_nonce", "-reqout", reqFile]);
    const b64 = readFileSync(reqFile).toString("base64");
    const url = `${p.pki}/ocsp/${encodeURIComponent(b64)}`;
    const r1 = await fetch(url);
    expect(r1.status).toBe(200);
    expect(r1.headers.get("content-type")).toBe("application/ocsp-response");
    const maxAge = Number(/max-age=(\d+)/.exec(r1.headers.get("cache-control") ?? "")?.[1]);
    expect(maxAge).toBeGreaterThan(3 * 3600);
    expect(maxAge).toBeLessThanOrEqual(4 * 3600);
    expect(r1.headers.get("last-modified")).toBeTruthy();
    const etag = r1.headers.get("etag")!;
    expect(etag).toMatch(/^"[0-9a-f]{40}"$/);
    const body1 = Buffer.from(await r1.arrayBuffer());
    const r2 = await fetch(url);
    expect(Buffer.from(await r2.arrayBuffer()).equals(body1)).toBe(true); // served from the cache
    const r3 = await fetch(url, { headers: { "if-none-match": etag } });
    expect(r3.status).toBe(304);
    const respFile = join(p.dir, "ocsp1.resp");
    writeFileSync(respFile, body1);
    const check = await run("openssl", ["ocsp", "-respin", respFile, "-issuer", certOf("int-tls"), "-cert", c.file, "-CAfile", p.files.root]);
    expect(check.stdout + check.stderr).toMatch(/Response verify OK/);
    // POST with a nonce (openssl's default): verified including the nonce.
    const withNonce = await ocsp("int-tls", c.file, ["-resp_text"]);
    expect(withNonce.stdout).toMatch(/OCSP Nonce/);
    expect(withNonce.stdout + withNonce.stderr).toMatch(/Response verify OK/);
    expect(withNonce.stderr).not.toMatch(/nonce/i);
    // Delegated responder certificate: OCSPSigning + ocsp-nocheck.
    expect(withNonce.stdout).toMatch(/OCSP Signing/);
    expect(withNonce.stdout).toMatch(/OCSP No Check/);
  });

  it("answers unknown for a serial it never issued, and malformed requests with 400", async () => {
    const foreign = makeCsr(p.dir, "foreign", "/CN=x");
    const fake = join(p.dir, "foreign.crt");
    await run("openssl", ["x509", "-req", "-in", join(p.dir, "foreign.csr"), "-CA", certOf("int-tls"), "-CAkey", join(p.data, "keys/int-tls.key"), "-set_serial", "12345", "-out", fake, "-days", "1"]);
    void foreign;
    const u = await ocsp("int-tls", fake);
    expect(u.stdout).toMatch(/foreign.crt: unknown/);
    const bad = await fetch(`${p.pki}/ocsp`, { method: "POST", body: Buffer.from("garbage"), headers: { "content-type": "application/ocsp-request" } });
    expect(bad.status).toBe(400);
    expect(bad.headers.get("viw-error")).toMatch(/not an OCSPRequest/);
    expect(Buffer.from(await bad.arrayBuffer()).toString("hex")).toBe("30030a0101"); // OCSPResponse { malformedRequest }
    const bad2 = await fetch(`${p.pki}/ocsp/!!!notbase64`);
    expect(bad2.status).toBe(400);
    expect((await fetch(`${p.pki}/ocsp/%E0%A4%A`)).status).toBe(400);
    const b64garbage = await fetch(`${p.pki}/ocsp/${encodeURIComponent(Buffer.from("not ocsp").toString("base64"))}`);
    expect(b64garbage.status).toBe(400);
    const ok = await fetch(`${p.pki}/crl/int-tls.crl`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("application/pkix-crl");
    expect((await fetch(`${p.pki}/crl/nope.crl`)).status).toBe(404);
    // The offline root's CRL, written by ca init, is served as a file and verifies against the root.
    const root = await fetchCrl("root");
    expect(root.status).toBe(200);
    writeFileSync(join(p.dir, "root.crl"), root.body);
    const rv = await run("openssl", ["crl", "-inform", "DER", "-in", join(p.dir, "root.crl"), "-noout", "-CAfile", p.files.root]);
    expect(rv.stderr).toMatch(/verify OK/);
  });

  it("keeps answering from its cache when the signing key is unavailable", async () => {
    const c = await issue("ocsp-cache", "tls-gateway", "/CN=gw.viworks.example");
    const reqFile = join(p.dir, "ocsp-cache.req");
    await run("openssl", ["ocsp", "-issuer", certOf("int-tls"), "-cert", c.file, "-no_nonce", "-reqout", reqFile]);
    const der = readFileSync(reqFile);
    const authority: Authority = p.svc.authority;
    const first = await authority.ocsp(der);
    expect(first.cached).toBeTruthy();
    const responder = authority.runtime!.responders.get("int-tls")!;
    const realSign = responder.signer.sign;
    (responder.signer as { sign: unknown }).sign = () => Promise.reject(new Error("token removed"));
    // Force a re-sign attempt: pretend half the validity has passed.
    const realNow = Date.now;
    try {
      (authority as unknown as { now: () => Date }).now = () => new Date(realNow() + 3 * 3600_000);
      const again = await authority.ocsp(der);
      expect(again.body.equals(first.body)).toBe(true);
      // A fresh POST nonce cannot be signed: tryLater rather than a crash.
      const nonceReq = join(p.dir, "ocsp-nonce.req");
      await run("openssl", ["ocsp", "-issuer", certOf("int-tls"), "-cert", c.file, "-reqout", nonceReq]);
      const fresh = await authority.ocsp(readFileSync(nonceReq));
      expect(fresh.body.equals(first.body)).toBe(true);
    } finally {
      (authority as unknown as { now: () => Date }).now = () => new Date();
      (responder.signer as { sign: unknown }).sign = realSign;
    }
    void toPem;
  });
});
