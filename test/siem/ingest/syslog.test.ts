import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { connect, type TLSSocket } from "node:tls";
import { join } from "node:path";
import { promisify } from "node:util";
import { canonicalJson } from "../../../engine/config/index.js";
import { queryEvents } from "../../../engine/siem/index.js";
import { signBody, startHarness, type Harness } from "./harness.js";
import { startRsyslog, type Rsyslog } from "./rsyslog.js";

const run = promisify(execFile);
let h: Harness;
let rs: Rsyslog;

async function until(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${rs ? `\nrsyslog: ${rs.stderr()}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const byId = (id: string) => queryEvents(h.service.store!, { where: { "==": [{ var: "event_id" }, id] } });
const where = (w: unknown) => queryEvents(h.service.store!, { where: w, limit: 1000 });
const metric = async (name: string, labels: Record<string, string>) => {
  const m = (await h.service.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return m?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
};

/** A raw TLS client with a given certificate, for what rsyslog would never send. */
function rawClient(name = "gw1"): Promise<TLSSocket> {
  const c = h.pki.client(name);
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port: h.syslogPort, ca: h.pki.caCert, key: c.key, cert: c.cert, servername: "localhost" }, () => resolve(s));
    s.once("error", reject);
  });
}
const closed = (s: TLSSocket) => new Promise<void>((r) => (s.closed ? r() : s.once("close", () => r())));

beforeAll(async () => {
  h = await startHarness();
  rs = await startRsyslog({ port: h.syslogPort, caFile: h.pki.files["int-tls.crt"]!, certFile: h.pki.files["gw1.crt"]!, keyFile: h.pki.files["gw1.key"]! });
});
afterAll(async () => {
  await rs?.stop();
  await h?.close();
});

describe("syslog/TLS ingest from rsyslog (omfwd gtls, octet-counted) fed by logger", () => {
  it("JSON, key=value and plain-text messages arrive normalized and stored", async () => {
    await run("logger", ["-u", rs.socket, "-t", "vpn-gw", JSON.stringify({ event_id: "sl-json-1", action: "ovpn_connect", user_id: "u-9", src_ip: "203.0.113.5", src_port: 51000, result: "success" })]);
    await run("logger", ["-u", rs.socket, "-t", "auth", 'event_id=sl-kv-1 action=login user_id=u-7 src_port=5000 result=failure error_msg="bad otp code"']);
    await run("logger", ["-u", rs.socket, "-t", "sshd", "just some text from a daemon"]);
    await until(() => byId("sl-json-1").total === 1 && byId("sl-kv-1").total === 1 && where({ "==": [{ var: "extra.message" }, "just some text from a daemon"] }).total === 1, "three syslog events in the store");
    expect(byId("sl-json-1").hits[0]).toMatchObject({ action: "ovpn_connect", user_id: "u-9", src_ip: "203.0.113.5", src_port: 51000 });
    expect(queryEvents(h.service.store!, { index: "viw-tunnel", where: { "==": [{ var: "event_id" }, "sl-json-1"] } }).total).toBe(1);
    expect(byId("sl-kv-1").hits[0]).toMatchObject({ action: "login", src_port: 5000, result: "failure", error_msg: "bad otp code" });
    const plain = where({ "==": [{ var: "extra.message" }, "just some text from a daemon"] }).hits[0]!;
    expect(plain).toMatchObject({ component: "sshd", severity: "notice" });
    expect(Date.now() - Date.parse(plain.timestamp)).toBeLessThan(60_000);
  });

  it("dual path: the same event over rsyslog and over signed bulk is stored once", async () => {
    const event = { timestamp: "2026-11-22T12:00:00.000Z", action: "login", user_id: "dual-user", result: "success", src_ip: "192.0.2.10" };
    const id = createHash("sha256").update(canonicalJson(event)).digest("hex");
    await run("logger", ["-u", rs.socket, "-t", "backend", JSON.stringify(event)]);
    await until(() => byId(id).total === 1, "the syslog copy");
    const body = Buffer.from(JSON.stringify({ user_id: "dual-user", action: "login", timestamp: "2026-11-22T12:00:00Z", src_ip: "192.0.2.10", result: "success" }) + "\n");
    const file = join(h.dataDir, "dual.ndjson");
    writeFileSync(file, body);
    const { stdout } = await run("curl", ["-sS", "--cacert", h.pki.files["int-tls.crt"]!, "--cert", h.pki.files["gw1.crt"]!, "--key", h.pki.files["gw1.key"]!,
      "-H", "Viw-Key-Id: vector-gw", "-H", `Viw-Signature: ${signBody(h.shippers.gw, body)}`, "--data-binary", `@${file}`, `${h.bulk}/v1/ingest/bulk`]);
    expect(JSON.parse(stdout)).toMatchObject({ accepted: 1 });
    await h.service.idle();
    expect(byId(id).total).toBe(1);
    expect(where({ "==": [{ var: "user_id" }, "dual-user"] }).total).toBe(1);
  });

  it("frames split at every byte are reassembled; LF framing is accepted", async () => {
    const s = await rawClient();
    const msg = (id: string) => `<134>1 2026-11-22T10:00:00Z gw1 app - - - {"event_id":"${id}","action":"gw_health"}`;
    const octet = Buffer.from(`${Buffer.byteLength(msg("split-1"))} ${msg("split-1")}`);
    for (const b of octet) {
      s.write(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
    s.write(`${msg("lf-1")}\n`);
    await until(() => byId("split-1").total === 1 && byId("lf-1").total === 1, "split and LF-framed messages");
    expect(byId("split-1").hits[0]!.timestamp).toBe("2026-11-22T10:00:00.000Z");
    s.destroy();
  });

  it("bad input corpus: each closes only its connection (or drops the one message) with an ingest_error event, counted; the listener carries on", async () => {
    const cases: { name: string; bytes: Buffer; code: string; closes: boolean }[] = [
      { name: "oversized frame", bytes: Buffer.from(`70000 <13>1 - - - - - - x`), code: "frame_too_large", closes: true },
      { name: "non-numeric length", bytes: Buffer.from(`12x <13>1 - - - - - - x`), code: "bad_length", closes: true },
      { name: "binary garbage", bytes: Buffer.from([0x00, 0xff, 0x13, 0x37, 0x80]), code: "bad_frame", closes: true },
      { name: "invalid UTF-8", bytes: (() => { const m = Buffer.concat([Buffer.from("<13>1 - - - - - - "), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0x41])]); return Buffer.concat([Buffer.from(`${m.length} `), m]); })(), code: "invalid_utf8", closes: false },
      { name: "JSON depth bomb", bytes: (() => { const m = `<13>1 - - - - - - {"x":${"[".repeat(3000)}${"]".repeat(3000)}}`; return Buffer.from(`${m.length} ${m}`); })(), code: "invalid_event", closes: false },
    ];
    for (const c of cases) {
      const s = await rawClient();
      s.write(c.bytes);
      if (c.closes) await closed(s);
      await until(() => where({ "==": [{ var: "error_code" }, c.code] }).total >= 1, `ingest_error ${c.code} (${c.name})`);
      if (!c.closes) {
        expect(s.closed).toBe(false);
        s.destroy();
      }
      expect(await metric("viw_ingest_rejected_total", { path: "syslog", reason: c.code })).toBeGreaterThanOrEqual(1);
    }
    const e = where({ "==": [{ var: "error_code" }, "frame_too_large"] }).hits[0]!;
    expect(e).toMatchObject({ action: "ingest_error", src_ip: "127.0.0.1", error_msg: expect.stringMatching(/exceeds the limit of 65536 bytes/) });
    // the listener still serves
    await run("logger", ["-u", rs.socket, "-t", "after", JSON.stringify({ event_id: "after-corpus", action: "login" })]);
    await until(() => byId("after-corpus").total === 1, "a message after the corpus");
  });

  it("refuses a client certificate the policy does not name, and one from an unknown CA", async () => {
    const s = await rawClient("stranger");
    await closed(s);
    await until(() => where({ "==": [{ var: "error_code" }, "syslog_client_refused"] }).total >= 1, "the refusal event");
    expect(where({ "==": [{ var: "error_code" }, "syslog_client_refused"] }).hits[0]!.error_msg).toMatch(/CN=host\.other\.example/);
    await expect(rawClient("rogue-gw").then(async (x) => { await closed(x); throw new Error("closed"); })).rejects.toThrow();
  });

  it("100,000 events through rsyslog over TLS: 100,000 stored, none twice", async () => {
    const N = 100_000;
    const lines = Array.from({ length: N }, (_, i) => JSON.stringify({ event_id: `bulk100k-${i}`, action: "tls_handshake", src_port: i % 65535, tls_ja3: "abc" }));
    const file = join(h.dataDir, "100k.txt");
    writeFileSync(file, lines.join("\n") + "\n");
    const t0 = Date.now();
    await run("logger", ["-u", rs.socket, "-t", "gw", "-f", file], { maxBuffer: 1 << 20 });
    const count = () => queryEvents(h.service.store!, { where: { "==": [{ var: "tls_ja3" }, "abc"] }, limit: 0, index: "viw-tunnel" }).total;
    await until(() => h.service.store!.db.prepare("SELECT COUNT(*) AS n FROM events WHERE event_id LIKE 'bulk100k-%'").get().n >= N, "100,000 events", 90_000);
    const dt = Date.now() - t0;
    expect(count()).toBe(N);
    const dup = h.service.store!.db.prepare("SELECT COUNT(DISTINCT event_id) AS d, COUNT(*) AS n FROM events WHERE event_id LIKE 'bulk100k-%'").get() as { d: number; n: number };
    expect(dup).toEqual({ d: N, n: N });
    console.log(`100k via logger → rsyslog → TLS → journal → store: ${dt} ms`);
  }, 120_000);
});

describe("syslog back-pressure", () => {
  it("stops reading while the journal is full (TCP pushes back), resumes when consumers catch up; nothing is dropped", async () => {
    const { openJournal } = await import("../../../engine/siem/index.js");
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "viw-sbp-"));
    const journal = openJournal(join(dir, "journal.db"), { consumers: ["store", "stuck"], highWater: 50 });
    const saved = h;
    const bp = await startHarness({ journal, syslog: { recheckMs: 20 } }, undefined, dir);
    h = bp;
    try {
      const s = await rawClient();
      const frame = (i: number) => {
        const m = `<134>1 2026-11-22T10:00:00Z gw1 app - - - {"event_id":"bp-${i}","action":"gw_health","extra":{"pad":"${"x".repeat(200)}"}}`;
        return `${Buffer.byteLength(m)} ${m}`;
      };
      // 2000 frames (~0.5 MB): far more than the high-water mark of 50 records
      const payload = Buffer.from(Array.from({ length: 2000 }, (_, i) => frame(i)).join(""));
      s.write(payload);
      await until(() => journal.lastSeq() >= 50, "the journal to reach its high-water mark");
      await new Promise((r) => setTimeout(r, 500));
      const held = journal.lastSeq();
      expect(held).toBeLessThan(2000); // reading stopped: the rest waits in TCP buffers, not in memory
      expect(await metric("viw_ingest_backpressure_total", { path: "syslog" })).toBeGreaterThanOrEqual(1);
      // the slow consumer catches up: reading resumes
      const release = setInterval(() => journal.commitCursor("stuck", journal.lastSeq()), 10);
      try {
        await until(() => bp.service.store!.db.prepare("SELECT COUNT(*) AS n FROM events WHERE event_id LIKE 'bp-%'").get().n === 2000, "all 2000 events stored");
      } finally {
        clearInterval(release);
      }
      s.destroy();
    } finally {
      h = saved;
      await bp.close();
      await journal.close();
    }
  });
});
