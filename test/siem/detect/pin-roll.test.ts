// The pin-roll mismatch rule against pin-set fixtures in each roll phase
// (DESIGN §5: pin_check events carry extra.pin and extra.pin_set).
import { describe, expect, it } from "vitest";
import { loadSnapshot, readDirSnapshot } from "../../../engine/config/index.js";
import { compileRules, Engine } from "../../../engine/siem/detect/index.js";
import type { AlertEvent } from "../../../engine/siem/detect/index.js";
import { ROOT } from "./helpers.js";

const PRIMARY = "OwBrGMlpxCGg058WxNYnpfVDIR4IeBhwzS0tkXB/KMY=";
const BACKUP = "RqKLJuEe0msolyS8tLNrgkgKmjyrpWmLwNfqMbo/mQ8=";
const OLD = "MOkuFyV2TZJ1cLsdzcbPVRpjYVg8Lb/+LO/qc2dmfto=";

async function withGatewayRoll(roll: string) {
  const snap = await readDirSnapshot(ROOT);
  const f = snap.files.find((x) => x.path === "pins/gateway.yaml")!;
  f.bytes = Buffer.from(f.bytes!.toString("utf8").replace(/roll:\n(?:  .*\n)+/, roll));
  const { state, errors } = loadSnapshot(snap);
  expect(errors).toEqual([]);
  return state!;
}

function check(state: Awaited<ReturnType<typeof withGatewayRoll>>, events: [string, string][]) {
  const alerts: AlertEvent[] = [];
  const engine = new Engine(compileRules(state).filter((r) => r.id === "pin-roll-mismatch"), { onAlert: (a) => alerts.push(a) });
  events.forEach(([timestamp, pin], i) =>
    engine.process({ event_id: `p${i}`, timestamp, received_at: timestamp, action: "pin_check", result: "success", device_id: `d-${i}`, extra: { pin, pin_set: "gateway" } }),
  );
  return alerts.map((a) => a.device_id);
}

describe("pin-roll mismatch", () => {
  it("cutover: the outgoing primary is accepted during the window and a mismatch after it; the new key never", async () => {
    const state = await withGatewayRoll(`roll:\n  phase: cutover\n  since: 2026-11-01\n  to: ${BACKUP}\n  window: 14d\n  adoption_threshold: 0.95\n`);
    const fired = check(state, [
      ["2026-11-14T23:59:59Z", PRIMARY], // inside the 14 days
      ["2026-11-15T00:00:00Z", PRIMARY], // window elapsed
      ["2026-11-20T00:00:00Z", BACKUP],
      ["2026-11-21T00:00:00Z", OLD], // retired in May
    ]);
    expect(fired).toEqual(["d-1", "d-3"]);
    const rule = compileRules(state).find((r) => r.id === "pin-roll-mismatch")!;
    expect(rule.pinSets).toEqual({ gateway: state.objectDigest("pinset", "gateway"), "backend-api": state.objectDigest("pinset", "backend-api") });
  });

  it("stable: primary and backup are accepted at any time", async () => {
    const state = await withGatewayRoll("roll:\n  phase: stable\n  since: 2026-11-01\n");
    expect(check(state, [["2027-06-01T00:00:00Z", PRIMARY], ["2027-06-01T00:00:01Z", BACKUP], ["2026-04-30T00:00:00Z", OLD]])).toEqual([]);
  });
});
