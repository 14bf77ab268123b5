import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../engine/config/index.js";
import { encodeBatch } from "../../../engine/siem/chain/format.js";

describe("batch encoding", () => {
  it("a batch file is one canonical event per LF-terminated line", () => {
    const events = [{ z: 1, a: "é\n", m: { y: 2, b: [3, { d: 4, c: 5 }] } }, { event_id: "x" }];
    const b = encodeBatch(events.map(canonicalJson));
    expect(b.bytes.toString("utf8")).toBe(events.map((e) => canonicalJson(e) + "\n").join(""));
    expect(b.bytes.toString("utf8")).toBe('{"a":"é\\n","m":{"b":[3,{"c":5,"d":4}],"y":2},"z":1}\n{"event_id":"x"}\n');
    expect(b.count).toBe(2);
  });
});
