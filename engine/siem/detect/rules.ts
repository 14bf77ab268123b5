/**
 * A rule document compiled once per revision: its conditions as closures, its
 * group key, its durations in ms, and the actions it can possibly match (so
 * the engine only offers a rule the events that could concern it).
 */
import { parseDuration } from "../../config/index.js";
import type { DesiredState, Diagnostic, RuleDoc, RuleKind, Severity } from "../../config/index.js";
import { compilePredicate, fieldGetter, LogicError } from "./compile.js";
import type { CompileContext } from "./compile.js";

export const DEFAULT_LIMITS = Object.freeze({ groups: 100_000, entries_per_group: 10_000 });

export type Predicate = (event: unknown) => boolean;

export interface CompiledRule {
  readonly id: string;
  readonly doc: RuleDoc;
  readonly kind: RuleKind;
  readonly title: string;
  readonly severity: Severity;
  readonly tags: readonly string[];
  /** objectDigest("rule", id): the rule's revision; state survives a reload only while it is unchanged. */
  readonly digest: string;
  /** The config revision (commit) the rule was loaded from. */
  readonly commit: string;
  /** Digests of the lists and pin sets the rule's conditions refer to. */
  readonly lists: Readonly<Record<string, string>>;
  readonly pinSets: Readonly<Record<string, string>>;
  readonly where: Predicate | undefined;
  /**
   * `where` for an event offered through the action index (its action is a
   * string in `actions`): the conjuncts that only test the action are already
   * known true and are left out.
   */
  readonly whereDispatched: Predicate | undefined;
  /**
   * `where` for an event offered through the action and result index (its
   * action is a string in `actions`, or `actions` is null; its result is a
   * string in `results`): the conjuncts that only test the action or only the
   * result are left out.
   */
  readonly whereResultDispatched: Predicate | undefined;
  readonly groupBy: readonly string[];
  /** The group key of an event (match without group_by: undefined, each event its own group). */
  readonly groupKey: ((event: unknown) => string) | undefined;
  readonly groupValues: (event: unknown) => Record<string, unknown>;
  readonly windowMs: number;
  readonly suppressMs: number;
  readonly limits: { groups: number; entries: number };
  /** The actions this rule can match, or null when any action may. */
  readonly actions: ReadonlySet<string> | null;
  /**
   * The `result` values (strings) its `where` can be true for, or null when
   * `where` does not pin the result down. Only `where` counts: an event the
   * kind's own conditions (steps, after/expect) cannot match still reaches the
   * rule, as it does today (a late one is counted late).
   */
  readonly results: ReadonlySet<string> | null;
  readonly count: number;
  readonly distinctField: ((event: unknown) => unknown) | undefined;
  readonly steps: readonly Predicate[];
  readonly after: Predicate | undefined;
  readonly expect: Predicate | undefined;
}

export class RuleCompileError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map((d) => `${d.file}:${d.line}:${d.col}: error: ${d.message}`).join("\n"));
  }
}

/** A value's part of a group key: strings as themselves, anything else tagged so 5 and "5" differ. */
function keyPart(v: unknown): string {
  if (typeof v === "string") return v;
  // A missing field is common in multi-field keys: its part is a constant rather than a JSON.stringify per event.
  if (v === null || v === undefined) return "\u0001null";
  return "\u0001" + JSON.stringify(v);
}

function makeGroupKey(fields: readonly string[]): ((event: unknown) => string) | undefined {
  const getters = fields.map(fieldGetter);
  if (getters.length === 0) return undefined;
  if (getters.length === 1) {
    const g = getters[0]!;
    return (e) => keyPart(g(e));
  }
  return (e) => {
    let k = keyPart(getters[0]!(e));
    for (let i = 1; i < getters.length; i++) k += "\u0000" + keyPart(getters[i]!(e));
    return k;
  };
}

/**
 * The set of `action` values a condition can be true for, or null when it
 * does not pin the action down. Recognises `==`/`===` and `in` against a
 * constant, and combines through `and` (intersection) and `or` (union).
 */
export function actionsOf(expr: unknown): Set<string> | null {
  return valuesOf(expr, "action");
}

/** Whether `v` is `{var: field}` (or `{var: [field]}`). */
function isVarOf(v: unknown, field: string): boolean {
  if (typeof v !== "object" || v === null) return false;
  const p = (v as { var?: unknown }).var;
  return Object.keys(v).length === 1 && (p === field || (Array.isArray(p) && p.length === 1 && p[0] === field));
}

/** The string values of a top-level field a condition can be true for (for a string field value), or null. */
function valuesOf(expr: unknown, field: string): Set<string> | null {
  if (typeof expr !== "object" || expr === null || Array.isArray(expr)) return null;
  const keys = Object.keys(expr);
  if (keys.length !== 1) return null;
  const op = keys[0]!;
  const raw = (expr as Record<string, unknown>)[op];
  const args = Array.isArray(raw) ? raw : [raw];
  if ((op === "==" || op === "===") && args.length === 2) {
    // For a string value, `field == "x"` holds exactly when field === "x".
    if (isVarOf(args[0], field) && typeof args[1] === "string") return new Set([args[1]]);
    if (isVarOf(args[1], field) && typeof args[0] === "string") return new Set([args[0]]);
    return null;
  }
  if (op === "in" && args.length === 2 && isVarOf(args[0], field) && Array.isArray(args[1]) && args[1].every((x) => typeof x === "string")) {
    return new Set(args[1] as string[]);
  }
  if (op === "and") {
    let acc: Set<string> | null = null;
    for (const a of args) {
      const s = valuesOf(a, field);
      if (s === null) continue;
      acc = acc === null ? s : new Set([...(acc as Set<string>)].filter((x) => s.has(x)));
    }
    return acc;
  }
  if (op === "or") {
    const acc = new Set<string>();
    for (const a of args) {
      const s = valuesOf(a, field);
      if (s === null) return null;
      for (const x of s) acc.add(x);
    }
    return acc;
  }
  return null;
}

/** The values of a field a condition is true for when it tests nothing but that field (else null). */
function exactValuesOf(expr: unknown, field: string): Set<string> | null {
  if (typeof expr !== "object" || expr === null || Array.isArray(expr) || Object.keys(expr).length !== 1) return null;
  const op = Object.keys(expr)[0]!;
  if (op === "==" || op === "===" || op === "in") return valuesOf(expr, field);
  if (op !== "and" && op !== "or") return null;
  const raw = (expr as Record<string, unknown>)[op];
  const args = Array.isArray(raw) ? raw : [raw];
  if (args.length === 0) return null;
  const sets = args.map((a) => exactValuesOf(a, field));
  if (sets.some((x) => x === null)) return null;
  if (op === "or") return union(sets);
  return new Set([...sets[0]!].filter((a) => sets.every((x) => x!.has(a))));
}

const exactActionsOf = (expr: unknown) => exactValuesOf(expr, "action");

function union(sets: (Set<string> | null)[]): Set<string> | null {
  const acc = new Set<string>();
  for (const s of sets) {
    if (s === null) return null;
    for (const x of s) acc.add(x);
  }
  return acc;
}

/** Compiles one rule of a revision; throws RuleCompileError positioned at the rule's file. */
export function compileRule(state: DesiredState, doc: RuleDoc): CompiledRule {
  const ctx: CompileContext = { lists: state.lists, pinSets: state.pinSets };
  const lists = new Set<string>();
  const pinSets = new Set<string>();
  const at = state.locate("rule", doc.id) ?? { file: `detections/${doc.id}.yaml`, line: 1, col: 1 };
  const pred = (expr: unknown, field: string): Predicate => {
    try {
      const p = compilePredicate(expr, ctx);
      for (const l of p.refs.lists) lists.add(l);
      for (const s of p.refs.pinSets) pinSets.add(s);
      return p;
    } catch (e) {
      if (e instanceof LogicError) {
        throw new RuleCompileError([{ ...at, kind: "rule", id: doc.id, message: `${[field, ...e.path].join(".")}: ${e.message}` }]);
      }
      throw e;
    }
  };
  const where = doc.where === undefined ? undefined : pred(doc.where, "where");
  // Under the action index, conjuncts that only test the action hold already: one closure call less per candidate rule.
  let whereDispatched = where;
  if (doc.where !== undefined && exactActionsOf(doc.where) !== null) whereDispatched = undefined;
  else if (doc.where !== undefined && typeof doc.where === "object" && Array.isArray((doc.where as { and?: unknown }).and)) {
    const rest = ((doc.where as { and: unknown[] }).and).filter((c) => exactActionsOf(c) === null);
    const all = (doc.where as { and: unknown[] }).and;
    if (rest.length < all.length && rest.length > 0) whereDispatched = pred(rest.length === 1 ? rest[0] : { and: rest }, "where");
  }
  // Under the action and result index, conjuncts that only test the result hold too.
  const results = doc.where === undefined ? null : valuesOf(doc.where, "result");
  let whereResultDispatched = whereDispatched;
  if (results !== null) {
    const known = (c: unknown) => exactActionsOf(c) !== null || exactValuesOf(c, "result") !== null;
    if (known(doc.where)) whereResultDispatched = undefined;
    else if (typeof doc.where === "object" && Array.isArray((doc.where as { and?: unknown }).and)) {
      const all = (doc.where as { and: unknown[] }).and;
      const rest = all.filter((c) => !known(c));
      if (rest.length === 0) whereResultDispatched = undefined;
      else if (rest.length < all.length) whereResultDispatched = pred(rest.length === 1 ? rest[0] : { and: rest }, "where");
    }
  }
  let kindActions: Set<string> | null = null;
  let steps: Predicate[] = [];
  let after: Predicate | undefined;
  let expect: Predicate | undefined;
  let windowMs = doc.window ? parseDuration(doc.window) : 0;
  if (doc.kind === "sequence" && doc.sequence) {
    // Steps with the same condition (e.g. two failures then a success) share one closure: the engine evaluates it once per event.
    const same = new Map<string, Predicate>();
    steps = doc.sequence.steps.map((s, i) => {
      const k = JSON.stringify(s.where);
      let p = same.get(k);
      if (p === undefined) same.set(k, (p = pred(s.where, `sequence.steps.${i}.where`)));
      return p;
    });
    kindActions = union(doc.sequence.steps.map((s) => actionsOf(s.where)));
    windowMs = parseDuration(doc.sequence.within);
  } else if (doc.kind === "absence" && doc.absence) {
    after = pred(doc.absence.after, "absence.after");
    expect = pred(doc.absence.expect, "absence.expect");
    kindActions = union([actionsOf(doc.absence.after), actionsOf(doc.absence.expect)]);
    windowMs = parseDuration(doc.absence.within);
  }
  const whereActions = doc.where === undefined ? null : actionsOf(doc.where);
  let actions: Set<string> | null;
  if (whereActions && kindActions) actions = new Set([...whereActions].filter((a) => kindActions.has(a)));
  else actions = whereActions ?? kindActions;

  const missing = (what: string) => new RuleCompileError([{ ...at, kind: "rule", id: doc.id, message: `kind ${doc.kind} needs ${what}` }]);
  if ((doc.kind === "threshold" || doc.kind === "distinct") && !doc.window) throw missing("window");
  if (doc.kind === "threshold" && !doc.threshold) throw missing("threshold.count");
  if (doc.kind === "distinct" && !doc.distinct) throw missing("distinct.field and distinct.count");
  if (doc.kind === "sequence" && !doc.sequence) throw missing("sequence");
  if (doc.kind === "absence" && !doc.absence) throw missing("absence");

  const groupBy = doc.group_by ?? [];
  const getters = groupBy.map((f) => [f, fieldGetter(f)] as const);
  const digest = (kind: "list" | "pinset", id: string) => state.objectDigest(kind, id) ?? "";
  return {
    id: doc.id,
    doc,
    kind: doc.kind,
    title: doc.title,
    severity: doc.severity,
    tags: doc.tags ?? [],
    digest: state.objectDigest("rule", doc.id) ?? "",
    commit: state.revision,
    lists: Object.fromEntries([...lists].sort().map((l) => [l, digest("list", l)])),
    pinSets: Object.fromEntries([...pinSets].sort().map((s) => [s, digest("pinset", s)])),
    where,
    whereDispatched,
    whereResultDispatched,
    groupBy,
    groupKey: makeGroupKey(groupBy),
    groupValues: (e) => {
      const out: Record<string, unknown> = {};
      for (const [f, g] of getters) out[f] = g(e);
      return out;
    },
    windowMs,
    suppressMs: doc.suppress !== undefined ? parseDuration(doc.suppress) : windowMs,
    limits: { groups: doc.limits?.groups ?? DEFAULT_LIMITS.groups, entries: doc.limits?.entries_per_group ?? DEFAULT_LIMITS.entries_per_group },
    actions,
    results,
    count: doc.threshold?.count ?? doc.distinct?.count ?? 0,
    distinctField: doc.distinct ? fieldGetter(doc.distinct.field) : undefined,
    steps,
    after,
    expect,
  };
}

/** Compiles every enabled rule of a revision, collecting every rule's errors. */
export function compileRules(state: DesiredState, only?: (id: string) => boolean): CompiledRule[] {
  const out: CompiledRule[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const doc of state.rules.values()) {
    if (doc.enabled === false || (only && !only(doc.id))) continue;
    try {
      out.push(compileRule(state, doc));
    } catch (e) {
      if (e instanceof RuleCompileError) diagnostics.push(...e.diagnostics);
      else throw e;
    }
  }
  if (diagnostics.length) throw new RuleCompileError(diagnostics);
  return out;
}
