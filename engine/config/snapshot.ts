import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, readdir, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { simpleGit } from "simple-git";
import { CONFIG_FOLDERS, MAX_FILE_BYTES } from "./kinds.js";

export interface SnapshotFile {
  /** Repo-relative, forward slashes. */
  path: string;
  /** null when the file is larger than MAX_FILE_BYTES: it is reported, not read. */
  bytes: Buffer | null;
  size: number;
}

/** The config files of one revision: a commit, or a directory's current tree. */
export interface Snapshot {
  /** A commit id, or `dir:` + the digest of the tree for a plain directory. */
  revision: string;
  files: SnapshotFile[];
}

/** Reads the config folders of a working directory. The revision is a digest of what was read. */
export async function readDirSnapshot(root: string): Promise<Snapshot> {
  const paths: string[] = [];
  for (const folder of CONFIG_FOLDERS) await walk(join(root, folder), paths);
  // Reading thousands of small files one after another is latency-bound; a bounded fan-out keeps it short.
  const files: SnapshotFile[] = new Array(paths.length);
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const i = next++;
      const full = paths[i]!;
      const { size } = await stat(full);
      files[i] = { path: relative(root, full).split(sep).join("/"), size, bytes: size > MAX_FILE_BYTES ? null : await readFile(full) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(32, paths.length) }, worker));
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { revision: `dir:${treeDigest(files)}`, files };
}

async function walk(dir: string, out: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const full = join(dir, e.name);
    if (e.isDirectory()) await walk(full, out);
    else if (e.isFile() && /\.ya?ml$/.test(e.name)) out.push(full);
  }
}

function treeDigest(files: SnapshotFile[]): string {
  const h = createHash("sha256");
  for (const f of files) {
    h.update(f.path).update("\0").update(String(f.size)).update("\0");
    if (f.bytes) h.update(f.bytes);
    h.update("\0");
  }
  return h.digest("hex");
}

/**
 * Reads the config folders as committed at `rev`, from git's object store, not
 * the working tree. simple-git resolves the revision and lists the tree; the
 * blobs are read through one `git cat-file --batch` process, because a repo of
 * thousands of rules would otherwise cost one git process per file.
 */
export async function readGitSnapshot(repoDir: string, rev: string): Promise<Snapshot> {
  const git = simpleGit(repoDir);
  let commit: string;
  try {
    commit = (await git.revparse(["--verify", "--quiet", `${rev}^{commit}`])).trim();
  } catch {
    commit = "";
  }
  if (!/^[0-9a-f]{40,64}$/.test(commit)) throw new Error(`unknown revision ${rev} in ${repoDir}`);
  const listing = await git.raw(["ls-tree", "-r", "-l", "-z", commit, "--", ...CONFIG_FOLDERS]);
  const entries: { oid: string; size: number; path: string }[] = [];
  for (const line of listing.split("\0")) {
    if (!line) continue;
    const tab = line.indexOf("\t");
    const [, type, oid, size] = line.slice(0, tab).split(/\s+/);
    const path = line.slice(tab + 1);
    if (type !== "blob" || !/\.ya?ml$/.test(path)) continue;
    entries.push({ oid: oid!, size: Number(size), path });
  }
  const wanted = entries.filter((e) => e.size <= MAX_FILE_BYTES).map((e) => e.oid);
  const blobs = await catFileBatch(repoDir, wanted);
  const files = entries.map((e) => ({ path: e.path, size: e.size, bytes: e.size > MAX_FILE_BYTES ? null : blobs.get(e.oid)! }));
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { revision: commit, files };
}

function catFileBatch(repoDir: string, oids: string[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  if (oids.length === 0) return Promise.resolve(out);
  return new Promise((resolve, reject) => {
    const child = spawn("git", ["cat-file", "--batch"], { cwd: repoDir, stdio: ["pipe", "pipe", "pipe"] });
    const chunks: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`git cat-file failed (${code}): ${stderr.trim()}`));
      const buf = Buffer.concat(chunks);
      let pos = 0;
      while (pos < buf.length) {
        const nl = buf.indexOf(0x0a, pos);
        const header = buf.subarray(pos, nl).toString();
        const [oid, type, size] = header.split(" ");
        if (type === "missing" || !size) return reject(new Error(`git object ${oid} is missing`));
        const start = nl + 1;
        out.set(oid!, buf.subarray(start, start + Number(size)));
        pos = start + Number(size) + 1;
      }
      resolve(out);
    });
    child.stdin.end(oids.join("\n") + "\n");
  });
}
