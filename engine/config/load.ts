import { placementOf } from "./kinds.js";
import { parseFile } from "./parse.js";
import type { ParsedFile } from "./parse.js";
import { validateSchema } from "./schema.js";
import { checkSemantics } from "./semantic.js";
import type { Snapshot } from "./snapshot.js";
import { buildState } from "./state.js";
import type { DesiredState } from "./state.js";
import type { Diagnostic } from "./types.js";

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
export function loadSnapshot(snapshot: Snapshot): LoadResult {
  const errors: Diagnostic[] = [];
  const good: ParsedFile[] = [];
  const broken = new Set<string>();
  for (const raw of snapshot.files) {
    const parsed = parseFile(raw);
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
  errors.push(...checkSemantics(good, broken));
  errors.sort(byPosition);
  if (errors.length) return { revision: snapshot.revision, errors, files: snapshot.files.length };
  return { revision: snapshot.revision, state: buildState(snapshot.revision, good), errors, files: snapshot.files.length };
}

function byPosition(a: Diagnostic, b: Diagnostic): number {
  return a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col;
}
