import { placementOf } from "./kinds.js";
import { createHash } from "node:crypto";
import { parseFile } from "./parse.js";
import type { ParsedFile, ParseResult } from "./parse.js";
import { validateSchema } from "./schema.js";
import { checkSemantics } from "./semantic.js";
import type { Snapshot, SnapshotFile } from "./snapshot.js";
import { buildState } from "./state.js";
import type { DesiredState } from "./state.js";
import type { Diagnostic } from "./types.js";

export interface LoadOptions {
  /**
   * Reuse the parse of files whose bytes are unchanged since the previous load
   * (default true). YAML parsing dominates a load (~1 ms per rule file with the
   * yaml package), and a new revision usually touches a handful of files.
   */
  reuseParses?: boolean;
}

let previousParses = new Map<string, ParseResult>();

function parseCached(raw: SnapshotFile, fresh: Map<string, ParseResult>, reuse: boolean): ParseResult {
  if (!reuse || raw.bytes === null) return parseFile(raw);
  const key = `${raw.path}\0${createHash("sha1").update(raw.bytes).digest("hex")}`;
  const hit = previousParses.get(key) ?? parseFile(raw);
  fresh.set(key, hit);
  return hit;
}

export interface LoadResult {
  revision: string;
  /** Present only when there are no errors: a revision is used whole or not at all. */
  state?: DesiredState;
  errors: Diagnostic[];
  files: number;
}

/**
 * Snapshot → DesiredState. Every file is parsed and schema-checked on its own,
 * so one broken file never hides another's errors; cross-file checks run over
 * the files that passed, since a reference into a broken file would only add
 * noise.
 */
export function loadSnapshot(snapshot: Snapshot, options: LoadOptions = {}): LoadResult {
  const reuse = options.reuseParses ?? true;
  const fresh = new Map<string, ParseResult>();
  const errors: Diagnostic[] = [];
  const good: ParsedFile[] = [];
  const broken = new Set<string>();
  for (const raw of snapshot.files) {
    const parsed = parseCached(raw, fresh, reuse);
    if (!parsed.ok) {
      errors.push(...parsed.errors);
      const placement = placementOf(raw.path);
      if (placement && "kind" in placement) broken.add(`${placement.kind}/${placement.id}`);
      continue;
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
  }
  if (reuse) previousParses = fresh;
  errors.push(...checkSemantics(good, broken));
  errors.sort(byPosition);
  if (errors.length) return { revision: snapshot.revision, errors, files: snapshot.files.length };
  return { revision: snapshot.revision, state: buildState(snapshot.revision, good), errors, files: snapshot.files.length };
}

function byPosition(a: Diagnostic, b: Diagnostic): number {
  return a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col;
}
