/**
 * The detection engine: compiled rules evaluated over events in event time.
 *
 * Time: each event's `timestamp` drives the clock. The watermark is the
 * largest event time seen minus the allowed lateness; an event older than the
 * watermark is late — counted and reported, and not fed to windowed rules
 * (their windows before the watermark may already have been pruned or fired).
 * Absence rules fire when the watermark passes A + T; `advanceWatermark`
 * lets a processing-time timer (or a test's `advance`) move it when the stream
 * is quiet.
 *
 * Alerts fire as soon as a condition holds, once per group per suppression
 * period, with deterministic ids so two engines fed the same events emit the
 * same alert documents.
 *
 * State per rule is bounded: at most `limits.groups` groups (the oldest group
 * is evicted first) and `limits.entries_per_group` entries per group (the
 * oldest entry is dropped first); hitting a limit emits a `detector_limit`
 * event. Groups whose entries all fell out of the window and whose
 * suppression ended are evicted on a periodic sweep.
 */
import { createHash } from "node:crypto";
import type { NormalizedEvent } from "../journal/contract.js";
import type { CompiledRule } from "./rules.js";
import { eventTime, isoTime } from "./time.js";

export const DEFAULT_LATENESS_MS = 30_000;
/** Idle groups are swept at most this often (in event time). */
const SWEEP_EVERY_MS = 60_000;
/** At most one limit event per rule and limit in this much event time. */
const NOTICE_EVERY_MS = 10 * 60_000;

export interface AlertInfo {
  rule: string;
  title: string;
  revision: string;
  commit: string;
  kind: string;
  tags: readonly string[];
  group: Record<string, unknown>;
  window_start: string;
  window_end: string;
  events: string[];
  lists: Readonly<Record<string, string>>;
  pin_sets: Readonly<Record<string, string>>;
}

export type AlertEvent = NormalizedEvent & { action: "alert"; alert: AlertInfo };

export interface EngineOptions {
  /** Allowed lateness of events (ms). Default 30 s. */
  latenessMs?: number;
  /** Wall clock for `received_at` of alerts (ms). */
  now?: () => number;
  onAlert: (alert: AlertEvent) => void;
  /**
   * Events stamped further than this ahead of `now()` are not used (counted as
   * future events): one skewed or forged timestamp would otherwise drag the
   * watermark ahead and make every honest event late. Default: no check.
   */
  maxFutureMs?: number;
  /** Engine notices (a state limit hit). */
  onNotice?: (event: NormalizedEvent) => void;
  /**
   * false: offer every event to every rule with its whole condition (no action
   * index). The reference the index is tested against; default true.
   */
  index?: boolean;
}

export interface RuleStats {
  kind: string;
  groups: number;
  entries: number;
  alerts: number;
  late: number;
  errors: number;
  evicted: number;
}

/** What a rule's state needs from the engine. */
interface Host {
  readonly wm: number;
  /** The event's group key for a rule, computed once per event for all rules grouping by the same fields. */
  key(sig: number, rule: CompiledRule, ev: NormalizedEvent): string;
  fire(rule: CompiledRule, state: RuleState, key: string, group: Record<string, unknown>, start: number, end: number, ids: string[]): void;
  limit(rule: CompiledRule, state: RuleState, which: "groups" | "entries", at: number): void;
}

/** A rule's window state; kept across reloads while the rule's digest is unchanged. */
abstract class RuleState {
  alerts = 0;
  late = 0;
  errors = 0;
  evicted = 0;
  entries = 0;
  readonly noticeAt = { groups: -Infinity, entries: -Infinity };
  /** The engine's index of the rule's group_by fields (rules grouping alike share one key computation per event). */
  sig = 0;
  constructor(
    readonly digest: string,
    readonly kind: string,
  ) {}
  abstract onEvent(rule: CompiledRule, ev: NormalizedEvent, ts: number, host: Host): void;
  onWatermark(_rule: CompiledRule, _wm: number, _host: Host): void {}
  abstract sweep(rule: CompiledRule, wm: number): void;
  abstract groupCount(): number;
  /** Whether anything waits for the watermark (absence). */
  pending(): boolean {
    return false;
  }

  /** Before a new group is added: evicts the oldest group when the limit is reached. */
  protected makeRoom<G>(groups: Map<string, G>, rule: CompiledRule, host: Host, ts: number, size: (g: G) => number): void {
    if (groups.size < rule.limits.groups) return;
    // Oldest-created first: Map iteration order is insertion order, so this is O(1).
    const oldest = groups.keys().next().value as string;
    this.entries -= size(groups.get(oldest)!);
    groups.delete(oldest);
    this.evicted++;
    host.limit(rule, this, "groups", ts);
  }
}

function upperBound(a: number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (a[m]! <= x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

function lowerBound(a: number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (a[m]! < x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

function idOf(ev: NormalizedEvent): string {
  return typeof ev.event_id === "string" ? ev.event_id : String(ev.event_id);
}

/** match: each matching event alerts; with group_by and a suppression, once per group per period. */
class MatchState extends RuleState {
  readonly until = new Map<string, number>();
  onEvent(rule: CompiledRule, ev: NormalizedEvent, ts: number, host: Host): void {
    if (!rule.groupKey || rule.suppressMs === 0) {
      const key = rule.groupKey ? host.key(this.sig, rule, ev) : idOf(ev);
      host.fire(rule, this, key, rule.groupValues(ev), ts, ts, [idOf(ev)]);
      return;
    }
    const key = host.key(this.sig, rule, ev);
    const u = this.until.get(key);
    if (u !== undefined && ts < u) return;
    if (u === undefined && this.until.size >= rule.limits.groups) {
      this.until.delete(this.until.keys().next().value as string);
      this.evicted++;
      host.limit(rule, this, "groups", ts);
    }
    this.until.set(key, ts + rule.suppressMs);
    host.fire(rule, this, key, rule.groupValues(ev), ts, ts, [idOf(ev)]);
  }
  sweep(_rule: CompiledRule, wm: number): void {
    for (const [k, u] of this.until) if (u <= wm) this.until.delete(k);
  }
  groupCount(): number {
    return this.until.size;
  }
}

interface TGroup {
  /** Event times, sorted; the live entries are [head, length) (a moving start avoids shifting the arrays per event). */
  ts: number[];
  ids: string[];
  head: number;
  until: number;
}

/** Drops the first `n` live entries of a group, compacting the arrays once the dead prefix is large. */
function dropFront(g: TGroup, n: number): void {
  g.head += n;
  if (g.head > 64 && g.head * 2 > g.ts.length) {
    g.ts = g.ts.slice(g.head);
    g.ids = g.ids.slice(g.head);
    g.head = 0;
  }
}

const tSize = (g: TGroup) => g.ts.length - g.head;

/** threshold: count ≥ N per group within a sliding window (inclusive of both ends). */
class ThresholdState extends RuleState {
  readonly groups = new Map<string, TGroup>();
  onEvent(rule: CompiledRule, ev: NormalizedEvent, ts: number, host: Host): void {
    const key = host.key(this.sig, rule, ev);
    let g = this.groups.get(key);
    let t: number[];
    let i: number;
    if (g === undefined) {
      this.makeRoom(this.groups, rule, host, ts, tSize);
      // A new group's arrays start as one-element literals: a push onto [] reserves 17 slots, and most groups stay small.
      g = { ts: [ts], ids: [idOf(ev)], head: 0, until: -Infinity };
      this.groups.set(key, g);
      t = g.ts;
      i = 0;
    } else {
      t = g.ts;
      i = t.length;
      if (i === g.head || t[i - 1]! <= ts) {
        t.push(ts);
        g.ids.push(idOf(ev));
      } else {
        i = Math.max(g.head, upperBound(t, ts));
        t.splice(i, 0, ts);
        g.ids.splice(i, 0, idOf(ev));
      }
    }
    this.entries++;
    const W = rule.windowMs;
    const floor = host.wm - W;
    let drop = 0;
    while (g.head + drop < t.length && t[g.head + drop]! < floor) drop++;
    if (t.length - g.head - drop > rule.limits.entries) {
      drop = t.length - g.head - rule.limits.entries;
      host.limit(rule, this, "entries", ts);
    }
    if (drop > 0) {
      const h0 = g.head;
      dropFront(g, drop);
      this.entries -= drop;
      i = i - h0 - drop + g.head;
      if (i < g.head) return;
      t = g.ts;
    }
    const N = rule.count;
    if (t.length - g.head < N) return;
    // Windows of N consecutive events that contain the new one (one candidate when events arrive in order).
    for (let j = Math.max(g.head, i - N + 1); j <= i; j++) {
      const end = j + N - 1;
      if (end >= t.length) break;
      if (t[end]! - t[j]! > W) continue;
      if (t[end]! < g.until) return;
      g.until = t[end]! + rule.suppressMs;
      host.fire(rule, this, key, rule.groupValues(ev), t[j]!, t[end]!, g.ids.slice(j, end + 1));
      return;
    }
  }
  sweep(rule: CompiledRule, wm: number): void {
    const floor = wm - rule.windowMs;
    for (const [k, g] of this.groups) {
      let drop = 0;
      while (g.head + drop < g.ts.length && g.ts[g.head + drop]! < floor) drop++;
      if (drop) {
        dropFront(g, drop);
        this.entries -= drop;
      }
      if (g.ts.length === g.head && g.until <= wm) this.groups.delete(k);
    }
  }
  groupCount(): number {
    return this.groups.size;
  }
}

interface DValue {
  ts: number;
  id: string;
}
interface DGroup {
  vals: Map<unknown, DValue>;
  maxTs: number;
  until: number;
}

/** A value as a Map key: primitives as themselves (a Map keeps 5 and "5" apart; no string is built per event), objects by their JSON. */
function valueKey(v: unknown): unknown {
  return typeof v === "object" ? "\u0001" + JSON.stringify(v) : v;
}

const dSize = (g: DGroup) => g.vals.size;

/** distinct: ≥ N distinct values of a field per group within a sliding window. */
class DistinctState extends RuleState {
  readonly groups = new Map<string, DGroup>();
  onEvent(rule: CompiledRule, ev: NormalizedEvent, ts: number, host: Host): void {
    const v = rule.distinctField!(ev);
    if (v === null || v === undefined) return;
    const key = host.key(this.sig, rule, ev);
    let g = this.groups.get(key);
    if (g === undefined) {
      this.makeRoom(this.groups, rule, host, ts, dSize);
      g = { vals: new Map(), maxTs: -Infinity, until: -Infinity };
      this.groups.set(key, g);
    }
    const vk = valueKey(v);
    const seen = g.vals.get(vk);
    if (seen === undefined) {
      if (g.vals.size >= rule.limits.entries) {
        // The least recently seen value goes first (values are re-inserted when seen again).
        g.vals.delete(g.vals.keys().next().value);
        this.entries--;
        host.limit(rule, this, "entries", ts);
      }
      g.vals.set(vk, { ts, id: idOf(ev) });
      this.entries++;
    } else if (ts >= seen.ts) {
      seen.ts = ts;
      seen.id = idOf(ev);
      g.vals.delete(vk);
      g.vals.set(vk, seen);
    }
    if (ts > g.maxTs) g.maxTs = ts;
    const N = rule.count;
    if (g.vals.size < N) return;
    const end = g.maxTs;
    if (end < g.until) return;
    const from = end - rule.windowMs;
    const dead = host.wm - rule.windowMs;
    let n = 0;
    let start = Infinity;
    for (const [k, e] of g.vals) {
      if (e.ts < dead) {
        g.vals.delete(k);
        this.entries--;
      } else if (e.ts >= from) {
        n++;
        if (e.ts < start) start = e.ts;
      }
    }
    if (n < N) return;
    const ids: string[] = [];
    for (const e of g.vals.values()) if (e.ts >= from) ids.push(e.id);
    g.until = end + rule.suppressMs;
    host.fire(rule, this, key, rule.groupValues(ev), start, end, ids);
  }
  sweep(rule: CompiledRule, wm: number): void {
    const dead = wm - rule.windowMs;
    for (const [k, g] of this.groups) {
      for (const [vk, e] of g.vals) {
        if (e.ts < dead) {
          g.vals.delete(vk);
          this.entries--;
        }
      }
      if (g.vals.size === 0 && g.until <= wm) this.groups.delete(k);
    }
  }
  groupCount(): number {
    return this.groups.size;
  }
}

interface Run {
  step: number;
  start: number;
  last: number;
  ids: string[];
}
interface SGroup {
  runs: Run[];
  until: number;
}

const sSize = (g: SGroup) => g.runs.length;

/** sequence: the steps in order, each at or after the previous, all within `within` of the first, per group. */
class SequenceState extends RuleState {
  readonly groups = new Map<string, SGroup>();
  onEvent(rule: CompiledRule, ev: NormalizedEvent, ts: number, host: Host): void {
    const steps = rule.steps;
    let matched = 0;
    for (let s = 0; s < steps.length; s++) {
      const f = steps[s]!;
      // A step with the same condition as the one before shares its closure (rules.ts) and its answer.
      if (s > 0 && f === steps[s - 1]) {
        if (matched & (1 << (s - 1))) matched |= 1 << s;
      } else if (f(ev)) matched |= 1 << s;
    }
    // Only a first step can start a group: without one and without groups there is nothing to look up.
    if (matched === 0 || (!(matched & 1) && this.groups.size === 0)) return;
    const key = host.key(this.sig, rule, ev);
    let g = this.groups.get(key);
    if (g === undefined) {
      if (!(matched & 1)) return; // nothing to continue and not a start
      this.makeRoom(this.groups, rule, host, ts, sSize);
      g = { runs: [], until: -Infinity };
      this.groups.set(key, g);
    }
    const within = rule.windowMs;
    const id = idOf(ev);
    // Advance the runs that wait for a step this event matches (each run by one step).
    const runs = g.runs;
    for (let r = 0; r < runs.length; r++) {
      const run = runs[r]!;
      if (!(matched & (1 << run.step)) || ts < run.last || ts - run.start > within) continue;
      run.step++;
      run.last = ts;
      run.ids.push(id);
      if (run.step === steps.length) {
        runs.splice(r, 1);
        r--;
        this.entries--;
        if (ts >= g.until) {
          g.until = ts + rule.suppressMs;
          host.fire(rule, this, key, rule.groupValues(ev), run.start, ts, run.ids);
        }
      }
    }
    if (matched & 1) {
      if (runs.length >= rule.limits.entries) {
        runs.shift();
        this.entries--;
        host.limit(rule, this, "entries", ts);
      }
      const run = { step: 1, start: ts, last: ts, ids: [id] };
      // One-element literal for a first run (a push onto [] reserves 17 slots).
      if (runs.length === 0) g.runs = [run];
      else runs.push(run);
      this.entries++;
    }
  }
  sweep(rule: CompiledRule, wm: number): void {
    const floor = wm - rule.windowMs;
    for (const [k, g] of this.groups) {
      const before = g.runs.length;
      g.runs = g.runs.filter((r) => r.start >= floor);
      this.entries -= before - g.runs.length;
      if (g.runs.length === 0 && g.until <= wm) this.groups.delete(k);
    }
  }
  groupCount(): number {
    return this.groups.size;
  }
}

interface Pending {
  /** The group the wait was opened in (its key and values; it may have been evicted since). */
  g: AGroup;
  at: number;
  deadline: number;
  id: string;
  done: boolean;
}
/** The waits of a group that has none: shared, never mutated (a wait is only ever added to a list by replacing an empty one with a one-element literal). */
const NO_WAITS: Pending[] = [];
interface AGroup {
  key: string;
  /**
   * The group's field values (equal keys, equal values: taken once, shared by its waits). Left undefined when the
   * key is the one group_by field's string value itself, and rebuilt from the key when an alert needs it: most
   * waits end satisfied, so most groups never need their values (one object less per new group on the hot path).
   */
  group: Record<string, unknown> | undefined;
  pending: Pending[];
  /** Times of recent B events, to satisfy an A that arrives after its B (out of order); made on the first B. */
  seen: number[] | undefined;
  until: number;
}

const aSize = (g: AGroup) => g.pending.length + (g.seen?.length ?? 0);

/** A group's values: taken from the event, or (for a one-field string key) from the key when needed. */
function groupOf(rule: CompiledRule, g: AGroup): Record<string, unknown> {
  return (g.group ??= { [rule.groupBy[0]!]: g.key });
}

/** Whether an event's group values can be rebuilt from its key alone (one group_by field holding a string: keyPart keeps it as is, and only non-strings are tagged with \u0001). */
function keyIsValue(rule: CompiledRule, key: string): boolean {
  return rule.groupBy.length === 1 && key.charCodeAt(0) !== 1;
}

/** absence: after A, no B with the same group within T; fires once the watermark passes A + T. */
class AbsenceState extends RuleState {
  readonly groups = new Map<string, AGroup>();
  /** Every open wait, in deadline order. */
  private queue: Pending[] = [];
  private head = 0;
  onEvent(rule: CompiledRule, ev: NormalizedEvent, ts: number, host: Host): void {
    const isB = rule.expect!(ev);
    const isA = rule.after!(ev);
    if (!isA && (!isB || this.groups.size === 0)) return;
    const key = host.key(this.sig, rule, ev);
    let g = this.groups.get(key);
    if (g === undefined) {
      if (!isA) return;
      this.makeRoom(this.groups, rule, host, ts, aSize);
      g = { key, group: keyIsValue(rule, key) ? undefined : rule.groupValues(ev), pending: NO_WAITS, seen: undefined, until: -Infinity };
      this.groups.set(key, g);
    }
    const T = rule.windowMs;
    if (isB) {
      // Waits are in A-time order: the ones this B satisfies (A ≤ b ≤ A + T) are one contiguous run.
      const pend = g.pending;
      let lo = 0, hi = pend.length;
      while (lo < hi) {
        const m = (lo + hi) >>> 1;
        if (pend[m]!.at < ts - T) lo = m + 1;
        else hi = m;
      }
      let end = lo;
      while (end < pend.length && pend[end]!.at <= ts) pend[end++]!.done = true;
      if (end > lo) {
        pend.splice(lo, end - lo);
        this.entries -= end - lo;
      }
      const seen = g.seen;
      if (seen === undefined || seen.length === 0) g.seen = [ts];
      else if (seen[seen.length - 1]! <= ts) seen.push(ts);
      else seen.splice(upperBound(seen, ts), 0, ts);
      this.entries++;
      if (g.seen!.length > rule.limits.entries) {
        g.seen!.shift();
        this.entries--;
      }
    }
    if (isA) {
      const seen = g.seen;
      if (seen !== undefined) {
        const k = lowerBound(seen, ts);
        if (k < seen.length && seen[k]! <= ts + T) return;
      }
      if (g.pending.length >= rule.limits.entries) {
        const old = g.pending.shift()!;
        old.done = true;
        this.entries--;
        host.limit(rule, this, "entries", ts);
      }
      const p: Pending = { g, at: ts, deadline: ts + T, id: idOf(ev), done: false };
      const pend = g.pending;
      if (pend.length === 0) g.pending = [p]; // a one-element literal (a push onto [] reserves 17 slots)
      else if (pend[pend.length - 1]!.at <= ts) pend.push(p);
      else {
        let i = pend.length;
        while (i > 0 && pend[i - 1]!.at > ts) i--;
        pend.splice(i, 0, p);
      }
      this.entries++;
      // Insert in deadline order (usually at the end).
      const q = this.queue;
      let i = q.length;
      while (i > this.head && q[i - 1]!.deadline > p.deadline) i--;
      if (i === q.length) q.push(p);
      else q.splice(i, 0, p);
    }
  }
  override onWatermark(rule: CompiledRule, wm: number, host: Host): void {
    const q = this.queue;
    while (this.head < q.length && q[this.head]!.deadline < wm) {
      const p = q[this.head++]!;
      if (p.done) continue;
      p.done = true;
      const g = this.groups.get(p.g.key);
      if (g) {
        const i = g.pending.indexOf(p);
        if (i >= 0) {
          g.pending.splice(i, 1);
          this.entries--;
        }
        if (p.deadline < g.until) continue;
        g.until = p.deadline + rule.suppressMs;
      }
      host.fire(rule, this, p.g.key, groupOf(rule, p.g), p.at, p.deadline, [p.id]);
    }
    if (this.head > 1024 && this.head * 2 > q.length) {
      this.queue = q.slice(this.head);
      this.head = 0;
    }
  }
  sweep(rule: CompiledRule, wm: number): void {
    const floor = wm - rule.windowMs;
    for (const [k, g] of this.groups) {
      const seen = g.seen;
      const drop = seen === undefined ? 0 : lowerBound(seen, floor);
      if (drop) {
        seen!.splice(0, drop);
        this.entries -= drop;
      }
      if (g.pending.length === 0 && (seen === undefined || seen.length === 0) && g.until <= wm) this.groups.delete(k);
    }
  }
  override pending(): boolean {
    return this.head < this.queue.length;
  }
  groupCount(): number {
    return this.groups.size;
  }
}

function newState(rule: CompiledRule): RuleState {
  switch (rule.kind) {
    case "match":
      return new MatchState(rule.digest, rule.kind);
    case "threshold":
      return new ThresholdState(rule.digest, rule.kind);
    case "distinct":
      return new DistinctState(rule.digest, rule.kind);
    case "sequence":
      return new SequenceState(rule.digest, rule.kind);
    case "absence":
      return new AbsenceState(rule.digest, rule.kind);
  }
}

interface Runtime {
  rule: CompiledRule;
  state: RuleState;
}

/** A rule and the part of its condition still to test for the events of one dispatch list. */
interface Offer {
  rt: Runtime;
  where: CompiledRule["where"];
}

/**
 * The rules for the events of one action (or of no indexed action), refined
 * by the event's result: an event whose result is a string reaches only the
 * rules whose `where` can hold for it, without their result-only conjuncts.
 */
interface Dispatch {
  /** Events whose result is not a string. */
  all: Offer[];
  byResult: Map<string, Offer[]>;
  /** Events whose result is a string no rule of the list names. */
  other: Offer[];
}

function dispatchOf(rts: readonly Runtime[], where: (r: CompiledRule) => CompiledRule["where"]): Dispatch {
  const results = new Set<string>();
  for (const rt of rts) for (const r of rt.rule.results ?? []) results.add(r);
  const all = rts.map((rt) => ({ rt, where: where(rt.rule) }));
  const byResult = new Map<string, Offer[]>();
  for (const r of results) {
    byResult.set(
      r,
      rts.filter((rt) => rt.rule.results === null || rt.rule.results.has(r)).map((rt) => ({ rt, where: rt.rule.results === null ? where(rt.rule) : rt.rule.whereResultDispatched })),
    );
  }
  return { all, byResult, other: all.filter((o) => o.rt.rule.results === null) };
}

const NONE: Dispatch = { all: [], byResult: new Map(), other: [] };

export class Engine implements Host {
  private runtimes: Runtime[] = [];
  /** Rules per action: only these are offered an event with that action. */
  private byAction = new Map<string, Dispatch>();
  /** Rules that do not pin down the action (offered every event but alerts). */
  private anyAction: Dispatch = NONE;
  private withWatermark: Runtime[] = [];
  /** Per group_by signature: the key of the current event (valid while keyAt[sig] === seq). */
  private keys: string[] = [];
  private keyAt: number[] = [];
  private seq = 0;
  /** The last event's timestamp string and its parse (events of one burst share their timestamp). */
  private lastStamp: unknown = undefined;
  private lastStampMs = NaN;
  private readonly latenessMs: number;
  private readonly indexed: boolean;
  private readonly maxFutureMs: number;
  private readonly now: () => number;
  private readonly onAlert: (a: AlertEvent) => void;
  private readonly onNotice: (e: NormalizedEvent) => void;
  private maxTs = -Infinity;
  /** While warming: conditions that hold are recorded (suppression) but not alerted. */
  private muted = false;
  private nextSweep = -Infinity;
  wm = -Infinity;
  events = 0;
  lateEvents = 0;
  invalidEvents = 0;
  futureEvents = 0;
  /** (event, rule) pairs the dispatch offered (each evaluates the rule's remaining condition): the index's reach, for benchmarks. */
  offered = 0;

  constructor(rules: readonly CompiledRule[], opts: EngineOptions) {
    this.latenessMs = opts.latenessMs ?? DEFAULT_LATENESS_MS;
    this.indexed = opts.index ?? true;
    this.maxFutureMs = opts.maxFutureMs ?? Infinity;
    this.now = opts.now ?? Date.now;
    this.onAlert = opts.onAlert;
    this.onNotice = opts.onNotice ?? (() => {});
    this.setRules(rules);
  }

  /**
   * Swaps the rule set. A rule whose digest (definition) is unchanged keeps its
   * window state; a changed rule starts fresh; a removed rule's state is dropped.
   * Returns the changed rules (present before with another definition), whose
   * windows the caller may `warm` from stored events.
   */
  setRules(rules: readonly CompiledRule[]): CompiledRule[] {
    const prev = new Map(this.runtimes.map((r) => [r.rule.id, r.state]));
    const changed: CompiledRule[] = [];
    this.runtimes = rules.map((rule) => {
      const old = prev.get(rule.id);
      if (old && old.digest === rule.digest && old.kind === rule.kind) return { rule, state: old };
      if (old) changed.push(rule);
      return { rule, state: newState(rule) };
    });
    const actions = new Set<string>();
    for (const r of this.runtimes) for (const a of r.rule.actions ?? []) actions.add(a);
    this.byAction = new Map();
    for (const a of actions) {
      // Alerts reach only rules that name the alert action (the detector never feeds on its own output otherwise).
      const rts = this.runtimes.filter((r) => (r.rule.actions === null && a !== "alert") || r.rule.actions?.has(a));
      this.byAction.set(a, dispatchOf(rts, (r) => r.whereDispatched));
    }
    if (!this.byAction.has("alert")) this.byAction.set("alert", NONE);
    this.anyAction = dispatchOf(this.runtimes.filter((r) => r.rule.actions === null), (r) => r.where);
    this.withWatermark = this.runtimes.filter((r) => r.rule.kind === "absence");
    const sigs = new Map<string, number>();
    for (const r of this.runtimes) {
      const s = JSON.stringify(r.rule.groupBy);
      let i = sigs.get(s);
      if (i === undefined) sigs.set(s, (i = sigs.size));
      r.state.sig = i;
    }
    this.keys = new Array<string>(sigs.size).fill("");
    this.keyAt = new Array<number>(sigs.size).fill(-1);
    return changed;
  }

  /**
   * How far back in event time a rule's state reaches from the watermark: its
   * window (or span) and its suppression. Stored events before that would be
   * pruned on arrival, so warming reads from `wm - reach`.
   */
  static reach(rule: CompiledRule): number {
    return Math.max(rule.windowMs, rule.suppressMs);
  }

  /**
   * Warms fresh rules' windows with events that were already evaluated (by the
   * rules' previous definitions), oldest first. Only the named rules see them;
   * the clock (watermark, last event time) does not move. Conditions that
   * hold entirely within these events do not alert — the old definition has
   * had its say on them — but start their group's suppression as if they had,
   * so the switch does not re-raise what was already raised; an event after
   * the switch that completes a condition alerts with every contributing
   * event, warmed ones included. Late checks are skipped (the events were on
   * time when first evaluated; ones older than the window are pruned anyway).
   * Returns how many events were offered.
   */
  warm(ids: ReadonlySet<string>, events: Iterable<NormalizedEvent>): number {
    const targets = this.runtimes.filter((r) => ids.has(r.rule.id));
    if (targets.length === 0) return 0;
    let n = 0;
    this.muted = true;
    try {
      for (const ev of events) {
        const ts = eventTime(ev.timestamp);
        if (ts !== ts || ev.action === "alert") continue;
        this.seq++;
        n++;
        for (const rt of targets) {
          const rule = rt.rule;
          try {
            if (rule.actions !== null && (typeof ev.action !== "string" || !rule.actions.has(ev.action))) continue;
            if (rule.where !== undefined && !rule.where(ev)) continue;
            rt.state.onEvent(rule, ev, ts, this);
          } catch {
            rt.state.errors++;
          }
        }
      }
      for (const rt of targets) rt.state.onWatermark(rt.rule, this.wm, this);
    } finally {
      this.muted = false;
    }
    return n;
  }

  key(sig: number, rule: CompiledRule, ev: NormalizedEvent): string {
    if (this.keyAt[sig] === this.seq) return this.keys[sig]!;
    const k = rule.groupKey ? rule.groupKey(ev) : "";
    this.keys[sig] = k;
    this.keyAt[sig] = this.seq;
    return k;
  }

  /** The largest event time seen. */
  get lastEventTime(): number {
    return this.maxTs;
  }

  rules(): CompiledRule[] {
    return this.runtimes.map((r) => r.rule);
  }

  /** Whether a rule's state object is the one it had before (tests of reload). */
  stateOf(id: string): object | undefined {
    return this.runtimes.find((r) => r.rule.id === id)?.state;
  }

  process(ev: NormalizedEvent): void {
    const stamp = ev.timestamp;
    let ts: number;
    if (stamp === this.lastStamp) ts = this.lastStampMs;
    else {
      ts = eventTime(stamp);
      this.lastStamp = stamp;
      this.lastStampMs = ts;
    }
    this.seq++;
    if (ts !== ts) {
      this.invalidEvents++;
      return;
    }
    const action = ev.action;
    if (!this.indexed) return this.processAll(ev, ts);
    // Rules reached through the action index skip their action-only conjuncts; rules without an action set have none.
    const d = typeof action === "string" ? (this.byAction.get(action) ?? this.anyAction) : action === undefined || action === null ? this.anyAction : undefined;
    if (d === undefined) return this.processAll(ev, ts);
    // The detector's own alerts come back through the journal: unless a rule asks for them they are not input at all
    // (neither counted nor moving time).
    if (d.all.length === 0 && action === "alert") return;
    const late = this.admit(ts);
    if (late === undefined) return;
    const result = ev.result;
    const list = typeof result === "string" ? (d.byResult.get(result) ?? d.other) : d.all;
    this.offered += list.length;
    for (let i = 0; i < list.length; i++) {
      const o = list[i]!;
      this.offer(o.rt, o.where, ev, ts, late);
    }
    this.moveTime(ts);
  }

  /** Counts an event in; undefined when it is too far in the future to take, else whether it is late. */
  private admit(ts: number): boolean | undefined {
    if (ts > this.maxTs && this.maxFutureMs !== Infinity && ts - this.now() > this.maxFutureMs) {
      this.futureEvents++;
      return undefined;
    }
    this.events++;
    const late = ts < this.wm;
    if (late) this.lateEvents++;
    return late;
  }

  /** One rule's look at one event: its condition, then its window state. */
  private offer(rt: Runtime, where: CompiledRule["where"], ev: NormalizedEvent, ts: number, late: boolean): void {
    try {
      if (where !== undefined && !where(ev)) return;
      if (late && rt.rule.kind !== "match") {
        rt.state.late++;
        return;
      }
      rt.state.onEvent(rt.rule, ev, ts, this);
    } catch {
      // A condition that throws on odd input (e.g. `in` on an object) does not match; counted.
      rt.state.errors++;
    }
  }

  private moveTime(ts: number): void {
    if (ts > this.maxTs) {
      this.maxTs = ts;
      const w = ts - this.latenessMs;
      if (w > this.wm) this.advanceWatermark(w);
    }
  }

  /** `process` without the action index: every rule, whole condition (only alerts stay with the rules that name them). */
  private processAll(ev: NormalizedEvent, ts: number): void {
    const isAlert = ev.action === "alert";
    if (isAlert && !this.runtimes.some((r) => r.rule.actions?.has("alert"))) return;
    const late = this.admit(ts);
    if (late === undefined) return;
    const action = ev.action;
    for (const rt of this.runtimes) {
      if (isAlert && !rt.rule.actions?.has("alert")) continue;
      // A late event is counted only by the rules that could have taken it, as the index offers it (a sequence
      // or absence rule without a `where` would otherwise count every late event of any action).
      if (late && rt.rule.actions && !(typeof action === "string" && rt.rule.actions.has(action))) continue;
      this.offer(rt, rt.rule.where, ev, ts, late);
    }
    this.moveTime(ts);
  }

  /** Moves the watermark (never back): absence rules whose wait ended fire; idle groups are swept. */
  advanceWatermark(t: number): void {
    if (!(t > this.wm)) return;
    this.wm = t;
    for (const rt of this.withWatermark) rt.state.onWatermark(rt.rule, t, this);
    if (t >= this.nextSweep) {
      for (const rt of this.runtimes) rt.state.sweep(rt.rule, t);
      this.nextSweep = t + SWEEP_EVERY_MS;
    }
  }

  /** Whether any absence rule waits for the watermark. */
  hasPending(): boolean {
    return this.withWatermark.some((r) => r.state.pending());
  }

  stats(): Record<string, RuleStats> {
    const out: Record<string, RuleStats> = {};
    for (const { rule, state } of this.runtimes) {
      out[rule.id] = {
        kind: rule.kind,
        groups: state.groupCount(),
        entries: state.entries,
        alerts: state.alerts,
        late: state.late,
        errors: state.errors,
        evicted: state.evicted,
      };
    }
    return out;
  }

  fire(rule: CompiledRule, state: RuleState, key: string, group: Record<string, unknown>, start: number, end: number, ids: string[]): void {
    if (this.muted) return;
    state.alerts++;
    const windowStart = isoTime(start);
    const windowEnd = end === start ? windowStart : isoTime(end);
    const id = createHash("sha256").update(`${rule.id}\n${rule.digest}\n${key}\n${windowStart}`).digest("hex");
    const alert: AlertEvent = {
      event_id: id,
      timestamp: windowEnd,
      received_at: isoTime(this.now()),
      action: "alert",
      component: "siem",
      severity: rule.severity,
      ...topLevel(group),
      alert: {
        rule: rule.id,
        title: rule.title,
        revision: rule.digest,
        commit: rule.commit,
        kind: rule.kind,
        tags: rule.tags,
        group,
        window_start: windowStart,
        window_end: windowEnd,
        events: ids,
        lists: rule.lists,
        pin_sets: rule.pinSets,
      },
    };
    this.onAlert(alert);
  }

  limit(rule: CompiledRule, state: RuleState, which: "groups" | "entries", at: number): void {
    if (at < state.noticeAt[which] + NOTICE_EVERY_MS) return;
    state.noticeAt[which] = at;
    const value = which === "groups" ? rule.limits.groups : rule.limits.entries;
    const what = which === "groups" ? "groups" : "entries per group";
    this.onNotice({
      event_id: createHash("sha256").update(`detector_limit\n${rule.id}\n${rule.digest}\n${which}\n${at}`).digest("hex"),
      timestamp: isoTime(at),
      received_at: isoTime(this.now()),
      action: "detector_limit",
      component: "siem",
      severity: "medium",
      result: "failure",
      policy_id: rule.id,
      error_code: `${which}_limit`,
      error_msg: `rule ${rule.id}: the limit of ${value} ${what} was reached; the oldest ${which === "groups" ? "group is" : "entry is"} evicted (raise limits.${which === "groups" ? "groups" : "entries_per_group"} if this is expected)`,
      extra: { rule: rule.id, limit: which, value },
    });
  }
}

/** Group fields that are top-level event fields are copied onto the alert (dashboards filter on them). */
function topLevel(group: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(group)) {
    if (!k.includes(".") && k !== "alert" && k !== "action" && k !== "event_id" && k !== "timestamp" && k !== "received_at" && k !== "severity" && k !== "component") out[k] = v;
  }
  return out;
}
