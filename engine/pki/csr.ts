import "reflect-metadata";
import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn from "@peculiar/asn1-x509";
import type { KeyAlgorithm } from "../config/index.js";
import { IssueError } from "./errors.js";
import { algorithmOf } from "./keys/common.js";
import { dnOf, fromPem } from "./x509.js";

export interface Sans {
  dns: string[];
  ip: string[];
  uri: string[];
}

/** A CSR whose signature verified: what it asks for, nothing decided yet. */
export interface Csr {
  subject: Record<string, string>;
  spki: asn.SubjectPublicKeyInfo;
  spkiDer: Buffer;
  publicKey: KeyObject;
  keyAlgorithm: KeyAlgorithm;
  sans: Sans;
}

const SIGNATURE_HASHES: Record<string, string | null> = {
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.3.101.112": null,
};
const OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

function bad(message: string, code = "bad_csr"): IssueError {
  return new IssueError(400, code, message, "csr");
}

/** Parses a PEM PKCS#10 request and verifies its self-signature. */
export function parseCsr(pem: unknown): Csr {
  if (typeof pem !== "string" || pem.length === 0) throw bad("csr must be a PEM CERTIFICATE REQUEST string");
  const der = fromPem(pem, "CERTIFICATE REQUEST")[0] ?? fromPem(pem, "NEW CERTIFICATE REQUEST")[0];
  if (!der) throw bad("csr is not PEM: expected a -----BEGIN CERTIFICATE REQUEST----- block");
  let req: CertificationRequest;
  try {
    req = AsnConvert.parse(der, CertificationRequest);
  } catch (err) {
    throw bad(`csr is not a PKCS#10 certification request (${(err as Error).message})`);
  }
  const info = req.certificationRequestInfo;
  const spkiDer = Buffer.from(AsnConvert.serialize(info.subjectPKInfo));
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spkiDer, format: "der", type: "spki" });
  } catch (err) {
    throw bad(`csr public key cannot be read (${(err as Error).message})`, "key_type");
  }
  let keyAlgorithm: KeyAlgorithm;
  try {
    keyAlgorithm = algorithmOf(publicKey);
  } catch (err) {
    throw bad(`csr ${(err as Error).message}`, "key_type");
  }
  const alg = req.signatureAlgorithm.algorithm;
  if (!(alg in SIGNATURE_HASHES)) throw bad(`csr signature algorithm ${alg} is not accepted`, "bad_csr_signature");
  const raw = req.certificationRequestInfoRaw ? Buffer.from(req.certificationRequestInfoRaw) : Buffer.from(AsnConvert.serialize(info));
  let ok = false;
  try {
    ok = verify(SIGNATURE_HASHES[alg] ?? null, raw, publicKey, Buffer.from(req.signature));
  } catch {
    ok = false;
  }
  if (!ok) throw bad("csr signature does not verify with the csr's public key (proof of possession failed)", "bad_csr_signature");

  const sans: Sans = { dns: [], ip: [], uri: [] };
  try {
    readSans(info.attributes, sans);
  } catch (err) {
    if (err instanceof IssueError) throw err;
    throw bad(`csr extension request cannot be read (${(err as Error).message})`);
  }
  return { subject: dnOf(info.subject), spki: info.subjectPKInfo, spkiDer, publicKey, keyAlgorithm, sans };
}

function readSans(attributes: CertificationRequest["certificationRequestInfo"]["attributes"], sans: Sans): void {
  for (const attr of attributes) {
    if (attr.type !== OID_EXTENSION_REQUEST) continue;
    for (const v of attr.values) {
      const exts = AsnConvert.parse(v, asn.Extensions);
      for (const e of exts) {
        if (e.extnID !== asn.id_ce_subjectAltName) continue;
        for (const g of AsnConvert.parse(e.extnValue, asn.SubjectAlternativeName)) {
          if (g.dNSName !== undefined) sans.dns.push(g.dNSName);
          else if (g.iPAddress !== undefined) sans.ip.push(g.iPAddress);
          else if (g.uniformResourceIdentifier !== undefined) sans.uri.push(g.uniformResourceIdentifier);
          else throw bad("csr asks for a subjectAltName type other than DNS, IP or URI", "san_type");
        }
      }
    }
  }
}
