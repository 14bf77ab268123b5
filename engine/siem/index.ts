/**
 * The SIEM: ingest listeners (syslog/TLS, signed bulk HTTPS), normalization and
 * enrichment, the durable journal, and its consumers (embedded store,
 * Elasticsearch, detection, sealing).
 */
export * from "./journal/index.js";
