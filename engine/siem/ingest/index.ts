/**
 * Ingest listeners: syslog over TLS (RFC 5425) and signed bulk HTTPS
 * (DESIGN §4), both appending normalized events to the journal and
 * acknowledging only after the commit; their counters for /metrics.
 */
export { createSyslogServer } from "./syslog.js";
export type { SyslogOptions } from "./syslog.js";
export { createBulkServer, BULK_PATH } from "./bulk.js";
export type { BulkOptions } from "./bulk.js";
export { SyslogFramer, FramingError, parseSyslog, messageObject } from "./framing.js";
export type { SyslogMessage } from "./framing.js";
export { IssuerNames, identityMatches } from "./identity.js";
export type { ListenerTls, PeerIdentity } from "./identity.js";
export { IngestMetrics } from "./metrics.js";
export { buildIngestConfig, ed25519Key, reportIngestError } from "./runtime.js";
export type { IngestConfig, IngestContext, IngestJournal, ShipperKey } from "./runtime.js";
export { createSiemService } from "./service.js";
export type { SiemService, SiemServiceOptions, ListenOptions } from "./service.js";
