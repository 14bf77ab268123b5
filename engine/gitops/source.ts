/**
 * Where revisions come from. A Source says when something may have changed
 * (onChange), brings itself up to date and names its current revision (poll),
 * and reads a revision's config files (snapshot). Git sources also expose the
 * repository where signatures and approval notes are checked.
 */
import { watch, type FSWatcher } from "chokidar";
import { relative, sep } from "node:path";
import { CONFIG_FOLDERS, readDirSnapshot, type Snapshot } from "../config/index.js";

export interface Source {
  readonly kind: "dir" | "git";
  /** For logs and status; never contains credentials. */
  readonly description: string;
  /** Git sources: the repository holding commits and refs/notes/viw-approvals. */
  readonly gitDir?: string;
  start(onChange: (reason: string) => void): Promise<void>;
  /** Updates from the origin (fetch, re-read) and returns the revision it now points at. */
  poll(): Promise<string>;
  snapshot(revision: string): Promise<Snapshot>;
  /** Git sources: the tip of refs/notes/viw-approvals (moves when an approval is added). */
  approvalsTip?(): Promise<string | undefined>;
  close(): Promise<void>;
}


/** Debounces bursts (an editor's save, a `git checkout`) into one call. */
export function debounce(fn: () => void, ms: number): { (): void; cancel(): void } {
  let t: NodeJS.Timeout | undefined;
  const d = () => {
    if (t) clearTimeout(t);
    t = setTimeout(() => {
      t = undefined;
      fn();
    }, ms);
  };
  d.cancel = () => t && clearTimeout(t);
  return d;
}

/**
 * A working directory (`--repo DIR` in dev mode): the revision is the digest of
 * the config files read, so an edit-and-undo returns to the same revision.
 */
export class DirSource implements Source {
  readonly kind = "dir";
  readonly description: string;
  private watcher?: FSWatcher;
  private last?: Snapshot;
  private debounced?: ReturnType<typeof debounce>;

  constructor(
    readonly root: string,
    private readonly debounceMs = 200,
  ) {
    this.description = `dir ${root}`;
  }

  async start(onChange: (reason: string) => void): Promise<void> {
    this.debounced = debounce(() => onChange("files changed"), this.debounceMs);
    const ignored = (path: string) => {
      const rel = relative(this.root, path);
      if (!rel) return false;
      const parts = rel.split(sep);
      return !(CONFIG_FOLDERS as readonly string[]).includes(parts[0]!) || parts.some((p) => p.startsWith("."));
    };
    this.watcher = watch(this.root, { ignoreInitial: true, ignored, awaitWriteFinish: false });
    this.watcher.on("all", () => this.debounced?.());
    await new Promise<void>((resolve) => this.watcher!.once("ready", () => resolve()));
  }

  async poll(): Promise<string> {
    this.last = await readDirSnapshot(this.root);
    return this.last.revision;
  }

  async snapshot(revision: string): Promise<Snapshot> {
    if (this.last?.revision === revision) return this.last;
    const s = await readDirSnapshot(this.root);
    if (s.revision !== revision) throw new Error(`directory changed while reading revision ${revision}`);
    return s;
  }

  async close(): Promise<void> {
    this.debounced?.cancel();
    await this.watcher?.close();
  }
}
