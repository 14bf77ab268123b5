import "reflect-metadata";
import { createHash, createPublicKey, X509Certificate } from "node:crypto";
import * as ocsp from "@peculiar/asn1-ocsp";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn from "@peculiar/asn1-x509";
import type { FastifyPluginAsync } from "fastify";
import type { DesiredState } from "../../config/index.js";
import type { LiveCertificate } from "../index.js";
import { checkProfileIssuance } from "./roll.js";

/**
 * Emergency rotation: revoke every live certificate of a pin set's profile
 * (or of any profile), optionally only those of given keys, and reissue the
 * ones whose key is still trusted — for the same key, so pinned clients keep
 * working — with the CRL regenerated and OCSP answering "revoked" before it
 * returns (Authority.revoke does both). The successor is recorded as the
 * predecessor's `superseded_by`, where `viw agent renew` picks it up.
 *
 * On keyCompromise nothing is reissued for the compromised keys: their
 * holders must come with a new key (for a pinned set, the backup key after a
 * cutover pull request), which the agent does when its rotate is refused.
 */

export type RevocationReason = "unspecified" | "keyCompromise" | "cACompromise" | "affiliationChanged" | "superseded" | "cessationOfOperation" | "privilegeWithdrawn";
export const EMERGENCY_REASONS: readonly RevocationReason[] = ["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn"];

/** A live (unrevoked, unexpired) certificate of the engine's store. */
export type LiveCert = LiveCertificate;

/** What emergency rotation needs from the PKI. */
export interface EmergencyPki {
  live(profiles: readonly string[], now: number): LiveCert[];
  revoke(serial: string, reason: RevocationReason): Promise<{ crl_number?: number }>;
  /** A successor for the same key, subject and SANs under the current revision's profile. */
  reissue(cert: LiveCert): Promise<{ serial: string; not_after: string }>;
  supersede(serial: string, successor: string, at: number): void;
  /** What the OCSP responder now answers for the certificate (asked after the revocation, so the report shows what relying parties see). */
  ocspStatus?(cert: LiveCert): Promise<OcspStatus>;
}

export type OcspStatus = "good" | "revoked" | "unknown" | `error: ${string}`;

/** The parts of engine/pki's Authority that emergency rotation uses. */
export interface AuthorityLike {
  revoke(body: unknown, who: "engine"): Promise<{ crl_number?: number }>;
  issueForEngine(profileId: string, publicKey: import("node:crypto").KeyObject, names: { cn?: string; dns?: string[]; ip?: string[]; uri?: string[] }): Promise<{ serial: string; not_after: string }>;
  readonly store: { supersede(serial: string, successor: string, revokeAfter: number): void; live(profiles: readonly string[], now: number): LiveCert[] };
  ocsp(der: Uint8Array): Promise<{ status: number; body: Buffer; error?: string }>;
  chain(issuerId: string): string;
}

/** EmergencyPki over the engine's Authority (PkiService#authority). `dataDir` is no longer used (the store is read through the Authority); kept so the daemon's call stays valid. */
export function authorityPki(authority: AuthorityLike): EmergencyPki {
  return {
    live: (profiles, now) => authority.store.live(profiles, now),
    revoke: (serial, reason) => authority.revoke({ serial, reason }, "engine"),
    reissue: (c) => {
      const key = createPublicKey({ key: new X509Certificate(c.der).publicKey.export({ type: "spki", format: "der" }), format: "der", type: "spki" });
      return authority.issueForEngine(c.profile, key, { ...(c.subject.CN ? { cn: c.subject.CN } : {}), dns: c.sans.dns, ip: c.sans.ip, uri: c.sans.uri });
    },
    supersede: (serial, successor, at) => authority.store.supersede(serial, successor, at),
    ocspStatus: async (c): Promise<OcspStatus> => {
      const issuerPem = authority.chain(c.issuer).match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/)?.[0];
      if (!issuerPem) return `error: no certificate for issuer ${c.issuer}`;
      const r = await authority.ocsp(ocspRequest(c.der, Buffer.from(new X509Certificate(issuerPem).raw)));
      return r.error ? `error: ${r.error}` : ocspAnswer(r.body);
    },
  };
}

const SHA1 = "1.3.14.3.2.26";

/** An RFC 6960 OCSPRequest for one certificate (SHA-1 CertID, as openssl ocsp sends by default), without a nonce. */
export function ocspRequest(leafDer: Uint8Array, issuerDer: Uint8Array): Buffer {
  const leaf = AsnConvert.parse(leafDer, asn.Certificate).tbsCertificate;
  const issuer = AsnConvert.parse(issuerDer, asn.Certificate).tbsCertificate;
  const sha1 = (b: ArrayBuffer | Uint8Array) => new OctetString(createHash("sha1").update(new Uint8Array(b)).digest());
  const certId = new ocsp.CertID({
    hashAlgorithm: new asn.AlgorithmIdentifier({ algorithm: SHA1, parameters: null }),
    issuerNameHash: sha1(AsnConvert.serialize(leaf.issuer)),
    issuerKeyHash: sha1(issuer.subjectPublicKeyInfo.subjectPublicKey),
    serialNumber: leaf.serialNumber,
  });
  return Buffer.from(AsnConvert.serialize(new ocsp.OCSPRequest({ tbsRequest: new ocsp.TBSRequest({ requestList: [new ocsp.Request({ reqCert: certId })] }) })));
}

/** The status of the single certificate an OCSPResponse answers for. The signature is not checked: this reads our own responder's answer in-process. */
export function ocspAnswer(der: Uint8Array): OcspStatus {
  const res = AsnConvert.parse(der, ocsp.OCSPResponse);
  if (res.responseStatus !== ocsp.OCSPResponseStatus.successful || !res.responseBytes) return `error: OCSP response status ${ocsp.OCSPResponseStatus[res.responseStatus]}`;
  const basic = AsnConvert.parse(res.responseBytes.response.buffer, ocsp.BasicOCSPResponse);
  const st = basic.tbsResponseData.responses[0]?.certStatus;
  if (!st) return "error: empty OCSP response";
  return st.revoked ? "revoked" : st.unknown !== undefined ? "unknown" : "good";
}

export interface EmergencyRequest {
  pinSet?: string;
  profile?: string;
  /** Only certificates of these keys (pin-sha256), e.g. the compromised one. */
  pins?: string[];
  reason: RevocationReason;
  /** Reissue for the same key (default: yes, unless the reason is keyCompromise). */
  reissue?: boolean;
  dryRun?: boolean;
}

export interface EmergencyReport {
  profile: string;
  pin_set?: string;
  reason: RevocationReason;
  dry_run: boolean;
  revoked: { serial: string; spki_sha256: string; successor?: string; ocsp?: OcspStatus }[];
  /** Revoked without a successor, and why. */
  not_reissued: { serial: string; spki_sha256: string; why: string; ocsp?: OcspStatus }[];
  failed: { serial: string; error: string }[];
  crl_numbers: Record<string, number>;
}

/** A request the engine cannot act on; `field` names the part that is wrong. */
export class EmergencyError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export async function emergencyRotate(state: DesiredState, req: EmergencyRequest, pki: EmergencyPki, now: number = Date.now()): Promise<EmergencyReport> {
  if ((req.pinSet === undefined) === (req.profile === undefined)) throw new EmergencyError("give exactly one of pin_set or profile", "pin_set");
  if (!EMERGENCY_REASONS.includes(req.reason)) throw new EmergencyError(`reason must be one of ${EMERGENCY_REASONS.join(", ")}`, "reason");
  let profileId: string;
  if (req.pinSet !== undefined) {
    const set = state.pinSets.get(req.pinSet);
    if (!set) throw new EmergencyError(`no pin set ${JSON.stringify(req.pinSet)} in revision ${state.revision}`, "pin_set");
    profileId = set.profile;
  } else profileId = req.profile!;
  const profile = state.profiles.get(profileId);
  if (!profile) throw new EmergencyError(`no profile ${JSON.stringify(profileId)} in revision ${state.revision}`, "profile");
  const only = req.pins && req.pins.length ? new Set(req.pins) : undefined;
  const reissue = req.reissue ?? req.reason !== "keyCompromise";
  const report: EmergencyReport = { profile: profileId, ...(req.pinSet ? { pin_set: req.pinSet } : {}), reason: req.reason, dry_run: !!req.dryRun, revoked: [], not_reissued: [], failed: [], crl_numbers: {} };

  for (const cert of pki.live([profileId], now)) {
    if (only && !only.has(cert.spki_sha256)) continue;
    let why: string | undefined;
    if (!reissue) why = req.reason === "keyCompromise" ? "key compromised: its holder must present a new key" : "reissue not requested";
    else {
      const refusal = checkProfileIssuance(state.pinSets, profile, cert.spki_sha256, now);
      if (refusal) why = refusal.message;
    }
    if (req.dryRun) {
      if (why) report.not_reissued.push({ serial: cert.serial, spki_sha256: cert.spki_sha256, why });
      else report.revoked.push({ serial: cert.serial, spki_sha256: cert.spki_sha256, successor: "(dry run)" });
      continue;
    }
    try {
      let successor: string | undefined;
      if (!why) {
        try {
          successor = (await pki.reissue(cert)).serial;
          pki.supersede(cert.serial, successor, now);
        } catch (err) {
          why = `reissue failed: ${(err as Error).message}`;
        }
      }
      const r = await pki.revoke(cert.serial, req.reason);
      if (r.crl_number !== undefined) report.crl_numbers[cert.issuer] = Math.max(report.crl_numbers[cert.issuer] ?? 0, r.crl_number);
      let status: OcspStatus | undefined;
      if (pki.ocspStatus) status = await pki.ocspStatus(cert).catch((err: Error): OcspStatus => `error: ${err.message}`);
      const ocspField = status ? { ocsp: status } : {};
      if (why) report.not_reissued.push({ serial: cert.serial, spki_sha256: cert.spki_sha256, why, ...ocspField });
      else report.revoked.push({ serial: cert.serial, spki_sha256: cert.spki_sha256, successor: successor!, ...ocspField });
    } catch (err) {
      report.failed.push({ serial: cert.serial, error: (err as Error).message });
    }
  }
  return report;
}

/**
 * Admin-port routes (loopback): POST /v1/pins/:id/emergency-rotate and
 * POST /v1/profiles/:id/emergency-rotate, body {reason, pins?, reissue?, dry_run?}.
 */
export function emergencyRoutes(deps: { state: () => DesiredState | undefined; pki: EmergencyPki }): FastifyPluginAsync {
  const handler = (kind: "pinSet" | "profile") => async (request: { params: unknown; body: unknown }, reply: { code(n: number): { send(b: unknown): unknown } }) => {
    const state = deps.state();
    if (!state) return reply.code(503).send({ error: { code: "not_ready", message: "no revision applied yet" } });
    const id = (request.params as { id: string }).id;
    const body = (request.body ?? {}) as Record<string, unknown>;
    if (typeof body !== "object" || Array.isArray(body)) return reply.code(400).send({ error: { code: "bad_request", message: "the body must be a JSON object" } });
    const pins = body.pins;
    if (pins !== undefined && (!Array.isArray(pins) || pins.some((p) => typeof p !== "string"))) return reply.code(400).send({ error: { code: "bad_request", message: "pins must be an array of pin-sha256 strings", field: "pins" } });
    if (body.reissue !== undefined && typeof body.reissue !== "boolean") return reply.code(400).send({ error: { code: "bad_request", message: "reissue must be a boolean", field: "reissue" } });
    try {
      return await emergencyRotate(state, { [kind]: id, reason: body.reason as RevocationReason, ...(pins ? { pins: pins as string[] } : {}), ...(body.reissue !== undefined ? { reissue: body.reissue as boolean } : {}), dryRun: body.dry_run === true }, deps.pki);
    } catch (err) {
      if (!(err instanceof EmergencyError)) throw err;
      return reply.code(err.field === "reason" ? 400 : 404).send({ error: { code: err.field === "reason" ? "bad_reason" : "not_found", message: err.message, field: err.field } });
    }
  };
  return async (app) => {
    app.post("/v1/pins/:id/emergency-rotate", handler("pinSet"));
    app.post("/v1/profiles/:id/emergency-rotate", handler("profile"));
  };
}

/** A rotation the daemon refused or could not be asked for: `status` is the HTTP status (0: unreachable). */
export class EmergencyRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field?: string,
  ) {
    super(message);
  }
}

/**
 * Asks a running daemon's admin port (`viw rotate`) for an emergency rotation
 * through the routes above: the daemon holds the CA keys, the store and the
 * applied revision, so the command only sends the request.
 */
export async function requestEmergencyRotation(admin: string, req: EmergencyRequest): Promise<EmergencyReport> {
  const path = req.pinSet !== undefined ? `/v1/pins/${encodeURIComponent(req.pinSet)}/emergency-rotate` : `/v1/profiles/${encodeURIComponent(req.profile ?? "")}/emergency-rotate`;
  const url = new URL(path, admin);
  const body = { reason: req.reason, ...(req.pins?.length ? { pins: req.pins } : {}), ...(req.reissue !== undefined ? { reissue: req.reissue } : {}), dry_run: !!req.dryRun };
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause;
    throw new EmergencyRequestError(`cannot reach the daemon's admin port at ${url.origin}: ${cause?.message ?? (err as Error).message}`, 0);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new EmergencyRequestError(`${url.origin} answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`, res.status);
  }
  if (!res.ok) {
    const e = (json as { error?: { message?: string; field?: string } }).error;
    throw new EmergencyRequestError(e?.message ?? `${url.origin} answered ${res.status}`, res.status, e?.field);
  }
  return json as EmergencyReport;
}
