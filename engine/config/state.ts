import { createHash } from "node:crypto";
import { canonicalJson } from "./canonical.js";
import { DEFAULT_INDEX, DEFAULT_ROUTES } from "./events.js";
import type { ParsedFile } from "./parse.js";
import type {
  DashboardDoc,
  GovernancePolicyDoc,
  Identity,
  IngestLimits,
  IngestPolicyDoc,
  IssuanceClient,
  IssuancePolicyDoc,
  IssuerDoc,
  ListDoc,
  PinSetDoc,
  PolicyDoc,
  ProfileDoc,
  RetentionPolicyDoc,
  Route,
  RoutingPolicyDoc,
  RuleDoc,
  Shipper,
  CtPolicyDoc,
  Position,
} from "./types.js";

export const DEFAULT_INGEST_LIMITS: Readonly<IngestLimits> = Object.freeze({
  frame_bytes: 64 * 1024,
  body_bytes: 32 * 1024 * 1024,
  lines: 100_000,
});

/**
 * Everything one revision asks for, frozen. It is the only input of every
 * service: a service never reads the repo itself, so what was validated is
 * exactly what runs. `digest` is SHA-256 over the canonical JSON (RFC 8785) of
 * the documents, so two checkouts of the same content agree on it.
 */
export interface DesiredState {
  readonly revision: string;
  readonly digest: string;
  readonly issuers: ReadonlyMap<string, IssuerDoc>;
  readonly profiles: ReadonlyMap<string, ProfileDoc>;
  readonly pinSets: ReadonlyMap<string, PinSetDoc>;
  readonly rules: ReadonlyMap<string, RuleDoc>;
  readonly lists: ReadonlyMap<string, ListDoc>;
  readonly dashboards: ReadonlyMap<string, DashboardDoc>;
  readonly policies: ReadonlyMap<string, PolicyDoc>;
  /** Derived views over policies/, merged across files. */
  readonly issuanceClients: readonly IssuanceClient[];
  readonly shippers: readonly Shipper[];
  readonly syslogClients: readonly Identity[];
  readonly ingestLimits: Readonly<IngestLimits>;
  readonly governance: { readonly approvals: number; readonly approvers: readonly string[] };
  readonly retention: { readonly events: string; readonly worm: string; readonly indices: Readonly<Record<string, string>> };
  readonly routing: { readonly routes: readonly Route[]; readonly default: string };
  readonly ctLogs: CtPolicyDoc["logs"];
  /** Digest of one object's canonical form: lets a service keep state for unchanged objects. */
  objectDigest(kind: StateKind, id: string): string | undefined;
  /** Where an object was defined (file:line:col of its first key). */
  locate(kind: StateKind, id: string): Position | undefined;
}

export type StateKind = "issuer" | "profile" | "pinset" | "rule" | "list" | "dashboard" | "policy";

function deepFreeze<T>(v: T): T {
  if (v && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v as object)) deepFreeze(child);
  }
  return v;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Builds the DesiredState from files that passed every check (see load.ts). */
export function buildState(revision: string, files: readonly ParsedFile[]): DesiredState {
  const maps = {
    issuer: new Map<string, IssuerDoc>(),
    profile: new Map<string, ProfileDoc>(),
    pinset: new Map<string, PinSetDoc>(),
    rule: new Map<string, RuleDoc>(),
    list: new Map<string, ListDoc>(),
    dashboard: new Map<string, DashboardDoc>(),
    policy: new Map<string, PolicyDoc>(),
  } satisfies Record<StateKind, Map<string, unknown>>;
  const digests = new Map<string, string>();
  const positions = new Map<string, Position>();
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const canon: Record<string, Record<string, string>> = {};
  for (const f of sorted) {
    const doc = deepFreeze(structuredClone(f.value)) as { id: string };
    (maps[f.kind] as Map<string, unknown>).set(doc.id, doc);
    const c = canonicalJson(doc);
    digests.set(`${f.kind}/${doc.id}`, sha256(c));
    positions.set(`${f.kind}/${doc.id}`, f.at.value([]));
    (canon[f.kind] ??= {})[doc.id] = c;
  }
  const policies = [...maps.policy.values()];
  const ofKind = <K extends PolicyDoc["kind"]>(k: K) => policies.filter((p): p is Extract<PolicyDoc, { kind: K }> => p.kind === k);
  const ingest = ofKind("ingest") as IngestPolicyDoc[];
  const governance = ofKind("governance")[0] as GovernancePolicyDoc | undefined;
  const retention = ofKind("retention")[0] as RetentionPolicyDoc | undefined;
  const routing = ofKind("routing")[0] as RoutingPolicyDoc | undefined;
  const limits: IngestLimits = { ...DEFAULT_INGEST_LIMITS };
  for (const p of ingest) Object.assign(limits, p.limits ?? {});

  const state: DesiredState = {
    revision,
    digest: wholeDigest(canon),
    issuers: maps.issuer,
    profiles: maps.profile,
    pinSets: maps.pinset,
    rules: maps.rule,
    lists: maps.list,
    dashboards: maps.dashboard,
    policies: maps.policy,
    issuanceClients: deepFreeze((ofKind("issuance") as IssuancePolicyDoc[]).flatMap((p) => p.clients)),
    shippers: deepFreeze(ingest.flatMap((p) => p.shippers ?? [])),
    syslogClients: deepFreeze(ingest.flatMap((p) => p.syslog?.clients ?? [])),
    ingestLimits: deepFreeze(limits),
    governance: deepFreeze({ approvals: governance?.relaxation.approvals ?? 0, approvers: governance?.relaxation.approvers ?? [] }),
    retention: deepFreeze({ events: retention?.events ?? "13mo", worm: retention?.worm ?? "18mo", indices: retention?.indices ?? {} }),
    routing: deepFreeze({ routes: routing?.routes ?? DEFAULT_ROUTES.map((r) => ({ ...r })), default: routing?.default ?? DEFAULT_INDEX }),
    ctLogs: deepFreeze(ofKind("ct").flatMap((p) => (p as CtPolicyDoc).logs)),
    objectDigest: (kind, id) => digests.get(`${kind}/${id}`),
    locate: (kind, id) => positions.get(`${kind}/${id}`),
  };
  return Object.freeze(state);
}

/**
 * sha256 of canonicalJson({kind: {id: document}}), assembled from the
 * documents' canonical forms so that each is serialised once: serialising the
 * whole revision a second time was half of building the state.
 */
function wholeDigest(canon: Record<string, Record<string, string>>): string {
  const h = createHash("sha256").update("{");
  Object.keys(canon)
    .sort()
    .forEach((kind, i) => {
      h.update(`${i ? "," : ""}${JSON.stringify(kind)}:{`);
      const ids = canon[kind]!;
      Object.keys(ids)
        .sort()
        .forEach((id, j) => h.update(`${j ? "," : ""}${JSON.stringify(id)}:${ids[id]}`));
      h.update("}");
    });
  return h.update("}").digest("hex");
}
