import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { IssueError, parseCsr } from "../../engine/pki/index.js";
import { fromPem, toPem } from "../../engine/pki/x509.js";

/**
 * parseCsr is a hand-written DER reader (the issuance hot path); these
 * properties hold it to @peculiar/x509 / asn1-csr, the maintained parser:
 * the same subject and SANs on random valid requests, and a 400 for every
 * corrupted request the library refuses (unparsable, or a signature that does
 * not verify). The second property found that the outer signatureAlgorithm's
 * OID tag went unchecked.
 */
x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
let keys: CryptoKeyPair[];
beforeAll(async () => {
  keys = await Promise.all(Array.from({ length: 4 }, () => webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]) as Promise<CryptoKeyPair>));
});

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
const request = fc.record({
  key: fc.nat(3),
  cn: fc.option(fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !/[\u0000-\u001f\ud800-\udfff]/.test(s) && !s.startsWith("#") && !/["\\]/.test(s)), { nil: undefined }),
  o: fc.option(fc.stringMatching(/^[A-Za-z0-9 ]{1,20}$/), { nil: undefined }),
  dns: fc.array(fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join(".")), { maxLength: 4 }),
  ip: fc.array(fc.ipV4(), { maxLength: 3 }),
  uri: fc.array(fc.webUrl(), { maxLength: 2 }),
});

async function make(r: fc.infer<typeof request>): Promise<string> {
  const name: x509.JsonName = [];
  if (r.o !== undefined) name.push({ "2.5.4.10": [r.o] });
  if (r.cn !== undefined) name.push({ "2.5.4.3": [r.cn] });
  const sans = [...r.dns.map((value) => ({ type: "dns" as const, value })), ...r.ip.map((value) => ({ type: "ip" as const, value })), ...r.uri.map((value) => ({ type: "url" as const, value }))];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name(name),
    keys: keys[r.key]!,
    signingAlgorithm: alg,
    extensions: sans.length ? [new x509.SubjectAlternativeNameExtension(sans)] : [],
  });
  return csr.toString("pem");
}

/** What the library reads, or null when it refuses the request (unparsable, or its signature fails). */
async function reference(pem: string): Promise<{ subject: Record<string, string>; dns: string[]; ip: string[]; uri: string[] } | null> {
  try {
    const csr = new x509.Pkcs10CertificateRequest(pem);
    if (!(await csr.verify())) return null;
    const subject: Record<string, string> = {};
    for (const rdn of csr.subjectName.toJSON()) for (const [type, values] of Object.entries(rdn)) subject[type === "2.5.4.3" || type === "CN" ? "CN" : type === "2.5.4.10" || type === "O" ? "O" : type] = values[0]!;
    const ext = csr.extensions.find((e) => e.type === "2.5.29.17");
    const names = ext ? new x509.SubjectAlternativeNameExtension(ext.rawData).names.items : [];
    return {
      subject,
      dns: names.filter((n) => n.type === "dns").map((n) => n.value),
      ip: names.filter((n) => n.type === "ip").map((n) => n.value),
      uri: names.filter((n) => n.type === "url").map((n) => n.value),
    };
  } catch {
    return null;
  }
}

describe("parseCsr agrees with @peculiar/x509 (asn1-csr)", () => {
  it("reads the same subject and SANs from random valid requests", async () => {
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const pem = await make(r);
        const ref = await reference(pem);
        expect(ref).not.toBeNull();
        const ours = await parseCsr(pem);
        expect(ours.subject).toEqual(ref!.subject);
        expect(ours.sans).toEqual({ dns: ref!.dns, ip: ref!.ip, uri: ref!.uri });
        expect(ours.keyAlgorithm).toBe("ecdsa-p256");
      }),
      { numRuns: 60 },
    );
  });

  it("refuses every corrupted request the library refuses, with a 400 naming the csr", async () => {
    await fc.assert(
      fc.asyncProperty(request, fc.nat(), fc.integer({ min: 1, max: 255 }), async (r, at, xor) => {
        const der = fromPem(await make(r), "CERTIFICATE REQUEST")[0]!;
        const bad = Buffer.from(der);
        bad[at % bad.length]! ^= xor;
        const pem = toPem(bad, "CERTIFICATE REQUEST");
        if ((await reference(pem)) !== null) return;
        const err = await parseCsr(pem).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(IssueError);
        expect((err as IssueError).status).toBe(400);
        expect((err as IssueError).field).toBe("csr");
      }),
      { numRuns: 200 },
    );
  });
});
