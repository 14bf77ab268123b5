/**
 * A real git world for the gitops tests: SSH keys made by ssh-keygen, an
 * allowed-signers file, and an origin repository holding the default config,
 * committed with `git commit -S` (gpg.format ssh).
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const MAIN = join(import.meta.dirname, "..", "..");
const FOLDERS = ["policies", "profiles", "detections", "dashboards", "pins"];

export type Who = "alice" | "bob" | "carol" | "dave" | "mallory";
/** Listed in the allowed-signers file; mallory is not. */
export const TRUSTED: Who[] = ["alice", "bob", "carol", "dave"];

export interface World {
  root: string;
  /** The origin repository (non-bare work tree, pushed to by "developers" directly). */
  repo: string;
  allowedSigners: string;
  key(who: Who): string;
  git(...args: string[]): string;
  /** Writes files (repo-relative) and commits them signed by `who` (null: unsigned). Returns the commit id. */
  commit(message: string, files: Record<string, string | null>, who?: Who | null): string;
  read(path: string): string;
  head(): string;
  cleanup(): void;
}

export function makeWorld(): World {
  const root = mkdtempSync(join(tmpdir(), "viw-gitops-"));
  const keys = join(root, "keys");
  execFileSync("mkdir", ["-p", keys]);
  const lines: string[] = [];
  for (const who of ["alice", "bob", "carol", "dave", "mallory"] as Who[]) {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", who, "-f", join(keys, who)]);
    if (TRUSTED.includes(who)) lines.push(`${who}@viworks.example ${readFileSync(join(keys, `${who}.pub`), "utf8").trim()}`);
  }
  const allowedSigners = join(root, "allowed_signers");
  writeFileSync(allowedSigners, lines.join("\n") + "\n");
  const repo = join(root, "origin");
  execFileSync("mkdir", ["-p", repo]);
  const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  git("init", "-q", "-b", "main");
  git("config", "user.name", "Alice");
  git("config", "user.email", "alice@viworks.example");
  git("config", "gpg.format", "ssh");
  git("config", "commit.gpgsign", "false");
  // A push-to-checkout origin: tests commit into it directly, as a forge's branch would move.
  git("config", "receive.denyCurrentBranch", "updateInstead");
  for (const f of FOLDERS) cpSync(join(MAIN, f), join(repo, f), { recursive: true });
  // The default pins are ViWorkS's production keys; the tests issue for fresh keys, so backend-api is unbound
  // from its pin set here (pin-aware issuance is tested in test/pins/ and test/pki/pin-gate.test.ts).
  const apiProfile = join(repo, "profiles", "backend-api.yaml");
  writeFileSync(apiProfile, readFileSync(apiProfile, "utf8").replace(/^pin_set: .*$/m, ""));
  const world: World = {
    root,
    repo,
    allowedSigners,
    key: (who) => join(keys, who),
    git,
    commit(message, files, who = "alice") {
      for (const [path, content] of Object.entries(files)) {
        if (content === null) git("rm", "-q", path);
        else {
          execFileSync("mkdir", ["-p", join(repo, path, "..")]);
          writeFileSync(join(repo, path), content);
          git("add", path);
        }
      }
      if (Object.keys(files).length === 0) git("add", "-A");
      execFileSync("git", [...(who ? ["-c", `user.signingkey=${join(keys, who)}`] : []), "commit", "-q", "--allow-empty", ...(who ? ["-S"] : ["--no-gpg-sign"]), "-m", message], {
        cwd: repo,
        stdio: ["ignore", "pipe", "pipe"],
      });
      return git("rev-parse", "HEAD");
    },
    read: (path) => readFileSync(join(repo, path), "utf8"),
    head: () => git("rev-parse", "HEAD"),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
  return world;
}
