/**
 * Log Signing Key certificates kept beside the evidence (keys/ in the WORM
 * store), so a verifier needs nothing but the WORM copy and the CA chain.
 */
import { createHash, X509Certificate, type KeyObject } from "node:crypto";
import { keyIdOf } from "../../pki/keys/index.js";
import { certificateName } from "./format.js";
import type { WormStore } from "./worm.js";

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function pemCertificates(text: string): X509Certificate[] {
  return (text.match(PEM_CERT) ?? []).map((p) => new X509Certificate(p));
}

export interface StoredKey {
  keyId: string;
  publicKey: KeyObject;
  certificate: X509Certificate;
  /** The issuers stored with it (issuer first), as the daemon had them. */
  chain: X509Certificate[];
  /** SHA-256 of the certificate's DER, hex. */
  certSha256: string;
  file: string;
}

export function certificateSha256(cert: X509Certificate): string {
  return createHash("sha256").update(cert.raw).digest("hex");
}

/** The keys/ object for a signing key: its certificate, then its chain. */
export function keyBundle(certificatePem: string, chainPem: string | readonly string[] = []): { name: string; bytes: Buffer; keyId: string; certSha256: string } {
  const [leaf] = pemCertificates(certificatePem);
  if (!leaf) throw new Error("log signing certificate: no PEM certificate given");
  const chain = (typeof chainPem === "string" ? [chainPem] : chainPem).flatMap((p) => pemCertificates(p));
  const keyId = keyIdOf(leaf.publicKey);
  const certSha256 = certificateSha256(leaf);
  const bytes = Buffer.from([leaf, ...chain].map((c) => c.toString().trim()).join("\n") + "\n");
  return { name: certificateName(keyId, certSha256), bytes, keyId, certSha256 };
}

export interface LoadedKeys {
  byId: Map<string, StoredKey[]>;
  /** Files in keys/ that are not a certificate bundle named after its key. */
  problems: { file: string; message: string }[];
}

export async function loadStoredKeys(worm: WormStore): Promise<LoadedKeys> {
  const byId = new Map<string, StoredKey[]>();
  const problems: LoadedKeys["problems"] = [];
  for (const file of await worm.list("keys/")) {
    try {
      const text = (await worm.get(file))!.toString("utf8");
      const [certificate, ...chain] = pemCertificates(text);
      if (!certificate) throw new Error("no certificate in the file");
      const keyId = keyIdOf(certificate.publicKey);
      const certSha256 = certificateSha256(certificate);
      if (file !== certificateName(keyId, certSha256)) throw new Error(`holds the certificate of key ${keyId}, not what its name says`);
      const list = byId.get(keyId) ?? [];
      list.push({ keyId, publicKey: certificate.publicKey, certificate, chain, certSha256, file });
      byId.set(keyId, list);
    } catch (e) {
      problems.push({ file, message: (e as Error).message });
    }
  }
  return { byId, problems };
}

export interface ValidatedPath {
  /** The window in which every certificate of the path is valid. */
  notBefore: Date;
  notAfter: Date;
  /** Subjects from the leaf to the anchor. */
  path: string[];
}

/**
 * Builds and checks the path from a stored Log Signing Key certificate to one
 * of `anchors` (the certificates of the --ca file, any of which may be an
 * intermediate, like `openssl verify -partial_chain`): each signature, each
 * issuer a CA; validity is returned as a window to compare with sealing times,
 * because evidence must stay verifiable after its key expired.
 */
export function validatePath(key: StoredKey, anchors: readonly X509Certificate[]): ValidatedPath | string {
  const anchorPrints = new Set(anchors.map((a) => a.fingerprint256));
  const pool = [...key.chain, ...anchors];
  let current = key.certificate;
  const path = [current.subject.replace(/\n/g, ", ")];
  let notBefore = new Date(current.validFrom);
  let notAfter = new Date(current.validTo);
  for (let depth = 0; depth < 10; depth++) {
    if (anchorPrints.has(current.fingerprint256)) return { notBefore, notAfter, path };
    const issuer = pool.find((c) => c.ca && current.checkIssued(c) && current.verify(c.publicKey));
    if (!issuer) return `certificate of key ${key.keyId} (${path[0]}) does not chain to the CA: no valid issuer for "${current.subject.replace(/\n/g, ", ")}"`;
    if (issuer.fingerprint256 === current.fingerprint256) break;
    current = issuer;
    path.push(current.subject.replace(/\n/g, ", "));
    notBefore = new Date(Math.max(notBefore.getTime(), new Date(current.validFrom).getTime()));
    notAfter = new Date(Math.min(notAfter.getTime(), new Date(current.validTo).getTime()));
  }
  return `certificate of key ${key.keyId} does not chain to a certificate of the CA file`;
}
