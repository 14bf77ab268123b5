/**
 * The SIEM: ingest listeners (syslog/TLS, signed bulk HTTPS), normalization and
 * enrichment, the durable journal, and its consumers (embedded store,
 * Elasticsearch, detection, sealing). `createSiemService` is what the daemon hosts.
 */
export * from "./journal/index.js";
export * from "./normalize/index.js";
export * from "./ingest/index.js";
export * from "./store/index.js";
export * from "./elastic/index.js";
