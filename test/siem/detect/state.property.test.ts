/**
 * The engine's window state (the fast paths of issue #5's throughput work:
 * waits without per-wait objects, lazy deletion, the O(1) watermark, shared
 * group keys, ...) is exactly equivalent to the plain implementation it
 * replaced (reference/engine.ts, frozen): random rules of every kind with
 * small limits (so eviction and per-group limits happen), random streams with
 * events out of order, late, at equal times and missing fields, watermark
 * moves by a quiet-stream timer in between: same alerts in the same order,
 * same limit notices, same state sizes and counters.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { compileRule, Engine } from "../../../engine/siem/detect/index.js";
import type { RuleDoc } from "../../../engine/config/index.js";
import { Engine as ReferenceEngine } from "./reference/engine.js";
import { stateWith } from "./helpers.js";

const state = await stateWith([], { only: true, revision: "prop" });
const ACTIONS = ["a", "b", "c"];

const cond: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...ACTIONS).map((a) => ({ "==": [{ var: "action" }, a] })),
  fc.tuple(fc.constantFrom(...ACTIONS), fc.constantFrom("success", "failure")).map(([a, r]) => ({ and: [{ "==": [{ var: "action" }, a] }, { "==": [{ var: "result" }, r] }] })),
  fc.constantFrom<unknown>({ "==": [{ var: "result" }, "failure"] }, { ">": [{ var: "n" }, 1] }, { in: [{ var: "action" }, ["a", "b"]] }, true),
);

const rule = (i: number): fc.Arbitrary<RuleDoc> =>
  fc
    .tuple(
      fc.constantFrom("match", "threshold", "distinct", "sequence", "absence"),
      fc.option(cond, { nil: undefined }),
      cond,
      cond,
      fc.constantFrom<string[]>([], ["user_id"], ["user_id", "asn"], ["session"]),
      fc.constantFrom("1s", "3s", "10s"),
      fc.option(fc.constantFrom("0s", "2s", "20s"), { nil: undefined }),
      fc.option(fc.record({ groups: fc.integer({ min: 1, max: 3 }), entries_per_group: fc.integer({ min: 1, max: 3 }) }), { nil: undefined }),
      fc.integer({ min: 1, max: 4 }),
    )
    .map(([kind, where, a, b, groupBy, span, suppress, limits, count]) => {
      const base = { id: `r${i}`, title: "t", severity: "low", kind, group_by: groupBy, where } as Record<string, unknown>;
      if (suppress !== undefined && !(kind === "match" && groupBy.length === 0)) base.suppress = suppress;
      if (limits) base.limits = limits;
      if (kind === "threshold") Object.assign(base, { window: span, threshold: { count } });
      if (kind === "distinct") Object.assign(base, { window: span, distinct: { field: "asn", count: Math.min(count, 3) } });
      if (kind === "sequence") Object.assign(base, { sequence: { within: span, steps: count > 2 ? [{ where: a }, { where: a }, { where: b }] : [{ where: a }, { where: b }] } });
      if (kind === "absence") Object.assign(base, { absence: { after: a, expect: b, within: span } });
      return base as unknown as RuleDoc;
    });

const step = fc.oneof(
  { weight: 12, arbitrary: fc.record({
    // same time, a step back within the lateness (out of order, still taken), exact window edges, late ones
    dt: fc.oneof(fc.constantFrom(0, 0, 1, -1, 1000, 3000, -500, 999), fc.integer({ min: -900, max: 900 }), fc.integer({ min: -3000, max: 2500 })),
    action: fc.constantFrom<unknown>(...ACTIONS, "other", undefined),
    result: fc.constantFrom<unknown>("success", "failure", undefined),
    user_id: fc.constantFrom<unknown>("u1", "u2", "u3", undefined, 5),
    session: fc.constantFrom("s1", "s2", "s3", "s4"),
    asn: fc.constantFrom<unknown>(1, 2, 3, "1", undefined),
    n: fc.integer({ min: 0, max: 3 }),
  }) },
  // A quiet stream: the detector's timer moves the watermark by this much past the last event.
  { weight: 1, arbitrary: fc.record({ quiet: fc.integer({ min: 0, max: 15_000 }) }) },
);

interface Like {
  process(e: never): void;
  advanceWatermark(t: number): void;
  hasPending(): boolean;
  stats(): unknown;
  wm: number;
  events: number;
  lateEvents: number;
  lastEventTime: number;
}

function run(make: (onAlert: (a: unknown) => void, onNotice: (n: unknown) => void) => Like, steps: fc.infer<typeof step>[]) {
  const out: unknown[] = [];
  const engine = make((a) => out.push(a), (n) => out.push(n));
  let t = Date.parse("2026-11-23T10:00:00Z");
  steps.forEach((s, i) => {
    if ("quiet" in s) {
      if (engine.hasPending() && engine.lastEventTime !== -Infinity) engine.advanceWatermark(engine.lastEventTime + s.quiet - 1000);
      out.push({ pending: engine.hasPending(), wm: engine.wm });
      return;
    }
    t += s.dt;
    const { dt: _dt, ...fields } = s;
    const at = new Date(t).toISOString();
    engine.process({ event_id: `e${i}`, timestamp: at, received_at: at, ...fields } as never);
  });
  engine.advanceWatermark(t + 120_000);
  return { out, stats: engine.stats(), events: engine.events, late: engine.lateEvents, pending: engine.hasPending() };
}

describe("window state", () => {
  it("equals the plain implementation on random rules and streams (limits, eviction, late and quiet streams)", () => {
    let alerts = 0;
    let notices = 0;
    fc.assert(
      fc.property(fc.array(fc.nat(), { minLength: 1, maxLength: 5 }).chain((seeds) => fc.tuple(...seeds.map((_, i) => rule(i)))), fc.array(step, { maxLength: 80, size: "max" }), (docs, steps) => {
        const rules = docs.map((d) => compileRule(state, d));
        const opts = { latenessMs: 1000, now: () => 0 };
        const fast = run((onAlert, onNotice) => new Engine(rules, { ...opts, onAlert, onNotice }), steps);
        const plain = run((onAlert, onNotice) => new ReferenceEngine(rules, { ...opts, onAlert, onNotice }), steps);
        expect(fast).toEqual(plain);
        for (const o of fast.out as { action?: string }[]) {
          if (o.action === "alert") alerts++;
          if (o.action === "detector_limit") notices++;
        }
      }),
      { numRuns: 1000 },
    );
    // not vacuous: rules fired and limits were hit
    expect(alerts).toBeGreaterThan(500);
    expect(notices).toBeGreaterThan(50);
  });

  it("absence waits: equal and out-of-order A times, B exactly at the window's edges, no suppression (every wait that ends unmet alerts with its own id)", () => {
    const absence = (i: number) =>
      fc.tuple(fc.constantFrom("1s", "3s"), fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }), fc.constantFrom<string[]>(["user_id"], [])).map(
        ([within, entries, groupBy]) =>
          ({
            id: `r${i}`, title: "t", severity: "low", kind: "absence", group_by: groupBy, suppress: "0s",
            ...(entries ? { limits: { entries_per_group: entries } } : {}),
            absence: { after: { "==": [{ var: "action" }, "a"] }, expect: { "==": [{ var: "action" }, "b"] }, within },
          }) as unknown as RuleDoc,
      );
    const near = fc.record({
      dt: fc.oneof(fc.constantFrom(0, 0, 0, 1, -1, 1000, -1000, 3000, -3000), fc.integer({ min: -900, max: 900 })),
      action: fc.constantFrom<unknown>("a", "a", "b"),
      user_id: fc.constantFrom("u1", "u2"),
      session: fc.constant("s1"), result: fc.constant("success"), asn: fc.constant(1), n: fc.constant(0),
    });
    let alerts = 0;
    fc.assert(
      fc.property(fc.tuple(absence(0), absence(1)), fc.array(near, { maxLength: 60, size: "max" }), (docs, steps) => {
        const rules = docs.map((d) => compileRule(state, d));
        const opts = { latenessMs: 1000, now: () => 0 };
        const fast = run((onAlert, onNotice) => new Engine(rules, { ...opts, onAlert, onNotice }), steps);
        const plain = run((onAlert, onNotice) => new ReferenceEngine(rules, { ...opts, onAlert, onNotice }), steps);
        expect(fast).toEqual(plain);
        alerts += fast.out.length;
      }),
      { numRuns: 500 },
    );
    expect(alerts).toBeGreaterThan(1000);
  });
});
