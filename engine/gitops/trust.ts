/**
 * Which commits the daemon may apply (DESIGN.md §7).
 *
 * A commit is trusted when its SSH signature verifies against the allowed-signers
 * file given with `--trust` (the file `git verify-commit` reads through
 * gpg.ssh.allowedSignersFile), and git reports a named principal: `G` with a
 * signer. `U` (a good signature by a key that is not listed), `N` (unsigned),
 * `B` (bad) and the rest are refused with the reason.
 *
 * Forge web merges: a pull request merged in the forge's web UI produces a
 * merge commit signed by the forge, not by a person. To apply such merges, add
 * the forge's SSH signing key to the allowed-signers file under a principal
 * that names the forge, restricted to the git namespace:
 *
 *     forge-web-merge@git.example namespaces="git" ssh-ed25519 AAAA...
 *
 * (get the key from the forge's documentation or admin settings; GitLab
 * instances configure it as the "commit signing" SSH key). Restricting the line
 * to namespaces="git" keeps the forge out of the `viw-approval` namespace, so
 * the forge's signature means "merged under the forge's review rules" while a
 * relaxation still needs approvals from people. Forges that sign web commits
 * only with GPG (GitHub's web-flow key) are not verified by this daemon: merge
 * locally with `git merge -S` or have a bot re-sign the merge with SSH.
 */
import { git } from "./exec.js";

export interface Signer {
  /** The principal of the allowed-signers line that matched (e.g. an email). */
  principal: string;
  /** SHA256:... fingerprint of the signing key. */
  fingerprint: string;
}

export type TrustResult =
  | { ok: true; signer: Signer; tree: string }
  | { ok: false; reason: string; code: "unsigned" | "unknown-key" | "bad-signature" | "error"; tree?: string };

const STATUS: Record<string, string> = {
  B: "bad signature",
  X: "good signature that has expired",
  Y: "good signature made by an expired key",
  R: "good signature made by a revoked key",
  E: "signature cannot be checked",
};

export interface TrustAnchors {
  /** OpenSSH allowed-signers file (SSH-signed commits; also the approvers). */
  allowedSigners?: string;
  /**
   * A GnuPG home holding only the trusted OpenPGP public keys (GPG-signed
   * commits, optional). Being in this dedicated keyring is what trusts a key,
   * so a good signature counts whether or not the key is certified (G or U).
   */
  gnupgHome?: string;
}

/** Verifies `rev`'s signature against the allowed-signers file (and/or the trusted GnuPG keyring). */
export async function verifyCommit(repoDir: string, rev: string, anchors: string | TrustAnchors): Promise<TrustResult> {
  const t: TrustAnchors = typeof anchors === "string" ? { allowedSigners: anchors } : anchors;
  const config = t.allowedSigners ? ["-c", `gpg.ssh.allowedSignersFile=${t.allowedSigners}`] : [];
  const env = t.gnupgHome ? { ...process.env, GNUPGHOME: t.gnupgHome } : undefined;
  const r = await git(repoDir, [...config, "log", "-1", "--format=%G?%x00%GK%x00%GS%x00%T%x00%GF", rev, "--"], { env });
  if (r.code !== 0) return { ok: false, code: "error", reason: `cannot read commit ${rev}: ${r.stderr.trim()}` };
  const [status = "", key = "", principal = "", tree = "", gpgFingerprint = ""] = r.stdout.replace(/\n$/, "").split("\0");
  const ssh = key.startsWith("SHA256:");
  if (status === "G" && principal && (ssh ? !!t.allowedSigners : !!t.gnupgHome)) {
    return { ok: true, signer: { principal, fingerprint: ssh ? key : gpgFingerprint || key }, tree };
  }
  if (!ssh && status === "U" && t.gnupgHome && principal) return { ok: true, signer: { principal, fingerprint: gpgFingerprint || key }, tree };
  if (status === "N") return { ok: false, code: "unsigned", reason: `commit ${rev.slice(0, 12)} is not signed`, tree };
  if (status === "U" || (status === "G" && !principal)) {
    return { ok: false, code: "unknown-key", reason: `commit ${rev.slice(0, 12)} is signed by ${key || "a key"} that is not in the allowed-signers file`, tree };
  }
  if (status === "E" && !ssh) {
    return { ok: false, code: "unknown-key", reason: `commit ${rev.slice(0, 12)} has an OpenPGP signature by ${key || "a key"} that is not in the trusted keyring${t.gnupgHome ? "" : " (no --trust-gpg given)"}`, tree };
  }
  return { ok: false, code: "bad-signature", reason: `commit ${rev.slice(0, 12)}: ${STATUS[status] ?? `signature status ${status}`}`, tree };
}

/** True when `ancestor` is `rev` or one of its ancestors (anti-rollback). */
export async function isDescendant(repoDir: string, ancestor: string, rev: string): Promise<boolean> {
  const r = await git(repoDir, ["merge-base", "--is-ancestor", ancestor, rev]);
  if (r.code === 0) return true;
  if (r.code === 1) return false;
  // 128: the applied commit is not in this repository (e.g. a shallow boundary, a rewritten remote).
  return false;
}

/** The tree id of a commit (approvals sign commit + tree). */
export async function treeOf(repoDir: string, rev: string): Promise<string> {
  const r = await git(repoDir, ["rev-parse", "--verify", "--quiet", `${rev}^{tree}`]);
  if (r.code !== 0) throw new Error(`unknown revision ${rev}`);
  return r.stdout.trim();
}
