import "reflect-metadata";
import { createHash, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import type { DesiredState, IssuanceClient, IssuanceOperation, PinSetDoc, ProfileDoc } from "../config/index.js";
import { parseDuration } from "../config/index.js";
import { buildCrl } from "./crl.js";
import { keyIds, parseCsr, type Csr, type Sans } from "./csr.js";
import { IssueError } from "./errors.js";
import { extDer, signLeaf } from "./issue.js";
import { certPath, IssuerCert, type Issuer } from "./issuer.js";
import { publicKeyBits } from "./der.js";
import { KeyError, softwareKeyOf, softwareSigner } from "./keys/index.js";
import { algorithmOf } from "./keys/common.js";
import { OCSPResponseStatus, OcspMalformed, ocspError, parseOcspRequest, signOcspResponse, type CertState, type Responder } from "./ocsp.js";
import { checkClientNames, enforceProfile, type Decision } from "./profile.js";
import { checkProfileIssuance } from "./pins/roll.js";
import type { KeyProvider } from "./signer.js";
import { CertStore, REASON_CODES, type CertRecord, type RevocationReason } from "./store.js";
import { CryptoWorkers } from "./workers.js";
import { extensions, fromPem, normalizeSerial, spkiOf, toPem, wholeSeconds } from "./x509.js";

/** Who is calling the issuance API, from its verified client certificate. */
export interface ClientIdentity {
  issuer: string;
  cn?: string;
  dns: string[];
  uri: string[];
  serial: string;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
const SILENT: Logger = { info() {}, warn() {}, error() {} };

/** What one revision makes of the PKI: built whole in prepare, swapped in by commit. */
export interface Runtime {
  revision: string;
  issuers: ReadonlyMap<string, Issuer>;
  profiles: ReadonlyMap<string, ProfileDoc>;
  clients: readonly IssuanceClient[];
  responders: ReadonlyMap<string, Responder>;
  pinSets: ReadonlyMap<string, PinSetDoc>;
}

export interface IssuedCertificate {
  certificate: string;
  chain: string[];
  serial: string;
  not_before: string;
  not_after: string;
  spki_sha256: string;
  profile: string;
  revision: string;
}

export interface CrlState {
  der: Buffer;
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
}

interface CachedOcsp {
  der: Buffer;
  thisUpdate: Date;
  nextUpdate: Date;
  etag: string;
  serial: string;
}

export interface AuthorityOptions {
  dataDir: string;
  log?: Logger;
  now?: () => Date;
  /** How long a rotated certificate stays valid next to its successor (default 24h). */
  rotateOverlap?: string;
  /** Lifetime of delegated OCSP responder certificates (default 30d, capped by the issuer). */
  responderValidity?: string;
  ocspCacheSize?: number;
  /**
   * Threads for the issuance API's CSR checks and software-key leaf
   * signatures (workers.ts); 0 does them on the event loop. Default: one per
   * core up to 4, none on a single core.
   */
  cryptoWorkers?: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

function needString(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== "string" || v.length === 0) throw new IssueError(400, "bad_request", `${field} is required (a string)`, field);
  return v;
}

/**
 * The certificate authority of the engine: issuance under profiles and
 * client authorisation, rotation, revocation, CRLs and OCSP answers, all
 * against the runtime of the applied revision and the certificate store.
 */
export class Authority {
  runtime?: Runtime;
  readonly store: CertStore;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly crls = new Map<string, CrlState>();
  private readonly crlBuilds = new Map<string, Promise<CrlState>>();
  private readonly ocspCache = new Map<string, CachedOcsp>();
  private readonly ocspBySerial = new Map<string, Set<string>>();
  /** Nonce-less request bytes (base64) -> cache key: repeated RFC 5019 requests skip the ASN.1 parse. */
  private readonly ocspByRequest = new Map<string, string>();

  private readonly workers?: CryptoWorkers;

  constructor(private readonly options: AuthorityOptions) {
    this.store = new CertStore(options.dataDir);
    // With the crypto on workers the event loop keeps about a quarter of the work (test/bench/pki-instructions.mjs:
    // 0.67M of 2.46M instructions per certificate), so one worker per core, not per spare core, lets the crypto
    // use every core; a single core gains nothing from the hop.
    const cores = availableParallelism();
    const threads = options.cryptoWorkers ?? (cores >= 2 ? Math.min(cores, 4) : 0);
    if (threads > 0) this.workers = new CryptoWorkers(threads);
    this.log = options.log ?? SILENT;
    this.now = options.now ?? (() => new Date());
  }

  // ---- revisions -------------------------------------------------------

  /** Builds the runtime of `state` without touching what serves now; throws naming the issuer that cannot run. */
  async build(state: DesiredState, keys: KeyProvider, previous?: Runtime): Promise<Runtime> {
    const certs = new Map<string, IssuerCert>();
    for (const doc of state.issuers.values()) {
      const cert = IssuerCert.read(this.options.dataDir, doc.id);
      if (!cert) throw new BuildError(doc.id, `issuer ${doc.id} has no certificate at ${certPath(this.options.dataDir, doc.id)} (run \`viw ca init\`)`);
      certs.set(doc.id, cert);
    }
    const issuers = new Map<string, Issuer>();
    for (const doc of state.issuers.values()) {
      const cert = certs.get(doc.id)!;
      const chain: IssuerCert[] = [cert];
      for (let p = doc.parent; p; p = state.issuers.get(p)?.parent) chain.push(certs.get(p)!);
      let signer;
      if (!doc.offline && doc.parent) {
        const prev = previous?.issuers.get(doc.id);
        if (prev?.signer && prev.doc.key.ref === doc.key.ref && prev.cert.der.equals(cert.der)) signer = prev.signer;
        else {
          try {
            signer = await keys.open(doc.key.ref);
          } catch (err) {
            throw new BuildError(doc.id, `issuer ${doc.id}: its key ${doc.key.ref.split("?")[0]} cannot be opened: ${(err as Error).message}`);
          }
          const certKey = createPublicKey({ key: Buffer.from(cert.x509.publicKey.export({ type: "spki", format: "der" })), format: "der", type: "spki" });
          if (!certKey.equals(signer.publicKey)) throw new BuildError(doc.id, `issuer ${doc.id}: key ${doc.key.ref.split("?")[0]} does not match its certificate`);
        }
      }
      const soft = signer && this.workers && softwareKeyOf(signer);
      const leafSigner = soft ? this.workers!.signer(signer!, soft.key, soft.hash) : signer;
      issuers.set(doc.id, { id: doc.id, doc, cert, chain, chainPem: Object.freeze(chain.map((c) => c.pem)), ...(signer ? { signer, leafSigner } : {}) });
    }
    const responders = new Map<string, Responder>();
    for (const issuer of issuers.values()) {
      if (!issuer.signer) continue;
      const prev = previous?.responders.get(issuer.id);
      const prevIssuer = previous?.issuers.get(issuer.id);
      if (prev && prevIssuer?.cert.der.equals(issuer.cert.der) && prevIssuer.doc.ocsp?.responder === issuer.doc.ocsp?.responder) responders.set(issuer.id, prev);
      else responders.set(issuer.id, await this.responderFor(issuer));
    }
    return { revision: state.revision, issuers, profiles: state.profiles, clients: state.issuanceClients, responders, pinSets: state.pinSets };
  }

  /** Swaps in a built runtime; a changed issuer certificate gets a fresh CRL. */
  swap(rt: Runtime): void {
    const old = this.runtime;
    this.runtime = rt;
    for (const issuer of rt.issuers.values()) {
      if (!issuer.signer) continue;
      if (!this.crls.has(issuer.id) || !old?.issuers.get(issuer.id)?.cert.der.equals(issuer.cert.der)) void this.refreshCrl(issuer.id).catch(() => {});
    }
    this.ocspCache.clear();
    this.ocspBySerial.clear();
    this.ocspByRequest.clear();
    this.log.info({ revision: rt.revision, issuers: [...rt.issuers.keys()] }, "pki: revision applied");
  }

  private need(): Runtime {
    if (!this.runtime) throw new IssueError(503, "not_ready", "the PKI has no applied revision yet");
    return this.runtime;
  }

  // ---- delegated OCSP responders --------------------------------------

  /**
   * The OCSP signer of an issuer: the issuer itself, or (responder:
   * delegated) an engine-held key with a short-lived id-kp-OCSPSigning +
   * ocsp-nocheck certificate, reissued when a third of its life is left. A
   * delegated responder keeps OCSP signing when the issuer's HSM is away.
   */
  private async responderFor(issuer: Issuer): Promise<Responder> {
    if (issuer.doc.ocsp?.responder !== "delegated") {
      const bits = Buffer.from(issuer.cert.cert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey);
      return { signer: issuer.signer!, keyHash: createHash("sha1").update(bits).digest(), certs: [] };
    }
    const keyFile = join(this.options.dataDir, "keys", `ocsp-${issuer.id}.key`);
    const crtFile = certPath(this.options.dataDir, `ocsp-${issuer.id}`);
    let key: KeyObject;
    try {
      key = (await import("node:crypto")).createPrivateKey(readFileSync(keyFile, "utf8"));
    } catch {
      key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
      mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
      writeFileSync(keyFile, key.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    }
    const signer = softwareSigner(key);
    const now = this.now();
    let der: Buffer | undefined;
    try {
      const existing = fromPem(readFileSync(crtFile, "utf8"))[0];
      if (existing) {
        const x = new X509Certificate(existing);
        const life = Date.parse(x.validTo) - Date.parse(x.validFrom);
        const fresh = Date.parse(x.validTo) - now.getTime() > life / 3;
        if (fresh && x.checkIssued(issuer.cert.x509) && x.verify(issuer.cert.x509.publicKey) && x.publicKey.equals(signer.publicKey)) der = existing;
      }
    } catch {
      /* none yet */
    }
    if (!der) {
      const spkiDer = Buffer.from(signer.publicKey.export({ type: "spki", format: "der" }));
      const ms = Math.min(parseDuration(this.options.responderValidity ?? "30d"), parseDuration(issuer.doc.max_validity), issuer.cert.notAfter.getTime() - now.getTime());
      const decision: Decision = {
        subject: { CN: `${issuer.doc.subject.CN} OCSP Responder`, ...(issuer.doc.subject.O ? { O: issuer.doc.subject.O } : {}) },
        sans: { dns: [], ip: [], uri: [] },
        notBefore: wholeSeconds(now),
        notAfter: new Date(wholeSeconds(now).getTime() + ms),
        keyUsage: ["digitalSignature"],
        extendedKeyUsage: ["OCSPSigning"],
      };
      const leaf = await signLeaf(issuer, decision, { spkiDer, ...keyIds(spkiDer, publicKeyBits(spkiDer)) }, [extDer(extensions.ocspNoCheck())]);
      der = leaf.der;
      mkdirSync(dirname(crtFile), { recursive: true });
      writeFileSync(crtFile, toPem(der));
      await this.store.insert(this.record(issuer.id, "ocsp-responder", "engine", "engine", decision, leaf.serial, der, leaf.spkiSha256));
    }
    return { signer, keyHash: createHash("sha1").update(Buffer.from(spkiOf(signer.publicKey).subjectPublicKey)).digest(), certs: [der] };
  }

  // ---- authorisation ---------------------------------------------------

  /** The identity of a verified client certificate: which of our issuers signed it, its CN and SANs. */
  identify(peer: X509Certificate): ClientIdentity | undefined {
    const rt = this.runtime;
    if (!rt) return undefined;
    for (const issuer of rt.issuers.values()) {
      if (!peer.checkIssued(issuer.cert.x509)) continue;
      const cn = /(?:^|\n)CN=([^\n]*)/.exec(peer.subject)?.[1];
      const dns: string[] = [];
      const uri: string[] = [];
      for (const part of (peer.subjectAltName ?? "").split(/,\s*/)) {
        if (part.startsWith("DNS:")) dns.push(part.slice(4));
        else if (part.startsWith("URI:")) uri.push(part.slice(4));
      }
      return { issuer: issuer.id, ...(cn !== undefined ? { cn } : {}), dns, uri, serial: normalizeSerial(peer.serialNumber) ?? peer.serialNumber };
    }
    return undefined;
  }

  /** The policy entry that lets `who` do `op` with `profile`, or a 403 naming what is missing. */
  authorize(who: ClientIdentity, op: IssuanceOperation, profile: string): IssuanceClient {
    const rt = this.need();
    if (this.store.isRevoked(who.serial)) throw new IssueError(403, "client_revoked", `client certificate ${who.serial} is revoked`);
    const matching = rt.clients.filter(
      (c) => c.identity.issuer === who.issuer && (c.identity.cn === undefined || c.identity.cn === who.cn) && (c.identity.dns === undefined || who.dns.includes(c.identity.dns)) && (c.identity.uri === undefined || who.uri.includes(c.identity.uri)),
    );
    const desc = `client ${who.cn ? "CN=" + who.cn : who.serial} (issuer ${who.issuer})`;
    if (!matching.length) throw new IssueError(403, "client_not_authorized", `${desc} is not an issuance client of any policy`);
    const withProfile = matching.filter((c) => c.profiles.includes(profile));
    if (!withProfile.length) throw new IssueError(403, "profile_not_allowed", `${desc} (policy client ${matching.map((c) => c.id).join(", ")}) may not use profile ${profile}`, "profile");
    const withOp = withProfile.find((c) => c.operations.includes(op));
    if (!withOp) throw new IssueError(403, "operation_not_allowed", `${desc} may not ${op} certificates of profile ${profile}`);
    return withOp;
  }

  // ---- issuance --------------------------------------------------------

  private record(issuer: string, profile: string, revision: string, client: string, d: Decision, serial: string, der: Buffer, spkiSha256: string): Omit<CertRecord, "revoked_at" | "reason" | "superseded_by" | "revoke_after"> {
    return {
      serial,
      issuer,
      profile,
      revision,
      client,
      subject: JSON.stringify(d.subject),
      sans: d.sans,
      not_before: d.notBefore.getTime(),
      not_after: d.notAfter.getTime(),
      der,
      spki_sha256: spkiSha256,
      issued_at: this.now().getTime(),
    };
  }

  private async sign(rt: Runtime, profile: ProfileDoc, decision: Decision, csr: Pick<Csr, "spkiDer" | "ski" | "spkiSha256">, client: string): Promise<IssuedCertificate & { der: Buffer }> {
    const issuer = rt.issuers.get(profile.issuer);
    if (!issuer?.signer) throw new IssueError(503, "issuer_unavailable", `issuer ${profile.issuer} of profile ${profile.id} has no key online`);
    let leaf;
    try {
      leaf = await signLeaf(issuer, decision, csr);
    } catch (err) {
      if (err instanceof KeyError) throw new IssueError(503, "key_unavailable", `issuer ${issuer.id}'s key is unavailable: ${err.message}`);
      throw err;
    }
    // Durable before it is returned (group commit, synchronous=FULL).
    await this.store.insert(this.record(issuer.id, profile.id, rt.revision, client, decision, leaf.serial, leaf.der, leaf.spkiSha256));
    this.log.info({ action: "cert_issue", serial: leaf.serial, profile: profile.id, issuer: issuer.id, client, revision: rt.revision, sans: decision.sans }, "certificate issued");
    return {
      certificate: toPem(leaf.der),
      chain: issuer.chainPem as string[],
      serial: leaf.serial,
      not_before: decision.notBefore.toISOString(),
      not_after: decision.notAfter.toISOString(),
      spki_sha256: leaf.spkiSha256,
      profile: profile.id,
      revision: rt.revision,
      der: leaf.der,
    };
  }

  private profileOf(rt: Runtime, body: Record<string, unknown>): ProfileDoc {
    const id = needString(body, "profile");
    const profile = rt.profiles.get(id);
    if (!profile) throw new IssueError(400, "unknown_profile", `no profile ${JSON.stringify(id)} in revision ${rt.revision}`, "profile");
    return profile;
  }

  /**
   * A profile bound to a pin set only certifies keys its roll phase allows
   * (engine/pki/pins/roll.ts): a certificate for any other key would be
   * rejected by every pinned client.
   */
  private pinGate(rt: Runtime, profile: ProfileDoc, spkiSha256: string): void {
    // The pin is the SPKI's base64 SHA-256, which the CSR check already computed.
    const refusal = checkProfileIssuance(rt.pinSets, profile, spkiSha256, this.now());
    if (refusal) throw new IssueError(400, refusal.code, refusal.message, "csr");
  }

  /** POST /v1/certs/issue/{server,client}. */
  async issue(usage: "server" | "client", body: unknown, who: ClientIdentity): Promise<IssuedCertificate> {
    const rt = this.need();
    if (!isObject(body)) throw new IssueError(400, "bad_request", "the body must be a JSON object");
    const profile = this.profileOf(rt, body);
    if (profile.usage !== usage) throw new IssueError(400, "wrong_usage", `profile ${profile.id} is a ${profile.usage} profile; use /v1/certs/issue/${profile.usage === "signing" ? "…" : profile.usage}`, "profile");
    const client = this.authorize(who, "issue", profile.id);
    const csr = await parseCsr(body.csr, this.workers);
    this.pinGate(rt, profile, csr.spkiSha256);
    const issuer = rt.issuers.get(profile.issuer)!;
    const decision = enforceProfile({ profile, issuer: issuer.doc, issuerNotAfter: issuer.cert.notAfter, csr, request: body, now: this.now() });
    checkClientNames(client, decision.sans);
    const { der: _der, ...out } = await this.sign(rt, profile, decision, csr, client.id);
    return out;
  }

  private recordOf(serialText: unknown): CertRecord {
    if (typeof serialText !== "string") throw new IssueError(400, "bad_request", "serial is required (hex)", "serial");
    const serial = normalizeSerial(serialText);
    if (!serial) throw new IssueError(400, "bad_request", `serial ${JSON.stringify(serialText)} is not hex`, "serial");
    const rec = this.store.get(serial);
    if (!rec) throw new IssueError(404, "not_found", `no certificate with serial ${serial}`, "serial");
    return rec;
  }

  /** POST /v1/certs/rotate: same profile, subject and SANs; the predecessor is superseded after the overlap. */
  async rotate(body: unknown, who: ClientIdentity): Promise<IssuedCertificate & { predecessor: { serial: string; revoke_at: string } }> {
    const rt = this.need();
    if (!isObject(body)) throw new IssueError(400, "bad_request", "the body must be a JSON object");
    const rec = this.recordOf(body.serial);
    const client = this.authorize(who, "rotate", rec.profile);
    if (rec.revoked_at !== null) throw new IssueError(409, "revoked", `certificate ${rec.serial} is revoked; issue a new one instead`, "serial");
    if (rec.superseded_by) throw new IssueError(409, "already_rotated", `certificate ${rec.serial} was already rotated (successor ${rec.superseded_by})`, "serial");
    const profile = rt.profiles.get(rec.profile);
    if (!profile) throw new IssueError(409, "profile_gone", `profile ${rec.profile} of certificate ${rec.serial} is not in revision ${rt.revision}`, "serial");
    const csr = await parseCsr(body.csr, this.workers);
    this.pinGate(rt, profile, csr.spkiSha256);
    const issuer = rt.issuers.get(profile.issuer)!;
    const decision = enforceProfile({
      profile,
      issuer: issuer.doc,
      issuerNotAfter: issuer.cert.notAfter,
      csr,
      request: { sans: rec.sans, validity: body.validity },
      now: this.now(),
      fixedSubject: JSON.parse(rec.subject) as Decision["subject"],
    });
    checkClientNames(client, decision.sans);
    const { der: _der, ...out } = await this.sign(rt, profile, decision, csr, client.id);
    const revokeAt = Math.min(rec.not_after, this.now().getTime() + parseDuration(this.options.rotateOverlap ?? "24h"));
    this.store.supersede(rec.serial, out.serial, revokeAt);
    return { ...out, predecessor: { serial: rec.serial, revoke_at: new Date(revokeAt).toISOString() } };
  }

  /** POST /v1/certs/revoke: CRL regenerated and OCSP answering revoked before it returns. */
  async revoke(body: unknown, who: ClientIdentity | "engine"): Promise<{ serial: string; revoked_at: string; reason: RevocationReason; crl_number?: number }> {
    this.need();
    if (!isObject(body)) throw new IssueError(400, "bad_request", "the body must be a JSON object");
    const rec = this.recordOf(body.serial);
    if (who !== "engine") this.authorize(who, "revoke", rec.profile);
    const reasonText = body.reason ?? "unspecified";
    if (typeof reasonText !== "string" || !(reasonText in REASON_CODES)) {
      throw new IssueError(400, "bad_reason", `reason must be one of ${Object.keys(REASON_CODES).join(", ")} (RFC 5280)`, "reason");
    }
    return this.revokeSerial(rec, reasonText as RevocationReason, who === "engine" ? "engine" : who.cn ?? who.serial);
  }

  private async revokeSerial(rec: CertRecord, reason: RevocationReason, by: string) {
    const at = wholeSeconds(this.now()).getTime();
    if (!this.store.revoke(rec.serial, at, REASON_CODES[reason])) throw new IssueError(409, "already_revoked", `certificate ${rec.serial} is already revoked`, "serial");
    this.dropOcsp(rec.serial);
    this.log.info({ action: "cert_revoke", serial: rec.serial, reason, issuer: rec.issuer, by }, "certificate revoked");
    let crl: CrlState | undefined;
    try {
      crl = await this.refreshCrl(rec.issuer);
    } catch (err) {
      this.log.error({ issuer: rec.issuer, err: (err as Error).message }, "CRL regeneration failed after revocation");
    }
    return { serial: rec.serial, revoked_at: new Date(at).toISOString(), reason, ...(crl ? { crl_number: crl.number } : {}) };
  }

  /** GET /v1/certs/SERIAL. */
  certificate(serialText: string): Record<string, unknown> {
    const rec = this.recordOf(serialText);
    const now = this.now().getTime();
    const reason = rec.reason === null ? undefined : (Object.entries(REASON_CODES).find(([, c]) => c === rec.reason)?.[0] as string);
    return {
      serial: rec.serial,
      status: rec.revoked_at !== null ? "revoked" : rec.not_after <= now ? "expired" : "good",
      issuer: rec.issuer,
      profile: rec.profile,
      revision: rec.revision,
      client: rec.client,
      subject: JSON.parse(rec.subject),
      sans: rec.sans,
      not_before: new Date(rec.not_before).toISOString(),
      not_after: new Date(rec.not_after).toISOString(),
      spki_sha256: rec.spki_sha256,
      ...(rec.revoked_at !== null ? { revoked_at: new Date(rec.revoked_at).toISOString(), reason } : {}),
      ...(rec.superseded_by ? { superseded_by: rec.superseded_by, revoke_after: rec.revoke_after && new Date(rec.revoke_after).toISOString() } : {}),
      certificate: toPem(rec.der),
    };
  }

  /** GET /v1/ca/chain?issuer=ID: PEM, the issuer first, ending at the root. */
  chain(issuerId: string): string {
    const issuer = this.need().issuers.get(issuerId);
    if (!issuer) throw new IssueError(404, "not_found", `no issuer ${JSON.stringify(issuerId)}`, "issuer");
    return issuer.chainPem.join("");
  }

  /**
   * The engine's own certificates (listener server certs, the dev
   * backend-client, the Log Signing Key): the profile still decides, the
   * engine is the client, and the key never leaves the engine.
   */
  async issueForEngine(profileId: string, publicKey: KeyObject, names: { cn?: string; dns?: string[]; ip?: string[]; uri?: string[]; validity?: string }): Promise<IssuedCertificate & { der: Buffer }> {
    const rt = this.need();
    const profile = rt.profiles.get(profileId);
    if (!profile) throw new IssueError(400, "unknown_profile", `no profile ${profileId}`, "profile");
    const issuer = rt.issuers.get(profile.issuer);
    if (!issuer) throw new IssueError(503, "issuer_unavailable", `no issuer ${profile.issuer}`);
    const spkiDer = Buffer.from(publicKey.export({ type: "spki", format: "der" }));
    const bits = publicKeyBits(spkiDer);
    const ids = keyIds(spkiDer, bits);
    this.pinGate(rt, profile, ids.spkiSha256);
    const csr: Csr = { subject: names.cn ? { CN: names.cn } : {}, spkiDer, publicKeyBits: bits, ...ids, keyAlgorithm: algorithmOf(publicKey), sans: { dns: names.dns ?? [], ip: names.ip ?? [], uri: names.uri ?? [] } };
    const decision = enforceProfile({ profile, issuer: issuer.doc, issuerNotAfter: issuer.cert.notAfter, csr, request: { ...(names.validity ? { validity: names.validity } : {}) }, now: this.now() });
    return this.sign(rt, profile, decision, csr, "engine");
  }

  // ---- CRL ---------------------------------------------------------------

  /** Regenerates an issuer's CRL with the next persisted CRL number; concurrent calls share one build per issuer at a time. */
  refreshCrl(issuerId: string): Promise<CrlState> {
    const running = this.crlBuilds.get(issuerId);
    const next = (running ?? Promise.resolve()).catch(() => {}).then(() => this.buildCrlNow(issuerId));
    const tracked = next.finally(() => {
      if (this.crlBuilds.get(issuerId) === tracked) this.crlBuilds.delete(issuerId);
    });
    this.crlBuilds.set(issuerId, tracked);
    return tracked;
  }

  private async buildCrlNow(issuerId: string): Promise<CrlState> {
    const issuer = this.need().issuers.get(issuerId);
    if (!issuer?.signer) throw new IssueError(404, "not_found", `no online issuer ${issuerId}`);
    const doc = issuer.doc;
    const now = wholeSeconds(this.now());
    const interval = parseDuration(doc.crl?.interval ?? "24h");
    const grace = parseDuration(doc.crl?.grace ?? "0s");
    const number = this.store.nextCrlNumber(issuerId);
    const revoked = this.store.revokedOf(issuerId, now.getTime());
    const nextUpdate = new Date(now.getTime() + interval + grace);
    const der = await buildCrl({ issuer: issuer.cert, signer: issuer.signer, revoked, number, thisUpdate: now, nextUpdate });
    const state = { der, number, thisUpdate: now, nextUpdate };
    this.crls.set(issuerId, state);
    this.log.info({ action: "crl_publish", issuer: issuerId, crl_number: number, revoked: revoked.length }, "CRL published");
    return state;
  }

  /** The current CRL of an issuer (built on first request). Offline issuers' CRLs are files the operator publishes. */
  async crl(issuerId: string): Promise<CrlState> {
    const rt = this.need();
    const issuer = rt.issuers.get(issuerId);
    if (!issuer) throw new IssueError(404, "not_found", `no issuer ${JSON.stringify(issuerId)}`);
    if (!issuer.signer) {
      try {
        const der = readFileSync(join(this.options.dataDir, "pki", "crl", `${issuerId}.crl`));
        return { der, number: 0, thisUpdate: new Date(0), nextUpdate: new Date(0) };
      } catch {
        throw new IssueError(404, "not_found", `issuer ${issuerId} is offline and no CRL for it was published in ${join(this.options.dataDir, "pki", "crl")}`);
      }
    }
    return this.crls.get(issuerId) ?? (this.crlBuilds.get(issuerId) ?? this.refreshCrl(issuerId));
  }

  /** Periodic work: supersede rotated predecessors whose overlap ended, regenerate CRLs that reached their interval. */
  async tick(): Promise<void> {
    const rt = this.runtime;
    if (!rt) return;
    const now = this.now().getTime();
    for (const serial of this.store.dueForSupersede(now)) {
      const rec = this.store.get(serial);
      if (rec) await this.revokeSerial(rec, "superseded", "rotation").catch(() => {});
    }
    // Delegated responder certificates are short-lived: renew at 2/3 of their life.
    const renewed = new Map<string, Responder>();
    for (const [id, responder] of rt.responders) {
      const der = responder.certs[0];
      const issuer = rt.issuers.get(id);
      if (!der || !issuer?.signer) continue;
      const x = new X509Certificate(der);
      const from = Date.parse(x.validFrom);
      const to = Date.parse(x.validTo);
      if (to - now > (to - from) / 3) continue;
      try {
        renewed.set(id, await this.responderFor(issuer));
      } catch (err) {
        this.log.error({ issuer: id, err: (err as Error).message }, "OCSP responder certificate renewal failed");
      }
    }
    if (renewed.size && this.runtime === rt) {
      this.runtime = { ...rt, responders: new Map([...rt.responders, ...renewed]) };
      this.ocspCache.clear();
      this.ocspByRequest.clear();
      this.ocspBySerial.clear();
    }
    for (const issuer of rt.issuers.values()) {
      if (!issuer.signer) continue;
      const c = this.crls.get(issuer.id);
      const interval = parseDuration(issuer.doc.crl?.interval ?? "24h");
      if (!c || c.thisUpdate.getTime() + interval <= now) await this.refreshCrl(issuer.id).catch((err: Error) => this.log.error({ issuer: issuer.id, err: err.message }, "CRL regeneration failed"));
    }
  }

  // ---- OCSP --------------------------------------------------------------

  private dropOcsp(serial: string): void {
    for (const k of this.ocspBySerial.get(serial) ?? []) this.ocspCache.delete(k);
    this.ocspBySerial.delete(serial);
  }

  /**
   * Answers an OCSP request. A POST with a nonce gets a freshly signed
   * response echoing it; everything else is served from a cache of signed
   * responses, re-signed after half their validity or when the status
   * changes. When signing fails (key unavailable) a cached answer that is
   * still within its nextUpdate is served.
   */
  async ocsp(der: Uint8Array): Promise<{ status: number; body: Buffer; cached?: CachedOcsp; error?: string }> {
    const requestKey = Buffer.from(der).toString("base64");
    const known = this.ocspByRequest.get(requestKey);
    if (known !== undefined) {
      const hit = this.ocspCache.get(known);
      const rt = this.runtime;
      const issuer = rt?.issuers.get(known.slice(0, known.indexOf(":")));
      if (hit && issuer) {
        const validity = parseDuration(issuer.doc.ocsp?.validity ?? "4h");
        if (this.now().getTime() - hit.thisUpdate.getTime() < validity / 2) return { status: 200, body: hit.der, cached: hit };
      }
    }
    let parsed;
    try {
      parsed = parseOcspRequest(der);
    } catch (err) {
      if (err instanceof OcspMalformed) return { status: 400, body: ocspError(OCSPResponseStatus.malformedRequest), error: err.message };
      throw err;
    }
    const rt = this.runtime;
    if (!rt) return { status: 200, body: ocspError(OCSPResponseStatus.tryLater), error: "not ready" };
    const first = parsed.queries[0]!;
    const issuer = [...rt.issuers.values()].find((i) => i.cert.certIdHashes[first.hash].name === first.nameHash && i.cert.certIdHashes[first.hash].key === first.keyHash);
    if (!issuer || !rt.responders.has(issuer.id)) return { status: 200, body: ocspError(OCSPResponseStatus.unauthorized), error: "not an issuer of this responder" };
    if (parsed.queries.some((q) => q.nameHash !== first.nameHash || q.keyHash !== first.keyHash)) {
      return { status: 400, body: ocspError(OCSPResponseStatus.malformedRequest), error: "all certificates of one request must have the same issuer" };
    }
    const responder = rt.responders.get(issuer.id)!;
    const now = wholeSeconds(this.now());
    const validity = parseDuration(issuer.doc.ocsp?.validity ?? "4h");
    const key = parsed.queries.length === 1 ? `${issuer.id}:${first.hash}:${first.serial}` : undefined;
    const hit = key ? this.ocspCache.get(key) : undefined;
    if (!parsed.nonce && hit && now.getTime() - hit.thisUpdate.getTime() < validity / 2) return { status: 200, body: hit.der, cached: hit };
    const answers = parsed.queries.map((q) => {
      const st = this.store.status(q.serial);
      const state: CertState = !st || st.issuer !== issuer.id ? { unknown: true } : st.revoked_at !== null ? { revoked: { at: st.revoked_at, reason: st.reason ?? 0 } } : { good: true };
      return { certId: q.certId, state, thisUpdate: now, nextUpdate: new Date(now.getTime() + validity) };
    });
    let body: Buffer;
    try {
      body = await signOcspResponse(responder, answers, now, parsed.nonce);
    } catch (err) {
      this.log.warn({ issuer: issuer.id, err: (err as Error).message }, "OCSP signing failed");
      if (hit && hit.nextUpdate > now) return { status: 200, body: hit.der, cached: hit };
      return { status: 200, body: ocspError(OCSPResponseStatus.tryLater), error: "signing key unavailable" };
    }
    if (parsed.nonce || !key) return { status: 200, body };
    const entry = { der: body, thisUpdate: now, nextUpdate: answers[0]!.nextUpdate, etag: `"${createHash("sha1").update(body).digest("hex")}"`, serial: first.serial };
    if (this.ocspCache.size >= (this.options.ocspCacheSize ?? 100_000)) {
      const oldest = this.ocspCache.keys().next().value;
      if (oldest !== undefined) this.ocspCache.delete(oldest);
    }
    this.ocspCache.delete(key);
    this.ocspCache.set(key, entry);
    if (this.ocspByRequest.size >= (this.options.ocspCacheSize ?? 100_000)) this.ocspByRequest.clear();
    this.ocspByRequest.set(requestKey, key);
    let set = this.ocspBySerial.get(first.serial);
    if (!set) this.ocspBySerial.set(first.serial, (set = new Set()));
    set.add(key);
    return { status: 200, body, cached: entry };
  }

  async close(): Promise<void> {
    await this.store.close();
    await this.workers?.close();
  }
}

/** A revision the PKI cannot run, naming the issuer. */
export class BuildError extends Error {
  constructor(
    readonly issuer: string,
    message: string,
  ) {
    super(message);
  }
}

export type { Sans };
