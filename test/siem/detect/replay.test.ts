import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../../../engine/siem/store/index.js";
import { openJournal } from "../../../engine/siem/journal/index.js";
import { main } from "../../../engine/cli/replay.js";
import { ROOT } from "./helpers.js";
import { captureOutput } from "../../capture.js";

let dir: string;
let repo: string;
let c1: string;
let c2: string;

const git = (...args: string[]) => execFileSync("git", ["-C", repo, ...args], { encoding: "utf8" }).trim();

const capture = (argv: string[]) => captureOutput(() => main(argv));

const now = Date.now();
const at = (ms: number) => new Date(now - 60 * 60_000 + ms).toISOString();
function otp(user: string, asns: number[]) {
  return Array.from({ length: 6 }, (_, i) => ({
    index: "viw-auth",
    event: { event_id: `${user}-${i}`, timestamp: at(i * 20_000), received_at: at(i * 20_000), action: "otp_verify", result: "failure", user_id: user, asn: asns[i % asns.length] },
  }));
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "viw-replay-"));
  repo = join(dir, "repo");
  for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(ROOT, f), join(repo, f), { recursive: true });
  execFileSync("git", ["init", "-q", "-b", "main", repo]);
  git("-c", "user.name=t", "-c", "user.email=t@example", "add", ".");
  git("-c", "user.name=t", "-c", "user.email=t@example", "commit", "-q", "-m", "base");
  c1 = git("rev-parse", "HEAD");
  // The change under review: 2 ASNs are enough (its embedded tests would say so too; replay shows it on real data).
  const file = join(repo, "detections", "otp-credential-stuffing.yaml");
  const text = readFileSync(file, "utf8").replace("  count: 3", "  count: 2").replace(/  - name: 10 failures from 2 ASNs do not fire[\s\S]*?expect: \{alerts: 0\}\n/, "");
  writeFileSync(file, text);
  git("-c", "user.name=t", "-c", "user.email=t@example", "commit", "-q", "-am", "head");
  c2 = git("rev-parse", "HEAD");

  const store = openStore(join(dir, "data", "store", "events.db"));
  store.add([...otp("u-three", [1, 2, 3]), ...otp("u-two", [1, 2]), ...otp("u-one", [1])]);
  store.close();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("viw replay", () => {
  it("prints the alerts a change adds, per rule and group, from the store", async () => {
    const r = await capture(["--repo", repo, "--data", join(dir, "data"), "--base", c1, "--head", c2, "--since", "7d"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("18 events");
    expect(r.out).toMatch(/otp-credential-stuffing \(changed\): 1 -> 2 alerts, \+1 -0/);
    expect(r.out).toContain(`  + {"user_id":"u-two"} ${at(0)}`);
    expect(r.out).not.toContain("u-one");
    expect(r.out.trimEnd().split("\n").pop()).toBe("1 added, 0 removed");
  });

  it("the reverse change removes them; markdown for the pull request", async () => {
    const r = await capture(["--repo", repo, "--data", join(dir, "data"), "--base", c2, "--head", c1, "--format", "markdown"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("| `otp-credential-stuffing` | changed | 2 → 1 | 0 | 1 |");
    expect(r.out).toContain('| ➖ removed | `{"user_id":"u-two"}` |');
  });

  it("reads the journal when there is no store; --since leaves older events out", async () => {
    const data = join(dir, "journal-only");
    const j = openJournal(join(data, "journal", "journal.db"));
    await j.append(otp("u-two", [1, 2]));
    await j.close();
    const r = await capture(["--repo", repo, "--data", data, "--base", c1, "--head", c2]);
    expect(r.out).toContain("6 events");
    expect(r.out).toContain("1 added, 0 removed");
    const none = await capture(["--repo", repo, "--data", data, "--base", c1, "--head", c2, "--since", "1m"]);
    expect(none.out).toContain("0 events");
  });

  it("names what is wrong: an unknown revision, a missing data dir, a missing --base", async () => {
    const bad = await capture(["--repo", repo, "--data", join(dir, "data"), "--base", "nope", "--head", c2]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/cannot read revision nope/);
    const nodata = await capture(["--repo", repo, "--data", join(dir, "none"), "--base", c1, "--head", c2]);
    expect(nodata.code).toBe(1);
    expect(nodata.err).toMatch(/no stored events/);
    await expect(capture(["--repo", repo])).rejects.toThrow(/--base is required/);
  });
});
