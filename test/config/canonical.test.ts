import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../engine/config/index.js";
import { canonicalWalk } from "../../engine/config/canonical.js";

describe("canonical JSON (RFC 8785)", () => {
  it("the flat-object fast path writes exactly what the general walk writes (property)", () => {
    const scalar = fc.oneof(
      fc.string({ unit: "binary" }),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.constant(-0),
    );
    const value = fc.oneof(scalar, fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.array(fc.integer()))), fc.array(scalar));
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: "binary" }), fc.oneof(scalar, scalar, value), { maxKeys: 20 }), (obj) => {
        expect(canonicalJson(obj)).toBe(canonicalWalk(obj));
      }),
      { numRuns: 2000 },
    );
  });

  it("objects JSON.stringify would treat differently take the general walk", () => {
    const d = new Date(0);
    expect(canonicalJson(d)).toBe("{}");
    expect(canonicalJson({ t: d })).toBe('{"t":{}}');
    class WithToJson {
      a = 1;
      toJSON() {
        return "other";
      }
    }
    expect(canonicalJson(new WithToJson())).toBe('{"a":1}');
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { b: 1, a: "x" });
    expect(canonicalJson(bare)).toBe('{"a":"x","b":1}');
    // UTF-16 code unit order (RFC 8785 §3.2.3): the surrogate pair of U+1F600 sorts before U+FB33
    expect(canonicalJson({ "\uFB33": 2, "\u{1F600}": 1, a: 3, "1": 4, "10": 5, "2": 6 })).toBe('{"1":4,"10":5,"2":6,"a":3,"\u{1F600}":1,"\uFB33":2}');
    expect(canonicalJson({ z: -0, lone: "\ud800" })).toBe('{"lone":"\\ud800","z":0}');
    // keys V8 would order first, and an own __proto__ (JSON.parse makes one), nested
    expect(canonicalJson({ n: { b: 1, "10": 2, "2": 3, "02": 4 } })).toBe('{"n":{"02":4,"10":2,"2":3,"b":1}}');
    expect(canonicalJson(JSON.parse('{"x":{"__proto__":{"b":1,"a":2},"a":[1,{"d":null,"c":true}]}}'))).toBe('{"x":{"__proto__":{"a":2,"b":1},"a":[1,{"c":true,"d":null}]}}');
    expect(canonicalJson([undefined, { a: undefined, b: [undefined] }])).toBe('[null,{"b":[null]}]');
    expect(() => canonicalJson({ a: [1, () => 0] })).toThrow(/function/);
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/NaN/);
    expect(() => canonicalJson({ a: Infinity })).toThrow(/NaN or Infinity/);
  });
});
