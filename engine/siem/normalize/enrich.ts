import { createRequire } from "node:module";
import { isIP } from "node:net";
import { open, type Reader, type Response } from "maxmind";

/**
 * Offline enrichment of `asn` and `country` from `src_ip`, with MMDB
 * databases read by the maintained `maxmind` reader. The default country
 * database ships inside an npm package (@ip-location-db/geo-whois-asn-country-mmdb,
 * NRO data, CC BY 4.0: redistribution allowed with attribution), so a fresh
 * install enriches without downloading anything. ASN needs an MMDB given by
 * path (GeoLite2-ASN, ipinfo or ip-location-db asn format): no ASN MMDB with a
 * redistributable licence is published on npm.
 */
export interface Enricher {
  /** Fills asn/country where the event lacks them; never overwrites a shipper's value. */
  enrich(event: Record<string, unknown>): void;
  close(): void;
}

export interface EnrichOptions {
  /** Country MMDB path; default the shipped database; `false` disables. */
  countryMmdb?: string | false;
  /** ASN MMDB path; none by default. */
  asnMmdb?: string;
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
  return {
    enrich(event) {
      const ip = event.src_ip;
      if (typeof ip !== "string" || isIP(ip) === 0) return;
      if (country && event.country === undefined) {
        const c = countryOf(country.get(ip));
        if (c !== undefined) event.country = c;
      }
      if (asn && event.asn === undefined) {
        const a = asnOf(asn.get(ip));
        if (a !== undefined) event.asn = a;
      }
    },
    close() {},
  };
}

/** For tests and deployments without enrichment. */
export const noEnrichment: Enricher = { enrich() {}, close() {} };
