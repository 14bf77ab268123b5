import { EventEmitter } from "node:events";
import { generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import type { SecureContextOptions, Server as TlsServer } from "node:tls";
import { realClock, type Clock } from "./clock.js";

/** The validity of the certificate in service. */
export interface Validity {
  notBefore: number;
  notAfter: number;
  serial?: string;
}

/** Validity of the first certificate in a PEM (leaf first, as servers load it). */
export function validityOf(pem: string | Buffer): Validity {
  const x = new X509Certificate(pem);
  return { notBefore: Date.parse(x.validFrom), notAfter: Date.parse(x.validTo), serial: x.serialNumber.toLowerCase() };
}

export interface RenewalAlert {
  /** warning: expiry is close and renewal has not succeeded; critical: the certificate has expired. */
  level: "warning" | "critical";
  notAfter: number;
  /** ms until expiry (negative once expired). */
  remaining: number;
  attempts: number;
  lastError?: string;
}

export interface RenewerOptions {
  /** The certificate in service now (undefined: none yet, renew at once). */
  current: Validity | undefined;
  /** Gets and installs a successor; returns its validity. Throwing schedules a retry with backoff. */
  renew: () => Promise<Validity>;
  clock?: Clock;
  /** Share of the lifetime after which to renew (default 2/3). */
  at?: number;
  /** Renewals spread earlier by up to this share of the lifetime (default 1/30, ~3 days of 90). */
  jitter?: number;
  /** Renew no later than this long before expiry (a profile's renew_before), in ms. */
  renewBefore?: number;
  /** Alert when less than this is left and no renewal succeeded (ms; default a sixth of the lifetime). */
  alertBefore?: number;
  /** First retry delay after a failure (default 1 s), doubling up to `maxBackoff` (default 1 h). */
  backoff?: number;
  maxBackoff?: number;
  random?: () => number;
}

export interface RenewerEvents {
  renewed: [Validity];
  /** A failed attempt ("failed", not "error": an EventEmitter throws on an unheard "error"). */
  failed: [Error, { attempt: number; retryIn: number }];
  alert: [RenewalAlert];
  scheduled: [number];
}

/**
 * Keeps one certificate renewed: at 2/3 of its lifetime (jittered so a fleet
 * issued together does not renew together), retrying failures with
 * exponential backoff, and alerting when expiry gets close without a
 * successful renewal. Listen to "renewed", "failed", "alert", "scheduled".
 */
export class Renewer extends EventEmitter<RenewerEvents> {
  private readonly clock: Clock;
  private readonly random: () => number;
  private current: Validity | undefined;
  private cancel?: () => void;
  private running?: Promise<void>;
  private attempts = 0;
  private lastError?: string;
  private stopped = true;
  /** When the next attempt is due (ms on the clock). */
  nextAt?: number;

  constructor(private readonly options: RenewerOptions) {
    super();
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? Math.random;
    this.current = options.current;
  }

  get validity(): Validity | undefined {
    return this.current;
  }

  /** When a certificate with this validity is due for renewal (before jitter is drawn: the latest point). */
  dueAt(v: Validity, draw = 0): number {
    const life = v.notAfter - v.notBefore;
    const share = (this.options.at ?? 2 / 3) - draw * (this.options.jitter ?? 1 / 30);
    let at = v.notBefore + life * share;
    if (this.options.renewBefore !== undefined) at = Math.min(at, v.notAfter - this.options.renewBefore);
    return at;
  }

  start(): this {
    if (!this.stopped) return this;
    this.stopped = false;
    this.schedule(this.current ? this.dueAt(this.current, this.random()) : this.clock.now());
    return this;
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.cancel = undefined;
    this.nextAt = undefined;
  }

  /** Renews now (whatever the schedule); resolves when that attempt has finished. */
  renewNow(): Promise<void> {
    this.cancel?.();
    this.cancel = undefined;
    return this.attempt();
  }

  /** Resolves once no attempt is in flight (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private schedule(at: number): void {
    this.cancel?.();
    if (this.stopped) return;
    this.nextAt = at;
    this.emit("scheduled", at);
    this.cancel = this.clock.after(at - this.clock.now(), () => {
      this.cancel = undefined;
      void this.attempt();
    });
  }

  private attempt(): Promise<void> {
    if (this.running) return this.running;
    const run = (async () => {
      try {
        const next = await this.options.renew();
        this.current = next;
        this.attempts = 0;
        this.lastError = undefined;
        this.emit("renewed", next);
        this.schedule(this.dueAt(next, this.random()));
      } catch (err) {
        this.attempts++;
        this.lastError = (err as Error).message;
        const base = this.options.backoff ?? 1000;
        const max = this.options.maxBackoff ?? 3_600_000;
        // Full jitter on the upper half: retries of many agents do not synchronise.
        const retryIn = Math.min(max, base * 2 ** (this.attempts - 1)) * (0.5 + this.random() / 2);
        this.emit("failed", err as Error, { attempt: this.attempts, retryIn });
        this.checkAlert();
        this.schedule(this.clock.now() + retryIn);
      }
    })().finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private checkAlert(): void {
    const v = this.current;
    if (!v) return;
    const remaining = v.notAfter - this.clock.now();
    const threshold = this.options.alertBefore ?? (v.notAfter - v.notBefore) / 6;
    if (remaining > threshold) return;
    this.emit("alert", { level: remaining <= 0 ? "critical" : "warning", notAfter: v.notAfter, remaining, attempts: this.attempts, ...(this.lastError ? { lastError: this.lastError } : {}) });
  }
}

/** A TLS credential: the certificate chain (leaf first) and its private key, PEM. */
export interface Credential {
  cert: string;
  key: string | KeyObject;
}

export interface KeepRenewedOptions extends Omit<RenewerOptions, "current" | "renew" | "clock"> {
  /** The credential the server was started with (its validity starts the schedule). */
  current?: Credential;
  /** Context options kept across swaps (ca, minVersion, ciphers...). */
  context?: SecureContextOptions;
}

/**
 * Keeps a running TLS server's certificate renewed: `issue` gets a new
 * credential (a new key and its certificate), which goes into the server with
 * setSecureContext, so new handshakes use it and open connections are not
 * touched: no restart, no dropped connection. `target` may be a function
 * instead of a server, for a listener that swaps its context itself (e.g.
 * PkiService#setIssuanceTls).
 */
export function keepRenewed(
  target: Pick<TlsServer, "setSecureContext"> | ((cred: Credential) => void),
  issue: () => Promise<Credential>,
  clock: Clock = realClock,
  options: KeepRenewedOptions = {},
): Renewer {
  const install = typeof target === "function" ? target : (cred: Credential) => target.setSecureContext({ ...options.context, cert: cred.cert, key: keyPem(cred.key) });
  const renewer = new Renewer({
    ...options,
    clock,
    current: options.current ? validityOf(options.current.cert) : undefined,
    renew: async () => {
      const cred = await issue();
      const v = validityOf(cred.cert);
      install(cred);
      return v;
    },
  });
  return renewer.start();
}

function keyPem(key: string | KeyObject): string {
  return typeof key === "string" ? key : (key.export({ type: "pkcs8", format: "pem" }) as string);
}

/** What keepRenewed needs from the PKI to renew the engine's own certificates (PkiService has it). */
export interface EngineIssuer {
  issueForEngine(profileId: string, publicKey: KeyObject, names: { cn?: string; dns?: string[]; ip?: string[]; uri?: string[]; validity?: string }): Promise<{ certificate: string; chain: string[] }>;
}

/**
 * An `issue` function for keepRenewed that gives the engine's listener a new
 * P-256 key per renewal, certified under `profile` by the engine's own CA; the
 * private key never leaves the process. The chain sent is leaf + intermediates.
 */
export function engineCredential(pki: EngineIssuer, profile: string, names: { cn?: string; dns?: string[]; ip?: string[]; validity?: string }, generate: () => { privateKey: KeyObject; publicKey: KeyObject } = () => generateKeyPairSync("ec", { namedCurve: "P-256" })): () => Promise<Credential> {
  return async () => {
    const k = generate();
    const out = await pki.issueForEngine(profile, k.publicKey, names);
    // PEM, which every TLS API takes (node 20's tls options do not take a KeyObject).
    return { cert: out.certificate + out.chain.slice(0, -1).join(""), key: k.privateKey.export({ type: "pkcs8", format: "pem" }) as string };
  };
}
