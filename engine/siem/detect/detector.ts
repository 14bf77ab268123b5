/**
 * The detector service: a journal consumer that runs the revision's rules over
 * every record after its cursor and appends the alerts back into the journal
 * (index viw-alerts), so they are stored, sealed and shipped like any event.
 * The cursor is committed only after the alerts of a batch are durable; a
 * crash replays from the cursor and the deterministic alert ids make the
 * re-sent alerts the same documents.
 *
 * Hot reload (Service): prepare compiles the next revision's rules (refusing
 * it, positioned, when one does not compile); commit swaps them in — a rule
 * whose digest is unchanged keeps its window state, a removed rule's state is
 * dropped, and a changed rule starts fresh and warms its window from the
 * store: the stored events of its reach (window, suppression) that the
 * detector has already evaluated are replayed into the new state before any
 * live event. Warming only builds state: a condition that holds entirely
 * within already-evaluated events does not alert (the old definition judged
 * those events) but starts its group's suppression; the next live event that
 * completes a condition alerts with all contributing events, warmed ones
 * included. Exactly the evaluated events are warmed: events the detector has
 * not reached yet (its journal backlog) are left out, they arrive live; events
 * it evaluated that the store has not written yet are read from the journal.
 * Without a store, a changed rule starts empty.
 */
import { Gauge } from "prom-client";
import type { Registry } from "prom-client";
import type { DesiredState } from "../../config/index.js";
import { ServiceError } from "../../gitops/service.js";
import type { Prepared, Service } from "../../gitops/service.js";
import { consume } from "../journal/index.js";
import type { Consumer, Journal, JournalRecord, NormalizedEvent } from "../journal/index.js";
import { Router } from "../normalize/index.js";
import { DEFAULT_LATENESS_MS, Engine } from "./engine.js";
import { compileRules, RuleCompileError } from "./rules.js";
import type { CompiledRule } from "./rules.js";
import type { EventStore } from "../store/index.js";
import { eventTime } from "./time.js";

export const ALERT_INDEX = "viw-alerts";

export interface DetectorOptions {
  journal: Journal;
  /** The consumer name its cursor is kept under. Default "detector". */
  consumer?: string;
  /** Allowed lateness of events. Default 30 s. */
  latenessMs?: number;
  /**
   * Processing-time timer: when no event arrived for this long, event time is
   * carried forward by the wall time elapsed since the last event, so absence
   * rules fire on a quiet stream. Default 1 s.
   */
  quietMs?: number;
  /** Events stamped further ahead of the wall clock are counted and not used. Default 5 minutes. */
  maxFutureMs?: number;
  /**
   * Records per batch at most. Default 5000: when the detector keeps up a read
   * returns what one append brought (a few hundred records), so the cap only
   * matters in a backlog, where fewer, larger batches mean fewer cursor commits
   * (a synchronous SQLite write each) while one batch still takes only
   * milliseconds of evaluation.
   */
  batch?: number;
  /** Wall clock (ms). */
  now?: () => number;
  /** Where the state-size gauges are registered (the admin port's /metrics). */
  registry?: Registry;
  onError?: (err: unknown) => void;
  /** The embedded store, read to warm a changed rule's window at a reload. Without it a changed rule starts empty. */
  store?: EventStore;
  /** The store's journal consumer (its cursor says what the store may not have written yet). Default "store". */
  storeConsumer?: string;
}

export class Detector implements Service {
  readonly name = "detector";
  private readonly journal: Journal;
  private readonly consumerName: string;
  private readonly latenessMs: number;
  private readonly quietMs: number;
  private readonly batch: number;
  private readonly now: () => number;
  private readonly onError: (err: unknown) => void;
  private readonly engine: Engine;
  private router: Router | undefined;
  private revision: string | undefined;
  private consumer: Consumer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wanted = false;
  /** Alerts and notices not yet appended. */
  private out: { index: string; event: NormalizedEvent }[] = [];
  private lastEventWall = 0;
  private lastEventTime = -Infinity;
  private flushing: Promise<void> = Promise.resolve();
  private appended = 0;
  private processedSeq = -1;
  private readonly store: EventStore | undefined;
  private readonly storeConsumer: string;
  /** Events replayed into each changed rule at the last reload. */
  private warmed: Record<string, number> = {};

  constructor(opts: DetectorOptions) {
    this.journal = opts.journal;
    this.consumerName = opts.consumer ?? "detector";
    this.latenessMs = opts.latenessMs ?? DEFAULT_LATENESS_MS;
    this.quietMs = opts.quietMs ?? 1000;
    this.batch = opts.batch ?? 5000;
    this.now = opts.now ?? Date.now;
    this.onError = opts.onError ?? (() => {});
    this.store = opts.store;
    this.storeConsumer = opts.storeConsumer ?? "store";
    this.engine = new Engine([], {
      latenessMs: this.latenessMs,
      maxFutureMs: opts.maxFutureMs ?? 5 * 60_000,
      now: this.now,
      onAlert: (a) => this.out.push({ index: ALERT_INDEX, event: a }),
      onNotice: (e) => this.out.push({ index: this.router?.route(e.action) ?? "viw-other", event: e }),
    });
    if (opts.registry) this.registerMetrics(opts.registry);
  }

  async prepare(next: DesiredState): Promise<Prepared> {
    let rules;
    try {
      rules = compileRules(next);
    } catch (e) {
      if (e instanceof RuleCompileError) throw new ServiceError(this.name, "a detection rule does not compile", e.diagnostics);
      throw e;
    }
    const router = new Router(next.routing);
    return {
      commit: () => {
        const changed = this.engine.setRules(rules);
        this.warmed = {};
        if (changed.length) {
          try {
            this.warm(changed);
          } catch (err) {
            // A store that cannot be read leaves the changed rules empty (as without a store); the swap itself stands.
            this.onError(err);
          }
        }
        this.router = router;
        this.revision = next.revision;
        if (this.wanted) this.run();
      },
    };
  }

  /** Starts consuming (once a revision has been committed: before that there are no rules to apply). */
  start(): void {
    this.wanted = true;
    if (this.revision !== undefined) this.run();
  }

  private run(): void {
    if (this.consumer) return;
    this.consumer = consume(this.journal, this.consumerName, (records) => this.handle(records), {
      batch: this.batch,
      onError: (err) => this.onError(err),
    });
    this.timer = setInterval(() => this.tick(), Math.max(10, Math.min(this.quietMs, 1000)));
    this.timer.unref();
  }

  private async handle(records: JournalRecord[]): Promise<void> {
    // A batch is retried when appending its alerts failed: its events are already in the windows (not counted twice);
    // only the kept alerts are appended again.
    for (const r of records) {
      if (r.seq <= this.processedSeq) continue;
      this.engine.process(r.event);
      this.processedSeq = r.seq;
    }
    this.lastEventWall = this.now();
    this.lastEventTime = Math.max(this.lastEventTime, this.engine.lastEventTime);
    await this.flush();
  }

  /** Replays the already-evaluated events of the changed rules' reach into their fresh state. */
  private warm(changed: CompiledRule[]): void {
    const store = this.store;
    const to = this.engine.lastEventTime;
    if (!store || to === -Infinity || this.processedSeq < 0) return;
    let from = Infinity;
    for (const r of changed) from = Math.min(from, this.engine.wm - Engine.reach(r));
    const inRange = (e: NormalizedEvent) => {
      const t = eventTime(e.timestamp);
      return t >= from && t <= to;
    };
    // Runs synchronously: the store only holds journaled records, so the backlog read after this query covers every stored event not evaluated yet.
    const byId = new Map<string, NormalizedEvent>();
    for (const e of store.eventsBetween(from, to)) byId.set(e.event_id, e);
    const pending = new Set<string>();
    for (const r of this.journalBetween(this.processedSeq, this.journal.lastSeq())) pending.add(r.event.event_id);
    // Evaluated but perhaps not written by the store yet.
    for (const r of this.journalBetween(Math.min(this.journal.cursor(this.storeConsumer), this.processedSeq), this.processedSeq)) {
      if (r.index !== ALERT_INDEX && inRange(r.event)) byId.set(r.event.event_id, r.event);
    }
    const events = [...byId.values()].filter((e) => !pending.has(e.event_id) && inRange(e));
    events.sort((a, b) => eventTime(a.timestamp) - eventTime(b.timestamp));
    const ids = new Set(changed.map((r) => r.id));
    const n = this.engine.warm(ids, events);
    for (const r of changed) this.warmed[r.id] = n;
  }

  /** Journal records with after < seq <= upTo. */
  private *journalBetween(after: number, upTo: number): Generator<JournalRecord> {
    while (after < upTo) {
      const recs = this.journal.read(after, 10_000);
      if (recs.length === 0) return;
      for (const r of recs) if (r.seq <= upTo) yield r;
      after = recs[recs.length - 1]!.seq;
    }
  }

  /** The processing-time timer: moves event time on a quiet stream so absence rules can fire. */
  private tick(): void {
    const idle = this.now() - this.lastEventWall;
    if (idle < this.quietMs || !this.engine.hasPending() || this.lastEventTime === -Infinity) return;
    this.engine.advanceWatermark(this.lastEventTime + idle - this.latenessMs);
    if (this.out.length) this.flush().catch((err) => this.onError(err));
  }

  /** Appends what fired; on failure the alerts are kept for the next attempt (the batch is retried). */
  private flush(): Promise<void> {
    const run = this.flushing.then(async () => {
      if (this.out.length === 0) return;
      const items = this.out;
      this.out = [];
      try {
        await this.journal.append(items);
        this.appended += items.length;
      } catch (err) {
        this.out = items.concat(this.out);
        throw err;
      }
    });
    this.flushing = run.catch(() => {});
    return run;
  }

  /** Resolves once everything appended so far has been evaluated and its alerts appended. */
  async idle(): Promise<void> {
    await this.consumer?.idle();
    await this.flushing;
  }

  async stop(): Promise<void> {
    this.wanted = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const c = this.consumer;
    this.consumer = undefined;
    await c?.stop();
    await this.flushing;
  }

  /** Moves the watermark by hand (tests, `viw replay`'s end of input). */
  advanceWatermark(t: number): Promise<void> {
    this.engine.advanceWatermark(t);
    return this.flush();
  }

  status(): Record<string, unknown> {
    return {
      revision: this.revision ?? null,
      rules: this.engine.rules().length,
      position: this.consumer?.position() ?? this.journal.cursor(this.consumerName),
      watermark: Number.isFinite(this.engine.wm) ? new Date(this.engine.wm).toISOString() : null,
      events: this.engine.events,
      late_events: this.engine.lateEvents,
      invalid_events: this.engine.invalidEvents,
      future_events: this.engine.futureEvents,
      appended: this.appended,
      warmed: this.warmed,
      state: this.engine.stats(),
    };
  }

  private registerMetrics(registry: Registry): void {
    const stats = () => Object.entries(this.engine.stats());
    const gauge = (name: string, help: string, pick: (s: ReturnType<Engine["stats"]>[string]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["rule"],
        registers: [registry],
        collect() {
          this.reset();
          for (const [rule, s] of stats()) this.set({ rule }, pick(s));
        },
      });
    gauge("viw_detect_state_groups", "Groups held in a rule's window state", (s) => s.groups);
    gauge("viw_detect_state_entries", "Entries (events, values, runs, waits) held in a rule's window state", (s) => s.entries);
    gauge("viw_detect_alerts", "Alerts fired by a rule since its state was created", (s) => s.alerts);
    gauge("viw_detect_late_events", "Events behind the watermark that a windowed rule did not use", (s) => s.late);
    gauge("viw_detect_evicted_groups", "Groups evicted because a rule reached limits.groups", (s) => s.evicted);
    const engine = this.engine;
    new Gauge({
      name: "viw_detect_events_late_total",
      help: "Events that arrived behind the watermark (allowed lateness exceeded)",
      registers: [registry],
      collect() {
        this.set(engine.lateEvents);
      },
    });
  }
}
