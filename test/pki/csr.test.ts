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
