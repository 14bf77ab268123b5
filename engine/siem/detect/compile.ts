/**
 * JSON Logic compiled to closures.
 *
 * Why hand-written: every event is checked against every candidate rule, so a
 * condition's cost is the detector's throughput. json-logic-js re-walks the
 * expression tree for each evaluation (Object.keys, Array.isArray, argument
 * arrays, `apply` with `this`); here the tree is walked once and each node
 * becomes a closure over its already-compiled children, constant `var` paths
 * are split once, and constant `in` sets become Set lookups. json-logic-js
 * stays the reference: test/siem/detect/compile.property.test.ts asserts that
 * compiled(expr)(data) equals jsonLogic.apply(expr, data) on random
 * expressions and data, so every operator below mirrors its semantics exactly
 * (loose `==`, truthiness of [], parseFloat in `+`, `*` without an initial
 * value, and so on), including the odd corners.
 */
import { JSONLOGIC_OPERATORS } from "../../config/index.js";
import type { ListDoc, PinSetDoc } from "../../config/index.js";
import { eventTime } from "./time.js";
import { pinRetiredFrom as retiredFrom } from "../../pki/pins/roll.js";

/** A compiled condition: `data` is what `var` reads (the event, or an element inside map/filter/...); `root` is the event. */
export type Compiled = (data: unknown, root: unknown) => unknown;

export interface CompileContext {
  lists?: ReadonlyMap<string, ListDoc>;
  pinSets?: ReadonlyMap<string, PinSetDoc>;
}

/** What a condition refers to, for provenance (alert.lists) and reload decisions. */
export interface CompileRefs {
  lists: Set<string>;
  pinSets: Set<string>;
}

export class LogicError extends Error {
  constructor(
    message: string,
    readonly path: (string | number)[],
  ) {
    super(message);
  }
}

/** JSON Logic truthiness: [] is false, everything else as in JavaScript. */
export function truthy(v: unknown): boolean {
  return Array.isArray(v) ? v.length !== 0 : !!v;
}

function isLogic(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 1;
}

/** Whether an expression contains no operation anywhere (so it evaluates to itself). */
function isPlainData(v: unknown): boolean {
  if (Array.isArray(v)) return v.every(isPlainData);
  return !isLogic(v);
}

/** json-logic-js's `var` on an already evaluated path and default. */
function lookup(data: unknown, a: unknown, b: unknown): unknown {
  const notFound = b === undefined ? null : b;
  if (a === undefined || a === "" || a === null) return data;
  const parts = String(a).split(".");
  let d: any = data;
  for (let i = 0; i < parts.length; i++) {
    if (d === null || d === undefined) return notFound;
    d = d[parts[i]!];
    if (d === undefined) return notFound;
  }
  return d;
}

/**
 * Getter makers for one- and two-segment paths, generated once per distinct path. Why: the inline caches of a
 * closure are shared by every closure made from the same source, so a single `d[k]` serving every field of every
 * rule is a megamorphic keyed load (a stub-cache probe per read, a property search on its misses: under callgrind,
 * 15% of the engine's instructions on the throughput bench). A function generated per path reads its field by
 * name with inline caches of its own. The path's segments are embedded as JSON string literals: JSON.stringify
 * escapes quotes, backslashes and control characters, so no path can become code.
 */
const getterMakers = new Map<string, (notFound: unknown, c: unknown) => (d: any) => unknown>();

/** The source of `var`'s lookup of a one- or two-segment path in `d`, leaving the value (or `nf`) in `v`. */
function readSource(parts: readonly string[]): string {
  const [k0, k1] = parts.map((p) => JSON.stringify(p));
  if (parts.length === 1) return `let v = nf; if (d !== null && d !== undefined) { v = d[${k0}]; if (v === undefined) v = nf; }`;
  return `let v = nf; if (d !== null && d !== undefined) { const m = d[${k0}]; if (m !== undefined && m !== null) { v = m[${k1}]; if (v === undefined) v = nf; } }`;
}

/** A generated function of `d` (with `nf` and `c` bound): the path's lookup, then `result` (an expression of v and c). */
function generated(parts: readonly string[], result: string, notFound: unknown, c?: unknown): (d: any) => unknown {
  const id = JSON.stringify([parts, result]);
  let make = getterMakers.get(id);
  if (make === undefined) {
    make = new Function("nf", "c", `return function (d) { ${readSource(parts)} return ${result}; };`) as (notFound: unknown, c: unknown) => (d: any) => unknown;
    getterMakers.set(id, make);
  }
  return make(notFound, c);
}

function pathGetter(parts: readonly string[], notFound: unknown): (d: any) => unknown {
  return generated(parts, "v", notFound);
}

/** A `var` with a constant path: split once; one and two segments read by a generated getter (pathGetter). */
function constantPath(path: string, notFound: unknown): (d: any) => unknown {
  const parts = path.split(".");
  if (parts.length <= 2) return pathGetter(parts, notFound);
  return (d) => {
    for (let i = 0; i < parts.length; i++) {
      if (d === null || d === undefined) return notFound;
      d = d[parts[i]!];
      if (d === undefined) return notFound;
    }
    return d;
  };
}

/**
 * `{var: "field"}` compared with a constant (`action == "login"`, `bytes_out > 1900000`), the commonest
 * condition of all: one closure reading the field and comparing, instead of a comparison calling a var closure.
 * Same semantics as the two-closure form: the var's lookup (missing or null/undefined data → its default) then
 * the operator.
 */
function fieldAgainstConstant(op: string, values: unknown[]): Compiled | undefined {
  const v = values[0];
  const k = values[1];
  if (!isLogic(v) || Object.keys(v)[0] !== "var" || !isPrimitive(k) || k === undefined) return undefined;
  const raw = v.var;
  const args: unknown[] = Array.isArray(raw) ? raw : [raw];
  const p = args[0];
  if (args.length === 0 || args.length > 2 || (typeof p !== "string" && typeof p !== "number") || p === "" || String(p).includes(".")) return undefined;
  if (args.length === 2 && !isPrimitive(args[1])) return undefined;
  const f = String(p);
  const nf = args.length === 1 || args[1] === undefined ? null : args[1];
  // Generated per field and operator (see pathGetter): the comparison's own inline caches see one field's values
  // (e.g. always strings for `action`), not those of every field compared anywhere. `op` is one of these eight (it is embedded).
  if (op === "==" || op === "!=" || op === "===" || op === "!==" || op === ">" || op === ">=" || op === "<" || op === "<=") return generated([f], `v ${op} c`, nf, k);
  return undefined;
}

/** A field getter with `var` semantics (missing → null), for group_by and distinct fields. */
export function fieldGetter(path: string): (event: unknown) => unknown {
  return constantPath(path, null);
}

/** The time from which a pin is no longer accepted by its set (Infinity: always accepted). */
export function pinRetiredFrom(set: PinSetDoc): Map<string, number> {
  // The pin-roll rules live with the pins (engine/pki/pins/roll.ts); the detector only tabulates them per set.
  return new Map(set.pins.map((p) => [p.sha256, retiredFrom(set, p.sha256)!]));
}

function listSet(list: ListDoc): Set<string> {
  return new Set(list.values.map((v) => String(v)));
}

/** Whether `v` is one of the list's values (compared as strings, so asn 64500 matches "64500"). */
function inSet(set: Set<string>, v: unknown): boolean {
  if (typeof v === "string") return set.has(v);
  if (typeof v === "number" || typeof v === "boolean") return set.has(String(v));
  return false;
}

function isPrimitive(v: unknown): boolean {
  return v === null || (typeof v !== "object" && typeof v !== "function");
}

/** Operators that read a fixed number of arguments. */
const ARITY: Record<string, number> = {
  var: 2, missing_some: 2, "==": 2, "===": 2, "!=": 2, "!==": 2, ">": 2, ">=": 2, "<": 3, "<=": 3,
  "!!": 1, "!": 1, "%": 2, in: 2, substr: 3, "-": 2, "/": 2, in_list: 2, pin_retired: 2,
};

const UNSCOPED = new Set(["if", "?:", "and", "or", "filter", "map", "reduce", "all", "none", "some"]);

class Compiler {
  readonly refs: CompileRefs = { lists: new Set(), pinSets: new Set() };
  private readonly pinTables = new Map<string, Map<string, number>>();
  private readonly listSets = new Map<string, Set<string>>();

  constructor(private readonly ctx: CompileContext) {}

  compile(node: unknown, path: (string | number)[]): Compiled {
    if (Array.isArray(node)) {
      if (isPlainData(node)) return () => node;
      const items = node.map((x, i) => this.compile(x, [...path, i]));
      return (d, r) => {
        const out = new Array(items.length);
        for (let i = 0; i < items.length; i++) out[i] = items[i]!(d, r);
        return out;
      };
    }
    if (!isLogic(node)) return () => node;
    const op = Object.keys(node)[0]!;
    if (!JSONLOGIC_OPERATORS.has(op)) throw new LogicError(`unknown operator \`${op}\``, [...path, op]);
    const raw = node[op];
    const values: unknown[] = Array.isArray(raw) ? raw : [raw];
    const at = [...path, op];
    if (UNSCOPED.has(op)) return this.scoped(op, values, at);
    const args = values.map((v, i) => this.compile(v, [...at, i]));
    const fn = this.operation(op, values, args, at);
    const arity = ARITY[op];
    if (arity === undefined || args.length <= arity) return fn;
    // json-logic-js evaluates every argument, even ones the operator ignores (and they may throw).
    const extra = args.slice(arity);
    return (d, r) => {
      const v = fn(d, r);
      for (const f of extra) f(d, r);
      return v;
    };
  }

  private scoped(op: string, values: unknown[], at: (string | number)[]): Compiled {
    const c = values.map((v, i) => this.compile(v, [...at, i]));
    const n = c.length;
    switch (op) {
      case "if":
      case "?:":
        if (n === 3) {
          const [t, y, f] = c as [Compiled, Compiled, Compiled];
          return (d, r) => (truthy(t(d, r)) ? y(d, r) : f(d, r));
        }
        return (d, r) => {
          let i = 0;
          for (; i < n - 1; i += 2) if (truthy(c[i]!(d, r))) return c[i + 1]!(d, r);
          return n === i + 1 ? c[i]!(d, r) : null;
        };
      case "and":
        if (n === 2) {
          const [a, b] = c as [Compiled, Compiled];
          return (d, r) => {
            const v = a(d, r);
            return truthy(v) ? b(d, r) : v;
          };
        }
        return (d, r) => {
          let cur: unknown;
          for (let i = 0; i < n; i++) {
            cur = c[i]!(d, r);
            if (!truthy(cur)) return cur;
          }
          return cur;
        };
      case "or":
        return (d, r) => {
          let cur: unknown;
          for (let i = 0; i < n; i++) {
            cur = c[i]!(d, r);
            if (truthy(cur)) return cur;
          }
          return cur;
        };
      default: {
        const src = c[0] ?? (() => undefined);
        const fn = c[1] ?? (() => undefined);
        switch (op) {
          case "filter":
            return (d, r) => {
              const arr = src(d, r);
              if (!Array.isArray(arr)) return [];
              return arr.filter((x) => truthy(fn(x, r)));
            };
          case "map":
            return (d, r) => {
              const arr = src(d, r);
              if (!Array.isArray(arr)) return [];
              return arr.map((x) => fn(x, r));
            };
          case "reduce": {
            const init = values[2] !== undefined ? c[2]! : () => null;
            return (d, r) => {
              const arr = src(d, r);
              const initial = init(d, r);
              if (!Array.isArray(arr)) return initial;
              return arr.reduce((acc, cur) => fn({ current: cur, accumulator: acc }, r), initial);
            };
          }
          case "all":
            return (d, r) => {
              const arr = src(d, r);
              if (!Array.isArray(arr) || !arr.length) return false;
              for (const x of arr) if (!truthy(fn(x, r))) return false;
              return true;
            };
          case "none":
            return (d, r) => {
              const arr = src(d, r);
              if (!Array.isArray(arr) || !arr.length) return true;
              for (const x of arr) if (truthy(fn(x, r))) return false;
              return true;
            };
          case "some":
            return (d, r) => {
              const arr = src(d, r);
              if (!Array.isArray(arr) || !arr.length) return false;
              for (const x of arr) if (truthy(fn(x, r))) return true;
              return false;
            };
        }
      }
    }
    throw new LogicError(`unknown operator \`${op}\``, at);
  }

  /** Operators whose arguments are all evaluated first (json-logic-js's depth-first rule). */
  private operation(op: string, values: unknown[], c: Compiled[], at: (string | number)[]): Compiled {
    const n = c.length;
    const fused = n === 2 ? fieldAgainstConstant(op, values) : undefined;
    if (fused) return fused;
    const a0 = c[0] ?? (() => undefined);
    const a1 = c[1] ?? (() => undefined);
    const a2 = c[2] ?? (() => undefined);
    const constant = (i: number) => i < values.length && isPrimitive(values[i]);
    switch (op) {
      case "var": {
        if (n === 0) return (d) => d;
        const p = values[0];
        if ((typeof p === "string" || typeof p === "number") && p !== "" && (n === 1 || isPrimitive(values[1]))) {
          const def = n === 1 || values[1] === undefined ? null : values[1];
          return constantPath(String(p), def);
        }
        return (d, r) => lookup(d, a0(d, r), a1(d, r));
      }
      case "missing": {
        const keysOf = (d: unknown, r: unknown): unknown[] => {
          const vals = c.map((f) => f(d, r));
          return Array.isArray(vals[0]) ? vals[0] : vals;
        };
        return (d, r) => this.missing(keysOf(d, r), d, r);
      }
      case "missing_some":
        return (d, r) => {
          const need = a0(d, r) as number;
          const options = a1(d, r) as any;
          const keys: unknown[] = Array.isArray(options) ? options : [options];
          const evaluated = keys.map((k) => this.dynamic(k, d, r));
          const missing = this.missing(Array.isArray(evaluated[0]) ? (evaluated[0] as unknown[]) : evaluated, d, r);
          return options.length - missing.length >= need ? [] : missing;
        };
      case "==":
        if (constant(1) && values[0] !== undefined) {
          const k = values[1];
          return (d, r) => a0(d, r) == k;
        }
        return (d, r) => a0(d, r) == a1(d, r);
      case "===":
        return (d, r) => a0(d, r) === a1(d, r);
      case "!=":
        if (constant(1) && values[0] !== undefined) {
          const k = values[1];
          return (d, r) => a0(d, r) != k;
        }
        return (d, r) => a0(d, r) != a1(d, r);
      case "!==":
        return (d, r) => a0(d, r) !== a1(d, r);
      case ">":
        return (d, r) => (a0(d, r) as any) > (a1(d, r) as any);
      case ">=":
        return (d, r) => (a0(d, r) as any) >= (a1(d, r) as any);
      case "<":
        if (n < 3) return (d, r) => (a0(d, r) as any) < (a1(d, r) as any);
        return (d, r) => {
          const a: any = a0(d, r), b: any = a1(d, r), x: any = a2(d, r);
          return x === undefined ? a < b : a < b && b < x;
        };
      case "<=":
        if (n < 3) return (d, r) => (a0(d, r) as any) <= (a1(d, r) as any);
        return (d, r) => {
          const a: any = a0(d, r), b: any = a1(d, r), x: any = a2(d, r);
          return x === undefined ? a <= b : a <= b && b <= x;
        };
      case "!!":
        return (d, r) => truthy(a0(d, r));
      case "!":
        return (d, r) => !truthy(a0(d, r));
      case "%":
        return (d, r) => (a0(d, r) as any) % (a1(d, r) as any);
      case "in": {
        const hay = values[1];
        if (Array.isArray(hay) && hay.length > 8 && hay.every((x) => isPrimitive(x) && !Number.isNaN(x))) {
          // indexOf is strict equality; a Set agrees on everything JSON can hold.
          const set = new Set(hay);
          return (d, r) => set.has(a0(d, r));
        }
        return (d, r) => {
          const a = a0(d, r);
          const b: any = a1(d, r);
          if (!b || typeof b.indexOf === "undefined") return false;
          return b.indexOf(a) !== -1;
        };
      }
      case "cat":
        if (n === 2) return (d, r) => [a0(d, r), a1(d, r)].join("");
        return (d, r) => c.map((f) => f(d, r)).join("");
      case "substr":
        return (d, r) => {
          const source = a0(d, r), start: any = a1(d, r), end: any = a2(d, r);
          if (end < 0) {
            const temp = String(source).substr(start);
            return temp.substr(0, temp.length + end);
          }
          return String(source).substr(start, end);
        };
      case "+":
        // parseFloat of a number is the number itself (String round-trips doubles), so two terms need no loop.
        if (n === 2) return (d, r) => 0 + parseFloat(a0(d, r) as any) + parseFloat(a1(d, r) as any);
        return (d, r) => {
          let acc: any = 0;
          for (let i = 0; i < n; i++) acc = parseFloat(acc) + parseFloat(c[i]!(d, r) as any);
          return acc;
        };
      case "*":
        return (d, r) => {
          if (n === 0) throw new TypeError("Reduce of empty array with no initial value");
          let acc: any = c[0]!(d, r);
          for (let i = 1; i < n; i++) acc = parseFloat(acc) * parseFloat(c[i]!(d, r) as any);
          return acc;
        };
      case "-":
        return (d, r) => {
          const a: any = a0(d, r), b: any = a1(d, r);
          return b === undefined ? -a : a - b;
        };
      case "/":
        return (d, r) => (a0(d, r) as any) / (a1(d, r) as any);
      case "min":
        return (d, r) => Math.min(...(c.map((f) => f(d, r)) as number[]));
      case "max":
        return (d, r) => Math.max(...(c.map((f) => f(d, r)) as number[]));
      case "merge":
        return (d, r) => c.reduce<unknown[]>((acc, f) => acc.concat(f(d, r)), []);
      case "in_list":
        return this.inList(values, a0, a1, at);
      case "pin_retired":
        return this.pinRetired(values, a0, a1, at);
    }
    throw new LogicError(`unknown operator \`${op}\``, at);
  }

  private missing(keys: readonly unknown[], d: unknown, r: unknown): unknown[] {
    const out: unknown[] = [];
    for (const key of keys) {
      // {"var": key}: a plain key is looked up as is; an array or an operation is evaluated first.
      const v = !Array.isArray(key) && !isLogic(key) ? lookup(d, key, undefined) : this.dynamic({ var: key }, d, r);
      if (v === null || v === "") out.push(key);
    }
    return out;
  }

  /** Evaluates data as logic, as json-logic-js does inside missing/missing_some (rare: keys that are not constants). */
  private dynamic(logic: unknown, d: unknown, r: unknown): unknown {
    if (isPrimitive(logic)) return logic;
    return this.compile(logic, [])(d, r);
  }

  private inList(values: unknown[], a0: Compiled, a1: Compiled, at: (string | number)[]): Compiled {
    const id = values[1];
    if (typeof id === "string") {
      const set = this.list(id, [...at, 1]);
      return (d, r) => inSet(set, a0(d, r));
    }
    return (d, r) => {
      const v = a0(d, r);
      const name = a1(d, r);
      const list = typeof name === "string" ? this.ctx.lists?.get(name) : undefined;
      if (!list) return false;
      return inSet(this.listSets.get(name as string) ?? this.list(name as string, at), v);
    };
  }

  private list(id: string, at: (string | number)[]): Set<string> {
    let set = this.listSets.get(id);
    if (!set) {
      const doc = this.ctx.lists?.get(id);
      if (!doc) throw new LogicError(`in_list: unknown list \`${id}\``, at);
      set = listSet(doc);
      this.listSets.set(id, set);
      this.refs.lists.add(id);
    }
    return set;
  }

  private pinTable(id: string): Map<string, number> | undefined {
    let t = this.pinTables.get(id);
    if (!t) {
      const set = this.ctx.pinSets?.get(id);
      if (!set) return undefined;
      t = pinRetiredFrom(set);
      this.pinTables.set(id, t);
      this.refs.pinSets.add(id);
    }
    return t;
  }

  private pinRetired(values: unknown[], a0: Compiled, a1: Compiled, at: (string | number)[]): Compiled {
    const id = values[1];
    const test = (table: Map<string, number> | undefined, pin: unknown, r: unknown): boolean => {
      if (!table || typeof pin !== "string") return false;
      const from = table.get(pin);
      if (from === undefined || from === Infinity) return false;
      if (from === -Infinity) return true;
      return eventTime((r as { timestamp?: unknown } | null)?.timestamp) >= from;
    };
    if (typeof id === "string") {
      const table = this.pinTable(id);
      if (!table) throw new LogicError(`pin_retired: unknown pin set \`${id}\``, [...at, 1]);
      return (d, r) => test(table, a0(d, r), r);
    }
    // A pin set named by the event (e.g. {var: extra.pin_set}): every set may be referenced.
    for (const sid of this.ctx.pinSets?.keys() ?? []) this.pinTable(sid);
    return (d, r) => {
      const pin = a0(d, r);
      const sid = a1(d, r);
      return test(typeof sid === "string" ? this.pinTable(sid) : undefined, pin, r);
    };
  }
}

/** Compiles a condition; throws LogicError (with the path below the condition) for an unknown operator, list or pin set. */
export function compileLogic(expr: unknown, ctx: CompileContext = {}): Compiled & { refs: CompileRefs } {
  const compiler = new Compiler(ctx);
  const fn = compiler.compile(expr, []);
  return Object.assign((d: unknown, r?: unknown) => fn(d, r === undefined ? d : r), { refs: compiler.refs });
}

/** Operators whose result is always a boolean. */
const BOOLEAN_OPS = new Set(["==", "===", "!=", "!==", ">", ">=", "<", "<=", "!", "!!", "in", "all", "none", "some", "in_list", "pin_retired"]);

/** Whether an expression always evaluates to a boolean (`and`/`or` of such return one of them). */
function returnsBoolean(expr: unknown): boolean {
  if (typeof expr === "boolean") return true;
  if (!isLogic(expr)) return false;
  const op = Object.keys(expr)[0]!;
  if (BOOLEAN_OPS.has(op)) return true;
  const args = expr[op];
  return (op === "and" || op === "or") && Array.isArray(args) && args.length > 0 && args.every(returnsBoolean);
}

/** Compiles a condition to a predicate on the event (truthiness of the result). */
export function compilePredicate(expr: unknown, ctx: CompileContext = {}): ((event: unknown) => boolean) & { refs: CompileRefs } {
  const compiler = new Compiler(ctx);
  const fn = compiler.compile(expr, []);
  // Every candidate rule's condition runs per event: skip the truthiness call when the result is a boolean already.
  const pred = returnsBoolean(expr) ? (fn as (e: unknown, r: unknown) => boolean) : undefined;
  return Object.assign(pred ? (e: unknown) => pred(e, e) : (e: unknown) => truthy(fn(e, e)), { refs: compiler.refs });
}
