/**
 * `viw run`: wires the hosted services behind the reconciler and serves the
 * admin port (DESIGN.md §4): /healthz, /readyz, /v1/status, /metrics,
 * /v1/webhook/git, plus the handlers other capabilities mount there
 * (/v1/query, /v1/proof, /dashboards/). Writes DATA/run/endpoints.json once
 * every listener is bound.
 */
import Fastify, { type FastifyInstance } from "fastify";
import { mkdir, rename, writeFile } from "node:fs/promises";
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
  readTimeline,
  type Attempt,
  type ConfigEvent,
  type Service,
  type Source,
} from "./gitops/index.js";

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

  /** Records a bound listener's URL for endpoints.json. */
  setEndpoint(name: ListenerName, url: string): void {
    this.endpoints[name] = url;
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
    this.reconciler = new Reconciler({
      source: this.source,
      services: o.services ?? [],
      trust: o.trust,
      allowRollback: o.allowRollback,
      timeline: this.timeline,
      logger: this.logger,
      emit: (events) => this.deliver(events),
      observe: metrics,
      resume: lastApplied ? { revision: lastApplied.revision, commit: lastApplied.commit } : undefined,
      principals: o.trust ? await allowedPrincipals(o.trust) : undefined,
    });
    await this.startAdmin();
    await this.source.start((reason) => void this.reconciler.trigger(reason));
    await this.writeEndpoints();
    this.logger.info({ source: this.source.description, trust: o.trust ?? "none (dev: unsigned revisions applied)", data: this.data, endpoints: this.endpoints }, "viw daemon started");
    void this.reconciler.trigger("start");
  }

  private makeSource(): Source {
    const o = this.opts;
    if (o.gitUrl) {
      return new RemoteGitSource({ url: o.gitUrl, branch: o.branch ?? "main", dir: join(this.data, "git"), intervalMs: o.pollIntervalMs });
    }
    const repo = resolve(o.repo ?? ".");
    if (o.trust) return new LocalGitSource(repo, o.branch);
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
          }
        : null,
      services,
      source: { kind: this.source?.kind, description: this.source?.description },
      trust: this.opts.trust
        ? { mode: "signed", allowed_signers: this.opts.trust, allow_rollback: !!this.opts.allowRollback }
        : { mode: "unsigned", warning: "dev mode without --trust: revisions are applied without signature checks or approvals" },
      timeline: { file: this.timeline ? join(this.data, "timeline", "timeline.jsonl") : null, head: this.timeline?.headHash ?? null, verified_at_start: this.timelineVerified, error: this.timelineError ?? null },
      endpoints: this.endpoints,
      started_at: this.startedAt.toISOString(),
      recent_events: this.events.slice(-20),
    };
  }

  private async startAdmin(): Promise<void> {
    const app = Fastify({ logger: false, bodyLimit: 25 * 1024 * 1024 });
    this.admin = app;
    app.get("/healthz", async () => ({ ok: true }));
    app.get("/readyz", async (_req, reply) => {
      if (this.reconciler.applied && !this.stopping) return { ready: true, revision: this.reconciler.applied.revision };
      return reply.code(503).send({ ready: false, reason: this.stopping ? "shutting down" : "no revision applied yet", last_attempt: this.status().last_attempt });
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
          return reply.code(200).send({ accepted: true, status: this.status() });
        }
        return reply.code(202).send({ accepted: true });
      });
    });
    for (const m of this.mounts) await app.register(async (scope) => m.register(scope), { prefix: m.prefix });
    const l = { ...DEFAULT_LISTEN.admin, ...this.opts.listen?.admin };
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

  /** SIGHUP: reconcile now, retrying a remembered refusal. */
  reconcileNow(force = true): Promise<void> {
    return this.reconciler.trigger(force ? "forced (SIGHUP)" : "requested", force);
  }

  /** SIGTERM: stop taking revisions, drain in-flight requests, close services, mark the timeline. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.logger.info("draining");
    await this.source?.close();
    await this.reconciler?.close();
    await this.admin?.close();
    for (const s of [...(this.reconciler?.serviceList ?? [])].reverse()) {
      try {
        await s.close?.();
      } catch (err) {
        this.logger.error({ service: s.name, err: (err as Error).message }, "service close failed");
      }
    }
    if (this.reconciler?.applied) {
      const ap = this.reconciler.applied;
      await this.timeline.append({ type: "stopped", result: "stopped", revision: ap.revision, commit: ap.commit, reason: "daemon stopped (SIGTERM)" });
    }
    this.logger.info("stopped");
  }
}

export function createDaemon(opts: DaemonOptions): Daemon {
  return new Daemon(opts);
}
