/**
 * The detection throughput workload (issue #5), shared by test/bench/detect.bench.ts (vitest, the engine's
 * sources) and test/bench/detect-instructions.mjs (node under callgrind, the built engine): the default rules
 * plus 100 generated rules, and a seeded event stream. Plain JS so both can import it.
 */
import { stringify } from "yaml";

/** DESIGN.md §5's action vocabulary (without `alert` and `policy_relaxation`, which the default rules cover). */
export const ACTIONS = ["login", "otp_verify", "bootstrap", "spa_open", "tls_handshake", "ovpn_connect", "ovpn_disconnect", "syn_backlog", "policy_change", "pin_check", "gw_health", "admin_action", "cert_issue", "cert_revoke", "crl_publish", "tls_session_establish", "tls_session_terminate", "config_apply", "ingest_error"];

/**
 * 100 rules the way a team would add them: rule i watches action i mod 19 and
 * is one of six shapes (i mod 6), each realistic and each firing on this
 * stream (the bench prints how many alerts fired):
 *  0 threshold: failures of the action per source IP, 20-49 in 1 minute;
 *  1 distinct: failures of the action per user from ≥ 5 ASNs in 10 minutes;
 *  2 match: the action with one of two rare error codes, per source IP, once an hour;
 *  3 threshold: large transfers (bytes_out > 1.9 MB) per user and device, 10 in 5 minutes;
 *  4 absence: a successful action not followed by the next action of the vocabulary in the same session within 2 minutes;
 *  5 sequence: two failures then a success of the action by one user within 5 minutes (brute force that worked).
 */
export function generatedRules(){
  const out = [];
  for (let i = 0; i < 100; i++) {
    const action = ACTIONS[i % ACTIONS.length];
    const next = ACTIONS[(i + 1) % ACTIONS.length];
    const base = { id: `gen-${i}`, title: `generated ${i}`, severity: "medium" };
    const is = (a) => ({ "==": [{ var: "action" }, a] });
    const failure = { and: [is(action), { "==": [{ var: "result" }, "failure"] }] };
    const success = { and: [is(action), { "==": [{ var: "result" }, "success"] }] };
    switch (i % 6) {
      case 0:
        out.push({ ...base, kind: "threshold", where: failure, group_by: ["src_ip"], window: "1m", threshold: { count: 20 + (i % 30) } });
        break;
      case 1:
        out.push({ ...base, kind: "distinct", where: failure, group_by: ["user_id"], window: "10m", distinct: { field: "asn", count: 5 } });
        break;
      case 2:
        out.push({ ...base, kind: "match", where: { and: [is(action), { in: [{ var: "error_code" }, [`E${i}`, `E${i + 1}`]] }] }, group_by: ["src_ip"], suppress: "1h" });
        break;
      case 3:
        out.push({ ...base, kind: "threshold", where: { and: [is(action), { ">": [{ var: "bytes_out" }, 1_900_000] }] }, group_by: ["user_id", "device_id"], window: "5m", threshold: { count: 10 } });
        break;
      case 4:
        out.push({ ...base, kind: "absence", group_by: ["session_id"], absence: { after: success, expect: is(next), within: "2m" } });
        break;
      case 5:
        out.push({ ...base, kind: "sequence", group_by: ["user_id"], sequence: { within: "5m", steps: [{ where: failure }, { where: failure }, { where: success }] } });
        break;
    }
  }
  return out;
}

export async function stateWith({ loadSnapshot, readDirSnapshot }, root, rules) {
  const snap = await readDirSnapshot(root);
  const placeholder = (alerts) => ({ name: `p${alerts}`, events: [{ timestamp: "2026-11-23T10:00:00Z" }], expect: { alerts } });
  for (const r of rules) {
    const bytes = Buffer.from(stringify({ tests: [placeholder(1), placeholder(0)], ...r }, { aliasDuplicateObjects: false }));
    snap.files.push({ path: `detections/gen/${r.id}.yaml`, bytes, size: bytes.length });
  }
  const { state, errors } = loadSnapshot(snap);
  if (!state) throw new Error(JSON.stringify(errors.slice(0, 3)));
  return state;
}

/**
 * A mixed stream, one event every 50 µs of event time: 20,000 sessions of
 * 5,000 users (two devices each, one source IP and home ASN per user), actions
 * uniform over the vocabulary, 10% failures (from any of 40 ASNs, a fifth with
 * an error code), bytes_out uniform up to 2 MB.
 */
export function events(n, startMs) {
  const out = new Array(n);
  // mulberry32: a small seeded generator with well-mixed low bits (keys spread like real ones)
  let x = 12345;
  const rnd = (m) => {
    x = (x + 0x6d2b79f5) | 0;
    let t = Math.imul(x ^ (x >>> 15), 1 | x);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % m;
  };
  for (let i = 0; i < n; i++) {
    const ts = new Date(startMs + i * 0.05).toISOString();
    const action = ACTIONS[rnd(ACTIONS.length)];
    const session = rnd(20000);
    const user = session % 5000;
    const failure = rnd(10) === 0;
    out[i] = {
      event_id: `ev-${startMs}-${i}`,
      timestamp: ts,
      received_at: ts,
      action,
      result: failure ? "failure" : "success",
      user_id: `u-${user}`,
      device_id: `d-${user}-${session % 2}`,
      session_id: `s-${session}`,
      src_ip: `198.51.${user & 7}.${user % 250}`,
      asn: failure ? 64500 + rnd(40) : 64500 + (user % 40),
      bytes_out: rnd(2_000_000),
      error_code: failure && rnd(5) === 0 ? `E${rnd(100)}` : undefined,
      tls_ja3: action === "tls_handshake" ? (rnd(100) === 0 ? "0123456789abcdef0123456789abcdef" : "97beca22d69a6bfaea854305b6a2b9d5") : undefined,
    };
  }
  return out;
}

