import "reflect-metadata";
import { spawn } from "node:child_process";
import { createPrivateKey, createPublicKey, webcrypto, X509Certificate as NodeX509, type KeyObject } from "node:crypto";
import { existsSync, readFileSync, renameSync, rmSync } from "node:fs";
import { request } from "node:https";
import { dirname } from "node:path";
import * as x509 from "@peculiar/x509";
import { realClock, type Clock } from "./clock.js";
import { pinOfKey } from "./pin.js";
import { Renewer, validityOf, type RenewalAlert, type Validity } from "./renew.js";
import { fsyncDir, writeFileDurably } from "../files.js";

/**
 * `viw agent renew`: keeps a gateway's or service's certificate renewed over
 * the mTLS issuance API (DESIGN.md §4). CSR mode only: the key is made here
 * and never sent. A new key per renewal by default; when the profile's pin
 * set refuses it (pinned clients only accept the pinned keys) the agent
 * renews the current key instead, and in a cutover the deployed backup key
 * (--backup-key). Files are replaced atomically as a pair, then the reload
 * command runs.
 */

export type KeyType = "ecdsa-p256" | "ecdsa-p384" | "rsa-2048" | "rsa-3072" | "rsa-4096";

export interface AgentOptions {
  certFile: string;
  keyFile: string;
  /** Reload command, run with sh -c after the files are replaced (VIW_CERT, VIW_KEY set). */
  exec?: string;
  /** The issuance API base URL (default https://localhost:8444). */
  url?: string;
  /** mTLS client credential; defaults to the certificate being renewed. */
  clientCert?: string;
  clientKey?: string;
  /** CA bundle for the issuance API's server certificate (PEM file). */
  ca?: string;
  /** Profile for POST /v1/certs/issue when there is nothing to rotate (no certificate, or it was revoked). */
  profile?: string;
  usage?: "server" | "client";
  /** Always certify the current key (never generate one). */
  reuseKey?: boolean;
  /** The deployed backup key (PEM file) to move to when the pin set is in cutover. */
  backupKey?: string;
  /** Type of a new key (default: the type of the current key, else ecdsa-p256). */
  keyType?: KeyType;
  execTimeoutMs?: number;
  requestTimeoutMs?: number;
  log?: (line: string) => void;
}

export class AgentError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface RenewResult extends Validity {
  pin: string;
  keyChanged: boolean;
  /** rotate (predecessor superseded), issue, or pickup (a successor an emergency rotation already issued for this key). */
  via: "rotate" | "issue" | "pickup";
  /** Which key was certified. */
  key: "new" | "current" | "backup";
}

// ---------------------------------------------------------------- files

const STAGED = ".viw-new";

/**
 * Replaces certificate and key as a pair. Both are staged complete first (the
 * key last, so a staged key implies a complete staged certificate), then
 * renamed certificate first, key second. A crash between the two renames
 * leaves a staged key that `recoverPair` installs, so the reload never sees a
 * certificate with the wrong key for longer than the agent is down.
 */
export function installPair(certFile: string, keyFile: string, certPem: string, keyPem: string | undefined): void {
  if (keyPem === undefined) {
    writeFileDurably(certFile, certPem, 0o644);
    return;
  }
  writeFileDurably(certFile + STAGED, certPem, 0o644);
  writeFileDurably(keyFile + STAGED, keyPem, 0o600);
  renameSync(certFile + STAGED, certFile);
  renameSync(keyFile + STAGED, keyFile);
  fsyncDir(dirname(certFile));
  fsyncDir(dirname(keyFile));
}

/** Finishes an installPair a crash interrupted; drops an incomplete staging. Returns whether it installed. */
export function recoverPair(certFile: string, keyFile: string): boolean {
  if (existsSync(keyFile + STAGED)) {
    if (existsSync(certFile + STAGED)) renameSync(certFile + STAGED, certFile);
    renameSync(keyFile + STAGED, keyFile);
    fsyncDir(dirname(certFile));
    fsyncDir(dirname(keyFile));
    return true;
  }
  rmSync(certFile + STAGED, { force: true });
  return false;
}

// ---------------------------------------------------------------- keys and CSRs

const subtle = webcrypto.subtle;
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
type WebKey = webcrypto.CryptoKey;
type WebAlg = webcrypto.Algorithm | webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;

function webAlgorithm(key: KeyObject): WebAlg {
  const type = key.asymmetricKeyType;
  if (type === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === "prime256v1" || curve === "P-256" ? "P-256" : curve === "secp384r1" || curve === "P-384" ? "P-384" : undefined;
    if (!namedCurve) throw new AgentError(`the key's curve ${curve} is not supported (P-256, P-384)`);
    return { name: "ECDSA", namedCurve };
  }
  if (type === "rsa") return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  if (type === "ed25519") return { name: "Ed25519" };
  throw new AgentError(`the key type ${type} is not supported`);
}

function signingAlgorithm(alg: WebAlg): webcrypto.Algorithm | webcrypto.EcdsaParams {
  return alg.name === "ECDSA" ? { name: "ECDSA", hash: (alg as webcrypto.EcKeyImportParams).namedCurve === "P-384" ? "SHA-384" : "SHA-256" } : alg;
}

async function webPair(privateKey: KeyObject): Promise<{ privateKey: WebKey; publicKey: WebKey; alg: WebAlg }> {
  const alg = webAlgorithm(privateKey);
  const pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  return {
    privateKey: await subtle.importKey("pkcs8", pkcs8, alg, false, ["sign"]),
    publicKey: await subtle.importKey("spki", spki, alg, true, ["verify"]),
    alg,
  };
}

/** A new private key (node:crypto) of the given type. */
export async function newKey(type: KeyType): Promise<KeyObject> {
  const { generateKeyPair } = await import("node:crypto");
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, _pub: KeyObject, priv: KeyObject) => (err ? reject(err) : resolve(priv));
    if (type.startsWith("ecdsa")) generateKeyPair("ec", { namedCurve: type === "ecdsa-p384" ? "P-384" : "P-256" }, done);
    else generateKeyPair("rsa", { modulusLength: Number(type.slice(4)) }, done);
  });
}

function keyTypeOf(key: KeyObject): KeyType {
  if (key.asymmetricKeyType === "ec") return key.asymmetricKeyDetails?.namedCurve === "secp384r1" ? "ecdsa-p384" : "ecdsa-p256";
  if (key.asymmetricKeyType === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 2048;
    return bits >= 4096 ? "rsa-4096" : bits >= 3072 ? "rsa-3072" : "rsa-2048";
  }
  return "ecdsa-p256";
}

/** A PKCS#10 request for `key` with the subject and subjectAltName of the certificate being renewed. */
export async function makeCsr(key: KeyObject, like?: string): Promise<string> {
  const keys = await webPair(key);
  const extensions: x509.Extension[] = [];
  let name: string | undefined;
  if (like) {
    const cert = new x509.X509Certificate(like);
    name = cert.subject;
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    if (san) extensions.push(new x509.SubjectAlternativeNameExtension(san.names.toJSON()));
  }
  type CreateParams = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    ...(name ? { name } : {}),
    keys: { privateKey: keys.privateKey, publicKey: keys.publicKey } as unknown as CreateParams["keys"],
    signingAlgorithm: signingAlgorithm(keys.alg) as CreateParams["signingAlgorithm"],
    extensions,
  });
  return csr.toString("pem");
}

// ---------------------------------------------------------------- the API

interface IssuedBody {
  certificate: string;
  chain?: string[];
  serial?: string;
}

type Tls = { cert: Buffer; key: Buffer; ca?: Buffer };

function post(opts: AgentOptions, path: string, body: unknown, tls: Tls): Promise<IssuedBody> {
  return call(opts, "POST", path, body, tls).then((json) => {
    const b = json as IssuedBody;
    if (typeof b.certificate !== "string") throw new AgentError(`${path}: the answer has no certificate`);
    return b;
  });
}

function call(opts: AgentOptions, method: "GET" | "POST", path: string, body: unknown, tls: Tls): Promise<unknown> {
  const base = new URL(opts.url ?? "https://localhost:8444");
  if (base.protocol !== "https:") throw new AgentError(`--url must be https (the issuance API is mTLS): ${opts.url}`);
  const payload = Buffer.from(body === undefined ? "" : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: base.hostname.replace(/^\[|\]$/g, ""),
        port: base.port || 443,
        path: base.pathname.replace(/\/$/, "") + path,
        method,
        headers: body === undefined ? {} : { "content-type": "application/json", "content-length": payload.length },
        cert: tls.cert,
        key: tls.key,
        ...(tls.ca ? { ca: tls.ca } : {}),
        servername: /^[\d.:[\]]+$/.test(base.hostname) ? undefined : base.hostname,
        minVersion: "TLSv1.3",
        agent: false,
        timeout: opts.requestTimeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            // GET /v1/ca/chain answers PEM.
            if (res.statusCode === 200 && method === "GET" && text.includes("-----BEGIN")) return resolve(text);
            return reject(new AgentError(`${path}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 200)}`, res.statusCode));
          }
          if (res.statusCode === 200 || res.statusCode === 201) return resolve(json);
          const e = (json as { error?: { code?: string; message?: string } }).error;
          reject(new AgentError(`${path}: HTTP ${res.statusCode} ${e?.code ?? ""}: ${e?.message ?? text.slice(0, 200)}`, res.statusCode, e?.code));
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new AgentError(`${path}: no answer within ${(opts.requestTimeoutMs ?? 30_000) / 1000} s`)));
    req.on("error", (err) => reject(err instanceof AgentError ? err : new AgentError(`${base.origin}${path}: ${(err as Error).message}`)));
    req.end(body === undefined ? undefined : payload);
  });
}

/**
 * After an emergency rotation the engine may already have certified this
 * same key again (the revoked certificate's `superseded_by`): fetch that
 * successor instead of asking for another certificate.
 */
async function successorFor(opts: AgentOptions, serial: string, key: KeyObject, tls: Tls): Promise<IssuedBody | undefined> {
  const old = (await call(opts, "GET", `/v1/certs/${serial}`, undefined, tls)) as { superseded_by?: string };
  if (typeof old.superseded_by !== "string") return undefined;
  const next = (await call(opts, "GET", `/v1/certs/${old.superseded_by}`, undefined, tls)) as { status?: string; certificate?: string; issuer?: string };
  if (next.status !== "good" || typeof next.certificate !== "string" || typeof next.issuer !== "string") return undefined;
  if (!new NodeX509(next.certificate).publicKey.equals(createPublicKey(key))) return undefined;
  const bundle = await call(opts, "GET", `/v1/ca/chain?issuer=${encodeURIComponent(next.issuer)}`, undefined, tls);
  const chain = typeof bundle === "string" ? (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? []) : [];
  return { certificate: next.certificate, chain, serial: old.superseded_by };
}

/** The chain a server loads: the leaf and the intermediates (the root, last in `chain`, is left out). */
function fullChain(b: IssuedBody): string {
  const pems = [b.certificate, ...(b.chain ?? []).slice(0, -1)];
  return pems.map((p) => (p.endsWith("\n") ? p : p + "\n")).join("");
}

function runReload(cmd: string, env: Record<string, string>, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", cmd], { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"], timeout: timeoutMs });
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
    child.on("error", (e) => reject(new AgentError(`reload command failed to start: ${e.message}`)));
    child.on("close", (code, signal) => {
      if (code === 0) resolve();
      else reject(new AgentError(`reload command ${signal ? `was killed (${signal})` : `exited ${code}`}${err.trim() ? `: ${err.trim().split("\n").pop()}` : ""}`));
    });
  });
}

async function installAndReload(opts: AgentOptions, body: IssuedBody, key: KeyObject, keyChanged: boolean, kind: RenewResult["key"], via: RenewResult["via"], log: (l: string) => void): Promise<RenewResult> {
  const leaf = new NodeX509(body.certificate);
  if (!leaf.publicKey.equals(createPublicKey(key))) throw new AgentError("the issued certificate is not for the key of the request");
  installPair(opts.certFile, opts.keyFile, fullChain(body), keyChanged ? (key.export({ type: "pkcs8", format: "pem" }) as string) : undefined);
  const v = validityOf(body.certificate);
  log(`renewed ${opts.certFile}: serial ${v.serial}, valid until ${new Date(v.notAfter).toISOString()}, ${kind} key ${pinOfKey(key)} (via ${via})`);
  if (opts.exec) {
    // The new pair is in place; a failing reload is retried a few times, not answered by another issuance.
    let delay = 1000;
    for (let attempt = 1; ; attempt++) {
      try {
        await runReload(opts.exec, { VIW_CERT: opts.certFile, VIW_KEY: opts.keyFile }, opts.execTimeoutMs ?? 60_000);
        break;
      } catch (err) {
        if (attempt >= 3) throw new AgentError(`certificate installed but ${(err as Error).message}`);
        log(`${(err as Error).message}; retrying in ${delay / 1000} s`);
        await new Promise((r) => setTimeout(r, delay));
        delay *= 2;
      }
    }
  }
  return { ...v, pin: pinOfKey(key), keyChanged, via, key: kind };
}

/** One renewal: CSR, API call (rotate, else issue), atomic install, reload. */
export async function renewOnce(opts: AgentOptions): Promise<RenewResult> {
  const log = opts.log ?? (() => {});
  if (recoverPair(opts.certFile, opts.keyFile)) log(`finished an interrupted install of ${opts.certFile}`);
  const certPem = existsSync(opts.certFile) ? readFileSync(opts.certFile, "utf8") : undefined;
  let currentKey: KeyObject | undefined;
  if (existsSync(opts.keyFile)) {
    try {
      currentKey = createPrivateKey(readFileSync(opts.keyFile));
    } catch (err) {
      throw new AgentError(`${opts.keyFile}: not a private key (${(err as Error).message})`);
    }
  }
  let current: { serial: string; x: NodeX509 } | undefined;
  if (certPem) {
    try {
      const x = new NodeX509(certPem);
      current = { serial: x.serialNumber.toLowerCase(), x };
    } catch (err) {
      throw new AgentError(`${opts.certFile}: not a certificate (${(err as Error).message})`);
    }
  }
  if (!current && !opts.profile) throw new AgentError(`${opts.certFile} does not exist: give --profile to issue a first certificate`);
  const tls = {
    cert: readFileSync(opts.clientCert ?? opts.certFile),
    key: readFileSync(opts.clientKey ?? opts.keyFile),
    ...(opts.ca ? { ca: readFileSync(opts.ca) } : {}),
  };
  const usage = opts.usage ?? (current && /clientAuth|1\.3\.6\.1\.5\.5\.7\.3\.2/.test(String(current.x.keyUsage ?? "")) && !/serverAuth|1\.3\.6\.1\.5\.5\.7\.3\.1/.test(String(current.x.keyUsage ?? "")) ? "client" : "server");

  const candidates: { kind: RenewResult["key"]; key: () => Promise<KeyObject> }[] = [];
  if (!opts.reuseKey) candidates.push({ kind: "new", key: () => newKey(opts.keyType ?? (currentKey ? keyTypeOf(currentKey) : "ecdsa-p256")) });
  if (currentKey) candidates.push({ kind: "current", key: async () => currentKey! });
  if (opts.backupKey) {
    const file = opts.backupKey;
    candidates.push({ kind: "backup", key: async () => createPrivateKey(readFileSync(file)) });
  }
  if (!candidates.length) throw new AgentError(`--reuse-key, but ${opts.keyFile} does not exist`);

  let lastRefusal: AgentError | undefined;
  let pickedUp: IssuedBody | undefined;
  for (const cand of candidates) {
    const key = await cand.key();
    const csr = await makeCsr(key, certPem);
    let via: RenewResult["via"] = current ? "rotate" : "issue";
    const issue = () => {
      via = "issue";
      return post(opts, `/v1/certs/issue/${usage}`, { profile: opts.profile, csr }, tls);
    };
    let body: IssuedBody;
    try {
      try {
        body = current ? await post(opts, "/v1/certs/rotate", { serial: current.serial, csr }, tls) : await issue();
      } catch (err) {
        if (!(current && err instanceof AgentError && (err.status === 404 || err.status === 409))) throw err;
        // Revoked by an emergency rotation, which may have reissued this very key: pick that up.
        if (err.status === 409 && currentKey && (pickedUp ??= await successorFor(opts, current.serial, currentKey, tls).catch(() => undefined))) {
          return installAndReload(opts, pickedUp, currentKey, false, "current", "pickup", log);
        }
        // Nothing left to rotate (revoked, already rotated, unknown): issue anew under the profile.
        if (!opts.profile) throw new AgentError(`${err.message}; give --profile to issue a new certificate instead`, err.status, err.code);
        body = await issue();
      }
    } catch (err) {
      if (!(err instanceof AgentError) || err.code !== "pin_not_allowed") throw err;
      lastRefusal = err;
      log(`the pin set refused the ${cand.kind} key (${pinOfKey(key)}): ${err.message}`);
      continue;
    }
    const keyChanged = !currentKey || !createPublicKey(currentKey).equals(createPublicKey(key));
    return installAndReload(opts, body, key, keyChanged, cand.kind, via, log);
  }
  throw lastRefusal ?? new AgentError("no key was accepted");
}

/**
 * The agent's loop: renews at 2/3 of the lifetime with jitter, retries with
 * backoff, and reports through `log` and `onAlert`. Returns the Renewer
 * (stop() ends it).
 */
export function runAgent(opts: AgentOptions & { clock?: Clock; renewBefore?: number; alertBefore?: number; onAlert?: (a: RenewalAlert) => void }): Renewer {
  const log = opts.log ?? (() => {});
  let current: Validity | undefined;
  try {
    current = existsSync(opts.certFile) ? validityOf(readFileSync(opts.certFile)) : undefined;
  } catch {
    current = undefined;
  }
  const renewer = new Renewer({
    current,
    clock: opts.clock ?? realClock,
    ...(opts.renewBefore !== undefined ? { renewBefore: opts.renewBefore } : {}),
    ...(opts.alertBefore !== undefined ? { alertBefore: opts.alertBefore } : {}),
    renew: () => renewOnce(opts),
  });
  renewer.on("scheduled", (at) => log(`next renewal of ${opts.certFile} at ${new Date(at).toISOString()}`));
  renewer.on("failed", (err, { attempt, retryIn }) => log(`renewal attempt ${attempt} failed: ${err.message}; retrying in ${Math.round(retryIn / 1000)} s`));
  renewer.on("alert", (a) => {
    log(`ALERT ${a.level}: ${opts.certFile} ${a.remaining > 0 ? `expires in ${Math.round(a.remaining / 3_600_000)} h` : "has expired"} (${new Date(a.notAfter).toISOString()}), ${a.attempts} failed renewals, last: ${a.lastError ?? "none"}`);
    opts.onAlert?.(a);
  });
  return renewer.start();
}
