import { describe, expect, it } from "vitest";
import { loadSnapshot, readDirSnapshot } from "../../../engine/config/index.js";
import { runRuleTests } from "../../../engine/siem/detect/index.js";
import { main } from "../../../engine/cli/test.js";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";

const repo = resolve(fileURLToPath(import.meta.url), "../../../..");

describe("the default rules' embedded tests", () => {
  it("all pass", async () => {
    const { state, errors } = loadSnapshot(await readDirSnapshot(repo));
    expect(errors).toEqual([]);
    const results = runRuleTests(state!);
    const failed = results.filter((r) => !r.passed).map((r) => `${r.rule}: ${r.test}: ${r.message}`);
    expect(failed).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(30);
  });
});
