import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuditLog, escapeAuditValue, formatAuditFields, parseAuditLine } from "../../engine/audit/index.js";
import { canonicalJson } from "../../engine/config/index.js";
import { canonicalJsonOf, openJournal, type Journal } from "../../engine/siem/journal/index.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "viw-audit-log-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lines = async (file: string): Promise<string[]> => (await readFile(file, "utf8")).split("\n").filter(Boolean);

describe("audit line format", () => {
  it("writes the issue's session line shape after an ISO timestamp and the listener", async () => {
    const log = new AuditLog(join(dir, "audit"), { now: () => new Date("2026-11-23T10:00:00.000Z") });
    log.write("issuance", "ACCESS_SESSION_ESTABLISH_SUCCESS", [
      ["ClientIP", "127.0.0.1"], ["ServerIP", "127.0.0.1"], ["SubjectID", "CN=backend.viworks.example"], ["Outcome", "Success"], ["Info", ""],
    ]);
    await log.close();
    expect(await lines(log.file)).toEqual([
      "2026-11-23T10:00:00.000Z [issuance] [AuditEvent=ACCESS_SESSION_ESTABLISH_SUCCESS][ClientIP=127.0.0.1][ServerIP=127.0.0.1][SubjectID=CN=backend.viworks.example][Outcome=Success][Info=]",
    ]);
  });

  it("a DN with ], [, \\ or a newline cannot forge a field or a line", async () => {
    const log = new AuditLog(join(dir, "audit"));
    const evil = "CN=x][Outcome=Success][Info=forged\\]\n2026-01-01T00:00:00.000Z [issuance] [AuditEvent=ACCESS_SESSION_ESTABLISH_SUCCESS";
    log.write("issuance", "ACCESS_SESSION_ESTABLISH_FAILURE", [
      ["ClientIP", "10.0.0.1"], ["ServerIP", "10.0.0.2"], ["AttemptedID", evil], ["Outcome", "Failure"], ["Info", "unknown CA"],
    ]);
    await log.close();
    const all = await lines(log.file);
    expect(all).toHaveLength(1);
    const parsed = parseAuditLine(all[0]!);
    expect(parsed.fields).toHaveLength(6);
    expect(parsed.fields.map(([n]) => n)).toEqual(["AuditEvent", "ClientIP", "ServerIP", "AttemptedID", "Outcome", "Info"]);
    expect(parsed.fields[3]).toEqual(["AttemptedID", evil]);
    expect(parsed.fields[4]).toEqual(["Outcome", "Failure"]);
  });

  it("escaping round-trips any string and never yields an unescaped bracket or line break (property)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.string({ unit: "binary" }), (a, b) => {
        const text = formatAuditFields("X", [["A", a], ["B", b]]);
        expect(text).not.toMatch(/[\n\r\u2028\u2029]/);
        const parsed = parseAuditLine(`2026-11-23T10:00:00.000Z [t] ${text}`);
        expect(parsed.fields).toEqual([["AuditEvent", "X"], ["A", a], ["B", b]]);
      }),
      { numRuns: 200 },
    );
    expect(escapeAuditValue("a]b[c\\d\ne")).toBe("a\\]b\\[c\\\\d\\ne");
  });

  it("refuses bad event, field and listener names with a clear error", () => {
    const log = new AuditLog(join(dir, "audit"));
    expect(() => log.write("Issuance API", "X", [])).toThrow(/listener name "Issuance API"/);
    expect(() => log.write("issuance", "X]", [])).toThrow(/audit event name/);
    expect(() => log.write("issuance", "X", [["A]", "v"]])).toThrow(/field name/);
  });
});

describe("append-only rotation", () => {
  it("appends to an existing file and rotates by day to audit.log.YYYY-MM-DD, never truncating", async () => {
    const auditDir = join(dir, "audit");
    let now = new Date("2026-11-22T23:59:59.000Z");
    const first = new AuditLog(auditDir, { now: () => now });
    first.configRevision({ revision: "a".repeat(40), outcome: "applied" });
    await first.close();
    const second = new AuditLog(auditDir, { now: () => now });
    second.configRevision({ revision: "b".repeat(40), outcome: "refused", reason: "profiles/x.yaml:3:1: bad" });
    now = new Date("2026-11-23T00:00:01.000Z");
    second.configRevision({ revision: "c".repeat(40), outcome: "applied" });
    await second.close();
    expect((await readdir(auditDir)).sort()).toEqual(["audit.log", "audit.log.2026-11-22"]);
    const old = await lines(join(auditDir, "audit.log.2026-11-22"));
    expect(old).toHaveLength(2);
    expect(old[1]).toContain("[Outcome=Failure][Revision=" + "b".repeat(40) + "][Digest=][Info=profiles/x.yaml:3:1: bad]");
    expect(await lines(join(auditDir, "audit.log"))).toHaveLength(1);
    expect(second.stats().rotations).toBe(1);
  });

  it("rotates by size within a day to .N suffixes, and the day of a reopened file comes from its first line", async () => {
    const auditDir = join(dir, "audit");
    await writeFile(join(dir, "x"), "");
    const now = () => new Date("2026-11-23T12:00:00.000Z");
    const log = new AuditLog(auditDir, { now, maxBytes: 300 });
    for (let i = 0; i < 6; i++) log.crlPublish({ issuer: "int-tls", crlNumber: i, entries: i });
    await log.close();
    const files = (await readdir(auditDir)).sort();
    expect(files[0]).toBe("audit.log");
    expect(files).toContain("audit.log.2026-11-23");
    expect(files).toContain("audit.log.2026-11-23.1");
    let total = 0;
    for (const f of files) {
      const ls = await lines(join(auditDir, f));
      total += ls.length;
      for (const l of ls) expect(Buffer.byteLength(l) + 1).toBeLessThanOrEqual(300);
    }
    expect(total).toBe(6);
    expect(log.stats()).toMatchObject({ lines: 6, writeErrors: 0 });
  });
});

describe("session line batching (flushMs)", () => {
  const at = new Date("2026-11-23T10:00:00.000Z");
  const session = (log: AuditLog, n: number): string => {
    log.writeSession("issuance", "ACCESS_SESSION_ESTABLISH_SUCCESS", [["ClientIP", "127.0.0.1"], ["ServerIP", "127.0.0.1"], ["SubjectID", `CN=c${n}`], ["Outcome", "Success"], ["Info", ""]]);
    return `2026-11-23T10:00:00.000Z [issuance] [AuditEvent=ACCESS_SESSION_ESTABLISH_SUCCESS][ClientIP=127.0.0.1][ServerIP=127.0.0.1][SubjectID=CN=c${n}][Outcome=Success][Info=]`;
  };
  const onDisk = async (file: string) => (await readFile(file, "utf8").catch(() => "")).split("\n").filter(Boolean);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it("a session line is on disk within flushMs without any flush() call", async () => {
    const log = new AuditLog(join(dir, "audit"), { flushMs: 100, now: () => at });
    const line = session(log, 1);
    const t0 = Date.now();
    let got: string[] = [];
    while (Date.now() - t0 < 1000 && got.length === 0) {
      await sleep(10);
      got = await onDisk(log.file);
    }
    expect(got).toEqual([line]);
    // the bound plus scheduling slack on a shared machine
    expect(Date.now() - t0).toBeLessThan(600);
    await log.close();
  });

  it("session lines wait for the batch, and a clean shutdown (close) writes them all, in order", async () => {
    const log = new AuditLog(join(dir, "audit"), { flushMs: 60_000, now: () => at });
    const written = [session(log, 1), session(log, 2), session(log, 3)];
    await sleep(50);
    expect(await onDisk(log.file)).toEqual([]);
    await log.close();
    expect(await onDisk(log.file)).toEqual(written);
    expect(log.stats()).toMatchObject({ lines: 3, writeErrors: 0 });
  });

  it("a non-session line is written at once and takes the waiting session lines along, in order", async () => {
    const log = new AuditLog(join(dir, "audit"), { flushMs: 60_000, now: () => at });
    const a = session(log, 1);
    const b = log.crlPublish({ issuer: "int-tls", crlNumber: 1, entries: 0 });
    const t0 = Date.now();
    let got: string[] = [];
    while (Date.now() - t0 < 5000 && got.length < 2) {
      await sleep(10);
      got = await onDisk(log.file);
    }
    expect(got).toEqual([a, b]);
    await log.close();
  });

  it("session records with their journal events: one event per line, in order, the line inside it", async () => {
    const journal = openJournal(join(dir, "journal.db"));
    const log = new AuditLog(join(dir, "audit"), { journal, flushMs: 60_000, now: () => at });
    const drafts = [1, 2].map((n) => ({ timestamp: "", component: "pki", action: "tls_session_establish", result: "success", session_id: `s${n}`, extra: { listener: "issuance" } }));
    log.writeSession("issuance", "ACCESS_SESSION_ESTABLISH_SUCCESS", [["SubjectID", "CN=c1"]], drafts[0]);
    log.writeSession("issuance", "ACCESS_SESSION_TERMINATED", [["SubjectID", "CN=c2"]], drafts[1]);
    await log.flush();
    const recs = journal.read(0, 10);
    expect(recs.map((r) => [r.index, r.event.session_id, r.event.timestamp])).toEqual([
      ["viw-pki", "s1", "2026-11-23T10:00:00.000Z"],
      ["viw-pki", "s2", "2026-11-23T10:00:00.000Z"],
    ]);
    expect(recs.map((r) => (r.event.extra as Record<string, unknown>).audit_line)).toEqual(await onDisk(log.file));
    expect(new Set(recs.map((r) => r.event.event_id)).size).toBe(2);
    await log.close();
    await journal.close();
  });

  it("a session record that cannot be formatted is reported and dropped, the others are written", async () => {
    const errors: string[] = [];
    const log = new AuditLog(join(dir, "audit"), { flushMs: 60_000, now: () => at, onError: (e) => errors.push(e.message) });
    const a = session(log, 1);
    log.writeSession("issuance", "ACCESS_SESSION_TERMINATED", [["Bad Name", "x"]]);
    const c = session(log, 3);
    await log.close();
    expect(await onDisk(log.file)).toEqual([a, c]);
    expect(errors).toEqual([expect.stringMatching(/audit record ACCESS_SESSION_TERMINATED dropped: audit field name "Bad Name"/)]);
    expect(log.stats()).toMatchObject({ lines: 2, writeErrors: 1 });
  });

  it("a journal that rejects with a non-Error value is reported with that value, not [object Object]", async () => {
    const errors: string[] = [];
    const rejecting = { append: () => Promise.reject({ ok: false, error: "SQLITE_FULL" }) } as unknown as Journal;
    const log = new AuditLog(join(dir, "audit"), { journal: rejecting, onError: (e) => errors.push(e.message) });
    log.crlPublish({ issuer: "int-tls", crlNumber: 1, entries: 0 });
    await log.flush();
    expect(errors).toEqual(["journal append rejected: { ok: false, error: 'SQLITE_FULL' }"]);
    expect(log.stats()).toMatchObject({ lines: 1, journalErrors: 1 });
    await log.close();
  });

  it("a session line and its journal copy are committed within flushMs + journalBatchMs without any flush() call", async () => {
    const journal = openJournal(join(dir, "journal.db"));
    const log = new AuditLog(join(dir, "audit"), { journal, flushMs: 100, journalBatchMs: 300, now: () => at });
    const draft = { timestamp: "", component: "pki", action: "tls_session_establish", result: "success", session_id: "s1" };
    log.writeSession("issuance", "ACCESS_SESSION_ESTABLISH_SUCCESS", [["SubjectID", "CN=c1"]], draft);
    const t0 = Date.now();
    let fileAt = 0;
    let journalAt = 0;
    while (Date.now() - t0 < 3000 && !(fileAt && journalAt)) {
      await sleep(10);
      if (!fileAt && (await onDisk(log.file)).length === 1) fileAt = Date.now() - t0;
      // read() returns only committed records (the append resolved after its fsync)
      if (!journalAt && journal.read(0, 10).length === 1) journalAt = Date.now() - t0;
    }
    expect(fileAt).toBeGreaterThan(0);
    expect(journalAt).toBeGreaterThan(0);
    // the bounds plus scheduling slack on a shared machine; the journal copy waits for its batch, not for a flush
    expect(fileAt).toBeLessThan(100 + 500);
    expect(journalAt).toBeLessThan(100 + 300 + 700);
    expect((journal.read(0, 10)[0]!.event.extra as Record<string, unknown>).audit_line).toBe((await onDisk(log.file))[0]);
    await log.close();
    await journal.close();
  });

  it("the default journal bound (1 s) holds session copies back, and a clean shutdown (close) commits them all, in order", async () => {
    const journal = openJournal(join(dir, "journal.db"));
    const log = new AuditLog(join(dir, "audit"), { journal, flushMs: 0, now: () => at });
    for (let n = 1; n <= 3; n++) {
      log.writeSession("issuance", "ACCESS_SESSION_TERMINATED", [["SubjectID", `CN=c${n}`]], { timestamp: "", component: "pki", action: "tls_session_terminate", session_id: `s${n}` });
    }
    await sleep(300);
    // the lines are in the file (flushMs 0), their journal copies still batched
    expect(await onDisk(log.file)).toHaveLength(3);
    expect(journal.read(0, 10)).toEqual([]);
    await log.close();
    expect(journal.read(0, 10).map((r) => r.event.session_id)).toEqual(["s1", "s2", "s3"]);
    expect(log.stats()).toMatchObject({ lines: 3, journaled: 3, journalErrors: 0 });
    await journal.close();
  });

  it("session journal copies are held as their canonical text; a reader gets the same event back", async () => {
    const journal = openJournal(join(dir, "journal.db"));
    const log = new AuditLog(join(dir, "audit"), { journal, flushMs: 0, now: () => at });
    const draft = { timestamp: "", component: "pki", action: "tls_session_establish", result: "success", session_id: "s1", src_port: 4, extra: { listener: "issuance", subject_dn: "CN=a]b", tls_offered: ["TLSv1.2", "TLSv1.3"] } };
    log.writeSession("issuance", "ACCESS_SESSION_ESTABLISH_SUCCESS", [["SubjectID", "CN=a]b"]], draft);
    await log.close();
    const [rec] = journal.read(0, 10);
    expect(rec!.event).toMatchObject({ session_id: "s1", src_port: 4, extra: { subject_dn: "CN=a]b", tls_offered: ["TLSv1.2", "TLSv1.3"], audit_event: "ACCESS_SESSION_ESTABLISH_SUCCESS" } });
    expect(canonicalJsonOf(rec!)).toBe(canonicalJson(rec!.event));
    await journal.close();
  });

  it("refuses a negative flushMs", () => {
    expect(() => new AuditLog(join(dir, "audit"), { flushMs: -1 })).toThrow(/flushMs must be zero or more, got -1/);
  });
});

describe("non-session events and their journal copies", () => {
  it("certRequest, revocation, crlPublish, configRevision, keyStoreFailure become lines and journal events in a real journal", async () => {
    const journal = openJournal(join(dir, "journal.db"));
    const log = new AuditLog(join(dir, "audit"), { journal });
    log.certRequest({ subjectId: "CN=backend.viworks.example", outcome: "issued", profile: "gw-server", subject: "CN=gw1.viworks.example", serial: "1a2b", clientIp: "127.0.0.1" });
    log.certRequest({ subjectId: "CN=backend.viworks.example", outcome: "refused", profile: "gw-server", subject: "CN=evil.example", reason: "SAN evil.example not allowed by profile gw-server" });
    log.revocation({ subjectId: "CN=backend.viworks.example", serial: "1a2b", reason: "keyCompromise", issuer: "int-tls" });
    log.crlPublish({ issuer: "int-tls", crlNumber: 7, entries: 1 });
    log.configRevision({ revision: "abc123", outcome: "refused", reason: "missing approvals" });
    log.keyStoreFailure({ keyRef: "pkcs11:token=viw;object=int-tls", operation: "sign", reason: "CKR_DEVICE_REMOVED" });
    await log.flush();
    const recs = journal.read(0, 100);
    expect(recs.map((r) => [r.index, r.event.action, r.event.result])).toEqual([
      ["viw-pki", "cert_issue", "success"],
      ["viw-pki", "cert_issue", "failure"],
      ["viw-pki", "cert_revoke", "success"],
      ["viw-pki", "crl_publish", "success"],
      ["viw-other", "config_audit", "failure"],
      ["viw-other", "key_store_failure", "failure"],
    ]);
    const fileLines = await lines(log.file);
    expect(recs.map((r) => (r.event.extra as Record<string, unknown>).audit_line)).toEqual(fileLines);
    expect(new Set(recs.map((r) => r.event.event_id)).size).toBe(6);
    expect(parseAuditLine(fileLines[1]!).fields).toEqual([
      ["AuditEvent", "CERT_REQUEST_PROCESSED"], ["SubjectID", "CN=backend.viworks.example"], ["Outcome", "Failure"], ["ClientIP", ""],
      ["Profile", "gw-server"], ["CertSubject", "CN=evil.example"], ["CertSerialNum", ""], ["Info", "SAN evil.example not allowed by profile gw-server"],
    ]);
    expect(fileLines[5]).toContain("[AuditEvent=KEY_STORE_FAILURE][SubjectID=$System$][Outcome=Failure][KeyRef=pkcs11:token=viw;object=int-tls][Operation=sign][Info=CKR_DEVICE_REMOVED]");
    await log.close();
    await journal.close();
  });

  it("a closed journal does not lose the file line; the failure is counted and reported", async () => {
    const journal = openJournal(join(dir, "journal.db"));
    await journal.close();
    const errors: string[] = [];
    const log = new AuditLog(join(dir, "audit"), { journal, onError: (e) => errors.push(e.message) });
    log.crlPublish({ issuer: "int-tls", crlNumber: 1, entries: 0 });
    await log.flush();
    expect(await lines(log.file)).toHaveLength(1);
    expect(log.stats().journalErrors).toBe(1);
    expect(errors).toHaveLength(1);
    await log.close();
  });
});
