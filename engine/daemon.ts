/**
 * `viw run`: wires the hosted services behind the reconciler and serves the
 * admin port (DESIGN.md §4): /healthz, /readyz, /v1/status, /metrics,
 * /v1/webhook/git, plus the handlers other capabilities mount there
 * (/v1/query, /v1/proof, /dashboards/). Writes DATA/run/endpoints.json once
 * every listener is bound.
 */
import Fastify, { type FastifyInstance } from "fastify";
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pino, type Logger } from "pino";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import {
  DirSource,
  LocalGitSource,
  Reconciler,
  RemoteGitSource,
  Timeline,
  allowedPrincipals,
  checkWebhook,
  keySigner,
  readTimeline,
  type Attempt,
  type ConfigEvent,
  type Service,
  type Source,
} from "./gitops/index.js";
import { parseDuration, type DesiredState } from "./config/index.js";
import { KeyRing, createPkiService, generatePrivateKey, initCa, softwareSigner, toPem, type PkiService } from "./pki/index.js";
import { PIN_TELEMETRY_CONSUMER, PinTelemetry, authorityPki, emergencyRoutes, keepRenewed, pinRoutes, realClock, type Renewer } from "./pki/pins/index.js";
import { Router, createSiemService, openJournal, type LocalJournal, type SiemService } from "./siem/index.js";
import { Detector } from "./siem/detect/index.js";
import { createSealer, proofRoutes, type Sealer } from "./siem/chain/index.js";
import { AuditLog, auditTlsServer } from "./audit/index.js";
import type { TlsAudit } from "./audit/index.js";
import type { Server as TlsServer } from "node:tls";


export type ListenerName = "issuance" | "pki" | "syslog" | "bulk" | "admin";
export const LISTENER_NAMES: readonly ListenerName[] = ["issuance", "pki", "syslog", "bulk", "admin"];
export const DEFAULT_LISTEN: Record<ListenerName, { host: string; port: number }> = {
  issuance: { host: "127.0.0.1", port: 8444 },
  pki: { host: "127.0.0.1", port: 8080 },
  syslog: { host: "127.0.0.1", port: 6514 },
  bulk: { host: "127.0.0.1", port: 7443 },
  admin: { host: "127.0.0.1", port: 9090 },
};

export interface DaemonOptions {
  /** A config directory (dev: watched as files; with --trust: followed as a git repo). */
  repo?: string;
  /** A git remote followed into DATA/git. */
  gitUrl?: string;
  branch?: string;
  data: string;
  /** Allowed-signers file. Required outside dev mode. */
  trust?: string;
  /** A GnuPG home holding the trusted OpenPGP public keys (GPG-signed commits; optional). */
  trustGpg?: string;
  dev?: boolean;
  allowRollback?: boolean;
  listen?: Partial<Record<ListenerName, { host: string; port: number }>>;
  sealInterval?: string;
  store?: "sqlite" | "elasticsearch";
  elasticsearchUrl?: string;
  pollIntervalMs?: number;
  webhookSecret?: string;
  logger?: Logger;
  /** Extra services (tests, plug-ins); the capability services are wired below. */
  services?: Service[];
  /** false: only the reconciler and admin port (no PKI/SIEM), for tests of the config flow alone. */
  capabilities?: boolean;
}

/** The dev client identity the default issuance policy authorises (DESIGN.md §4), also accepted on syslog and bulk. */
const DEV_CLIENT = { profile: "backend-client", cn: "backend.viworks.example", issuer: "int-backend" };

interface Capabilities {
  audit: AuditLog;
  keys: KeyRing;
  journal: LocalJournal;
  siem: SiemService;
  detector: Detector;
  pki: PkiService;
  pins: PinTelemetry;
  pinsService: Service;
  sealer?: Sealer;
}

/** A handler group another capability serves on the admin port. */
export interface AdminMount {
  prefix: string;
  register(app: FastifyInstance): void | Promise<void>;
}

export class Daemon {
  readonly logger: Logger;
  readonly data: string;
  reconciler!: Reconciler;
  private source!: Source;
  private admin!: FastifyInstance;
  private timeline!: Timeline;
  private readonly registry = new Registry();
  private readonly mounts: AdminMount[] = [];
  private readonly endpoints: Partial<Record<ListenerName, string>> = {};
  private readonly events: ConfigEvent[] = [];
  private eventSink?: (events: ConfigEvent[]) => Promise<void> | void;
  private timelineVerified = true;
  private timelineError?: string;
  private stopping = false;
  private startedAt = new Date();

  constructor(readonly opts: DaemonOptions) {
    this.data = resolve(opts.data);
    this.logger = opts.logger ?? pino({ level: process.env.VIW_LOG_LEVEL ?? "info", redact: ["*.secret", "*.token", "*.password", "*.key"] });
  }

  /** Adds handlers to the admin port (before start). */
  mount(m: AdminMount): void {
    this.mounts.push(m);
  }

  /** Where config events go (the journal, once the SIEM is wired); until then they are kept in memory for status. */
  setEventSink(sink: (events: ConfigEvent[]) => Promise<void> | void): void {
    this.eventSink = sink;
  }

  async start(): Promise<void> {
    const o = this.opts;
    this.startedAt = new Date();
    await mkdir(join(this.data, "run"), { recursive: true });
    this.source = this.makeSource();
    const prior = await readTimeline(this.data);
    if (!prior.ok) {
      this.timelineVerified = false;
      this.timelineError = prior.error;
      this.logger.error({ error: prior.error }, "the timeline does not verify; new entries are appended after it");
    }
    const lastApplied = [...prior.entries].reverse().find((e) => e.type === "applied");
    this.timeline = await Timeline.open(this.data);
    const metrics = this.metrics();
    if (o.capabilities !== false) this.caps = await this.createCapabilities();
    const caps = this.caps;
    this.reconciler = new Reconciler({
      source: this.source,
      services: [...(caps ? [caps.pki, caps.siem, caps.detector, caps.pinsService] : []), ...(o.services ?? [])],
      trust: o.trust,
      trustGpg: o.trustGpg,
      allowRollback: o.allowRollback,
      timeline: this.timeline,
      logger: this.logger,
      emit: (events) => this.deliver(events),
      observe: (a) => {
        metrics(a);
        // Each revision decision also goes to the audit log (DATA/audit/audit.log, CONFIG_REVISION).
        if (caps && a.revision && a.stage !== "fetch") {
          try {
            const ap = this.reconciler.applied;
            caps.audit.configRevision({ revision: a.revision, outcome: a.ok ? "applied" : "refused", signer: a.ok ? ap?.signer?.principal : undefined, digest: a.ok ? ap?.digest : undefined, reason: a.reason });
          } catch (err) {
            this.logger.error({ err: (err as Error).message }, "audit log write failed");
          }
        }
      },
      resume: lastApplied ? { revision: lastApplied.revision, commit: lastApplied.commit } : undefined,
      principals: o.trust ? await allowedPrincipals(o.trust) : undefined,
      beforePrepare: caps && o.dev ? (state) => this.devInitCa(caps, state) : undefined,
    });
    await this.startAdmin();
    await this.source.start((reason) => void this.reconciler.trigger(reason));
    this.logger.info({ source: this.source.description, trust: o.trust ?? o.trustGpg ?? "none (dev: unsigned revisions applied)", data: this.data, dev: !!o.dev }, "viw daemon started");
    void this.reconciler.trigger("start");
    if (!caps) {
      this.listenersUp = true;
      await this.writeEndpoints();
      return;
    }
    // Listeners need the applied revision (the CA's runtime issues their certificates).
    this.listenersTask = this.reconciler.whenReady().then(
      () => this.bringUpListeners(caps),
      () => undefined,
    );
    void this.listenersTask.catch((err: unknown) => {
      this.listenerError = (err as Error).message;
      this.logger.error({ err: (err as Error).message }, "listeners could not start");
    });
  }

  private caps?: Capabilities;
  private listenersUp = false;
  private listenerError?: string;
  private listenersTask?: Promise<void>;
  private renewer?: Renewer;
  /** The TLS session audit hooks on the issuance, syslog and bulk listeners. */
  private sessionAudits: TlsAudit[] = [];

  /** Resolves once every listener is bound and endpoints.json is written (rejects if they could not start). */
  whenListening(): Promise<void> {
    return this.listenersTask ?? Promise.resolve();
  }

  private async createCapabilities(): Promise<Capabilities> {
    const o = this.opts;
    const dev = !!o.dev;
    const log = (msg: string, err?: unknown) => this.logger.error({ err: err instanceof Error ? err.message : err }, msg);
    const keys = new KeyRing({ dataDir: this.data, pkcs11Module: process.env.VIW_PKCS11_MODULE });
    const consumers = ["detector", "sealer", PIN_TELEMETRY_CONSUMER];
    const journal = openJournal(join(this.data, "journal", "journal.db"), { consumers });
    const shipperKey = dev ? await this.devShipperKey() : undefined;
    const siem = await createSiemService({
      dataDir: this.data,
      journal,
      consumers,
      sink: o.store === "elasticsearch" ? "elasticsearch" : "sqlite",
      elasticsearch: o.elasticsearchUrl ? { clientOptions: { node: o.elasticsearchUrl } } : undefined,
      extraShippers: shipperKey ? [{ id: "dev", public_key: shipperKey }] : [],
      extraIdentities: dev ? [{ issuer: DEV_CLIENT.issuer, cn: DEV_CLIENT.cn }] : [],
      registry: this.registry,
      log,
      // Signed ingest receipts once the sealer runs (it starts after the listeners); never fails the request: its events are durable.
      bulk: { receipt: (events, receivedAt) => this.caps?.sealer?.receipt(events, receivedAt).catch((err) => log("ingest receipt failed", err)) },
    });
    // A rule changed by a revision warms its window from the embedded store (none with the Elasticsearch sink).
    const detector = new Detector({ journal, store: siem.store, registry: this.registry, onError: (err) => log("detector failed", err) });
    // One Router per applied routing table: the audit routes every TLS session record.
    const routers = new WeakMap<object, Router>();
    const route = (action: string) => {
      const routing = this.reconciler?.applied?.state.routing;
      if (!routing) return "viw-other";
      let router = routers.get(routing);
      if (!router) routers.set(routing, (router = new Router(routing)));
      return router.route(action);
    };
    const audit = new AuditLog(join(this.data, "audit"), { journal, route, onError: (err) => log("audit journal copy failed", err) });
    const pki = createPkiService({ dataDir: this.data, provider: keys, log: this.logger.child({ service: "pki" }) });
    const pins = new PinTelemetry({ stateFile: join(this.data, "pins", "telemetry.json") });
    this.mount({ prefix: "", register: async (app) => void (await app.register(siem.queryPlugin)) });
    this.mount({ prefix: "", register: async (app) => void (await app.register(pinRoutes(pins))) });
    this.mount({ prefix: "", register: async (app) => void (await app.register(emergencyRoutes({ state: () => this.reconciler.applied?.state, pki: authorityPki(pki.authority) }))) });
    this.mount({ prefix: "", register: async (app) => void (await app.register(proofRoutes({ worm: join(this.data, "worm"), interval: this.sealIntervalMs(), index: () => this.caps?.sealer?.eventIndex }))) });
    this.setEventSink(async (events) => {
      const routing = this.reconciler.applied?.state.routing;
      const router = routing ? new Router(routing) : undefined;
      const received_at = new Date().toISOString();
      await journal.append(events.map((event) => ({ index: router?.route(event.action) ?? "viw-policy", event: { ...event, received_at } })));
    });
    return { audit, keys, journal, siem, detector, pki, pins, pinsService: pins.service() };
  }

  private sealIntervalMs(): number {
    const v = this.opts.sealInterval;
    return v ? parseDuration(v) : 60_000;
  }

  /** DATA/dev/shipper-dev.key: an Ed25519 key accepted as shipper `dev` (dev mode only). Returns its public key (base64 raw). */
  private async devShipperKey(): Promise<string> {
    const dir = join(this.data, "dev");
    await mkdir(dir, { recursive: true });
    const file = join(dir, "shipper-dev.key");
    let key: KeyObject;
    try {
      key = createPrivateKey(await readFile(file));
    } catch {
      key = generatePrivateKey("ed25519");
      await writeFile(file, key.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    }
    const spki = createPublicKey(key).export({ type: "spki", format: "der" });
    return spki.subarray(spki.length - 32).toString("base64");
  }

  private caIssuers?: string;

  /**
   * Dev mode: `viw ca init` with software keys, from the first valid revision
   * and again whenever the issuers change (a new CA in dev gets its key);
   * idempotent, existing keys and certificates are kept.
   */
  private async devInitCa(caps: Capabilities, state: DesiredState): Promise<void> {
    const issuers = [...state.issuers.keys()].sort().map((id) => `${id}:${state.objectDigest("issuer", id)}`).join(",");
    if (issuers === this.caIssuers) return;
    const made = await initCa({ dataDir: this.data, state, provider: caps.keys });
    const created = made.filter((m) => m.action === "created").map((m) => m.id);
    if (created.length) this.logger.info({ created }, "dev mode: CA initialised with software keys");
    this.caIssuers = issuers;
  }

  /**
   * The engine's own certificates: the listeners' server certificate and the
   * Log Signing Key from the engine's CA; in dev mode also DATA/dev/ (the
   * Backend client certificate and the CA chain). Dev mode creates the keys;
   * production reads the keys from DATA/tls/ (listener.key, log-signing.key),
   * never creates one, and issues or renews their certificates from the CA.
   */
  private async engineCertificates(caps: Capabilities): Promise<{ listener: { cert: string; key: string; renew: () => Promise<{ cert: string; key: string }> }; caChain: string; issuers: Record<string, string>; log: { key: KeyObject; cert: string; chain: string[] } }> {
    const rt = caps.pki.authority.runtime;
    if (!rt) throw new Error("the CA has no applied revision");
    const issuers: Record<string, string> = {};
    for (const i of rt.issuers.values()) issuers[i.id] = toPem(i.cert.der, "CERTIFICATE");
    const caChain = Object.values(issuers).join("");
    const tlsDir = join(this.data, "tls");
    await mkdir(tlsDir, { recursive: true, mode: 0o700 });
    const dev = !!this.opts.dev;
    const keyOf = async (file: string, alg: "ecdsa-p256" | "ed25519"): Promise<KeyObject> => {
      try {
        return createPrivateKey(await readFile(file));
      } catch (err) {
        if (!dev) throw new Error(`${file}: ${(err as Error).message} (production never creates keys: provision it, e.g. openssl genpkey -algorithm ${alg === "ed25519" ? "ed25519" : "EC -pkeyopt ec_paramgen_curve:P-256"} -out ${file})`);
        const k = generatePrivateKey(alg);
        await writeFile(file, k.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
        return k;
      }
    };
    const certFor = async (file: string, key: KeyObject, profile: string, names: { cn?: string; dns?: string[]; ip?: string[] }): Promise<{ cert: string; chain: string[] }> => {
      if (!dev) {
        // Production: the operator provisions the key; the certificate is reused while it is valid for another week
        // and matches the key, else issued from the engine's CA for that key.
        try {
          const all = (await readFile(file, "utf8")).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];
          const leaf = new X509Certificate(all[0]!);
          if (Date.parse(leaf.validTo) > Date.now() + 7 * 86_400_000 && leaf.checkPrivateKey(key)) return { cert: all[0]!, chain: all.slice(1) };
        } catch {
          // missing or unreadable: issued below
        }
      }
      // Dev: issued afresh at each start, so it always chains to the CA in DATA.
      const issued = await caps.pki.issueForEngine(profile, createPublicKey(key), names);
      await writeFile(file, issued.certificate + issued.chain.join(""));
      return { cert: issued.certificate, chain: issued.chain };
    };
    // The listeners' names: localhost in dev; in production VIW_LISTENER_DNS / VIW_LISTENER_IP (comma-separated) when set.
    const list = (v: string | undefined, d: string[]) => (v ? v.split(",").map((x) => x.trim()).filter(Boolean) : d);
    const dns = list(process.env.VIW_LISTENER_DNS, ["localhost"]);
    const ip = list(process.env.VIW_LISTENER_IP, ["127.0.0.1", "::1"]);
    const lkey = await keyOf(join(tlsDir, "listener.key"), "ecdsa-p256");
    const lcert = await certFor(join(tlsDir, "listener.crt"), lkey, "engine-listener", { cn: dns[0], dns, ip });
    const skey = await keyOf(join(tlsDir, "log-signing.key"), "ed25519");
    const scert = await certFor(join(tlsDir, "log-signing.crt"), skey, "log-signing", { cn: "viw Log Signing Key" });
    if (dev) {
      const devDir = join(this.data, "dev");
      await mkdir(devDir, { recursive: true });
      const ckey = await keyOf(join(devDir, "backend-client.key"), "ecdsa-p256");
      await certFor(join(devDir, "backend-client.crt"), ckey, DEV_CLIENT.profile, { cn: DEV_CLIENT.cn, dns: [DEV_CLIENT.cn] });
      await writeFile(join(devDir, "ca-chain.pem"), caChain);
    }
    return {
      listener: {
        cert: lcert.cert + lcert.chain.join(""),
        key: lkey.export({ type: "pkcs8", format: "pem" }).toString(),
        // Renewal keeps the key (production never creates one) and certifies it again.
        renew: async () => {
          const issued = await caps.pki.issueForEngine("engine-listener", createPublicKey(lkey), { cn: dns[0], dns, ip });
          await writeFile(join(tlsDir, "listener.crt"), issued.certificate + issued.chain.join(""));
          return { cert: issued.certificate + issued.chain.join(""), key: lkey.export({ type: "pkcs8", format: "pem" }).toString() };
        },
      },
      caChain,
      issuers,
      log: { key: skey, cert: scert.cert, chain: scert.chain },
    };
  }

  private async bringUpListeners(caps: Capabilities): Promise<void> {
    const at = (name: ListenerName) => ({ ...DEFAULT_LISTEN[name], ...this.opts.listen?.[name] });
    const certs = await this.engineCertificates(caps);
    // From here on the timeline is signed with the Log Signing Key, whose certificate the CA issued.
    await this.timeline.useSigner(this.data, keySigner(certs.log.key, certs.log.cert + certs.log.chain.join("")));
    const tls = { cert: certs.listener.cert, key: certs.listener.key, ca: certs.caChain };
    // Every TLS listener records its sessions in the Dogtag format (engine/audit) and as journal events.
    // auditTlsServer passes the serial as the store keeps it (lowercase hex, no leading zero bytes): no normalising per handshake.
    const isRevoked = (serial: string) => caps.pki.authority.store.isRevoked(serial);
    // The issuance listener is an https.Server (a tls.Server underneath); the hook needs only its TLS events.
    const auditSessions = (component: "pki" | "siem") => (name: string, server: object) => {
      this.sessionAudits.push(auditTlsServer(server as TlsServer, { listener: name, audit: caps.audit, component, isRevoked, idleTimeoutMs: 300_000 }));
    };
    const pki = await caps.pki.listen({ issuance: { ...at("issuance"), tls }, pki: at("pki"), beforeListen: auditSessions("pki") });
    // The listeners' certificate is renewed in place (2/3 of its life) without a restart: issuance, syslog and bulk share it.
    this.renewer = keepRenewed((cred) => {
      const renewed = { cert: cred.cert, key: typeof cred.key === "string" ? cred.key : cred.key.export({ type: "pkcs8", format: "pem" }).toString(), ca: certs.caChain };
      caps.pki.setIssuanceTls(renewed);
      caps.siem.setTls(renewed);
    }, certs.listener.renew, realClock, {
      current: { cert: certs.listener.cert, key: certs.listener.key },
    });
    this.renewer.on("failed", (err, { retryIn }) => this.logger.error({ err: err.message, retry_in_ms: retryIn }, "listener certificate renewal failed; retrying"));
    const siem = await caps.siem.listen({ syslog: { ...at("syslog"), tls: { ...tls, issuers: certs.issuers } }, bulk: { ...at("bulk"), tls: { ...tls, issuers: certs.issuers } }, beforeListen: auditSessions("siem") });
    Object.assign(this.endpoints, { issuance: pki.issuance, pki: pki.pki, syslog: siem.syslog, bulk: siem.bulk });
    caps.detector.start();
    caps.pins.start(caps.journal, (err) => this.logger.error({ err: (err as Error).message }, "pin telemetry failed; retrying"));
    const sealer = createSealer({
      journal: caps.journal,
      wormDir: join(this.data, "worm"),
      signer: softwareSigner(certs.log.key),
      certificatePem: certs.log.cert,
      chainPem: certs.log.chain,
      interval: this.sealIntervalMs(),
      indexFile: join(this.data, "chain", "events.db"),
      onError: (err) => this.logger.error({ err: (err as Error).message }, "seal failed; retried next tick"),
    });
    await this.reconciler.attach(sealer);
    await sealer.start();
    caps.sealer = sealer;
    await this.writeEndpoints();
    this.listenersUp = true;
    this.logger.info({ endpoints: this.endpoints }, "listening");
  }

  private makeSource(): Source {
    const o = this.opts;
    if (o.gitUrl) {
      return new RemoteGitSource({ url: o.gitUrl, branch: o.branch ?? "main", dir: join(this.data, "git"), intervalMs: o.pollIntervalMs });
    }
    const repo = resolve(o.repo ?? ".");
    if (o.trust || o.trustGpg) return new LocalGitSource(repo, o.branch);
    return new DirSource(repo);
  }

  private async deliver(events: ConfigEvent[]): Promise<void> {
    this.events.push(...events);
    if (this.events.length > 200) this.events.splice(0, this.events.length - 200);
    if (this.eventSink) await this.eventSink(events);
  }

  private metrics(): (a: Attempt) => void {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    const info = new Gauge({ name: "viw_config_revision_info", help: "The applied config revision (value 1)", labelNames: ["revision", "digest", "signer"], registers: [r] });
    const appliedAt = new Gauge({ name: "viw_config_applied_timestamp_seconds", help: "When the applied revision went live", registers: [r] });
    const duration = new Histogram({
      name: "viw_reconcile_duration_seconds",
      help: "Time from the start of a reconcile to the revision being live or refused",
      labelNames: ["result"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [r],
    });
    const failures = new Counter({ name: "viw_reconcile_failures_total", help: "Refused or failed reconciles, by stage", labelNames: ["stage"], registers: [r] });
    const waiting = new Gauge({ name: "viw_config_approvals_missing", help: "Approvals the last attempted revision still needs (0 when none is waiting)", registers: [r] });
    const daemon = this;
    new Gauge({
      name: "viw_ready",
      help: "1 once a first revision is live",
      registers: [r],
      collect() {
        this.set(daemon.reconciler?.applied ? 1 : 0);
      },
    });
    return (a) => {
      duration.observe({ result: a.ok ? "applied" : "refused" }, a.durationMs / 1000);
      if (!a.ok) failures.inc({ stage: a.stage ?? "unknown" });
      if (a.stage !== "fetch") waiting.set(a.missing_approvals?.missing ?? 0);
      const ap = this.reconciler?.applied;
      if (a.ok && ap) {
        info.reset();
        info.set({ revision: ap.revision, digest: ap.digest, signer: ap.signer?.principal ?? "" }, 1);
        appliedAt.set(ap.appliedAt.getTime() / 1000);
      }
    };
  }

  status(): Record<string, unknown> {
    const rc = this.reconciler;
    const ap = rc?.applied;
    const la = rc?.lastAttempt;
    const services: Record<string, unknown> = {};
    for (const s of rc?.serviceList ?? []) {
      try {
        services[s.name] = s.status?.() ?? {};
      } catch (err) {
        services[s.name] = { error: (err as Error).message };
      }
    }
    return {
      applied: ap
        ? {
            revision: ap.revision,
            digest: ap.digest,
            applied_at: ap.appliedAt.toISOString(),
            commit: ap.commit ?? null,
            tree: ap.tree ?? null,
            trust: ap.trust,
            signer: ap.signer,
            approvers: ap.approvers,
            bootstrap: ap.bootstrap,
            changes: ap.plan.changes,
            relaxations: ap.plan.relaxations,
          }
        : null,
      last_attempt: la
        ? {
            revision: la.revision,
            ok: la.ok,
            at: la.at.toISOString(),
            stage: la.stage ?? null,
            reason: la.reason ?? null,
            errors: la.errors,
            missing_approvals: la.missing_approvals,
            relaxations: la.relaxations,
            duration_ms: Math.round(la.durationMs * 10) / 10,
            timings_ms: la.timings ?? {},
          }
        : null,
      services,
      source: { kind: this.source?.kind, description: this.source?.description },
      trust: this.opts.trust || this.opts.trustGpg
        ? { mode: "signed", allowed_signers: this.opts.trust ?? null, gpg_keyring: this.opts.trustGpg ?? null, allow_rollback: !!this.opts.allowRollback }
        : { mode: "unsigned", warning: "dev mode without --trust: revisions are applied without signature checks or approvals" },
      timeline: { file: this.timeline ? join(this.data, "timeline", "timeline.jsonl") : null, head: this.timeline?.headHash ?? null, verified_at_start: this.timelineVerified, error: this.timelineError ?? null },
      endpoints: this.endpoints,
      listeners: { up: this.listenersUp, error: this.listenerError ?? null },
      started_at: this.startedAt.toISOString(),
      recent_events: this.events.slice(-20),
    };
  }

  private async startAdmin(): Promise<void> {
    const app = Fastify({ logger: false, bodyLimit: 25 * 1024 * 1024 });
    this.admin = app;
    app.get("/healthz", async () => ({ ok: true }));
    app.get("/readyz", async (_req, reply) => {
      if (this.reconciler.applied && this.listenersUp && !this.stopping) return { ready: true, revision: this.reconciler.applied.revision };
      const reason = this.stopping ? "shutting down" : !this.reconciler.applied ? "no revision applied yet" : (this.listenerError ?? "listeners starting");
      return reply.code(503).send({ ready: false, reason, last_attempt: this.status().last_attempt });
    });
    app.get("/v1/status", async () => this.status());
    app.get("/metrics", async (_req, reply) => reply.type(this.registry.contentType).send(await this.registry.metrics()));
    await app.register(async (scope) => {
      // The webhook is authenticated over the raw body (GitHub's HMAC), so it gets the bytes, not parsed JSON.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
      scope.post("/v1/webhook/git", async (req, reply) => {
        const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const secret = this.opts.webhookSecret ?? process.env.VIW_WEBHOOK_SECRET;
        const check = checkWebhook(req.headers, body, secret || undefined, !!this.opts.dev);
        if (!check.ok) return reply.code(check.status).send({ error: { code: check.status === 401 ? "bad_signature" : "disabled", message: check.message } });
        const branch = this.opts.branch;
        if (check.ref && branch && check.ref.startsWith("refs/") && check.ref !== `refs/heads/${branch}` && !check.ref.startsWith("refs/notes/")) {
          return reply.code(202).send({ accepted: false, ignored: `push to ${check.ref}, following refs/heads/${branch}` });
        }
        const run = this.reconciler.trigger(`webhook (${check.forge})`);
        if ((req.query as Record<string, string>).wait === "true") {
          await run;
          await this.reconciler.flushEvents();
          return reply.code(200).send({ accepted: true, status: this.status() });
        }
        return reply.code(202).send({ accepted: true });
      });
    });
    for (const m of this.mounts) await app.register(async (scope) => m.register(scope), { prefix: m.prefix });
    const l = { ...DEFAULT_LISTEN.admin, ...this.opts.listen?.admin };
    if (!/^(127\.|::1$|localhost$)/.test(l.host)) {
      this.logger.warn({ host: l.host }, "the admin port (status, metrics, query, webhook) is meant for loopback; put a reverse proxy in front of it for forge webhooks");
    }
    await app.listen({ host: l.host, port: l.port });
    const addr = app.server.address();
    const port = typeof addr === "object" && addr ? addr.port : l.port;
    this.endpoints.admin = `http://${l.host.includes(":") ? `[${l.host}]` : l.host}:${port}`;
  }

  get adminUrl(): string {
    return this.endpoints.admin ?? "";
  }

  private async writeEndpoints(): Promise<void> {
    const file = join(this.data, "run", "endpoints.json");
    await writeFile(file + ".tmp", JSON.stringify(this.endpoints) + "\n");
    await rename(file + ".tmp", file);
  }

  /** Renews the listeners' certificate now (otherwise at 2/3 of its life); new handshakes get it, open connections keep theirs. */
  renewListenerCertificate(): Promise<void> {
    return this.renewer?.renewNow() ?? Promise.resolve();
  }

  /** SIGHUP: reconcile now, retrying a remembered refusal. */
  reconcileNow(force = true): Promise<void> {
    return this.reconciler.trigger(force ? "forced (SIGHUP)" : "requested", force);
  }

  /** SIGTERM: stop taking revisions, drain in-flight requests and the journal, close services, mark the timeline. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.logger.info("draining");
    await this.source?.close();
    await this.reconciler?.close();
    await this.listenersTask?.catch(() => undefined);
    await this.admin?.close();
    const caps = this.caps;
    const step = async (name: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (err) {
        this.logger.error({ service: name, err: (err as Error).message }, "close failed");
      }
    };
    this.renewer?.stop();
    await Promise.all(this.sessionAudits.map((a) => step(`audit ${a.listener}`, () => a.shutdown(2_000))));
    if (caps) {
      await step("pki", () => caps.pki.close());
      await step("ingest", () => caps.siem.close());
      await step("detector", () => caps.detector.stop());
      await step("sealer", () => caps.sealer?.stop());
      await step("pins", () => caps.pins.stop());
    }
    const own = new Set<Service>(caps ? [caps.pki, caps.siem, caps.detector, caps.pinsService, ...(caps.sealer ? [caps.sealer] : [])] : []);
    for (const s of [...(this.reconciler?.serviceList ?? [])].reverse()) if (!own.has(s)) await step(s.name, () => s.close?.());
    if (this.reconciler?.applied) {
      const ap = this.reconciler.applied;
      await step("timeline", () => this.timeline.append({ type: "stopped", result: "stopped", revision: ap.revision, commit: ap.commit, reason: "daemon stopped (SIGTERM)" }));
    }
    if (caps) {
      await step("audit", () => caps.audit.close());
      await step("journal", () => caps.journal.close());
      await step("keys", () => caps.keys.close());
    }
    this.logger.info("stopped");
  }
}

export function createDaemon(opts: DaemonOptions): Daemon {
  return new Daemon(opts);
}
