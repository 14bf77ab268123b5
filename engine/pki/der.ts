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

export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
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
