import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DesiredState } from "../../engine/config/index.js";
import { enforceProfile, IssueError, parseCsr } from "../../engine/pki/index.js";
import { loadState, makeCsr } from "./fixture.js";

let dir: string;
let state: DesiredState;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "viw-csr-"));
  state = await loadState();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const decide = async (profileId: string, csrPem: string, request: Record<string, unknown> = {}) => {
  const profile = state.profiles.get(profileId)!;
  const issuer = state.issuers.get(profile.issuer)!;
  return enforceProfile({ profile, issuer, issuerNotAfter: new Date(Date.now() + 700 * 86400_000), csr: await parseCsr(csrPem), request, now: new Date() });
};
const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as IssueError);

describe("CSR parsing and profile enforcement", () => {
  it("reads subject, DNS/IP (v4 and v6)/URI SANs and the key type", async () => {
    const { csr } = makeCsr(dir, "a", "/O=ViWorkS/CN=listener", "DNS:localhost,IP:127.0.0.1,IP:::1,URI:urn:x:y");
    const c = await parseCsr(csr);
    expect(c.subject).toEqual({ O: "ViWorkS", CN: "listener" });
    expect(c.sans).toEqual({ dns: ["localhost"], ip: ["127.0.0.1", "::1"], uri: ["urn:x:y"] });
    expect(c.keyAlgorithm).toBe("ecdsa-p256");
    const rsa = await parseCsr(makeCsr(dir, "r", "/CN=gw.viworks.example", undefined, ["-newkey", "rsa:2048"]).csr);
    expect(rsa.keyAlgorithm).toBe("rsa-2048");
  });

  it("adds the CN as the DNS SAN when cn_in_sans and no SANs are given; keeps keyEncipherment only for RSA", async () => {
    const d = await decide("tls-gateway", makeCsr(dir, "b", "/CN=gw.viworks.example").csr);
    expect(d.sans.dns).toEqual(["gw.viworks.example"]);
    expect(d.keyUsage).toEqual(["digitalSignature"]);
    const r = await decide("tls-gateway", makeCsr(dir, "b2", "/CN=gw.viworks.example", undefined, ["-newkey", "rsa:2048"]).csr);
    expect(r.keyUsage).toEqual(["digitalSignature", "keyEncipherment"]);
  });

  it("fixed subject values are applied; other attributes and wildcards are refused", async () => {
    const d = await decide("log-signing", makeCsr(dir, "c", "/CN=log signing").csr);
    expect(d.subject).toEqual({ CN: "log signing", O: "ViWorkS" });
    const ou = await refusal(decide("tls-gateway", makeCsr(dir, "d", "/OU=x/CN=gw.viworks.example").csr));
    expect(ou?.message).toMatch(/subject attribute OU is not allowed by profile tls-gateway/);
    const wild = await refusal(decide("tls-gateway", makeCsr(dir, "e", "/CN=gw.viworks.example").csr, { sans: { dns: ["gw.viworks.example", "*.gw.viworks.example"] } }));
    expect(wild?.message).toMatch(/wildcard certificates are not issued/);
    const email = await refusal(parseCsr(makeCsr(dir, "f", "/CN=x", "email:a@b.example").csr));
    expect(email?.code).toBe("san_type");
  });

  it("checks device ids, SAN counts and issuer name constraints", async () => {
    const c = makeCsr(dir, "g", "/CN=laptop").csr;
    const bad = await refusal(decide("device-desktop", c, { sans: { uri: ["urn:viworks:device:NOT-HEX"] } }));
    expect(bad?.message).toMatch(/device id "NOT-HEX" does not match/);
    const two = await refusal(decide("device-desktop", c, { sans: { uri: ["urn:viworks:device:" + "a".repeat(32), "urn:viworks:device:" + "b".repeat(32)] } }));
    expect(two?.message).toMatch(/at most 1 SAN/);
    const none = await refusal(decide("device-desktop", c));
    expect(none?.message).toMatch(/at least 1 SAN/);
    const v = await refusal(decide("tls-gateway", makeCsr(dir, "h", "/CN=gw.viworks.example").csr, { validity: "ten days" }));
    expect(v).toMatchObject({ status: 400, field: "validity" });
  });
});

describe("CSR proof of possession on the crypto workers", () => {
  const der = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  const pem = (b: Buffer) => `-----BEGIN CERTIFICATE REQUEST-----\n${b.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;

  it("tells a key that is no point on its curve from a signature that does not verify, and verifies many at once", async () => {
    const { csr } = makeCsr(dir, "pop", "/CN=gw.viworks.example");
    const good = der(csr);
    // The uncompressed P-256 point follows the 0x04 after the BIT STRING's unused-bits byte.
    const at = good.indexOf(Buffer.from([0x03, 0x42, 0x00, 0x04])) + 4;
    const offCurve = Buffer.from(good);
    offCurve[at + 63] = offCurve[at + 63]! ^ 0x01;
    const noKey = await refusal(parseCsr(pem(offCurve)));
    expect(noKey).toMatchObject({ status: 400, code: "key_type", field: "csr" });
    expect(noKey?.message).toMatch(/csr public key cannot be read/);

    const badSig = Buffer.from(good);
    badSig[badSig.length - 3] = badSig[badSig.length - 3]! ^ 0x01;
    const forged = await refusal(parseCsr(pem(badSig)));
    expect(forged).toMatchObject({ status: 400, code: "bad_csr_signature" });

    // Concurrent requests each get their own answer back from the worker lanes.
    const mixed = await Promise.all(Array.from({ length: 60 }, (_, i) => refusal(parseCsr(i % 3 === 0 ? pem(badSig) : csr))));
    mixed.forEach((r, i) => (i % 3 === 0 ? expect(r?.code).toBe("bad_csr_signature") : expect(r).toBeUndefined()));
  });
});
