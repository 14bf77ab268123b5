// Spec §9.2 acceptance scenarios through the real ingest path: signed NDJSON
// over mTLS HTTPS (curl) → normalize → journal → the detector consumes its
// cursor → alerts appended to the journal (viw-alerts) → stored.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { queryEvents } from "../../../engine/siem/index.js";
import { Detector } from "../../../engine/siem/detect/index.js";
import type { AlertEvent } from "../../../engine/siem/detect/index.js";
import { signBody, startHarness, testState, type Harness } from "../ingest/harness.js";

const run = promisify(execFile);
let h: Harness;
let detector: Detector;
let n = 0;

async function ship(events: Record<string, unknown>[]): Promise<void> {
  const body = Buffer.from(events.map((e) => JSON.stringify(e)).join("\n") + "\n");
  const file = join(h.dataDir, `detect-body-${++n}`);
  writeFileSync(file, body);
  const client = h.pki.client("gw1");
  const { stdout } = await run("curl", [
    "-sS", "--cacert", h.pki.files["int-tls.crt"]!, "--cert", client.certFile, "--key", client.keyFile,
    "-o", `${file}.out`, "-w", "%{http_code}",
    "-H", "Content-Type: application/x-ndjson", "-H", "Viw-Key-Id: vector-gw", "-H", `Viw-Signature: ${signBody(h.shippers.gw, body)}`,
    "--data-binary", `@${file}`, `${h.bulk}/v1/ingest/bulk`,
  ]);
  expect(stdout, readFileSync(`${file}.out`, "utf8")).toBe("200");
  expect(JSON.parse(readFileSync(`${file}.out`, "utf8"))).toMatchObject({ accepted: events.length, rejected: 0 });
}

/** Alerts in the journal (what the detector appended), optionally of one rule. */
function journalAlerts(rule?: string): AlertEvent[] {
  const out: AlertEvent[] = [];
  let after = 0;
  for (;;) {
    const recs = h.service.journal.read(after, 1000);
    if (recs.length === 0) break;
    for (const r of recs) if (r.index === "viw-alerts" && (!rule || (r.event as AlertEvent).alert.rule === rule)) out.push(r.event as AlertEvent);
    after = recs[recs.length - 1]!.seq;
  }
  return out;
}

const base = Date.now() - 20 * 60_000;
const at = (offsetMs: number) => new Date(base + offsetMs).toISOString();

beforeAll(async () => {
  h = await startHarness({ consumers: ["detector"] });
  detector = new Detector({ journal: h.service.journal });
  // The same content the harness's ingest runs (the default rules, test shipper keys).
  const state = await testState({ "vector-gw": h.shippers.gw, backend: h.shippers.backend });
  (await detector.prepare(state, undefined)).commit();
  detector.start();
}, 60_000);

afterAll(async () => {
  await detector?.stop();
  await h?.close();
});

async function settle(): Promise<void> {
  await detector.idle();
  await h.service.idle();
}

describe("spec §9.2 through ingest → journal → detector", () => {
  it("10 failed OTP verifications for one user from 3 ASNs → exactly one alert; from 2 ASNs → none", async () => {
    const asns3 = [64500, 64501, 64502];
    const asns2 = [64500, 64501];
    await ship(
      Array.from({ length: 10 }, (_, i) => ({ timestamp: at(i * 20_000), action: "otp_verify", result: "failure", user_id: "u-three", asn: asns3[i % 3], src_ip: "198.51.100.20" })),
    );
    await ship(
      Array.from({ length: 10 }, (_, i) => ({ timestamp: at(4 * 60_000 + i * 20_000), action: "otp_verify", result: "failure", user_id: "u-two", asn: asns2[i % 2], src_ip: "198.51.100.21" })),
    );
    await settle();
    expect((detector.status() as { late_events: number }).late_events).toBe(0);
    const alerts = journalAlerts("otp-credential-stuffing");
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.alert.group).toEqual({ user_id: "u-three" });
    expect(alerts[0]!.severity).toBe("high");
    expect(alerts[0]!.alert.events).toHaveLength(3);
    // stored like every event, in viw-alerts
    const stored = queryEvents(h.service.store!, { index: "viw-alerts", since: "1h", where: { "==": [{ var: "alert.rule" }, "otp-credential-stuffing"] } } as never);
    expect(stored.total).toBe(1);
    expect(stored.hits[0]!.event_id).toBe(alerts[0]!.event_id);
  });

  it("invalid SPA bursts → the DoS rule fires and SPA-without-TLS fires", async () => {
    await ship(
      Array.from({ length: 12 }, (_, i) => ({ timestamp: at(8 * 60_000 + i * 1000), action: "spa_open", result: "failure", error_code: "replay", src_ip: "203.0.113.66", fwknop_id: "k-1" })),
    );
    await settle();
    expect(journalAlerts("spa-replay-burst").map((a) => a.alert.group)).toEqual([{ src_ip: "203.0.113.66" }]);
    expect(journalAlerts("spa-without-tls")).toHaveLength(0); // the 60 s are not over in event time yet
    // Time moves on (a later event from elsewhere): the knocks were never followed by TLS.
    await ship([{ timestamp: at(11 * 60_000), action: "gw_health", result: "success", site: "fra1", device_id: "gw-fra1-a" }]);
    await settle();
    const absent = journalAlerts("spa-without-tls");
    expect(absent.map((a) => a.alert.group)).toEqual([{ src_ip: "203.0.113.66" }]);
    expect(absent[0]!.alert.window_start).toBe(new Date(base + 8 * 60_000).toISOString());
  });

  it("a TLS 1.2 client with an unknown JA3 → alert (and the downgrade attempt is flagged)", async () => {
    await ship([
      { timestamp: at(12 * 60_000), action: "tls_handshake", result: "failure", error_code: "protocol_version", src_ip: "203.0.113.12", tls_ja3: "0123456789abcdef0123456789abcdef" },
      { timestamp: at(12 * 60_000 + 1000), action: "tls_handshake", result: "success", src_ip: "203.0.113.13", tls_ja3: "97beca22d69a6bfaea854305b6a2b9d5" },
    ]);
    await settle();
    const ja3 = journalAlerts("ja3-not-allowlisted");
    expect(ja3.map((a) => a.alert.group)).toEqual([{ src_ip: "203.0.113.12", tls_ja3: "0123456789abcdef0123456789abcdef" }]);
    expect(ja3[0]!.alert.lists).toHaveProperty("ja3-allowlist");
    expect(journalAlerts("tls-downgrade").map((a) => a.alert.group)).toEqual([{ src_ip: "203.0.113.12" }]);
  });

  it("the detector does not feed on its own alerts and keeps its cursor at the head", async () => {
    await settle();
    const before = journalAlerts().length;
    await settle();
    expect(journalAlerts().length).toBe(before);
    expect(h.service.journal.cursor("detector")).toBe(h.service.journal.lastSeq());
    const status = detector.status() as { events: number; late_events: number };
    expect(status.late_events).toBe(0);
  });
});
