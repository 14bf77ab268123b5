/**
 * The JSON Logic operators a condition may use: json-logic-js's own set minus
 * `method` (calls arbitrary methods) and `log`, plus viw's `in_list` and
 * `pin_retired`. The detection compiler implements exactly this set.
 */
export const JSONLOGIC_OPERATORS: ReadonlySet<string> = new Set([
  "var", "missing", "missing_some",
  "if", "?:", "and", "or", "!", "!!",
  "==", "===", "!=", "!==", ">", ">=", "<", "<=",
  "in", "cat", "substr",
  "+", "-", "*", "/", "%", "min", "max",
  "merge", "map", "filter", "reduce", "all", "none", "some",
  "in_list", "pin_retired",
]);

export interface LogicProblem {
  /** Path below the condition's root, e.g. ["and", 1, "=="]. */
  path: (string | number)[];
  message: string;
}

export interface LogicVisitor {
  operator?(op: string, args: unknown[], path: (string | number)[]): void;
}

/** Whether a value is an operation ({"op": args}) rather than data. */
export function isOperation(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 1;
}

/** Checks the shape of a condition and visits every operation in it. */
export function walkLogic(expr: unknown, visitor: LogicVisitor = {}, path: (string | number)[] = []): LogicProblem[] {
  const problems: LogicProblem[] = [];
  const visit = (v: unknown, p: (string | number)[]) => {
    if (Array.isArray(v)) {
      v.forEach((x, i) => visit(x, [...p, i]));
      return;
    }
    if (typeof v !== "object" || v === null) return;
    const keys = Object.keys(v);
    if (keys.length !== 1) {
      problems.push({ path: p, message: `a condition must have exactly one operator key; found ${keys.length === 0 ? "none" : keys.join(", ")}` });
      return;
    }
    const op = keys[0]!;
    if (!JSONLOGIC_OPERATORS.has(op)) {
      problems.push({ path: [...p, op], message: `unknown operator \`${op}\`` });
      return;
    }
    const raw = (v as Record<string, unknown>)[op];
    const args = Array.isArray(raw) ? raw : [raw];
    visitor.operator?.(op, args, [...p, op]);
    if (Array.isArray(raw)) raw.forEach((x, i) => visit(x, [...p, op, i]));
    else visit(raw, [...p, op]);
  };
  visit(expr, path);
  return problems;
}
