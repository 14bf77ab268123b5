import { createServer, type Server, type TLSSocket } from "node:tls";
import { isUtf8 } from "node:buffer";
import { describePeer, identityMatches, type ListenerTls } from "./identity.js";
import { FramingError, messageObject, parseSyslog, SyslogFramer } from "./framing.js";
import { reportIngestError, type IngestContext } from "./runtime.js";
import type { JournalItem } from "../journal/index.js";

export interface SyslogOptions {
  /** Bytes a connection may have parsed but not yet journaled before it stops reading. Default 4 MiB. */
  maxUnackedBytes?: number;
  /** How often a paused connection re-checks the journal's high-water mark. Default 100 ms. */
  recheckMs?: number;
  /** Idle connections are closed after this long. Default 10 minutes. */
  idleMs?: number;
}

/**
 * Syslog over TLS (RFC 5425) on 6514: client certificates checked against the
 * policy's syslog clients, frames parsed and normalized, appended to the
 * journal. Flow control is TCP's: a connection stops reading while its
 * unjournaled bytes exceed a window or the journal is full, so senders block
 * instead of events being dropped. A connection that cannot be framed is
 * closed (with an ingest_error event); the listener carries on.
 */
export function createSyslogServer(ctx: IngestContext, tls: ListenerTls, opts: SyslogOptions = {}): Server {
  const maxUnacked = opts.maxUnackedBytes ?? 4 * 1024 * 1024;
  const recheckMs = opts.recheckMs ?? 100;
  const server = createServer({ key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" });
  server.on("tlsClientError", () => ctx.metrics.connections.inc({ path: "syslog", outcome: "tls_error" }));
  server.on("secureConnection", (socket: TLSSocket) => {
    const peer = ctx.issuers.peer(socket);
    const cfg = ctx.config();
    const allowed = peer && (cfg.syslogClients.some((id) => identityMatches(peer, id)) || ctx.extraIdentities?.some((id) => identityMatches(peer, id)));
    const remote = { src_ip: socket.remoteAddress, src_port: socket.remotePort };
    if (!allowed) {
      ctx.metrics.connections.inc({ path: "syslog", outcome: "refused_identity" });
      reportIngestError(ctx, { ...remote, error_code: "syslog_client_refused", error_msg: `syslog client not allowed by policy: ${describePeer(peer)}` });
      socket.destroy();
      return;
    }
    ctx.metrics.connections.inc({ path: "syslog", outcome: "accepted" });
    socket.setTimeout(opts.idleMs ?? 600_000, () => socket.destroy());
    const framer = new SyslogFramer(cfg.limits.frame_bytes);
    let unacked = 0;
    let paused = false;
    let recheck: NodeJS.Timeout | undefined;
    let closed = false;

    const maybeResume = () => {
      if (!paused || closed) return;
      if (unacked <= maxUnacked && !ctx.journal.isFull()) {
        paused = false;
        socket.resume();
      } else if (!recheck) {
        recheck = setTimeout(() => {
          recheck = undefined;
          maybeResume();
        }, recheckMs);
      }
    };

    socket.on("data", (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = framer.push(chunk);
      } catch (err) {
        const e = err as FramingError;
        closed = true;
        ctx.metrics.rejected.inc({ path: "syslog", reason: e.code ?? "bad_frame" });
        ctx.metrics.connections.inc({ path: "syslog", outcome: "closed_error" });
        reportIngestError(ctx, { ...remote, error_code: e.code ?? "bad_frame", error_msg: `syslog connection closed: ${e.message}` });
        socket.destroy();
        return;
      }
      if (frames.length === 0) return;
      const receivedAt = new Date().toISOString();
      const normalizer = ctx.config().normalizer;
      const batch: JournalItem[] = [];
      let bytes = 0;
      for (const frame of frames) {
        bytes += frame.length;
        const reason = toEvent(frame, receivedAt, normalizer, batch);
        if (reason !== undefined) {
          ctx.metrics.rejected.inc({ path: "syslog", reason: reason.code });
          reportIngestError(ctx, { ...remote, error_code: reason.code, error_msg: reason.message, extra: { raw: frame.subarray(0, 512).toString("latin1") } });
        }
      }
      if (batch.length === 0) return;
      unacked += bytes;
      if (!paused && (unacked > maxUnacked || ctx.journal.isFull())) {
        paused = true;
        socket.pause();
        ctx.metrics.backpressure.inc({ path: "syslog" });
      }
      const count = batch.length;
      ctx.journal.append(batch).then(
        () => {
          unacked -= bytes;
          ctx.metrics.accepted.inc({ path: "syslog" }, count);
          maybeResume();
        },
        (err: unknown) => {
          // the journal cannot take writes: close so the sender keeps the events and retries
          ctx.log?.("syslog: journal append failed", err);
          closed = true;
          socket.destroy();
        },
      );
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      closed = true;
      if (recheck) clearTimeout(recheck);
    });
  });
  return server;
}

export function toEvent(
  frame: Buffer,
  receivedAt: string,
  normalizer: ReturnType<IngestContext["config"]>["normalizer"],
  out: JournalItem[],
): { code: string; message: string } | undefined {
  if (!isUtf8(frame)) return { code: "invalid_utf8", message: "syslog message is not valid UTF-8" };
  const msg = parseSyslog(frame.toString("utf8"));
  if (typeof msg === "string") return { code: "bad_syslog", message: msg };
  if (msg.msg.charCodeAt(0) === 0x7b /* { */) {
    // the common case, a flat JSON event: normalized from its text (the general path below gives the same result)
    const r = normalizer.parseFlat(msg.msg, 0, { receivedAt, timestamp: msg.timestamp });
    if (r !== undefined) {
      out.push(r);
      return undefined;
    }
  }
  const obj = messageObject(msg.msg);
  if (typeof obj === "string") return { code: "invalid_event", message: obj };
  // Structured MSGs carry the event itself: nothing from the header is added
  // but a missing timestamp, so the same event over the bulk path gets the
  // same event_id. Plain text keeps the header for context.
  const src: Record<string, unknown> = obj ?? {
    component: msg.app,
    severity: SEVERITIES[msg.severity],
    extra: { message: msg.msg.trim(), host: msg.hostname, facility: msg.facility, ...(msg.procid ? { procid: msg.procid } : {}) },
  };
  const r = normalizer.normalize(src, { receivedAt, timestamp: msg.timestamp });
  if (!r.ok) return { code: "invalid_event", message: r.errors.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message)).join("; ") };
  out.push(r);
  return undefined;
}

const SEVERITIES = ["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"];
