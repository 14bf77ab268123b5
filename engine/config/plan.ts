import { canonicalJson } from "./canonical.js";
import { parseDuration, periodDays } from "./duration.js";
import type { DesiredState, StateKind } from "./state.js";

/**
 * The semantic diff of two revisions (`viw plan`, the daemon's gate): per kind
 * and object, what was added, removed or changed, each change judged a
 * relaxation or a tightening by the explicit table below (DESIGN.md §7).
 * Anything the table does not name is shown but not judged.
 */

export type Verdict = "relaxation" | "tightening";

export interface Change {
  kind: StateKind;
  id: string;
  /** Dotted path inside the object; keyed list items as `clients[backend]`. Empty for a whole object. */
  field: string;
  change: "added" | "removed" | "changed";
  old?: unknown;
  new?: unknown;
  verdict?: Verdict;
  reason?: string;
}

export interface Plan {
  from: string | null;
  to: string;
  changes: Change[];
  relaxations: number;
  tightenings: number;
}

const KINDS: [StateKind, keyof DesiredState][] = [
  ["issuer", "issuers"],
  ["profile", "profiles"],
  ["pinset", "pinSets"],
  ["rule", "rules"],
  ["list", "lists"],
  ["dashboard", "dashboards"],
  ["policy", "policies"],
];

/** Keys that identify the items of a list of objects, so a reorder is not a change. */
const ITEM_KEYS = ["id", "sha256", "name", "index", "label"];
/** Values compared whole: conditions and test cases read best as one unit. */
const OPAQUE = new Set(["where", "after", "expect", "events", "event", "identity", "steps"]);

type Flat = Map<string, unknown>;

function flatten(value: unknown, prefix: string, out: Flat): void {
  if (Array.isArray(value)) {
    const key = value.length > 0 && value.every((v) => v && typeof v === "object" && !Array.isArray(v))
      ? ITEM_KEYS.find((k) => value.every((v) => typeof (v as Record<string, unknown>)[k] === "string" || typeof (v as Record<string, unknown>)[k] === "number") && new Set(value.map((v) => (v as Record<string, unknown>)[k])).size === value.length)
      : undefined;
    if (!key) {
      out.set(prefix, value);
      return;
    }
    for (const item of value as Record<string, unknown>[]) {
      const p = `${prefix}[${String(item[key])}]`;
      out.set(p, ITEM_PRESENT);
      flattenObject(item, p, out, key);
    }
    return;
  }
  if (value && typeof value === "object") {
    flattenObject(value as Record<string, unknown>, prefix, out);
    return;
  }
  out.set(prefix, value);
}

const ITEM_PRESENT = Symbol("item");

function flattenObject(obj: Record<string, unknown>, prefix: string, out: Flat, skip?: string): void {
  for (const [k, v] of Object.entries(obj)) {
    if (k === skip) continue;
    const p = prefix ? `${prefix}.${k}` : k;
    if (OPAQUE.has(k)) out.set(p, v);
    else flatten(v, p, out);
  }
}

/** The whole-object verdicts: what appearing or disappearing means per kind. */
const OBJECT_VERDICTS: Partial<Record<StateKind, { added?: [Verdict, string]; removed?: [Verdict, string] }>> = {
  issuer: { added: ["relaxation", "a new CA that can issue"] },
  profile: { added: ["relaxation", "a new profile widens what can be issued"], removed: ["tightening", "a profile can no longer be used"] },
  pinset: { removed: ["relaxation", "pinning removed"], added: ["tightening", "new pinning"] },
  rule: { removed: ["relaxation", "detection removed"], added: ["tightening", "new detection"] },
};

interface FieldRule {
  kind: StateKind | "*";
  /** Matched against the field with list keys replaced by [*]. */
  path: RegExp;
  judge: (old: unknown, now: unknown) => Verdict | undefined;
  /** Why, as [when it relaxes, when it tightens]. */
  reason: [string, string];
}

const dur = (v: unknown) => (typeof v === "string" ? parseDuration(v) : undefined);
const num = (v: unknown) => (typeof v === "number" ? v : undefined);
const period = (v: unknown) => (typeof v === "string" ? periodDays(v) : undefined);

function ordered(measure: (v: unknown) => number | undefined, larger: Verdict) {
  const smaller: Verdict = larger === "relaxation" ? "tightening" : "relaxation";
  return (old: unknown, now: unknown): Verdict | undefined => {
    const a = measure(old);
    const b = measure(now);
    if (a === undefined || b === undefined || a === b) return undefined;
    return b > a ? larger : smaller;
  };
}

/** A list whose extra members allow more (allowed names, key types, profiles). */
function allowList(absentMeansAll: boolean) {
  return (old: unknown, now: unknown): Verdict | undefined => {
    if (old === undefined || now === undefined) {
      if (old === now) return undefined;
      // An absent constraint list either allows everything or nothing, per field.
      const widened = absentMeansAll ? now === undefined : old === undefined;
      return widened ? "relaxation" : "tightening";
    }
    const a = new Set((old as unknown[]).map((x) => canonicalJson(x)));
    const b = new Set((now as unknown[]).map((x) => canonicalJson(x)));
    if ([...b].some((x) => !a.has(x))) return "relaxation";
    if ([...a].some((x) => !b.has(x))) return "tightening";
    return undefined;
  };
}

/** A keyed list item (client, shipper, pin) appearing or disappearing. */
function presence(addedIs: Verdict) {
  const other: Verdict = addedIs === "relaxation" ? "tightening" : "relaxation";
  return (old: unknown, now: unknown): Verdict | undefined => (old === undefined ? addedIs : now === undefined ? other : undefined);
}

const SEVERITY = ["info", "low", "medium", "high", "critical"];

const FIELD_RULES: FieldRule[] = [
  { kind: "issuer", path: /^(validity|max_validity)$/, judge: ordered(dur, "relaxation"), reason: ["longer validity", "shorter validity"] },
  { kind: "issuer", path: /^permitted(\.(dns|ip|uri))?$/, judge: allowList(true), reason: ["wider name constraints", "narrower name constraints"] },
  { kind: "issuer", path: /^path_length$/, judge: ordered(num, "relaxation"), reason: ["longer CA path allowed", "shorter CA path"] },
  { kind: "issuer", path: /^crl\.(interval|grace)$|^ocsp\.validity$/, judge: ordered(dur, "relaxation"), reason: ["revocation news travels slower", "revocation news travels faster"] },
  { kind: "profile", path: /^validity\.(max|default)$/, judge: ordered(dur, "relaxation"), reason: ["longer validity", "shorter validity"] },
  { kind: "profile", path: /^key_types$/, judge: allowList(false), reason: ["more key types allowed", "fewer key types allowed"] },
  { kind: "profile", path: /^sans\.(dns|ip|uri)$/, judge: allowList(false), reason: ["wider SAN patterns", "narrower SAN patterns"] },
  { kind: "profile", path: /^sans\.max$/, judge: ordered(num, "relaxation"), reason: ["more SANs per certificate", "fewer SANs per certificate"] },
  { kind: "profile", path: /^subject\.allow$/, judge: allowList(false), reason: ["more subject attributes allowed", "fewer subject attributes allowed"] },
  { kind: "profile", path: /^(key_usage|extended_key_usage)$/, judge: allowList(false), reason: ["wider key usage", "narrower key usage"] },
  { kind: "profile", path: /^issuer$/, judge: (a, b) => (a !== b ? "relaxation" : undefined), reason: ["issued by another CA", "issued by another CA"] },
  { kind: "profile", path: /^pin_set$/, judge: (a, b) => (b === undefined && a !== undefined ? "relaxation" : a === undefined && b !== undefined ? "tightening" : undefined), reason: ["pin set unbound", "pin set bound"] },
  { kind: "pinset", path: /^pins\[\*\]$/, judge: presence("tightening"), reason: ["fewer pins", "more pins"] },
  { kind: "pinset", path: /^pins\[\*\]\.role$/, judge: (a, b) => (b === "retired" && a === "backup" ? "relaxation" : undefined), reason: ["backup pin retired", "backup pin retired"] },
  { kind: "pinset", path: /^roll\.window$/, judge: ordered(dur, "relaxation"), reason: ["longer pin-roll window", "shorter pin-roll window"] },
  { kind: "rule", path: /^enabled$/, judge: (a, b) => ((a ?? true) && b === false ? "relaxation" : a === false && (b ?? true) ? "tightening" : undefined), reason: ["detection disabled", "detection enabled"] },
  { kind: "rule", path: /^(threshold|distinct)\.count$/, judge: ordered(num, "relaxation"), reason: ["higher threshold", "lower threshold"] },
  { kind: "rule", path: /^(window|sequence\.within|absence\.within)$/, judge: ordered(dur, "tightening"), reason: ["shorter detection window", "longer detection window"] },
  { kind: "rule", path: /^suppress$/, judge: ordered(dur, "relaxation"), reason: ["longer suppression", "shorter suppression"] },
  { kind: "rule", path: /^severity$/, judge: ordered((v) => SEVERITY.indexOf(String(v)), "tightening"), reason: ["lower severity", "higher severity"] },
  { kind: "policy", path: /^clients\[\*\]$/, judge: presence("relaxation"), reason: ["wider issuance authorization", "narrower issuance authorization"] },
  { kind: "policy", path: /^clients\[\*\]\.(profiles|operations)$/, judge: allowList(false), reason: ["wider issuance authorization", "narrower issuance authorization"] },
  { kind: "policy", path: /^clients\[\*\]\.names(\.(dns|ip|uri))?$/, judge: allowList(true), reason: ["more names a client may request", "fewer names a client may request"] },
  { kind: "policy", path: /^clients\[\*\]\.identity$/, judge: (a, b) => (canonicalJson(a) !== canonicalJson(b) ? "relaxation" : undefined), reason: ["another identity authorized", "another identity authorized"] },
  { kind: "policy", path: /^shippers\[\*\]$/, judge: presence("relaxation"), reason: ["ingest shipper added", "ingest shipper removed"] },
  { kind: "policy", path: /^shippers\[\*\]\.public_key$/, judge: (a, b) => (a !== b ? "relaxation" : undefined), reason: ["shipper key replaced", "shipper key replaced"] },
  { kind: "policy", path: /^syslog\.clients$/, judge: allowList(false), reason: ["wider syslog client authorization", "narrower syslog client authorization"] },
  { kind: "policy", path: /^relaxation\.approvals$/, judge: ordered(num, "tightening"), reason: ["fewer approvals required for a relaxation", "more approvals required for a relaxation"] },
  { kind: "policy", path: /^(events|worm)$|^indices\.[^.]+$/, judge: ordered(period, "tightening"), reason: ["shorter retention", "longer retention"] },
  { kind: "policy", path: /^logs\[\*\]$/, judge: presence("tightening"), reason: ["fewer CT logs monitored", "more CT logs monitored"] },
];

function judgeList(kind: StateKind, doc: Record<string, unknown> | undefined, path: string, old: unknown, now: unknown): [Verdict, string] | undefined {
  if (kind === "list") {
    if (path !== "values") return undefined;
    const purpose = doc?.purpose;
    const v = allowList(false)(old, now);
    if (!v) return undefined;
    const flipped: Verdict = v === "relaxation" ? "tightening" : "relaxation";
    return purpose === "deny" ? [flipped, "deny list changed"] : [v, v === "relaxation" ? "allowlist widened" : "allowlist narrowed"];
  }
  return undefined;
}

export function judge(kind: StateKind, field: string, old: unknown, now: unknown, doc?: Record<string, unknown>): { verdict?: Verdict; reason?: string } {
  const special = judgeList(kind, doc, field, old, now);
  if (special) return { verdict: special[0], reason: special[1] };
  const generic = field.replace(/\[[^\]]*\]/g, "[*]");
  for (const r of FIELD_RULES) {
    if ((r.kind === kind || r.kind === "*") && r.path.test(generic)) {
      const verdict = r.judge(old, now);
      if (verdict) return { verdict, reason: r.reason[verdict === "relaxation" ? 0 : 1] };
      return {};
    }
  }
  return {};
}

function docsOf(state: DesiredState | undefined, key: keyof DesiredState): ReadonlyMap<string, Record<string, unknown>> {
  return (state?.[key] as ReadonlyMap<string, Record<string, unknown>> | undefined) ?? new Map();
}

/** Compares two DesiredStates; `from` undefined means everything is new. */
export function planChanges(from: DesiredState | undefined, to: DesiredState): Plan {
  const changes: Change[] = [];
  for (const [kind, key] of KINDS) {
    const a = docsOf(from, key);
    const b = docsOf(to, key);
    const ids = [...new Set([...a.keys(), ...b.keys()])].sort();
    for (const id of ids) {
      const oldDoc = a.get(id);
      const newDoc = b.get(id);
      if (!oldDoc || !newDoc) {
        const change = oldDoc ? "removed" : "added";
        const v = OBJECT_VERDICTS[kind]?.[change];
        changes.push({ kind, id, field: "", change, ...(v ? { verdict: v[0], reason: v[1] } : {}) });
        continue;
      }
      if (from && from.objectDigest(kind, id) === to.objectDigest(kind, id)) continue;
      const fa: Flat = new Map();
      const fb: Flat = new Map();
      flattenObject(oldDoc, "", fa);
      flattenObject(newDoc, "", fb);
      const fields = [...new Set([...fa.keys(), ...fb.keys()])];
      // A whole keyed item added or removed reports once, not once per field inside it.
      const wholeItems = fields.filter((f) => (fa.get(f) === ITEM_PRESENT) !== (fb.get(f) === ITEM_PRESENT));
      for (const field of fields) {
        if (wholeItems.some((w) => field !== w && field.startsWith(w + "."))) continue;
        const ov = fa.get(field);
        const nv = fb.get(field);
        const oldVal = ov === ITEM_PRESENT ? undefined : ov;
        const newVal = nv === ITEM_PRESENT ? undefined : nv;
        if (ov === ITEM_PRESENT && nv === ITEM_PRESENT) continue;
        if (ov !== ITEM_PRESENT && nv !== ITEM_PRESENT && canonicalJson(ov ?? null) === canonicalJson(nv ?? null) && fa.has(field) === fb.has(field)) continue;
        const change = !fa.has(field) ? "added" : !fb.has(field) ? "removed" : "changed";
        const itemOld = ov === ITEM_PRESENT ? itemAt(oldDoc, field) : oldVal;
        const itemNew = nv === ITEM_PRESENT ? itemAt(newDoc, field) : newVal;
        const { verdict, reason } = judge(kind, field, ov === ITEM_PRESENT ? true : oldVal, nv === ITEM_PRESENT ? true : newVal, newDoc);
        changes.push({
          kind,
          id,
          field,
          change,
          ...(itemOld !== undefined ? { old: itemOld } : {}),
          ...(itemNew !== undefined ? { new: itemNew } : {}),
          ...(verdict ? { verdict, reason } : {}),
        });
      }
    }
  }
  return {
    from: from?.revision ?? null,
    to: to.revision,
    changes,
    relaxations: changes.filter((c) => c.verdict === "relaxation").length,
    tightenings: changes.filter((c) => c.verdict === "tightening").length,
  };
}

/** The list item a flattened `a.b[key]` path names, for showing what was added or removed. */
function itemAt(doc: Record<string, unknown>, field: string): unknown {
  let cur: unknown = doc;
  for (const part of field.match(/[^.[\]]+|\[[^\]]*\]/g) ?? []) {
    if (part.startsWith("[")) {
      const key = part.slice(1, -1);
      cur = (cur as Record<string, unknown>[]).find((item) => ITEM_KEYS.some((k) => String(item[k]) === key));
    } else {
      cur = (cur as Record<string, unknown>)[part];
    }
  }
  return cur;
}
