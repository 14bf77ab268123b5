/**
 * Git sources: a remote followed by fetching into DATA/git (`--git URL
 * --branch B`), and a local repository followed in place (`--repo DIR` with
 * `--trust`). Either way the revision is a commit id, read from git's object
 * store (never the working tree), so what was signed is exactly what is applied.
 */
import { watch, type FSWatcher } from "chokidar";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { simpleGit, type SimpleGit } from "simple-git";
import { readGitSnapshot, type Snapshot } from "../config/index.js";
import { APPROVALS_REF } from "./approvals.js";
import { git } from "./exec.js";
import { debounce, type Source } from "./source.js";

/** The URL without user-info, for logs and status. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, "$1");
}

/**
 * Credentials come from the environment and reach git through its own
 * environment (GIT_CONFIG_* and GIT_SSH_COMMAND), never the command line or a
 * log: VIW_GIT_TOKEN (+ VIW_GIT_USERNAME, default x-access-token) for HTTPS,
 * VIW_GIT_SSH_KEY (a private key file) for SSH remotes.
 */
export function credentialEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = { GIT_TERMINAL_PROMPT: "0" };
  if (env.VIW_GIT_TOKEN) {
    const basic = Buffer.from(`${env.VIW_GIT_USERNAME ?? "x-access-token"}:${env.VIW_GIT_TOKEN}`).toString("base64");
    out.GIT_CONFIG_COUNT = "1";
    out.GIT_CONFIG_KEY_0 = "http.extraHeader";
    out.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
  }
  if (env.VIW_GIT_SSH_KEY) {
    out.GIT_SSH_COMMAND = `ssh -i '${env.VIW_GIT_SSH_KEY.replace(/'/g, "")}' -o IdentitiesOnly=yes -o BatchMode=yes`;
  }
  return out;
}

/** Only what git needs from the ambient environment: an EDITOR or GIT_* variable there must not steer a fetch. */
function baseEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ["PATH", "HOME", "LANG", "LC_ALL", "SSH_AUTH_SOCK", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"]) {
    const v = process.env[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

export interface RemoteOptions {
  url: string;
  branch: string;
  /** Where the clone lives (DATA/git). */
  dir: string;
  /** Poll interval, ms (default 30 s); the webhook triggers at once. */
  intervalMs?: number;
  /** Depth of the first fetch: history is only needed back to the applied commit. */
  depth?: number;
  env?: NodeJS.ProcessEnv;
}

export class RemoteGitSource implements Source {
  readonly kind = "git";
  readonly description: string;
  readonly gitDir: string;
  private timer?: NodeJS.Timeout;
  private sg: SimpleGit;
  private fetched = false;

  constructor(private readonly opts: RemoteOptions) {
    this.gitDir = opts.dir;
    this.description = `git ${redactUrl(opts.url)} branch ${opts.branch}`;
    const env = credentialEnv(opts.env);
    this.sg = simpleGit({
      baseDir: process.cwd(),
      unsafe: { allowUnsafeConfigEnvCount: true, allowUnsafeSshCommand: true },
      allowEnvironment: Object.keys(env),
    }).env({ ...baseEnv(), ...env });
  }

  async start(onChange: (reason: string) => void): Promise<void> {
    await mkdir(this.gitDir, { recursive: true });
    await this.sg.cwd(this.gitDir);
    // DATA may sit inside another work tree (npm start's .viw-data): only a bare repo at DATA/git itself counts.
    if ((await git(this.gitDir, ["rev-parse", "--git-dir"])).stdout.trim() !== ".") await this.sg.init(true);
    const remotes = await this.sg.getRemotes(true);
    const origin = remotes.find((r) => r.name === "origin");
    if (!origin) await this.sg.addRemote("origin", this.opts.url);
    else if (origin.refs.fetch !== this.opts.url) await this.sg.remote(["set-url", "origin", this.opts.url]);
    const every = this.opts.intervalMs ?? 30_000;
    this.timer = setInterval(() => onChange("poll interval"), every);
    this.timer.unref();
  }

  async poll(): Promise<string> {
    const ref = `refs/remotes/origin/${this.opts.branch}`;
    // One fetch for the branch and the approvals: a glob refspec does not fail when the remote has no notes yet.
    // No FETCH_HEAD and no auto-maintenance: each is another process on the webhook → live path.
    const args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-maintenance", "origin", `+refs/heads/${this.opts.branch}:${ref}`, `+${APPROVALS_REF}*:${APPROVALS_REF}*`];
    if (!this.fetched && (await git(this.gitDir, ["rev-parse", "--verify", "--quiet", ref])).code !== 0) {
      args.splice(2, 0, `--depth=${this.opts.depth ?? 50}`);
    }
    try {
      await this.sg.raw(args);
    } catch (err) {
      throw new Error(`fetch of ${this.description} failed: ${redactUrl(String((err as Error).message)).trim()}`);
    }
    this.fetched = true;
    const refs = await refTips(this.gitDir, [ref, APPROVALS_REF]);
    this.tip = refs.get(APPROVALS_REF);
    const rev = refs.get(ref);
    if (!rev) throw new Error(`${this.description}: branch ${this.opts.branch} not found on the remote`);
    return rev;
  }

  private tip?: string;

  /** The approvals ref as of the last poll. */
  async approvalsTip(): Promise<string | undefined> {
    return this.tip;
  }

  snapshot(revision: string): Promise<Snapshot> {
    return readGitSnapshot(this.gitDir, revision);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
  }
}

/** Resolves several refs with one git process. */
async function refTips(gitDir: string, refs: string[]): Promise<Map<string, string>> {
  const r = await git(gitDir, ["for-each-ref", "--format=%(objectname) %(refname)", ...refs]);
  const out = new Map<string, string>();
  for (const line of r.stdout.split("\n")) {
    const [oid, name] = line.split(" ");
    if (oid && name) out.set(name, oid);
  }
  return out;
}

/** A local repository followed in place: its branch (default HEAD) as committed. */
export class LocalGitSource implements Source {
  readonly kind = "git";
  readonly description: string;
  private watcher?: FSWatcher;
  private debounced?: ReturnType<typeof debounce>;

  constructor(
    readonly gitDir: string,
    private readonly branch?: string,
    private readonly debounceMs = 200,
  ) {
    this.description = `git ${gitDir}${branch ? ` branch ${branch}` : ""}`;
  }

  async start(onChange: (reason: string) => void): Promise<void> {
    const dotGit = (await git(this.gitDir, ["rev-parse", "--absolute-git-dir"])).stdout.trim();
    if (!dotGit) throw new Error(`${this.gitDir} is not a git repository`);
    this.debounced = debounce(() => onChange("refs changed"), this.debounceMs);
    this.watcher = watch([join(dotGit, "HEAD"), join(dotGit, "refs"), join(dotGit, "packed-refs")], { ignoreInitial: true });
    this.watcher.on("all", () => this.debounced?.());
    await new Promise<void>((resolve) => this.watcher!.once("ready", () => resolve()));
  }

  async poll(): Promise<string> {
    const r = await git(this.gitDir, ["rev-parse", "--verify", "--quiet", `${this.branch ?? "HEAD"}^{commit}`]);
    if (r.code !== 0) throw new Error(`${this.description}: no commit at ${this.branch ?? "HEAD"}`);
    return r.stdout.trim();
  }

  snapshot(revision: string): Promise<Snapshot> {
    return readGitSnapshot(this.gitDir, revision);
  }

  async close(): Promise<void> {
    this.debounced?.cancel();
    await this.watcher?.close();
  }
}
