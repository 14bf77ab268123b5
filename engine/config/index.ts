/**
 * The config core: a revision's files (a directory or a git commit) become one
 * immutable DesiredState, or a list of positioned errors; two revisions become a
 * plan whose changes are marked relaxation or tightening.
 */
export { readDirSnapshot, readGitSnapshot } from "./snapshot.js";
export type { Snapshot, SnapshotFile } from "./snapshot.js";
export { loadSnapshot, loadSnapshotAsync } from "./load.js";
export type { LoadResult, LoadOptions } from "./load.js";
export { buildState, DEFAULT_INGEST_LIMITS } from "./state.js";
export type { DesiredState, StateKind } from "./state.js";
export { canonicalJson } from "./canonical.js";
export { parseDuration, formatDuration, isDuration, periodStart, periodDays } from "./duration.js";
export { EVENT_FIELDS, ACTIONS, DEFAULT_ROUTES, DEFAULT_INDEX, isEventField } from "./events.js";
export { JSONLOGIC_OPERATORS, walkLogic } from "./jsonlogic.js";
export { parseCidr, cidrContainsIp, cidrContainsCidr, ipBytes, dnsMatches, dnsWithinSubtree } from "./net.js";
export { USAGE_MAX_VALIDITY, MAX_RULE_WINDOW, isEd25519PublicKey } from "./semantic.js";
export { packageRoot, schemasDir } from "./paths.js";
export { CONFIG_FOLDERS } from "./kinds.js";
export * from "./types.js";
export { planChanges, judge } from "./plan.js";
export type { Plan, Change, Verdict } from "./plan.js";
