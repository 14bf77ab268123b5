import "reflect-metadata";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn from "@peculiar/asn1-x509";
import type { IssuerDoc } from "../config/index.js";
import type { Signer } from "./signer.js";
import { fromPem, keyIdentifier, toPem } from "./x509.js";

export function certPath(dataDir: string, id: string): string {
  return join(dataDir, "pki", "certs", `${id}.crt`);
}

/**
 * A CA certificate the engine holds, with what issuance, CRL and OCSP keep
 * needing precomputed: its subject as the issuer Name of what it signs, its
 * key identifier, the CertID hashes (RFC 6960 §4.1.1) and the chain above it.
 */
export class IssuerCert {
  readonly cert: asn.Certificate;
  readonly x509: X509Certificate;
  readonly subject: asn.Name;
  readonly ski: Buffer;
  readonly notAfter: Date;
  readonly certIdHashes: Record<"sha1" | "sha256", { name: string; key: string }>;

  constructor(readonly der: Buffer) {
    this.cert = AsnConvert.parse(der, asn.Certificate);
    this.x509 = new X509Certificate(der);
    this.subject = this.cert.tbsCertificate.subject;
    this.ski = keyIdentifier(this.cert.tbsCertificate.subjectPublicKeyInfo);
    this.notAfter = this.cert.tbsCertificate.validity.notAfter.getTime();
    const nameDer = Buffer.from(AsnConvert.serialize(this.subject));
    const keyBits = Buffer.from(this.cert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey);
    const h = (alg: string, b: Buffer) => createHash(alg).update(b).digest("hex");
    this.certIdHashes = {
      sha1: { name: h("sha1", nameDer), key: h("sha1", keyBits) },
      sha256: { name: h("sha256", nameDer), key: h("sha256", keyBits) },
    };
  }

  private pemText?: string;
  get pem(): string {
    return (this.pemText ??= toPem(this.der));
  }

  static read(dataDir: string, id: string): IssuerCert | undefined {
    let text: string;
    try {
      text = readFileSync(certPath(dataDir, id), "utf8");
    } catch {
      return undefined;
    }
    const [der] = fromPem(text);
    return der ? new IssuerCert(der) : undefined;
  }
}

/** An issuer of one revision: its doc, certificate, chain to the root, and key when online. */
export interface Issuer {
  readonly id: string;
  readonly doc: IssuerDoc;
  readonly cert: IssuerCert;
  /** The issuer's own certificate first, up to and including the root. */
  readonly chain: readonly IssuerCert[];
  /** The chain's PEMs, one frozen array per revision: every issuance answer shares it (and the API its JSON). */
  readonly chainPem: readonly string[];
  /** Absent for offline issuers (the root). */
  readonly signer?: Signer;
  /** What signs end-entity certificates: the same key, on the crypto workers when it is a software key (workers.ts). */
  readonly leafSigner?: Signer;
}
