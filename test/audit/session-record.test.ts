import { readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog, type AuditFields, type EventDraft, type TlsSessionInfo, type TlsSessionRecord } from "../../engine/audit/index.js";
import { canonicalJson } from "../../engine/config/index.js";
import { canonicalJsonOf, openJournal, type LocalJournal } from "../../engine/siem/journal/index.js";

/**
 * The TLS audit's session records (writeTlsSession: a template line and an
 * event whose keys are inserted in RFC 8785 order, JSON.stringify'd) must be
 * exactly what the generic path writes for the same session (writeSession with
 * the fields and the draft the audit built before, the journal serializing it
 * with canonicalJson): the same line, byte for byte, and the same journal text.
 */

let dir: string;
let journal: LocalJournal;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "viw-audit-rec-"));
  journal = openJournal(join(dir, "journal.db"));
});
afterAll(async () => {
  await journal.close();
  await rm(dir, { recursive: true, force: true });
});

/** Strings with what escaping must handle: brackets, backslash, quotes, line breaks, controls, lone surrogates, astral. */
const nasty = fc.string({
  maxLength: 24,
  unit: fc.oneof(
    fc.constantFrom("]", "[", "\\", '"', "\n", "\r", "\t", "\u0000", "\u007f", "\u0085", "\u2028", "\u2029", "\ud800", "\udfff", "😀", "=", ","),
    fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  ),
});
const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined });

const infoArb: fc.Arbitrary<TlsSessionInfo> = fc.record({
  listener: fc.constantFrom("issuance", "syslog", "bulk"),
  component: fc.constantFrom("pki", "siem"),
  id: fc.stringMatching(/^[0-9a-f]{24}$/),
  srcIp: fc.oneof(fc.constant(""), fc.ipV4(), fc.ipV6(), nasty),
  srcPort: opt(fc.integer({ min: 0, max: 65535 })),
  dstIp: fc.oneof(fc.constant(""), fc.ipV4(), fc.ipV6()),
  dstPort: opt(fc.integer({ min: 0, max: 65535 })),
  subjectDn: fc.oneof(fc.constant(""), nasty),
  serial: opt(fc.oneof(fc.constant(""), fc.stringMatching(/^[0-9a-f]{2,40}$/))),
  ja3: opt(fc.stringMatching(/^[0-9a-f]{32}$/)),
  offered: opt(fc.array(fc.constantFrom("TLSv1.3", "TLSv1.2", "TLSv1", "0x7f1c"), { minLength: 1, maxLength: 4 })),
  sni: opt(fc.oneof(fc.constant(""), nasty)),
});

const recordArb: fc.Arbitrary<TlsSessionRecord> = fc.oneof(
  fc.record({
    session: infoArb,
    event: fc.constant("ACCESS_SESSION_ESTABLISH_SUCCESS" as const),
    outcome: fc.constant("Success" as const),
    result: fc.constant("success" as const),
    severity: fc.constant("info"),
    info: fc.oneof(fc.constant(""), nasty),
    errorCode: fc.constant(undefined),
    durationMs: fc.nat(100_000),
    tlsVersion: fc.oneof(fc.constantFrom("TLSv1.3", "TLSv1.2"), fc.constant(null)),
    cipher: opt(fc.constantFrom("TLS_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256")),
    journal: fc.constant(undefined),
  }),
  fc.record({
    session: infoArb,
    event: fc.constant("ACCESS_SESSION_ESTABLISH_FAILURE" as const),
    outcome: fc.constant("Failure" as const),
    result: fc.constant("failure" as const),
    severity: fc.constantFrom("high", "warning"),
    info: nasty,
    errorCode: fc.constantFrom("protocol_version", "unknown_ca", "reset"),
    durationMs: fc.nat(100_000),
    journal: fc.constant(undefined),
  }),
  fc.record({
    session: infoArb,
    event: fc.constant("ACCESS_SESSION_TERMINATED" as const),
    outcome: fc.constantFrom("Success" as const, "Failure" as const),
    result: fc.constantFrom("success" as const, "failure" as const),
    severity: fc.constantFrom("info", "warning"),
    info: nasty,
    errorCode: fc.constantFrom("close_notify_client", "idle_timeout", "reset"),
    durationMs: fc.nat(100_000),
    bytesIn: opt(fc.nat()),
    bytesOut: opt(fc.nat()),
    journal: fc.constant(undefined),
  }),
);

/** The same record as the audit wrote it through the generic path (its fields, and its draft as draftOf built it). */
function generic(r: TlsSessionRecord): { fields: AuditFields; draft: EventDraft } {
  const s = r.session;
  const fields: AuditFields = [["ClientIP", s.srcIp], ["ServerIP", s.dstIp], [r.event === "ACCESS_SESSION_ESTABLISH_FAILURE" ? "AttemptedID" : "SubjectID", s.subjectDn], ["Outcome", r.outcome], ["Info", r.info]];
  const d: EventDraft = { timestamp: "", component: s.component, action: r.event === "ACCESS_SESSION_TERMINATED" ? "tls_session_terminate" : "tls_session_establish", session_id: s.id };
  if (s.srcIp) d.src_ip = s.srcIp;
  if (s.srcPort !== undefined) d.src_port = s.srcPort;
  if (s.dstIp) d.dst_ip = s.dstIp;
  if (s.dstPort !== undefined) d.dst_port = s.dstPort;
  d.proto = "tcp";
  if (s.ja3) d.tls_ja3 = s.ja3;
  d.result = r.result;
  d.severity = r.severity;
  d.duration_ms = r.durationMs;
  const extra: Record<string, unknown> = { listener: s.listener, subject_dn: s.subjectDn };
  if (s.serial) extra.serial = s.serial;
  if (s.offered) extra.tls_offered = [...s.offered];
  if (s.sni) extra.sni = s.sni;
  if (r.errorCode !== undefined) {
    d.error_code = r.errorCode;
    d.error_msg = r.info;
  }
  if (r.event === "ACCESS_SESSION_ESTABLISH_SUCCESS") {
    extra.tls_version = r.tlsVersion;
    extra.cipher = r.cipher;
  }
  if (r.bytesIn !== undefined) d.bytes_in = r.bytesIn;
  if (r.bytesOut !== undefined) d.bytes_out = r.bytesOut;
  d.extra = extra;
  return { fields, draft: d };
}

describe("TLS session records (writeTlsSession)", () => {
  it("write the same line and the same canonical journal text as the generic path, for any DN, info, address or option (property)", async () => {
    const at = new Date("2026-11-23T10:00:00.000Z");
    const log = new AuditLog(join(dir, "audit"), { journal, flushMs: 60_000, now: () => at });
    const records = fc.sample(recordArb, { numRuns: 400, seed: 8 });
    for (const r of records) {
      log.writeTlsSession(r);
      const { fields, draft } = generic(r);
      log.writeSession(r.session.listener, r.event, fields, draft);
    }
    await log.close();
    const lines = (await readFile(log.file, "utf8")).split("\n").filter(Boolean);
    const recs = journal.read(0, 10_000);
    expect(lines).toHaveLength(2 * records.length);
    expect(recs).toHaveLength(2 * records.length);
    const withoutId = (text: string): string => text.replace(/"event_id":"[0-9a-f]{64}"/, '"event_id":""');
    for (let i = 0; i < records.length; i++) {
      const [fast, slow] = [recs[2 * i]!, recs[2 * i + 1]!];
      expect(lines[2 * i]).toBe(lines[2 * i + 1]);
      expect(fast.index).toBe(slow.index);
      const text = canonicalJsonOf(fast)!;
      // the text handed to the journal is the event's canonical JSON...
      expect(text).toBe(canonicalJson(JSON.parse(text)));
      // ...and the same as the generic path's, but for the event id (unique per record)
      expect(withoutId(text)).toBe(withoutId(canonicalJsonOf(slow)!));
    }
  });
});
