import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { locatorOf, parseFile } from "./parse.js";
import type { ParseResult } from "./parse.js";
import type { SnapshotFile } from "./snapshot.js";

/** Below this many files a worker's start-up costs more than it saves. */
const MIN_FILES_FOR_WORKERS = 400;

type WireResult = { ok: true; file: Omit<Extract<ParseResult, { ok: true }>["file"], "at"> } | Extract<ParseResult, { ok: false }>;

/**
 * Parses files on worker threads, one per core, because the yaml package
 * parses ~2 MB/s and a repo of thousands of rules is CPU-bound on it. Results
 * come back as plain data (values and position tables) and get their locator
 * here. Falls back to parsing inline when the compiled worker is not there
 * (running from TypeScript sources under the test runner).
 */
export async function parseInWorkers(files: readonly SnapshotFile[]): Promise<ParseResult[]> {
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
