/**
 * Detection: rules from the DesiredState compiled to closures and evaluated
 * over the journal's events in event time; alerts go back into the journal.
 * Offers the compiler (JSON Logic → closures), the engine, the detector
 * service (a journal consumer with hot reload), the rule test runner
 * (`viw test`) and replay of two revisions over stored events (`viw replay`).
 */
export { compileLogic, compilePredicate, truthy, LogicError, pinRetiredFrom } from "./compile.js";
export type { Compiled, CompileContext } from "./compile.js";
export { compileRule, compileRules, actionsOf, RuleCompileError, DEFAULT_LIMITS } from "./rules.js";
export type { CompiledRule } from "./rules.js";
export { Engine, DEFAULT_LATENESS_MS } from "./engine.js";
export type { AlertEvent, AlertInfo, EngineOptions, RuleStats } from "./engine.js";
export { runRuleTests, runRuleTest, expandTestEvents } from "./testing.js";
export type { RuleTestResult, RunTestsOptions } from "./testing.js";
export { eventTime } from "./time.js";
export { Detector, ALERT_INDEX } from "./detector.js";
export type { DetectorOptions } from "./detector.js";
export { replayStates, loadRevision, storedEvents, formatReplay, ReplayError } from "./replay.js";
export type { ReplayResult, RuleReplay, ReplayAlert } from "./replay.js";
