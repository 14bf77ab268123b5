import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { isIP } from "node:net";
import { open, type Reader, type Response } from "maxmind";

/**
 * Offline enrichment of `asn` and `country` from `src_ip`, with MMDB
 * databases read by the maintained `maxmind` reader. The default country
 * database ships inside an npm package (@ip-location-db/geo-whois-asn-country-mmdb,
 * NRO data, CC BY 4.0: redistribution allowed with attribution), so a fresh
 * install enriches without downloading anything. No ASN *MMDB* with a
 * redistributable licence is on npm, so the default ASN data is the CSV range
 * table of @ip-location-db/asn (RouteViews + RIRs + DB-IP ASN Lite, CC BY 4.0:
 * attribution to routeviews.org and DB-IP.com), loaded into sorted typed
 * arrays (`AsnTable`); an ASN MMDB given by path (GeoLite2-ASN, ipinfo) is
 * read with the MMDB reader instead.
 */
export interface Enricher {
  /** Fills asn/country where the event lacks them; never overwrites a shipper's value. */
  enrich(event: Record<string, unknown>): void;
  close(): void;
}

export interface EnrichOptions {
  /** Country MMDB path; default the shipped database; `false` disables. */
  countryMmdb?: string | false;
  /** ASN MMDB path (GeoLite2-ASN, ipinfo); when set it is used instead of the shipped table. */
  asnMmdb?: string;
  /** The shipped ASN range table (@ip-location-db/asn CSV) directory; default the package's; `false` disables. */
  asnCsvDir?: string | false;
}

export function defaultAsnCsvDir(): string {
  return dirname(createRequire(import.meta.url).resolve("@ip-location-db/asn/package.json"));
}

/**
 * IP → ASN from the range CSVs (`start,end,asn,org`, sorted, disjoint), as
 * the `-num` files give them: IPv4 as 32-bit integers, IPv6 as 128-bit
 * decimals. Hand-written because the data ships only as CSV (no MMDB reader
 * applies) and the lookup is a binary search over ~400k IPv4 and ~100k IPv6
 * ranges: typed arrays keep that in ~8 MB, where objects per range would
 * take ten times as much.
 */
export class AsnTable {
  private constructor(
    private readonly v4start: Uint32Array,
    private readonly v4end: Uint32Array,
    private readonly v4asn: Uint32Array,
    /** IPv6 bounds as (high 64, low 64) pairs. */
    private readonly v6start: BigUint64Array,
    private readonly v6end: BigUint64Array,
    private readonly v6asn: Uint32Array,
  ) {}

  static async load(dir: string): Promise<AsnTable> {
    const [v4, v6] = await Promise.all([readFile(join(dir, "asn-ipv4-num.csv"), "latin1"), readFile(join(dir, "asn-ipv6-num.csv"), "latin1")]);
    const rows4 = ranges(v4);
    const rows6 = ranges(v6);
    const v4start = new Uint32Array(rows4.length);
    const v4end = new Uint32Array(rows4.length);
    const v4asn = new Uint32Array(rows4.length);
    rows4.forEach(([a, b, n], i) => {
      v4start[i] = Number(a);
      v4end[i] = Number(b);
      v4asn[i] = n;
    });
    const v6start = new BigUint64Array(rows6.length * 2);
    const v6end = new BigUint64Array(rows6.length * 2);
    const v6asn = new Uint32Array(rows6.length);
    const M = (1n << 64n) - 1n;
    rows6.forEach(([a, b, n], i) => {
      const x = BigInt(a);
      const y = BigInt(b);
      v6start[2 * i] = x >> 64n;
      v6start[2 * i + 1] = x & M;
      v6end[2 * i] = y >> 64n;
      v6end[2 * i + 1] = y & M;
      v6asn[i] = n;
    });
    return new AsnTable(v4start, v4end, v4asn, v6start, v6end, v6asn);
  }

  /** The ASN announcing `ip` (a valid IPv4 or IPv6 text), or undefined. */
  lookup(ip: string): number | undefined {
    if (isIP(ip) === 4) {
      const x = ipv4Number(ip);
      const s = this.v4start;
      let lo = 0;
      let hi = s.length - 1;
      if (hi < 0 || x < s[0]!) return undefined;
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1;
        if (s[mid]! <= x) lo = mid;
        else hi = mid - 1;
      }
      return x <= this.v4end[lo]! ? this.v4asn[lo] : undefined;
    }
    const v = ipv6Number(ip);
    if (v === undefined) return undefined;
    const [h, l] = v;
    const s = this.v6start;
    const le = (i: number) => s[2 * i]! < h || (s[2 * i] === h && s[2 * i + 1]! <= l);
    let lo = 0;
    let hi = this.v6asn.length - 1;
    if (hi < 0 || !le(0)) return undefined;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (le(mid)) lo = mid;
      else hi = mid - 1;
    }
    const e = this.v6end;
    const inside = h < e[2 * lo]! || (h === e[2 * lo] && l <= e[2 * lo + 1]!);
    return inside ? this.v6asn[lo] : undefined;
  }
}

/** `start,end,asn,...` lines: the first three fields (the organisation, possibly quoted, is not needed). */
function ranges(text: string): [string, string, number][] {
  const out: [string, string, number][] = [];
  let at = 0;
  while (at < text.length) {
    let nl = text.indexOf("\n", at);
    if (nl < 0) nl = text.length;
    const c1 = text.indexOf(",", at);
    const c2 = c1 < 0 ? -1 : text.indexOf(",", c1 + 1);
    if (c2 > 0 && c2 < nl) {
      let c3 = text.indexOf(",", c2 + 1);
      if (c3 < 0 || c3 > nl) c3 = nl;
      const asn = Number(text.slice(c2 + 1, c3));
      if (Number.isInteger(asn) && asn > 0) out.push([text.slice(at, c1), text.slice(c1 + 1, c2), asn]);
    }
    at = nl + 1;
  }
  return out;
}

function ipv4Number(ip: string): number {
  let n = 0;
  let part = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 0x2e) {
      n = n * 256 + part;
      part = 0;
    } else part = part * 10 + (c - 0x30);
  }
  return n * 256 + part;
}

/** A valid IPv6 text (isIP said so) as its (high, low) 64-bit halves; an embedded IPv4 tail is allowed. */
function ipv6Number(ip: string): [bigint, bigint] | undefined {
  let text = ip.toLowerCase();
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const words: number[] = [];
  const parse = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (g.includes(".")) {
        const v = ipv4Number(g);
        out.push(v >>> 16, v & 0xffff);
      } else out.push(parseInt(g, 16));
    }
    return out;
  };
  const dbl = text.indexOf("::");
  if (dbl >= 0) {
    const head = parse(text.slice(0, dbl));
    const tail = parse(text.slice(dbl + 2));
    words.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else words.push(...parse(text));
  if (words.length !== 8) return undefined;
  let h = 0n;
  let l = 0n;
  for (let i = 0; i < 4; i++) h = (h << 16n) | BigInt(words[i]!);
  for (let i = 4; i < 8; i++) l = (l << 16n) | BigInt(words[i]!);
  return [h, l];
}

export function defaultCountryMmdb(): string {
  return createRequire(import.meta.url).resolve("@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb");
}

type Rec = Response & Record<string, unknown>;

function countryOf(r: Rec | null): string | undefined {
  if (!r) return undefined;
  if (typeof r.country_code === "string") return r.country_code;
  const c = r.country as { iso_code?: string } | undefined;
  if (c && typeof c.iso_code === "string") return c.iso_code;
  return undefined;
}

function asnOf(r: Rec | null): number | undefined {
  if (!r) return undefined;
  const v = r.autonomous_system_number ?? r.asn;
  if (typeof v === "number") return v;
  if (typeof v === "string" && /^(AS)?\d+$/i.test(v)) return Number(v.replace(/^AS/i, ""));
  return undefined;
}

export async function createEnricher(opts: EnrichOptions = {}): Promise<Enricher> {
  const countryPath = opts.countryMmdb === undefined ? defaultCountryMmdb() : opts.countryMmdb;
  const country = countryPath ? ((await open(countryPath, { cache: { max: 10_000 } })) as Reader<Rec>) : undefined;
  const asn = opts.asnMmdb ? ((await open(opts.asnMmdb, { cache: { max: 10_000 } })) as Reader<Rec>) : undefined;
  const asnDir = opts.asnMmdb || opts.asnCsvDir === false ? undefined : (opts.asnCsvDir ?? defaultAsnCsvDir());
  const table = asnDir ? await AsnTable.load(asnDir) : undefined;
  return {
    enrich(event) {
      const ip = event.src_ip;
      if (typeof ip !== "string" || isIP(ip) === 0) return;
      if (country && event.country === undefined) {
        const c = countryOf(country.get(ip));
        if (c !== undefined) event.country = c;
      }
      if (event.asn === undefined) {
        const a = asn ? asnOf(asn.get(ip)) : table?.lookup(ip);
        if (a !== undefined) event.asn = a;
      }
    },
    close() {},
  };
}

/** For tests and deployments without enrichment. */
export const noEnrichment: Enricher = { enrich() {}, close() {} };
