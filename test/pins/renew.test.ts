import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { request, Agent, createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { keepRenewed, ManualClock, Renewer, type Credential, type RenewalAlert } from "../../engine/pki/pins/index.js";
import { createTestCa } from "./testca.js";

const DAY = 86_400_000;
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** One HTTPS request (a fresh TLS handshake unless an agent is given): the served certificate's fingerprint. */
function fetchFingerprint(port: number, ca: string, agent: Agent | false = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/", ca, servername: "localhost", agent, minVersion: "TLSv1.3" }, (res) => {
      // A kept-alive socket reused for a later request: no new handshake happened.
      const fp = req.reusedSocket ? "same connection" : ((res.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? "none");
      res.resume();
      res.on("end", () => resolve(fp));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("Renewer schedule", () => {
  const v = (nb: number, days: number) => ({ notBefore: nb, notAfter: nb + days * DAY });

  it("renews at 2/3 of the lifetime, jittered earlier, and no later than renewBefore", () => {
    const clock = new ManualClock(0);
    const r = new Renewer({ current: v(0, 90), renew: async () => v(0, 90), clock });
    expect(r.dueAt(v(0, 90))).toBe(60 * DAY);
    expect(r.dueAt(v(0, 90), 1)).toBe(57 * DAY); // 1/30 of 90 days earlier at most
    const rb = new Renewer({ current: v(0, 90), renew: async () => v(0, 90), clock, renewBefore: 45 * DAY });
    expect(rb.dueAt(v(0, 90))).toBe(45 * DAY);
  });

  it("fires at the due time on a moved clock, backs off exponentially on failure, alerts near expiry, recovers", async () => {
    const clock = new ManualClock(0);
    let fail = true;
    let calls = 0;
    const r = new Renewer({ current: v(0, 90), clock, random: () => 1, backoff: 60_000, maxBackoff: 8 * 3_600_000, renew: async () => {
      calls++;
      if (fail) throw new Error("issuance API unreachable");
      return v(clock.now(), 90);
    } });
    const failures: { attempt: number; retryIn: number }[] = [];
    const alerts: RenewalAlert[] = [];
    r.on("failed", (_e, info) => failures.push(info));
    r.on("alert", (a) => alerts.push(a));
    r.start();
    expect(r.nextAt).toBe(57 * DAY); // random() = 1: the earliest jitter
    clock.set(57 * DAY - 1);
    expect(calls).toBe(0);
    clock.set(57 * DAY);
    await r.idle();
    expect(calls).toBe(1);
    // Backoff doubles: 60 s, 120 s, 240 s ... capped at 8 h.
    for (let i = 0; i < 12; i++) {
      clock.set(r.nextAt!);
      await r.idle();
    }
    expect(failures.map((f) => f.retryIn).slice(0, 5)).toEqual([60_000, 120_000, 240_000, 480_000, 960_000]);
    expect(Math.max(...failures.map((f) => f.retryIn))).toBe(8 * 3_600_000);
    expect(alerts).toEqual([]); // 57 days + a few hours: still more than a sixth (15 days) left
    // Keep failing until 15 days before expiry: a warning names the last error.
    while (clock.now() < 76 * DAY) {
      clock.set(r.nextAt!);
      await r.idle();
    }
    expect(alerts.length).toBeGreaterThan(0);
    expect(alerts[0]).toMatchObject({ level: "warning", notAfter: 90 * DAY, lastError: "issuance API unreachable" });
    expect(alerts[0]!.remaining).toBeLessThanOrEqual(15 * DAY);
    fail = false;
    clock.set(r.nextAt!);
    await r.idle();
    expect(r.validity).toEqual(v(clock.now(), 90));
    expect(r.nextAt).toBe(clock.now() + 57 * DAY);
    r.stop();
  });

  it("with no certificate yet it renews at once; past expiry the alert is critical", async () => {
    const clock = new ManualClock(100 * DAY);
    const alerts: RenewalAlert[] = [];
    const r = new Renewer({ current: v(0, 90), clock, renew: async () => Promise.reject(new Error("refused")) });
    r.on("alert", (a) => alerts.push(a));
    r.start();
    clock.advance(0);
    await r.idle();
    expect(alerts[0]).toMatchObject({ level: "critical", remaining: -10 * DAY });
    r.stop();
    let n = 0;
    const fresh = new Renewer({ current: undefined, clock, renew: async () => (n++, v(clock.now(), 90)) }).start();
    clock.advance(0);
    await fresh.idle();
    expect(n).toBe(1);
    fresh.stop();
  });
});

describe("zero-downtime rotation of a running TLS server (spec §9.1 rotation simulation)", () => {
  it("the clock moves to near expiry, the certificate is renewed and swapped with setSecureContext, a polling client sees no failed handshake", async () => {
    const ca = await createTestCa();
    const issue = async (): Promise<Credential> => {
      const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
      return { cert: await ca.issue(k.publicKey, { cn: "localhost", dns: ["localhost"], ip: ["127.0.0.1"] }), key: k.privateKey.export({ type: "pkcs8", format: "pem" }) as string };
    };
    const first = await issue();
    const server = createServer({ cert: first.cert, key: first.key, minVersion: "TLSv1.3" }, (_req, res) => res.end("ok"));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;

    const clock = new ManualClock(Date.now());
    const renewed: string[] = [];
    const renewer = keepRenewed(server, issue, clock, { current: first, context: { minVersion: "TLSv1.3" } });
    renewer.on("renewed", (v) => renewed.push(v.serial!));
    const firstFp = new X509Certificate(first.cert).fingerprint256;

    // A keep-alive connection opened before the swap must keep working on the old certificate.
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    expect(await fetchFingerprint(port, ca.pem, keepAlive)).toBe(firstFp);

    // A client polls with a fresh handshake each time, throughout.
    const seen: string[] = [];
    const failures: string[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        try {
          seen.push(await fetchFingerprint(port, ca.pem));
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    while (seen.length < 20) await new Promise((r) => setTimeout(r, 10));

    clock.advance(50 * DAY); // not yet due (2/3 of 90 days = 60 days, minus up to 3 days of jitter)
    await renewer.idle();
    expect(renewed).toEqual([]);
    const before = seen.length;
    while (seen.length < before + 20) await new Promise((r) => setTimeout(r, 10));
    expect(new Set(seen)).toEqual(new Set([firstFp]));

    clock.advance(35 * DAY); // near expiry: 85 of 90 days
    await renewer.idle();
    renewer.stop();
    expect(renewed).toHaveLength(1);
    const after = seen.length;
    while (seen.length < after + 20) await new Promise((r) => setTimeout(r, 10));
    polling = false;
    await poller;

    expect(failures).toEqual([]);
    const distinct = [...new Set(seen)];
    expect(distinct).toHaveLength(2);
    expect(distinct[0]).toBe(firstFp);
    // Once swapped, every new handshake gets the new certificate (the one in flight at the swap may finish on the old one).
    expect(seen.slice(after + 1)).toEqual(Array(seen.length - after - 1).fill(distinct[1]));
    // The connection from before the swap still works: not dropped, no new handshake.
    expect(await fetchFingerprint(port, ca.pem, keepAlive)).toBe("same connection");
    keepAlive.destroy();
  });
});
