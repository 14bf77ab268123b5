import { Client, type ClientOptions } from "@elastic/elasticsearch";
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { EVENT_FIELDS } from "../../config/index.js";
import type { JournalRecord, NormalizedEvent } from "../journal/index.js";

/**
 * Spec §8.3: the Elasticsearch (ECS) field of each normalized field. The
 * engine's own fields follow ECS too: event_id → event.id, received_at →
 * event.ingested; shipper extras and alert details live under viworks.*.
 */
export const ECS_FIELDS: Readonly<Record<string, string>> = Object.freeze({
  timestamp: "@timestamp",
  env: "labels.env",
  site: "labels.site",
  tenant_id: "labels.tenant",
  user_id: "subject.user_id",
  device_id: "subject.device_id",
  session_id: "subject.session_id",
  src_ip: "network.client.ip",
  src_port: "network.client.port",
  dst_ip: "network.destination.ip",
  dst_port: "network.destination.port",
  proto: "network.transport",
  asn: "network.client.asn",
  country: "geo.country_iso",
  component: "app.component",
  action: "event.action",
  result: "event.outcome",
  severity: "event.severity",
  fwknop_id: "network.fwknop_id",
  tls_ja3: "tls.client.ja3",
  ovpn_virtual_ip: "viworks.ovpn.ip",
  policy_id: "viworks.policy.id",
  trace_id: "trace.id",
  cmd: "viworks.cmd",
  rc: "viworks.rc",
  bytes_in: "network.bytes_in",
  bytes_out: "network.bytes_out",
  duration_ms: "event.duration_ms",
  error_code: "error.code",
  error_msg: "error.message",
  event_id: "event.id",
  received_at: "event.ingested",
  extra: "viworks.extra",
  alert: "viworks.alert",
});

const ES_TYPES: Record<string, Record<string, unknown>> = {
  string: { type: "keyword", ignore_above: 1024 },
  integer: { type: "long" },
  number: { type: "double" },
  ip: { type: "ip" },
  time: { type: "date" },
  // shipper extras vary per shipper: one flattened field, no mapping explosion
  object: { type: "flattened" },
};

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path === "@timestamp" ? [path] : path.split(".");
  let o = target;
  for (let i = 0; i < parts.length - 1; i++) {
    const k = parts[i]!;
    o = (o[k] ??= {}) as Record<string, unknown>;
  }
  o[parts[parts.length - 1]!] = value;
}

/** The ECS document of an event. */
export function toEcs(event: NormalizedEvent): Record<string, unknown> {
  const doc: Record<string, unknown> = {};
  let extra: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(event)) {
    if (v === undefined) continue;
    const path = ECS_FIELDS[k];
    if (k === "extra" || path === undefined) {
      extra ??= {};
      if (k === "extra" && v !== null && typeof v === "object") Object.assign(extra, v);
      else extra[k] = v;
    } else setPath(doc, path, v);
  }
  if (extra) setPath(doc, "viworks.extra", extra);
  return doc;
}

/** The index template for viw-* (spec §8.3 mapping, ECS types from EVENT_FIELDS). */
export function indexTemplate(): { name: string; index_patterns: string[]; priority: number; template: Record<string, unknown> } {
  const properties: Record<string, unknown> = {};
  for (const [field, type] of Object.entries(EVENT_FIELDS)) {
    const path = ECS_FIELDS[field];
    if (!path) continue;
    const parts = path === "@timestamp" ? [path] : path.split(".");
    let o = properties;
    for (let i = 0; i < parts.length - 1; i++) {
      const node = (o[parts[i]!] ??= { properties: {} }) as { properties: Record<string, unknown> };
      o = node.properties;
    }
    const t = { ...ES_TYPES[type]! };
    if (field === "error_msg" || field === "cmd") Object.assign(t, { fields: { text: { type: "text" } } });
    o[parts[parts.length - 1]!] = t;
  }
  return {
    name: "viw",
    index_patterns: ["viw-*"],
    priority: 200,
    template: {
      settings: { number_of_shards: 1, "index.mapping.total_fields.limit": 2000 },
      // dynamic false: a field outside the template stays in _source without growing the mapping
      mappings: { dynamic: false, properties },
    },
  };
}

/** Daily index of an event: `viw-auth-2026.11.22` (UTC day of its timestamp). */
export function dailyIndex(index: string, event: NormalizedEvent): string {
  const t = Date.parse(event.timestamp);
  const d = new Date(Number.isFinite(t) ? t : Date.parse(event.received_at));
  const day = `${d.getUTCFullYear()}.${String(d.getUTCMonth() + 1).padStart(2, "0")}.${String(d.getUTCDate()).padStart(2, "0")}`;
  return `${index}-${day}`;
}

export interface ElasticSinkOptions {
  /** A ready client (tests pass one built on @elastic/elasticsearch-mock), or options to build one. */
  client?: Client;
  clientOptions?: ClientOptions;
  /** Where documents Elasticsearch refused for their content go (NDJSON), e.g. DATA/elastic/dead-letter.ndjson. */
  deadLetterFile: string;
  /** Retries of a document answered 429 by the bulk helper. Default 5. */
  retries?: number;
  log?: (msg: string, err?: unknown) => void;
}

/**
 * The Elasticsearch sink, a journal consumer: the client's bulk helper with
 * `create` operations and `_id` = event_id (a replay or the second shipping
 * path answers 409, which counts as stored), retries of 429s, and
 * dead-lettering of documents refused for their content (mapping errors) so
 * one bad event cannot stall the journal. Any other failure fails the batch,
 * which the consumer loop retries from its cursor.
 */
export class ElasticSink {
  readonly client: Client;
  private templateReady = false;
  private readonly opts: ElasticSinkOptions;
  stored = 0;
  duplicates = 0;
  deadLettered = 0;

  constructor(opts: ElasticSinkOptions) {
    this.opts = opts;
    if (opts.client) this.client = opts.client;
    else if (opts.clientOptions) this.client = new Client(opts.clientOptions);
    else throw new Error("ElasticSink needs a client or clientOptions");
  }

  async ensureTemplate(): Promise<void> {
    if (this.templateReady) return;
    const t = indexTemplate();
    await this.client.indices.putIndexTemplate({ name: t.name, index_patterns: t.index_patterns, priority: t.priority, template: t.template as never });
    this.templateReady = true;
  }

  handle = async (records: JournalRecord[]): Promise<void> => {
    await this.ensureTemplate();
    const failures: { status: number; error: unknown; record: JournalRecord | undefined }[] = [];
    // onDrop hands back the ECS document; the journal record is found by _id
    const byId = new Map(records.map((r) => [r.event.event_id, r]));
    const result = await this.client.helpers.bulk<JournalRecord>({
      datasource: records,
      onDocument: (r) => [{ create: { _index: dailyIndex(r.index, r.event), _id: r.event.event_id } }, toEcs(r.event)],
      onDrop: (d) => {
        const op = d.operation as { create?: { _id?: string } };
        failures.push({ status: d.status, error: d.error, record: byId.get(op.create?._id ?? "") });
      },
      retries: this.opts.retries ?? 5,
      wait: 500,
      flushBytes: 5_000_000,
      concurrency: 2,
    });
    let dups = 0;
    const dead: typeof failures = [];
    const retry: typeof failures = [];
    for (const f of failures) {
      if (f.status === 409) dups++;
      else if (f.status === 400) dead.push(f);
      else retry.push(f);
    }
    if (dead.length > 0) {
      mkdirSync(dirname(this.opts.deadLetterFile), { recursive: true });
      appendFileSync(
        this.opts.deadLetterFile,
        dead.map((f) => JSON.stringify({ at: new Date().toISOString(), seq: f.record?.seq, index: f.record?.index, status: f.status, error: f.error, event: f.record?.event }) + "\n").join(""),
      );
      this.deadLettered += dead.length;
      this.opts.log?.(`elasticsearch refused ${dead.length} documents; dead-lettered to ${this.opts.deadLetterFile}`);
    }
    this.duplicates += dups;
    this.stored += result.successful;
    if (retry.length > 0) throw new Error(`elasticsearch did not store ${retry.length} documents (status ${retry[0]!.status}); the batch will be retried`);
  };

  async close(): Promise<void> {
    if (!this.opts.client) await this.client.close();
  }
}
