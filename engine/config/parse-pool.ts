import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { locatorOf, parseFile, parseFileFast } from "./parse.js";
import type { ParseResult } from "./parse.js";
import type { SnapshotFile } from "./snapshot.js";

/**
 * Below this many files that need the yaml package a worker's start-up costs
 * more than it saves. Files the fast parser reads never go to a worker: it
 * parses them faster than a worker could receive them and send them back.
 */
const MIN_FILES_FOR_WORKERS = 400;

type WireResult = { ok: true; file: Omit<Extract<ParseResult, { ok: true }>["file"], "at"> } | Extract<ParseResult, { ok: false }>;

/**
 * Parses files with the fast parser inline, and those it declines on worker
 * threads, one per core, because the yaml package parses ~2 MB/s and a repo of
 * thousands of such files is CPU-bound on it. Results come back as plain data
 * (values and position tables) and get their locator here. Parses inline when
 * the compiled worker is not there (running from TypeScript sources under the
 * test runner).
 */
export async function parseInWorkers(files: readonly SnapshotFile[]): Promise<ParseResult[]> {
  const fast = files.map(parseFileFast);
  const rest = files.filter((_, i) => fast[i] === null);
  if (rest.length === 0) return fast as ParseResult[];
  const parsed = await parseRest(rest);
  let j = 0;
  return fast.map((r) => r ?? parsed[j++]!);
}

async function parseRest(files: readonly SnapshotFile[]): Promise<ParseResult[]> {
  const workerFile = fileURLToPath(new URL("./parse-worker.js", import.meta.url));
  const cores = Math.min(availableParallelism(), 4);
  if (files.length < MIN_FILES_FOR_WORKERS || cores < 2 || !existsSync(workerFile)) return files.map(parseFile);
  const shards: SnapshotFile[][] = Array.from({ length: cores }, () => []);
  const slots: number[][] = Array.from({ length: cores }, () => []);
  files.forEach((f, i) => {
    shards[i % cores]!.push(f);
    slots[i % cores]!.push(i);
  });
  const out: ParseResult[] = new Array(files.length);
  await Promise.all(
    shards.map(
      (shard, w) =>
        new Promise<void>((resolve, reject) => {
          const worker = new Worker(workerFile, { workerData: shard.map((f) => ({ path: f.path, size: f.size, bytes: f.bytes })) });
          worker.once("message", (results: WireResult[]) => {
            results.forEach((r, k) => {
              out[slots[w]![k]!] = r.ok ? { ok: true, file: { ...r.file, at: locatorOf(r.file.path, r.file.positions) } } : r;
            });
            void worker.terminate();
            resolve();
          });
          worker.once("error", reject);
        }),
    ),
  );
  return out;
}
