import { randomBytes } from "node:crypto";
import type { Server as HttpsServer } from "node:https";
import type { Socket } from "node:net";
import { DEFAULT_MAX_VERSION, DEFAULT_MIN_VERSION, type Server as TlsServer, type TLSSocket } from "node:tls";
import type { X509Certificate } from "node:crypto";
import type { Journal } from "../siem/journal/index.js";
import { readClientHello, versionName, type ClientHello } from "./clienthello.js";
import { assertListenerName, type AuditLog, type TlsSessionInfo, type TlsSessionRecord } from "./log.js";

/**
 * TLS session audit for one listener (Dogtag PKI 10.4's ACCESS_SESSION_*
 * events, one log for the whole server): every connection ends up as exactly
 * one ESTABLISH_FAILURE, or one ESTABLISH_SUCCESS followed by one TERMINATED,
 * each also journaled as a normalized tls_session_establish /
 * tls_session_terminate event.
 *
 * How it hooks a node tls.Server / https.Server (what listener owners must know):
 * - 'connection': the server's own connection listeners (node's TLS wrapper)
 *   are re-dispatched after the first bytes are read, so the ClientHello can
 *   be fingerprinted (JA3) before TLS consumes it; the bytes are unshifted,
 *   node's TLSSocket replays them. A client that sends nothing is handed to
 *   TLS after PEEK_MS (at most a quarter more: one timer per listener sweeps
 *   the waiting peeks), so the owner's handshakeTimeout starts at most that late.
 * - client verification: with `requestCert: true, rejectUnauthorized: true`
 *   node destroys a socket whose certificate fails verification silently
 *   (before anyone can read the certificate), so the attempted DN would be
 *   lost. At attach, such a server is switched to `rejectUnauthorized = false`
 *   and this module enforces instead: `server.emit('secureConnection')` is
 *   wrapped so a socket that is not `authorized` (or whose certificate
 *   isRevoked) is destroyed and never reaches any secureConnection listener,
 *   the https request handler included. Owners keep their secure options
 *   (requestCert + rejectUnauthorized true, minVersion, ciphers,
 *   handshakeTimeout) and must attach before `listen()`; without the attach,
 *   node still enforces, so the server fails closed either way.
 * - 'tlsClientError': handshake failures (version, no certificate, cipher,
 *   timeout, reset) with node's/OpenSSL's codes mapped to reasons.
 */

/** How long the JA3 peek waits for a complete ClientHello before handing the socket to TLS anyway. */
export const PEEK_MS = 1000;

export interface TlsAuditOptions {
  /** The listener's name in the log (issuance, syslog, bulk...). */
  listener: string;
  audit: AuditLog;
  /** Where the normalized events go; default the audit log's journal. */
  journal?: Journal;
  component: "pki" | "siem";
  /** The engine's own revocation state (CRL/OCSP store); serial as lowercase hex without leading zero bytes, issuer as an RFC 4514 DN. */
  isRevoked?: (serialHex: string, issuerDn: string) => boolean;
  /** Close established sessions that move no byte for this long (close_notify, then destroy after a grace). */
  idleTimeoutMs?: number;
  /** Read the ClientHello for tls_ja3 (default true). */
  ja3?: boolean;
}

export interface TlsAudit {
  readonly listener: string;
  /** Sessions established and not yet terminated. */
  liveSessions(): number;
  /**
   * Server shutdown: every live session is closed with close_notify and
   * recorded as TERMINATED server_shutdown; resolves when all have closed
   * (destroyed after `graceMs`).
   */
  shutdown(graceMs?: number): Promise<void>;
  /** Removes every hook and restores the server's settings. */
  detach(): void;
}

export interface Reason {
  code: string;
  info: string;
}

interface Session {
  /** What its records share (no socket in it: a queued record must not keep the socket alive). */
  info: TlsSessionInfo;
  raw: Socket;
  sock?: TLSSocket;
  startedAt: number;
  establishedAt: number;
  hello?: ClientHello;
  /** The peek: bytes read so far. */
  peeked?: Buffer;
  done: boolean;
  established: boolean;
  sawEnd: boolean;
  sawFinish: boolean;
  sawTimeout: boolean;
  idle: boolean;
  shutdown: boolean;
  error?: NodeJS.ErrnoException;
  lastBytes: number;
  lastActive: number;
}

type AnyServer = TlsServer | HttpsServer;
const AUDITED = Symbol("viw.tlsAudit");
/** Session ids: a random per-process prefix and a counter (unique without a CSPRNG call per connection). */
const BOOT = randomBytes(8).toString("hex");
let sessionCounter = 0;
type Listener = (...args: unknown[]) => void;

export function auditTlsServer(server: AnyServer, opts: TlsAuditOptions): TlsAudit {
  assertListenerName(opts.listener);
  if (opts.idleTimeoutMs !== undefined && !(opts.idleTimeoutMs > 0)) {
    throw new Error(`listener ${opts.listener}: idleTimeoutMs must be a positive number of milliseconds, got ${opts.idleTimeoutMs}`);
  }
  const { audit, listener, component } = opts;
  const journal = opts.journal;
  const srv = server as TlsServer & { requestCert?: boolean; rejectUnauthorized?: boolean; minVersion?: string; maxVersion?: string; emit: (ev: string | symbol, ...a: unknown[]) => boolean };
  const sessions = new WeakMap<Socket, Session>();
  const live = new Set<Session>();
  let shuttingDown = false;

  const marked = srv as unknown as Record<symbol, boolean>;
  if (marked[AUDITED]) throw new Error(`listener ${listener}: this server already has a TLS session audit attached`);
  marked[AUDITED] = true;

  const enforce = srv.requestCert === true && srv.rejectUnauthorized !== false;
  if (enforce) srv.rejectUnauthorized = false;

  const sessionOf = (raw: Socket): Session => {
    let s = sessions.get(raw);
    if (!s) {
      const now = Date.now();
      s = {
        info: {
          listener,
          component,
          id: `${BOOT}${(++sessionCounter).toString(16).padStart(8, "0")}`,
          srcIp: plainIp(raw.remoteAddress),
          srcPort: raw.remotePort,
          dstIp: plainIp(raw.localAddress),
          dstPort: raw.localPort,
          subjectDn: "",
          serial: undefined,
          ja3: undefined,
          offered: undefined,
          sni: undefined,
        },
        raw,
        startedAt: now,
        establishedAt: 0,
        done: false,
        established: false,
        sawEnd: false,
        sawFinish: false,
        sawTimeout: false,
        idle: false,
        shutdown: false,
        lastBytes: 0,
        lastActive: now,
      };
      sessions.set(raw, s);
    }
    return s;
  };
  const sessionOfTls = (sock: TLSSocket): Session => sessionOf(((sock as unknown as { _parent?: Socket })._parent ?? sock) as Socket);

  // A session's two records share its info; each record is a small object the audit log formats in its batch.
  const recordFailure = (s: Session, r: Reason): void => {
    if (s.done) return;
    s.done = true;
    write({
      session: s.info,
      event: "ACCESS_SESSION_ESTABLISH_FAILURE",
      outcome: "Failure",
      result: "failure",
      severity: r.code === "protocol_version" || r.code === "certificate_revoked" ? "high" : "warning",
      info: r.info,
      errorCode: r.code,
      durationMs: Date.now() - s.startedAt,
      journal,
    });
  };

  const recordSuccess = (s: Session, sock: TLSSocket): void => {
    write({
      session: s.info,
      event: "ACCESS_SESSION_ESTABLISH_SUCCESS",
      outcome: "Success",
      result: "success",
      severity: "info",
      // Only when the owner chose rejectUnauthorized: false: the session is up, but say the certificate was not verified.
      info: srv.requestCert && !sock.authorized && s.info.subjectDn ? `client certificate not verified (${String(sock.authorizationError)})` : "",
      errorCode: undefined,
      durationMs: Date.now() - s.startedAt,
      tlsVersion: sock.getProtocol(),
      cipher: sock.getCipher()?.name,
      journal,
    });
  };

  const recordTermination = (s: Session): void => {
    if (s.done) return;
    s.done = true;
    live.delete(s);
    const r = terminationReason(s, shuttingDown || !srv.listening);
    const ok = r.code !== "reset";
    const sock = s.sock;
    write({
      session: s.info,
      event: "ACCESS_SESSION_TERMINATED",
      outcome: ok ? "Success" : "Failure",
      result: ok ? "success" : "failure",
      severity: ok ? "info" : "warning",
      info: r.info,
      errorCode: r.code,
      durationMs: Date.now() - s.establishedAt,
      bytesIn: sock?.bytesRead,
      bytesOut: sock?.bytesWritten,
      journal,
    });
  };

  function write(record: TlsSessionRecord): void {
    try {
      audit.writeTlsSession(record);
    } catch (err) {
      // The audit must never take a listener down; a closed or unwritable log is reported, not thrown.
      process.emitWarning(`TLS audit (${listener}) could not write: ${(err as Error).message}`);
    }
  }

  // --- 'connection': JA3 peek, then node's own TLS wrapping ---
  const originals = srv.listeners("connection") as Listener[];
  const handOver = (raw: Socket): void => {
    for (const l of originals) l.call(srv, raw);
  };
  // The peek's handlers are shared by every connection (the session is looked up from the socket): no closures per connection.
  const endPeek = (s: Session): void => {
    const raw = s.raw;
    peeking.delete(s);
    raw.removeListener("data", onPeekData);
    raw.removeListener("close", onPeekClose);
    raw.removeListener("error", onPeekError);
  };
  const finishPeek = (s: Session): void => {
    const raw = s.raw;
    const buf = s.peeked;
    s.peeked = undefined;
    endPeek(s);
    if (raw.destroyed) return;
    raw.pause();
    if (buf) raw.unshift(buf);
    handOver(raw);
  };
  function onPeekData(this: Socket, chunk: Buffer): void {
    const s = sessions.get(this)!;
    const buf = (s.peeked = s.peeked ? Buffer.concat([s.peeked, chunk]) : chunk);
    const r = readClientHello(buf);
    if (r.state === "more") return;
    if (r.state === "ok") {
      const hello = (s.hello = r.hello);
      const info = s.info;
      info.ja3 = hello.ja3;
      info.offered = hello.offered.map(versionName);
      info.sni = hello.serverName;
    }
    finishPeek(s);
  }
  function onPeekError(this: Socket, err: NodeJS.ErrnoException): void {
    sessions.get(this)!.error = err;
  }
  function onPeekClose(this: Socket): void {
    const s = sessions.get(this)!;
    endPeek(s);
    recordFailure(s, shuttingDown
      ? { code: "server_shutdown", info: "server shut down before the handshake" }
      : { code: "reset", info: s.error ? `connection reset before the ClientHello (${s.error.code ?? s.error.message})` : "connection closed before the ClientHello" });
  }
  // Peeks that wait too long are handed over by one timer per listener, armed while any peek is
  // pending, rather than one timer per connection (within PEEK_MS to 1.25 x PEEK_MS).
  const peeking = new Set<Session>();
  let peekSweep: NodeJS.Timeout | undefined;
  const sweepPeeks = (): void => {
    peekSweep = undefined;
    const now = Date.now();
    for (const s of peeking) if (now - s.startedAt >= PEEK_MS) finishPeek(s);
    if (peeking.size > 0) peekSweep = setTimeout(sweepPeeks, PEEK_MS / 4).unref();
  };
  const onConnection = (raw: Socket): void => {
    const s = sessionOf(raw);
    // Without the peek, node's own listener runs right after this one (prepended).
    if (opts.ja3 === false) return;
    peeking.add(s);
    peekSweep ??= setTimeout(sweepPeeks, PEEK_MS / 4).unref();
    raw.on("data", onPeekData);
    raw.on("error", onPeekError);
    raw.on("close", onPeekClose);
  };
  if (opts.ja3 !== false) {
    srv.removeAllListeners("connection");
    srv.on("connection", onConnection);
  } else srv.prependListener("connection", onConnection as Listener);

  // --- handshake failures node reports ---
  const onTlsClientError = (err: NodeJS.ErrnoException, sock: TLSSocket): void => {
    const s = sessionOfTls(sock);
    s.sock ??= sock;
    if (s.done) return;
    if (shuttingDown) return recordFailure(s, { code: "server_shutdown", info: "server shut down during the handshake" });
    recordFailure(s, handshakeFailure(err, sock, s.hello, acceptedVersions(srv)));
  };
  srv.on("tlsClientError", onTlsClientError as Listener);

  // --- the gate: verification, revocation, then SUCCESS ---
  const admit = (sock: TLSSocket): boolean => {
    const s = sessionOfTls(sock);
    s.sock = sock;
    let cert: X509Certificate | undefined;
    try {
      cert = sock.getPeerX509Certificate();
    } catch {
      cert = undefined;
    }
    const info = s.info;
    if (cert) {
      // The owner reads the same certificate right after (the issuance API's client identity): node builds a
      // new X509Certificate per call and re-derives subject, serial and names natively, so hand it this one
      // (immutable, with those already read) instead of parsing twice per handshake.
      const peer = cert;
      sock.getPeerX509Certificate = () => peer;
      info.subjectDn = dnOf(cert.subject);
      info.serial = serialHex(cert.serialNumber);
    }
    const refuse = (r: Reason): boolean => {
      recordFailure(s, r);
      sock.destroy();
      return false;
    };
    if (enforce && !sock.authorized) return refuse(verifyFailure(String(sock.authorizationError ?? ""), !!cert));
    if (cert && sock.authorized && opts.isRevoked) {
      let revoked: boolean;
      try {
        revoked = opts.isRevoked(info.serial!, dnOf(cert.issuer));
      } catch (err) {
        // Fail closed: a certificate whose status cannot be read is not admitted.
        return refuse({ code: "revocation_unknown", info: `revocation status unavailable: ${(err as Error).message}` });
      }
      if (revoked) return refuse({ code: "certificate_revoked", info: `client certificate revoked (serial ${info.serial})` });
    }
    s.established = true;
    s.establishedAt = Date.now();
    s.lastActive = s.establishedAt;
    recordSuccess(s, sock);
    live.add(s);
    // Shared handlers (the session is looked up from the socket): no closures per connection.
    sock.on("end", onEnd);
    sock.on("finish", onFinish);
    sock.on("timeout", onTimeout);
    sock.on("error", onError);
    sock.on("close", onClose);
    return true;
  };
  function onEnd(this: TLSSocket): void {
    const s = sessionOfTls(this);
    s.sawEnd = !s.sawFinish || s.sawEnd;
  }
  function onFinish(this: TLSSocket): void {
    sessionOfTls(this).sawFinish = true;
  }
  function onTimeout(this: TLSSocket): void {
    sessionOfTls(this).sawTimeout = true;
  }
  function onError(this: TLSSocket, err: NodeJS.ErrnoException): void {
    sessionOfTls(this).error ??= err;
  }
  function onClose(this: TLSSocket): void {
    recordTermination(sessionOfTls(this));
  }
  const emit = srv.emit;
  // Every event the server emits passes here, so the common case is one comparison and no argument copies.
  srv.emit = function (this: AnyServer, ev: string | symbol, sock?: unknown): boolean {
    if (ev === "secureConnection" && !admit(sock as TLSSocket)) return false;
    // eslint-disable-next-line prefer-rest-params
    return Reflect.apply(emit, this, arguments) as boolean;
  } as typeof srv.emit;

  // --- idle sweeper: one timer per listener, not one per socket ---
  let sweeper: NodeJS.Timeout | undefined;
  const idleMs = opts.idleTimeoutMs;
  if (idleMs !== undefined) {
    sweeper = setInterval(() => {
      const now = Date.now();
      for (const s of live) {
        const sock = s.sock;
        if (!sock || s.idle) continue;
        const bytes = sock.bytesRead + sock.bytesWritten;
        if (bytes !== s.lastBytes) {
          s.lastBytes = bytes;
          s.lastActive = now;
        } else if (now - s.lastActive >= idleMs) {
          s.idle = true;
          sock.end();
          setTimeout(() => sock.destroy(), 2000).unref();
        }
      }
    }, Math.max(20, Math.min(1000, Math.floor(idleMs / 4))));
    sweeper.unref();
  }

  return {
    listener,
    liveSessions: () => live.size,
    async shutdown(graceMs = 2000): Promise<void> {
      shuttingDown = true;
      const closing = [...live].map(
        (s) =>
          new Promise<void>((resolve) => {
            const sock = s.sock!;
            s.shutdown = true;
            if (sock.destroyed) return resolve();
            sock.once("close", () => resolve());
            sock.end();
            setTimeout(() => sock.destroy(), graceMs).unref();
          }),
      );
      await Promise.all(closing);
    },
    detach(): void {
      if (sweeper) clearInterval(sweeper);
      if (peekSweep) clearTimeout(peekSweep);
      srv.emit = emit;
      srv.removeListener("tlsClientError", onTlsClientError as Listener);
      srv.removeListener("connection", onConnection as Listener);
      if (opts.ja3 !== false) for (const l of originals) srv.on("connection", l);
      if (enforce) srv.rejectUnauthorized = true;
      delete marked[AUDITED];
    },
  };
}

/** "TLSv1.3 only" or "TLSv1.2 to TLSv1.3", from the server's own settings (tls.Server keeps them as properties). */
function acceptedVersions(srv: { minVersion?: string; maxVersion?: string }): string {
  const min = srv.minVersion ?? DEFAULT_MIN_VERSION;
  const max = srv.maxVersion ?? DEFAULT_MAX_VERSION;
  return min === max || (min === "TLSv1.3" && max === DEFAULT_MAX_VERSION) ? `${min} only` : `${min} to ${max}`;
}

/** Why an established session ended (checked in this order). */
function terminationReason(s: Session, serverDown: boolean): Reason {
  const code = s.error?.code;
  if (s.shutdown || (serverDown && !s.sawEnd)) return { code: "server_shutdown", info: "server shutdown" };
  if (s.idle) return { code: "idle_timeout", info: "idle timeout" };
  if (code === "ECONNRESET" || code === "EPIPE" || code === "ECONNABORTED" || code === "ETIMEDOUT")
    return { code: "reset", info: `connection reset (${code})` };
  if (s.error) return { code: "reset", info: `connection failed: ${s.error.message.trim()}` };
  if (s.sawTimeout && !s.sawEnd) return { code: "idle_timeout", info: "idle timeout" };
  if (s.sawEnd) return { code: "close_notify_client", info: "close_notify from client" };
  if (s.sawFinish) return { code: "close_notify_server", info: "close_notify from server" };
  return { code: "reset", info: "closed by the server without close_notify" };
}

/** A failed handshake, from node's error (OpenSSL reason codes found by running openssl s_client against node). */
export function handshakeFailure(err: NodeJS.ErrnoException, sock: TLSSocket | undefined, hello?: ClientHello, accepted?: string): Reason {
  const code = err.code ?? "";
  const msg = (err as { reason?: string }).reason ?? err.message;
  const authErr = sock?.authorizationError ? String(sock.authorizationError) : "";
  if (authErr) return verifyFailure(authErr, true);
  switch (code) {
    case "ERR_SSL_UNSUPPORTED_PROTOCOL":
    case "ERR_SSL_WRONG_VERSION_NUMBER":
    case "ERR_SSL_UNSUPPORTED_SSL_VERSION":
    case "ERR_SSL_VERSION_TOO_LOW":
    case "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION": {
      const offered = hello?.offered.map(versionName) ?? (sock?.getProtocol() ? [sock.getProtocol()!] : []);
      const why = [offered.length ? `client offered ${offered.join(", ")}` : "", accepted ? `listener accepts ${accepted}` : ""].filter(Boolean).join("; ");
      return { code: "protocol_version", info: `protocol version not allowed${why ? `: ${why}` : ""}` };
    }
    case "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE":
    case "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED":
      return { code: "no_client_certificate", info: "no client certificate" };
    case "ERR_SSL_NO_SHARED_CIPHER":
      return { code: "no_shared_cipher", info: "no shared cipher" };
    case "ERR_SSL_NO_SUITABLE_KEY_SHARE":
    case "ERR_SSL_NO_SHARED_GROUPS":
      return { code: "no_shared_group", info: "no shared key exchange group" };
    case "ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM":
      return { code: "no_shared_signature_algorithm", info: "no shared signature algorithm" };
    case "ERR_TLS_HANDSHAKE_TIMEOUT":
      return { code: "handshake_timeout", info: "handshake timeout" };
    case "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA":
    case "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE":
    case "ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN":
    case "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED":
    case "ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR":
      return { code: "server_certificate_rejected", info: `client rejected the server certificate (${msg})` };
    case "ERR_SSL_HTTP_REQUEST":
      return { code: "not_tls", info: "plain HTTP sent to a TLS port" };
    case "ECONNRESET":
    case "EPIPE":
      return { code: "reset", info: `connection reset during the handshake (${msg})` };
  }
  if (hello === undefined && /wrong version number|unexpected message|record layer failure/.test(msg))
    return { code: "not_tls", info: `not a TLS ClientHello (${msg})` };
  return { code: "handshake_error", info: `handshake failed: ${code ? code + ": " : ""}${msg}`.trim() };
}

/** Node's verifyError codes (X509_V_ERR_* names) for a client certificate. */
export function verifyFailure(authErr: string, hadCert: boolean): Reason {
  if (!hadCert) return { code: "no_client_certificate", info: "no client certificate" };
  switch (authErr) {
    case "CERT_HAS_EXPIRED":
      return { code: "certificate_expired", info: "client certificate expired" };
    case "CERT_NOT_YET_VALID":
      return { code: "certificate_not_yet_valid", info: "client certificate not yet valid" };
    case "CERT_REVOKED":
      return { code: "certificate_revoked", info: "client certificate revoked" };
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
      return { code: "unknown_ca", info: `client certificate from an unknown CA (${authErr})` };
  }
  return { code: "certificate_invalid", info: `client certificate rejected (${authErr || "unverified"})` };
}

/**
 * Node prints names one RDN per line, most significant first, values escaped
 * per RFC 2253 (and control characters as \XX); RFC 4514 writes them in
 * reverse, comma-separated.
 */
export function rfc4514(multiline: string): string {
  return multiline.split("\n").filter(Boolean).reverse().join(",");
}

/**
 * Issuer and client names repeat (a handful of CAs, the same clients
 * reconnecting): converted once each, the cache bounded against a flood of
 * distinct ones.
 */
const dns = new Map<string, string>();
function dnOf(multiline: string): string {
  let dn = dns.get(multiline);
  if (dn === undefined) {
    if (dns.size >= 1024) dns.clear();
    dns.set(multiline, (dn = rfc4514(multiline)));
  }
  return dn;
}

function serialHex(s: string): string {
  let hex = s.toLowerCase();
  if (hex.length % 2) hex = "0" + hex;
  while (hex.length > 2 && hex.startsWith("00")) hex = hex.slice(2);
  return hex;
}

function plainIp(ip: string | undefined): string {
  if (!ip) return "";
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
}
