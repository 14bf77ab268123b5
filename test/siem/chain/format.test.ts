import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../engine/config/index.js";
import { canonicalLine, encodeBatch } from "../../../engine/siem/chain/format.js";

describe("batch encoding", () => {
  it("the sealer's fast event serialization is exactly RFC 8785 canonical JSON (property)", () => {
    const value = fc.oneof(
      fc.string({ unit: "binary" }),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.array(fc.integer()))),
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: "binary" }), value, { maxKeys: 20 }), (event) => {
        expect(canonicalLine(event)).toBe(canonicalJson(event));
      }),
      { numRuns: 500 },
    );
    expect(() => canonicalLine({ a: Number.NaN })).toThrow(/NaN/);
  });

  it("a batch file is one canonical event per LF-terminated line", () => {
    const events = [{ z: 1, a: "é\n", m: { y: 2, b: [3, { d: 4, c: 5 }] } }, { event_id: "x" }];
    const b = encodeBatch(events);
    expect(b.bytes.toString("utf8")).toBe(events.map((e) => canonicalJson(e) + "\n").join(""));
    expect(b.bytes.toString("utf8")).toBe('{"a":"é\\n","m":{"b":[3,{"c":5,"d":4}],"y":2},"z":1}\n{"event_id":"x"}\n');
    expect(b.count).toBe(2);
  });
});
