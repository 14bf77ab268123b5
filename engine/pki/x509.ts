/**
 * Certificate construction on @peculiar/asn1-x509. The TBSCertificate is built
 * from ASN.1 objects directly rather than through @peculiar/x509's generator:
 * that one goes through WebCrypto and re-parses everything and issues ~300
 * certificates/s, this path ~5× more, which is the issuance API's hot path.
 */
import "reflect-metadata";
import { createHash, randomBytes, type KeyObject } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn from "@peculiar/asn1-x509";
import type { DistinguishedName, ExtendedKeyUsage, KeyAlgorithm, KeyUsage } from "../config/index.js";
import { sequence, tlv } from "./der.js";
import type { Signer } from "./signer.js";

const ATTRIBUTE_OIDS: Record<keyof DistinguishedName, string> = {
  CN: "2.5.4.3",
  O: "2.5.4.10",
  OU: "2.5.4.11",
  C: "2.5.4.6",
  ST: "2.5.4.8",
  L: "2.5.4.7",
};
export const OID_NAMES: Record<string, keyof DistinguishedName> = Object.fromEntries(Object.entries(ATTRIBUTE_OIDS).map(([k, v]) => [v, k as keyof DistinguishedName]));
const DN_ORDER: (keyof DistinguishedName)[] = ["C", "ST", "L", "O", "OU", "CN"];

/** An X.501 Name in the conventional order (C … CN), one attribute per RDN. */
export function nameOf(dn: Partial<DistinguishedName>): asn.Name {
  const rdns: asn.RelativeDistinguishedName[] = [];
  for (const key of DN_ORDER) {
    const v = dn[key];
    if (v === undefined) continue;
    const value = key === "C" ? new asn.AttributeValue({ printableString: v }) : new asn.AttributeValue({ utf8String: v });
    rdns.push(new asn.RelativeDistinguishedName([new asn.AttributeTypeAndValue({ type: ATTRIBUTE_OIDS[key], value })]));
  }
  return new asn.Name(rdns);
}

/** The attributes of a Name, e.g. from a CSR; unknown ones under their OID. */
export function dnOf(name: asn.Name): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rdn of name) {
    for (const atv of rdn) {
      const key = OID_NAMES[atv.type] ?? atv.type;
      out[key] = atv.value.toString();
    }
  }
  return out;
}

export function signatureAlgorithm(alg: KeyAlgorithm): asn.AlgorithmIdentifier {
  switch (alg) {
    case "ecdsa-p256":
      return new asn.AlgorithmIdentifier({ algorithm: "1.2.840.10045.4.3.2" });
    case "ecdsa-p384":
      return new asn.AlgorithmIdentifier({ algorithm: "1.2.840.10045.4.3.3" });
    case "ed25519":
      return new asn.AlgorithmIdentifier({ algorithm: "1.3.101.112" });
    default:
      return new asn.AlgorithmIdentifier({ algorithm: "1.2.840.113549.1.1.11", parameters: null });
  }
}

export function spkiOf(key: KeyObject): asn.SubjectPublicKeyInfo {
  return AsnConvert.parse(key.export({ type: "spki", format: "der" }), asn.SubjectPublicKeyInfo);
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: asn.SubjectPublicKeyInfo): Buffer {
  return createHash("sha1").update(Buffer.from(spki.subjectPublicKey)).digest();
}

/** 128 random bits as a positive, minimally encoded INTEGER (hex without sign byte). */
// CSPRNG bytes drawn 4 KiB at a time: one randomFillSync per 256 serials
// instead of one per certificate (each call has a fixed cost near a signature's).
let entropy = Buffer.alloc(0);
let entropyAt = 0;

export function randomSerial(): Buffer {
  for (;;) {
    if (entropyAt + 16 > entropy.length) {
      entropy = randomBytes(4096);
      entropyAt = 0;
    }
    const b = Buffer.from(entropy.subarray(entropyAt, entropyAt + 16));
    entropy.fill(0, entropyAt, entropyAt + 16);
    entropyAt += 16;
    if (b[0] !== 0) return b;
  }
}

export function serialBytes(serialHex: string): ArrayBuffer {
  const b = Buffer.from(serialHex.length % 2 ? "0" + serialHex : serialHex, "hex");
  const out = b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b;
  return new Uint8Array(out).buffer;
}

export function serialHexOf(serial: ArrayBuffer): string {
  const b = Buffer.from(serial);
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i).toString("hex");
}

export function ext(oid: string, value: unknown, critical = false): asn.Extension {
  return new asn.Extension({ extnID: oid, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

const KU_FLAGS: Record<KeyUsage | "keyCertSign" | "cRLSign", number> = {
  digitalSignature: asn.KeyUsageFlags.digitalSignature,
  contentCommitment: asn.KeyUsageFlags.nonRepudiation,
  keyEncipherment: asn.KeyUsageFlags.keyEncipherment,
  keyAgreement: asn.KeyUsageFlags.keyAgreement,
  keyCertSign: asn.KeyUsageFlags.keyCertSign,
  cRLSign: asn.KeyUsageFlags.cRLSign,
};
export const EKU_OIDS: Record<ExtendedKeyUsage, string> = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  codeSigning: "1.3.6.1.5.5.7.3.3",
  emailProtection: "1.3.6.1.5.5.7.3.4",
  timeStamping: "1.3.6.1.5.5.7.3.8",
  OCSPSigning: "1.3.6.1.5.5.7.3.9",
};
export const OID_OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5";

export const extensions = {
  keyUsage: (usages: (keyof typeof KU_FLAGS)[]) => ext(asn.id_ce_keyUsage, new asn.KeyUsage(usages.reduce((a, u) => a | KU_FLAGS[u], 0)), true),
  extendedKeyUsage: (usages: ExtendedKeyUsage[]) => ext(asn.id_ce_extKeyUsage, new asn.ExtendedKeyUsage(usages.map((u) => EKU_OIDS[u]))),
  basicConstraints: (ca: boolean, pathLength?: number) => ext(asn.id_ce_basicConstraints, new asn.BasicConstraints(ca ? { cA: true, pathLenConstraint: pathLength } : {}), true),
  subjectKeyIdentifier: (ski: Buffer) => ext(asn.id_ce_subjectKeyIdentifier, new asn.SubjectKeyIdentifier(new Uint8Array(ski).buffer)),
  authorityKeyIdentifier: (ski: Buffer) => ext(asn.id_ce_authorityKeyIdentifier, new asn.AuthorityKeyIdentifier({ keyIdentifier: new asn.KeyIdentifier(new Uint8Array(ski).buffer) })),
  subjectAltName: (sans: { dns?: string[]; ip?: string[]; uri?: string[] }, critical: boolean) =>
    ext(
      asn.id_ce_subjectAltName,
      new asn.SubjectAlternativeName([
        ...(sans.dns ?? []).map((d) => new asn.GeneralName({ dNSName: d })),
        ...(sans.ip ?? []).map((i) => new asn.GeneralName({ iPAddress: i })),
        ...(sans.uri ?? []).map((u) => new asn.GeneralName({ uniformResourceIdentifier: u })),
      ]),
      critical,
    ),
  crlDistributionPoints: (url: string) =>
    ext(asn.id_ce_cRLDistributionPoints, new asn.CRLDistributionPoints([new asn.DistributionPoint({ distributionPoint: new asn.DistributionPointName({ fullName: [new asn.GeneralName({ uniformResourceIdentifier: url })] }) })])),
  authorityInfoAccess: (ocspUrl?: string, caIssuersUrl?: string) =>
    ext(
      asn.id_pe_authorityInfoAccess,
      new asn.AuthorityInfoAccessSyntax([
        ...(ocspUrl ? [new asn.AccessDescription({ accessMethod: asn.id_ad_ocsp, accessLocation: new asn.GeneralName({ uniformResourceIdentifier: ocspUrl }) })] : []),
        ...(caIssuersUrl ? [new asn.AccessDescription({ accessMethod: asn.id_ad_caIssuers, accessLocation: new asn.GeneralName({ uniformResourceIdentifier: caIssuersUrl }) })] : []),
      ]),
    ),
  nameConstraints: (permitted: { dns?: string[]; ip?: string[]; uri?: string[] }) =>
    ext(
      asn.id_ce_nameConstraints,
      new asn.NameConstraints({
        permittedSubtrees: new asn.GeneralSubtrees([
          ...(permitted.dns ?? []).map((d) => new asn.GeneralSubtree({ base: new asn.GeneralName({ dNSName: d }) })),
          ...(permitted.ip ?? []).map((c) => new asn.GeneralSubtree({ base: new asn.GeneralName({ iPAddress: c }) })),
          ...(permitted.uri ?? []).map((u) => new asn.GeneralSubtree({ base: new asn.GeneralName({ uniformResourceIdentifier: u }) })),
        ]),
      }),
      true,
    ),
  ocspNoCheck: () => new asn.Extension({ extnID: OID_OCSP_NOCHECK, critical: false, extnValue: new OctetString(new Uint8Array([0x05, 0x00]).buffer) }),
};

export interface CertificateSpec {
  serial: Uint8Array;
  issuer: asn.Name;
  subject: asn.Name;
  notBefore: Date;
  notAfter: Date;
  spki: asn.SubjectPublicKeyInfo;
  extensions: asn.Extension[];
}

/** Whole seconds: X.509 times carry no fraction, and the record should match the certificate. */
export function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

export async function signCertificate(spec: CertificateSpec, signer: Signer): Promise<Buffer> {
  const sigAlg = signatureAlgorithm(signer.algorithm);
  const tbs = new asn.TBSCertificate({
    version: asn.Version.v3,
    serialNumber: serialBytes(Buffer.from(spec.serial).toString("hex")),
    signature: sigAlg,
    issuer: spec.issuer,
    validity: new asn.Validity({ notBefore: wholeSeconds(spec.notBefore), notAfter: wholeSeconds(spec.notAfter) }),
    subject: spec.subject,
    subjectPublicKeyInfo: spec.spki,
    extensions: new asn.Extensions(spec.extensions),
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  return signed(tbsDer, sigAlg, await signer.sign(tbsDer));
}

/** Certificate, CertificateList and BasicOCSPResponse share this shape; concatenating avoids re-serialising the TBS. */
export function signed(tbsDer: Uint8Array, sigAlg: asn.AlgorithmIdentifier, signature: Uint8Array): Buffer {
  return sequence(tbsDer, algorithmDer(sigAlg), tlv(0x03, Buffer.from([0]), signature));
}

const ALG_DER = new Map<string, Buffer>();
function algorithmDer(alg: asn.AlgorithmIdentifier): Buffer {
  let der = ALG_DER.get(alg.algorithm);
  if (!der) ALG_DER.set(alg.algorithm, (der = Buffer.from(AsnConvert.serialize(alg))));
  return der;
}

/** Canonical serial text: lowercase hex, even length, no sign byte; accepts colons and any case. */
export function normalizeSerial(text: string): string | null {
  const clean = text.replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]{1,64}$/.test(clean)) return null;
  const hex = BigInt("0x" + clean).toString(16);
  return hex.length % 2 ? "0" + hex : hex;
}

export function toPem(der: Uint8Array, label = "CERTIFICATE"): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  let body = "";
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

const PEM_BLOCKS = new Map<string, RegExp>();

/** DER blocks of one label in a PEM text, in order. */
export function fromPem(text: string, label = "CERTIFICATE"): Buffer[] {
  let re = PEM_BLOCKS.get(label);
  if (!re) PEM_BLOCKS.set(label, (re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+?)-----END ${label}-----`, "g")));
  // Buffer's base64 decoder skips the line breaks and spaces itself.
  return [...text.matchAll(re)].map((m) => Buffer.from(m[1]!, "base64"));
}
