import "reflect-metadata";
import { AsnConvert } from "@peculiar/asn1-schema";
import { ipBytes } from "../config/index.js";
import type { DistinguishedName } from "../config/index.js";
import { derTime, oidDer, sequence, tlv, unsignedInteger } from "./der.js";
import type { Issuer } from "./issuer.js";
import type { Decision } from "./profile.js";
import { extensions, randomSerial, signatureAlgorithm, signed } from "./x509.js";

/**
 * End-entity certificates are the issuance API's hot path, so their
 * TBSCertificate is written as DER bytes here: the parts that are the same
 * for every certificate of an issuer and profile (issuer Name, algorithm,
 * key usages, AKI, AIA, CRL DP) are encoded once with @peculiar/asn1-x509
 * and cached; only serial, validity, subject, key, SKI and SANs are written
 * per certificate. asn1-schema's serialiser alone cost more than the
 * signature.
 */
const cache = new WeakMap<Issuer, Map<string, Buffer>>();

function cached(issuer: Issuer, key: string, make: () => Buffer): Buffer {
  let m = cache.get(issuer);
  if (!m) cache.set(issuer, (m = new Map()));
  let v = m.get(key);
  if (!v) m.set(key, (v = make()));
  return v;
}

const extDer = (e: unknown) => Buffer.from(AsnConvert.serialize(e));

const ATTRS: [keyof DistinguishedName, Buffer][] = [
  ["C", oidDer("2.5.4.6")],
  ["ST", oidDer("2.5.4.8")],
  ["L", oidDer("2.5.4.7")],
  ["O", oidDer("2.5.4.10")],
  ["OU", oidDer("2.5.4.11")],
  ["CN", oidDer("2.5.4.3")],
];

/** Name in the order C … CN, one attribute per RDN (as nameOf in x509.ts). */
function nameDer(dn: Partial<DistinguishedName>): Buffer {
  const rdns: Buffer[] = [];
  for (const [k, oid] of ATTRS) {
    const v = dn[k];
    if (v === undefined) continue;
    rdns.push(tlv(0x31, sequence(oid, tlv(k === "C" ? 0x13 : 0x0c, Buffer.from(v, "utf8")))));
  }
  return sequence(...rdns);
}

const OID_SKI = oidDer("2.5.29.14");
const OID_SAN = oidDer("2.5.29.17");
const CRITICAL = Buffer.from([0x01, 0x01, 0xff]);

function sanDer(sans: Decision["sans"], critical: boolean): Buffer {
  const names = [
    ...sans.dns.map((d) => tlv(0x82, Buffer.from(d, "latin1"))),
    ...sans.ip.map((i) => tlv(0x87, ipBytes(i)!)),
    ...sans.uri.map((u) => tlv(0x86, Buffer.from(u, "latin1"))),
  ];
  return sequence(OID_SAN, ...(critical ? [CRITICAL] : []), tlv(0x04, sequence(...names)));
}

export interface SignedLeaf {
  der: Buffer;
  serial: string;
  spkiSha256: string;
}

/**
 * Signs an end-entity certificate that the profile decision allows. Nothing
 * from the CSR reaches the certificate except the public key: subject, SANs,
 * key usages and validity all come from `decision`.
 */
export async function signLeaf(issuer: Issuer, decision: Decision, key: { spkiDer: Buffer; ski: Buffer; spkiSha256: string }, extra: Buffer[] = []): Promise<SignedLeaf> {
  const signer = issuer.leafSigner ?? issuer.signer;
  if (!signer) throw new Error(`issuer ${issuer.id} is offline`);
  const sigAlg = signatureAlgorithm(signer.algorithm);
  const sigAlgDer = cached(issuer, `alg:${signer.algorithm}`, () => extDer(sigAlg));
  const issuerName = cached(issuer, "name", () => extDer(issuer.cert.subject));
  const fixed = cached(issuer, `ext:${decision.keyUsage.join(",")}:${decision.extendedKeyUsage.join(",")}`, () => {
    const e = [extensions.basicConstraints(false), extensions.keyUsage(decision.keyUsage)];
    if (decision.extendedKeyUsage.length) e.push(extensions.extendedKeyUsage(decision.extendedKeyUsage));
    e.push(extensions.authorityKeyIdentifier(issuer.cert.ski));
    if (issuer.doc.ocsp?.url) e.push(extensions.authorityInfoAccess(issuer.doc.ocsp.url));
    if (issuer.doc.crl?.url) e.push(extensions.crlDistributionPoints(issuer.doc.crl.url));
    return Buffer.concat(e.map(extDer));
  });
  const serial = randomSerial();
  const subject = nameDer(decision.subject);
  const hasSans = decision.sans.dns.length + decision.sans.ip.length + decision.sans.uri.length > 0;
  const exts = [
    fixed,
    sequence(OID_SKI, tlv(0x04, tlv(0x04, key.ski))),
    // RFC 5280 §4.2.1.6: critical when the subject is empty.
    ...(hasSans ? [sanDer(decision.sans, Object.keys(decision.subject).length === 0)] : []),
    ...extra,
  ];
  const tbs = sequence(
    Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]), // [0] version v3
    unsignedInteger(serial),
    sigAlgDer,
    issuerName,
    sequence(derTime(decision.notBefore), derTime(decision.notAfter)),
    subject,
    key.spkiDer,
    tlv(0xa3, sequence(...exts)),
  );
  const der = signed(tbs, sigAlg, await signer.sign(tbs));
  return { der, serial: serial.toString("hex"), spkiSha256: key.spkiSha256 };
}

export { extDer };
