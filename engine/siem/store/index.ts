/**
 * The embedded event store (the default sink, SQLite): idempotent by
 * event_id, indexed for time/index/component+action/user, retention by whole
 * days, and the query API (`queryEvents`, `aggregateEvents`, GET /v1/query).
 */
export { EventStore, openStore } from "./store.js";
export type { StoredEvent } from "./store.js";
export { queryEvents, aggregateEvents, explainQuery, QueryError, MAX_LIMIT } from "./query.js";
export type { QueryParams, QueryResult, AggregateParams, Bucket } from "./query.js";
export { queryPlugin } from "./http.js";
