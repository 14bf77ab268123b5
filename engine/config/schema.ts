import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { ErrorObject, ValidateFunction } from "ajv";
import { POLICY_KINDS, schemaFileOf } from "./kinds.js";
import type { ParsedFile, PathSegment } from "./parse.js";
import { schemasDir } from "./paths.js";
import type { Diagnostic } from "./types.js";

const BASE = "https://viw.dev/schemas/";

let validators: Map<string, ValidateFunction> | undefined;

function compileAll(): Map<string, ValidateFunction> {
  // `x-message` is our own annotation: the sentence an error shows for a pattern or range.
  // No codegen optimiser: it costs ~100 ms of every process start, and the validators
  // spend ~25 ms on a 2,400-file repo either way.
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true, code: { optimize: false } });
  ajv.addVocabulary(["x-message"]);
  const dir = schemasDir();
  const names = readdirSync(dir).filter((f) => f.endsWith(".schema.json"));
  for (const name of names) ajv.addSchema(JSON.parse(readFileSync(join(dir, name), "utf8")) as object);
  const out = new Map<string, ValidateFunction>();
  for (const name of names) {
    if (name === "common.schema.json") continue;
    out.set(name, ajv.getSchema(BASE + name)!);
  }
  return out;
}

/** Validates one parsed file against its kind's schema; errors point at the offending node. */
export function validateSchema(file: ParsedFile): Diagnostic[] {
  validators ??= compileAll();
  const doc = file.value as Record<string, unknown>;
  const diag = (pos: { line: number; col: number }, message: string): Diagnostic => ({
    file: file.path,
    line: pos.line,
    col: pos.col,
    message,
    kind: file.kind,
    id: typeof doc.id === "string" ? doc.id : file.stem,
  });
  let schemaName: string;
  if (file.kind === "policy") {
    const k = doc.kind;
    if (typeof k !== "string" || !(POLICY_KINDS as readonly string[]).includes(k)) {
      const where = k === undefined ? file.at.value([]) : file.at.value(["kind"]);
      const got = k === undefined ? "missing" : `\`${String(k)}\``;
      return [diag(where, `policy \`kind\` is ${got}; it must be one of ${POLICY_KINDS.join(", ")}`)];
    }
    schemaName = schemaFileOf("policy", k);
  } else {
    schemaName = schemaFileOf(file.kind);
  }
  const validate = validators.get(schemaName)!;
  if (validate(doc)) return [];
  return describeErrors(validate.errors ?? []).map(({ path, atKey, message }) =>
    diag(atKey ? file.at.key(path) : file.at.value(path), message),
  );
}

interface Described {
  path: PathSegment[];
  atKey: boolean;
  message: string;
}

function pointerToPath(pointer: string): PathSegment[] {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^[0-9]+$/.test(s) ? Number(s) : s));
}

export function dotted(path: readonly PathSegment[]): string {
  let out = "";
  for (const seg of path) out += typeof seg === "number" ? `[${seg}]` : out === "" ? seg : `.${seg}`;
  return out;
}

function show(value: unknown): string {
  if (typeof value === "string") return `\`${value}\``;
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

function typeName(t: string | string[]): string {
  const one = (x: string) =>
    ({ string: "a string", integer: "a whole number", number: "a number", boolean: "true or false", object: "a mapping", array: "a list", null: "null" })[x] ?? x;
  return Array.isArray(t) ? t.map(one).join(" or ") : one(t);
}

function actualType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return `the string ${show(v)}`;
  if (typeof v === "number") return Number.isInteger(v) ? `the number ${v}` : `the number ${v}`;
  return `${typeof v} ${String(v)}`;
}

function closest(word: string, options: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const o of options) {
    const d = editDistance(word.toLowerCase(), o.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = o;
    }
  }
  return bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

/**
 * Turns ajv's errors into sentences a config author understands, one per
 * problem. Errors inside a failed oneOf/anyOf branch are folded into one
 * message about the alternative, since the branch-by-branch detail only
 * confuses.
 */
function describeErrors(errors: ErrorObject[]): Described[] {
  const alternatives = errors.filter((e) => e.keyword === "oneOf" || e.keyword === "anyOf");
  const insideAlternative = (e: ErrorObject) =>
    alternatives.some((a) => a !== e && e.schemaPath.startsWith(a.schemaPath.replace(/\/(oneOf|anyOf)$/, "/$1/")));
  const out: Described[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (insideAlternative(e)) continue;
    if (e.keyword === "if") continue;
    const path = pointerToPath(e.instancePath);
    const name = dotted(path);
    const field = name === "" ? "the object" : `\`${name}\``;
    const custom = (e.parentSchema as { "x-message"?: string } | undefined)?.["x-message"];
    let d: Described;
    switch (e.keyword) {
      case "required": {
        const missing = (e.params as { missingProperty: string }).missingProperty;
        d = { path, atKey: true, message: name === "" ? `missing required field \`${missing}\`` : `${field} is missing the required field \`${missing}\`` };
        break;
      }
      case "additionalProperties": {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
        const hint = closest(extra, allowed);
        d = {
          path: [...path, extra],
          atKey: true,
          message:
            `unknown field \`${name === "" ? extra : `${name}.${extra}`}\`` +
            (hint ? `; did you mean \`${hint}\`?` : allowed.length ? `; allowed here: ${allowed.join(", ")}` : ""),
        };
        break;
      }
      case "type":
        d = { path, atKey: false, message: `${field} must be ${typeName((e.params as { type: string | string[] }).type)}, not ${actualType(e.data)}` };
        break;
      case "enum": {
        const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String);
        const hint = typeof e.data === "string" ? closest(e.data, allowed) : undefined;
        d = {
          path,
          atKey: false,
          message: `${field} is ${show(e.data)}; it must be one of ${allowed.join(", ")}` + (hint ? ` (did you mean \`${hint}\`?)` : ""),
        };
        break;
      }
      case "const":
        d = { path, atKey: false, message: `${field} must be ${show((e.params as { allowedValue: unknown }).allowedValue)}, not ${show(e.data)}` };
        break;
      case "pattern":
        d = { path, atKey: false, message: `${field} ${custom ?? `must match ${(e.params as { pattern: string }).pattern}`}; got ${show(e.data)}` };
        break;
      case "minimum":
      case "maximum":
      case "exclusiveMinimum":
      case "exclusiveMaximum": {
        const p = e.params as { comparison: string; limit: number };
        d = { path, atKey: false, message: custom ? `${field} ${custom}; got ${show(e.data)}` : `${field} must be ${p.comparison} ${p.limit}; got ${show(e.data)}` };
        break;
      }
      case "minLength":
        d = { path, atKey: false, message: `${field} must not be empty` };
        break;
      case "maxLength":
        d = { path, atKey: false, message: `${field} is longer than ${(e.params as { limit: number }).limit} characters` };
        break;
      case "minItems":
        d = { path, atKey: false, message: `${field} needs at least ${(e.params as { limit: number }).limit} item(s)` };
        break;
      case "maxItems":
        d = { path, atKey: false, message: `${field} allows at most ${(e.params as { limit: number }).limit} item(s)` };
        break;
      case "uniqueItems": {
        const { i, j } = e.params as { i: number; j: number };
        const arr = e.data as unknown[];
        d = { path: [...path, i], atKey: false, message: `${field} lists ${show(arr[i])} twice (items ${j + 1} and ${i + 1})` };
        break;
      }
      case "minProperties":
        d = {
          path,
          atKey: false,
          message:
            name.endsWith("identity") || /identity|clients\[\d+\]$/.test(name)
              ? `${field} needs \`issuer\` and at least one of cn, dns, uri`
              : `${field} needs at least ${(e.params as { limit: number }).limit} field(s)`,
        };
        break;
      case "maxProperties":
        d = { path, atKey: false, message: `${field} takes exactly one of its fields` };
        break;
      case "propertyNames":
        d = { path, atKey: true, message: `${field} has a key that is not allowed: ${show((e.params as { propertyName: string }).propertyName)}` };
        break;
      case "oneOf":
      case "anyOf": {
        const desc = (e.parentSchema as { description?: string } | undefined)?.description;
        d = { path, atKey: false, message: `${field} is ${show(e.data)}, which is not allowed here` + (desc ? `: ${desc}` : "") };
        break;
      }
      default:
        d = { path, atKey: false, message: `${field} ${e.message ?? "is invalid"}` };
    }
    const key = `${dotted(d.path)}|${d.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(d);
  }
  return out;
}
