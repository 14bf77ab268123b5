import { Counter, Gauge, Registry } from "prom-client";

/**
 * Ingest counters for /metrics: every refusal is counted with its reason, so
 * a bad-input corpus shows up as numbers an operator can alert on.
 */
export class IngestMetrics {
  readonly registry: Registry;
  readonly accepted: Counter<"path">;
  readonly rejected: Counter<"path" | "reason">;
  readonly connections: Counter<"path" | "outcome">;
  readonly backpressure: Counter<"path">;
  readonly requests: Counter<"code">;
  readonly journalBacklog: Gauge;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    this.accepted = new Counter({ name: "viw_ingest_events_accepted_total", help: "Events made durable in the journal, by ingest path", labelNames: ["path"], registers: [registry] });
    this.rejected = new Counter({ name: "viw_ingest_rejected_total", help: "Events, frames or requests refused, by path and reason", labelNames: ["path", "reason"], registers: [registry] });
    this.connections = new Counter({ name: "viw_ingest_connections_total", help: "Ingest connections by path and outcome (accepted, refused_identity, closed_error)", labelNames: ["path", "outcome"], registers: [registry] });
    this.backpressure = new Counter({ name: "viw_ingest_backpressure_total", help: "Times ingest pushed back (syslog paused reading, bulk answered 429/503)", labelNames: ["path"], registers: [registry] });
    this.requests = new Counter({ name: "viw_ingest_bulk_requests_total", help: "Bulk ingest requests by status code", labelNames: ["code"], registers: [registry] });
    this.journalBacklog = new Gauge({ name: "viw_journal_backlog", help: "Records between the slowest journal consumer and the head", registers: [registry] });
  }
}
