import { parseArgs } from "node:util";
import type { ParseArgsConfig } from "node:util";

/** A usage error: printed with the usage line, exit 2 (DESIGN.md §3). */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs in strict mode, where any mistake is a UsageError carrying the command's usage line. */
export function parseOptions<O extends Options>(argv: string[], options: O, usage: string, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${usage}`);
  }
}

/** Checks an enumerated option such as --format. */
export function oneOf<T extends string>(option: string, value: string | undefined, allowed: readonly T[]): T {
  if (value === undefined || !(allowed as readonly string[]).includes(value)) {
    const list = allowed.length > 1 ? `${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}` : allowed[0];
    throw new UsageError(`--${option} must be ${list}, not ${value}`);
  }
  return value as T;
}

/** Runs a parse whose errors (unknown option, missing value) are usage errors, for commands that build their own parseArgs call. */
export function parseOrUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
