import "reflect-metadata";
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn from "@peculiar/asn1-x509";
import type { DesiredState, IssuerDoc } from "../config/index.js";
import { parseDuration } from "../config/index.js";
import { buildCrl } from "./crl.js";
import { certPath, IssuerCert } from "./issuer.js";
import { SoftwareKeyProvider } from "./keys/index.js";
import type { Signer } from "./signer.js";
import { REASON_CODES, type RevocationReason } from "./store.js";
import { normalizeSerial, toPem, wholeSeconds } from "./x509.js";
import { writeFileDurably } from "./files.js";

/**
 * CRLs of the offline root. The root's key never reaches the daemon, so its
 * CRL is signed here, by the operator, where DATA/offline/ is (or the
 * removable media it was moved to). What the root revoked and the last CRL
 * number live beside its key in DATA/offline/ROOT.crl.json; the number is
 * written (and fsynced) before a CRL carrying it exists, so it is never reused.
 */

export interface RootRevocation {
  /** The intermediate's issuer id. */
  issuer: string;
  serial: string;
  revoked_at: number;
  reason: number;
  not_after: number;
}

interface RootCrlFile {
  number: number;
  revoked: RootRevocation[];
}

export interface RootCrlOptions {
  dataDir: string;
  state: DesiredState;
  /** Root issuer id; defaults to the config's only root. */
  root?: string;
  /** thisUpdate + this = nextUpdate; default the root's crl interval + grace, else 30d. */
  nextUpdate?: string;
  now?: Date;
}

export interface RootCrlResult {
  issuer: string;
  number: number;
  this_update: string;
  next_update: string;
  revoked: RootRevocation[];
  /** DER, where the PKI port serves /crl/ROOT.crl from. */
  der: string;
  /** PEM (label X509 CRL). */
  pem: string;
}

export class RootCrlError extends Error {}

function rootOf(state: DesiredState, id?: string): IssuerDoc {
  if (id !== undefined) {
    const doc = state.issuers.get(id);
    if (!doc) throw new RootCrlError(`no issuer ${JSON.stringify(id)} in the config`);
    if (doc.parent) throw new RootCrlError(`issuer ${id} is not a root (its parent is ${doc.parent})`);
    return doc;
  }
  const roots = [...state.issuers.values()].filter((d) => !d.parent);
  if (roots.length === 0) throw new RootCrlError("the config has no root issuer");
  if (roots.length > 1) throw new RootCrlError(`the config has several roots (${roots.map((r) => r.id).join(", ")}); name one with --issuer`);
  return roots[0]!;
}

function statePath(dataDir: string, rootId: string): string {
  return join(dataDir, "offline", `${rootId}.crl.json`);
}

export function rootCrlPaths(dataDir: string, rootId: string): { der: string; pem: string } {
  const der = join(dataDir, "pki", "crl", `${rootId}.crl`);
  return { der, pem: join(dataDir, "pki", "crl", `${rootId}.crl.pem`) };
}

/** The CRL number of a CRL file, or 0 when there is none (or it cannot be read). */
function numberOfCrlFile(path: string): number {
  try {
    const crl = AsnConvert.parse(readFileSync(path), asn.CertificateList);
    const e = crl.tbsCertList.crlExtensions?.find((x) => x.extnID === asn.id_ce_cRLNumber);
    if (!e) return 0;
    const n = AsnConvert.parse(e.extnValue.buffer, asn.CRLNumber);
    return Number(n.value);
  } catch {
    return 0;
  }
}

function readState(dataDir: string, rootId: string): RootCrlFile {
  const path = statePath(dataDir, rootId);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { number: 0, revoked: [] };
    throw err;
  }
  try {
    const v = JSON.parse(text) as RootCrlFile;
    if (!Number.isInteger(v.number) || !Array.isArray(v.revoked)) throw new Error("expected {number, revoked[]}");
    return v;
  } catch (err) {
    throw new RootCrlError(`${path} is damaged (${(err as Error).message}); restore it from the offline media`);
  }
}

async function openRootKey(dataDir: string, doc: IssuerDoc, cert: IssuerCert): Promise<Signer> {
  const offline = new SoftwareKeyProvider(join(dataDir, "offline"));
  const ref = doc.key.ref.startsWith("file:") ? doc.key.ref : `file:${doc.id}.key`;
  let signer: Signer;
  try {
    signer = await offline.open(ref);
  } catch (err) {
    throw new RootCrlError(`the offline key of ${doc.id} is not here (${(err as Error).message}); bring it back to ${join(dataDir, "offline")}/`);
  }
  if (!cert.x509.publicKey.equals(signer.publicKey)) throw new RootCrlError(`${offline.path(ref)} is not the key of ${certPath(dataDir, doc.id)}`);
  return signer;
}

function rootCert(dataDir: string, doc: IssuerDoc): IssuerCert {
  const cert = IssuerCert.read(dataDir, doc.id);
  if (!cert) throw new RootCrlError(`no certificate of ${doc.id} at ${certPath(dataDir, doc.id)} (run \`viw ca init\`)`);
  return cert;
}

async function sign(dataDir: string, doc: IssuerDoc, cert: IssuerCert, file: RootCrlFile, options: RootCrlOptions): Promise<RootCrlResult> {
  const signer = await openRootKey(dataDir, doc, cert);
  const paths = rootCrlPaths(dataDir, doc.id);
  const now = wholeSeconds(options.now ?? new Date());
  let span: number;
  try {
    span = options.nextUpdate !== undefined ? parseDuration(options.nextUpdate) : doc.crl?.interval ? parseDuration(doc.crl.interval) + parseDuration(doc.crl.grace ?? "0s") : parseDuration("30d");
  } catch (err) {
    throw new RootCrlError(`--next-update: ${(err as Error).message}`);
  }
  if (!(span > 0)) throw new RootCrlError(`--next-update must be a positive duration such as 30d`);
  // Monotonic even if the state file was lost or predates this command: never below what was published.
  const number = Math.max(file.number, numberOfCrlFile(paths.der)) + 1;
  const next: RootCrlFile = { number, revoked: file.revoked };
  writeFileDurably(statePath(dataDir, doc.id), JSON.stringify(next, null, 2) + "\n", 0o600);
  const listed = file.revoked.filter((r) => r.not_after > now.getTime());
  const nextUpdate = new Date(now.getTime() + span);
  const der = await buildCrl({ issuer: cert, signer, revoked: listed.map((r) => [r.serial, r.revoked_at, r.reason] as const), number, thisUpdate: now, nextUpdate });
  writeFileDurably(paths.der, der);
  writeFileDurably(paths.pem, toPem(der, "X509 CRL"));
  return { issuer: doc.id, number, this_update: now.toISOString(), next_update: nextUpdate.toISOString(), revoked: listed, der: paths.der, pem: paths.pem };
}

/** `viw ca crl`: signs the next CRL of the offline root with its revoked intermediates. */
export async function signRootCrl(options: RootCrlOptions): Promise<RootCrlResult> {
  const doc = rootOf(options.state, options.root);
  const cert = rootCert(options.dataDir, doc);
  return sign(options.dataDir, doc, cert, readState(options.dataDir, doc.id), options);
}

/**
 * `viw ca revoke-intermediate`: records the revocation of an intermediate the
 * root signed and signs the root's next CRL with it. The intermediate's
 * certificate is the one in DATA/pki/certs/ID.crt.
 */
export async function revokeIntermediate(options: RootCrlOptions & { id: string; reason?: string }): Promise<RootCrlResult & { serial: string }> {
  const doc = rootOf(options.state, options.root);
  const cert = rootCert(options.dataDir, doc);
  const reasonText = options.reason ?? "unspecified";
  if (!(reasonText in REASON_CODES)) throw new RootCrlError(`reason must be one of ${Object.keys(REASON_CODES).join(", ")} (RFC 5280), not ${JSON.stringify(reasonText)}`);
  const path = certPath(options.dataDir, options.id);
  let der: Buffer;
  try {
    der = IssuerCert.read(options.dataDir, options.id)?.der ?? Buffer.alloc(0);
  } catch (err) {
    throw new RootCrlError(`${path} is not a certificate (${(err as Error).message})`);
  }
  if (!der.length) throw new RootCrlError(`no certificate of ${options.id} at ${path}`);
  const x = new X509Certificate(der);
  if (!x.checkIssued(cert.x509) || !x.verify(cert.x509.publicKey)) throw new RootCrlError(`${options.id} (${path}) was not issued by ${doc.id}`);
  const serial = normalizeSerial(x.serialNumber) ?? x.serialNumber.toLowerCase();
  const file = readState(options.dataDir, doc.id);
  const already = file.revoked.find((r) => r.serial === serial);
  if (already) throw new RootCrlError(`${options.id} (serial ${serial}) is already revoked since ${new Date(already.revoked_at).toISOString()}`);
  const at = wholeSeconds(options.now ?? new Date()).getTime();
  const entry: RootRevocation = { issuer: options.id, serial, revoked_at: at, reason: REASON_CODES[reasonText as RevocationReason], not_after: Date.parse(x.validTo) };
  const out = await sign(options.dataDir, doc, cert, { number: file.number, revoked: [...file.revoked, entry] }, options);
  return { ...out, serial };
}
