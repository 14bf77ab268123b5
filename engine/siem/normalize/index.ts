/**
 * Normalization: shipper objects to the spec §3.5 schema (a mapper generated
 * once per schema version), event ids, routing to viw-* indices, offline
 * asn/country enrichment.
 */
export { Normalizer, ingestErrorEvent } from "./normalizer.js";
export { eventSerializer, insertLate, LATE_FIELDS } from "./canonical.js";
export type { EventSerializer } from "./canonical.js";
export type { NormalizeResult, NormalizeContext } from "./normalizer.js";
export { schemaMapper, SCHEMA_VERSION, MAX_DEPTH } from "./mapper.js";
export type { FieldError, Mapper } from "./mapper.js";
export { Router } from "./route.js";
export { createEnricher, defaultCountryMmdb, defaultAsnCsvDir, AsnTable, noEnrichment } from "./enrich.js";
export type { Enricher, EnrichOptions } from "./enrich.js";
