import { resolve } from "node:path";
import { loadSnapshot, readDirSnapshot } from "../config/index.js";
import type { Diagnostic } from "../config/index.js";
import { oneOf, parseOptions } from "./args.js";

export function formatDiagnostic(d: Pick<Diagnostic, "file" | "line" | "col" | "message">): string {
  return `${d.file}:${d.line}:${d.col}: error: ${d.message}`;
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseOptions(argv, { repo: { type: "string", default: "." }, format: { type: "string", default: "text" } }, "usage: viw validate [--repo DIR] [--format text|json]");
  const format = oneOf("format", values.format, ["text", "json"]);
  const result = loadSnapshot(await readDirSnapshot(resolve(values.repo)));
  if (format === "json") {
    const errors = result.errors.map((e) => ({ file: e.file, line: e.line, col: e.col, message: e.message, kind: e.kind ?? null, id: e.id ?? null }));
    process.stdout.write(JSON.stringify({ valid: result.errors.length === 0, errors }, null, 2) + "\n");
  } else if (result.errors.length) {
    for (const e of result.errors) process.stdout.write(formatDiagnostic(e) + "\n");
    process.stderr.write(`${result.errors.length} error${result.errors.length === 1 ? "" : "s"} in ${new Set(result.errors.map((e) => e.file)).size} of ${result.files} files\n`);
  } else {
    process.stdout.write(`valid: ${result.files} files, digest ${result.state!.digest}\n`);
  }
  return result.errors.length ? 1 : 0;
}
