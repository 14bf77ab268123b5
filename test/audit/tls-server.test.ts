import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog, auditTlsServer, parseAuditLine } from "../../engine/audit/index.js";
import { openJournal, type LocalJournal } from "../../engine/siem/journal/index.js";
import { makePki, read, run, waitFor, type TestPki } from "./helpers.js";

/** A syslog-like plain tls.Server (component siem), TLS 1.2 allowed, with its own secureConnection listener. */

let dir: string;
let pki: TestPki;
let journal: LocalJournal;
let audit: AuditLog;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "viw-audit-tlsserver-"));
  pki = makePki(dir);
  journal = openJournal(join(dir, "journal.db"));
  audit = new AuditLog(join(dir, "audit"), { journal });
});
afterAll(async () => {
  await audit.close();
  await journal.close();
  await rm(dir, { recursive: true, force: true });
});

async function echoServer(opts: { ja3?: boolean; idleTimeoutMs?: number } = {}) {
  const seen: string[] = [];
  const server = tls.createServer(
    { key: read(pki.serverKey), cert: read(pki.serverCert), ca: read(pki.ca), requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" },
    (sock) => {
      seen.push(sock.getPeerX509Certificate()?.subject ?? "none");
      sock.on("data", (d) => sock.write(d));
      sock.on("error", () => {});
    },
  );
  const hook = auditTlsServer(server, { listener: "syslog", audit, component: "siem", ja3: opts.ja3, idleTimeoutMs: opts.idleTimeoutMs });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, hook, seen, port: (server.address() as AddressInfo).port };
}

const lines = () => readFileSync(audit.file, "utf8").split("\n").filter(Boolean).map(parseAuditLine);

describe("auditTlsServer on a plain tls.Server", () => {
  it("records a TLS 1.2 session of an authorized client with component siem; the owner's listener sees only authorized sockets", async () => {
    const { server, hook, seen, port } = await echoServer();
    const mark = lines().length;
    const good = await run("openssl", ["s_client", "-tls1_2", "-connect", `127.0.0.1:${port}`, "-CAfile", pki.ca, "-cert", pki.clients.good.cert, "-key", pki.clients.good.key], { input: "<14>hello\n" });
    expect(good.out).toContain("Protocol  : TLSv1.2");
    await run("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", pki.ca, "-cert", pki.clients.other.cert, "-key", pki.clients.other.key]);
    const got = await waitFor(() => {
      const ls = lines().slice(mark);
      return ls.length >= 3 ? ls : undefined;
    }, "three lines");
    expect(got.map((l) => [l.listener, l.fields[0]![1], l.fields[3]![1], l.fields[5]![1]])).toEqual([
      ["syslog", "ACCESS_SESSION_ESTABLISH_SUCCESS", "CN=backend.viworks.example,O=ViWorkS", ""],
      ["syslog", "ACCESS_SESSION_TERMINATED", "CN=backend.viworks.example,O=ViWorkS", "close_notify from client"],
      ["syslog", "ACCESS_SESSION_ESTABLISH_FAILURE", "CN=intruder.example", "client certificate from an unknown CA (UNABLE_TO_VERIFY_LEAF_SIGNATURE)"],
    ]);
    expect(seen).toEqual(["O=ViWorkS\nCN=backend.viworks.example"]);
    await audit.flush();
    const events = journal.read(0, 1000).map((r) => r.event).filter((e) => (e.extra as { listener?: string }).listener === "syslog");
    expect(events[0]).toMatchObject({ component: "siem", action: "tls_session_establish", result: "success", extra: { tls_version: "TLSv1.2" } });
    expect(events[0]!.tls_ja3).toMatch(/^[0-9a-f]{32}$/);
    hook.detach();
    expect((server as unknown as { rejectUnauthorized: boolean }).rejectUnauthorized).toBe(true);
    server.close();
  });

  it("with ja3: false there is no peek: sessions are still recorded, without tls_ja3", async () => {
    const { server, port } = await echoServer({ ja3: false });
    const mark = lines().length;
    await run("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", pki.ca, "-cert", pki.clients.good.cert, "-key", pki.clients.good.key], { input: "x\n" });
    await waitFor(() => (lines().length >= mark + 2 ? true : undefined), "two lines");
    await audit.flush();
    const last = journal.read(0, 1000).map((r) => r.event).slice(-2);
    expect(last.map((e) => e.action)).toEqual(["tls_session_establish", "tls_session_terminate"]);
    expect(last[0]!.tls_ja3).toBeUndefined();
    server.close();
  });

  it("the idle timeout spares a session that keeps moving bytes, and closes it once it stops", async () => {
    const { server, port } = await echoServer({ idleTimeoutMs: 400 });
    const mark = lines().length;
    const sock = tls.connect({ host: "127.0.0.1", port, ca: read(pki.ca), cert: read(pki.clients.good.cert), key: read(pki.clients.good.key), servername: "localhost" });
    sock.on("error", () => {});
    sock.resume();
    await new Promise((r) => sock.once("secureConnect", r));
    for (let i = 0; i < 12; i++) {
      sock.write("<14>tick\n");
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(lines().slice(mark).map((l) => l.fields[0]![1])).toEqual(["ACCESS_SESSION_ESTABLISH_SUCCESS"]);
    const stopped = Date.now();
    const end = await waitFor(() => lines().slice(mark).find((l) => l.fields[0]![1] === "ACCESS_SESSION_TERMINATED"), "idle termination");
    expect(Date.now() - stopped).toBeGreaterThanOrEqual(300);
    expect(Object.fromEntries(end.fields).Info).toBe("idle timeout");
    sock.destroy();
    server.close();
  });

  it("refuses a second audit on the same server", async () => {
    const server = tls.createServer({});
    const hook = auditTlsServer(server, { listener: "syslog", audit, component: "siem" });
    expect(() => auditTlsServer(server, { listener: "syslog", audit, component: "siem" })).toThrow("listener syslog: this server already has a TLS session audit attached");
    hook.detach();
    auditTlsServer(server, { listener: "syslog", audit, component: "siem" }).detach();
  });

  it("refuses a bad listener name or idle timeout at attach", async () => {
    const server = tls.createServer({});
    expect(() => auditTlsServer(server, { listener: "Sys Log", audit, component: "siem" })).toThrow(/listener name "Sys Log"/);
    expect(() => auditTlsServer(tls.createServer({}), { listener: "syslog", audit, component: "siem", idleTimeoutMs: -1 })).toThrow(/idleTimeoutMs/);
  });
});

describe("an owner that chose rejectUnauthorized: false", () => {
  it("is not enforced by the audit: the session is established and the line says the certificate was not verified", async () => {
    const server = tls.createServer({ key: read(pki.serverKey), cert: read(pki.serverCert), ca: read(pki.ca), requestCert: true, rejectUnauthorized: false }, (sock) => {
      sock.on("error", () => {});
      sock.end("bye\n");
    });
    const hook = auditTlsServer(server, { listener: "bulk", audit, component: "siem" });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const mark = lines().length;
    await run("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", pki.ca, "-cert", pki.clients.other.cert, "-key", pki.clients.other.key]);
    const got = await waitFor(() => (lines().length >= mark + 2 ? lines().slice(mark) : undefined), "two lines");
    expect(Object.fromEntries(got[0]!.fields)).toMatchObject({ AuditEvent: "ACCESS_SESSION_ESTABLISH_SUCCESS", SubjectID: "CN=intruder.example", Info: "client certificate not verified (UNABLE_TO_VERIFY_LEAF_SIGNATURE)" });
    expect(got[1]!.fields[0]![1]).toBe("ACCESS_SESSION_TERMINATED");
    hook.detach();
    expect((server as unknown as { rejectUnauthorized: boolean }).rejectUnauthorized).toBe(false);
    server.close();
  });
});
