import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { pinOf, PinError } from "../pki/pins/index.js";
import { UsageError } from "./main.js";

const USAGE = "usage: viw pin FILE... (a certificate, CSR or key, PEM or DER; - reads stdin)";

/** `viw pin FILE`: prints the RFC 7469 pin-sha256, one line per file (`FILE: PIN` when several). */
export async function main(argv: string[]): Promise<number> {
  let positionals: string[];
  let values: { verbose?: boolean };
  try {
    ({ positionals, values } = parseArgs({ args: argv, options: { verbose: { type: "boolean", short: "v" } }, strict: true, allowPositionals: true }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  if (positionals.length === 0) throw new UsageError(USAGE);
  let failed = 0;
  for (const file of positionals) {
    let bytes: Buffer;
    try {
      bytes = file === "-" ? await readStdin() : await readFile(file);
    } catch (err) {
      process.stderr.write(`viw pin: ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}\n`);
      failed++;
      continue;
    }
    try {
      const r = pinOf(bytes);
      const prefix = positionals.length > 1 ? `${file}: ` : "";
      process.stdout.write(`${prefix}${r.pin}${values.verbose ? ` (${r.source})` : ""}\n`);
    } catch (err) {
      if (!(err instanceof PinError)) throw err;
      process.stderr.write(`viw pin: ${file}: ${err.message}\n`);
      failed++;
    }
  }
  return failed ? 1 : 0;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
