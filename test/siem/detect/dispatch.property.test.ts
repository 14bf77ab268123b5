/**
 * The action and result index (rules offered only the events whose action
 * and result they can match, with the conjuncts that only test the action or
 * the result left out) is exactly
 * equivalent to offering every event to every rule with its whole condition:
 * random rules of every kind, random events (including actions that are not
 * strings, missing, or unknown, and out-of-order times), same alerts, same
 * state, same counters.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { compileRule, Engine } from "../../../engine/siem/detect/index.js";
import type { AlertEvent } from "../../../engine/siem/detect/index.js";
import type { RuleDoc } from "../../../engine/config/index.js";
import { stateWith } from "./helpers.js";

const ACTIONS = ["login", "otp_verify", "spa_open", "tls_handshake", "alert"];
const state = await stateWith([], { only: true, revision: "prop" });

const actionVar = fc.constantFrom<unknown>({ var: "action" }, { var: ["action"] }, { var: "action.x" });
const actionConst = fc.oneof(fc.constantFrom<unknown>(...ACTIONS, "other", 1, null, true, ""), fc.constant(["login"]));
const RESULTS = ["success", "failure", "pending"];
const resultVar = fc.constantFrom<unknown>({ var: "result" }, { var: ["result"] }, { var: "result.x" });
const resultConst = fc.oneof(fc.constantFrom<unknown>(...RESULTS, "other", 1, null, true, ""), fc.constant(["failure"]));
const leaf: fc.Arbitrary<unknown> = fc.oneof(
  fc.tuple(fc.constantFrom("==", "===", "!=", "!=="), resultVar, resultConst, fc.boolean()).map(([op, v, c, flip]) => ({ [op]: flip ? [c, v] : [v, c] })),
  fc.tuple(resultVar, fc.subarray(RESULTS.concat(["other"]))).map(([v, set]) => ({ in: [v, set] })),
  fc.tuple(fc.constantFrom("==", "===", "!=", "!=="), actionVar, actionConst, fc.boolean()).map(([op, v, c, flip]) => ({ [op]: flip ? [c, v] : [v, c] })),
  fc.tuple(actionVar, fc.subarray(ACTIONS.concat(["other"]))).map(([v, set]) => ({ in: [v, set] })),
  fc.tuple(actionVar, fc.constantFrom<unknown>("log", "login,otp")).map(([v, s]) => ({ in: [v, s] })),
  fc.constantFrom<unknown>({ "==": [{ var: "result" }, "failure"] }, { "!!": [{ var: "user_id" }] }, { ">": [{ var: "n" }, 2] }, true, false, { var: "result" }),
);
const cond: fc.Arbitrary<unknown> = fc.letrec<{ c: unknown }>((tie) => ({
  c: fc.oneof({ depthSize: "small", withCrossShrink: true }, leaf, fc.array(tie("c"), { minLength: 1, maxLength: 3 }).map((a) => ({ and: a })), fc.array(tie("c"), { minLength: 1, maxLength: 3 }).map((a) => ({ or: a })), tie("c").map((c) => ({ "!": c }))),
})).c;

const rule = (i: number): fc.Arbitrary<RuleDoc> =>
  fc.tuple(fc.constantFrom("match", "threshold", "distinct", "sequence", "absence"), fc.option(cond, { nil: undefined }), cond, cond, fc.constantFrom<string[]>([], ["user_id"], ["user_id", "asn"])).map(([kind, where, a, b, groupBy]) => {
    const base = { id: `r${i}`, title: "t", severity: "low", kind, group_by: groupBy, where } as Record<string, unknown>;
    if (kind === "match") base.suppress = groupBy.length ? "10s" : "0s";
    if (kind === "threshold") Object.assign(base, { window: "10s", threshold: { count: 2 } });
    if (kind === "distinct") Object.assign(base, { window: "10s", distinct: { field: "asn", count: 2 } });
    if (kind === "sequence") Object.assign(base, { sequence: { within: "10s", steps: [{ where: a }, { where: b }] } });
    if (kind === "absence") Object.assign(base, { absence: { after: a, expect: b, within: "5s" } });
    if (kind === "match" && !groupBy.length) delete base.suppress;
    return base as unknown as RuleDoc;
  });

const event = fc.record({
  dt: fc.integer({ min: -2000, max: 3000 }),
  action: fc.oneof(fc.constantFrom<unknown>(...ACTIONS, "other", undefined, null, 7, ["login"], { x: "login" }, "LOGIN")),
  result: fc.constantFrom<unknown>("success", "failure", "pending", "other", undefined, null, 1, ["failure"], { x: "failure" }, "FAILURE"),
  user_id: fc.constantFrom("u1", "u2", undefined),
  asn: fc.constantFrom(1, 2, 3, "1"),
  n: fc.integer({ min: 0, max: 4 }),
});

function run(docs: RuleDoc[], evs: fc.infer<typeof event>[], index: boolean, latenessMs?: number) {
  const alerts: AlertEvent[] = [];
  const engine = new Engine(docs.map((d) => compileRule(state, d)), { index, latenessMs, onAlert: (a) => alerts.push(a), onNotice: () => {}, now: () => 0 });
  let t = Date.parse("2026-11-23T10:00:00Z");
  evs.forEach((e, i) => {
    t += e.dt;
    const { dt: _dt, ...fields } = e;
    const at = new Date(t).toISOString();
    engine.process({ event_id: `e${i}`, timestamp: at, received_at: at, ...fields } as never);
  });
  engine.advanceWatermark(t + 60_000);
  return { alerts, stats: engine.stats(), events: engine.events, late: engine.lateEvents, wm: engine.wm };
}

describe("action index", () => {
  it("dispatch through the index equals evaluating every rule on every event", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { minLength: 1, maxLength: 6 }).chain((seeds) => fc.tuple(...seeds.map((_, i) => rule(i)))), fc.array(event, { maxLength: 60 }), (docs, evs) => {
        const indexed = run(docs, evs, true);
        const all = run(docs, evs, false);
        expect(indexed).toEqual(all);
      }),
      { numRuns: 300 },
    );
  });

  it("with late events too (a 1 s lateness, so the random steps back in time fall behind the watermark): same alerts, state and late counts", () => {
    let withLate = 0;
    let ruleLate = 0;
    fc.assert(
      fc.property(fc.array(fc.nat(), { minLength: 1, maxLength: 6 }).chain((seeds) => fc.tuple(...seeds.map((_, i) => rule(i)))), fc.array(event, { maxLength: 60 }), (docs, evs) => {
        const indexed = run(docs, evs, true, 1000);
        if (indexed.late > 0) withLate++;
        for (const st of Object.values(indexed.stats)) if (st.late > 0) ruleLate++;
        expect(indexed).toEqual(run(docs, evs, false, 1000));
      }),
      { numRuns: 300 },
    );
    // not vacuous: late events happened, and rules counted them
    expect(withLate).toBeGreaterThan(100);
    expect(ruleLate).toBeGreaterThan(50);
  });

  it("a rule pinned to a result is offered only the events with that result (and still matches them)", () => {
    const docs = [{ id: "x", title: "t", severity: "low", kind: "match", where: { and: [{ "==": [{ var: "action" }, "login"] }, { in: [{ var: "result" }, ["failure", "denied"]] }, { "!!": [{ var: "user_id" }] }] } }] as unknown as RuleDoc[];
    const r = compileRule(state, docs[0]!);
    expect([...r.results!]).toEqual(["failure", "denied"]);
    const evs = [
      { dt: 0, action: "login", result: "failure", user_id: "u1", asn: 1, n: 0 },
      { dt: 1, action: "login", result: "success", user_id: "u1", asn: 1, n: 0 },
      { dt: 1, action: "login", result: "denied", user_id: undefined, asn: 1, n: 0 },
      { dt: 1, action: "login", result: ["failure"], user_id: "u1", asn: 1, n: 0 },
    ];
    // ["failure"] == "failure" in JSON Logic's loose equality, but `in` is strict: e3 does not match either way.
    expect(run(docs, evs, true).alerts.map((a) => a.alert.events)).toEqual([["e0"]]);
  });

  it("the generated rules do reach the index (the property is not vacuous)", () => {
    const docs = [{ id: "x", title: "t", severity: "low", kind: "match", where: { and: [{ "==": [{ var: "action" }, "login"] }, { "==": [{ var: "result" }, "failure"] }] } }] as unknown as RuleDoc[];
    const r = compileRule(state, docs[0]!);
    expect([...r.actions!]).toEqual(["login"]);
    const evs = [{ dt: 0, action: "login", result: "failure", user_id: "u1", asn: 1, n: 0 }, { dt: 1, action: "otp_verify", result: "failure", user_id: "u1", asn: 1, n: 0 }];
    expect(run(docs, evs, true).alerts.map((a) => a.alert.events)).toEqual([["e0"]]);
  });
});
