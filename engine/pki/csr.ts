import { createHash } from "node:crypto";
import type { KeyAlgorithm } from "../config/index.js";
import { children, DerError, oidText, readTlv, type Tlv } from "./der.js";
import { IssueError } from "./errors.js";
import { algorithmOfDetails } from "./keys/common.js";
import { checkCsrHere, type CryptoWorkers, type VerifyJob } from "./workers.js";
import { fromPem, OID_NAMES } from "./x509.js";

export interface Sans {
  dns: string[];
  ip: string[];
  uri: string[];
}

/** A CSR whose signature verified: what it asks for, nothing decided yet. */
export interface Csr {
  subject: Record<string, string>;
  /** DER SubjectPublicKeyInfo, copied into the certificate as is. */
  spkiDer: Buffer;
  /** The subjectPublicKey bits. */
  publicKeyBits: Buffer;
  /** The key's identifiers: SKI (SHA-1 of the key bits, RFC 5280 §4.2.1.2 method 1) and the record's base64 SHA-256 of the SPKI. */
  ski: Buffer;
  spkiSha256: string;
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
const OID_SAN = "2.5.29.17";

function bad(message: string, code = "bad_csr"): IssueError {
  return new IssueError(400, code, message, "csr");
}

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`${what} missing`);
  return t;
}

function text(der: Buffer, t: Tlv): string {
  const b = der.subarray(t.content, t.end);
  switch (t.tag) {
    case 0x0c: // UTF8String
      return b.toString("utf8");
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString (treated as Latin-1)
      return b.toString("latin1");
    case 0x1e: // BMPString
      return Buffer.from(b).swap16().toString("utf16le");
    default:
      throw new DerError(`unsupported string type 0x${t.tag.toString(16)} in the subject`);
  }
}

function ipText(b: Buffer): string {
  if (b.length === 4) return [...b].join(".");
  if (b.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
    // The WHATWG URL parser writes IPv6 in its canonical compressed form.
    return new URL(`http://[${groups.join(":")}]`).hostname.slice(1, -1);
  }
  throw new DerError(`IP SAN of ${b.length} bytes`);
}

const EC_CURVES: Record<string, { crv: string; size: number }> = {
  "1.2.840.10045.3.1.7": { crv: "P-256", size: 32 },
  "1.3.132.0.34": { crv: "P-384", size: 48 },
};

/**
 * The curve of an EC key the check imports as the raw point (checkCsrKey in workers.ts), through
 * WebCrypto's import: OpenSSL 3's SPKI decoder costs about twice a
 * signature check, and the JWK import (EC_KEY_set_public_key_affine_coordinates)
 * runs EC_KEY_check_key, whose order check is one more scalar multiplication
 * (650k of its 850k instructions per key under callgrind; the raw import
 * saves 400k of the 2.0M that import + verify cost). The raw import still
 * refuses a point that is not on the curve, and on P-256 and P-384 (cofactor
 * 1) that is the whole validity check. This runs on every request. Anything
 * else goes through the DER decoder.
 */
function ecCurve(der: Buffer, spki: Tlv, bits: Buffer): string | undefined {
  const [alg] = children(der, spki);
  const [oid, params] = children(der, expect(alg, 0x30, "algorithm"));
  const algOid = oidText(der.subarray(expect(oid, 0x06, "algorithm").content, oid!.end));
  if (algOid === "1.2.840.10045.2.1" && params?.tag === 0x06) {
    const curve = EC_CURVES[oidText(der.subarray(params.content, params.end))];
    if (curve && bits.length === 1 + 2 * curve.size && bits[0] === 0x04) return curve.crv;
  }
  return undefined;
}

/** A key's identifiers as Csr carries them (computed on the crypto workers when there are some). */
export function keyIds(spkiDer: Uint8Array, bits: Uint8Array): { ski: Buffer; spkiSha256: string } {
  return { ski: createHash("sha1").update(bits).digest(), spkiSha256: createHash("sha256").update(spkiDer).digest("base64") };
}

/**
 * Parses a PEM PKCS#10 request and verifies its self-signature. Read with a
 * small DER walker rather than asn1-schema: this runs on every issuance
 * request and the schema parser costs more than the signature check.
 */
export async function parseCsr(pem: unknown, workers?: CryptoWorkers): Promise<Csr> {
  if (typeof pem !== "string" || pem.length === 0) throw bad("csr must be a PEM CERTIFICATE REQUEST string");
  const der = fromPem(pem, "CERTIFICATE REQUEST")[0] ?? fromPem(pem, "NEW CERTIFICATE REQUEST")[0];
  if (!der) throw bad("csr is not PEM: expected a -----BEGIN CERTIFICATE REQUEST----- block");
  let info: Tlv, subjectRdns: Tlv[], spki: Tlv, bits: Buffer, attrs: Tlv | undefined, sigOid: string, signature: Buffer;
  try {
    const top = expect(readTlv(der, 0), 0x30, "CertificationRequest");
    if (top.end !== der.length) throw new DerError("trailing bytes after the request");
    const [i, alg, sig] = children(der, top);
    info = expect(i, 0x30, "certificationRequestInfo");
    const [version, subject, pk, a] = children(der, info);
    expect(version, 0x02, "version");
    subjectRdns = children(der, expect(subject, 0x30, "subject"));
    spki = expect(pk, 0x30, "subjectPKInfo");
    const [, keyBits] = children(der, spki);
    if (der[expect(keyBits, 0x03, "subjectPublicKey").content] !== 0) throw new DerError("subjectPublicKey with unused bits");
    bits = der.subarray(keyBits!.content + 1, keyBits!.end);
    attrs = a && a.tag === 0xa0 ? a : undefined;
    const [sigAlgOid] = children(der, expect(alg, 0x30, "signatureAlgorithm"));
    sigOid = oidText(der.subarray(expect(sigAlgOid, 0x06, "signatureAlgorithm OID").content, sigAlgOid!.end));
    const s = expect(sig, 0x03, "signature");
    if (der[s.content] !== 0) throw new DerError("signature with unused bits");
    signature = der.subarray(s.content + 1, s.end);
  } catch (err) {
    throw bad(`csr is not a PKCS#10 certification request (${(err as Error).message})`);
  }
  const spkiDer = der.subarray(spki.start, spki.end);
  // The hash is looked up before the check, which runs only for an accepted algorithm; the key is read either way, so a bad key is named as such.
  const hash = sigOid in SIGNATURE_HASHES ? SIGNATURE_HASHES[sigOid] : undefined;
  let crv: string | undefined;
  try {
    crv = ecCurve(der, spki, bits);
  } catch (err) {
    throw bad(`csr public key cannot be read (${(err as Error).message})`, "key_type");
  }
  const at = (b: Buffer) => b.byteOffset - der.byteOffset;
  const job: VerifyJob = {
    der,
    info: info.start,
    infoEnd: info.end,
    sig: at(signature),
    sigEnd: at(signature) + signature.length,
    spki: spki.start,
    spkiEnd: spki.end,
    bits: at(bits),
    bitsEnd: at(bits) + bits.length,
    ...(crv ? { crv } : {}),
    ...(hash !== undefined ? { hash } : {}),
  };
  // To a worker goes a copy of the request alone (a view of a pooled buffer would send the whole pool).
  const checked = workers ? await workers.verify({ ...job, der: new Uint8Array(der) }) : await checkCsrHere(job);
  if ("keyError" in checked) throw bad(`csr public key cannot be read (${checked.keyError})`, "key_type");
  let keyAlgorithm: KeyAlgorithm;
  try {
    keyAlgorithm = algorithmOfDetails(checked.type, checked);
  } catch (err) {
    throw bad(`csr ${(err as Error).message}`, "key_type");
  }
  if (hash === undefined) throw bad(`csr signature algorithm ${sigOid} is not accepted`, "bad_csr_signature");
  if (!checked.ok) throw bad("csr signature does not verify with the csr's public key (proof of possession failed)", "bad_csr_signature");

  const subject: Record<string, string> = {};
  const sans: Sans = { dns: [], ip: [], uri: [] };
  try {
    for (const rdn of subjectRdns) {
      for (const atv of children(der, expect(rdn, 0x31, "RDN"))) {
        const [oid, value] = children(der, expect(atv, 0x30, "attribute"));
        const type = oidText(der.subarray(expect(oid, 0x06, "attribute type").content, oid!.end));
        if (!value) throw new DerError("attribute without value");
        subject[OID_NAMES[type] ?? type] = text(der, value);
      }
    }
    for (const attr of attrs ? children(der, attrs) : []) {
      const [oid, values] = children(der, expect(attr, 0x30, "attribute"));
      if (oidText(der.subarray(expect(oid, 0x06, "attribute type").content, oid!.end)) !== OID_EXTENSION_REQUEST) continue;
      for (const exts of children(der, expect(values, 0x31, "attribute values"))) {
        for (const e of children(der, expect(exts, 0x30, "extensions"))) {
          const parts = children(der, expect(e, 0x30, "extension"));
          if (oidText(der.subarray(expect(parts[0], 0x06, "extnID").content, parts[0]!.end)) !== OID_SAN) continue;
          const value = expect(parts[parts.length - 1], 0x04, "extnValue");
          const names = readTlv(der, value.content, value.end);
          for (const g of children(der, expect(names, 0x30, "GeneralNames"))) {
            const b = der.subarray(g.content, g.end);
            if (g.tag === 0x82) sans.dns.push(b.toString("latin1"));
            else if (g.tag === 0x87) sans.ip.push(ipText(b));
            else if (g.tag === 0x86) sans.uri.push(b.toString("latin1"));
            else throw new IssueError(400, "san_type", "csr asks for a subjectAltName type other than DNS, IP or URI", "csr");
          }
        }
      }
    }
  } catch (err) {
    if (err instanceof IssueError) throw err;
    throw bad(`csr subject or extension request cannot be read (${(err as Error).message})`);
  }
  const ski = Buffer.from(checked.ski.buffer, checked.ski.byteOffset, checked.ski.byteLength);
  return { subject, spkiDer: Buffer.from(spkiDer), publicKeyBits: Buffer.from(bits), ski, spkiSha256: checked.spkiSha256, keyAlgorithm, sans };
}
