/**
 * Signed approvals of a revision (DESIGN.md §7): `viw approve REV` signs
 * "commit id + tree id" with the approver's SSH key in the `viw-approval`
 * namespace (ssh-keygen -Y sign) and appends the armored signature to the git
 * note of that commit under refs/notes/viw-approvals, one block per approver.
 * The daemon fetches that ref and checks each block with ssh-keygen -Y verify
 * against the same allowed-signers file that decides commit trust. Signing the
 * tree as well as the commit id keeps an approval from being replayed onto a
 * different content under a colliding abbreviated id.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { exec, git } from "./exec.js";
import { treeOf } from "./trust.js";

export const APPROVALS_REF = "refs/notes/viw-approvals";
export const APPROVAL_NAMESPACE = "viw-approval";

export interface Approval {
  principal: string;
  fingerprint: string;
}

/** The exact bytes an approver signs. */
export function approvalMessage(commit: string, tree: string): string {
  return `viw-approval v1\ncommit ${commit}\ntree ${tree}\n`;
}

const BLOCK = /-----BEGIN SSH SIGNATURE-----[\s\S]*?-----END SSH SIGNATURE-----/g;

export interface ApproveOptions {
  /** Private key file (or a public key file whose private half is in ssh-agent); default: git config user.signingkey. */
  key?: string;
  /** Push the notes ref to this remote after merging what it already holds. */
  push?: string;
}

export interface ApproveResult {
  commit: string;
  tree: string;
  /** False when this exact approval was already recorded. */
  added: boolean;
  pushed?: string;
}

/** Signs an approval of `rev` and records it in refs/notes/viw-approvals. */
export async function approve(repoDir: string, rev: string, opts: ApproveOptions = {}): Promise<ApproveResult> {
  const c = await git(repoDir, ["rev-parse", "--verify", "--quiet", `${rev}^{commit}`]);
  if (c.code !== 0) throw new Error(`unknown revision ${rev} in ${repoDir}`);
  const commit = c.stdout.trim();
  const tree = await treeOf(repoDir, commit);
  const tmp = await mkdtemp(join(tmpdir(), "viw-approve-"));
  try {
    const keyFile = await signingKeyFile(repoDir, opts.key, tmp);
    const signed = await exec("ssh-keygen", ["-Y", "sign", "-f", keyFile, "-n", APPROVAL_NAMESPACE], { input: approvalMessage(commit, tree) });
    if (signed.code !== 0 || !signed.stdout.includes("BEGIN SSH SIGNATURE")) {
      throw new Error(`ssh-keygen could not sign with ${keyFile}: ${signed.stderr.trim()}`);
    }
    const signature = signed.stdout.trim();
    if (opts.push) await pullNotes(repoDir, opts.push);
    const existing = await noteOf(repoDir, commit);
    const added = !existing.includes(signature);
    if (added) {
      const r = await git(repoDir, ["notes", `--ref=${APPROVALS_REF}`, "append", "-m", signature, commit]);
      if (r.code !== 0) throw new Error(`git notes append failed: ${r.stderr.trim()}`);
    }
    const result: ApproveResult = { commit, tree, added };
    if (opts.push) {
      const p = await git(repoDir, ["push", opts.push, `${APPROVALS_REF}:${APPROVALS_REF}`]);
      if (p.code !== 0) throw new Error(`git push ${opts.push} ${APPROVALS_REF} failed: ${p.stderr.trim()}`);
      result.pushed = opts.push;
    }
    return result;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Merges the remote's approvals into ours (concatenating notes), so concurrent approvers do not overwrite each other. */
async function pullNotes(repoDir: string, remote: string): Promise<void> {
  const incoming = "refs/notes/viw-approvals-incoming";
  const f = await git(repoDir, ["fetch", "--quiet", remote, `+${APPROVALS_REF}:${incoming}`]);
  if (f.code !== 0) return; // the remote has no approvals yet
  const m = await git(repoDir, ["notes", `--ref=${APPROVALS_REF}`, "merge", "-s", "cat_sort_uniq", incoming]);
  if (m.code !== 0) throw new Error(`merging the remote's approvals failed: ${m.stderr.trim()}`);
}

async function signingKeyFile(repoDir: string, key: string | undefined, tmp: string): Promise<string> {
  let k = key;
  if (!k) {
    const r = await git(repoDir, ["config", "--get", "user.signingkey"]);
    k = r.stdout.trim();
    if (!k) throw new Error("no signing key: pass --key FILE or set git config user.signingkey");
  }
  if (k.startsWith("key::") || k.startsWith("ssh-")) {
    // A literal public key (git's convention): ssh-keygen signs through ssh-agent.
    const file = join(tmp, "key.pub");
    await writeFile(file, k.replace(/^key::/, "") + "\n");
    return file;
  }
  if (k.startsWith("~/")) k = join(homedir(), k.slice(2));
  return isAbsolute(k) ? k : resolve(key ? process.cwd() : repoDir, k);
}

async function noteOf(repoDir: string, commit: string): Promise<string> {
  const r = await git(repoDir, ["notes", `--ref=${APPROVALS_REF}`, "show", commit]);
  return r.code === 0 ? r.stdout : "";
}

/** The tip of the approvals ref (changes whenever an approval is added), or undefined. */
export async function approvalsTip(repoDir: string): Promise<string | undefined> {
  const r = await git(repoDir, ["rev-parse", "--verify", "--quiet", APPROVALS_REF]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/**
 * The approvals of `commit` whose signature verifies against the
 * allowed-signers file, one per principal. Unverifiable blocks are skipped:
 * an approval either counts or it does not.
 */
export async function readApprovals(repoDir: string, commit: string, allowedSigners: string): Promise<Approval[]> {
  const note = await noteOf(repoDir, commit);
  const blocks = note.match(BLOCK) ?? [];
  if (blocks.length === 0) return [];
  const tree = await treeOf(repoDir, commit);
  const message = approvalMessage(commit, tree);
  const tmp = await mkdtemp(join(tmpdir(), "viw-approvals-"));
  const found = new Map<string, Approval>();
  try {
    for (const [i, block] of blocks.entries()) {
      const sigFile = join(tmp, `${i}.sig`);
      await writeFile(sigFile, block + "\n");
      const fp = await exec("ssh-keygen", ["-Y", "find-principals", "-s", sigFile, "-f", allowedSigners]);
      if (fp.code !== 0) continue;
      for (const principal of fp.stdout.split("\n").map((s) => s.trim()).filter(Boolean)) {
        const v = await exec("ssh-keygen", ["-Y", "verify", "-f", allowedSigners, "-I", principal, "-n", APPROVAL_NAMESPACE, "-s", sigFile], { input: message });
        if (v.code !== 0) continue;
        const fingerprint = /key (SHA256:\S+)/.exec(v.stdout + v.stderr)?.[1] ?? "";
        if (!found.has(principal)) found.set(principal, { principal, fingerprint });
        break;
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return [...found.values()];
}

export interface ApprovalCount {
  /** The approvals that count: distinct principals, not the commit's signer, within `approvers` when set. */
  counted: Approval[];
  required: number;
  missing: number;
}

/** Applies the governance rule (DESIGN.md §7) to verified approvals. */
export function countApprovals(approvals: Approval[], rule: { required: number; approvers: readonly string[]; signer?: { principal: string; fingerprint: string } }): ApprovalCount {
  const counted = approvals.filter(
    (a) =>
      a.principal !== rule.signer?.principal &&
      (!rule.signer?.fingerprint || a.fingerprint !== rule.signer.fingerprint) &&
      (rule.approvers.length === 0 || rule.approvers.includes(a.principal)),
  );
  return { counted, required: rule.required, missing: Math.max(0, rule.required - counted.length) };
}

/** Reads an allowed-signers file's principals (for status: who could approve). */
export async function allowedPrincipals(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8");
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t || t.startsWith("#")) continue;
    out.push(...(t.split(/\s+/)[0] ?? "").split(",").filter(Boolean));
  }
  return out;
}
