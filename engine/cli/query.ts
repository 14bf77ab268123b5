import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { aggregateEvents, openStore, queryEvents, QueryError } from "../siem/store/index.js";
import { parseOptions, UsageError } from "./args.js";

const USAGE =
  "usage: viw query [--data DIR | --admin URL] [--index I] [--since 1h|ISO] [--until 1h|ISO] [--where JSONLOGIC] [--limit N] [--group-by FIELD] [--interval D] [--format json|ndjson]";

/**
 * `viw query`: events from the embedded store, newest first. Reads
 * DATA/store/events.db directly (read-only, safe beside a running daemon), or
 * asks a daemon's admin port (`--admin http://127.0.0.1:9090`).
 */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseOptions(
    argv,
    {
      data: { type: "string", default: process.env.VIW_DATA ?? ".viw-data" },
      admin: { type: "string" },
      index: { type: "string" },
      since: { type: "string" },
      until: { type: "string" },
      where: { type: "string" },
      limit: { type: "string" },
      "group-by": { type: "string" },
      interval: { type: "string" },
      format: { type: "string", default: "json" },
    },
    USAGE,
  );
  if (values.format !== "json" && values.format !== "ndjson") throw new UsageError(`--format must be json or ndjson, not ${values.format}`);
  if (values.limit !== undefined && !/^\d+$/.test(values.limit)) throw new UsageError(`--limit must be a non-negative integer, not ${values.limit}`);
  const aggregate = values["group-by"] !== undefined || values.interval !== undefined;

  let result: unknown;
  if (values.admin) {
    const url = new URL("/v1/query", values.admin);
    const params: Record<string, string | undefined> = { index: values.index, since: values.since, until: values.until, where: values.where, limit: values.limit, group_by: values["group-by"], interval: values.interval };
    for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
    let res: Response;
    try {
      res = await fetch(url);
    } catch (err) {
      process.stderr.write(`viw query: cannot reach ${url.origin}: ${(err as Error).message}\n`);
      return 1;
    }
    const body = (await res.json()) as { error?: { message: string } };
    if (!res.ok) {
      process.stderr.write(`viw query: ${body.error?.message ?? res.statusText}\n`);
      return 1;
    }
    result = body;
  } else {
    const file = join(resolve(values.data), "store", "events.db");
    if (!existsSync(file)) {
      process.stderr.write(`viw query: no event store at ${file} (is --data right? with --store elasticsearch, query Elasticsearch)\n`);
      return 1;
    }
    const store = openStore(file, { readonly: true });
    try {
      const base = { index: values.index, since: values.since, until: values.until, where: values.where };
      result = aggregate
        ? aggregateEvents(store, { ...base, groupBy: values["group-by"], interval: values.interval })
        : queryEvents(store, { ...base, limit: values.limit === undefined ? undefined : Number(values.limit) });
    } catch (err) {
      if (err instanceof QueryError) {
        process.stderr.write(`viw query: ${err.message}\n`);
        return 1;
      }
      throw err;
    } finally {
      store.close();
    }
  }
  if (values.format === "ndjson" && !aggregate) {
    const r = result as { total: number; hits: unknown[] };
    for (const h of r.hits) process.stdout.write(JSON.stringify(h) + "\n");
    process.stderr.write(`${r.hits.length} of ${r.total}\n`);
  } else process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  return 0;
}
