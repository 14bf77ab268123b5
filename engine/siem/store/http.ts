import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import { aggregateEvents, queryEvents, QueryError } from "./query.js";
import type { EventStore } from "./store.js";

/**
 * GET /v1/query on the admin port (DESIGN §5): index, since, until, where
 * (URL-encoded JSON Logic), limit → {total, hits}; with group_by and/or
 * interval → {total, buckets} for dashboards. 400 names the bad parameter.
 */
export function queryPlugin(store: () => EventStore | undefined): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get("/v1/query", async (req, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const s = store();
      if (!s) return reply.code(503).send({ error: { code: "no_store", message: "the embedded store is not enabled (events go to Elasticsearch)" } });
      try {
        let limit: number | undefined;
        if (q.limit !== undefined) {
          limit = Number(q.limit);
          if (!/^\d+$/.test(q.limit)) throw new QueryError("limit", `expected an integer, got ${JSON.stringify(q.limit)}`);
        }
        const base = { index: q.index, since: q.since, until: q.until, where: q.where };
        if (q.group_by !== undefined || q.interval !== undefined) return aggregateEvents(s, { ...base, groupBy: q.group_by, interval: q.interval });
        return queryEvents(s, { ...base, limit });
      } catch (err) {
        if (err instanceof QueryError) return reply.code(400).send({ error: { code: "bad_query", message: err.message, field: err.field } });
        throw err;
      }
    });
  };
}
