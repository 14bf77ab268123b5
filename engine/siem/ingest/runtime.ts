import { createPublicKey, type KeyObject } from "node:crypto";
import type { DesiredState, Identity, IngestLimits } from "../../config/index.js";
import type { Journal, NormalizedEvent } from "../journal/index.js";
import { ingestErrorEvent, type Normalizer } from "../normalize/index.js";
import type { IssuerNames } from "./identity.js";
import type { IngestMetrics } from "./metrics.js";

export interface ShipperKey {
  id: string;
  key: KeyObject;
  identity?: Identity;
}

/** What one applied revision gives the listeners; swapped whole on commit. */
export interface IngestConfig {
  shippers: ReadonlyMap<string, ShipperKey>;
  syslogClients: readonly Identity[];
  limits: Readonly<IngestLimits>;
  normalizer: Normalizer;
}

/** A journal the listeners can push back on. */
export interface IngestJournal extends Pick<Journal, "append"> {
  isFull(): boolean;
}

export interface IngestContext {
  config(): IngestConfig;
  journal: IngestJournal;
  metrics: IngestMetrics;
  issuers: IssuerNames;
  /** Identities accepted on both ports besides the policy's (the dev client certificate). */
  extraIdentities?: readonly Identity[];
  /** Told about failures that are the engine's, not the sender's (journal write errors). */
  log?: (msg: string, err?: unknown) => void;
}

/** Ed25519 public key from policies/: base64 of the 32 raw bytes, or a PEM SPKI. */
export function ed25519Key(text: string): KeyObject {
  if (text.includes("BEGIN")) return createPublicKey(text);
  const raw = Buffer.from(text.trim(), "base64");
  if (raw.length !== 32) throw new Error("an Ed25519 public key is 32 bytes");
  return createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]), format: "der", type: "spki" });
}

export function buildIngestConfig(state: DesiredState, normalizer: Normalizer, extraShippers: readonly { id: string; public_key: string; identity?: Identity }[] = []): IngestConfig {
  const shippers = new Map<string, ShipperKey>();
  for (const s of [...state.shippers, ...extraShippers]) {
    shippers.set(s.id, { id: s.id, key: ed25519Key(s.public_key), identity: s.identity });
  }
  return { shippers, syslogClients: state.syslogClients, limits: state.ingestLimits, normalizer };
}

/** Records an ingest error as an event (best effort: the refusal itself must not fail). */
export function reportIngestError(ctx: IngestContext, fields: Parameters<typeof ingestErrorEvent>[1]): void {
  const event: NormalizedEvent = ingestErrorEvent(new Date().toISOString(), fields);
  const index = ctx.config().normalizer.router.route("ingest_error");
  ctx.journal.append([{ index, event }]).catch((err) => ctx.log?.("could not journal an ingest_error event", err));
}
