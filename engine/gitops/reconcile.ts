/**
 * The reconciler (DESIGN.md §2, config flow): one revision at a time,
 *   poll → snapshot → load/validate → plan → gate (signature, anti-rollback,
 *   approvals) → prepare every service → commit every service,
 * all or nothing. Any refusal leaves the applied revision serving. A refused
 * revision is remembered and not tried again until a new revision arrives
 * (or, for one waiting on approvals, until the approvals ref moves; or on a
 * forced reconcile, SIGHUP).
 */
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { loadSnapshot, planChanges, type DesiredState, type Diagnostic, type Plan } from "../config/index.js";
import { approvalsTip, countApprovals, readApprovals, type Approval } from "./approvals.js";
import { ServiceError, type Prepared, type Service } from "./service.js";
import type { Source } from "./source.js";
import type { PlanSummary, Timeline, TimelineRecord } from "./timeline.js";
import { isDescendant, treeOf, verifyCommit, type Signer } from "./trust.js";

const FINAL = "final";

export interface Applied {
  revision: string;
  commit?: string;
  tree?: string;
  digest: string;
  state: DesiredState;
  appliedAt: Date;
  trust: "signed" | "unsigned-dev";
  signer: Signer | null;
  approvers: Approval[];
  bootstrap: boolean;
  plan: PlanSummary;
}

export type Stage = "fetch" | "load" | "trust" | "rollback" | "approvals" | "prepare" | "commit";

export interface Attempt {
  revision: string;
  ok: boolean;
  at: Date;
  stage?: Stage;
  reason?: string;
  errors: { file: string; line: number; col: number; message: string }[];
  /** Approvals still needed (null when the revision needs none). */
  missing_approvals: null | { required: number; have: string[]; missing: number; eligible: string[] };
  relaxations: number;
  durationMs: number;
  /** Where the time went, ms per step (fetch, load, trust, plan, approvals, prepare:SERVICE, commit). */
  timings?: Record<string, number>;
}

/** An event for the event flow (policy_relaxation, config_apply), fields of DESIGN.md §5. */
export type ConfigEvent = Record<string, unknown> & { event_id: string; timestamp: string; action: string; result: string; severity: string };

export interface ReconcilerOptions {
  source: Source;
  services?: Service[];
  /** Allowed-signers file; without it (dev mode only) revisions are applied unsigned. */
  trust?: string;
  /** A GnuPG home of trusted OpenPGP keys: GPG-signed commits are accepted too (approvals stay SSH). */
  trustGpg?: string;
  allowRollback?: boolean;
  timeline: Timeline;
  logger: Logger;
  /** Delivers config events into the event flow (the journal when the SIEM runs). */
  emit?: (events: ConfigEvent[]) => void | Promise<void>;
  /** Called after every attempt (metrics). */
  observe?: (attempt: Attempt, applied: Applied | undefined) => void;
  /** The revision this data dir last applied (from the timeline): the baseline after a restart. */
  resume?: { revision: string; commit?: string };
  /** Principals listed in the allowed-signers file (status: who could still approve). */
  principals?: string[];
  /** Runs after the gate, before the services prepare (dev mode: bootstraps the CA from the first valid revision). */
  beforePrepare?: (next: DesiredState) => Promise<void>;
}

export class Reconciler {
  applied?: Applied;
  lastAttempt?: Attempt;
  private readonly services: Service[];
  private baseline?: { commit: string; state: DesiredState };
  private refused = new Map<string, string>();
  private announced = new Set<string>();
  private running?: Promise<void>;
  private again = false;
  private forceNext = false;
  private closed = false;
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(private readonly o: ReconcilerOptions) {
    this.services = [...(o.services ?? [])];
  }

  /** Adds a hosted service before the first reconcile. */
  addService(s: Service): void {
    this.services.push(s);
  }

  /**
   * Adds a service while the daemon runs (e.g. the sealer, once the Log
   * Signing Key exists): inside the one-at-a-time loop it prepares and commits
   * the applied revision, then takes part in every later one.
   */
  attach(s: Service): Promise<void> {
    return new Promise((resolve, reject) => {
      this.attaching.push({ service: s, resolve, reject });
      void this.trigger(`attach ${s.name}`);
    });
  }

  private attaching: { service: Service; resolve: () => void; reject: (e: unknown) => void }[] = [];

  private async attachPending(): Promise<void> {
    for (const a of this.attaching.splice(0)) {
      try {
        if (this.applied) (await a.service.prepare(this.applied.state, undefined)).commit();
        this.services.push(a.service);
        a.resolve();
      } catch (err) {
        this.o.logger.error({ service: a.service.name, err: (err as Error).message }, "service refused the applied revision; not attached");
        a.reject(err);
      }
    }
  }

  get serviceList(): readonly Service[] {
    return this.services;
  }

  /** Resolves once a first revision is live; rejects if the reconciler closes before. */
  whenReady(): Promise<void> {
    if (this.applied) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error("closed before a revision was applied"));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /**
   * Schedules a reconcile; calls arriving during one coalesce into one more
   * run after it. `force` retries a remembered refusal (SIGHUP).
   */
  trigger(reason: string, force = false): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (force) this.forceNext = true;
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          const f = this.forceNext;
          this.forceNext = false;
          await this.runOnce(reason, f);
        } while (this.again && !this.closed);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Waits for the reconcile in flight (drain). */
  async close(): Promise<void> {
    this.closed = true;
    await this.running;
    await this.delivering;
    for (const w of this.readyWaiters.splice(0)) w.reject(new Error("closed before a revision was applied"));
  }

  private async runOnce(reason: string, force: boolean): Promise<void> {
    await this.attachPending();
    const t0 = performance.now();
    const log = this.o.logger;
    let revision: string;
    this.timings = {};
    this.mark = t0;
    try {
      revision = await this.o.source.poll();
      this.lap("fetch");
    } catch (err) {
      this.record({ revision: this.lastAttempt?.revision ?? "", ok: false, at: new Date(), stage: "fetch", reason: (err as Error).message, errors: [], missing_approvals: null, relaxations: 0, durationMs: performance.now() - t0 });
      log.error({ err: (err as Error).message, source: this.o.source.description }, "source update failed; the applied revision keeps serving");
      return;
    }
    if (revision === this.applied?.revision) return;
    const gitDir = this.o.source.gitDir;
    const tip = gitDir && this.o.trust ? ((await (this.o.source.approvalsTip?.() ?? approvalsTip(gitDir))) ?? "") : "";
    // A refusal is final for its revision, except one waiting on approvals: that one is retried when the approvals ref moves.
    const memo = this.refused.get(revision);
    if (!force && memo !== undefined && (memo === FINAL || memo === `approvals@${tip}`)) return;

    log.info({ revision, reason }, "reconciling");
    const attempt = await this.evaluate(revision, gitDir, tip, t0);
    this.record(attempt);
  }

  private timings: Record<string, number> = {};
  private mark = 0;
  private lap(step: string): void {
    const now = performance.now();
    this.timings[step] = Math.round((now - this.mark) * 10) / 10;
    this.mark = now;
  }

  private record(a: Attempt): void {
    a.timings = this.timings;
    this.lastAttempt = a;
    this.o.observe?.(a, this.applied);
  }

  private refuse(revision: string, t0: number, stage: Stage, reason: string, extra: Partial<Attempt> = {}, memoKey = FINAL): Attempt {
    this.refused.set(revision, memoKey);
    this.o.logger.warn({ revision, stage, reason, errors: extra.errors?.length ? extra.errors : undefined }, "revision refused; the applied revision keeps serving");
    return { revision, ok: false, at: new Date(), stage, reason, errors: [], missing_approvals: null, relaxations: 0, durationMs: performance.now() - t0, ...extra };
  }

  private async evaluate(revision: string, gitDir: string | undefined, tip: string, t0: number): Promise<Attempt> {
    const o = this.o;
    const isCommit = o.source.kind === "git" && gitDir !== undefined;
    // Load and validate.
    let state: DesiredState;
    try {
      const loaded = loadSnapshot(await o.source.snapshot(revision));
      if (!loaded.state) {
        const errors = loaded.errors.map(diag);
        await this.note({ type: "refused", result: "refused", revision, commit: isCommit ? revision : undefined, reason: `invalid: ${errors.length} error(s)`, errors: errors.slice(0, 50) });
        return this.refuse(revision, t0, "load", `${errors.length} validation error(s)`, { errors });
      }
      state = loaded.state;
      this.lap("load");
    } catch (err) {
      return this.refuse(revision, t0, "load", (err as Error).message, { errors: [{ file: "", line: 0, col: 0, message: (err as Error).message }] });
    }

    // Trust: signature.
    let signer: Signer | null = null;
    let tree: string | undefined;
    const signed = !!(o.trust || o.trustGpg);
    const trust: Applied["trust"] = signed ? "signed" : "unsigned-dev";
    if (isCommit && !signed) tree = await treeOf(gitDir, revision);
    if (signed) {
      if (!isCommit) return this.refuse(revision, t0, "trust", "--trust needs a git source: a plain directory has no signatures");
      const v = await verifyCommit(gitDir, revision, { allowedSigners: o.trust, gnupgHome: o.trustGpg });
      tree = v.tree;
      if (!v.ok) {
        await this.note({ type: "refused", result: "refused", revision, commit: revision, tree, reason: v.reason });
        return this.refuse(revision, t0, "trust", v.reason);
      }
      signer = v.signer;
    }

    // Baseline after a restart: the commit this data dir last applied.
    if (!this.applied && !this.baseline && o.resume?.commit && isCommit) {
      try {
        const prev = loadSnapshot(await o.source.snapshot(o.resume.commit));
        if (prev.state) this.baseline = { commit: o.resume.commit, state: prev.state };
      } catch {
        o.logger.warn({ commit: o.resume.commit }, "the previously applied commit is not in the repository; anti-rollback starts over");
      }
    }
    this.lap("trust");
    const previous = this.applied ? { commit: this.applied.commit, state: this.applied.state } : this.baseline;
    const resumed = !this.applied && this.baseline?.commit === revision;

    // Anti-rollback.
    if (isCommit && previous?.commit && !resumed && !o.allowRollback) {
      if (!(await isDescendant(gitDir, previous.commit, revision))) {
        const reason = `${revision.slice(0, 12)} is not a descendant of the applied ${previous.commit.slice(0, 12)} (rollback or force-push); restart with --allow-rollback to accept it`;
        await this.note({ type: "refused", result: "refused", revision, commit: revision, tree, signer, reason });
        return this.refuse(revision, t0, "rollback", reason);
      }
    }

    // Plan and approvals.
    const bootstrap = !previous;
    // A bootstrap is judged against nothing (DESIGN.md §7): its additions are not relaxations.
    const plan: Plan = bootstrap ? { ...planChanges(undefined, state), relaxations: 0, tightenings: 0 } : planChanges(previous.state, state);
    if (bootstrap) plan.changes = plan.changes.map((c) => ({ ...c, verdict: undefined, reason: undefined }));
    const summary = summarize(plan);
    this.lap("plan");
    let approvers: Approval[] = [];
    let missing: Attempt["missing_approvals"] = null;
    if (plan.relaxations > 0 && !bootstrap && !resumed) {
      const rule = previous!.state.governance;
      if (signed && isCommit && rule.approvals > 0) {
        if (!o.trust) {
          const reason = `${plan.relaxations} relaxation(s) need ${rule.approvals} approval(s), and approvals are SSH signatures checked against an allowed-signers file: start with --trust FILE`;
          await this.announce(revision, plan, "held");
          await this.note({ type: "refused", result: "refused", revision, commit: revision, tree, signer, plan: summary, reason });
          return this.refuse(revision, t0, "approvals", reason, { relaxations: plan.relaxations });
        }
        const verified = await readApprovals(gitDir, revision, o.trust);
        const count = countApprovals(verified, { required: rule.approvals, approvers: rule.approvers, signer: signer ?? undefined });
        approvers = count.counted;
        if (count.missing > 0) {
          const have = count.counted.map((a) => a.principal);
          const eligible = (rule.approvers.length ? [...rule.approvers] : (o.principals ?? [])).filter((p) => p !== signer?.principal && !have.includes(p));
          missing = { required: count.required, have, missing: count.missing, eligible };
          const reason = `${plan.relaxations} relaxation(s) need ${count.required} approval(s) other than the signer's; ${count.missing} missing (viw approve ${revision.slice(0, 12)})`;
          await this.announce(revision, plan, "held");
          await this.note({ type: "refused", result: "refused", revision, commit: revision, tree, signer, plan: summary, reason, missing_approvals: count.missing, approvers });
          return this.refuse(revision, t0, "approvals", reason, { missing_approvals: missing, relaxations: plan.relaxations }, `approvals@${tip}`);
        }
      }
    }

    // Prepare every service, then commit every one.
    if (o.beforePrepare) {
      try {
        await o.beforePrepare(state);
      } catch (err) {
        return this.refuse(revision, t0, "prepare", (err as Error).message, { errors: [{ file: "", line: 0, col: 0, message: (err as Error).message }] });
      }
    }
    const current = this.applied?.state;
    this.lap("gate");
    const settled = await Promise.allSettled(
      this.services.map(async (s) => {
        const t = performance.now();
        try {
          return await s.prepare(state, current);
        } finally {
          this.timings[`prepare:${s.name}`] = Math.round((performance.now() - t) * 10) / 10;
        }
      }),
    );
    this.lap("prepare");
    const failures = settled.flatMap((r, i) => (r.status === "rejected" ? [{ service: this.services[i]!.name, err: r.reason as unknown }] : []));
    if (failures.length) {
      for (const r of settled) if (r.status === "fulfilled") safely(() => r.value.abort?.(), o.logger, "abort");
      const errors = failures.flatMap(({ service, err }) =>
        err instanceof ServiceError && err.diagnostics.length
          ? err.diagnostics.map((d) => ({ ...diag(d), message: `${service}: ${d.message}` }))
          : [{ file: "", line: 0, col: 0, message: err instanceof ServiceError ? err.message : `${service}: ${(err as Error)?.message ?? String(err)}` }],
      );
      await this.note({ type: "refused", result: "refused", revision, commit: isCommit ? revision : undefined, tree, signer, plan: summary, reason: `refused by ${failures.map((f) => f.service).join(", ")}`, errors });
      return this.refuse(revision, t0, "prepare", errors.map((e) => e.message).join("; "), { errors, relaxations: plan.relaxations });
    }
    for (const r of settled) safely(() => (r as PromiseFulfilledResult<Prepared>).value.commit(), o.logger, "commit");
    this.lap("commit");

    const applied: Applied = {
      revision,
      commit: isCommit ? revision : undefined,
      tree,
      digest: state.digest,
      state,
      appliedAt: new Date(),
      trust,
      signer,
      approvers,
      bootstrap,
      plan: summary,
    };
    this.applied = applied;
    this.baseline = undefined;
    this.refused.clear();
    await this.note({ type: "applied", result: "applied", revision, commit: applied.commit, tree, digest: state.digest, trust, signer, approvers, bootstrap, plan: summary, reason: resumed ? "resumed after restart" : undefined });
    if (!resumed) await this.announce(revision, plan, "applied");
    // The timeline head rides in the event, so the SIEM's sealed chain anchors the timeline's end.
    await this.emit([configEvent("config_apply", revision, "success", "info", { policy_id: `digest:${state.digest}`, cmd: `applied ${revision} (${summary.changes} change(s), ${summary.relaxations} relaxation(s)); timeline head ${o.timeline.headHash}` })]);
    o.logger.info({ revision, digest: state.digest, signer: signer?.principal, approvers: approvers.map((a) => a.principal), changes: summary.changes, relaxations: summary.relaxations, bootstrap, ms: Math.round(performance.now() - t0) }, "revision applied");
    this.lap("record");
    for (const w of this.readyWaiters.splice(0)) w.resolve();
    return { revision, ok: true, at: applied.appliedAt, errors: [], missing_approvals: null, relaxations: plan.relaxations, durationMs: performance.now() - t0 };
  }

  /** One critical policy_relaxation event per relaxation, once per revision and outcome. */
  private async announce(revision: string, plan: Plan, outcome: "held" | "applied"): Promise<void> {
    const key = `${revision}:${outcome}`;
    if (this.announced.has(key) || plan.relaxations === 0) return;
    this.announced.add(key);
    const events = plan.changes
      .filter((c) => c.verdict === "relaxation")
      .map((c) =>
        configEvent("policy_relaxation", revision, outcome === "applied" ? "success" : "failure", "critical", {
          policy_id: `${c.kind}/${c.id}`,
          cmd: `${c.kind}/${c.id}${c.field ? ` ${c.field}` : ""}: ${c.change}`,
          error_msg: c.reason,
          error_code: outcome === "held" ? "approvals_missing" : undefined,
          key: `${c.kind}/${c.id}/${c.field}`,
        }),
      );
    await this.emit(events);
  }

  /**
   * Hands config events to the event flow without holding up the revision:
   * they are journaled (durably, in order) while the next request is already
   * served by the new revision.
   */
  private emit(events: ConfigEvent[]): Promise<void> {
    if (!this.o.emit || events.length === 0) return Promise.resolve();
    this.delivering = this.delivering.then(async () => {
      try {
        await this.o.emit!(events);
      } catch (err) {
        this.o.logger.error({ err: (err as Error).message }, "config events could not be delivered");
      }
    });
    return Promise.resolve();
  }

  private delivering: Promise<void> = Promise.resolve();

  /** Resolves once every config event handed over so far was delivered (drain). */
  flushEvents(): Promise<void> {
    return this.delivering;
  }

  /** Timeline entry: every applied revision, and each refusal once. */
  private async note(r: TimelineRecord): Promise<void> {
    try {
      await this.o.timeline.append(r);
    } catch (err) {
      this.o.logger.error({ err: (err as Error).message }, "timeline append failed");
    }
  }
}

function diag(d: Diagnostic): { file: string; line: number; col: number; message: string } {
  return { file: d.file, line: d.line, col: d.col, message: d.message };
}

function safely(fn: () => void, log: Logger, what: string): void {
  try {
    fn();
  } catch (err) {
    // The contract says commit/abort cannot fail; a service that breaks it must not take the daemon down.
    log.error({ err: (err as Error).message }, `service ${what} threw`);
  }
}

export function summarize(plan: Plan): PlanSummary {
  return {
    changes: plan.changes.length,
    relaxations: plan.relaxations,
    items: plan.changes.slice(0, 200).map((c) => ({ kind: c.kind, id: c.id, field: c.field || undefined, change: c.change, relaxation: c.verdict === "relaxation", reason: c.reason })),
  };
}

function configEvent(action: string, revision: string, result: string, severity: string, extra: Record<string, unknown>): ConfigEvent {
  const { key, ...fields } = extra;
  const timestamp = new Date().toISOString();
  const event_id = createHash("sha256").update(`${action}\0${revision}\0${result}\0${String(key ?? "")}`).digest("hex");
  const out: ConfigEvent = { event_id, timestamp, component: "viw-engine", action, result, severity, trace_id: revision, ...fields };
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}
