/**
 * Profile enforcement: what a CSR and a request may get from a profile, an
 * issuer and a client's authorisation. Every decision comes from the config;
 * the CSR only proposes (its extensions other than SANs are ignored).
 */
import { cidrContainsIp, dnsMatches, dnsWithinSubtree, parseCidr, parseDuration } from "../config/index.js";
import type { DistinguishedName, ExtendedKeyUsage, IssuanceClient, IssuerDoc, KeyUsage, ProfileDoc, SubjectAttribute } from "../config/index.js";
import type { Csr, Sans } from "./csr.js";
import { IssueError } from "./errors.js";

export interface Decision {
  subject: Partial<DistinguishedName>;
  sans: Sans;
  notBefore: Date;
  notAfter: Date;
  keyUsage: KeyUsage[];
  extendedKeyUsage: ExtendedKeyUsage[];
}

export interface IssueRequestShape {
  sans?: unknown;
  validity?: unknown;
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function deny(message: string, field: string, code = "profile_violation"): IssueError {
  return new IssueError(400, code, message, field);
}

function stringList(v: unknown, field: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw deny(`${field} must be a list of strings`, field, "bad_request");
  return v as string[];
}

/** The SANs of the request body (`sans`), else those of the CSR. */
export function requestedSans(req: IssueRequestShape, csr: Csr): Sans {
  if (req.sans === undefined) return { dns: [...csr.sans.dns], ip: [...csr.sans.ip], uri: [...csr.sans.uri] };
  if (!req.sans || typeof req.sans !== "object" || Array.isArray(req.sans)) throw deny("sans must be an object {dns, ip, uri}", "sans", "bad_request");
  const s = req.sans as Record<string, unknown>;
  for (const k of Object.keys(s)) if (!["dns", "ip", "uri"].includes(k)) throw deny(`sans.${k} is not a SAN type (dns, ip, uri)`, `sans.${k}`, "bad_request");
  return { dns: stringList(s.dns, "sans.dns"), ip: stringList(s.ip, "sans.ip"), uri: stringList(s.uri, "sans.uri") };
}

/**
 * Patterns of the profiles compiled once, not per request: the set is what the
 * config's profiles name, so it stays small (cleared past 1,000 anyway).
 */
const compiled = new Map<string, RegExp>();
function regex(source: string): RegExp {
  let re = compiled.get(source);
  if (!re) {
    if (compiled.size > 1000) compiled.clear();
    compiled.set(source, (re = new RegExp(source)));
  }
  return re;
}

/** CIDR ranges of the config parsed once, as the patterns above (the config validated them). */
type Cidr = NonNullable<ReturnType<typeof parseCidr>>;
const cidrs = new Map<string, Cidr>();
function cidr(text: string): Cidr {
  let c = cidrs.get(text);
  if (!c) {
    if (cidrs.size > 1000) cidrs.clear();
    cidrs.set(text, (c = parseCidr(text)!));
  }
  return c;
}

/** `*` in a URI pattern stands for one segment without `/` or `:`. */
function uriMatches(pattern: string, uri: string): boolean {
  let source = uriPatterns.get(pattern);
  if (source === undefined) uriPatterns.set(pattern, (source = "^" + pattern.split("*").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("[^/:]+") + "$"));
  return regex(source).test(uri);
}
const uriPatterns = new Map<string, string>();

function validity(profile: ProfileDoc, issuer: IssuerDoc, issuerNotAfter: Date, requested: unknown, now: Date): { notBefore: Date; notAfter: Date } {
  let ms: number;
  if (requested === undefined) ms = parseDuration(profile.validity.default);
  else {
    if (typeof requested !== "string") throw deny("validity must be a duration string such as 90d", "validity", "bad_request");
    try {
      ms = parseDuration(requested);
    } catch (err) {
      throw deny((err as Error).message, "validity", "bad_request");
    }
    if (ms <= 0) throw deny("validity must be positive", "validity", "bad_request");
    if (ms > parseDuration(profile.validity.max)) throw deny(`validity ${requested} exceeds profile ${profile.id}'s validity.max ${profile.validity.max}`, "validity", "validity_too_long");
    if (ms > parseDuration(issuer.max_validity)) throw deny(`validity ${requested} exceeds issuer ${issuer.id}'s max_validity ${issuer.max_validity}`, "validity", "validity_too_long");
  }
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + ms);
  if (notAfter > issuerNotAfter) throw deny(`validity would end ${notAfter.toISOString()}, after issuer ${issuer.id}'s certificate expires (${issuerNotAfter.toISOString()})`, "validity", "validity_too_long");
  return { notBefore, notAfter };
}

function subject(profile: ProfileDoc, csrSubject: Record<string, string>): Partial<DistinguishedName> {
  const rules = profile.subject ?? {};
  const allow = new Set<string>(rules.allow ?? ["CN"]);
  for (const k of Object.keys(rules.fixed ?? {})) allow.add(k);
  const out: Partial<DistinguishedName> = {};
  for (const [k, v] of Object.entries(csrSubject)) {
    if (!allow.has(k)) throw deny(`subject attribute ${k} is not allowed by profile ${profile.id} (allowed: ${[...allow].join(", ")})`, "csr.subject");
    out[k as SubjectAttribute] = v;
  }
  for (const k of rules.require ?? []) if (!out[k]) throw deny(`subject attribute ${k} is required by profile ${profile.id}`, "csr.subject");
  if (rules.cn_pattern && out.CN !== undefined && !regex(rules.cn_pattern).test(out.CN)) {
    throw deny(`subject CN ${JSON.stringify(out.CN)} does not match profile ${profile.id}'s cn_pattern ${rules.cn_pattern}`, "csr.subject.CN");
  }
  for (const [k, v] of Object.entries(rules.fixed ?? {})) {
    const cur = out[k as SubjectAttribute];
    if (cur !== undefined && cur !== v) throw deny(`subject ${k} must be ${JSON.stringify(v)} (fixed by profile ${profile.id})`, `csr.subject.${k}`);
    out[k as SubjectAttribute] = v;
  }
  return out;
}

function checkSans(profile: ProfileDoc, issuer: IssuerDoc, sans: Sans, subjectCn: string | undefined, field: string): Sans {
  const rules = profile.sans ?? {};
  const dns = sans.dns.map((d) => d.toLowerCase().replace(/\.$/, ""));
  if (profile.subject?.cn_in_sans && subjectCn !== undefined) {
    if (dns.length === 0 && sans.ip.length === 0 && sans.uri.length === 0) dns.push(subjectCn.toLowerCase());
    else if (!dns.includes(subjectCn.toLowerCase())) throw deny(`subject CN ${subjectCn} must also be a DNS SAN (profile ${profile.id}: cn_in_sans)`, `${field}.dns`);
  }
  for (const d of dns) {
    if (!HOSTNAME.test(d)) throw deny(`DNS SAN ${JSON.stringify(d)} is not a host name (wildcard certificates are not issued)`, `${field}.dns`);
    if (!(rules.dns ?? []).some((p) => dnsMatches(p, d))) {
      throw deny(`DNS SAN ${d} is outside profile ${profile.id}'s allowed names (${(rules.dns ?? []).join(", ") || "none"})`, `${field}.dns`, "san_not_allowed");
    }
    if (issuer.permitted?.dns?.length && !issuer.permitted.dns.some((s) => dnsWithinSubtree(d, s))) {
      throw deny(`DNS SAN ${d} is outside issuer ${issuer.id}'s name constraints (${issuer.permitted.dns.join(", ")})`, `${field}.dns`, "san_not_allowed");
    }
  }
  for (const ip of sans.ip) {
    if (!(rules.ip ?? []).some((r) => cidrContainsIp(cidr(r), ip))) throw deny(`IP SAN ${ip} is outside profile ${profile.id}'s allowed ranges (${(rules.ip ?? []).join(", ") || "none"})`, `${field}.ip`, "san_not_allowed");
    if (issuer.permitted?.ip?.length && !issuer.permitted.ip.some((r) => cidrContainsIp(cidr(r), ip))) {
      throw deny(`IP SAN ${ip} is outside issuer ${issuer.id}'s name constraints (${issuer.permitted.ip.join(", ")})`, `${field}.ip`, "san_not_allowed");
    }
  }
  for (const u of sans.uri) {
    if (!(rules.uri ?? []).some((p) => uriMatches(p, u))) throw deny(`URI SAN ${u} is outside profile ${profile.id}'s allowed URIs (${(rules.uri ?? []).join(", ") || "none"})`, `${field}.uri`, "san_not_allowed");
    const dev = rules.device_id;
    if (dev && u.startsWith(dev.uri_prefix) && !regex(dev.pattern).test(u.slice(dev.uri_prefix.length))) {
      throw deny(`device id ${JSON.stringify(u.slice(dev.uri_prefix.length))} does not match profile ${profile.id}'s device_id pattern ${dev.pattern}`, `${field}.uri`, "san_not_allowed");
    }
  }
  const count = dns.length + sans.ip.length + sans.uri.length;
  const min = rules.min ?? (profile.usage === "signing" ? 0 : 1);
  if (count < min) throw deny(`profile ${profile.id} needs at least ${min} SAN${min === 1 ? "" : "s"}, got ${count}`, field);
  if (rules.max !== undefined && count > rules.max) throw deny(`profile ${profile.id} allows at most ${rules.max} SAN${rules.max === 1 ? "" : "s"}, got ${count}`, field);
  return { dns, ip: [...sans.ip], uri: [...sans.uri] };
}

/** 403 unless the client's own `names` (when it has any) cover every SAN. */
export function checkClientNames(client: IssuanceClient, sans: Sans): void {
  const n = client.names;
  if (!n) return;
  for (const d of sans.dns) if (!(n.dns ?? []).some((p) => dnsMatches(p, d))) throw new IssueError(403, "name_not_authorized", `client ${client.id} may not request DNS name ${d} (its names: ${(n.dns ?? []).join(", ") || "none"})`, "sans.dns");
  for (const ip of sans.ip) if (!(n.ip ?? []).some((r) => cidrContainsIp(cidr(r), ip))) throw new IssueError(403, "name_not_authorized", `client ${client.id} may not request IP ${ip}`, "sans.ip");
  for (const u of sans.uri) if (!(n.uri ?? []).some((p) => uriMatches(p, u))) throw new IssueError(403, "name_not_authorized", `client ${client.id} may not request URI ${u}`, "sans.uri");
}

export interface EnforceInput {
  profile: ProfileDoc;
  issuer: IssuerDoc;
  issuerNotAfter: Date;
  csr: Csr;
  request: IssueRequestShape;
  now: Date;
  /** Rotation keeps the predecessor's subject and SANs instead of the CSR's. */
  fixedSubject?: Partial<DistinguishedName>;
  fixedSans?: Sans;
}

export function enforceProfile(input: EnforceInput): Decision {
  const { profile, issuer, csr } = input;
  if (!profile.key_types.includes(csr.keyAlgorithm)) {
    throw deny(`key type ${csr.keyAlgorithm} is not allowed by profile ${profile.id} (allowed: ${profile.key_types.join(", ")})`, "csr", "key_type");
  }
  const { notBefore, notAfter } = validity(profile, issuer, input.issuerNotAfter, input.request.validity, input.now);
  const subj = input.fixedSubject ?? subject(profile, csr.subject);
  const sans = input.fixedSans ?? checkSans(profile, issuer, requestedSans(input.request, csr), subj.CN, input.request.sans === undefined ? "csr.sans" : "sans");
  // RFC 8813: keyEncipherment only makes sense for RSA keys.
  const keyUsage = profile.key_usage.filter((u) => u !== "keyEncipherment" || csr.keyAlgorithm.startsWith("rsa"));
  return { subject: subj, sans, notBefore, notAfter, keyUsage, extendedKeyUsage: [...profile.extended_key_usage] };
}
