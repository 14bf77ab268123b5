import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../../engine/cli/test.js";
import { ROOT } from "./helpers.js";
import { captureOutput } from "../../capture.js";

let repo: string;

const capture = (argv: string[]) => captureOutput(() => main(argv));

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), "viw-test-cmd-"));
  for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(ROOT, f), join(repo, f), { recursive: true });
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe("viw test", () => {
  it("runs every default rule's tests: one line each, then N passed, N failed; exit 0", async () => {
    const r = await capture(["--repo", ROOT]);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split("\n");
    expect(lines.pop()).toBe("31 passed, 0 failed");
    expect(lines).toHaveLength(31);
    expect(lines).toContain("ok   otp-credential-stuffing: 10 failures from 2 ASNs do not fire");
    expect(lines.every((l) => l.startsWith("ok   "))).toBe(true);
  });

  it("--filter runs one rule's tests", async () => {
    const r = await capture(["--repo", ROOT, "--filter", "spa-without-tls"]);
    expect(r.out.trimEnd().split("\n").pop()).toBe("4 passed, 0 failed");
    const none = await capture(["--repo", ROOT, "--filter", "no-such-rule"]);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no rule matches --filter no-such-rule/);
  });

  it("a wrong expectation fails with what fired; late events are reported; exit 1", async () => {
    const file = join(repo, "detections", "spa-replay-burst.yaml");
    const text = readFileSync(file, "utf8")
      // the accepted knocks must not fire — claim they do
      .replace(/(accepted knocks do not count[\s\S]*?expect: \{alerts: )0/, "$11")
      .concat(
        [
          "  - name: a knock beyond the allowed lateness is reported and not counted",
          "    events:",
          "      - repeat: 9",
          "        every: 2s",
          '        event: {timestamp: "2026-11-23T10:05:00Z", action: spa_open, result: failure, src_ip: 203.0.113.66}',
                // 10:04:40 is inside the minute of the burst (10 knocks if counted) but 36 s behind its last knock: 6 s beyond the lateness
          '      - {timestamp: "2026-11-23T10:04:40Z", action: spa_open, result: failure, src_ip: 203.0.113.66}',
          "    expect: {alerts: 0}",
          "",
        ].join("\n"),
      );
    writeFileSync(file, text);
    const r = await capture(["--repo", repo, "--filter", "spa-replay-burst"]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("FAIL spa-replay-burst: accepted knocks do not count — expected 1 alert(s), got 0");
    expect(r.out).toContain("ok   spa-replay-burst: a knock beyond the allowed lateness is reported and not counted (1 late event)");
    expect(r.out.trimEnd().split("\n").pop()).toBe("2 passed, 1 failed");
  });

  it("an invalid repo prints its errors and exits 1", async () => {
    writeFileSync(join(repo, "detections", "broken.yaml"), "id: broken\ntitle: x\nseverity: extreme\nkind: match\ntests: []\n");
    const r = await capture(["--repo", repo]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/detections\/broken\.yaml:\d+:\d+: error: /);
    rmSync(join(repo, "detections", "broken.yaml"));
  });
});
