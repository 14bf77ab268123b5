/**
 * A real test CA on @peculiar/x509 (WebCrypto P-256): a stand-in for the
 * engine's CA where a test only needs certificates that real TLS peers verify.
 */
import "reflect-metadata";
import { webcrypto, type KeyObject } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 86_400_000;

export interface TestCa {
  pem: string;
  /** Certifies a public key (DER SPKI, KeyObject or x509.PublicKey). */
  issue(publicKey: Buffer | KeyObject | x509.PublicKey, opts: { cn: string; dns?: string[]; ip?: string[]; notBefore?: Date; notAfter?: Date; client?: boolean }): Promise<string>;
}

export async function createTestCa(name = "viw test CA"): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as unknown as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys,
    signingAlgorithm: EC,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 3650 * DAY),
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  return {
    pem: ca.toString("pem"),
    async issue(publicKey, opts) {
      const pub =
        publicKey instanceof x509.PublicKey ? publicKey : new x509.PublicKey(Buffer.isBuffer(publicKey) ? publicKey : (publicKey as KeyObject).export({ type: "spki", format: "der" }));
      const names: x509.JsonGeneralName[] = [...(opts.dns ?? []).map((v) => ({ type: "dns" as const, value: v })), ...(opts.ip ?? []).map((v) => ({ type: "ip" as const, value: v }))];
      const cert = await x509.X509CertificateGenerator.create({
        subject: `CN=${opts.cn}`,
        issuer: ca.subject,
        publicKey: pub,
        signingKey: keys.privateKey,
        signingAlgorithm: EC,
        notBefore: opts.notBefore ?? new Date(Date.now() - 60_000),
        notAfter: opts.notAfter ?? new Date(Date.now() + 90 * DAY),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.ExtendedKeyUsageExtension([opts.client ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth]),
          ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
        ],
      });
      return cert.toString("pem");
    },
  };
}
