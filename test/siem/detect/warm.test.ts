/**
 * Item 6 of issue #5: a changed rule starts fresh and warms its window from
 * the store. Real journal, real embedded store (SQLite), the store's journal
 * consumer where the store keeps up, hand-driven where a test needs it to lag.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { consume, openJournal } from "../../../engine/siem/journal/index.js";
import type { LocalJournal } from "../../../engine/siem/journal/index.js";
import { openStore } from "../../../engine/siem/store/index.js";
import type { EventStore } from "../../../engine/siem/store/index.js";
import { Detector } from "../../../engine/siem/detect/index.js";
import type { AlertEvent } from "../../../engine/siem/detect/index.js";
import type { RuleDoc } from "../../../engine/config/index.js";
import { ev, stateWith } from "./helpers.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function temp(): { journal: LocalJournal; store: EventStore } {
  const dir = mkdtempSync(join(tmpdir(), "viw-detect-warm-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const journal = openJournal(join(dir, "journal", "journal.db"), { consumers: ["detector", "store"] });
  cleanup.push(() => journal.close());
  const store = openStore(join(dir, "store", "events.db"));
  cleanup.push(() => store.close());
  return { journal, store };
}

const alertsIn = (j: LocalJournal): AlertEvent[] => j.read(0, 100_000).filter((r) => r.index === "viw-alerts").map((r) => r.event as AlertEvent);

const burst = (count: number, severity: RuleDoc["severity"] = "medium"): Partial<RuleDoc> => ({
  id: "burst",
  title: "login burst",
  severity,
  kind: "threshold",
  where: { "==": [{ var: "action" }, "login"] },
  group_by: ["user_id"],
  window: "10m",
  threshold: { count },
});

async function detector(journal: LocalJournal, store: EventStore | undefined, rule: Partial<RuleDoc>) {
  const d = new Detector({ journal, store });
  (await d.prepare(await stateWith([rule], { only: true, revision: "r1" }), undefined)).commit();
  d.start();
  cleanup.push(() => d.stop());
  return d;
}

async function reload(d: Detector, rule: Partial<RuleDoc>, revision: string) {
  (await d.prepare(await stateWith([rule], { only: true, revision }), undefined)).commit();
}

const login = (t: number, user = "u-1") => ({ index: "viw-auth", event: ev(t, { action: "login", result: "failure", user_id: user }) });

describe("a changed rule warms its window from the store", () => {
  it("N-1 stored events, the rule changes (severity), one more event → one alert with all N contributing events", async () => {
    const { journal, store } = temp();
    const sink = consume(journal, "store", store.handle);
    cleanup.push(() => sink.stop());
    const d = await detector(journal, store, burst(5, "medium"));
    const before = [login(0), login(1000), login(2000), login(3000), login(4000, "u-other")];
    await journal.append(before);
    await d.idle();
    await sink.idle();
    expect(store.count()).toBe(5);
    await reload(d, burst(5, "critical"), "r2");
    expect((d.status() as { warmed: Record<string, number> }).warmed).toEqual({ burst: 5 });
    const last = login(5000);
    await journal.append([last]);
    await d.idle();
    const alerts = alertsIn(journal);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.severity).toBe("critical");
    expect(alerts[0]!.alert.commit).toBe("r2");
    expect(alerts[0]!.alert.group).toEqual({ user_id: "u-1" });
    expect(alerts[0]!.alert.events).toEqual([...before.slice(0, 4), last].map((r) => r.event.event_id));
  });

  it("without a store the changed rule starts empty (the same events do not fire)", async () => {
    const { journal } = temp();
    const d = await detector(journal, undefined, burst(5, "medium"));
    await journal.append([login(0), login(1000), login(2000), login(3000)]);
    await d.idle();
    await reload(d, burst(5, "critical"), "r2");
    await journal.append([login(5000)]);
    await d.idle();
    expect(alertsIn(journal)).toHaveLength(0);
  });

  it("history that already meets the new definition does not alert at the switch, and starts the group's suppression", async () => {
    const { journal, store } = temp();
    const sink = consume(journal, "store", store.handle);
    cleanup.push(() => sink.stop());
    const d = await detector(journal, store, burst(4));
    await journal.append([login(0), login(1000), login(2000)]);
    await d.idle();
    await sink.idle();
    await reload(d, burst(3), "r2"); // 3 stored events now meet the rule: judged by r1 already, no alert
    await d.idle();
    expect(alertsIn(journal)).toHaveLength(0);
    await journal.append([login(3000)]); // within the suppression started by the warmed condition
    await d.idle();
    expect(alertsIn(journal)).toHaveLength(0);
    await journal.append([login(10 * 60_000 + 5000), login(10 * 60_000 + 6000), login(10 * 60_000 + 7000)]);
    await d.idle();
    expect(alertsIn(journal).map((a) => a.alert.events.length)).toEqual([3]); // after the suppression it fires again
  });

  it("replays exactly the events the detector evaluated: its backlog arrives live, what the store has not written yet comes from the journal", async () => {
    const { journal, store } = temp();
    const d = await detector(journal, store, burst(5));
    // e[3] is stamped before the last evaluated event (out of order), so only its journal position tells it was not evaluated.
    const e = [login(0), login(1000), login(2000), login(1500), login(4000)];
    await journal.append(e.slice(0, 3));
    await d.idle();
    // The store lags: it has written the first event only.
    store.add([e[0]!]);
    journal.commitCursor("store", 1);
    await d.stop();
    // The 4th event is journaled and already stored, but the detector has not evaluated it.
    await journal.append([e[3]!]);
    store.add([e[3]!]);
    await reload(d, burst(5, "high"), "r2");
    expect((d.status() as { warmed: Record<string, number> }).warmed).toEqual({ burst: 3 }); // e1 from the store, e2 and e3 from the journal
    d.start();
    await d.idle();
    expect(alertsIn(journal)).toHaveLength(0); // e4 counted once, live: 4 of 5
    await journal.append([e[4]!]);
    await d.idle();
    expect(alertsIn(journal).map((a) => a.alert.events)).toEqual([[e[0]!, e[1]!, e[3]!, e[2]!, e[4]!].map((r) => r.event.event_id)]);
  });

  it("an unchanged rule keeps its state object and is not warmed; a removed rule's state is dropped", async () => {
    const { journal, store } = temp();
    const sink = consume(journal, "store", store.handle);
    cleanup.push(() => sink.stop());
    const other: Partial<RuleDoc> = { ...burst(2), id: "other" };
    const d = new Detector({ journal, store });
    (await d.prepare(await stateWith([burst(5), other], { only: true, revision: "r1" }), undefined)).commit();
    d.start();
    cleanup.push(() => d.stop());
    await journal.append([login(0), login(1000), login(2000)]);
    await d.idle();
    await sink.idle();
    // r2: burst unchanged, other removed
    (await d.prepare(await stateWith([burst(5)], { only: true, revision: "r2" }), undefined)).commit();
    const status = d.status() as { warmed: Record<string, number>; state: Record<string, { entries: number }> };
    expect(status.warmed).toEqual({});
    expect(Object.keys(status.state)).toEqual(["burst"]);
    expect(status.state.burst!.entries).toBe(3);
    // other comes back: a new rule, not a changed one, so it starts empty
    (await d.prepare(await stateWith([burst(5), other], { only: true, revision: "r3" }), undefined)).commit();
    expect((d.status() as { state: Record<string, { entries: number }> }).state.other!.entries).toBe(0);
  });
});
