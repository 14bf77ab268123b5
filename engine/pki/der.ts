/**
 * The few DER encodings the hot paths need by hand: ECDSA signature
 * conversion (PKCS#11 and WebCrypto give raw r‖s, X.509 wants DER) and the
 * CRL entry list, where building 100,000 asn1-schema objects would be far
 * slower than writing bytes.
 */

export function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One allocation per TLV (header and content written into it): certificates are built from many small ones. */
export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  let len = 0;
  for (const c of content) len += c.length;
  const lenBytes = len < 0x80 ? 0 : len < 0x100 ? 1 : len < 0x10000 ? 2 : len < 0x1000000 ? 3 : 4;
  const out = Buffer.allocUnsafe(2 + lenBytes + len);
  out[0] = tag;
  if (lenBytes === 0) out[1] = len;
  else {
    out[1] = 0x80 | lenBytes;
    for (let i = 0; i < lenBytes; i++) out[2 + i] = (len >>> (8 * (lenBytes - 1 - i))) & 0xff;
  }
  let o = 2 + lenBytes;
  for (const c of content) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export const sequence = (...content: Uint8Array[]): Buffer => tlv(0x30, ...content);

/** A non-negative INTEGER from big-endian magnitude bytes. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = Buffer.from(magnitude.subarray(i));
  return tlv(0x02, trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5), whole seconds. */
export function derTime(d: Date): Buffer {
  const iso = d.toISOString();
  const y = d.getUTCFullYear();
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "");
  if (y < 2050) return tlv(0x17, Buffer.from(digits.slice(2) + "Z", "ascii"));
  return tlv(0x18, Buffer.from(digits + "Z", "ascii"));
}

/** Raw r‖s (as PKCS#11 CKM_ECDSA returns) to the DER ECDSA-Sig-Value. */
export function ecdsaRawToDer(raw: Uint8Array): Buffer {
  const half = raw.length / 2;
  return sequence(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
}

/** One TLV of a DER buffer: its tag, where its content starts and where it ends. */
export interface Tlv {
  tag: number;
  start: number;
  content: number;
  end: number;
}

export class DerError extends Error {}

/** Reads the TLV at `offset`, refusing indefinite or overlong lengths and anything past `limit`. */
export function readTlv(buf: Uint8Array, offset: number, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError("truncated DER");
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte DER tags are not supported");
  let len = buf[offset + 1]!;
  let content = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError("bad DER length");
    if (content + n > limit) throw new DerError("truncated DER");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[content + i]!;
    content += n;
  }
  const end = content + len;
  if (end > limit) throw new DerError("truncated DER");
  return { tag, start: offset, content, end };
}

/** The TLVs directly inside a constructed TLV. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let o = parent.content; o < parent.end; ) {
    const t = readTlv(buf, o, parent.end);
    out.push(t);
    o = t.end;
  }
  return out;
}

/** Dotted text of an OBJECT IDENTIFIER's content bytes. */
export function oidText(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new DerError("empty OID");
  const parts: number[] = [];
  let v = 0;
  for (const b of bytes) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

/** OBJECT IDENTIFIER TLV of dotted text. */
export function oidDer(text: string): Buffer {
  const n = text.split(".").map(Number);
  const bytes: number[] = [];
  const base128 = (v: number) => {
    const out = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) out.unshift((v & 0x7f) | 0x80);
    bytes.push(...out);
  };
  base128(n[0]! * 40 + n[1]!);
  for (const x of n.slice(2)) base128(x);
  return tlv(0x06, Buffer.from(bytes));
}

/** The subjectPublicKey bits of a DER SubjectPublicKeyInfo (what key identifiers hash). */
export function publicKeyBits(spkiDer: Uint8Array): Buffer {
  const spki = readTlv(spkiDer, 0);
  const [, bits] = children(spkiDer, spki);
  if (!bits || bits.tag !== 0x03) throw new DerError("SubjectPublicKeyInfo without a BIT STRING");
  return Buffer.from(spkiDer.subarray(bits.content + 1, bits.end));
}
