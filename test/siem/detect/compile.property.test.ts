import { describe, expect, it } from "vitest";
import fc from "fast-check";
import jsonLogic from "json-logic-js";
import { compileLogic, compilePredicate, LogicError } from "../../../engine/siem/detect/compile.js";
import type { ListDoc, PinSetDoc } from "../../../engine/config/index.js";

const lists = new Map<string, ListDoc>([
  ["ja3", { id: "ja3", purpose: "allow", values: ["aaa", "bbb", 64500] }],
  ["asns", { id: "asns", purpose: "deny", values: [1, 2, 3] }],
]);
const pinA = "A".repeat(43) + "=";
const pinB = "B".repeat(43) + "=";
const pinC = "C".repeat(43) + "=";
const pinSets = new Map<string, PinSetDoc>([
  [
    "gw",
    {
      id: "gw",
      profile: "p",
      hosts: ["gw.example"],
      pins: [
        { sha256: pinA, role: "primary" },
        { sha256: pinB, role: "backup" },
        { sha256: pinC, role: "retired", retired_at: "2026-05-01" },
      ],
      roll: { phase: "cutover", since: "2026-11-01", to: pinB, window: "10d" },
    },
  ],
]);

// Reference implementations of viw's two operators, written naively and
// registered with json-logic-js so the whole language is compared.
let root: Record<string, unknown> = {};
jsonLogic.add_operation("in_list", (v: unknown, id: unknown) => {
  const list = typeof id === "string" ? lists.get(id) : undefined;
  if (!list || !["string", "number", "boolean"].includes(typeof v)) return false;
  return list.values.map(String).includes(String(v));
});
jsonLogic.add_operation("pin_retired", (pin: unknown, id: unknown) => {
  const set = typeof id === "string" ? pinSets.get(id) : undefined;
  const p = set?.pins.find((x) => x.sha256 === pin);
  if (!set || !p || typeof pin !== "string") return false;
  const t = Date.parse(String(root.timestamp));
  if (p.role === "retired") return p.retired_at === undefined || t >= Date.parse(p.retired_at);
  if (p.role === "primary" && set.roll.phase === "cutover" && set.roll.to && set.roll.to !== pin)
    return t >= Date.parse(set.roll.since) + 10 * 86_400_000;
  return false;
});

/** Deep equality where NaN equals NaN and 0 differs from -0 (what a caller could observe). */
function same(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => same((a as any)[k], (b as any)[k]));
  }
  return false;
}

const paths = ["a", "b", "n", "s", "arr", "obj", "obj.x", "obj.y.z", "nums", "missing", "", "0", "pin", "set", "timestamp", "list"];
const scalar = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.double({ noDefaultInfinity: false }),
  fc.constantFrom("", "0", "1", "a", "b", "abc", "1.5", " 2", "true", "null", "aaa", "64500", pinA, pinC, "gw", "ja3", "asns"),
  fc.boolean(),
  fc.constant(null),
);
const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: "small", withCrossShrink: true }, scalar, fc.array(tie("v"), { maxLength: 3 }), fc.dictionary(fc.constantFrom("x", "y", "z", "a"), tie("v"), { maxKeys: 3 })),
})).v;

const OPS_ANY = ["==", "===", "!=", "!==", ">", ">=", "<", "<=", "!", "!!", "%", "in", "cat", "substr", "+", "-", "*", "/", "min", "max", "merge", "missing", "missing_some", "if", "?:", "and", "or", "in_list", "pin_retired"];
const OPS_SCOPED = ["map", "filter", "reduce", "all", "none", "some"];

const expr: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  e: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    scalar,
    fc.constantFrom(...paths).map((p) => ({ var: p })),
    fc.tuple(fc.constantFrom(...paths), scalar).map(([p, d]) => ({ var: [p, d] })),
    fc.tuple(fc.constantFrom(...OPS_ANY), fc.array(tie("e"), { maxLength: 4 })).map(([op, args]) => ({ [op]: args })),
    fc.tuple(fc.constantFrom(...OPS_ANY), tie("e")).map(([op, arg]) => ({ [op]: arg })),
    fc.tuple(fc.constantFrom(...OPS_SCOPED), tie("e"), tie("e"), fc.option(tie("e"), { nil: undefined })).map(([op, a, b, c]) => ({
      [op]: c === undefined ? [a, b] : [a, b, c],
    })),
    fc.array(tie("e"), { maxLength: 3 }),
    fc.tuple(fc.constantFrom("ja3", "asns"), tie("e")).map(([l, v]) => ({ in_list: [v, l] })),
    fc.tuple(fc.constantFrom(pinA, pinB, pinC), fc.constantFrom("gw", { var: "set" })).map(([p, s]) => ({ pin_retired: [p, s] })),
  ),
})).e;

const data = fc.record(
  {
    a: json,
    b: json,
    n: fc.oneof(fc.integer(), fc.double()),
    s: fc.string({ maxLength: 4 }),
    arr: fc.array(json, { maxLength: 4 }),
    nums: fc.array(fc.integer({ min: -10, max: 10 }), { maxLength: 5 }),
    obj: fc.record({ x: json, y: fc.record({ z: json }) }),
    pin: fc.constantFrom(pinA, pinB, pinC, "nope"),
    set: fc.constantFrom("gw", "other"),
    timestamp: fc.constantFrom("2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z", "2026-11-05T12:00:00Z", "2026-11-23T10:00:00.250Z"),
    list: fc.constantFrom("ja3", "asns", "nope"),
  },
  { requiredKeys: ["timestamp"] },
);

function run(f: () => unknown): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: f() };
  } catch {
    return { ok: false };
  }
}

/** A field compared with a constant, the form compiled to one fused closure (every var form and operator it takes). */
const fieldVsConstant = fc
  .tuple(
    fc.constantFrom("==", "===", "!=", "!==", ">", ">=", "<", "<="),
    fc.constantFrom(...paths, "1", 0, 1),
    fc.constantFrom("plain", "array", "default"),
    scalar,
    scalar,
  )
  .map(([op, p, form, k, def]) => ({ [op]: [form === "plain" ? { var: p } : form === "array" ? { var: [p] } : { var: [p, def] }, k] }));

describe("compiled JSON Logic equals json-logic-js", () => {
  it("on a field compared with a constant (the fused form), in events and inside map/filter", () => {
    fc.assert(
      fc.property(fieldVsConstant, data, fc.boolean(), (e, d, scoped) => {
        root = d;
        const x = scoped ? { map: [{ var: "arr" }, e] } : e;
        const want = run(() => jsonLogic.apply(x as any, d));
        const got = run(() => compileLogic(x, { lists, pinSets })(d));
        expect(got.ok).toBe(want.ok);
        if (got.ok && want.ok && !same(got.value, want.value)) {
          throw new Error(`differs: ${JSON.stringify(x)} on ${JSON.stringify(d)}: compiled ${String(got.value)} vs ${String(want.value)}`);
        }
      }),
      { numRuns: 5_000 },
    );
  });

  it("on random expressions and events", () => {
    fc.assert(
      fc.property(expr, data, (e, d) => {
        root = d;
        const want = run(() => jsonLogic.apply(e as any, d));
        let fn: ((x: unknown) => unknown) | undefined;
        try {
          fn = compileLogic(e, { lists, pinSets });
        } catch (err) {
          // Only a reference to something unknown may fail at compile time.
          expect(err).toBeInstanceOf(LogicError);
          return;
        }
        const got = run(() => fn!(d));
        expect(got.ok).toBe(want.ok);
        if (got.ok && want.ok && !same(got.value, want.value)) {
          throw new Error(`differs: ${JSON.stringify(e)} on ${JSON.stringify(d)}: compiled ${String(got.value)} vs ${String(want.value)}`);
        }
      }),
      { numRuns: 20_000 },
    );
  });

  it("predicates are booleans equal to the truthiness of json-logic-js's result", () => {
    fc.assert(
      fc.property(fc.oneof(expr, fc.array(expr, { minLength: 1, maxLength: 3 }).map((a) => ({ and: a })), fc.array(expr, { minLength: 1, maxLength: 3 }).map((a) => ({ or: a }))), data, (e, d) => {
        root = d;
        const want = run(() => jsonLogic.truthy(jsonLogic.apply(e as any, d)));
        let fn: ((x: unknown) => boolean) | undefined;
        try {
          fn = compilePredicate(e, { lists, pinSets });
        } catch (err) {
          expect(err).toBeInstanceOf(LogicError);
          return;
        }
        const got = run(() => fn!(d));
        expect(got.ok).toBe(want.ok);
        if (got.ok && want.ok) {
          expect(typeof got.value).toBe("boolean");
          if (got.value !== want.value) throw new Error(`differs: ${JSON.stringify(e)} on ${JSON.stringify(d)}: compiled ${String(got.value)} vs ${String(want.value)}`);
        }
      }),
      { numRuns: 10_000 },
    );
  });

  it("the default rules' shapes agree on hand-picked events", () => {
    const where = {
      and: [
        { in: [{ var: "action" }, ["tls_handshake", "tls_session_establish"]] },
        { "!!": [{ var: "tls_ja3" }] },
        { "!": [{ in_list: [{ var: "tls_ja3" }, "ja3"] }] },
      ],
    };
    const f = compileLogic(where, { lists, pinSets });
    for (const ev of [
      { action: "tls_handshake", tls_ja3: "zzz" },
      { action: "tls_handshake", tls_ja3: "aaa" },
      { action: "tls_handshake" },
      { action: "login", tls_ja3: "zzz" },
    ]) {
      expect(f(ev)).toEqual(jsonLogic.apply(where as any, ev));
    }
  });

  it("loose equality is json-logic-js's", () => {
    const cases: [unknown, unknown][] = [[1, "1"], [0, ""], [null, undefined], [0, false], ["", false], [[1], 1], [[], ""], [null, 0]];
    for (const [x, y] of cases) {
      const e = { "==": [{ var: "x" }, y] };
      expect(compileLogic(e)({ x })).toBe(jsonLogic.apply(e as any, { x }));
    }
  });

  it("pin_retired: retired pins after retired_at, the outgoing primary after the cutover window", () => {
    const f = compileLogic({ pin_retired: [{ var: "pin" }, { var: "set" }] }, { pinSets });
    expect(f({ pin: pinC, set: "gw", timestamp: "2026-04-30T23:59:59Z" })).toBe(false);
    expect(f({ pin: pinC, set: "gw", timestamp: "2026-05-01T00:00:00Z" })).toBe(true);
    expect(f({ pin: pinA, set: "gw", timestamp: "2026-11-10T23:59:59Z" })).toBe(false);
    expect(f({ pin: pinA, set: "gw", timestamp: "2026-11-11T00:00:00Z" })).toBe(true);
    expect(f({ pin: pinB, set: "gw", timestamp: "2027-01-01T00:00:00Z" })).toBe(false);
    expect(f({ pin: pinC, set: "unknown", timestamp: "2027-01-01T00:00:00Z" })).toBe(false);
  });

  it("rejects unknown operators, lists and pin sets with the path", () => {
    expect(() => compileLogic({ and: [true, { method: ["x", "toString"] }] })).toThrow(/unknown operator `method`/);
    try {
      compileLogic({ and: [true, { in_list: [{ var: "x" }, "nope"] }] }, { lists });
      expect.unreachable();
    } catch (e) {
      expect((e as LogicError).path).toEqual(["and", 1, "in_list", 1]);
      expect((e as Error).message).toMatch(/unknown list `nope`/);
    }
    expect(() => compileLogic({ pin_retired: [{ var: "p" }, "nope"] }, { pinSets })).toThrow(/unknown pin set `nope`/);
  });

  it("field names that are not identifiers read as json-logic-js reads them (the generated getters embed them as literals)", () => {
    const odd = ['a"b', "a\\b", "a'b", "a\u2028b", "a`b${x}", "__proto__", "constructor", "0", "", " ", "x\ny", "});process.exit(1);({"];
    const name = fc.oneof(fc.constantFrom(...odd), fc.string({ maxLength: 4 }));
    fc.assert(
      fc.property(name, fc.option(name, { nil: undefined }), fc.jsonValue(), fc.constantFrom<unknown>(undefined, null, 7, "dflt"), (a, b, leaf, dflt) => {
        const path = b === undefined ? a : `${a}.${b}`;
        if (path.split(".").length > 2) return;
        const data = b === undefined ? { [a]: leaf } : { [a]: { [b]: leaf } };
        for (const expr of [{ var: dflt === undefined ? path : [path, dflt] }, { "==": [{ var: path }, "dflt"] }, { ">": [{ var: path }, 1] }]) {
          // (a comparison of an object whose toString is not callable throws in both)
          const outcome = (f: () => unknown) => {
            try {
              return { value: f() };
            } catch {
              return { threw: true };
            }
          };
          for (const d of [data, {}, null, { [a]: null }]) expect(outcome(() => compileLogic(expr)(d))).toEqual(outcome(() => jsonLogic.apply(expr as never, d)));
        }
      }),
      { numRuns: 300 },
    );
  });
});
