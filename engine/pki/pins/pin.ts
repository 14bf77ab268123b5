import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";

/**
 * RFC 7469 pin-sha256: base64(SHA-256(DER SubjectPublicKeyInfo)).
 *
 * The digest is taken over the SubjectPublicKeyInfo bytes exactly as the
 * certificate or CSR carries them, the way a pinning client computes it. A
 * parse-and-re-encode (node's KeyObject export, asn1-schema) may normalise an
 * encoding (explicit curve parameters, a compressed point, a missing RSA NULL)
 * and so produce a pin no client would ever see; hence the few lines of DER
 * walking below instead of a library round trip.
 */

/** What a file held. */
export type PinSource = "certificate" | "csr" | "public-key" | "private-key";

export interface PinResult {
  pin: string;
  source: PinSource;
  /** The DER SubjectPublicKeyInfo the pin is the digest of. */
  spki: Buffer;
}

/** A file that has no public key we can pin; the message says what was found. */
export class PinError extends Error {}

/** pin-sha256 of a DER SubjectPublicKeyInfo. */
export function pinOfSpki(spkiDer: Uint8Array): string {
  return createHash("sha256").update(spkiDer).digest("base64");
}

/** pin-sha256 of a public (or private) key object. */
export function pinOfKey(key: KeyObject): string {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return pinOfSpki(pub.export({ type: "spki", format: "der" }));
}

/** A pin as `viw pin` prints it and pins/*.yaml holds it: 32 bytes, canonical base64. */
export function isPin(v: unknown): v is string {
  if (typeof v !== "string" || v.length !== 44) return false;
  const b = Buffer.from(v, "base64");
  return b.length === 32 && b.toString("base64") === v;
}

/** A short form for messages: the first 8 characters and an ellipsis. */
export function shortPin(pin: string): string {
  return pin.length > 12 ? `${pin.slice(0, 8)}…` : pin;
}

interface Tlv {
  tag: number;
  start: number;
  body: number;
  end: number;
}

function readTlv(der: Uint8Array, at: number): Tlv {
  if (at + 2 > der.length) throw new PinError("truncated DER");
  const tag = der[at]!;
  if ((tag & 0x1f) === 0x1f) throw new PinError("unexpected high-tag-number DER element");
  let len = der[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || body + n > der.length) throw new PinError("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[body + i]!;
    body += n;
  }
  const end = body + len;
  if (end > der.length) throw new PinError("truncated DER");
  return { tag, start: at, body, end };
}

/** The children of a constructed element. */
function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const t = readTlv(der, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

const SEQ = 0x30;

/** Certificate ::= SEQ { tbs SEQ { [0] version?, serial, sigAlg, issuer, validity, subject, SPKI, ... }, ... } */
function spkiOfCertificate(der: Uint8Array): Buffer {
  const outer = readTlv(der, 0);
  if (outer.tag !== SEQ || outer.end !== der.length) throw new PinError("not a DER certificate");
  const tbs = children(der, outer)[0];
  if (!tbs || tbs.tag !== SEQ) throw new PinError("not a DER certificate");
  const fields = children(der, tbs);
  const skip = fields[0]?.tag === 0xa0 ? 1 : 0;
  const spki = fields[skip + 5];
  if (!spki || spki.tag !== SEQ || fields.length < skip + 6) throw new PinError("not a DER certificate");
  // A certificate's tbs starts with version/serial and has at least 6 fields; a CSR's info has 3-4.
  const sigAlg = fields[skip + 1];
  if (!sigAlg || sigAlg.tag !== SEQ) throw new PinError("not a DER certificate");
  return checkedSpki(der, spki);
}

/** CertificationRequest ::= SEQ { info SEQ { version INTEGER, subject Name, SPKI, [0] attributes }, ... } */
function spkiOfCsr(der: Uint8Array): Buffer {
  const outer = readTlv(der, 0);
  if (outer.tag !== SEQ || outer.end !== der.length) throw new PinError("not a DER certification request");
  const info = children(der, outer)[0];
  if (!info || info.tag !== SEQ) throw new PinError("not a DER certification request");
  const fields = children(der, info);
  if (fields[0]?.tag !== 0x02 || fields[1]?.tag !== SEQ || fields[2]?.tag !== SEQ) throw new PinError("not a DER certification request");
  return checkedSpki(der, fields[2]);
}

/** The SPKI bytes, after making sure they are a public key node can read (so garbage is not pinned). */
function checkedSpki(der: Uint8Array, spki: Tlv): Buffer {
  const bytes = Buffer.from(der.subarray(spki.start, spki.end));
  try {
    createPublicKey({ key: bytes, format: "der", type: "spki" });
  } catch (err) {
    throw new PinError(`the SubjectPublicKeyInfo cannot be read as a public key (${(err as Error).message})`);
  }
  return bytes;
}

const PEM = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** The pin of the first certificate, CSR or key in PEM or DER bytes. */
export function pinOf(input: Uint8Array | string): PinResult {
  const buf = typeof input === "string" ? Buffer.from(input, "utf8") : Buffer.from(input);
  const text = buf.toString("latin1");
  if (text.includes("-----BEGIN ")) {
    const labels: string[] = [];
    for (const m of text.matchAll(PEM)) {
      const label = m[1]!;
      labels.push(label);
      const der = Buffer.from(m[2]!.replace(/[^A-Za-z0-9+/=]/g, ""), "base64");
      switch (label) {
        case "CERTIFICATE":
        case "TRUSTED CERTIFICATE":
          return result(spkiOfCertificate(der), "certificate");
        case "CERTIFICATE REQUEST":
        case "NEW CERTIFICATE REQUEST":
          return result(spkiOfCsr(der), "csr");
        case "PUBLIC KEY":
          return result(checkedSpki(der, readTlv(der, 0)), "public-key");
        case "RSA PUBLIC KEY":
          return fromKey(() => createPublicKey({ key: der, format: "der", type: "pkcs1" }), "public-key");
        case "PRIVATE KEY":
        case "EC PRIVATE KEY":
        case "RSA PRIVATE KEY":
          // The pin of the key a gateway holds; only its public half is read out.
          return fromKey(() => createPublicKey(m[0]), "private-key");
      }
    }
    throw new PinError(labels.length ? `no certificate, CSR or key in the PEM (found ${labels.join(", ")})` : "malformed PEM: no complete -----BEGIN/END----- block");
  }
  const tries: [() => PinResult, string][] = [
    [() => result(spkiOfCertificate(buf), "certificate"), "certificate"],
    [() => result(spkiOfCsr(buf), "csr"), "CSR"],
    [() => result(checkedSpki(buf, spkiRoot(buf)), "public-key"), "public key"],
    [() => fromKey(() => createPublicKey(createPrivateKey({ key: buf, format: "der", type: "pkcs8" })), "private-key"), "private key"],
  ];
  for (const [f] of tries) {
    try {
      return f();
    } catch {
      /* next form */
    }
  }
  throw new PinError("not a certificate, CSR or key in PEM or DER");
}

function spkiRoot(der: Buffer): Tlv {
  const t = readTlv(der, 0);
  if (t.tag !== SEQ || t.end !== der.length) throw new PinError("not a DER public key");
  return t;
}

function result(spki: Buffer, source: PinSource): PinResult {
  return { pin: pinOfSpki(spki), source, spki };
}

function fromKey(make: () => KeyObject, source: PinSource): PinResult {
  let key: KeyObject;
  try {
    key = make();
  } catch (err) {
    throw new PinError(`the key cannot be read (${(err as Error).message})`);
  }
  const spki = key.export({ type: "spki", format: "der" });
  return { pin: pinOfSpki(spki), source, spki };
}
