import { resolve } from "node:path";
import { loadSnapshot, readDirSnapshot, readGitSnapshot } from "../config/index.js";
import type { Diagnostic } from "../config/index.js";
import { oneOf, parseOptions, UsageError } from "./args.js";

export function formatDiagnostic(d: Pick<Diagnostic, "file" | "line" | "col" | "message">): string {
  return `${d.file}:${d.line}:${d.col}: error: ${d.message}`;
}

const USAGE = "usage: viw validate [--repo DIR] [--base REV] [--format text|json]";

export async function main(argv: string[]): Promise<number> {
  const { values } = parseOptions(argv, { repo: { type: "string", default: "." }, base: { type: "string" }, format: { type: "string", default: "text" } }, USAGE);
  const format = oneOf("format", values.format, ["text", "json"]);
  const repo = resolve(values.repo);
  const files = await readDirSnapshot(repo);
  const result = loadSnapshot(files);
  const errors = [...result.errors];
  // --base: the pull request's merge base. Some pin-roll mistakes (a cutover to a backup added in the same change, a skipped phase) only show against the revision it replaces.
  if (values.base !== undefined) {
    let base;
    try {
      base = loadSnapshot(await readGitSnapshot(repo, values.base));
    } catch (err) {
      throw new UsageError(`--base ${values.base}: ${(err as Error).message}`);
    }
    if (!base.state) process.stderr.write(`warning: base revision ${values.base} is itself invalid (${base.errors.length} error${base.errors.length === 1 ? "" : "s"}); the checks against it are skipped\n`);
    else if (result.state) {
      // Loaded only with --base: the pins' module graph (X.509, PKCS#11) is most of a plain validate's start-up.
      const { pinRollProblems } = await import("../pki/pins/index.js");
      errors.push(...pinRollProblems(base.state, result.state, files));
    }
  }
  if (format === "json") {
    const out = errors.map((e) => ({ file: e.file, line: e.line, col: e.col, message: e.message, kind: e.kind ?? null, id: e.id ?? null }));
    process.stdout.write(JSON.stringify({ valid: errors.length === 0, errors: out }, null, 2) + "\n");
  } else if (errors.length) {
    for (const e of errors) process.stdout.write(formatDiagnostic(e) + "\n");
    process.stderr.write(`${errors.length} error${errors.length === 1 ? "" : "s"} in ${new Set(errors.map((e) => e.file)).size} of ${result.files} files\n`);
  } else {
    process.stdout.write(`valid: ${result.files} files, digest ${result.state!.digest}${values.base !== undefined ? `, no pin-roll problem against ${values.base}` : ""}\n`);
  }
  return errors.length ? 1 : 0;
}
