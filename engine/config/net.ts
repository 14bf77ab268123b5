import { isIP } from "node:net";

/** An IP range: the network address as bytes (4 or 16) and the prefix length. */
export interface Cidr {
  bytes: Uint8Array;
  prefix: number;
}

/** The address as 4 (IPv4) or 16 (IPv6) bytes, or null when it is not an IP address. */
export function ipBytes(ip: string): Uint8Array | null {
  const v = isIP(ip);
  if (v === 4) return Uint8Array.from(ip.split(".").map(Number));
  if (v !== 6) return null;
  const groups = (part: string): number[] => {
    const out: number[] = [];
    for (const g of part ? part.split(":") : []) {
      if (g.includes(".")) out.push(...ipBytes(g)!);
      else out.push(parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff);
    }
    return out;
  };
  const gap = ip.indexOf("::");
  if (gap < 0) return Uint8Array.from(groups(ip));
  const head = groups(ip.slice(0, gap));
  const tail = groups(ip.slice(gap + 2));
  return Uint8Array.from([...head, ...new Array<number>(16 - head.length - tail.length).fill(0), ...tail]);
}

export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const bytes = ipBytes(text.slice(0, slash));
  const prefix = Number(text.slice(slash + 1));
  if (!bytes || !Number.isInteger(prefix) || prefix < 0 || prefix > bytes.length * 8) return null;
  return { bytes, prefix };
}

function prefixEqual(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole]! & mask) === (b[whole]! & mask);
}

/** Whether `ip` (text or bytes) lies in `range`. */
export function cidrContainsIp(range: Cidr, ip: string | Uint8Array): boolean {
  const b = typeof ip === "string" ? ipBytes(ip) : ip;
  return !!b && b.length === range.bytes.length && prefixEqual(range.bytes, b, range.prefix);
}

/** Whether every address of `inner` lies in `outer`. */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return outer.bytes.length === inner.bytes.length && inner.prefix >= outer.prefix && prefixEqual(outer.bytes, inner.bytes, outer.prefix);
}

/** Whether the bits below the prefix are zero (10.0.0.0/8, not 10.1.2.3/8). */
export function isNetworkAddress(c: Cidr): boolean {
  for (let bit = c.prefix; bit < c.bytes.length * 8; bit++) {
    if (c.bytes[bit >> 3]! & (0x80 >> (bit & 7))) return false;
  }
  return true;
}

/**
 * Whether a DNS name or pattern lies in a name-constraint subtree (RFC 5280:
 * `viworks.example` permits itself and every name below it). For a pattern,
 * the fixed labels after its last `*` decide.
 */
export function dnsWithinSubtree(nameOrPattern: string, subtree: string): boolean {
  const s = subtree.replace(/^\./, "");
  const labels = nameOrPattern.split(".");
  const lastStar = labels.lastIndexOf("*");
  const fixed = labels.slice(lastStar + 1).join(".");
  if (lastStar < 0) return fixed === s || fixed.endsWith("." + s);
  return fixed === s || fixed.endsWith("." + s);
}

/** Whether a DNS name matches a pattern where `*` stands for exactly one label. */
export function dnsMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase().split(".");
  const n = name.toLowerCase().replace(/\.$/, "").split(".");
  if (p.length !== n.length) return false;
  for (let i = 0; i < p.length; i++) {
    if (p[i] !== "*" && p[i] !== n[i]) return false;
    if (p[i] === "*" && n[i] === "") return false;
  }
  return true;
}
