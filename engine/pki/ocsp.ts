import "reflect-metadata";
import * as ocsp from "@peculiar/asn1-ocsp";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn from "@peculiar/asn1-x509";
import { sequence, tlv } from "./der.js";
import type { Signer } from "./signer.js";
import { serialHexOf, signatureAlgorithm, signed } from "./x509.js";

const HASH_OIDS: Record<string, "sha1" | "sha256"> = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.1": "sha256",
};

export interface OcspQuery {
  certId: ocsp.CertID;
  hash: "sha1" | "sha256";
  nameHash: string;
  keyHash: string;
  serial: string;
}

export class OcspMalformed extends Error {}

/** Reads an OCSPRequest (RFC 6960 §4.1); any structural problem is malformedRequest. */
export function parseOcspRequest(der: Uint8Array): { queries: OcspQuery[]; nonce?: ArrayBuffer } {
  let req: ocsp.OCSPRequest;
  try {
    req = AsnConvert.parse(der, ocsp.OCSPRequest);
  } catch (err) {
    throw new OcspMalformed(`not an OCSPRequest (${(err as Error).message})`);
  }
  const list = req.tbsRequest.requestList;
  if (!list.length) throw new OcspMalformed("OCSPRequest asks about no certificate");
  if (list.length > 16) throw new OcspMalformed(`OCSPRequest asks about ${list.length} certificates (at most 16)`);
  const queries = list.map((r) => {
    const hash = HASH_OIDS[r.reqCert.hashAlgorithm.algorithm];
    if (!hash) throw new OcspMalformed(`CertID hash algorithm ${r.reqCert.hashAlgorithm.algorithm} is not supported (SHA-1 or SHA-256)`);
    return {
      certId: r.reqCert,
      hash,
      nameHash: Buffer.from(r.reqCert.issuerNameHash.buffer).toString("hex"),
      keyHash: Buffer.from(r.reqCert.issuerKeyHash.buffer).toString("hex"),
      serial: serialHexOf(r.reqCert.serialNumber),
    };
  });
  const nonce = req.tbsRequest.requestExtensions?.find((e) => e.extnID === ocsp.id_pkix_ocsp_nonce);
  return { queries, nonce: nonce?.extnValue.buffer };
}

export type CertState = { good: true } | { revoked: { at: number; reason: number } } | { unknown: true };

export interface SingleAnswer {
  certId: ocsp.CertID;
  state: CertState;
  thisUpdate: Date;
  nextUpdate: Date;
}

export interface Responder {
  signer: Signer;
  /** SHA-1 of the responder key's subjectPublicKey bits (ResponderID byKey). */
  keyHash: Buffer;
  /** The delegated responder certificate, sent along so clients can check it. */
  certs: Buffer[];
}

/** A signed, successful OCSPResponse. */
export async function signOcspResponse(responder: Responder, answers: SingleAnswer[], producedAt: Date, nonce?: ArrayBuffer): Promise<Buffer> {
  const data = new ocsp.ResponseData({
    responderID: new ocsp.ResponderID({ byKey: new ocsp.KeyHash(new Uint8Array(responder.keyHash).buffer) }),
    producedAt,
    responses: answers.map(
      (a) =>
        new ocsp.SingleResponse({
          certID: a.certId,
          certStatus:
            "good" in a.state
              ? new ocsp.CertStatus({ good: null })
              : "revoked" in a.state
                ? new ocsp.CertStatus({
                    revoked: new ocsp.RevokedInfo({
                      revocationTime: new Date(Math.floor(a.state.revoked.at / 1000) * 1000),
                      ...(a.state.revoked.reason ? { revocationReason: new asn.CRLReason(a.state.revoked.reason) } : {}),
                    }),
                  })
                : new ocsp.CertStatus({ unknown: null }),
          thisUpdate: a.thisUpdate,
          nextUpdate: a.nextUpdate,
        }),
    ),
    ...(nonce ? { responseExtensions: [new asn.Extension({ extnID: ocsp.id_pkix_ocsp_nonce, critical: false, extnValue: new OctetString(nonce) })] } : {}),
  });
  const tbs = Buffer.from(AsnConvert.serialize(data));
  const sigAlg = signatureAlgorithm(responder.signer.algorithm);
  const signature = await responder.signer.sign(tbs);
  // BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature, certs [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
  const basic = responder.certs.length
    ? sequence(tbs, Buffer.from(AsnConvert.serialize(sigAlg)), tlv(0x03, Buffer.from([0]), signature), tlv(0xa0, sequence(...responder.certs)))
    : signed(tbs, sigAlg, signature);
  return Buffer.from(
    AsnConvert.serialize(
      new ocsp.OCSPResponse({
        responseStatus: ocsp.OCSPResponseStatus.successful,
        responseBytes: new ocsp.ResponseBytes({ responseType: ocsp.id_pkix_ocsp_basic, response: new OctetString(new Uint8Array(basic).buffer) }),
      }),
    ),
  );
}

/** An unsigned OCSPResponse carrying only an error status. */
export function ocspError(status: ocsp.OCSPResponseStatus): Buffer {
  return Buffer.from(AsnConvert.serialize(new ocsp.OCSPResponse({ responseStatus: status })));
}

export { OCSPResponseStatus } from "@peculiar/asn1-ocsp";
