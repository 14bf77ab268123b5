import { LineCounter, parseDocument } from "yaml";
import type { Diagnostic, DesiredState, Position, Snapshot } from "../../config/index.js";
import { checkPinSetRevision } from "./roll.js";

/**
 * The two-revision pin-roll problems of a change (checkPinSetRevision on every
 * pin set both revisions have), positioned in the new revision's files, for
 * the places that compare two revisions: the pins service's prepare (the
 * daemon refuses the revision), `viw plan --from A --to B` and
 * `viw validate --base REV` (the pull request fails at review).
 *
 * `files` is the new revision's snapshot: with it a problem points at the
 * offending node (roll.to, pins[i].role); without it, at the pin set's first
 * key, which is all a DesiredState remembers.
 */
export function pinRollProblems(from: DesiredState | undefined, to: DesiredState, files?: Snapshot): Diagnostic[] {
  if (!from) return [];
  const out: Diagnostic[] = [];
  for (const [id, set] of to.pinSets) {
    const problems = checkPinSetRevision(from.pinSets.get(id), set);
    if (!problems.length) continue;
    const at = to.locate("pinset", id) ?? { file: `pins/${id}.yaml`, line: 1, col: 1 };
    const doc = files && parsed(files, at.file);
    for (const p of problems) {
      const where = (doc && positionIn(doc, p.path)) ?? { line: at.line, col: at.col };
      out.push({ file: at.file, ...where, message: `${p.path.join(".")}: ${p.message}`, kind: "pinset", id });
    }
  }
  return out;
}

type Parsed = { doc: ReturnType<typeof parseDocument>; lines: LineCounter };

function parsed(files: Snapshot, path: string): Parsed | undefined {
  const f = files.files.find((x) => x.path === path);
  if (!f?.bytes) return undefined;
  const lines = new LineCounter();
  // The file already passed the config core's parser (the revision is valid); this second parse is only to find a node's offset.
  const doc = parseDocument(f.bytes.toString("utf8"), { lineCounter: lines });
  return doc.errors.length ? undefined : { doc, lines };
}

function positionIn({ doc, lines }: Parsed, path: (string | number)[]): Omit<Position, "file"> | undefined {
  const node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
  const offset = node && typeof node === "object" && node.range ? node.range[0] : undefined;
  if (offset === undefined) return undefined;
  const { line, col } = lines.linePos(offset);
  return { line, col };
}
