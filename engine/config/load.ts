import { createHash } from "node:crypto";
import { placementOf } from "./kinds.js";
import { parseFile } from "./parse.js";
import type { ParsedFile, ParseResult } from "./parse.js";
import { parseInWorkers } from "./parse-pool.js";
import { validateSchema } from "./schema.js";
import { checkSemantics } from "./semantic.js";
import type { Snapshot, SnapshotFile } from "./snapshot.js";
import { buildState } from "./state.js";
import type { DesiredState } from "./state.js";
import type { Diagnostic } from "./types.js";

export interface LoadOptions {
  /**
   * Reuse the parse of files whose bytes are unchanged since the previous load
   * (default true). A new revision usually touches a handful of files, and a
   * file the fast parser declines costs ~1 ms with the yaml package.
   */
  reuseParses?: boolean;
}

export interface LoadResult {
  revision: string;
  /** Present only when there are no errors: a revision is used whole or not at all. */
  state?: DesiredState;
  errors: Diagnostic[];
  files: number;
}

let previousParses = new Map<string, ParseResult>();

function cacheKey(raw: SnapshotFile): string | null {
  return raw.bytes === null ? null : `${raw.path}\0${createHash("sha1").update(raw.bytes).digest("hex")}`;
}

/**
 * Snapshot → DesiredState. Every file is parsed and schema-checked on its own,
 * so one broken file never hides another's errors; cross-file checks run over
 * the files that passed, since a reference into a broken file would only add
 * noise.
 */
export function loadSnapshot(snapshot: Snapshot, options: LoadOptions = {}): LoadResult {
  const reuse = options.reuseParses ?? true;
  const keys = snapshot.files.map((f) => (reuse ? cacheKey(f) : null));
  const results = snapshot.files.map((f, i) => (keys[i] && previousParses.get(keys[i]!)) || parseFile(f));
  return finish(snapshot, results, reuse ? keys : null);
}

/**
 * The same as loadSnapshot, with the YAML parsing of a large revision spread
 * over worker threads (one per core). Small revisions parse inline.
 */
export async function loadSnapshotAsync(snapshot: Snapshot, options: LoadOptions = {}): Promise<LoadResult> {
  const reuse = options.reuseParses ?? true;
  const keys = snapshot.files.map((f) => (reuse ? cacheKey(f) : null));
  const results: (ParseResult | undefined)[] = keys.map((k) => (k ? previousParses.get(k) : undefined));
  const missing = snapshot.files.filter((_, i) => results[i] === undefined);
  const parsed = await parseInWorkers(missing);
  let j = 0;
  for (let i = 0; i < results.length; i++) if (results[i] === undefined) results[i] = parsed[j++];
  return finish(snapshot, results as ParseResult[], reuse ? keys : null);
}

function finish(snapshot: Snapshot, results: ParseResult[], keys: (string | null)[] | null): LoadResult {
  const errors: Diagnostic[] = [];
  const good: ParsedFile[] = [];
  const broken = new Set<string>();
  results.forEach((parsed, i) => {
    const raw = snapshot.files[i]!;
    if (!parsed.ok) {
      errors.push(...parsed.errors);
      const placement = placementOf(raw.path);
      if (placement && "kind" in placement) broken.add(`${placement.kind}/${placement.id}`);
      return;
    }
    const file = parsed.file;
    const schemaErrors = validateSchema(file);
    const id = (file.value as { id?: unknown }).id;
    if (typeof id === "string" && id !== file.stem) {
      schemaErrors.unshift({ ...file.at.value(["id"]), message: `id \`${id}\` must equal the file name \`${file.stem}\``, kind: file.kind, id });
    }
    if (schemaErrors.length) {
      errors.push(...schemaErrors);
      broken.add(`${file.kind}/${file.stem}`);
    } else good.push(file);
  });
  if (keys) {
    const fresh = new Map<string, ParseResult>();
    keys.forEach((k, i) => k && fresh.set(k, results[i]!));
    previousParses = fresh;
  }
  errors.push(...checkSemantics(good, broken));
  errors.sort(byPosition);
  if (errors.length) return { revision: snapshot.revision, errors, files: snapshot.files.length };
  return { revision: snapshot.revision, state: buildState(snapshot.revision, good), errors, files: snapshot.files.length };
}

function byPosition(a: Diagnostic, b: Diagnostic): number {
  return a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col;
}
