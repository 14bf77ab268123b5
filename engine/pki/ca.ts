import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { DesiredState, IssuerDoc } from "../config/index.js";
import { parseDuration } from "../config/index.js";
import { buildCrl } from "./crl.js";
import { certPath, IssuerCert } from "./issuer.js";
import { KeyError, SoftwareKeyProvider } from "./keys/index.js";
import type { KeyProvider, Signer } from "./signer.js";
import { extensions, nameOf, randomSerial, signCertificate, spkiOf, keyIdentifier, toPem, wholeSeconds } from "./x509.js";

export interface InitCaOptions {
  dataDir: string;
  state: DesiredState;
  /** Where the intermediates' keys go (software in DATA/keys/ or a PKCS#11 token). */
  provider: KeyProvider;
  /** With a PKCS#11 provider: the token for issuers whose doc names a file: key. */
  pkcs11Token?: string;
  now?: Date;
}

export interface InitCaEntry {
  id: string;
  role: "root" | "intermediate";
  action: "created" | "exists";
  key: string;
  certificate: string;
  not_after: string;
  note?: string;
}

/** The directory the offline root key is written to, for the operator to move to removable media. */
export function offlineDir(dataDir: string): string {
  return join(dataDir, "offline");
}

function writeCert(dataDir: string, id: string, der: Buffer): IssuerCert {
  const path = certPath(dataDir, id);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, toPem(der), { flag: "wx" });
  return new IssuerCert(der);
}

function caExtensions(doc: IssuerDoc, signer: Signer, parent: IssuerCert | undefined, parentDoc: IssuerDoc | undefined) {
  const ski = keyIdentifier(spkiOf(signer.publicKey));
  const exts = [
    extensions.basicConstraints(true, doc.path_length),
    // digitalSignature too: an issuer in `responder: issuer` mode signs OCSP responses itself.
    extensions.keyUsage(["keyCertSign", "cRLSign", "digitalSignature"]),
    extensions.subjectKeyIdentifier(ski),
    extensions.authorityKeyIdentifier(parent ? parent.ski : ski),
  ];
  if (doc.permitted && (doc.permitted.dns?.length || doc.permitted.ip?.length || doc.permitted.uri?.length)) exts.push(extensions.nameConstraints(doc.permitted));
  if (parentDoc?.crl?.url) exts.push(extensions.crlDistributionPoints(parentDoc.crl.url));
  if (parentDoc?.ocsp?.url) exts.push(extensions.authorityInfoAccess(parentDoc.ocsp.url));
  return exts;
}

/**
 * The first CRL of an offline issuer (empty, CRL number 1), written to
 * DATA/pki/crl/ID.crl for the PKI port to serve; later ones are the
 * operator's, signed where the offline key lives.
 */
async function writeOfflineCrl(dataDir: string, doc: IssuerDoc, cert: IssuerCert, signer: Signer, now: Date): Promise<void> {
  const next = new Date(now.getTime() + parseDuration(doc.crl?.interval ?? "90d") + parseDuration(doc.crl?.grace ?? "0s"));
  const der = await buildCrl({ issuer: cert, signer, revoked: [], number: 1, thisUpdate: now, nextUpdate: next });
  const path = join(dataDir, "pki", "crl", `${doc.id}.crl`);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, der);
}

/** PEM of every issuer certificate of a state (the root last): the trust bundle clients and listeners use. */
export function caBundlePem(dataDir: string, state: DesiredState): string {
  const docs = [...state.issuers.values()].sort((a, b) => Number(!a.parent) - Number(!b.parent));
  return docs.map((d) => IssuerCert.read(dataDir, d.id)?.pem ?? "").join("");
}

/**
 * Bootstraps the CA of a DesiredState: the offline root (a software key in
 * DATA/offline/) and every issuer below it, keys in `provider`. Idempotent:
 * what exists is kept and reported as such.
 */
export async function initCa(options: InitCaOptions): Promise<InitCaEntry[]> {
  const { dataDir, state, provider } = options;
  const now = wholeSeconds(options.now ?? new Date());
  const offline = new SoftwareKeyProvider(offlineDir(dataDir));
  const out: InitCaEntry[] = [];
  const roots = [...state.issuers.values()].filter((d) => !d.parent);
  if (roots.length === 0) throw new Error("the config has no root issuer (an issuer without parent)");

  const made = new Map<string, { cert: IssuerCert; signer?: Signer }>();
  const keyRefFor = (doc: IssuerDoc): string => {
    // With a token named, intermediates written as file: keys go on the token;
    // without one, each reference goes where it says.
    if (provider.name === "pkcs11" && options.pkcs11Token && doc.key.ref.startsWith("file:")) {
      return `pkcs11:token=${encodeURIComponent(options.pkcs11Token)};object=${encodeURIComponent(doc.id)}`;
    }
    return doc.key.ref;
  };
  const openOrGenerate = async (p: KeyProvider, ref: string, doc: IssuerDoc): Promise<Signer> => {
    try {
      return await p.open(ref);
    } catch (err) {
      if (err instanceof KeyError && /no such key file|no private key/.test(err.message)) return p.generate(ref, doc.key.algorithm);
      throw err;
    }
  };

  for (const doc of roots) {
    const existing = IssuerCert.read(dataDir, doc.id);
    const ref = doc.key.ref.startsWith("file:") ? doc.key.ref : `file:${doc.id}.key`;
    if (existing) {
      out.push({ id: doc.id, role: "root", action: "exists", key: join(offlineDir(dataDir), ref.slice(5)), certificate: certPath(dataDir, doc.id), not_after: existing.notAfter.toISOString() });
      made.set(doc.id, { cert: existing });
      continue;
    }
    const signer = await openOrGenerate(offline, ref, doc);
    const spki = spkiOf(signer.publicKey);
    const der = await signCertificate(
      {
        serial: randomSerial(),
        issuer: nameOf(doc.subject),
        subject: nameOf(doc.subject),
        notBefore: now,
        notAfter: new Date(now.getTime() + parseDuration(doc.validity)),
        spki,
        extensions: caExtensions(doc, signer, undefined, undefined),
      },
      signer,
    );
    const cert = writeCert(dataDir, doc.id, der);
    made.set(doc.id, { cert, signer });
    await writeOfflineCrl(dataDir, doc, cert, signer, now);
    out.push({ id: doc.id, role: "root", action: "created", key: offline.path(ref), certificate: certPath(dataDir, doc.id), not_after: cert.notAfter.toISOString(), note: "offline root: move its key to removable media once the intermediates exist" });
  }

  // Parents before children, whatever the depth.
  const pending = [...state.issuers.values()].filter((d) => d.parent);
  while (pending.length) {
    const i = pending.findIndex((d) => made.has(d.parent!));
    if (i < 0) throw new Error(`issuers without a reachable parent: ${pending.map((d) => d.id).join(", ")}`);
    const doc = pending.splice(i, 1)[0]!;
    const parentDoc = state.issuers.get(doc.parent!)!;
    const parent = made.get(doc.parent!)!;
    const ref = keyRefFor(doc);
    const existing = IssuerCert.read(dataDir, doc.id);
    if (existing) {
      out.push({ id: doc.id, role: "intermediate", action: "exists", key: ref.split("?")[0]!, certificate: certPath(dataDir, doc.id), not_after: existing.notAfter.toISOString() });
      made.set(doc.id, { cert: existing });
      continue;
    }
    let parentSigner = parent.signer;
    if (!parentSigner) {
      const parentRef = parentDoc.key.ref.startsWith("file:") && !parentDoc.parent ? parentDoc.key.ref : keyRefFor(parentDoc);
      try {
        parentSigner = await (parentDoc.parent ? provider : offline).open(parentRef);
      } catch (err) {
        throw new Error(`issuer ${doc.id} needs a certificate but the key of its parent ${parentDoc.id} is not here (${(err as Error).message}); bring the offline key back to ${offlineDir(dataDir)}/`);
      }
      parent.signer = parentSigner;
    }
    const signer = await openOrGenerate(provider, ref, doc);
    const maxNotAfter = Math.min(now.getTime() + parseDuration(parentDoc.max_validity), parent.cert.notAfter.getTime());
    const der = await signCertificate(
      {
        serial: randomSerial(),
        issuer: parent.cert.subject,
        subject: nameOf(doc.subject),
        notBefore: now,
        notAfter: new Date(Math.min(now.getTime() + parseDuration(doc.validity), maxNotAfter)),
        spki: spkiOf(signer.publicKey),
        extensions: caExtensions(doc, signer, parent.cert, parentDoc),
      },
      parentSigner,
    );
    const cert = writeCert(dataDir, doc.id, der);
    made.set(doc.id, { cert, signer });
    const note = ref !== doc.key.ref ? `key generated as ${ref}; set key.ref to it in the issuer's document` : undefined;
    out.push({ id: doc.id, role: "intermediate", action: "created", key: ref.startsWith("file:") ? join(dataDir, "keys", ref.slice(5)) : ref.split("?")[0]!, certificate: certPath(dataDir, doc.id), not_after: cert.notAfter.toISOString(), ...(note ? { note } : {}) });
  }
  return out;
}
