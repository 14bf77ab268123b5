import { execFileSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { defaultRepoCopy, runViw } from "./helpers.js";

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example" } }).trim();
}

async function edit(repo: string, file: string, from: string, to: string): Promise<void> {
  const path = join(repo, file);
  const text = await readFile(path, "utf8");
  if (!text.includes(from)) throw new Error(`${file} has no ${from}`);
  await writeFile(path, text.replace(from, to));
}

describe("viw plan on a real git repository", () => {
  let repo: string;
  let base: string;
  let relaxed: string;
  let tightened: string;

  beforeAll(async () => {
    repo = await defaultRepoCopy();
    await edit(repo, "profiles/vpn-client.yaml", "max: 365d", "max: 180d");
    git(repo, "init", "-q", "-b", "main");
    git(repo, "add", ".");
    git(repo, "commit", "-q", "-m", "base");
    await edit(repo, "pins/gateway.yaml", "  - sha256: MOku", "  - sha256: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n    role: backup\n  - sha256: MOku");
    git(repo, "commit", "-q", "-am", "add a second backup pin");
    const withTwoBackups = git(repo, "rev-parse", "HEAD");
    await edit(repo, "pins/gateway.yaml", "  - sha256: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n    role: backup\n", "");
    await edit(repo, "profiles/vpn-client.yaml", "max: 180d", "max: 365d");
    git(repo, "commit", "-q", "-am", "longer client validity, one backup pin fewer");
    relaxed = git(repo, "rev-parse", "HEAD");
    await edit(repo, "profiles/tls-gateway.yaml", "default: 90d", "default: 60d");
    git(repo, "commit", "-q", "-am", "shorter default validity");
    tightened = git(repo, "rev-parse", "HEAD");
    base = withTwoBackups;
  });

  it("marks a longer max validity and a removed backup pin as relaxations", async () => {
    const r = await runViw(["plan", "--repo", repo, "--from", base, "--to", relaxed, "--format", "json"]);
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.from).toBe(base);
    expect(plan.to).toBe(relaxed);
    expect(plan.changes).toEqual([
      {
        kind: "profile", id: "vpn-client", field: "validity.max", change: "changed",
        old: "180d", new: "365d", verdict: "relaxation", reason: "longer validity",
      },
      {
        kind: "pinset", id: "gateway", field: "pins[47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=]", change: "removed",
        old: { sha256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", role: "backup" }, verdict: "relaxation", reason: "fewer pins",
      },
    ]);
    expect(plan.relaxations).toBe(2);
  });

  it("marks a shortened validity as a tightening, in text and markdown", async () => {
    const text = await runViw(["plan", "--repo", repo, "--from", relaxed, "--to", tightened]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("~ profile tls-gateway validity.default: 90d → 60d  [tightening: shorter validity]");
    expect(text.stdout.trim().split("\n").at(-1)).toBe("1 change, 0 relaxations, 1 tightening");
    const md = await runViw(["plan", "--repo", repo, "--from", base, "--to", relaxed, "--format", "markdown"]);
    expect(md.stdout).toContain("| ~ | profile | vpn-client | `validity.max` | `180d` | `365d` | ⚠️ **relaxation**: longer validity |");
    expect(md.stdout).toContain("**2 relaxations**");
  });

  it("reads committed blobs, not the working tree, and defaults to HEAD~1..working tree", async () => {
    await edit(repo, "profiles/tls-gateway.yaml", "default: 60d", "default: 45d");
    const committed = await runViw(["plan", "--repo", repo, "--from", relaxed, "--to", tightened, "--format", "json"]);
    expect(JSON.parse(committed.stdout).changes[0].new).toBe("60d");
    const dflt = await runViw(["plan", "--repo", repo, "--format", "json"]);
    expect(dflt.stderr).toBe("");
    const changes = JSON.parse(dflt.stdout).changes;
    expect(changes).toEqual([expect.objectContaining({ id: "tls-gateway", field: "validity.default", old: "90d", new: "45d", verdict: "tightening" })]);
    git(repo, "checkout", "-q", "--", ".");
  });

  it("exits 1 with positioned errors when a side is invalid", async () => {
    await edit(repo, "profiles/tls-gateway.yaml", "max: 180d", "max: 400d");
    git(repo, "commit", "-q", "-am", "too long");
    const r = await runViw(["plan", "--repo", repo, "--from", tightened, "--to", "HEAD"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("profiles/tls-gateway.yaml:10:8: error: validity.max 400d exceeds the 180d limit for server profiles");
  });

  it("names an unknown revision as a usage error", async () => {
    const r = await runViw(["plan", "--repo", repo, "--from", "no-such-rev", "--to", "HEAD"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown revision no-such-rev");
  });
});
