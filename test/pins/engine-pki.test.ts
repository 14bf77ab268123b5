/**
 * Renewal against the engine's own PKI service (engine/pki createPkiService,
 * via test/pki/fixture.ts): `viw agent renew` over the real mTLS issuance API
 * (rotate, supersede, revoke + re-issue), and the engine's own listener
 * certificate renewed by keepRenewed from issueForEngine with zero failed
 * handshakes.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, request, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineCredential, keepRenewed, ManualClock, pinOf, renewOnce } from "../../engine/pki/pins/index.js";
import { api, makeCsr, run, startPki, type Pki } from "../pki/fixture.js";

let p: Pki;
beforeAll(async () => {
  p = await startPki();
}, 60_000);
afterAll(async () => p?.cleanup());

describe("viw agent renew against the engine's issuance API", () => {
  it("rotates over mTLS with a new key; the predecessor is superseded; after a revocation it issues anew under the profile", async () => {
    const cn = "ovpn.ams1.viworks.example";
    const { csr, key } = makeCsr(p.dir, "ovpn-ams1", `/CN=${cn}`, `DNS:${cn}`);
    const first = await api(p, "POST", "/v1/certs/issue/server", { profile: "vpn-server", csr });
    expect(first.status).toBe(201);
    const certFile = join(p.dir, "ovpn.crt");
    const keyFile = join(p.dir, "ovpn.key");
    writeFileSync(certFile, first.body.certificate);
    writeFileSync(keyFile, key, { mode: 0o600 });
    const reloads = join(p.dir, "ovpn-reloads");
    const opts = {
      certFile,
      keyFile,
      url: p.issuance,
      ca: p.files.root,
      clientCert: p.files.backendCrt,
      clientKey: p.files.backendKey,
      profile: "vpn-server",
      exec: `echo reloaded >> ${reloads}`,
    };

    const r = await renewOnce(opts);
    expect(r).toMatchObject({ via: "rotate", key: "new", keyChanged: true });
    const leaf = new X509Certificate(readFileSync(certFile));
    expect(leaf.subject).toBe(`CN=${cn}`);
    expect(leaf.subjectAltName).toBe(`DNS:${cn}`);
    expect(pinOf(readFileSync(keyFile)).pin).toBe(r.pin);
    // The written file is leaf + intermediate, which openssl verifies up to the root.
    const v = await run("openssl", ["verify", "-CAfile", p.files.root, "-untrusted", certFile, "-purpose", "sslserver", certFile]);
    expect(v.stdout).toContain(": OK");
    const old = await api(p, "GET", `/v1/certs/${first.body.serial}`);
    const hex = (s: string) => s.toLowerCase().replace(/^0+/, "");
    expect(hex(old.body.superseded_by)).toBe(hex(r.serial!));
    expect(readFileSync(reloads, "utf8")).toBe("reloaded\n");

    // Revoked (an emergency rotation): rotate answers 409, the agent issues a fresh certificate under --profile.
    const revoked = await api(p, "POST", "/v1/certs/revoke", { serial: leaf.serialNumber.toLowerCase(), reason: "keyCompromise" });
    expect(revoked.status).toBe(200);
    const r2 = await renewOnce(opts);
    expect(r2).toMatchObject({ via: "issue", key: "new" });
    expect(new X509Certificate(readFileSync(certFile)).serialNumber).not.toBe(leaf.serialNumber);
    expect(existsSync(keyFile + ".viw-new")).toBe(false);
  });

  it("an agent that is not an authorised issuance client is refused with the policy's reason, files untouched", async () => {
    const cn = "ovpn.fra1.viworks.example";
    const { csr, key } = makeCsr(p.dir, "ovpn-fra1", `/CN=${cn}`, `DNS:${cn}`);
    const first = await api(p, "POST", "/v1/certs/issue/server", { profile: "vpn-server", csr });
    const certFile = join(p.dir, "fra1.crt");
    const keyFile = join(p.dir, "fra1.key");
    writeFileSync(certFile, first.body.certificate);
    writeFileSync(keyFile, key, { mode: 0o600 });
    await expect(renewOnce({ certFile, keyFile, url: p.issuance, ca: p.files.root, clientCert: p.files.strangerCrt, clientKey: p.files.strangerKey })).rejects.toThrow(/\/v1\/certs\/rotate: HTTP 403 /);
    expect(readFileSync(certFile, "utf8")).toBe(first.body.certificate);
  });
});

describe("the engine's listener certificate renewed from its own CA", () => {
  it("keepRenewed + issueForEngine: the clock moves to near expiry, the listener swaps certificates, no handshake fails", async () => {
    const issue = engineCredential(p.svc, "engine-listener", { cn: "localhost", dns: ["localhost"], ip: ["127.0.0.1"] });
    const first = await issue();
    const server: Server = createServer({ cert: first.cert, key: first.key as string, minVersion: "TLSv1.3" }, (_q, s) => s.end("ok"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const root = readFileSync(p.files.root, "utf8");
    const get = () =>
      new Promise<string>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, ca: root, agent: false, minVersion: "TLSv1.3" }, (res) => {
          const fp = (res.socket as TLSSocket).getPeerX509Certificate()!.fingerprint256;
          res.resume();
          res.on("end", () => resolve(fp));
        });
        req.on("error", reject);
        req.end();
      });
    const clock = new ManualClock(Date.now());
    const renewer = keepRenewed(server, issue, clock, { current: first, context: { minVersion: "TLSv1.3" } });
    const seen: string[] = [];
    const failures: string[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) await get().then((fp) => seen.push(fp), (e: Error) => failures.push(e.message));
    })();
    try {
      while (seen.length < 10) await new Promise((r) => setTimeout(r, 10));
      clock.advance(28 * 86_400_000); // the listener profile's default is 30 days: near expiry
      await renewer.idle();
      const at = seen.length;
      while (seen.length < at + 10) await new Promise((r) => setTimeout(r, 10));
    } finally {
      polling = false;
      await poller;
      renewer.stop();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    expect(failures).toEqual([]);
    expect(new Set(seen).size).toBe(2);
    expect(seen[0]).toBe(new X509Certificate(first.cert).fingerprint256);
  });
});
