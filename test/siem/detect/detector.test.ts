import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { openJournal } from "../../../engine/siem/journal/index.js";
import type { LocalJournal } from "../../../engine/siem/journal/index.js";
import { Detector } from "../../../engine/siem/detect/index.js";
import type { AlertEvent } from "../../../engine/siem/detect/index.js";
import type { RuleDoc } from "../../../engine/config/index.js";
import { ev, stateWith } from "./helpers.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function tempJournal(): LocalJournal {
  const dir = mkdtempSync(join(tmpdir(), "viw-detect-"));
  const j = openJournal(join(dir, "journal.db"), { consumers: ["detector"] });
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanup.push(() => j.close());
  return j;
}

function alertsIn(j: LocalJournal): AlertEvent[] {
  return j.read(0, 100_000).filter((r) => r.index === "viw-alerts").map((r) => r.event as AlertEvent);
}

const burst: Partial<RuleDoc> = {
  id: "burst",
  title: "login burst",
  severity: "high",
  kind: "threshold",
  where: { "==": [{ var: "action" }, "login"] },
  group_by: ["user_id"],
  window: "1m",
  threshold: { count: 3 },
};
const knock: Partial<RuleDoc> = {
  id: "knock",
  title: "knock without tls",
  severity: "medium",
  kind: "absence",
  group_by: ["src_ip"],
  absence: { after: { "==": [{ var: "action" }, "spa_open"] }, expect: { "==": [{ var: "action" }, "tls_handshake"] }, within: "60s" },
};

async function started(j: LocalJournal, rules: Partial<RuleDoc>[], opts: Partial<ConstructorParameters<typeof Detector>[0]> = {}) {
  const d = new Detector({ journal: j, ...opts });
  (await d.prepare(await stateWith(rules, { only: true, revision: "r1" }), undefined)).commit();
  d.start();
  cleanup.push(() => d.stop());
  return d;
}

describe("Detector (journal consumer)", () => {
  it("fires absence rules from the processing-time timer when the stream goes quiet", async () => {
    const j = tempJournal();
    let wall = Date.parse("2026-11-23T12:00:00Z");
    const d = await started(j, [knock], { quietMs: 20, now: () => wall });
    await j.append([{ index: "viw-tunnel", event: ev(0, { action: "spa_open", src_ip: "10.0.0.9" }) }]);
    await d.idle();
    await new Promise((r) => setTimeout(r, 80));
    expect(alertsIn(j)).toHaveLength(0); // no wall time has passed
    wall += 95_000; // 60 s wait + 30 s lateness + a bit, nothing arrived meanwhile
    for (let i = 0; i < 50 && alertsIn(j).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(alertsIn(j).map((a) => a.alert.group)).toEqual([{ src_ip: "10.0.0.9" }]);
  });

  it("hot reload: an unchanged rule keeps its window, a changed one starts fresh, a removed one is dropped", async () => {
    const j = tempJournal();
    const d = await started(j, [burst, { ...burst, id: "burst2" }]);
    const login = (t: number) => ({ index: "viw-auth", event: ev(t, { action: "login", user_id: "u" }) });
    await j.append([login(0), login(1000)]);
    await d.idle();
    // r2: burst unchanged, burst2 changed (count 4 → its two events are forgotten)
    (await d.prepare(await stateWith([burst, { ...burst, id: "burst2", threshold: { count: 4 } }], { only: true, revision: "r2" }), undefined)).commit();
    await j.append([login(2000)]);
    await d.idle();
    expect(alertsIn(j).map((a) => `${a.alert.rule}@${a.alert.commit}`)).toEqual(["burst@r2"]);
    await j.append([login(3000), login(4000)]);
    await d.idle();
    expect(alertsIn(j).map((a) => a.alert.rule)).toEqual(["burst"]); // burst2 has 3 of 4 since r2
    (await d.prepare(await stateWith([{ ...burst, id: "burst2", threshold: { count: 4 } }], { only: true, revision: "r3" }), undefined)).commit();
    expect(Object.keys((d.status() as { state: object }).state)).toEqual(["burst2"]);
    await j.append([login(5000)]);
    await d.idle();
    expect(alertsIn(j).map((a) => a.alert.rule)).toEqual(["burst", "burst2"]);
  });

  it("resumes from its durable cursor after a restart and exposes state size in /metrics", async () => {
    const j = tempJournal();
    const d1 = await started(j, [burst]);
    await j.append([{ index: "viw-auth", event: ev(0, { action: "login", user_id: "a" }) }]);
    await d1.idle();
    await d1.stop();
    expect(j.cursor("detector")).toBe(1);
    const registry = new Registry();
    const d2 = await started(j, [burst], { registry });
    await j.append([{ index: "viw-auth", event: ev(1000, { action: "login", user_id: "b" }) }]);
    await d2.idle();
    expect((d2.status() as { events: number }).events).toBe(1); // only the new record
    const metrics = await registry.getMetricsAsJSON();
    const entries = metrics.find((m) => m.name === "viw_detect_state_entries")!;
    expect(entries.values).toEqual([expect.objectContaining({ labels: { rule: "burst" }, value: 1 })]);
    expect(await registry.metrics()).toMatch(/viw_detect_state_groups\{rule="burst"\} 1/);
  });

  it("appends a detector_limit event routed like any event when a limit is hit", async () => {
    const j = tempJournal();
    const d = await started(j, [{ ...burst, limits: { groups: 1 } }]);
    await j.append([
      { index: "viw-auth", event: ev(0, { action: "login", user_id: "a" }) },
      { index: "viw-auth", event: ev(1, { action: "login", user_id: "b" }) },
    ]);
    await d.idle();
    const notices = j.read(0, 100).filter((r) => r.event.action === "detector_limit");
    expect(notices).toHaveLength(1);
    expect(notices[0]!.index).toBe("viw-other");
    expect(notices[0]!.event).toMatchObject({ component: "siem", policy_id: "burst", error_code: "groups_limit" });
  });
});

describe("Detector.prepare", () => {
  it("refuses a revision whose rules do not compile, naming the rule's file and the condition path", async () => {
    const state = await stateWith([burst], { only: true });
    const bad = { ...burst, where: { in_list: [{ var: "x" }, "no-such-list"] } } as RuleDoc;
    const broken = { ...state, rules: new Map([["burst", bad]]), objectDigest: state.objectDigest, locate: state.locate };
    const d = new Detector({ journal: tempJournal() });
    await expect(d.prepare(broken, undefined)).rejects.toMatchObject({
      service: "detector",
      diagnostics: [expect.objectContaining({ file: "detections/burst.yaml", message: "where.in_list.1: in_list: unknown list `no-such-list`" })],
    });
  });
});

describe("Detector input it cannot trust", () => {
  it("a timestamp far in the future is counted, not used: it cannot make honest events late", async () => {
    const j = tempJournal();
    const d = await started(j, [burst]);
    const now = Date.now();
    const login = (t: number, id: string) => ({ index: "viw-auth", event: { event_id: id, timestamp: new Date(t).toISOString(), received_at: new Date(now).toISOString(), action: "login", user_id: "u" } });
    await j.append([login(now + 365 * 86_400_000, "future"), login(now - 2000, "a"), login(now - 1000, "b"), login(now, "c")]);
    await d.idle();
    expect(d.status()).toMatchObject({ future_events: 1, late_events: 0 });
    expect(alertsIn(j).map((a) => a.alert.events)).toEqual([["a", "b", "c"]]);
  });

  it("events without a usable timestamp are counted as invalid and skipped", async () => {
    const j = tempJournal();
    const d = await started(j, [burst]);
    await j.append([{ index: "viw-auth", event: { event_id: "x", timestamp: "yesterday", received_at: "", action: "login", user_id: "u" } }]);
    await d.idle();
    expect(d.status()).toMatchObject({ invalid_events: 1, events: 0 });
    expect(j.cursor("detector")).toBe(1);
  });
});

describe("Detector when appending alerts fails", () => {
  it("keeps the alerts, retries the batch without counting its events twice, and commits the cursor only after", async () => {
    const j = tempJournal();
    const real = j.append.bind(j);
    let fail = 1;
    j.append = (items) => {
      if (items.some((x) => x.index === "viw-alerts") && fail-- > 0) return Promise.reject(new Error("disk full"));
      return real(items);
    };
    const errors: unknown[] = [];
    const d = await started(j, [{ ...burst, threshold: { count: 3 }, suppress: "0s" }], { onError: (e) => errors.push(e) });
    const login = (t: number, id: string) => ({ index: "viw-auth", event: { ...ev(t, { action: "login", user_id: "u" }), event_id: id } });
    await real([login(0, "a"), login(1000, "b"), login(2000, "c")]);
    for (let i = 0; i < 100 && alertsIn(j).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(errors.map((e) => (e as Error).message)).toEqual(["disk full"]);
    // one alert: had the retried batch been counted again, a suppress-0 threshold of 3 would fire on every re-counted event
    expect(alertsIn(j).map((a) => a.alert.events)).toEqual([["a", "b", "c"]]);
    await d.idle();
    expect(j.cursor("detector")).toBe(4);
  }, 10_000);
});
