import { createPublicKey } from "node:crypto";
import { formatDuration, parseDuration } from "./duration.js";
import { isEventField } from "./events.js";
import { walkLogic } from "./jsonlogic.js";
import { dnsWithinSubtree, isNetworkAddress, parseCidr, cidrContainsCidr } from "./net.js";
import type { ParsedFile, PathSegment } from "./parse.js";
import type {
  DashboardDoc,
  Diagnostic,
  Identity,
  IssuerDoc,
  Kind,
  PinSetDoc,
  PolicyDoc,
  ProfileDoc,
  RuleDoc,
} from "./types.js";

/** The spec's end-entity limits (viworks_pki_siem.md §3.2): server certificates 180 days, the rest a year. */
export const USAGE_MAX_VALIDITY: Readonly<Record<ProfileDoc["usage"], string>> = Object.freeze({
  server: "180d",
  client: "365d",
  signing: "365d",
});

/** Longest window a rule may keep state for; longer ones belong in a scheduled query. */
export const MAX_RULE_WINDOW = "7d";

const DAY = 86_400_000;

/**
 * Cross-file checks that a schema cannot express. Every diagnostic points at
 * the node that is wrong; each check runs on what exists so one broken
 * reference does not hide the next problem.
 */
export function checkSemantics(files: readonly ParsedFile[], broken: ReadonlySet<string> = new Set()): Diagnostic[] {
  const out: Diagnostic[] = [];
  const byKind = new Map<Kind, Map<string, ParsedFile>>();
  for (const f of files) {
    const id = (f.value as { id: string }).id;
    let m = byKind.get(f.kind);
    if (!m) byKind.set(f.kind, (m = new Map()));
    const prior = m.get(id);
    if (prior) {
      out.push(diag(f, ["id"], `duplicate ${f.kind} id \`${id}\`: also defined in ${prior.path}`));
      continue;
    }
    m.set(id, f);
  }
  const get = (k: Kind) => byKind.get(k) ?? new Map<string, ParsedFile>();
  // A reference into a file that already failed is reported there, not again at every user.
  const muted = (kind: Kind, id: string) => broken.has(`${kind}/${id}`);
  const ctx: Ctx = {
    out,
    muted,
    issuers: get("issuer"),
    profiles: get("profile"),
    pinSets: get("pinset"),
    rules: get("rule"),
    lists: get("list"),
    dashboards: get("dashboard"),
    policies: get("policy"),
  };
  checkIssuers(ctx);
  for (const f of ctx.profiles.values()) checkProfile(ctx, f);
  for (const f of ctx.pinSets.values()) checkPinSet(ctx, f);
  for (const f of ctx.rules.values()) checkRule(ctx, f);
  const indices = checkPolicies(ctx);
  for (const f of ctx.dashboards.values()) checkDashboard(ctx, f, indices);
  return out;
}

interface Ctx {
  out: Diagnostic[];
  muted(kind: Kind, id: string): boolean;
  issuers: Map<string, ParsedFile>;
  profiles: Map<string, ParsedFile>;
  pinSets: Map<string, ParsedFile>;
  rules: Map<string, ParsedFile>;
  lists: Map<string, ParsedFile>;
  dashboards: Map<string, ParsedFile>;
  policies: Map<string, ParsedFile>;
}

function diag(f: ParsedFile, path: readonly PathSegment[], message: string, atKey = false): Diagnostic {
  const pos = atKey ? f.at.key(path) : f.at.value(path);
  return { file: f.path, line: pos.line, col: pos.col, message, kind: f.kind, id: (f.value as { id: string }).id };
}

function ms(d: string): number {
  return parseDuration(d);
}

function days(d: string): string {
  const v = ms(d);
  return v % DAY === 0 ? `${v / DAY}d` : formatDuration(v);
}

// ---------------------------------------------------------------- issuers

function checkIssuers(ctx: Ctx): void {
  const roots = [...ctx.issuers.values()].filter((f) => (f.value as IssuerDoc).parent === undefined);
  if (ctx.issuers.size > 0 && roots.length === 0) {
    const first = [...ctx.issuers.values()][0]!;
    ctx.out.push(diag(first, ["parent"], "no root issuer: exactly one issuer must have no `parent`"));
  }
  // The offline root is the one to keep; any other parentless issuer is the mistake.
  const keep = roots.find((f) => (f.value as IssuerDoc).offline) ?? roots[0];
  for (const extra of roots) {
    if (extra === keep) continue;
    ctx.out.push(diag(extra, ["id"], `second root issuer: \`${(keep!.value as IssuerDoc).id}\` (${keep!.path}) is already the root; give this one a \`parent\``));
  }
  for (const f of ctx.issuers.values()) {
    const doc = f.value as IssuerDoc;
    if (ms(doc.max_validity) > ms(doc.validity)) {
      ctx.out.push(diag(f, ["max_validity"], `max_validity ${doc.max_validity} exceeds the issuer's own validity ${doc.validity}`));
    }
    if (doc.crl?.grace && ms(doc.crl.grace) >= ms(doc.crl.interval)) {
      ctx.out.push(diag(f, ["crl", "grace"], `crl.grace ${doc.crl.grace} must be shorter than crl.interval ${doc.crl.interval}`));
    }
    checkPermitted(ctx, f, doc);
    if (doc.parent === undefined) continue;
    const parentFile = ctx.issuers.get(doc.parent);
    if (!parentFile) {
      if (!ctx.muted("issuer", doc.parent)) ctx.out.push(diag(f, ["parent"], `parent issuer \`${doc.parent}\` does not exist (profiles/issuers/${doc.parent}.yaml)`));
      continue;
    }
    const cycle = findCycle(ctx, doc.id);
    if (cycle) {
      ctx.out.push(diag(f, ["parent"], `issuer chain loops: ${cycle.join(" → ")}`));
      continue;
    }
    const parent = parentFile.value as IssuerDoc;
    if (ms(doc.validity) > ms(parent.validity)) {
      ctx.out.push(diag(f, ["validity"], `validity ${doc.validity} exceeds the parent issuer \`${parent.id}\`'s validity ${parent.validity}`));
    } else if (ms(doc.validity) > ms(parent.max_validity)) {
      ctx.out.push(diag(f, ["validity"], `validity ${doc.validity} exceeds the parent issuer \`${parent.id}\`'s max_validity ${parent.max_validity}`));
    }
    if (parent.path_length !== undefined && (doc.path_length ?? Infinity) >= parent.path_length) {
      ctx.out.push(diag(f, doc.path_length === undefined ? ["id"] : ["path_length"], `path_length must be below the parent \`${parent.id}\`'s path_length ${parent.path_length}`));
    }
    for (const [i, name] of (doc.permitted?.dns ?? []).entries()) {
      const pd = parent.permitted?.dns;
      if (pd && !pd.some((s) => dnsWithinSubtree(name, s))) {
        ctx.out.push(diag(f, ["permitted", "dns", i], `permitted DNS \`${name}\` is outside the parent \`${parent.id}\`'s permitted names (${pd.join(", ")})`));
      }
    }
    for (const [i, range] of (doc.permitted?.ip ?? []).entries()) {
      const pi = parent.permitted?.ip;
      const c = parseCidr(range);
      if (pi && c && !pi.some((p) => { const pc = parseCidr(p); return pc !== null && cidrContainsCidr(pc, c); })) {
        ctx.out.push(diag(f, ["permitted", "ip", i], `permitted range ${range} is outside the parent \`${parent.id}\`'s permitted ranges (${pi.join(", ")})`));
      }
    }
  }
}

function findCycle(ctx: Ctx, start: string): string[] | null {
  const seen: string[] = [start];
  let cur = (ctx.issuers.get(start)?.value as IssuerDoc | undefined)?.parent;
  while (cur !== undefined) {
    if (seen.includes(cur)) return [...seen, cur];
    seen.push(cur);
    cur = (ctx.issuers.get(cur)?.value as IssuerDoc | undefined)?.parent;
  }
  return null;
}

function checkPermitted(ctx: Ctx, f: ParsedFile, doc: IssuerDoc): void {
  for (const [i, range] of (doc.permitted?.ip ?? []).entries()) {
    const c = parseCidr(range);
    if (!c) ctx.out.push(diag(f, ["permitted", "ip", i], `\`${range}\` is not an IP range in CIDR notation`));
    else if (!isNetworkAddress(c)) ctx.out.push(diag(f, ["permitted", "ip", i], `\`${range}\` has host bits set; write the network address of the range`));
  }
}

// ---------------------------------------------------------------- profiles

function checkProfile(ctx: Ctx, f: ParsedFile): void {
  const p = f.value as ProfileDoc;
  const issuerFile = ctx.issuers.get(p.issuer);
  const issuer = issuerFile?.value as IssuerDoc | undefined;
  if (!issuer) {
    if (!ctx.muted("issuer", p.issuer)) ctx.out.push(diag(f, ["issuer"], `issuer \`${p.issuer}\` does not exist (profiles/issuers/${p.issuer}.yaml)`));
  } else if (issuer.offline) {
    ctx.out.push(diag(f, ["issuer"], `issuer \`${p.issuer}\` is the offline root; end-entity profiles must use an online intermediate`));
  }
  const limit = USAGE_MAX_VALIDITY[p.usage];
  if (ms(p.validity.max) > ms(limit)) {
    ctx.out.push(diag(f, ["validity", "max"], `validity.max ${p.validity.max} exceeds the ${days(limit)} limit for ${p.usage} profiles`));
  } else if (issuer && ms(p.validity.max) > ms(issuer.max_validity)) {
    ctx.out.push(diag(f, ["validity", "max"], `validity.max ${p.validity.max} exceeds issuer \`${issuer.id}\`'s max_validity ${issuer.max_validity}`));
  }
  if (ms(p.validity.default) > ms(p.validity.max)) {
    ctx.out.push(diag(f, ["validity", "default"], `validity.default ${p.validity.default} exceeds validity.max ${p.validity.max}`));
  }
  if (p.renew_before && ms(p.renew_before) >= ms(p.validity.default)) {
    ctx.out.push(diag(f, ["renew_before"], `renew_before ${p.renew_before} must be shorter than validity.default ${p.validity.default}`));
  }
  // EKU follows usage so a server profile cannot quietly mint client identities.
  const eku = p.extended_key_usage;
  if (p.usage === "server" && !eku.includes("serverAuth")) {
    ctx.out.push(diag(f, ["extended_key_usage"], "a server profile must include serverAuth in extended_key_usage"));
  }
  if (p.usage === "client" && !eku.includes("clientAuth")) {
    ctx.out.push(diag(f, ["extended_key_usage"], "a client profile must include clientAuth in extended_key_usage"));
  }
  if (p.usage === "client" && eku.includes("serverAuth")) {
    ctx.out.push(diag(f, ["extended_key_usage"], "a client profile must not include serverAuth; use a server profile"));
  }
  if (p.usage === "signing" && (eku.includes("serverAuth") || eku.includes("clientAuth"))) {
    ctx.out.push(diag(f, ["extended_key_usage"], "a signing profile must not include serverAuth or clientAuth"));
  }
  // RFC 8813: keyEncipherment is meaningless (and forbidden) for EC and Ed25519 keys.
  const ke = p.key_usage.indexOf("keyEncipherment");
  if (ke >= 0 && !p.key_types.some((k) => k.startsWith("rsa-"))) {
    ctx.out.push(diag(f, ["key_usage", ke], "keyEncipherment requires an RSA key type; RFC 8813 forbids it for ECDSA and Ed25519 keys"));
  }
  for (const key of ["cn_pattern"] as const) {
    const src = p.subject?.[key];
    if (src !== undefined) checkRegex(ctx, f, ["subject", key], src);
  }
  if (p.sans?.device_id) checkRegex(ctx, f, ["sans", "device_id", "pattern"], p.sans.device_id.pattern);
  if (p.sans?.min !== undefined && p.sans?.max !== undefined && p.sans.min > p.sans.max) {
    ctx.out.push(diag(f, ["sans", "min"], `sans.min ${p.sans.min} is greater than sans.max ${p.sans.max}`));
  }
  for (const attr of p.subject?.require ?? []) {
    if (p.subject?.allow && !p.subject.allow.includes(attr)) {
      ctx.out.push(diag(f, ["subject", "require"], `subject attribute ${attr} is required but not in subject.allow`));
    }
  }
  if (issuer) {
    for (const [i, pattern] of (p.sans?.dns ?? []).entries()) {
      const pd = issuer.permitted?.dns;
      if (pd && !pd.some((s) => dnsWithinSubtree(pattern, s))) {
        ctx.out.push(diag(f, ["sans", "dns", i], `DNS pattern \`${pattern}\` is outside issuer \`${issuer.id}\`'s permitted names (${pd.join(", ")})`));
      }
    }
    for (const [i, range] of (p.sans?.ip ?? []).entries()) {
      const c = parseCidr(range);
      if (!c) {
        ctx.out.push(diag(f, ["sans", "ip", i], `\`${range}\` is not an IP range in CIDR notation`));
        continue;
      }
      const pi = issuer.permitted?.ip;
      if (pi && !pi.some((x) => { const pc = parseCidr(x); return pc !== null && cidrContainsCidr(pc, c); })) {
        ctx.out.push(diag(f, ["sans", "ip", i], `IP range ${range} is outside issuer \`${issuer.id}\`'s permitted ranges (${pi.join(", ")})`));
      }
    }
  }
  if (p.pin_set !== undefined) {
    const ps = ctx.pinSets.get(p.pin_set);
    if (!ps) {
      if (!ctx.muted("pinset", p.pin_set)) ctx.out.push(diag(f, ["pin_set"], `pin set \`${p.pin_set}\` does not exist (pins/${p.pin_set}.yaml)`));
    } else if ((ps.value as PinSetDoc).profile !== p.id) {
      ctx.out.push(diag(f, ["pin_set"], `pin set \`${p.pin_set}\` belongs to profile \`${(ps.value as PinSetDoc).profile}\`, not \`${p.id}\``));
    }
  }
}

function checkRegex(ctx: Ctx, f: ParsedFile, path: PathSegment[], src: string): void {
  try {
    new RegExp(src, "u");
  } catch (err) {
    ctx.out.push(diag(f, path, `invalid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, "")}`));
  }
}

// ---------------------------------------------------------------- pin sets

function checkPinSet(ctx: Ctx, f: ParsedFile): void {
  const s = f.value as PinSetDoc;
  const profileFile = ctx.profiles.get(s.profile);
  if (!profileFile) {
    if (!ctx.muted("profile", s.profile)) ctx.out.push(diag(f, ["profile"], `profile \`${s.profile}\` does not exist (profiles/${s.profile}.yaml)`));
  } else {
    const prof = profileFile.value as ProfileDoc;
    for (const [i, host] of s.hosts.entries()) {
      const allowed = prof.sans?.dns ?? [];
      if (!allowed.some((pat) => pat === host || (pat.includes("*") && dnsWithinSubtree(host, pat.split("*").pop()!.replace(/^\./, ""))))) {
        ctx.out.push(diag(f, ["hosts", i], `host \`${host}\` is not a name profile \`${prof.id}\` may issue (${allowed.join(", ") || "no DNS names"})`));
      }
    }
  }
  const seen = new Map<string, number>();
  for (const [i, pin] of s.pins.entries()) {
    const bytes = Buffer.from(pin.sha256, "base64");
    if (bytes.length !== 32 || bytes.toString("base64") !== pin.sha256) {
      ctx.out.push(diag(f, ["pins", i, "sha256"], `pin \`${pin.sha256}\` is not a base64 SHA-256 digest (44 characters ending in =, as \`viw pin\` prints)`));
    }
    const prior = seen.get(pin.sha256);
    if (prior !== undefined) ctx.out.push(diag(f, ["pins", i, "sha256"], `pin repeated: already listed as pins[${prior}]`));
    seen.set(pin.sha256, i);
    if (pin.role === "retired" && !pin.retired_at) {
      ctx.out.push(diag(f, ["pins", i], "a retired pin needs `retired_at`, the date clients stop accepting it"));
    }
  }
  const roles = s.pins.map((p) => p.role);
  if (!roles.includes("primary")) ctx.out.push(diag(f, ["pins"], `pin set \`${s.id}\` has no primary pin: the key in use must be pinned`));
  if (!roles.includes("backup")) {
    ctx.out.push(diag(f, ["pins"], `pin set \`${s.id}\` has no backup pin: without one, losing or rotating the key bricks pinned clients (RFC 7469 §4.3)`));
  }
  if (s.roll.to !== undefined) {
    const target = s.pins.find((p) => p.sha256 === s.roll.to);
    if (!target) ctx.out.push(diag(f, ["roll", "to"], `roll.to \`${s.roll.to}\` is not one of this set's pins`));
    // Once retired, the roll's target has become the primary; before that it must be a deployed backup.
    else if (target.role === "retired" || (target.role === "primary" && s.roll.phase !== "retired")) {
      ctx.out.push(diag(f, ["roll", "to"], `roll.to must name a deployed backup pin${s.roll.phase === "retired" ? " (or, once retired, the new primary)" : ""}; \`${s.roll.to}\` is ${target.role}`));
    }
  }
  if ((s.roll.phase === "cutover" || s.roll.phase === "backup-deployed") && s.roll.to === undefined && s.roll.phase === "cutover") {
    ctx.out.push(diag(f, ["roll", "phase"], "phase cutover needs roll.to: the backup pin whose key certificates are now issued for"));
  }
}

// ---------------------------------------------------------------- rules

const KIND_PARAMS: Record<RuleDoc["kind"], { needs: (keyof RuleDoc)[]; window: boolean }> = {
  match: { needs: [], window: false },
  threshold: { needs: ["threshold"], window: true },
  distinct: { needs: ["distinct"], window: true },
  sequence: { needs: ["sequence"], window: false },
  absence: { needs: ["absence"], window: false },
};

function checkRule(ctx: Ctx, f: ParsedFile): void {
  const r = f.value as RuleDoc;
  const spec = KIND_PARAMS[r.kind];
  for (const need of spec.needs) {
    if (r[need] === undefined) ctx.out.push(diag(f, ["kind"], `a ${r.kind} rule needs \`${need}\``));
  }
  for (const other of ["threshold", "distinct", "sequence", "absence"] as const) {
    if (r[other] !== undefined && r.kind !== other) {
      ctx.out.push(diag(f, [other], `\`${other}\` does not apply to a ${r.kind} rule`, true));
    }
  }
  if (spec.window && r.window === undefined) ctx.out.push(diag(f, ["kind"], `a ${r.kind} rule needs a \`window\``));
  if (!spec.window && r.window !== undefined && r.kind === "match") {
    ctx.out.push(diag(f, ["window"], "a match rule has no window; use `suppress` to limit repeats", true));
  }
  const maxWin = ms(MAX_RULE_WINDOW);
  const span = (path: PathSegment[], d: string | undefined) => {
    if (d === undefined) return;
    if (ms(d) === 0) ctx.out.push(diag(f, path, `${path.join(".")} must be longer than 0`));
    else if (ms(d) > maxWin) ctx.out.push(diag(f, path, `${path.join(".")} ${d} is longer than the ${MAX_RULE_WINDOW} a rule may keep state for`));
  };
  span(["window"], r.window);
  span(["sequence", "within"], r.sequence?.within);
  span(["absence", "within"], r.absence?.within);
  if (r.distinct && !isEventField(r.distinct.field)) {
    ctx.out.push(diag(f, ["distinct", "field"], `\`${r.distinct.field}\` is not an event field`));
  }
  if (r.sequence && r.sequence.steps.length < 2) ctx.out.push(diag(f, ["sequence", "steps"], "a sequence needs at least two steps"));
  if ((r.kind === "sequence" || r.kind === "absence") && !(r.group_by?.length)) {
    ctx.out.push(diag(f, ["kind"], `a ${r.kind} rule needs \`group_by\`: the keys that join its events`));
  }
  for (const [i, field] of (r.group_by ?? []).entries()) {
    if (!isEventField(field)) ctx.out.push(diag(f, ["group_by", i], `\`${field}\` is not an event field`));
  }
  const conditions: [PathSegment[], unknown][] = [[["where"], r.where]];
  r.sequence?.steps.forEach((s, i) => conditions.push([["sequence", "steps", i, "where"], s.where]));
  if (r.absence) conditions.push([["absence", "after"], r.absence.after], [["absence", "expect"], r.absence.expect]);
  for (const [path, cond] of conditions) if (cond !== undefined) checkLogic(ctx, f, path, cond);
  const names = new Map<string, number>();
  r.tests.forEach((t, i) => {
    const prior = names.get(t.name);
    if (prior !== undefined) ctx.out.push(diag(f, ["tests", i, "name"], `test name \`${t.name}\` repeats tests[${prior}]`));
    names.set(t.name, i);
  });
  if (!r.tests.some((t) => t.expect.alerts > 0) || !r.tests.some((t) => t.expect.alerts === 0)) {
    ctx.out.push(diag(f, ["tests"], "a rule needs at least one test that fires and one that must not fire"));
  }
}

function checkLogic(ctx: Ctx, f: ParsedFile, base: PathSegment[], cond: unknown): void {
  const problems = walkLogic(cond, {
    operator: (op, args, path) => {
      const at = [...base, ...path];
      if (op === "var") {
        const name = args[0];
        if (typeof name === "string" && name !== "" && !isEventField(name)) {
          ctx.out.push(diag(f, at, `\`${name}\` is not an event field (see DESIGN.md §5; shipper extras live under extra.)`));
        }
      } else if (op === "in_list") {
        const list = args[1];
        if (typeof list !== "string") ctx.out.push(diag(f, at, "in_list takes [value, \"list-id\"]"));
        else if (!ctx.lists.has(list) && !ctx.muted("list", list)) ctx.out.push(diag(f, at, `list \`${list}\` does not exist (detections/lists/${list}.yaml)`));
      } else if (op === "pin_retired") {
        // The pin set may come from the event itself ({var: extra.pin_set}); a literal must exist.
        const set = args[1];
        if (typeof set !== "string" && !(typeof set === "object" && set !== null)) ctx.out.push(diag(f, at, "pin_retired takes [pin, \"pin-set-id\" or {var: field}]"));
        else if (typeof set === "string" && !ctx.pinSets.has(set) && !ctx.muted("pinset", set)) ctx.out.push(diag(f, at, `pin set \`${set}\` does not exist (pins/${set}.yaml)`));
      }
    },
  });
  for (const p of problems) ctx.out.push(diag(f, [...base, ...p.path], p.message));
}

// ---------------------------------------------------------------- policies

/** Returns the indices events can be routed to, for dashboards. */
function checkPolicies(ctx: Ctx): Set<string> {
  const singletons = new Map<string, ParsedFile>();
  const clientIds = new Map<string, ParsedFile>();
  const shipperIds = new Map<string, ParsedFile>();
  let indices: Set<string> | undefined;
  for (const f of ctx.policies.values()) {
    const p = f.value as PolicyDoc;
    if (p.kind === "governance" || p.kind === "retention" || p.kind === "routing") {
      const prior = singletons.get(p.kind);
      if (prior) ctx.out.push(diag(f, ["kind"], `a second ${p.kind} policy: ${prior.path} already defines it; merge them`));
      singletons.set(p.kind, f);
    }
    if (p.kind === "issuance") {
      p.clients.forEach((c, i) => {
        const prior = clientIds.get(c.id);
        if (prior) ctx.out.push(diag(f, ["clients", i, "id"], `issuance client \`${c.id}\` is already defined in ${prior.path}`));
        clientIds.set(c.id, f);
        checkIdentity(ctx, f, ["clients", i, "identity"], c.identity);
        c.profiles.forEach((id, j) => {
          if (!ctx.profiles.has(id) && !ctx.muted("profile", id)) ctx.out.push(diag(f, ["clients", i, "profiles", j], `profile \`${id}\` does not exist (profiles/${id}.yaml)`));
        });
        (c.names?.ip ?? []).forEach((r, j) => {
          if (!parseCidr(r)) ctx.out.push(diag(f, ["clients", i, "names", "ip", j], `\`${r}\` is not an IP range in CIDR notation`));
        });
      });
    } else if (p.kind === "ingest") {
      (p.shippers ?? []).forEach((s, i) => {
        const prior = shipperIds.get(s.id);
        if (prior) ctx.out.push(diag(f, ["shippers", i, "id"], `shipper \`${s.id}\` is already defined in ${prior.path}`));
        shipperIds.set(s.id, f);
        if (!isEd25519PublicKey(s.public_key)) {
          ctx.out.push(diag(f, ["shippers", i, "public_key"], "public_key is not an Ed25519 public key (base64 of the 32 raw bytes, or a PEM SPKI)"));
        }
        if (s.identity) checkIdentity(ctx, f, ["shippers", i, "identity"], s.identity);
      });
      (p.syslog?.clients ?? []).forEach((c, i) => checkIdentity(ctx, f, ["syslog", "clients", i], c));
    } else if (p.kind === "routing") {
      indices = new Set([p.default]);
      const owner = new Map<string, string>();
      p.routes.forEach((r, i) => {
        indices!.add(r.index);
        r.actions.forEach((a, j) => {
          const prior = owner.get(a);
          if (prior !== undefined) ctx.out.push(diag(f, ["routes", i, "actions", j], `action \`${a}\` is already routed to ${prior}`));
          owner.set(a, r.index);
        });
      });
    } else if (p.kind === "retention") {
      const cmp = (a: string) => (/d$/.test(a) ? Number(a.slice(0, -1)) : /mo$/.test(a) ? Number(a.slice(0, -2)) * 30.44 : Number(a.slice(0, -1)) * 365.25);
      if (cmp(p.worm) < cmp(p.events)) {
        ctx.out.push(diag(f, ["worm"], `worm retention ${p.worm} is shorter than event retention ${p.events}: sealed evidence must outlive the events it covers`));
      }
    }
  }
  if (!indices) {
    indices = new Set(["viw-auth", "viw-tunnel", "viw-gw", "viw-policy", "viw-admin", "viw-pki", "viw-alerts", "viw-other"]);
  }
  return indices;
}

function checkIdentity(ctx: Ctx, f: ParsedFile, path: PathSegment[], id: Identity): void {
  if (!ctx.issuers.has(id.issuer) && !ctx.muted("issuer", id.issuer)) {
    ctx.out.push(diag(f, [...path, "issuer"], `issuer \`${id.issuer}\` does not exist (profiles/issuers/${id.issuer}.yaml)`));
  }
}

export function isEd25519PublicKey(text: string): boolean {
  try {
    if (text.includes("BEGIN PUBLIC KEY")) return createPublicKey(text).asymmetricKeyType === "ed25519";
    const raw = Buffer.from(text, "base64");
    if (raw.length !== 32 || raw.toString("base64") !== text) return false;
    const der = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]);
    return createPublicKey({ key: der, format: "der", type: "spki" }).asymmetricKeyType === "ed25519";
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- dashboards

function checkDashboard(ctx: Ctx, f: ParsedFile, indices: Set<string>): void {
  const d = f.value as DashboardDoc;
  const ids = new Map<string, number>();
  d.panels.forEach((p, i) => {
    const prior = ids.get(p.id);
    if (prior !== undefined) ctx.out.push(diag(f, ["panels", i, "id"], `panel id \`${p.id}\` repeats panels[${prior}]`));
    ids.set(p.id, i);
    const index = (path: PathSegment[], name: string | undefined) => {
      if (name !== undefined && !indices.has(name)) {
        ctx.out.push(diag(f, path, `index \`${name}\` is not in the routing table (${[...indices].join(", ")})`));
      }
    };
    index(["panels", i, "index"], p.index);
    if (p.type === "funnel") {
      if (!p.steps || p.steps.length < 2) ctx.out.push(diag(f, ["panels", i, "type"], "a funnel panel needs at least two `steps`"));
      p.steps?.forEach((s, j) => {
        index(["panels", i, "steps", j, "index"], s.index);
        checkLogic(ctx, f, ["panels", i, "steps", j, "where"], s.where);
      });
      if (p.join !== undefined && !isEventField(p.join)) ctx.out.push(diag(f, ["panels", i, "join"], `\`${p.join}\` is not an event field`));
    } else if (p.index === undefined) {
      ctx.out.push(diag(f, ["panels", i, "type"], `a ${p.type} panel needs an \`index\``));
    }
    if ((p.type === "timeseries" || p.type === "heatmap") && p.interval === undefined) {
      ctx.out.push(diag(f, ["panels", i, "type"], `a ${p.type} panel needs an \`interval\``));
    }
    if (p.interval && ms(p.interval) > ms(d.time_range)) {
      ctx.out.push(diag(f, ["panels", i, "interval"], `interval ${p.interval} is longer than the dashboard's time_range ${d.time_range}`));
    }
    if (p.where !== undefined) checkLogic(ctx, f, ["panels", i, "where"], p.where);
    (p.group_by ?? []).forEach((g, j) => {
      if (!isEventField(g)) ctx.out.push(diag(f, ["panels", i, "group_by", j], `\`${g}\` is not an event field`));
    });
    (p.columns ?? []).forEach((c, j) => {
      if (!isEventField(c)) ctx.out.push(diag(f, ["panels", i, "columns", j], `\`${c}\` is not an event field`));
    });
    if (p.metric && typeof p.metric === "object") {
      for (const [fn, field] of Object.entries(p.metric)) {
        if (typeof field === "string" && !isEventField(field)) ctx.out.push(diag(f, ["panels", i, "metric", fn], `\`${field}\` is not an event field`));
      }
    }
  });
}
