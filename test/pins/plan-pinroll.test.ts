/**
 * `viw plan --from A --to B` and `viw validate --base REV` show the
 * two-revision pin-roll problems the daemon would refuse (a skipped phase),
 * positioned in the new revision's file, in every output format, and exit 1
 * so the pull request fails at review. Real git repo made by the test.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as planMain } from "../../engine/cli/plan.js";
import { main as validateMain } from "../../engine/cli/validate.js";
import { captureOutput } from "../capture.js";

const ROOT = join(import.meta.dirname, "../..");
const repo = mkdtempSync(join(tmpdir(), "viw-plan-pinroll-"));
const file = join(repo, "pins/gateway.yaml");
const git = (...args: string[]) => execFileSync("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@example", ...args], { stdio: "pipe" }).toString().trim();
const commit = (msg: string) => (git("add", "."), git("commit", "-q", "-m", msg), git("rev-parse", "HEAD"));
const BACKUP = "RqKLJuEe0msolyS8tLNrgkgKmjyrpWmLwNfqMbo/mQ8=";
let base: string, skip: string, step: string, phaseLine: number;

beforeAll(() => {
  for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(ROOT, f), join(repo, f), { recursive: true });
  git("init", "-q", "-b", "main");
  base = commit("default config");
  const stable = readFileSync(file, "utf8");
  // A pull request that jumps from stable straight to cutover.
  writeFileSync(file, stable.replace("  phase: stable\n", `  phase: cutover\n  to: ${BACKUP}\n`));
  phaseLine = readFileSync(file, "utf8").split("\n").indexOf("  phase: cutover") + 1;
  skip = commit("cut over to the backup");
  git("checkout", "-q", "-b", "legal", base);
  writeFileSync(file, stable.replace("  phase: stable\n", "  phase: backup-deployed\n"));
  step = commit("deploy the backup");
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

const plan = (...args: string[]) => captureOutput(() => planMain(["--repo", repo, ...args]));
const MESSAGE = "roll.phase: phase stable -> cutover skips backup-deployed: a pin roll advances one phase per pull request (stable -> backup-deployed -> cutover -> retired)";

describe("viw plan: pin-roll problems", () => {
  it("text: the plan, then the problem at the pin set's roll.phase, exit 1", async () => {
    const r = await plan("--from", base, "--to", skip);
    expect(r.code).toBe(1);
    expect(r.out).toContain("~ pinset gateway roll.phase: stable → cutover");
    expect(r.out).toContain("1 pin-roll problem (the daemon refuses this revision):\n");
    expect(r.out.trimEnd().split("\n").at(-1)).toBe(`pins/gateway.yaml:${phaseLine}:10: error: ${MESSAGE}`);
  });

  it("json: the plan with a problems list; markdown: a blocking note above the table", async () => {
    const j = await plan("--from", base, "--to", skip, "--format", "json");
    expect(j.code).toBe(1);
    const body = JSON.parse(j.out);
    expect(body.changes.length).toBeGreaterThan(0);
    expect(body.problems).toEqual([{ file: "pins/gateway.yaml", line: phaseLine, col: 10, message: MESSAGE, kind: "pinset", id: "gateway" }]);
    expect(j.err).toBe(`pins/gateway.yaml:${phaseLine}:10: error: ${MESSAGE}\n`);
    const md = await plan("--from", base, "--to", skip, "--format", "markdown");
    expect(md.code).toBe(1);
    expect(md.out).toContain(`> ❌ **1 pin-roll problem**: the daemon refuses this revision.\n>\n> - \`pins/gateway.yaml:${phaseLine}:10\` ${MESSAGE}\n`);
    expect(md.out.indexOf("pin-roll problem")).toBeLessThan(md.out.indexOf("| | kind |"));
  });

  it("a legal step of the roll plans cleanly, exit 0, no problems key", async () => {
    const r = await plan("--from", base, "--to", step, "--format", "json");
    expect(r.code).toBe(0);
    const body = JSON.parse(r.out);
    expect(body.problems).toBeUndefined();
    expect(body.changes).toContainEqual(expect.objectContaining({ kind: "pinset", id: "gateway", field: "roll.phase", old: "stable", new: "backup-deployed" }));
    // The working tree (branch legal) against the skip commit: going back from cutover to backup-deployed is a rollback step, allowed.
    expect((await plan("--from", skip)).code).toBe(0);
  });
});

describe("viw validate --base", () => {
  it("a stable -> cutover jump in the working tree fails against the base, positioned; a broken base is skipped with a warning", async () => {
    git("checkout", "-q", "-f", "-B", "validate", base);
    const stable = readFileSync(file, "utf8");
    writeFileSync(file, stable.replace("  phase: stable\n", `  phase: cutover\n  to: ${BACKUP}\n`));
    const v = await captureOutput(() => validateMain(["--repo", repo, "--base", base]));
    expect(v.code).toBe(1);
    expect(v.out).toBe(`pins/gateway.yaml:${phaseLine}:10: error: ${MESSAGE}\n`);
    expect(v.err).toMatch(/^1 error in 1 of \d+ files\n$/);
    // A base revision that does not validate cannot be compared with: said on stderr, the tree's own checks still decide.
    writeFileSync(join(repo, "pins/backend-api.yaml"), "id: backend-api\nprofile: [\n");
    const broken = commit("a broken base");
    git("checkout", "-q", "-f", "validate~1");
    const w = await captureOutput(() => validateMain(["--repo", repo, "--base", broken]));
    expect(w.code).toBe(0);
    expect(w.err).toMatch(new RegExp(`^warning: base revision ${broken} is itself invalid \\(\\d+ errors?\\); the checks against it are skipped\n$`));
  });
});
