/**
 * Event time helpers. Every event's `timestamp` is parsed once per event on the
 * detector's hot path, so the common RFC 3339 UTC shape is parsed by hand
 * (Date.parse costs several times more); anything else falls back to Date.parse.
 */

const DAYS_BEFORE_MONTH = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

function digits(s: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/** Milliseconds since the epoch, or NaN when `v` is not a time. */
export function eventTime(v: unknown): number {
  if (typeof v !== "string") return typeof v === "number" && Number.isFinite(v) ? v : NaN;
  // Fast path: YYYY-MM-DDTHH:MM:SS[.fff...]Z
  const n = v.length;
  if (n >= 20 && v.charCodeAt(n - 1) === 90 /* Z */ && v.charCodeAt(4) === 45 && v.charCodeAt(7) === 45 && v.charCodeAt(13) === 58 && v.charCodeAt(16) === 58) {
    const y = digits(v, 0, 4), mo = digits(v, 5, 2), d = digits(v, 8, 2);
    const h = digits(v, 11, 2), mi = digits(v, 14, 2), se = digits(v, 17, 2);
    const sep = v.charCodeAt(10);
    if (y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h >= 0 && h < 24 && mi >= 0 && mi < 60 && se >= 0 && se < 60 && (sep === 84 || sep === 116)) {
      let ms = 0;
      if (n > 20) {
        if (v.charCodeAt(19) !== 46 /* . */) return Date.parse(v);
        const frac = n - 21;
        if (frac < 1) return NaN;
        const f = digits(v, 20, Math.min(frac, 3));
        if (f < 0 || (frac > 3 && digits(v, 23, frac - 3) < 0)) return Date.parse(v);
        ms = frac === 1 ? f * 100 : frac === 2 ? f * 10 : f;
      }
      const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
      const mdays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1]!;
      if (d > mdays) return NaN;
      // Days from 1970-01-01 to the start of year y.
      const yy = y - 1;
      const days =
        365 * (y - 1970) + (Math.floor(yy / 4) - Math.floor(yy / 100) + Math.floor(yy / 400)) - 477 + DAYS_BEFORE_MONTH[mo - 1]! + (leap && mo > 2 ? 1 : 0) + d - 1;
      return ((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms;
    }
  }
  return Date.parse(v);
}

export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
