import "reflect-metadata";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn from "@peculiar/asn1-x509";
import { derTime, sequence, tlv } from "./der.js";
import type { IssuerCert } from "./issuer.js";
import type { Signer } from "./signer.js";
import { ext, extensions, signatureAlgorithm, signed } from "./x509.js";

// Extensions ::= SEQUENCE { Extension { OID 2.5.29.21 (reasonCode), OCTET STRING { ENUMERATED n } } }
const REASON_EXT = [0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01];

/**
 * The revokedCertificates entries, written into one buffer: each is
 * SEQUENCE { INTEGER serial, Time, [Extensions { reasonCode }] }, under 128
 * bytes, so every length is one byte.
 */
function revokedEntries(revoked: CrlInput["revoked"]): Buffer {
  const out = Buffer.allocUnsafe(revoked.length * 64);
  const times = new Map<number, Buffer>();
  let o = 0;
  for (const [serial, at, reason] of revoked) {
    const second = Math.floor(at / 1000) * 1000;
    let time = times.get(second);
    if (!time) times.set(second, (time = derTime(new Date(second))));
    const n = serial.length >> 1;
    if (n === 0 || n > 20) throw new Error(`serial ${serial} cannot be in a CRL`);
    const pad = parseInt(serial.slice(0, 2), 16) & 0x80 ? 1 : 0;
    // RFC 5280 §5.3.1: omit reasonCode rather than write unspecified.
    const ext = reason !== 0 ? REASON_EXT.length + 1 : 0;
    out[o++] = 0x30;
    out[o++] = 2 + pad + n + time.length + ext;
    out[o++] = 0x02;
    out[o++] = pad + n;
    if (pad) out[o++] = 0;
    o += out.write(serial, o, n, "hex");
    o += time.copy(out, o);
    if (ext) {
      for (const b of REASON_EXT) out[o++] = b;
      out[o++] = reason;
    }
  }
  return out.subarray(0, o);
}

export interface CrlInput {
  issuer: IssuerCert;
  signer: Signer;
  /** [serial hex, revoked at (ms), RFC 5280 reason code] */
  revoked: readonly (readonly [string, number, number])[];
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
}

/**
 * A v2 CRL (RFC 5280 §5). The revoked-certificates list is written as bytes
 * rather than 100,000 asn1-schema objects: that part is the whole cost of a
 * large CRL and its encoding is fixed and simple; the rest (Name, extensions,
 * algorithm) goes through @peculiar/asn1-x509.
 */
export async function buildCrl(input: CrlInput): Promise<Buffer> {
  const sigAlg = signatureAlgorithm(input.signer.algorithm);
  const entries = revokedEntries(input.revoked);
  const crlExts = new asn.Extensions([extensions.authorityKeyIdentifier(input.issuer.ski), ext(asn.id_ce_cRLNumber, new asn.CRLNumber(input.number))]);
  const tbs = sequence(
    Buffer.from([0x02, 0x01, 0x01]), // version v2
    Buffer.from(AsnConvert.serialize(sigAlg)),
    Buffer.from(AsnConvert.serialize(input.issuer.subject)),
    derTime(input.thisUpdate),
    derTime(input.nextUpdate),
    ...(entries.length ? [sequence(entries)] : []),
    tlv(0xa0, Buffer.from(AsnConvert.serialize(crlExts))),
  );
  return signed(tbs, sigAlg, await input.signer.sign(tbs));
}
