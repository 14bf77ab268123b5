/**
 * TLS session audit and the server-wide audit log (Dogtag PKI 10.4 format):
 * - `AuditLog` — DATA/audit/audit.log (append-only, rotated by size and day),
 *   ACCESS_SESSION_* lines plus certRequest / revocation / crlPublish /
 *   configRevision / keyStoreFailure, each also journaled as a normalized event;
 *   `writeSession` queues the TLS session records, formatted and written in one
 *   pass per batch (within `flushMs`, 100 ms); journal copies follow in one
 *   append per `journalBatchMs` (1 s).
 * - `auditTlsServer(server, {listener, audit, component, isRevoked?, idleTimeoutMs?})`
 *   — attaches to a node tls/https server (call before listen()).
 * - `clientTlsOptions()` — the VIW_TLS_* environment for `viw` commands' TLS clients.
 */
export { AuditLog, parseAuditLine, escapeAuditValue, formatAuditFields } from "./log.js";
export type { AuditLogOptions, AuditLogStats, AuditFields, AuditValue, ParsedAuditLine, EventDraft, TlsSessionInfo, TlsSessionRecord } from "./log.js";
export { auditTlsServer, PEEK_MS } from "./tls.js";
export type { TlsAudit, TlsAuditOptions } from "./tls.js";
export { readClientHello } from "./clienthello.js";
export type { ClientHello } from "./clienthello.js";
export { clientTlsOptions, ClientTlsEnvError } from "./client-tls.js";
export type { ClientTlsOptions } from "./client-tls.js";
