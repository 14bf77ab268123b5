import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import type { PinSetDoc } from "../../engine/config/index.js";
import { PinTelemetry, pinRoutes } from "../../engine/pki/pins/index.js";
import { openJournal, type LocalJournal } from "../../engine/siem/journal/index.js";

const A = "OwBrGMlpxCGg058WxNYnpfVDIR4IeBhwzS0tkXB/KMY=";
const B = "RqKLJuEe0msolyS8tLNrgkgKmjyrpWmLwNfqMbo/mQ8=";
const R = "MOkuFyV2TZJ1cLsdzcbPVRpjYVg8Lb/+LO/qc2dmfto=";
const X = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";

const gateway = (phase: PinSetDoc["roll"]["phase"], threshold = 0.75): PinSetDoc => ({
  id: "gateway",
  profile: "tls-gateway",
  hosts: ["gw.viworks.example"],
  pins: [
    { sha256: A, role: "primary", label: "2026a" },
    { sha256: B, role: "backup", label: "2026b" },
    { sha256: R, role: "retired", retired_at: "2026-05-01" },
  ],
  roll: { phase, since: "2026-11-10", window: "7d", adoption_threshold: threshold, ...(phase === "cutover" ? { to: B } : {}) },
});

const NOW = Date.parse("2026-11-23T12:00:00Z");
let n = 0;
function check(device: string, pin: string, at: string, version = "3.2.0", set = "gateway") {
  return { index: "viw-pki", event: { event_id: `e${++n}`, timestamp: at, received_at: at, action: "pin_check", result: "success", device_id: device, extra: { pin, pin_set: set, client_version: version } } };
}

const dirs: string[] = [];
const journals: LocalJournal[] = [];
afterEach(async () => {
  for (const j of journals.splice(0)) await j.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp() {
  const d = mkdtempSync(join(tmpdir(), "viw-pintel-"));
  dirs.push(d);
  return d;
}

describe("pin-check telemetry from the journal", () => {
  it("counts per pin and phase, measures backup adoption among distinct devices in the window, and cutover_safe follows the threshold", async () => {
    const dir = tmp();
    const journal = openJournal(join(dir, "journal.db"), { consumers: ["pins"] });
    journals.push(journal);
    const t = new PinTelemetry({ stateFile: join(dir, "pins.json"), now: () => NOW });
    t.setPinSets(new Map([["gateway", gateway("backup-deployed")]]));
    const consumer = t.start(journal);
    // d1, d2, d3 carry the backup (new app); d4 only the primary; d5 was seen before the window; one old-pin and one unknown-pin client.
    await journal.append([
      check("d1", A, "2026-11-22T10:00:00Z"), check("d1", B, "2026-11-22T10:00:00Z"),
      check("d2", B, "2026-11-21T10:00:00Z"), check("d2", B, "2026-11-23T10:00:00Z"),
      check("d3", B, "2026-11-20T10:00:00Z", "3.3.0"),
      check("d4", A, "2026-11-22T09:00:00Z", "3.1.0"),
      check("d5", A, "2026-11-01T09:00:00Z", "3.0.0"),
      check("d6", R, "2026-11-22T09:00:00Z", "2.9.0"),
      check("d7", X, "2026-11-22T09:00:00Z", "2.9.0"),
      check("d8", A, "2026-11-22T09:00:00Z", "3.2.0", "no-such-set"),
      { index: "viw-auth", event: { event_id: "login1", timestamp: "2026-11-22T09:00:00Z", received_at: "2026-11-22T09:00:00Z", action: "login", device_id: "d9" } },
    ]);
    await consumer.idle();
    const s = t.pinStatus("gateway")!;
    expect(s.phase).toBe("backup-deployed");
    expect(s.issuable).toEqual([A]);
    const byPin = Object.fromEntries(s.pins.map((p) => [p.sha256, p]));
    expect(byPin[A]).toMatchObject({ role: "primary", accepted: true, count: 3, by_phase: { "backup-deployed": 3 }, devices: 2, client_versions: { "3.2.0": 1, "3.1.0": 1, "3.0.0": 1 } });
    expect(byPin[B]).toMatchObject({ role: "backup", accepted: true, count: 4, devices: 3, client_versions: { "3.2.0": 3, "3.3.0": 1 } });
    expect(byPin[R]).toMatchObject({ role: "retired", accepted: false, retired_from: "2026-05-01T00:00:00.000Z", count: 1 });
    expect(s.unknown_pins).toEqual([{ sha256: X, count: 1, last_seen: "2026-11-22T09:00:00.000Z" }]);
    // Window 7d: d1..d4, d6, d7 are in it (6 devices), d5 is not; d1, d2, d3 carry the backup.
    expect(s.adoption).toMatchObject({ backup: [B], devices: 6, adopted: 3, ratio: 0.5, threshold: 0.75 });
    expect(s.cutover_safe).toBe(false);

    // More devices update: adoption crosses 75 %.
    await journal.append([check("d4", B, "2026-11-23T08:00:00Z"), check("d6", B, "2026-11-23T08:00:00Z"), check("d7", B, "2026-11-23T08:00:00Z")]);
    await consumer.idle();
    expect(t.pinStatus("gateway")!.adoption).toMatchObject({ devices: 6, adopted: 6, ratio: 1 });
    expect(t.pinStatus("gateway")!.cutover_safe).toBe(true);

    // The phase of the applied revision labels the counts from then on.
    t.setPinSets(new Map([["gateway", gateway("cutover")]]));
    await journal.append([check("d1", B, "2026-11-23T11:00:00Z")]);
    await consumer.idle();
    const c = t.pinStatus("gateway")!;
    expect(c.pins.find((p) => p.sha256 === B)!.by_phase).toEqual({ "backup-deployed": 7, cutover: 1 });
    expect(c.pins.find((p) => p.sha256 === A)!.role).toBe("outgoing");
    expect(t.pinStatus("no-such-set")).toBeUndefined();
    await t.stop();
  });

  it("a restart neither loses nor double-counts: the aggregate is saved with the seq it covers", async () => {
    const dir = tmp();
    const file = join(dir, "journal.db");
    let journal = openJournal(file, { consumers: ["pins"] });
    const sets = new Map([["gateway", gateway("backup-deployed")]]);
    let t = new PinTelemetry({ stateFile: join(dir, "pins.json"), now: () => NOW });
    t.setPinSets(sets);
    let consumer = t.start(journal);
    await journal.append([check("d1", B, "2026-11-22T10:00:00Z"), check("d2", A, "2026-11-22T10:00:00Z")]);
    await consumer.idle();
    await t.stop();
    // Simulate a crash after the aggregate was saved but before the cursor moved: rewind the cursor.
    journal.commitCursor("pins", 0);
    await journal.close();

    journal = openJournal(file, { consumers: ["pins"] });
    journals.push(journal);
    t = new PinTelemetry({ stateFile: join(dir, "pins.json"), now: () => NOW });
    t.setPinSets(sets);
    consumer = t.start(journal);
    await journal.append([check("d3", B, "2026-11-22T11:00:00Z")]);
    await consumer.idle();
    const s = t.pinStatus("gateway")!;
    expect(s.pins.find((p) => p.sha256 === B)!.count).toBe(2);
    expect(s.pins.find((p) => p.sha256 === A)!.count).toBe(1);
    expect(s.adoption).toMatchObject({ devices: 3, adopted: 2 });
    await t.stop();
  });
});

describe("bad pin_check events", () => {
  it("are skipped without counting or throwing: no pin, no set, a non-string pin, an unparseable time, an oversized value", () => {
    const t = new PinTelemetry({ now: () => NOW });
    t.setPinSets(new Map([["gateway", gateway("stable")]]));
    const base = { event_id: "x", received_at: "2026-11-22T10:00:00Z", action: "pin_check", device_id: "d1" };
    const bad: Record<string, unknown>[] = [
      { ...base, timestamp: "2026-11-22T10:00:00Z" },
      { ...base, timestamp: "2026-11-22T10:00:00Z", extra: { pin: A } },
      { ...base, timestamp: "2026-11-22T10:00:00Z", extra: { pin: 42, pin_set: "gateway" } },
      { ...base, timestamp: "yesterday", extra: { pin: A, pin_set: "gateway" } },
      { ...base, timestamp: "2026-11-22T10:00:00Z", extra: { pin: "x".repeat(10_000), pin_set: "gateway" } },
      { ...base, timestamp: "2026-11-22T10:00:00Z", extra: "not an object" },
    ];
    for (const e of bad) expect(() => t.observe(e as never)).not.toThrow();
    const s = t.pinStatus("gateway")!;
    expect(s.pins.reduce((n, p) => n + p.count, 0)).toBe(0);
    expect(s.unknown_pins).toEqual([]);
    expect(s.adoption).toMatchObject({ devices: 0, ratio: null });
    expect(s.cutover_safe).toBe(false);
  });
});

describe("GET /v1/pins/ID on the admin port", () => {
  it("answers the status, 404 with a message for an unknown set, and lists the sets", async () => {
    const t = new PinTelemetry({ now: () => NOW });
    t.setPinSets(new Map([["gateway", gateway("backup-deployed", 0.5)]]));
    t.observe(check("d1", B, "2026-11-22T10:00:00Z").event);
    const app = Fastify();
    await app.register(pinRoutes(t));
    const ok = await app.inject({ method: "GET", url: "/v1/pins/gateway" });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ id: "gateway", phase: "backup-deployed", cutover_safe: true, adoption: { devices: 1, adopted: 1, ratio: 1 } });
    const missing = await app.inject({ method: "GET", url: "/v1/pins/nope" });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({ error: { code: "not_found", message: 'no pin set "nope" in the applied revision (pins/nope.yaml)' } });
    const list = await app.inject({ method: "GET", url: "/v1/pins" });
    expect(list.json()).toEqual({ pin_sets: [{ id: "gateway", phase: "backup-deployed", cutover_safe: true, adoption: 1 }] });
    await app.close();
  });
});
