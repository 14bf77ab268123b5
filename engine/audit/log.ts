import { hash, randomBytes } from "node:crypto";
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, renameSync, write as fsWrite } from "node:fs";
import { inspect, promisify } from "node:util";
import { join } from "node:path";
import { DEFAULT_INDEX, DEFAULT_ROUTES } from "../config/index.js";
import type { Journal, JournalItem, NormalizedEvent } from "../siem/journal/index.js";
import { Router } from "../siem/normalize/index.js";

/**
 * The server-wide audit log (Dogtag PKI 10.4 signed-audit style, one file for
 * every subsystem): DATA/audit/audit.log, one line per event,
 *
 *   2026-11-23T10:00:00.000Z [issuance] [AuditEvent=...][Name=value]...[Info=...]
 *
 * Escaping (what makes a field unforgeable): inside a value, `\` is written
 * `\\`, `[` is `\[`, `]` is `\]`, LF/CR/TAB are `\n`/`\r`/`\t`, and every other
 * control or line-separator character (C0, DEL, C1, U+2028, U+2029) is
 * `\uXXXX`. So a field ends at the first `]` not preceded by an escaping
 * backslash, a line ends only at a real LF, and a DN like `CN=x][Outcome=Success`
 * stays inside its own field (`parseAuditLine` is the reference reader).
 *
 * Lines reach the file in order, written by one asynchronous writer: a line
 * from `write()` (certificate requests, revocations, config revisions...)
 * within one event-loop turn, taking every line queued before it along; a
 * TLS session line (`writeSession()`, one per handshake and one per close)
 * within `flushMs` (default 100 ms), batched so a listener formats, journals
 * and writes its session records in one pass and one write(2) per batch
 * rather than per handshake. The journal copies (what detections and the
 * sealed chain see) follow within `journalBatchMs` (1 s), one journal append
 * per batch: each append is a commit with a full fsync costing ~1 ms of CPU
 * whatever its size, which at 250 ms batches was still a measurable share of
 * a handshake's cost. The longer bound is safe because the file line is the
 * first copy and comes first (within `flushMs`, 100 ms, always below the
 * journal bound): a process crash loses at most the last second's journal
 * copies, never their lines, which stay in the file (written, in the page
 * cache); detections see a session at most 1 s later. `flush()`/`close()`
 * write every line and commit every journal copy (the daemon must await
 * `close()` on shutdown).
 *
 * The file is opened O_APPEND and never truncated: it is rotated by renaming
 * to audit.log.YYYY-MM-DD (the UTC day of its lines), or .YYYY-MM-DD.N when
 * that name is taken (size rotation within a day), then a new file is opened.
 * When a journal is given, every line is also appended to it as a normalized
 * event carrying `extra.audit_line`, so the sealed Merkle chain covers the log.
 */

export type AuditValue = string | number | boolean | null | undefined;
export type AuditFields = readonly (readonly [string, AuditValue])[];

/** The normalized event the caller wants journaled with a line (event_id, received_at and extra.audit_line are added). */
export interface EventDraft {
  action: string;
  /** ISO time; default the line's time. */
  timestamp?: string;
  extra?: Record<string, unknown>;
  [field: string]: unknown;
}

/**
 * What the two records of one TLS session (ESTABLISH, then TERMINATED) share,
 * made once per session by the TLS audit (plain data: a queued record must not
 * keep its socket alive). The listener name is checked when the log first sees it.
 */
export interface TlsSessionInfo {
  readonly listener: string;
  readonly component: string;
  readonly id: string;
  readonly srcIp: string;
  readonly srcPort: number | undefined;
  readonly dstIp: string;
  readonly dstPort: number | undefined;
  subjectDn: string;
  serial: string | undefined;
  ja3: string | undefined;
  /** Offered versions by name (extra.tls_offered). */
  offered: readonly string[] | undefined;
  sni: string | undefined;
}

/** One ACCESS_SESSION_* record of a TLS session: its line, and its journal event (tls_session_establish / tls_session_terminate). */
export interface TlsSessionRecord {
  session: TlsSessionInfo;
  event: "ACCESS_SESSION_ESTABLISH_SUCCESS" | "ACCESS_SESSION_ESTABLISH_FAILURE" | "ACCESS_SESSION_TERMINATED";
  outcome: "Success" | "Failure";
  result: "success" | "failure";
  severity: string;
  /** Info= and, with an error code, error_msg. */
  info: string;
  errorCode: string | undefined;
  durationMs: number;
  /** ESTABLISH_SUCCESS: extra.tls_version and extra.cipher. */
  tlsVersion?: string | null;
  cipher?: string | undefined;
  /** TERMINATED: bytes_in / bytes_out. */
  bytesIn?: number;
  bytesOut?: number;
  /** Where its journal event goes; default the log's journal. */
  journal: Journal | undefined;
}

export interface AuditLogOptions {
  /** Rotate when the next line would take the file past this size. Default 64 MiB. */
  maxBytes?: number;
  /** Where the journal copies go; omit to keep the log file only. */
  journal?: Journal;
  /** The journal index of an action (the routing policy); default DESIGN §5's table. */
  route?: (action: string) => string;
  /** Journal copies are appended at most this long after their line (batched, one append per batch). Default 1000 ms. */
  journalBatchMs?: number;
  /** TLS session lines (`writeSession`) reach the file at most this long after they were written (batched). Default 100 ms. */
  flushMs?: number;
  /** Write failures (disk full) and journal failures (full, closed) are reported here. */
  onError?: (err: Error) => void;
  /** Clock (tests). */
  now?: () => Date;
}

export interface AuditLogStats {
  /** Lines in the file (written). */
  lines: number;
  writeErrors: number;
  rotations: number;
  journaled: number;
  journalErrors: number;
}

const NAME_RE = /^[A-Za-z][A-Za-z0-9_]*$/;
const LISTENER_RE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const NEEDS_ESCAPE = /[\\[\]\x00-\x1f\x7f-\x9f\u2028\u2029]/;

/** Listener names appear bracketed in every line; they are ours, so they are checked, not escaped. */
export function assertListenerName(listener: string): void {
  if (!LISTENER_RE.test(listener)) throw new Error(`audit listener name ${JSON.stringify(listener)} must match ${LISTENER_RE}`);
}

export function escapeAuditValue(value: AuditValue): string {
  if (value === undefined || value === null) return "";
  const s = String(value);
  if (!NEEDS_ESCAPE.test(s)) return s;
  let out = "";
  for (const ch of s) {
    switch (ch) {
      case "\\": out += "\\\\"; break;
      case "[": out += "\\["; break;
      case "]": out += "\\]"; break;
      case "\n": out += "\\n"; break;
      case "\r": out += "\\r"; break;
      case "\t": out += "\\t"; break;
      default: {
        const c = ch.codePointAt(0)!;
        out += c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029 ? "\\u" + c.toString(16).padStart(4, "0") : ch;
      }
    }
  }
  return out;
}

function unescapeAuditValue(s: string): string {
  return s.replace(/\\(u[0-9a-f]{4}|.)/g, (_, e: string) =>
    e.length === 5 ? String.fromCharCode(parseInt(e.slice(1), 16)) : e === "n" ? "\n" : e === "r" ? "\r" : e === "t" ? "\t" : e,
  );
}

/** `[AuditEvent=X][Name=value]...`, names checked, values escaped. */
export function formatAuditFields(event: string, fields: AuditFields): string {
  if (!NAME_RE.test(event)) throw new Error(`audit event name ${JSON.stringify(event)} is not an identifier`);
  let out = `[AuditEvent=${event}]`;
  for (const [name, value] of fields) {
    if (!NAME_RE.test(name)) throw new Error(`audit field name ${JSON.stringify(name)} is not an identifier`);
    out += `[${name}=${escapeAuditValue(value)}]`;
  }
  return out;
}

export interface ParsedAuditLine {
  timestamp: string;
  listener: string;
  /** In line order, AuditEvent first, values unescaped. */
  fields: [string, string][];
}

/** Reads one line back; throws naming the column where it is malformed. */
export function parseAuditLine(line: string): ParsedAuditLine {
  const m = /^(\S+) \[([^\]\s]+)\] /.exec(line);
  if (!m) throw new Error("audit line: expected `TIMESTAMP [listener] ` at column 1");
  const fields: [string, string][] = [];
  let i = m[0].length;
  while (i < line.length) {
    if (line[i] !== "[") throw new Error(`audit line: expected '[' at column ${i + 1}`);
    const eq = line.indexOf("=", i);
    if (eq < 0) throw new Error(`audit line: field at column ${i + 1} has no '='`);
    const name = line.slice(i + 1, eq);
    if (!NAME_RE.test(name)) throw new Error(`audit line: bad field name at column ${i + 2}`);
    let j = eq + 1;
    while (j < line.length && line[j] !== "]") j += line[j] === "\\" ? 2 : 1;
    if (j >= line.length) throw new Error(`audit line: field ${name} at column ${i + 1} is not closed`);
    fields.push([name, unescapeAuditValue(line.slice(eq + 1, j))]);
    i = j + 1;
  }
  return { timestamp: m[1]!, listener: m[2]!, fields };
}

/** What JSON.stringify must escape in a string (a surrogate is sent there even when paired: it knows which are lone). */
const JSON_SPECIAL = /["\\\u0000-\u001f\ud800-\udfff]/;
const jsonString = (s: string): string => (JSON_SPECIAL.test(s) ? JSON.stringify(s) : `"${s}"`);
const jsonNumber = (n: number): string => (Number.isFinite(n) ? String(n) : "null");

type TlsEvent = {
  action: string; bytes_in: number | undefined; bytes_out: number | undefined; component: string; dst_ip: string | undefined; dst_port: number | undefined;
  duration_ms: number; error_code: string | undefined; error_msg: string | undefined; event_id: string;
  extra: { audit_event: string; audit_line: string; cipher: string | undefined; listener: string; serial: string | undefined; sni: string | undefined; subject_dn: string; tls_offered: readonly string[] | undefined; tls_version: string | null | undefined };
  proto: string; received_at: string; result: string; session_id: string; severity: string; src_ip: string | undefined; src_port: number | undefined; timestamp: string; tls_ja3: string | undefined;
};

/**
 * JSON.stringify(e) for a TLS session event (keys already in RFC 8785 order,
 * undefined ones left out), written from a template: JSON.stringify walks
 * every character of every string to escape it, which was most of the cost of
 * serializing these events; here only strings that need escaping go to it.
 * test/audit/session-record.test.ts checks it against canonicalJson.
 */
function tlsEventJson(e: TlsEvent): string {
  const x = e.extra;
  let j = `{"action":${jsonString(e.action)}`;
  if (e.bytes_in !== undefined) j += `,"bytes_in":${jsonNumber(e.bytes_in)}`;
  if (e.bytes_out !== undefined) j += `,"bytes_out":${jsonNumber(e.bytes_out)}`;
  j += `,"component":${jsonString(e.component)}`;
  if (e.dst_ip !== undefined) j += `,"dst_ip":${jsonString(e.dst_ip)}`;
  if (e.dst_port !== undefined) j += `,"dst_port":${jsonNumber(e.dst_port)}`;
  j += `,"duration_ms":${jsonNumber(e.duration_ms)}`;
  if (e.error_code !== undefined) j += `,"error_code":${jsonString(e.error_code)}`;
  if (e.error_msg !== undefined) j += `,"error_msg":${jsonString(e.error_msg)}`;
  j += `,"event_id":${jsonString(e.event_id)},"extra":{"audit_event":${jsonString(x.audit_event)},"audit_line":${jsonString(x.audit_line)}`;
  if (x.cipher !== undefined) j += `,"cipher":${jsonString(x.cipher)}`;
  j += `,"listener":${jsonString(x.listener)}`;
  if (x.serial !== undefined) j += `,"serial":${jsonString(x.serial)}`;
  if (x.sni !== undefined) j += `,"sni":${jsonString(x.sni)}`;
  j += `,"subject_dn":${jsonString(x.subject_dn)}`;
  if (x.tls_offered !== undefined) {
    j += `,"tls_offered":[`;
    for (let i = 0; i < x.tls_offered.length; i++) j += (i ? "," : "") + jsonString(x.tls_offered[i]!);
    j += "]";
  }
  if (x.tls_version !== undefined) j += `,"tls_version":${x.tls_version === null ? "null" : jsonString(x.tls_version)}`;
  j += `},"proto":${jsonString(e.proto)},"received_at":${jsonString(e.received_at)},"result":${jsonString(e.result)},"session_id":${jsonString(e.session_id)},"severity":${jsonString(e.severity)}`;
  if (e.src_ip !== undefined) j += `,"src_ip":${jsonString(e.src_ip)}`;
  if (e.src_port !== undefined) j += `,"src_port":${jsonNumber(e.src_port)}`;
  j += `,"timestamp":${jsonString(e.timestamp)}`;
  if (e.tls_ja3 !== undefined) j += `,"tls_ja3":${jsonString(e.tls_ja3)}`;
  return j + "}";
}

type QueuedSession = { listener: string; event: string; fields: AuditFields; draft: EventDraft | undefined; journal: Journal | undefined } | TlsSessionRecord;

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const writeAsync = promisify(fsWrite);
const MAX_BATCH = 1000;
/** Queued session records are written at once past this many. */
const MAX_SESSIONS = 256;

export class AuditLog {
  readonly file: string;
  readonly journal: Journal | undefined;
  private fd: number;
  private size = 0;
  /** UTC day (YYYY-MM-DD) of the lines in the current file. */
  private day: string;
  private readonly maxBytes: number;
  private readonly route: (action: string) => string;
  private readonly onError: (err: Error) => void;
  private readonly now: () => Date;
  /** event_id = sha256(boot ‖ seq ‖ line): unique per record even when two lines are identical. */
  private readonly boot = randomBytes(8).toString("hex");
  private seq = 0;
  private readonly pending = new Set<Promise<unknown>>();
  /** Lines (without their LF) waiting for the writer, with rotation points between them. */
  private out: (string | { rotate: string })[] = [];
  /** Session records not yet formatted (writeSession, writeTlsSession), with their time. */
  private sessions: QueuedSession[] = [];
  private times: Date[] = [];
  /** Listener names of TLS session records already checked. */
  private readonly listeners = new Set<string>();
  private pumping = false;
  /** A session line is waiting for the flush timer. */
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly flushMs: number;
  private readonly written: (() => void)[] = [];
  private readonly queues = new Map<Journal, JournalItem[]>();
  private timer: NodeJS.Timeout | undefined;
  private readonly batchMs: number;
  private closed = false;
  private readonly counters: AuditLogStats = { lines: 0, rotations: 0, writeErrors: 0, journaled: 0, journalErrors: 0 };

  /** `dir` is DATA/audit; created if missing. */
  constructor(readonly dir: string, opts: AuditLogOptions = {}) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    this.batchMs = opts.journalBatchMs ?? 1000;
    if (!(this.batchMs >= 0)) throw new Error(`audit log journalBatchMs must be zero or more, got ${opts.journalBatchMs}`);
    this.flushMs = opts.flushMs ?? 100;
    if (!(this.flushMs >= 0)) throw new Error(`audit log flushMs must be zero or more, got ${opts.flushMs}`);
    if (!(this.maxBytes > 0)) throw new Error(`audit log maxBytes must be positive, got ${opts.maxBytes}`);
    this.journal = opts.journal;
    this.now = opts.now ?? (() => new Date());
    this.onError = opts.onError ?? ((err) => process.emitWarning(`audit journal append failed: ${err.message}`));
    if (opts.route) this.route = opts.route;
    else {
      const router = new Router({ routes: DEFAULT_ROUTES, default: DEFAULT_INDEX });
      this.route = (action) => router.route(action);
    }
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    this.file = join(dir, "audit.log");
    this.fd = openSync(this.file, "a", 0o640);
    this.size = fstatSync(this.fd).size;
    this.day = this.size > 0 ? (this.firstLineDay() ?? dayOf(fstatSync(this.fd).mtime)) : dayOf(this.now());
  }

  stats(): AuditLogStats {
    return { ...this.counters };
  }

  /**
   * Writes one line and, with a journal, its normalized event. Returns the
   * line (without LF). `journal` overrides the log's journal for this record.
   */
  write(listener: string, event: string, fields: AuditFields, draft?: EventDraft, journal?: Journal): string {
    if (this.closed) throw new Error("audit log is closed");
    // Session records queued before this line go first.
    this.materialize();
    const line = this.append(listener, event, fields, draft, journal, false, undefined);
    this.schedule(true);
    return line;
  }

  /**
   * Like `write()`, for the high-rate TLS session records (two per
   * handshake): the record is only queued here, with its time; its line is
   * formatted, its journal event built and the line written within
   * `flushMs`, for every queued record at once, or sooner when a `write()`
   * line follows or MAX_SESSIONS are waiting. Measured on the issuance
   * listener, doing this work per handshake cost several times more CPU than
   * doing it in one loop per batch (the code runs cold between handshakes).
   * The draft (and its `extra`) become the journal event itself, not a copy:
   * the caller must not reuse them. A record that cannot be formatted (a bad
   * field name) is reported to `onError` and dropped.
   */
  writeSession(listener: string, event: string, fields: AuditFields, draft?: EventDraft, journal?: Journal): void {
    if (this.closed) throw new Error("audit log is closed");
    assertListenerName(listener);
    this.queue({ listener, event, fields, draft, journal });
  }

  /**
   * A TLS session record (what `auditTlsServer` writes, two per session),
   * queued like `writeSession`: its line and journal event are written from
   * templates, not from generic fields and a draft, because at one pair per
   * handshake the generic path (field arrays, a draft, its key-sorted copy
   * for canonical JSON) was a measurable share of the handshake's cost.
   * The record must not be changed once written.
   */
  writeTlsSession(record: TlsSessionRecord): void {
    if (this.closed) throw new Error("audit log is closed");
    this.queue(record);
  }

  private queue(r: QueuedSession): void {
    this.sessions.push(r);
    this.times.push(this.now());
    this.schedule(this.flushMs === 0 || this.sessions.length >= MAX_SESSIONS);
  }

  /** Turns the queued session records into lines and journal events, in order. */
  private materialize(): void {
    if (this.sessions.length === 0) return;
    const batch = this.sessions;
    const times = this.times;
    this.sessions = [];
    this.times = [];
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]!;
      try {
        if ("session" in r) this.appendTls(r, times[i]!);
        else this.append(r.listener, r.event, r.fields, r.draft, r.journal, true, times[i]);
      } catch (err) {
        this.counters.writeErrors++;
        this.onError(new Error(`audit record ${r.event} dropped: ${(err as Error).message}`));
      }
    }
  }

  private append(listener: string, event: string, fields: AuditFields, draft: EventDraft | undefined, journal: Journal | undefined, owned: boolean, at: Date | undefined): string {
    assertListenerName(listener);
    const ts = (draft?.timestamp ? new Date(draft.timestamp) : (at ?? this.now())).toISOString();
    const line = `${ts} [${listener}] ${formatAuditFields(event, fields)}`;
    this.put(line, ts);
    const sink = journal ?? this.journal;
    if (sink && draft) this.journalLine(sink, line, event, ts, draft, owned);
    return line;
  }

  /**
   * A TLS session record as `append` would write it from its fields and draft
   * (the same line, the same event: test/audit/log.test.ts checks both), with
   * the event's keys inserted in RFC 8785 order so that JSON.stringify gives its
   * canonical JSON, handed to the journal as its text (keys left undefined are
   * skipped by JSON.stringify as by canonicalJson).
   */
  private appendTls(r: TlsSessionRecord, at: Date): void {
    const s = r.session;
    if (!this.listeners.has(s.listener)) {
      assertListenerName(s.listener);
      this.listeners.add(s.listener);
    }
    const ts = at.toISOString();
    const line =
      `${ts} [${s.listener}] [AuditEvent=${r.event}][ClientIP=${escapeAuditValue(s.srcIp)}][ServerIP=${escapeAuditValue(s.dstIp)}]` +
      `[${r.event === "ACCESS_SESSION_ESTABLISH_FAILURE" ? "AttemptedID" : "SubjectID"}=${escapeAuditValue(s.subjectDn)}][Outcome=${r.outcome}][Info=${escapeAuditValue(r.info)}]`;
    this.put(line, ts);
    const sink = r.journal ?? this.journal;
    if (!sink) return;
    const action = r.event === "ACCESS_SESSION_TERMINATED" ? "tls_session_terminate" : "tls_session_establish";
    // prettier-ignore
    const event: TlsEvent = {
      action,
      bytes_in: r.bytesIn,
      bytes_out: r.bytesOut,
      component: s.component,
      dst_ip: s.dstIp || undefined,
      dst_port: s.dstPort,
      duration_ms: r.durationMs,
      error_code: r.errorCode,
      error_msg: r.errorCode === undefined ? undefined : r.info,
      event_id: this.eventId(line),
      extra: {
        audit_event: r.event,
        audit_line: line,
        cipher: r.cipher,
        listener: s.listener,
        serial: s.serial || undefined,
        sni: s.sni || undefined,
        subject_dn: s.subjectDn,
        tls_offered: s.offered,
        tls_version: r.tlsVersion,
      },
      proto: "tcp",
      received_at: ts,
      result: r.result,
      session_id: s.id,
      severity: r.severity,
      src_ip: s.srcIp || undefined,
      src_port: s.srcPort,
      timestamp: ts,
      tls_ja3: s.ja3,
    };
    this.journalItem(sink, { index: this.route(action), event: event as NormalizedEvent, json: tlsEventJson(event) });
  }

  /** Queues one line (and a rotation before it when its day or the size says so). */
  private put(line: string, ts: string): void {
    const length = Buffer.byteLength(line, "utf8") + 1;
    const day = ts.slice(0, 10);
    if (this.size > 0 && (day !== this.day || this.size + length > this.maxBytes)) {
      this.out.push({ rotate: this.day });
      this.size = 0;
    }
    if (this.size === 0) this.day = day;
    this.out.push(line);
    this.size += length;
  }

  /** Starts the writer now (next turn), or arms the session flush timer. */
  private schedule(now: boolean): void {
    if (now) {
      if (this.flushTimer) clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
      this.materialize();
      if (!this.pumping) {
        this.pumping = true;
        setImmediate(() => void this.pump());
      }
    } else if (!this.pumping && !this.flushTimer) {
      // While the writer runs, it takes these lines along; otherwise the timer does.
      this.flushTimer = setTimeout(() => this.schedule(true), this.flushMs);
    }
  }

  private journalLine(sink: Journal, line: string, auditEvent: string, ts: string, draft: EventDraft, owned: boolean): void {
    let event: NormalizedEvent;
    if (owned) {
      // Two per TLS session: copying the draft and its extra was a measurable share of the audit's cost.
      event = draft as NormalizedEvent;
      if (!draft.timestamp) event.timestamp = ts;
      const extra = (draft.extra ??= {});
      extra.audit_event = auditEvent;
      extra.audit_line = line;
    } else {
      event = { ...draft, timestamp: draft.timestamp || ts } as NormalizedEvent;
      event.extra = { ...draft.extra, audit_event: auditEvent, audit_line: line };
    }
    event.event_id = this.eventId(line);
    event.received_at = ts;
    this.journalItem(sink, { index: this.route(draft.action), event });
  }

  private eventId(line: string): string {
    return hash("sha256", `${this.boot}:${this.seq++}:${line}`, "hex");
  }

  private journalItem(sink: Journal, item: JournalItem): void {
    let queue = this.queues.get(sink);
    if (!queue) this.queues.set(sink, (queue = []));
    queue.push(item);
    if (queue.length >= MAX_BATCH) this.drain();
    else this.timer ??= setTimeout(() => this.drain(), this.batchMs).unref();
  }

  /**
   * Journal copies are appended in batches (every `batchMs` or MAX_BATCH
   * lines): the SQLite journal commits synchronously with an fsync on the
   * event loop, and one commit per TLS handshake cost more than the handshake.
   * The file line itself is written at once.
   */
  private drain(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const [sink, items] of this.queues) {
      this.queues.delete(sink);
      const p = sink
        .append(items)
        .then(
          () => void (this.counters.journaled += items.length),
          (err: unknown) => {
            this.counters.journalErrors += items.length;
            // A rejection that is not an Error (a worker's message object) is shown as what it is, not "[object Object]".
            this.onError(err instanceof Error ? err : new Error(`journal append rejected: ${inspect(err, { breakLength: Infinity })}`));
          },
        )
        .finally(() => this.pending.delete(p));
      this.pending.add(p);
    }
  }

  /**
   * The single writer: lines queued during one event-loop turn go out in one
   * write(2) on the O_APPEND fd, in order; a rotation marker between them
   * renames the file at exactly that point. Asynchronous because a blocking
   * append on a busy disk stalled every handshake behind it (measured
   * 0.1-0.5 ms per session under load); Dogtag's signed audit buffers too.
   */
  private async pump(): Promise<void> {
    for (this.materialize(); this.out.length > 0; this.materialize()) {
      const batch = this.out;
      this.out = [];
      let lines: string[] = [];
      for (const item of batch) {
        if (typeof item === "string") lines.push(item);
        else {
          await this.writeAll(lines);
          lines = [];
          this.rotate(item.rotate);
        }
      }
      await this.writeAll(lines);
    }
    this.pumping = false;
    for (const w of this.written.splice(0)) w();
  }

  private async writeAll(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    const count = lines.length;
    lines.push("");
    let data = Buffer.from(lines.join("\n"), "utf8");
    try {
      while (data.length > 0) {
        const { bytesWritten } = await writeAsync(this.fd, data, 0, data.length, null);
        data = data.subarray(bytesWritten);
      }
      this.counters.lines += count;
    } catch (err) {
      this.counters.writeErrors += count;
      this.onError(new Error(`audit log ${this.file}: ${(err as Error).message}`));
    }
  }

  /** Resolves when every line written so far is in the file, and every journal copy is durable (or has failed and been reported). */
  async flush(): Promise<void> {
    if (this.out.length > 0 || this.sessions.length > 0) this.schedule(true);
    if (this.pumping) await new Promise<void>((r) => this.written.push(r));
    this.drain();
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    closeSync(this.fd);
  }

  // --- what Dogtag audits beyond sessions (names after its signed-audit events) ---

  /** CERT_REQUEST_PROCESSED: a certificate request issued or refused. */
  certRequest(r: {
    listener?: string;
    /** The requester (client certificate DN, or identity). */
    subjectId: string;
    outcome: "issued" | "refused";
    profile: string;
    /** The requested/issued certificate's subject DN. */
    subject: string;
    serial?: string;
    /** Why it was refused (the rule), or empty. */
    reason?: string;
    clientIp?: string;
    revision?: string;
  }): string {
    const ok = r.outcome === "issued";
    return this.write(
      r.listener ?? "issuance",
      "CERT_REQUEST_PROCESSED",
      [["SubjectID", r.subjectId], ["Outcome", ok ? "Success" : "Failure"], ["ClientIP", r.clientIp], ["Profile", r.profile], ["CertSubject", r.subject], ["CertSerialNum", r.serial], ["Info", r.reason]],
      {
        component: "pki", action: "cert_issue", result: ok ? "success" : "failure", severity: ok ? "info" : "warning",
        ...(r.clientIp ? { src_ip: r.clientIp } : {}), ...(r.reason ? { error_msg: r.reason } : {}), ...(r.revision ? { trace_id: r.revision } : {}),
        extra: { subject_dn: r.subjectId, profile: r.profile, cert_subject: r.subject, ...(r.serial ? { serial: r.serial } : {}) },
      },
    );
  }

  /** CERT_STATUS_CHANGE_REQUEST_PROCESSED: a revocation (done or refused). */
  revocation(r: { listener?: string; subjectId: string; serial: string; reason: string; issuer?: string; outcome?: "revoked" | "refused"; info?: string }): string {
    const ok = (r.outcome ?? "revoked") === "revoked";
    return this.write(
      r.listener ?? "issuance",
      "CERT_STATUS_CHANGE_REQUEST_PROCESSED",
      [["SubjectID", r.subjectId], ["Outcome", ok ? "Success" : "Failure"], ["CertSerialNum", r.serial], ["RequestType", "revoke"], ["RevokeReason", r.reason], ["Issuer", r.issuer], ["Info", r.info]],
      {
        component: "pki", action: "cert_revoke", result: ok ? "success" : "failure", severity: ok ? "info" : "warning",
        ...(r.info ? { error_msg: r.info } : {}),
        extra: { subject_dn: r.subjectId, serial: r.serial, reason: r.reason, ...(r.issuer ? { issuer: r.issuer } : {}) },
      },
    );
  }

  /** FULL_CRL_PUBLISH: a CRL generated and published (or the attempt failed). */
  crlPublish(r: { issuer: string; crlNumber: number | string; entries: number; outcome?: "published" | "failed"; info?: string }): string {
    const ok = (r.outcome ?? "published") === "published";
    return this.write(
      "engine",
      "FULL_CRL_PUBLISH",
      [["SubjectID", "$System$"], ["Outcome", ok ? "Success" : "Failure"], ["Issuer", r.issuer], ["CRLnum", r.crlNumber], ["Entries", r.entries], ["Info", r.info]],
      {
        component: "pki", action: "crl_publish", result: ok ? "success" : "failure", severity: ok ? "info" : "high",
        ...(r.info ? { error_msg: r.info } : {}),
        extra: { issuer: r.issuer, crl_number: String(r.crlNumber), entries: r.entries },
      },
    );
  }

  /**
   * CONFIG_REVISION: a config revision applied or refused. Journaled as
   * `config_audit`, not `config_apply`: the reconciler already journals
   * config_apply with its own ids, and counting it twice would skew rules.
   */
  configRevision(r: { revision: string; outcome: "applied" | "refused"; signer?: string; digest?: string; reason?: string }): string {
    const ok = r.outcome === "applied";
    return this.write(
      "engine",
      "CONFIG_REVISION",
      [["SubjectID", r.signer ?? "$System$"], ["Outcome", ok ? "Success" : "Failure"], ["Revision", r.revision], ["Digest", r.digest], ["Info", r.reason]],
      {
        component: "viw-engine", action: "config_audit", result: ok ? "success" : "failure", severity: ok ? "info" : "warning", trace_id: r.revision,
        ...(r.reason ? { error_msg: r.reason } : {}),
        extra: { revision: r.revision, ...(r.signer ? { signer: r.signer } : {}), ...(r.digest ? { digest: r.digest } : {}) },
      },
    );
  }

  /** KEY_STORE_FAILURE: the HSM / key provider failed an operation (no key material is ever logged). */
  keyStoreFailure(r: { keyRef: string; operation: string; reason: string; listener?: string }): string {
    return this.write(
      r.listener ?? "engine",
      "KEY_STORE_FAILURE",
      [["SubjectID", "$System$"], ["Outcome", "Failure"], ["KeyRef", r.keyRef], ["Operation", r.operation], ["Info", r.reason]],
      {
        component: "pki", action: "key_store_failure", result: "failure", severity: "high", error_code: "key_store_unavailable", error_msg: r.reason,
        extra: { key_ref: r.keyRef, operation: r.operation },
      },
    );
  }

  private rotate(day: string): void {
    closeSync(this.fd);
    let target = `${this.file}.${day}`;
    for (let n = 1; existsSync(target); n++) target = `${this.file}.${day}.${n}`;
    renameSync(this.file, target);
    this.fd = openSync(this.file, "a", 0o640);
    this.counters.rotations++;
  }

  private firstLineDay(): string | undefined {
    const buf = Buffer.alloc(10);
    const fd = openSync(this.file, "r");
    try {
      const n = readSync(fd, buf, 0, 10, 0);
      const s = buf.subarray(0, n).toString("latin1");
      return /^\d{4}-\d{2}-\d{2}$/.test(s) ? s : undefined;
    } finally {
      closeSync(fd);
    }
  }
}

function dayOf(d: Date): string {
  return d.toISOString().slice(0, 10);
}
