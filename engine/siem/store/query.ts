import jsonLogic from "json-logic-js";
import { parseDuration, walkLogic, isDuration } from "../../config/index.js";
import type { NormalizedEvent } from "../journal/index.js";
import type { EventStore } from "./store.js";

export interface QueryParams {
  /** `viw-auth` (all days), `viw-auth-2026.11.22` (one day) or a glob `viw-*`. */
  index?: string;
  /** A duration before now (`1h`, `7d`) or an ISO time. */
  since?: string;
  until?: string;
  /** JSON Logic over the event (an object, or its JSON text). */
  where?: unknown;
  /** Default 100; 0 answers the count only. */
  limit?: number;
}

export interface QueryResult {
  total: number;
  hits: NormalizedEvent[];
}

/** A query parameter that cannot be used, named. */
export class QueryError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

export const MAX_LIMIT = 10_000;

interface Plan {
  sql: string;
  args: (string | number)[];
  where?: unknown;
  limit: number;
}

function time(field: string, text: string, now: Date): number {
  if (isDuration(text)) return now.getTime() - parseDuration(text);
  const t = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(t)) throw new QueryError(field, `expected a duration (1h, 7d) or an ISO time, got ${JSON.stringify(text)}`);
  return t;
}

function plan(q: QueryParams, now: Date): Plan {
  const conds: string[] = [];
  const args: (string | number)[] = [];
  if (q.index !== undefined && q.index !== "") {
    if (!/^[a-z0-9*._-]+$/.test(q.index)) throw new QueryError("index", `not an index name: ${JSON.stringify(q.index)}`);
    const day = /^(.*)-(\d{4})\.(\d{2})\.(\d{2})$/.exec(q.index);
    if (day) {
      const start = Date.UTC(Number(day[2]), Number(day[3]) - 1, Number(day[4]));
      conds.push("idx = ?", "ts >= ?", "ts < ?");
      args.push(day[1]!, start, start + 86_400_000);
    } else if (q.index.includes("*")) {
      conds.push("idx GLOB ?");
      args.push(q.index);
    } else {
      conds.push("idx = ?");
      args.push(q.index);
    }
  }
  if (q.since !== undefined && q.since !== "") {
    conds.push("ts >= ?");
    args.push(time("since", q.since, now));
  }
  if (q.until !== undefined && q.until !== "") {
    conds.push("ts < ?");
    args.push(time("until", q.until, now));
  }
  let where = q.where;
  if (typeof where === "string") {
    if (where.trim() === "") where = undefined;
    else {
      try {
        where = JSON.parse(where);
      } catch (err) {
        throw new QueryError("where", `not JSON: ${(err as Error).message}`);
      }
    }
  }
  if (where !== undefined) {
    const problems = walkLogic(where, {
      operator(op, _args, path) {
        if (op === "in_list" || op === "pin_retired") throw new QueryError("where", `operator \`${op}\` is for detection rules only (at ${path.join(".")})`);
      },
    });
    if (problems.length > 0) throw new QueryError("where", problems.map((p) => `${p.message}${p.path.length ? ` at ${p.path.join(".")}` : ""}`).join("; "));
  }
  // conditions the indexes can answer are also given to SQL (the filter still runs on every candidate)
  for (const c of indexable(where)) {
    conds.push(c.sql);
    args.push(...c.args);
  }
  const limit = q.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 0 || limit > MAX_LIMIT) throw new QueryError("limit", `expected an integer 0..${MAX_LIMIT}`);
  return { sql: conds.length ? ` WHERE ${conds.join(" AND ")}` : "", args, where, limit };
}

/** Fields with their own column (and index: component/action, user): what `indexable` hands to SQL. */
const COLUMNS: Readonly<Record<string, string>> = { component: "component", action: "action", user_id: "user_id" };

function columnOf(v: unknown): string | undefined {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length !== 1 || keys[0] !== "var") return undefined;
  const name = (v as { var: unknown }).var;
  const field = Array.isArray(name) && name.length === 1 ? name[0] : name;
  return typeof field === "string" && Object.hasOwn(COLUMNS, field) ? COLUMNS[field] : undefined;
}

/**
 * The parts of a JSON Logic filter that are equalities (or `in` a list) of a
 * column field with strings, top level or under `and`: as SQL conditions
 * they let the component/action and user indexes narrow the scan, where the
 * filter alone read every event in the time range. Exact: the columns hold
 * the field when it is a string, and the normalizer makes these fields
 * strings, so `==` with a string matches the same events as `===`; the
 * filter still runs on each candidate.
 */
function indexable(logic: unknown): { sql: string; args: string[] }[] {
  if (logic === null || typeof logic !== "object" || Array.isArray(logic)) return [];
  const ops = Object.keys(logic);
  if (ops.length !== 1) return [];
  const op = ops[0]!;
  const a = (logic as Record<string, unknown>)[op];
  if (op === "and" && Array.isArray(a)) return a.flatMap(indexable);
  if ((op === "==" || op === "===") && Array.isArray(a) && a.length === 2) {
    const [x, y] = a;
    const col = columnOf(x) ?? columnOf(y);
    const value = columnOf(x) ? y : x;
    if (col !== undefined && typeof value === "string") return [{ sql: `${col} = ?`, args: [value] }];
  }
  if (op === "in" && Array.isArray(a) && a.length === 2) {
    const col = columnOf(a[0]);
    const list = a[1];
    if (col !== undefined && Array.isArray(list) && list.length > 0 && list.length <= 100 && list.every((v) => typeof v === "string")) {
      return [{ sql: `${col} IN (${list.map(() => "?").join(", ")})`, args: list as string[] }];
    }
  }
  return [];
}

/** SQLite's plan for a query (`EXPLAIN QUERY PLAN`): which index answers it. */
export function explainQuery(store: EventStore, q: QueryParams, now = new Date()): string[] {
  const p = plan(q, now);
  const rows = store.db.prepare(`EXPLAIN QUERY PLAN SELECT doc FROM events${p.sql} ORDER BY ts DESC, rid DESC`).all(...p.args) as { detail: string }[];
  return rows.map((r) => r.detail);
}

/**
 * Events from the embedded store (DESIGN §5): time range and index narrow by
 * SQL on the indexes, the JSON Logic filter runs on each candidate, newest
 * first; `total` counts every match.
 */
export function queryEvents(store: EventStore, q: QueryParams, now = new Date()): QueryResult {
  const p = plan(q, now);
  if (p.where === undefined) {
    const total = (store.db.prepare(`SELECT COUNT(*) AS n FROM events${p.sql}`).get(...p.args) as { n: number }).n;
    if (p.limit === 0) return { total, hits: [] };
    const rows = store.db.prepare(`SELECT doc FROM events${p.sql} ORDER BY ts DESC, rid DESC LIMIT ?`).all(...p.args, p.limit) as { doc: string }[];
    return { total, hits: rows.map((r) => JSON.parse(r.doc) as NormalizedEvent) };
  }
  let total = 0;
  const hits: NormalizedEvent[] = [];
  for (const row of store.db.prepare(`SELECT doc FROM events${p.sql} ORDER BY ts DESC, rid DESC`).iterate(...p.args) as Iterable<{ doc: string }>) {
    const event = JSON.parse(row.doc) as NormalizedEvent;
    if (!truthy(p.where, event)) continue;
    total++;
    if (hits.length < p.limit) hits.push(event);
  }
  return { total, hits };
}

export interface AggregateParams extends Omit<QueryParams, "limit"> {
  /** A field (dotted path into extra/alert allowed) to count by. */
  groupBy?: string;
  /** Time buckets of this duration (`1m`, `1h`), for time series. */
  interval?: string;
}

export interface Bucket {
  key?: unknown;
  /** Bucket start (ISO), with `interval`. */
  time?: string;
  count: number;
}

/** Counts by group and/or time bucket (the dashboards' panels). */
export function aggregateEvents(store: EventStore, q: AggregateParams, now = new Date()): { total: number; buckets: Bucket[] } {
  const p = plan({ ...q, limit: 0 }, now);
  const step = q.interval !== undefined ? (isDuration(q.interval) ? parseDuration(q.interval) : NaN) : undefined;
  if (step !== undefined && !(step > 0)) throw new QueryError("interval", `expected a duration (1m, 1h), got ${JSON.stringify(q.interval)}`);
  const path = q.groupBy?.split(".");
  const buckets = new Map<string, Bucket>();
  let total = 0;
  for (const row of store.db.prepare(`SELECT ts, doc FROM events${p.sql}`).iterate(...p.args) as Iterable<{ ts: number; doc: string }>) {
    const event = JSON.parse(row.doc) as Record<string, unknown>;
    if (p.where !== undefined && !truthy(p.where, event)) continue;
    total++;
    const key = path ? path.reduce<unknown>((v, k) => (v && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined), event) : undefined;
    const t = step ? Math.floor(row.ts / step) * step : undefined;
    const id = JSON.stringify([key ?? null, t ?? null]);
    const b = buckets.get(id) ?? { ...(path ? { key: key ?? null } : {}), ...(t !== undefined ? { time: new Date(t).toISOString() } : {}), count: 0 };
    b.count++;
    buckets.set(id, b);
  }
  const out = [...buckets.values()].sort((a, b) => (a.time && b.time ? a.time.localeCompare(b.time) : 0) || b.count - a.count);
  return { total, buckets: out };
}

function truthy(logic: unknown, data: unknown): boolean {
  try {
    return jsonLogic.truthy(jsonLogic.apply(logic as jsonLogic.RulesLogic, data));
  } catch (err) {
    throw new QueryError("where", (err as Error).message);
  }
}
