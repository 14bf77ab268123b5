import { parentPort, workerData } from "node:worker_threads";
import { parseFile } from "./parse.js";
import type { SnapshotFile } from "./snapshot.js";

// Buffers arrive as plain Uint8Arrays; the parser decodes with Buffer#toString.
const files = (workerData as SnapshotFile[]).map((f) => ({ ...f, bytes: f.bytes === null ? null : Buffer.from(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength) }));
const results = files.map((f) => {
  const r = parseFile(f);
  if (!r.ok) return r;
  const { at: _at, ...file } = r.file;
  return { ok: true, file };
});
parentPort!.postMessage(results);
