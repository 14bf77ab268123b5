import "reflect-metadata";
import { createHash } from "node:crypto";
import type * as asn from "@peculiar/asn1-x509";
import type { Issuer } from "./issuer.js";
import type { Decision } from "./profile.js";
import { extensions, keyIdentifier, nameOf, randomSerial, signCertificate } from "./x509.js";

/** The extensions every certificate of one issuer shares, serialised once. */
const shared = new WeakMap<Issuer, asn.Extension[]>();

function issuerExtensions(issuer: Issuer): asn.Extension[] {
  let exts = shared.get(issuer);
  if (!exts) {
    exts = [extensions.authorityKeyIdentifier(issuer.cert.ski)];
    if (issuer.doc.ocsp?.url) exts.push(extensions.authorityInfoAccess(issuer.doc.ocsp.url));
    if (issuer.doc.crl?.url) exts.push(extensions.crlDistributionPoints(issuer.doc.crl.url));
    shared.set(issuer, exts);
  }
  return exts;
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
export async function signLeaf(issuer: Issuer, decision: Decision, spki: asn.SubjectPublicKeyInfo, spkiDer: Buffer, extra: asn.Extension[] = []): Promise<SignedLeaf> {
  if (!issuer.signer) throw new Error(`issuer ${issuer.id} is offline`);
  const serial = randomSerial();
  const subject = nameOf(decision.subject);
  const hasSans = decision.sans.dns.length + decision.sans.ip.length + decision.sans.uri.length > 0;
  const exts = [
    extensions.basicConstraints(false),
    extensions.keyUsage(decision.keyUsage),
    ...(decision.extendedKeyUsage.length ? [extensions.extendedKeyUsage(decision.extendedKeyUsage)] : []),
    extensions.subjectKeyIdentifier(keyIdentifier(spki)),
    ...issuerExtensions(issuer),
    // RFC 5280 §4.2.1.6: critical when the subject is empty.
    ...(hasSans ? [extensions.subjectAltName(decision.sans, subject.length === 0)] : []),
    ...extra,
  ];
  const der = await signCertificate(
    { serial, issuer: issuer.cert.subject, subject, notBefore: decision.notBefore, notAfter: decision.notAfter, spki, extensions: exts },
    issuer.signer,
  );
  return { der, serial: serial.toString("hex"), spkiSha256: createHash("sha256").update(spkiDer).digest("base64") };
}
