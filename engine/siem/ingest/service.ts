import type { Server as HttpsServer } from "node:https";
import type { Server as TlsServer } from "node:tls";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import type { Registry } from "prom-client";
import type { DesiredState, Identity } from "../../config/index.js";
import { ServiceError, type Prepared, type Service } from "../../gitops/service.js";
import { consume, openJournal, type Consumer, type LocalJournal, type TextChunk } from "../journal/index.js";
import { createEnricher, Normalizer, noEnrichment, type Enricher, type EnrichOptions } from "../normalize/index.js";
import { openStore, queryPlugin, type EventStore } from "../store/index.js";
import { ElasticSink, type ElasticSinkOptions } from "../elastic/index.js";
import { createBulkServer, type BulkOptions } from "./bulk.js";
import { IssuerNames, type ListenerTls } from "./identity.js";
import { IngestMetrics } from "./metrics.js";
import { buildIngestConfig, reportIngestError, type IngestConfig } from "./runtime.js";
import { createSyslogServer, type SyslogOptions } from "./syslog.js";

export interface SiemServiceOptions {
  /** DATA: the journal is DATA/journal/journal.db, the store DATA/store/events.db. */
  dataDir: string;
  /** A journal opened by the daemon (shared with detector and sealer); else opened here. */
  journal?: LocalJournal;
  /** Other journal consumers (detector, sealer): registered so compaction keeps what they have not read. */
  consumers?: readonly string[];
  /** Which sinks to run; default the embedded store. */
  sink?: "sqlite" | "elasticsearch" | "both";
  elasticsearch?: Omit<ElasticSinkOptions, "deadLetterFile" | "log"> & { deadLetterFile?: string };
  /** Shippers accepted besides policies/ (dev: `{id: "dev", public_key}`). */
  extraShippers?: readonly { id: string; public_key: string; identity?: Identity }[];
  /** Client identities accepted on both ports besides the policy's (dev: the backend client certificate). */
  extraIdentities?: readonly Identity[];
  /** Enrichment databases; `false` disables enrichment. */
  enrich?: EnrichOptions | false;
  /** Shares the daemon's registry for /metrics. */
  registry?: Registry;
  syslog?: SyslogOptions;
  bulk?: BulkOptions;
  log?: (msg: string, err?: unknown) => void;
}

export interface ListenOptions {
  syslog?: { host?: string; port: number; tls: ListenerTls };
  bulk?: { host?: string; port: number; tls: ListenerTls };
  /** Called with each TLS server before it listens (the daemon attaches the TLS session audit). */
  beforeListen?: (name: "syslog" | "bulk", server: TlsServer | HttpsServer) => void;
}

export interface SiemService extends Service {
  readonly journal: LocalJournal;
  /** The embedded store, when it is a sink (for /v1/query). */
  readonly store: EventStore | undefined;
  readonly elastic: ElasticSink | undefined;
  readonly metrics: IngestMetrics;
  /** GET /v1/query for the admin port (fastify plugin). */
  readonly queryPlugin: ReturnType<typeof queryPlugin>;
  /** Binds the listeners; resolves to their addresses for DATA/run/endpoints.json. */
  listen(opts: ListenOptions): Promise<{ syslog?: string; bulk?: string }>;
  /** Swaps the syslog and bulk listeners' certificate (renewal): new handshakes get it, open connections keep theirs. */
  setTls(tls: Pick<ListenerTls, "cert" | "key" | "ca">): void;
  /** Resolves once every sink has consumed everything appended so far. */
  idle(): Promise<void>;
  /** Stops listening, lets in-flight appends commit, stops the sinks after their batch, closes what it opened. */
  close(): Promise<void>;
}

/**
 * The SIEM ingest service the daemon hosts: listeners → normalize → journal →
 * sinks (embedded store and/or Elasticsearch), with revisions applied by
 * prepare/commit (shippers, syslog clients, routing, limits, retention).
 */
export async function createSiemService(opts: SiemServiceOptions): Promise<SiemService> {
  const log = opts.log ?? (() => {});
  const ownJournal = !opts.journal;
  const sinkNames = opts.sink === "elasticsearch" ? ["elasticsearch"] : opts.sink === "both" ? ["store", "elasticsearch"] : ["store"];
  const journal = opts.journal ?? openJournal(join(opts.dataDir, "journal", "journal.db"), { consumers: [...sinkNames, ...(opts.consumers ?? [])] });
  for (const c of sinkNames) journal.register(c);
  const metrics = new IngestMetrics(opts.registry);
  const enricher: Enricher = opts.enrich === false ? noEnrichment : await createEnricher(opts.enrich ?? {});
  let current: { config: IngestConfig; retention: DesiredState["retention"] } | undefined;
  let issuers = new IssuerNames();

  const store = sinkNames.includes("store") ? openStore(join(opts.dataDir, "store", "events.db")) : undefined;
  const elastic = sinkNames.includes("elasticsearch")
    ? new ElasticSink({ ...opts.elasticsearch, deadLetterFile: opts.elasticsearch?.deadLetterFile ?? join(opts.dataDir, "elastic", "dead-letter.ndjson"), log })
    : undefined;
  const consumers: Consumer[] = [];
  // the store takes the journal's text as it is: no string or object per record on this thread
  if (store) consumers.push(consume<TextChunk>(journal, "store", (chunks) => store.writeText(chunks.length === 1 ? chunks[0]!.text : chunks.map((c) => c.text).join("")), { read: (after, limit) => journal.readText(after, limit), batch: 5000, onError: (e) => log("store sink failed; retrying", e) }));
  if (elastic) consumers.push(consume(journal, "elasticsearch", elastic.handle, { batch: 5000, onError: (e) => log("elasticsearch sink failed; retrying", e) }));

  const ctx = {
    config: () => {
      if (!current) throw new Error("no revision applied yet");
      return current.config;
    },
    journal,
    metrics,
    get issuers() {
      return issuers;
    },
    extraIdentities: opts.extraIdentities,
    log,
  };

  let ticks = 0;
  let wasFull = false;
  const housekeeping = setInterval(() => {
    try {
      const full = journal.isFull();
      if (full !== wasFull && current) {
        wasFull = full;
        // the back-pressure transition is itself an event (spec §4.4 "back-pressure alerts")
        reportIngestError(ctx, {
          error_code: full ? "backpressure_on" : "backpressure_off",
          error_msg: full ? "ingest is pushing back: the journal is at its high-water mark or the disk is full" : "ingest back-pressure cleared",
        });
      }
      if (++ticks % 5 === 0) {
        journal.compact();
        metrics.journalBacklog.set(journal.stats().backlog);
      }
    } catch (err) {
      log("journal housekeeping failed", err);
    }
  }, 1_000);
  housekeeping.unref();
  const retentionTimer = setInterval(() => {
    if (store && current) {
      try {
        store.enforceRetention(current.retention);
      } catch (err) {
        log("store retention failed", err);
      }
    }
  }, 3_600_000);
  retentionTimer.unref();

  const servers: (TlsServer | HttpsServer)[] = [];
  // setSecureContext replaces every option of the context, so each listener's own floor goes with it.
  const listeners: { server: TlsServer | HttpsServer; minVersion: "TLSv1.2" | "TLSv1.3" }[] = [];
  const sockets = new Set<Socket>();

  const service: SiemService = {
    name: "ingest",
    journal,
    store,
    elastic,
    metrics,
    queryPlugin: queryPlugin(() => store),

    async prepare(next: DesiredState): Promise<Prepared> {
      let config: IngestConfig;
      try {
        config = buildIngestConfig(next, new Normalizer(next.routing, enricher), opts.extraShippers);
      } catch (err) {
        throw new ServiceError("ingest", `cannot load the shippers' keys: ${(err as Error).message}`);
      }
      return {
        commit: () => {
          const first = current === undefined;
          current = { config, retention: next.retention };
          if (first && store) {
            try {
              store.enforceRetention(next.retention);
            } catch (err) {
              log("store retention failed", err);
            }
          }
        },
      };
    },

    status() {
      const s = journal.stats();
      return {
        journal: { last_seq: s.lastSeq, backlog: s.backlog, cursors: s.cursors, full: s.full },
        sinks: sinkNames,
        shippers: current ? [...current.config.shippers.keys()] : [],
        store_events: store?.count(),
        elastic: elastic ? { stored: elastic.stored, duplicates: elastic.duplicates, dead_lettered: elastic.deadLettered } : undefined,
      };
    },

    async listen(l: ListenOptions) {
      const out: { syslog?: string; bulk?: string } = {};
      const names: Record<string, string | Buffer> = {};
      for (const t of [l.syslog?.tls, l.bulk?.tls]) Object.assign(names, t?.issuers ?? {});
      issuers = new IssuerNames(names);
      const bind = (server: TlsServer | HttpsServer, host: string, port: number) =>
        new Promise<AddressInfo>((resolve, reject) => {
          server.once("error", reject);
          server.listen(port, host, () => {
            server.off("error", reject);
            resolve(server.address() as AddressInfo);
          });
          server.on("connection", (s: Socket) => {
            sockets.add(s);
            s.on("close", () => sockets.delete(s));
          });
        });
      const hostPort = (a: AddressInfo) => (a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
      if (l.syslog) {
        const server = createSyslogServer(ctx, l.syslog.tls, opts.syslog);
        servers.push(server);
        listeners.push({ server, minVersion: "TLSv1.2" });
        l.beforeListen?.("syslog", server);
        out.syslog = hostPort(await bind(server, l.syslog.host ?? "127.0.0.1", l.syslog.port));
      }
      if (l.bulk) {
        const server = createBulkServer(ctx, l.bulk.tls, opts.bulk);
        servers.push(server);
        listeners.push({ server, minVersion: "TLSv1.2" });
        l.beforeListen?.("bulk", server);
        out.bulk = `https://${hostPort(await bind(server, l.bulk.host ?? "127.0.0.1", l.bulk.port))}`;
      }
      return out;
    },

    setTls(tls) {
      for (const { server, minVersion } of listeners) server.setSecureContext({ cert: tls.cert, key: tls.key, ca: tls.ca, minVersion });
    },

    async idle() {
      await Promise.all(consumers.map((c) => c.idle()));
    },

    async close() {
      clearInterval(housekeeping);
      clearInterval(retentionTimer);
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              // syslog senders reconnect; bulk clients retry: in-flight appends still commit below
              setTimeout(() => {
                for (const sock of sockets) sock.destroy();
              }, 200).unref();
            }),
        ),
      );
      await journal.flush();
      await Promise.all(consumers.map((c) => c.stop()));
      await elastic?.close();
      store?.close();
      if (ownJournal) await journal.close();
      enricher.close();
    },
  };
  return service;
}
