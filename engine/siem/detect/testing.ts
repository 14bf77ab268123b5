/**
 * The tests embedded in rules (`viw test`): each test runs its rule alone in a
 * fresh engine on a virtual clock — the events' timestamps drive time, and
 * `advance` moves the watermark past the last event (absence rules) — and its
 * alerts are compared with `expect`.
 */
import { canonicalJson, parseDuration } from "../../config/index.js";
import type { DesiredState, RuleDoc, RuleTest, RuleTestEvent } from "../../config/index.js";
import type { NormalizedEvent } from "../journal/contract.js";
import { Engine } from "./engine.js";
import type { AlertEvent } from "./engine.js";
import { compileRule, RuleCompileError } from "./rules.js";
import { eventTime, isoTime } from "./time.js";

export interface RuleTestResult {
  rule: string;
  test: string;
  passed: boolean;
  /** Why it failed (empty when passed). */
  message: string;
  alerts: AlertEvent[];
  /** Events that arrived behind the watermark (counted, not used by windowed rules). */
  late: number;
}

export interface RunTestsOptions {
  /** Only rules whose id contains this. */
  filter?: string;
  /** Allowed lateness in the tests' engines. Default 30 s. */
  latenessMs?: number;
}

function isGenerator(e: RuleTestEvent): e is Extract<RuleTestEvent, { repeat: number }> {
  return typeof (e as { repeat?: unknown }).repeat === "number" && typeof (e as { event?: unknown }).event === "object";
}

/** The events a test stands for, generators expanded, each with an event_id and received_at. */
export function expandTestEvents(ruleId: string, testIndex: number, events: readonly RuleTestEvent[]): NormalizedEvent[] {
  const out: NormalizedEvent[] = [];
  const push = (e: Record<string, unknown>) => {
    const n = out.length;
    out.push({ event_id: `${ruleId}/${testIndex}/${n}`, received_at: String(e.timestamp ?? ""), ...e } as NormalizedEvent);
  };
  for (const item of events) {
    if (!isGenerator(item)) {
      push(item as Record<string, unknown>);
      continue;
    }
    const base = eventTime(item.event.timestamp);
    const every = parseDuration(item.every);
    for (let i = 0; i < item.repeat; i++) {
      const e: Record<string, unknown> = { ...item.event, timestamp: isoTime(base + i * every) };
      for (const [field, values] of Object.entries(item.vary ?? {})) if (values.length) e[field] = values[i % values.length];
      push(e);
    }
  }
  return out;
}

function groupMatches(expected: Record<string, unknown>, got: Record<string, unknown>): boolean {
  return Object.keys(expected).every((k) => canonicalJson(expected[k] ?? null) === canonicalJson(got[k] ?? null));
}

export function runRuleTest(state: DesiredState, doc: RuleDoc, test: RuleTest, index: number, opts: RunTestsOptions = {}): RuleTestResult {
  const alerts: AlertEvent[] = [];
  const result = (passed: boolean, message: string, late = 0): RuleTestResult => ({ rule: doc.id, test: test.name, passed, message, alerts, late });
  let clock = 0;
  let engine: Engine;
  try {
    engine = new Engine([compileRule(state, doc)], { latenessMs: opts.latenessMs, now: () => clock, onAlert: (a) => alerts.push(a) });
  } catch (e) {
    if (e instanceof RuleCompileError) return result(false, e.message);
    throw e;
  }
  const events = expandTestEvents(doc.id, index, test.events);
  let maxTs = -Infinity;
  for (const ev of events) {
    const ts = eventTime(ev.timestamp);
    if (ts !== ts) return result(false, `event ${canonicalJson(ev)} has no valid timestamp`);
    if (ts > maxTs) maxTs = ts;
    clock = maxTs;
    engine.process(ev);
  }
  if (test.advance) {
    clock = maxTs + parseDuration(test.advance);
    engine.advanceWatermark(clock);
  }
  const late = engine.lateEvents;
  const want = test.expect.alerts;
  const groups = alerts.map((a) => a.alert.group);
  if (alerts.length !== want) {
    return result(false, `expected ${want} alert(s), got ${alerts.length}${groups.length ? ` (groups ${groups.map((g) => canonicalJson(g)).join(", ")})` : ""}`, late);
  }
  if (test.expect.groups) {
    const exp = test.expect.groups;
    const ok = exp.length === groups.length && exp.every((g, i) => groupMatches(g, groups[i]!));
    if (!ok) return result(false, `expected groups ${exp.map((g) => canonicalJson(g)).join(", ")}, got ${groups.map((g) => canonicalJson(g)).join(", ")}`, late);
  }
  return result(true, "", late);
}

/** Runs every test of every rule (enabled or not: a disabled rule's tests still document it). */
export function runRuleTests(state: DesiredState, opts: RunTestsOptions = {}): RuleTestResult[] {
  const out: RuleTestResult[] = [];
  const rules = [...state.rules.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const doc of rules) {
    if (opts.filter && !doc.id.includes(opts.filter)) continue;
    doc.tests.forEach((t, i) => out.push(runRuleTest(state, doc, t, i, opts)));
  }
  return out;
}
