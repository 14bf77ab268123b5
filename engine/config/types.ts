/**
 * The documents of a config repo, as their JSON Schemas (engine/schemas/) allow
 * them. Services read these from the DesiredState; durations stay strings
 * (`parseDuration`) so the canonical form is exactly what was reviewed.
 */

export type Duration = string;
export type Period = string;
export type JsonLogic = Record<string, unknown> | boolean;

export type KeyAlgorithm = "ecdsa-p256" | "ecdsa-p384" | "rsa-2048" | "rsa-3072" | "rsa-4096" | "ed25519";

export interface DistinguishedName {
  CN: string;
  O?: string;
  OU?: string;
  C?: string;
  ST?: string;
  L?: string;
}

export interface Identity {
  issuer: string;
  cn?: string;
  dns?: string;
  uri?: string;
}

export interface IssuerDoc {
  id: string;
  title?: string;
  description?: string;
  parent?: string;
  offline?: boolean;
  subject: DistinguishedName;
  key: { algorithm: KeyAlgorithm; ref: string };
  validity: Duration;
  path_length?: number;
  max_validity: Duration;
  permitted?: { dns?: string[]; ip?: string[]; uri?: string[] };
  crl?: { interval: Duration; grace?: Duration; url?: string };
  ocsp?: { url?: string; responder?: "issuer" | "delegated"; validity?: Duration };
}

export type KeyUsage = "digitalSignature" | "contentCommitment" | "keyEncipherment" | "keyAgreement";
export type ExtendedKeyUsage = "serverAuth" | "clientAuth" | "codeSigning" | "emailProtection" | "timeStamping" | "OCSPSigning";
export type SubjectAttribute = "CN" | "O" | "OU" | "C" | "ST" | "L";

export interface ProfileDoc {
  id: string;
  title?: string;
  description?: string;
  issuer: string;
  usage: "server" | "client" | "signing";
  key_types: KeyAlgorithm[];
  validity: { max: Duration; default: Duration };
  subject?: {
    allow?: SubjectAttribute[];
    require?: SubjectAttribute[];
    cn_pattern?: string;
    cn_in_sans?: boolean;
    fixed?: { O?: string; OU?: string; C?: string };
  };
  sans?: {
    dns?: string[];
    ip?: string[];
    uri?: string[];
    device_id?: { pattern: string; uri_prefix: string };
    min?: number;
    max?: number;
  };
  key_usage: KeyUsage[];
  extended_key_usage: ExtendedKeyUsage[];
  pin_set?: string;
  renew_before?: Duration;
}

export type PinRole = "primary" | "backup" | "retired";
export type RollPhase = "stable" | "backup-deployed" | "cutover" | "retired";

export interface PinDoc {
  sha256: string;
  role: PinRole;
  label?: string;
  retired_at?: string;
}

export interface PinSetDoc {
  id: string;
  title?: string;
  description?: string;
  profile: string;
  hosts: string[];
  pins: PinDoc[];
  roll: { phase: RollPhase; since: string; to?: string; window?: Duration; adoption_threshold?: number };
  ct?: { domains?: string[]; allowed_issuers?: string[]; allowed_spkis?: string[] };
}

export type Severity = "info" | "low" | "medium" | "high" | "critical";
export type RuleKind = "match" | "threshold" | "distinct" | "sequence" | "absence";

/** One event of a rule test, or a generator of N spaced events. */
export type RuleTestEvent =
  | Record<string, unknown>
  | { repeat: number; every: Duration; event: Record<string, unknown>; vary?: Record<string, unknown[]> };

export interface RuleTest {
  name: string;
  events: RuleTestEvent[];
  advance?: Duration;
  expect: { alerts: number; groups?: Record<string, unknown>[] };
}

export interface RuleDoc {
  id: string;
  title: string;
  description?: string;
  severity: Severity;
  tags?: string[];
  enabled?: boolean;
  kind: RuleKind;
  where?: JsonLogic;
  group_by?: string[];
  window?: Duration;
  threshold?: { count: number };
  distinct?: { field: string; count: number };
  sequence?: { within: Duration; steps: { name?: string; where: JsonLogic }[] };
  absence?: { after: JsonLogic; expect: JsonLogic; within: Duration };
  suppress?: Duration;
  limits?: { groups?: number; entries_per_group?: number };
  tests: RuleTest[];
}

export interface ListDoc {
  id: string;
  title?: string;
  description?: string;
  purpose: "allow" | "deny";
  values: (string | number)[];
}

export type PanelType = "funnel" | "timeseries" | "bar" | "table" | "heatmap" | "stat" | "timeline";
export type Metric = "count" | Partial<Record<"avg" | "sum" | "min" | "max" | "p50" | "p95" | "p99" | "distinct" | "rate", string>>;

export interface PanelDoc {
  id: string;
  title: string;
  type: PanelType;
  index?: string;
  where?: JsonLogic;
  metric?: Metric;
  group_by?: string[];
  interval?: Duration;
  steps?: { label: string; index: string; where: JsonLogic }[];
  join?: string;
  columns?: string[];
  limit?: number;
}

export interface DashboardDoc {
  id: string;
  title: string;
  description?: string;
  time_range: Duration;
  refresh?: Duration;
  panels: PanelDoc[];
}

export type IssuanceOperation = "issue" | "rotate" | "revoke";

export interface IssuanceClient {
  id: string;
  description?: string;
  identity: Identity;
  profiles: string[];
  names?: { dns?: string[]; ip?: string[]; uri?: string[] };
  operations: IssuanceOperation[];
}

interface PolicyBase {
  id: string;
  title?: string;
  description?: string;
}

export interface IssuancePolicyDoc extends PolicyBase {
  kind: "issuance";
  clients: IssuanceClient[];
}

export interface Shipper {
  id: string;
  description?: string;
  public_key: string;
  identity?: Identity;
}

export interface IngestLimits {
  frame_bytes: number;
  body_bytes: number;
  lines: number;
}

export interface IngestPolicyDoc extends PolicyBase {
  kind: "ingest";
  shippers?: Shipper[];
  syslog?: { clients?: Identity[] };
  limits?: Partial<IngestLimits>;
}

export interface GovernancePolicyDoc extends PolicyBase {
  kind: "governance";
  relaxation: { approvals: number; approvers?: string[] };
}

export interface RetentionPolicyDoc extends PolicyBase {
  kind: "retention";
  events: Period;
  worm: Period;
  indices?: Record<string, Period>;
}

export interface Route {
  index: string;
  actions: string[];
}

export interface RoutingPolicyDoc extends PolicyBase {
  kind: "routing";
  routes: Route[];
  default: string;
}

export interface CtPolicyDoc extends PolicyBase {
  kind: "ct";
  logs: { id: string; url: string; public_key?: string }[];
  poll?: Duration;
}

export type PolicyDoc =
  | IssuancePolicyDoc
  | IngestPolicyDoc
  | GovernancePolicyDoc
  | RetentionPolicyDoc
  | RoutingPolicyDoc
  | CtPolicyDoc;

export type PolicyKind = PolicyDoc["kind"];

/** The kinds of config object, as named in errors and `--format json`. */
export type Kind = "issuer" | "profile" | "pinset" | "rule" | "list" | "dashboard" | "policy";

export interface DocByKind {
  issuer: IssuerDoc;
  profile: ProfileDoc;
  pinset: PinSetDoc;
  rule: RuleDoc;
  list: ListDoc;
  dashboard: DashboardDoc;
  policy: PolicyDoc;
}

/** A position in a config file: FILE relative to the repo, 1-based line and column. */
export interface Position {
  file: string;
  line: number;
  col: number;
}

/** One positioned problem, printed as `FILE:LINE:COL: error: MESSAGE`. */
export interface Diagnostic extends Position {
  message: string;
  kind?: Kind;
  id?: string;
}
