import "reflect-metadata";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn from "@peculiar/asn1-x509";
import { derTime, sequence, tlv, unsignedInteger } from "./der.js";
import type { IssuerCert } from "./issuer.js";
import type { Signer } from "./signer.js";
import { ext, extensions, signatureAlgorithm, signed } from "./x509.js";

// Extensions ::= SEQUENCE { Extension { OID 2.5.29.21 (reasonCode), OCTET STRING { ENUMERATED n } } }
const REASON_EXT = (reason: number) => Buffer.from([0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, reason]);

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
  const entries: Buffer[] = [];
  for (const [serial, at, reason] of input.revoked) {
    const parts = [unsignedInteger(Buffer.from(serial, "hex")), derTime(new Date(Math.floor(at / 1000) * 1000))];
    // RFC 5280 §5.3.1: omit reasonCode rather than write unspecified.
    if (reason !== 0) parts.push(REASON_EXT(reason));
    entries.push(sequence(...parts));
  }
  const crlExts = new asn.Extensions([extensions.authorityKeyIdentifier(input.issuer.ski), ext(asn.id_ce_cRLNumber, new asn.CRLNumber(input.number))]);
  const tbs = sequence(
    Buffer.from([0x02, 0x01, 0x01]), // version v2
    Buffer.from(AsnConvert.serialize(sigAlg)),
    Buffer.from(AsnConvert.serialize(input.issuer.subject)),
    derTime(input.thisUpdate),
    derTime(input.nextUpdate),
    ...(entries.length ? [sequence(Buffer.concat(entries))] : []),
    tlv(0xa0, Buffer.from(AsnConvert.serialize(crlExts))),
  );
  return signed(tbs, sigAlg, await input.signer.sign(tbs));
}
