/**
 * A stand-in for the engine's issuance API (DESIGN.md §4: rotate and issue,
 * CSR mode, mTLS with TLS 1.3 only), on a real node https server and a real
 * test CA, with the pin-aware gate of engine/pki/pins applied. The agent's
 * basic renewal runs against the engine's own PKI service
 * (engine-pki.test.ts); the pin-aware cases run here until the lead wires
 * checkProfileIssuance into engine/pki's issue and rotate.
 */
import "reflect-metadata";
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import type { PinSetDoc } from "../../engine/config/index.js";
import { checkProfileIssuance } from "../../engine/pki/pins/index.js";
import { createTestCa, type TestCa } from "./testca.js";

export interface StandIn {
  url: string;
  ca: TestCa;
  files: { ca: string; clientCrt: string; clientKey: string };
  calls: { path: string; status: number; code?: string }[];
  pinSets: Map<string, PinSetDoc>;
  /** Profile -> pin set binding (tls-gateway -> gateway by default). */
  profiles: Map<string, string | undefined>;
  revoke(serial: string): void;
  down: boolean;
  /** Issues a first certificate directly (what a gateway would have been enrolled with). */
  enrol(publicKey: import("node:crypto").KeyObject, cn: string, profile?: string, days?: number): Promise<string>;
  close(): Promise<void>;
}

interface Rec {
  profile: string;
  cn: string;
  dns: string[];
  revoked: boolean;
  rotated: boolean;
}

export async function startStandIn(dir: string): Promise<StandIn> {
  const ca = await createTestCa("viw stand-in int-tls");
  const store = new Map<string, Rec>();
  const calls: StandIn["calls"] = [];
  const serverKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const serverCert = await ca.issue(serverKey.publicKey, { cn: "localhost", dns: ["localhost"], ip: ["127.0.0.1"] });
  const clientKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const clientCert = await ca.issue(clientKey.publicKey, { cn: "backend.viworks.example", client: true });
  const files = { ca: join(dir, "standin-ca.pem"), clientCrt: join(dir, "backend.crt"), clientKey: join(dir, "backend.key") };
  writeFileSync(files.ca, ca.pem);
  writeFileSync(files.clientCrt, clientCert);
  writeFileSync(files.clientKey, clientKey.privateKey.export({ type: "pkcs8", format: "pem" }));

  const self: StandIn = {
    url: "",
    ca,
    files,
    calls,
    pinSets: new Map(),
    profiles: new Map([["tls-gateway", "gateway"]]),
    down: false,
    revoke: (serial) => void (store.get(serial.toLowerCase())!.revoked = true),
    enrol: async (publicKey, cn, profile = "tls-gateway", days = 90) => {
      const pem = await ca.issue(publicKey, { cn, dns: [cn], notAfter: new Date(Date.now() + days * 86_400_000) });
      store.set(new x509.X509Certificate(pem).serialNumber.toLowerCase(), { profile, cn, dns: [cn], revoked: false, rotated: false });
      return pem;
    },
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
  };

  const issueFor = async (res: import("node:http").ServerResponse, path: string, profile: string, csrPem: unknown, cn?: string, dns?: string[]) => {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(String(csrPem));
      if (!(await csr.verify())) throw new Error("signature");
    } catch (err) {
      return send(res, path, 400, { error: { code: "bad_csr", message: `csr: ${(err as Error).message}`, field: "csr" } });
    }
    const refusal = checkProfileIssuance(self.pinSets, { id: profile, pin_set: self.pinSets.size ? self.profiles.get(profile) : undefined }, new Uint8Array(csr.publicKey.rawData));
    if (refusal) return send(res, path, 400, { error: { ...refusal, field: "csr" } });
    const subjectCn = cn ?? /CN=([^,]+)/.exec(csr.subject)?.[1] ?? "unnamed";
    const names = dns ?? (csr.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.filter((n) => n.type === "dns").map((n) => n.value) ?? []);
    const pem = await ca.issue(csr.publicKey, { cn: subjectCn, dns: names });
    const serial = new x509.X509Certificate(pem).serialNumber.toLowerCase();
    store.set(serial, { profile, cn: subjectCn, dns: names, revoked: false, rotated: false });
    return send(res, path, 201, { certificate: pem, chain: [ca.pem], serial, profile });
  };

  function send(res: import("node:http").ServerResponse, path: string, status: number, body: unknown) {
    calls.push({ path, status, ...(status >= 400 ? { code: (body as { error: { code: string } }).error.code } : {}) });
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json" }).end(text);
  }

  const server: Server = createServer(
    { cert: serverCert, key: serverKey.privateKey.export({ type: "pkcs8", format: "pem" }), ca: ca.pem, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3", maxVersion: "TLSv1.3" },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const path = req.url ?? "/";
        void (async () => {
          if (self.down) return send(res, path, 503, { error: { code: "key_unavailable", message: "issuer key unavailable" } });
          const body = JSON.parse(Buffer.concat(chunks).toString() || "{}") as Record<string, unknown>;
          if (path === "/v1/certs/rotate") {
            const rec = store.get(String(body.serial).toLowerCase());
            if (!rec) return send(res, path, 404, { error: { code: "not_found", message: `no certificate with serial ${body.serial}`, field: "serial" } });
            if (rec.revoked) return send(res, path, 409, { error: { code: "revoked", message: `certificate ${body.serial} is revoked`, field: "serial" } });
            await issueFor(res, path, rec.profile, body.csr, rec.cn, rec.dns);
            rec.rotated = true;
            return;
          }
          if (path === "/v1/certs/issue/server") return issueFor(res, path, String(body.profile), body.csr);
          return send(res, path, 404, { error: { code: "not_found", message: `no route ${path}` } });
        })();
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  self.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return self;
}
