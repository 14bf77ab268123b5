import { spawn } from "node:child_process";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs git or ssh-keygen without a shell and with stdin, returning the exit
 * code instead of throwing: signature checks read meaning from the code and
 * from stderr. (simple-git drives clone/fetch; these calls need `-c` options
 * and stdin that its argument guard rightly blocks for general use.)
 */
export function exec(cmd: string, args: string[], opts: { cwd?: string; input?: string | Buffer; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** git with a configuration that a repository cannot override (no hooks, no custom gpg/ssh program). */
export function git(repoDir: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return exec("git", ["-c", "gpg.ssh.program=ssh-keygen", "-c", "gpg.program=gpg", "-c", "core.hooksPath=/dev/null", ...args], { cwd: repoDir, ...opts });
}
