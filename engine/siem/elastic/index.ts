/**
 * The Elasticsearch sink: a journal consumer writing daily viw-* indices
 * through the bulk helper, `_id` = event_id, the spec §8.3 (ECS) mapping as
 * an index template, mapping errors dead-lettered.
 */
export { ElasticSink, toEcs, indexTemplate, dailyIndex, ECS_FIELDS } from "./elastic.js";
export type { ElasticSinkOptions } from "./elastic.js";
