const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const DURATION = /^([0-9]+)(ms|s|m|h|d|w)$/;

/** Milliseconds of a config duration such as `180d`, `4320h`, `30m`, `400ms`. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text);
  if (!m) throw new Error(`not a duration: ${JSON.stringify(text)} (expected e.g. 180d, 4320h, 30m)`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

export function isDuration(text: unknown): text is string {
  return typeof text === "string" && DURATION.test(text);
}

/** The largest whole unit that expresses `ms` exactly: 15552000000 -> "180d". */
export function formatDuration(ms: number): string {
  for (const unit of ["w", "d", "h", "m", "s"] as const) {
    const size = UNIT_MS[unit]!;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const PERIOD = /^([1-9][0-9]*)(d|mo|y)$/;

/** A retention period (`395d`, `13mo`, `2y`), as the cut-off before `now`. */
export function periodStart(text: string, now: Date): Date {
  const m = PERIOD.exec(text);
  if (!m) throw new Error(`not a retention period: ${JSON.stringify(text)} (expected e.g. 395d, 13mo, 2y)`);
  const n = Number(m[1]);
  const d = new Date(now.getTime());
  if (m[2] === "d") d.setUTCDate(d.getUTCDate() - n);
  else if (m[2] === "mo") d.setUTCMonth(d.getUTCMonth() - n);
  else d.setUTCFullYear(d.getUTCFullYear() - n);
  return d;
}

/** Approximate days of a period, for comparing two periods (plan). */
export function periodDays(text: string): number {
  const m = PERIOD.exec(text);
  if (!m) throw new Error(`not a retention period: ${JSON.stringify(text)}`);
  const n = Number(m[1]);
  return m[2] === "d" ? n : m[2] === "mo" ? n * 30.436875 : n * 365.2425;
}
