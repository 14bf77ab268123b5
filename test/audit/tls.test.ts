import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog, auditTlsServer, parseAuditLine, type TlsAudit } from "../../engine/audit/index.js";
import { EVENT_FIELDS, loadSnapshot, readDirSnapshot } from "../../engine/config/index.js";
import { compileRule, Engine, type AlertEvent } from "../../engine/siem/detect/index.js";
import { openJournal, type LocalJournal, type NormalizedEvent } from "../../engine/siem/journal/index.js";
import { makePki, read, run, spawnIdle, waitFor, type TestPki } from "./helpers.js";

/**
 * The issuance port's shape (TLS 1.3 only, client certificate required) on a
 * real node https server, audited, with real openssl s_client / curl / node
 * clients; the events are read back from the log file and a real journal.
 */

let dir: string;
let pki: TestPki;
let journal: LocalJournal;
let audit: AuditLog;
let server: https.Server;
let hook: TlsAudit;
let port: number;
const revokedChecks: [string, string][] = [];

const IDLE_MS = 700;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "viw-audit-tls-"));
  pki = makePki(dir);
  journal = openJournal(join(dir, "journal.db"));
  audit = new AuditLog(join(dir, "audit"), { journal });
  server = https.createServer(
    {
      key: read(pki.serverKey),
      cert: read(pki.serverCert),
      ca: read(pki.ca),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
      ciphers: "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
      handshakeTimeout: 500,
    },
    (req, res) => {
      res.end(`hello ${(req.socket as tls.TLSSocket).getPeerX509Certificate()?.subject.split("\n").pop()}\n`);
    },
  );
  hook = auditTlsServer(server, {
    listener: "issuance",
    audit,
    component: "pki",
    idleTimeoutMs: IDLE_MS,
    isRevoked: (serial, issuer) => {
      revokedChecks.push([serial, issuer]);
      return serial === "2bad" && issuer === "CN=Audit Test CA";
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await audit?.close();
  await journal?.close();
  await rm(dir, { recursive: true, force: true });
});

const fileLines = (): string[] => readFileSync(audit.file, "utf8").split("\n").filter(Boolean);

/** The next line of `event` written after `mark` lines. */
async function nextLine(mark: number, event: string, timeoutMs = 10_000): Promise<{ line: string; fields: Record<string, string>; count: number }> {
  return waitFor(() => {
    const ls = fileLines();
    for (let i = mark; i < ls.length; i++) {
      const p = parseAuditLine(ls[i]!);
      if (p.fields[0]![1] === event) {
        expect(p.listener).toBe("issuance");
        expect(p.fields).toHaveLength(6);
        return { line: ls[i]!, fields: Object.fromEntries(p.fields), count: i + 1 };
      }
    }
    return undefined;
  }, `${event} after line ${mark}`, timeoutMs);
}

async function eventOf(line: string): Promise<NormalizedEvent> {
  await audit.flush();
  const rec = journal.read(0, 10_000).find((r) => (r.event.extra as Record<string, unknown>).audit_line === line);
  expect(rec, `journal event for ${line}`).toBeDefined();
  expect(rec!.index).toBe("viw-pki");
  return rec!.event;
}

const sClient = (...args: string[]): Promise<{ code: number | null; out: string }> =>
  run("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", pki.ca, ...args]);
const withCert = (name: keyof TestPki["clients"]): string[] => ["-cert", pki.clients[name].cert, "-key", pki.clients[name].key];

function expectFailure(f: Record<string, string>, attempted: string, info: RegExp): void {
  expect(Object.keys(f)).toEqual(["AuditEvent", "ClientIP", "ServerIP", "AttemptedID", "Outcome", "Info"]);
  expect(f.ClientIP).toBe("127.0.0.1");
  expect(f.ServerIP).toBe("127.0.0.1");
  expect(f.AttemptedID).toBe(attempted);
  expect(f.Outcome).toBe("Failure");
  expect(f.Info).toMatch(info);
}

describe("ACCESS_SESSION_ESTABLISH_FAILURE with the cause named", () => {
  it("openssl s_client -tls1_2 → protocol version not allowed; the journal event fires the tls-downgrade rule", async () => {
    const mark = fileLines().length;
    await sClient("-tls1_2");
    const { fields, line } = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_FAILURE");
    expectFailure(fields, "", /^protocol version not allowed: client offered TLSv1\.2; listener accepts TLSv1\.3 only$/);
    const ev = await eventOf(line);
    expect(ev).toMatchObject({ component: "pki", action: "tls_session_establish", result: "failure", error_code: "protocol_version", src_ip: "127.0.0.1", dst_ip: "127.0.0.1", dst_port: port, severity: "high" });
    expect(ev.tls_ja3).toMatch(/^[0-9a-f]{32}$/);
    expect(typeof ev.src_port).toBe("number");
    expect(ev.error_msg).toBe(fields.Info);
    expect(Date.parse(ev.timestamp)).not.toBeNaN();
    expect(Date.parse(ev.received_at)).not.toBeNaN();
    expect(ev.event_id).toMatch(/^[0-9a-f]{64}$/);

    const { state } = await loadSnapshot(await readDirSnapshot(fileURLToPath(new URL("../..", import.meta.url))));
    const doc = state!.rules.get("tls-downgrade")!;
    const alerts: AlertEvent[] = [];
    const engine = new Engine([compileRule(state!, doc)], { onAlert: (a) => alerts.push(a) });
    engine.process(ev);
    expect(alerts.map((a) => a.alert.group)).toEqual([{ src_ip: "127.0.0.1" }]);
  });

  it("no client certificate → FAILURE naming it", async () => {
    const mark = fileLines().length;
    await sClient();
    const { fields, line } = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_FAILURE");
    expectFailure(fields, "", /^no client certificate$/);
    expect(await eventOf(line)).toMatchObject({ error_code: "no_client_certificate", result: "failure" });
  });

  it("a certificate from another CA → FAILURE unknown CA with the attempted DN", async () => {
    const mark = fileLines().length;
    await sClient(...withCert("other"));
    const { fields, line } = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_FAILURE");
    expectFailure(fields, "CN=intruder.example", /^client certificate from an unknown CA/);
    const ev = await eventOf(line);
    expect(ev).toMatchObject({ error_code: "unknown_ca", extra: { subject_dn: "CN=intruder.example", serial: "1002" } });
  });

  it("an expired certificate → FAILURE expired", async () => {
    const mark = fileLines().length;
    await sClient(...withCert("expired"));
    const { fields, line } = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_FAILURE");
    expectFailure(fields, "CN=expired.viworks.example", /^client certificate expired$/);
    expect(await eventOf(line)).toMatchObject({ error_code: "certificate_expired" });
  });

  it("a revoked certificate (isRevoked) → FAILURE revoked, and the request never reaches the handler", async () => {
    const mark = fileLines().length;
    const r = await run("curl", ["-sS", "--cacert", pki.ca, "--cert", pki.clients.revoked.cert, "--key", pki.clients.revoked.key, `https://127.0.0.1:${port}/`]);
    expect(r.out).not.toContain("hello");
    const { fields, line } = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_FAILURE");
    expectFailure(fields, "CN=revoked.viworks.example", /^client certificate revoked \(serial 2bad\)$/);
    expect(revokedChecks).toContainEqual(["2bad", "CN=Audit Test CA"]);
    expect(await eventOf(line)).toMatchObject({ error_code: "certificate_revoked", severity: "high" });
  });

  it("no shared cipher → FAILURE naming it", async () => {
    const mark = fileLines().length;
    await sClient("-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", ...withCert("good"));
    const { fields, line } = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_FAILURE");
    expectFailure(fields, "", /^no shared cipher$/);
    expect(await eventOf(line)).toMatchObject({ error_code: "no_shared_cipher" });
  });

  it("a client that connects and says nothing → FAILURE handshake timeout", async () => {
    const mark = fileLines().length;
    const sock = net.connect(port, "127.0.0.1");
    sock.on("error", () => {});
    const { fields, line } = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_FAILURE");
    sock.destroy();
    expectFailure(fields, "", /^handshake timeout$/);
    expect(await eventOf(line)).toMatchObject({ error_code: "handshake_timeout" });
  });
});

describe("ACCESS_SESSION_ESTABLISH_SUCCESS and ACCESS_SESSION_TERMINATED", () => {
  it("a good client (curl with its certificate) → SUCCESS with its DN, then TERMINATED with close_notify", async () => {
    const mark = fileLines().length;
    const r = await run("curl", ["-sS", "--cacert", pki.ca, "--cert", pki.clients.good.cert, "--key", pki.clients.good.key, `https://127.0.0.1:${port}/`]);
    expect(r.out).toBe("hello CN=backend.viworks.example\n");
    const ok = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_SUCCESS");
    expect(Object.keys(ok.fields)).toEqual(["AuditEvent", "ClientIP", "ServerIP", "SubjectID", "Outcome", "Info"]);
    expect(ok.fields).toMatchObject({ ClientIP: "127.0.0.1", ServerIP: "127.0.0.1", SubjectID: "CN=backend.viworks.example,O=ViWorkS", Outcome: "Success", Info: "" });
    const end = await nextLine(ok.count, "ACCESS_SESSION_TERMINATED");
    expect(end.fields).toMatchObject({ SubjectID: "CN=backend.viworks.example,O=ViWorkS", Outcome: "Success", Info: "close_notify from client" });
    const e1 = await eventOf(ok.line);
    const e2 = await eventOf(end.line);
    expect(e1).toMatchObject({ action: "tls_session_establish", result: "success", component: "pki", extra: { subject_dn: "CN=backend.viworks.example,O=ViWorkS", serial: "1001", tls_version: "TLSv1.3" } });
    expect(e2).toMatchObject({ action: "tls_session_terminate", result: "success", error_code: "close_notify_client", session_id: e1.session_id, src_port: e1.src_port, tls_ja3: e1.tls_ja3 });
    expect(e2.bytes_out).toBeGreaterThan(0);
    for (const ev of journal.read(0, 10_000).map((r) => r.event)) {
      for (const k of Object.keys(ev)) expect(EVENT_FIELDS, `event field ${k}`).toHaveProperty(k);
    }
  });

  it("the server closing first (Connection: close) → TERMINATED close_notify from server", async () => {
    const mark = fileLines().length;
    const r = await run("curl", ["-sS", "-H", "Connection: close", "--cacert", pki.ca, "--cert", pki.clients.good.cert, "--key", pki.clients.good.key, `https://127.0.0.1:${port}/`]);
    expect(r.out).toContain("hello");
    const end = await nextLine(mark, "ACCESS_SESSION_TERMINATED");
    expect(end.fields.Info).toBe("close_notify from server");
    expect(await eventOf(end.line)).toMatchObject({ error_code: "close_notify_server" });
  });

  it("an idle connection → TERMINATED idle timeout", async () => {
    const mark = fileLines().length;
    const child: ChildProcess = spawnIdle("openssl", ["s_client", "-quiet", "-connect", `127.0.0.1:${port}`, "-CAfile", pki.ca, ...withCert("good")]);
    try {
      const ok = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_SUCCESS");
      const started = Date.now();
      const end = await nextLine(ok.count, "ACCESS_SESSION_TERMINATED");
      expect(Date.now() - started).toBeGreaterThanOrEqual(IDLE_MS - 300);
      expect(end.fields).toMatchObject({ SubjectID: "CN=backend.viworks.example,O=ViWorkS", Info: "idle timeout" });
      expect(await eventOf(end.line)).toMatchObject({ error_code: "idle_timeout", action: "tls_session_terminate" });
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("a client that resets the TCP connection → TERMINATED reset", async () => {
    const mark = fileLines().length;
    const raw = net.connect(port, "127.0.0.1");
    await new Promise((r) => raw.once("connect", r));
    const sock = tls.connect({ socket: raw, ca: read(pki.ca), cert: read(pki.clients.good.cert), key: read(pki.clients.good.key), servername: "localhost" });
    sock.on("error", () => {});
    raw.on("error", () => {});
    await new Promise((r) => sock.once("secureConnect", r));
    const ok = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_SUCCESS");
    raw.resetAndDestroy(); // TCP RST, no close_notify
    const end = await nextLine(ok.count, "ACCESS_SESSION_TERMINATED");
    expect(end.fields).toMatchObject({ Outcome: "Failure", Info: "connection reset (ECONNRESET)" });
    expect(await eventOf(end.line)).toMatchObject({ error_code: "reset", result: "failure" });
  });

  it("a DN with ] and [ in it cannot inject a field: the parsed line has exactly 6 fields", async () => {
    const mark = fileLines().length;
    await sClient(...withCert("evil"));
    const ok = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_SUCCESS");
    expect(ok.line).toContain("[SubjectID=O=x,CN=evil\\]\\[Outcome=Success\\]\\[Info=]");
    expect(ok.fields.SubjectID).toBe("O=x,CN=evil][Outcome=Success][Info=");
    expect((await eventOf(ok.line)).extra).toMatchObject({ subject_dn: "O=x,CN=evil][Outcome=Success][Info=" });
  });

  it("server shutdown → every live session TERMINATED server_shutdown", async () => {
    const mark = fileLines().length;
    const child = spawnIdle("openssl", ["s_client", "-quiet", "-connect", `127.0.0.1:${port}`, "-CAfile", pki.ca, ...withCert("good")]);
    try {
      const ok = await nextLine(mark, "ACCESS_SESSION_ESTABLISH_SUCCESS");
      expect(hook.liveSessions()).toBeGreaterThanOrEqual(1);
      await hook.shutdown(500);
      const end = await nextLine(ok.count, "ACCESS_SESSION_TERMINATED");
      expect(end.fields.Info).toBe("server shutdown");
      expect(await eventOf(end.line)).toMatchObject({ error_code: "server_shutdown" });
      expect(hook.liveSessions()).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
