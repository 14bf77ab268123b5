/**
 * The normalized event vocabulary (spec §3.5, DESIGN §5) that rules, dashboards
 * and routing refer to. The SIEM normalizer coerces to these types.
 */
export type FieldType = "string" | "integer" | "number" | "ip" | "time" | "object";

export const EVENT_FIELDS: Readonly<Record<string, FieldType>> = Object.freeze({
  timestamp: "time",
  env: "string",
  site: "string",
  tenant_id: "string",
  user_id: "string",
  device_id: "string",
  session_id: "string",
  src_ip: "ip",
  src_port: "integer",
  dst_ip: "ip",
  dst_port: "integer",
  proto: "string",
  asn: "integer",
  country: "string",
  component: "string",
  action: "string",
  result: "string",
  severity: "string",
  fwknop_id: "string",
  tls_ja3: "string",
  ovpn_virtual_ip: "ip",
  policy_id: "string",
  trace_id: "string",
  cmd: "string",
  rc: "integer",
  bytes_in: "integer",
  bytes_out: "integer",
  duration_ms: "number",
  error_code: "string",
  error_msg: "string",
  event_id: "string",
  received_at: "time",
  /** Shipper fields outside the schema (e.g. pin_check's pin, pin_set, client_version). */
  extra: "object",
  /** Alert events only: rule id, revision, group, window, contributing event ids. */
  alert: "object",
});

/** The action vocabulary that shippers and rules share (unknown actions are kept). */
export const ACTIONS = Object.freeze([
  "login", "otp_verify", "bootstrap", "spa_open", "tls_handshake", "ovpn_connect", "ovpn_disconnect",
  "syn_backlog", "policy_change", "pin_check", "gw_health", "admin_action", "cert_issue", "cert_revoke",
  "crl_publish", "tls_session_establish", "tls_session_terminate", "config_apply", "policy_relaxation",
  "ingest_error", "alert",
] as const);

/** Whether a rule or panel may refer to this field path (`extra.*` and `alert.*` are open). */
export function isEventField(path: string): boolean {
  if (path in EVENT_FIELDS) return EVENT_FIELDS[path] !== "object";
  const dot = path.indexOf(".");
  if (dot < 0) return false;
  const head = path.slice(0, dot);
  return (head === "extra" || head === "alert") && path.length > dot + 1;
}

/** The default routing table of DESIGN §5, used when policies/ has no routing policy. */
export const DEFAULT_ROUTES: readonly { index: string; actions: string[] }[] = Object.freeze([
  { index: "viw-auth", actions: ["login", "otp_verify", "bootstrap"] },
  { index: "viw-tunnel", actions: ["spa_open", "tls_handshake", "ovpn_*", "syn_backlog"] },
  { index: "viw-gw", actions: ["gw_health"] },
  { index: "viw-policy", actions: ["policy_change", "policy_relaxation", "config_apply"] },
  { index: "viw-admin", actions: ["admin_action"] },
  { index: "viw-pki", actions: ["cert_*", "crl_*", "tls_session_*", "pin_check"] },
  { index: "viw-alerts", actions: ["alert"] },
]);
export const DEFAULT_INDEX = "viw-other";
