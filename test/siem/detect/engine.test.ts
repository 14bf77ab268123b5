import { describe, expect, it } from "vitest";
import { compileRules, Engine } from "../../../engine/siem/detect/index.js";
import type { AlertEvent } from "../../../engine/siem/detect/index.js";
import type { NormalizedEvent } from "../../../engine/siem/journal/contract.js";
import type { RuleDoc } from "../../../engine/config/index.js";
import { ev, stateWith } from "./helpers.js";

const S = 1000;
const M = 60 * S;

async function engineFor(rules: Partial<RuleDoc>[], opts: { latenessMs?: number; revision?: string } = {}) {
  const state = await stateWith(rules, { only: true, revision: opts.revision });
  const alerts: AlertEvent[] = [];
  const notices: NormalizedEvent[] = [];
  const engine = new Engine(compileRules(state), { latenessMs: opts.latenessMs, onAlert: (a) => alerts.push(a), onNotice: (n) => notices.push(n), now: () => 0 });
  return { engine, alerts, notices, state };
}

const threshold: Partial<RuleDoc> = {
  id: "t-fail",
  title: "failures",
  severity: "high",
  kind: "threshold",
  where: { "==": [{ var: "action" }, "login"] },
  group_by: ["user_id"],
  window: "1m",
  threshold: { count: 3 },
};

describe("threshold", () => {
  it("fires at the Nth event in the window, once per suppression period, then again", async () => {
    const { engine, alerts } = await engineFor([threshold]);
    for (let i = 0; i < 6; i++) engine.process(ev(i * 5 * S, { action: "login", user_id: "u1" }));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.alert.window_start).toBe("2026-11-23T10:00:00.000Z");
    expect(alerts[0]!.alert.window_end).toBe("2026-11-23T10:00:10.000Z");
    expect(alerts[0]!.alert.events).toHaveLength(3);
    expect(alerts[0]!.alert.group).toEqual({ user_id: "u1" });
    expect(alerts[0]!.user_id).toBe("u1");
    // The suppression (default: the window, 1m) ends at 10:01:10; the burst goes on.
    for (let i = 0; i < 4; i++) engine.process(ev(71 * S + i * S, { action: "login", user_id: "u1" }));
    expect(alerts).toHaveLength(2);
    expect(alerts[1]!.alert.window_end).toBe("2026-11-23T10:01:11.000Z");
  });

  it("does not count events outside the window, other groups or other actions", async () => {
    const { engine, alerts } = await engineFor([threshold]);
    engine.process(ev(0, { action: "login", user_id: "u1" }));
    engine.process(ev(30 * S, { action: "login", user_id: "u1" }));
    engine.process(ev(61 * S, { action: "login", user_id: "u1" })); // the first is now 61 s old
    engine.process(ev(62 * S, { action: "login", user_id: "u2" }));
    engine.process(ev(63 * S, { action: "logout", user_id: "u1" }));
    expect(alerts).toHaveLength(0);
    engine.process(ev(64 * S, { action: "login", user_id: "u1" }));
    expect(alerts).toHaveLength(1);
  });

  it("uses events that arrive out of order within the allowed lateness", async () => {
    const { engine, alerts } = await engineFor([threshold]);
    engine.process(ev(40 * S, { action: "login", user_id: "u1" }));
    engine.process(ev(20 * S, { action: "login", user_id: "u1" })); // 20 s late: within 30 s
    expect(engine.lateEvents).toBe(0);
    engine.process(ev(30 * S, { action: "login", user_id: "u1" }));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.alert.window_start).toBe("2026-11-23T10:00:20.000Z");
    expect(alerts[0]!.alert.window_end).toBe("2026-11-23T10:00:40.000Z");
  });

  it("counts and reports events beyond the allowed lateness and does not use them", async () => {
    const { engine, alerts } = await engineFor([threshold], { latenessMs: 10 * S });
    engine.process(ev(60 * S, { action: "login", user_id: "u1" }));
    engine.process(ev(45 * S, { action: "login", user_id: "u1" })); // 15 s behind: late
    engine.process(ev(44 * S, { action: "login", user_id: "u1" }));
    expect(engine.lateEvents).toBe(2);
    expect(engine.stats()["t-fail"]!.late).toBe(2);
    expect(alerts).toHaveLength(0);
  });

  it("evicts idle groups once their window has passed", async () => {
    const { engine } = await engineFor([threshold]);
    for (let u = 0; u < 50; u++) engine.process(ev(u, { action: "login", user_id: `u${u}` }));
    expect(engine.stats()["t-fail"]!.groups).toBe(50);
    expect(engine.stats()["t-fail"]!.entries).toBe(50);
    engine.process(ev(10 * M, { action: "other" }));
    expect(engine.stats()["t-fail"]!.groups).toBe(0);
    expect(engine.stats()["t-fail"]!.entries).toBe(0);
  });

  it("bounds groups and entries, emitting a limit event", async () => {
    const { engine, alerts, notices } = await engineFor([{ ...threshold, limits: { groups: 2, entries_per_group: 2 }, threshold: { count: 2 } }]);
    engine.process(ev(0, { action: "login", user_id: "a" }));
    engine.process(ev(1, { action: "login", user_id: "b" }));
    engine.process(ev(2, { action: "login", user_id: "c" })); // evicts a
    expect(engine.stats()["t-fail"]!.groups).toBe(2);
    expect(engine.stats()["t-fail"]!.evicted).toBe(1);
    expect(notices).toHaveLength(1);
    expect(notices[0]!.action).toBe("detector_limit");
    expect(notices[0]!.error_msg).toMatch(/t-fail.*limit of 2 groups/);
    engine.process(ev(3, { action: "login", user_id: "a" })); // a starts over: one event
    expect(alerts).toHaveLength(0);
    engine.process(ev(4, { action: "login", user_id: "a" }));
    expect(alerts).toHaveLength(1);
    engine.process(ev(5, { action: "login", user_id: "d" }));
    engine.process(ev(6, { action: "login", user_id: "d" }));
    engine.process(ev(7, { action: "login", user_id: "d" })); // third entry in d: oldest dropped
    expect(engine.stats()["t-fail"]!.entries).toBeLessThanOrEqual(4);
    expect(notices.map((n) => n.error_code)).toEqual(["groups_limit", "entries_limit"]);
  });
});

const distinct: Partial<RuleDoc> = {
  id: "d-asn",
  title: "asns",
  severity: "high",
  kind: "distinct",
  where: { "==": [{ var: "result" }, "failure"] },
  group_by: ["user_id"],
  window: "10m",
  distinct: { field: "asn", count: 3 },
};

describe("distinct", () => {
  it("fires on the Nth distinct value in the window, with those values' events", async () => {
    const { engine, alerts } = await engineFor([distinct]);
    const evs = [64500, 64500, 64501, 64501, 64502, 64503].map((asn, i) => ev(i * 10 * S, { result: "failure", user_id: "u", asn }));
    for (const e of evs) engine.process(e);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.alert.events).toEqual([evs[1]!.event_id, evs[3]!.event_id, evs[4]!.event_id]);
    expect(alerts[0]!.alert.window_start).toBe(evs[1]!.timestamp.replace("Z", "").padEnd(23, "0") + "Z");
  });

  it("ignores events without the field and values that left the window", async () => {
    const { engine, alerts } = await engineFor([distinct]);
    engine.process(ev(0, { result: "failure", user_id: "u", asn: 1 }));
    engine.process(ev(1 * M, { result: "failure", user_id: "u" }));
    engine.process(ev(11 * M, { result: "failure", user_id: "u", asn: 2 }));
    engine.process(ev(12 * M, { result: "failure", user_id: "u", asn: 3 }));
    expect(alerts).toHaveLength(0);
    engine.process(ev(13 * M, { result: "failure", user_id: "u", asn: 4 }));
    expect(alerts).toHaveLength(1);
  });

  it("keeps 5 and \"5\" apart in group keys but counts values as written", async () => {
    const { engine, alerts } = await engineFor([distinct]);
    engine.process(ev(0, { result: "failure", user_id: 5, asn: 1 }));
    engine.process(ev(1, { result: "failure", user_id: "5", asn: 2 }));
    engine.process(ev(2, { result: "failure", user_id: 5, asn: 3 }));
    expect(alerts).toHaveLength(0);
  });
});

describe("sequence", () => {
  const seq: Partial<RuleDoc> = {
    id: "s-takeover",
    title: "takeover",
    severity: "critical",
    kind: "sequence",
    group_by: ["user_id"],
    sequence: {
      within: "5m",
      steps: [
        { name: "fail", where: { and: [{ "==": [{ var: "action" }, "login"] }, { "==": [{ var: "result" }, "failure"] }] } },
        { name: "ok", where: { and: [{ "==": [{ var: "action" }, "login"] }, { "==": [{ var: "result" }, "success"] }] } },
        { name: "admin", where: { "==": [{ var: "action" }, "admin_action"] } },
      ],
    },
  };

  it("fires when the steps happen in order within the span, joined on group_by", async () => {
    const { engine, alerts } = await engineFor([seq]);
    engine.process(ev(0, { action: "login", result: "failure", user_id: "u" }));
    engine.process(ev(10 * S, { action: "login", result: "success", user_id: "other" }));
    engine.process(ev(20 * S, { action: "admin_action", user_id: "u" }));
    expect(alerts).toHaveLength(0);
    engine.process(ev(30 * S, { action: "login", result: "success", user_id: "u" }));
    engine.process(ev(40 * S, { action: "admin_action", user_id: "u" }));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.alert.events).toHaveLength(3);
    expect(alerts[0]!.alert.window_start).toBe("2026-11-23T10:00:00.000Z");
  });

  it("does not fire when the span is exceeded", async () => {
    const { engine, alerts } = await engineFor([seq]);
    engine.process(ev(0, { action: "login", result: "failure", user_id: "u" }));
    engine.process(ev(1 * M, { action: "login", result: "success", user_id: "u" }));
    engine.process(ev(6 * M, { action: "admin_action", user_id: "u" }));
    expect(alerts).toHaveLength(0);
  });

  it("repeated steps (two failures then a success; their shared condition is evaluated once) need one event each", async () => {
    const fail = { and: [{ "==": [{ var: "action" }, "login"] }, { "==": [{ var: "result" }, "failure"] }] };
    const brute: Partial<RuleDoc> = {
      id: "s-brute",
      title: "brute force that worked",
      severity: "high",
      kind: "sequence",
      group_by: ["user_id"],
      sequence: { within: "5m", steps: [{ where: fail }, { where: structuredClone(fail) }, { where: { and: [{ "==": [{ var: "action" }, "login"] }, { "==": [{ var: "result" }, "success"] }] } }] },
    };
    const { engine, alerts } = await engineFor([brute]);
    const evs = [
      ev(0, { action: "login", result: "failure", user_id: "u" }),
      ev(1 * S, { action: "login", result: "success", user_id: "u" }),
      ev(2 * S, { action: "login", result: "failure", user_id: "u" }),
      ev(3 * S, { action: "login", result: "success", user_id: "u" }),
    ];
    engine.process(evs[0]!);
    engine.process(evs[1]!);
    expect(alerts).toHaveLength(0);
    engine.process(evs[2]!);
    engine.process(evs[3]!);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.alert.events).toEqual([evs[0]!.event_id, evs[2]!.event_id, evs[3]!.event_id]);
  });
});

describe("absence", () => {
  const absence: Partial<RuleDoc> = {
    id: "a-knock",
    title: "knock without tls",
    severity: "medium",
    kind: "absence",
    group_by: ["src_ip"],
    absence: { after: { "==": [{ var: "action" }, "spa_open"] }, expect: { "==": [{ var: "action" }, "tls_handshake"] }, within: "60s" },
  };

  it("fires when the watermark passes A + T, not before, and a B in time cancels", async () => {
    const { engine, alerts } = await engineFor([absence], { latenessMs: 0 });
    engine.process(ev(0, { action: "spa_open", src_ip: "10.0.0.1" }));
    engine.process(ev(0, { action: "spa_open", src_ip: "10.0.0.2" }));
    engine.process(ev(30 * S, { action: "tls_handshake", src_ip: "10.0.0.2" }));
    engine.process(ev(60 * S, { action: "gw_health" }));
    expect(alerts).toHaveLength(0);
    engine.process(ev(61 * S, { action: "gw_health" }));
    expect(alerts.map((a) => a.alert.group)).toEqual([{ src_ip: "10.0.0.1" }]);
    expect(alerts[0]!.timestamp).toBe("2026-11-23T10:01:00.000Z");
  });

  it("waits for the allowed lateness: a B arriving late but within it still cancels", async () => {
    const { engine, alerts } = await engineFor([absence]);
    engine.process(ev(0, { action: "spa_open", src_ip: "10.0.0.1" }));
    engine.process(ev(80 * S, { action: "gw_health" })); // watermark 50 s
    engine.process(ev(55 * S, { action: "tls_handshake", src_ip: "10.0.0.1" }));
    engine.process(ev(200 * S, { action: "gw_health" }));
    expect(alerts).toHaveLength(0);
  });

  it("fires from advanceWatermark when the stream is quiet", async () => {
    const { engine, alerts } = await engineFor([absence]);
    engine.process(ev(0, { action: "spa_open", src_ip: "10.0.0.1" }));
    expect(engine.hasPending()).toBe(true);
    engine.advanceWatermark(Date.parse("2026-11-23T10:01:00.001Z"));
    expect(alerts).toHaveLength(1);
    expect(engine.hasPending()).toBe(false);
  });
});

describe("match", () => {
  const relax: Partial<RuleDoc> = { id: "m-relax", title: "relax", severity: "critical", kind: "match", where: { "==": [{ var: "action" }, "policy_relaxation"] } };
  const grouped: Partial<RuleDoc> = { id: "m-grouped", title: "grouped", severity: "low", kind: "match", where: { "==": [{ var: "action" }, "login"] }, group_by: ["user_id"], suppress: "1h" };

  it("without group_by every event alerts; with group_by once per suppression", async () => {
    const { engine, alerts } = await engineFor([relax, grouped]);
    engine.process(ev(0, { action: "policy_relaxation" }));
    engine.process(ev(0, { action: "policy_relaxation" }));
    engine.process(ev(0, { action: "login", user_id: "a" }));
    engine.process(ev(30 * M, { action: "login", user_id: "a" }));
    engine.process(ev(61 * M, { action: "login", user_id: "a" }));
    expect(alerts.map((a) => a.alert.rule)).toEqual(["m-relax", "m-relax", "m-grouped", "m-grouped"]);
    expect(new Set(alerts.map((a) => a.event_id)).size).toBe(4);
  });

  it("never feeds on alert events unless a rule names the alert action", async () => {
    const anyRule: Partial<RuleDoc> = { id: "m-any", title: "any failure", severity: "low", kind: "match", where: { "==": [{ var: "result" }, "failure"] } };
    const onAlerts: Partial<RuleDoc> = { id: "m-alerts", title: "critical alerts", severity: "high", kind: "match", where: { and: [{ "==": [{ var: "action" }, "alert"] }, { "==": [{ var: "severity" }, "critical"] }] } };
    const { engine, alerts } = await engineFor([anyRule, onAlerts]);
    engine.process(ev(0, { action: "alert", result: "failure", severity: "critical" }));
    expect(alerts.map((a) => a.alert.rule)).toEqual(["m-alerts"]);
    engine.process(ev(0, { action: "login", result: "failure" }));
    expect(alerts.map((a) => a.alert.rule)).toEqual(["m-alerts", "m-any"]);
  });
});

describe("alert documents", () => {
  it("have deterministic ids: same rule revision and events → same ids; another revision → other ids", async () => {
    const run = async (rule: Partial<RuleDoc>) => {
      const { engine, alerts, state } = await engineFor([rule], { revision: "r1" });
      for (let i = 0; i < 3; i++) engine.process({ ...ev(i * S, { action: "login", user_id: "u1" }), event_id: `x${i}` });
      return { alerts, state };
    };
    const a = await run(threshold);
    const b = await run(threshold);
    const c = await run({ ...threshold, window: "2m" });
    expect(a.alerts[0]!.event_id).toBe(b.alerts[0]!.event_id);
    expect(a.alerts[0]!.event_id).not.toBe(c.alerts[0]!.event_id);
    const al = a.alerts[0]!;
    expect(al).toMatchObject({ action: "alert", component: "siem", severity: "high" });
    expect(al.alert).toMatchObject({ rule: "t-fail", title: "failures", revision: a.state.objectDigest("rule", "t-fail"), commit: "r1", events: ["x0", "x1", "x2"] });
  });

  it("record the digests of the lists a rule uses", async () => {
    const state = await stateWith();
    const alerts: AlertEvent[] = [];
    const engine = new Engine(compileRules(state), { onAlert: (a) => alerts.push(a) });
    engine.process(ev(0, { action: "tls_handshake", src_ip: "203.0.113.1", tls_ja3: "ffff" }));
    const ja3 = alerts.find((a) => a.alert.rule === "ja3-not-allowlisted")!;
    expect(ja3.alert.lists).toEqual({ "ja3-allowlist": state.objectDigest("list", "ja3-allowlist") });
  });
});

describe("reload", () => {
  it("keeps the state of unchanged rules, resets changed ones, drops removed ones", async () => {
    const other: Partial<RuleDoc> = { ...threshold, id: "t-other" };
    const { engine, alerts } = await engineFor([threshold, other]);
    engine.process(ev(0, { action: "login", user_id: "u" }));
    engine.process(ev(S, { action: "login", user_id: "u" }));
    const keptState = engine.stateOf("t-fail");
    const next = await stateWith([threshold, { ...other, threshold: { count: 2 } }], { only: true, revision: "r2" });
    engine.setRules(compileRules(next));
    expect(engine.stateOf("t-fail")).toBe(keptState);
    expect(engine.stats()["t-other"]!.entries).toBe(0);
    engine.process(ev(2 * S, { action: "login", user_id: "u" }));
    // t-fail had two events before the reload: the third fires it; t-other started over and has one.
    expect(alerts.map((a) => a.alert.rule)).toEqual(["t-fail"]);
    expect(alerts[0]!.alert.commit).toBe("r2");
    const last = await stateWith([other], { only: true, revision: "r3" });
    engine.setRules(compileRules(last));
    expect(Object.keys(engine.stats())).toEqual(["t-other"]);
  });
});

describe("action index", () => {
  it("offers a rule only the actions it can match, and evaluates the rest of its condition exactly", async () => {
    const rule: Partial<RuleDoc> = {
      id: "m-idx",
      title: "idx",
      severity: "low",
      kind: "match",
      where: { and: [{ in: [{ var: "action" }, ["login", "otp_verify"]] }, { "==": [{ var: "result" }, "failure"] }, { "==": [{ var: "action" }, "login"] }] },
    };
    const { engine, alerts } = await engineFor([rule]);
    engine.process(ev(0, { event_id: "a", action: "login", result: "success" }));
    engine.process(ev(1, { event_id: "b", action: "otp_verify", result: "failure" }));
    engine.process(ev(2, { event_id: "c", action: "login", result: "failure" }));
    engine.process(ev(3, { event_id: "d", result: "failure" }));
    // not a string: json-logic-js's loose == and indexOf decide, as for any other field
    engine.process(ev(4, { event_id: "e", action: ["login"], result: "failure" }));
    expect(alerts.map((a) => a.alert.events[0])).toEqual(["c"]);
  });
});
