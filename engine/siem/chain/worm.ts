/**
 * Write-once storage for batch files, manifests, checkpoints and key
 * certificates. Names are relative paths with `/` (README.md: key layout and
 * the S3 Object Lock mapping of this interface).
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { chmod, link, mkdir, open, readdir, readFile, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";

/** Someone or something tried to replace evidence: never a retry case, always an incident. */
export class WormIncidentError extends Error {
  constructor(
    readonly object: string,
    message: string,
  ) {
    super(`WORM incident: ${object}: ${message}`);
    this.name = "WormIncidentError";
  }
}

export interface PutOptions {
  /** When the object may be removed (S3: x-amz-object-lock-retain-until-date). */
  retainUntil?: Date;
}

export interface WormStore {
  /** A human-readable location (directory or s3://bucket/prefix). */
  readonly location: string;
  /**
   * Stores `data` under `name` once, durably, before resolving. An existing
   * object with the same bytes is accepted (a retry after a crash); one with
   * other bytes throws WormIncidentError and is left as it is.
   */
  put(name: string, data: Uint8Array, options?: PutOptions): Promise<void>;
  get(name: string): Promise<Buffer | undefined>;
  /** Names under a prefix (`manifests/`), sorted. */
  list(prefix: string): Promise<string[]>;
  /** Removes an object whose retention has passed (retention only; the caller decides expiry). */
  remove(name: string): Promise<void>;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

function checkName(name: string): void {
  if (!SAFE_NAME.test(name) || name.includes("..")) throw new Error(`invalid WORM object name ${JSON.stringify(name)}`);
}

/**
 * The filesystem backend. A new object is written to a temporary file,
 * fsynced, made read-only, then hard-linked to its name: link(2), unlike
 * rename(2), fails when the name exists, so two writers (or a bug) can never
 * replace evidence even in a race; the directory is fsynced after. The WORM
 * property of a plain directory is only as strong as its permissions: in
 * production mount it on storage that enforces immutability (chattr +i after
 * close, an append-only NFS export, or the S3 backend).
 */
export class DirectoryWorm implements WormStore {
  readonly location: string;

  constructor(readonly dir: string) {
    this.location = dir;
  }

  private path(name: string): string {
    checkName(name);
    return join(this.dir, ...name.split("/"));
  }

  async put(name: string, data: Uint8Array): Promise<void> {
    const final = this.path(name);
    const parent = dirname(final);
    const created = await mkdir(parent, { recursive: true });
    // New directories' own entries must survive a power loss too: sync the parent of each one made.
    if (created) for (let d = parent; d.length >= created.length; d = dirname(d)) await syncDir(dirname(d));
    const existing = await readFile(final).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
    if (existing) return this.same(name, existing, data);
    const tmp = join(parent, `.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
    const fh = await open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await chmod(tmp, 0o444);
      try {
        await link(tmp, final);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        return this.same(name, await readFile(final), data);
      }
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    await syncDir(parent);
  }

  private same(name: string, existing: Buffer, data: Uint8Array): void {
    if (!existing.equals(data)) throw new WormIncidentError(name, `exists with different content (${existing.length} bytes stored, ${data.length} offered); not replaced`);
  }

  async get(name: string): Promise<Buffer | undefined> {
    return readFile(this.path(name)).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
  }

  /** Reads into a buffer with `spare` bytes before the content (the verifier's in-place leaf hashing). */
  async getWithSpare(name: string, spare: number): Promise<Buffer | undefined> {
    let fh;
    try {
      fh = await open(this.path(name), "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    try {
      const { size } = await fh.stat();
      const buf = Buffer.allocUnsafe(spare + size);
      let at = 0;
      while (at < size) {
        const { bytesRead } = await fh.read(buf, spare + at, size - at, at);
        if (bytesRead === 0) break;
        at += bytesRead;
      }
      return buf.subarray(0, spare + at);
    } finally {
      await fh.close();
    }
  }

  async list(prefix: string): Promise<string[]> {
    const base = join(this.dir, ...prefix.split("/").filter(Boolean));
    const out: string[] = [];
    const walk = async (dir: string, rel: string) => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
        throw e;
      }
      for (const e of entries) {
        if (e.name.startsWith(".tmp-")) continue;
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(join(dir, e.name), r);
        else if (e.isFile()) out.push(r);
      }
    };
    const root = prefix.replace(/\/+$/, "");
    await walk(base, root);
    return out.sort();
  }

  async remove(name: string): Promise<void> {
    const p = this.path(name);
    await unlink(p).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
    await syncDir(dirname(p));
  }

  async size(name: string): Promise<number | undefined> {
    return stat(this.path(name)).then(
      (s) => s.size,
      () => undefined,
    );
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } catch (e) {
    // Some filesystems refuse fsync on a directory; the file itself is synced.
    if ((e as NodeJS.ErrnoException).code !== "EINVAL" && (e as NodeJS.ErrnoException).code !== "EISDIR") throw e;
  } finally {
    await fh.close();
  }
}

