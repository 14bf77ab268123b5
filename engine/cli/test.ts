import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { loadSnapshot, readDirSnapshot } from "../config/index.js";
import { runRuleTests } from "../siem/detect/index.js";
import { UsageError } from "./main.js";

const USAGE = "usage: viw test [--repo DIR] [--filter ID]";

/** `viw test`: runs the tests embedded in detection rules; one line per test, then `N passed, N failed`. */
export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { repo: { type: "string", default: "." }, filter: { type: "string" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  const loaded = loadSnapshot(await readDirSnapshot(resolve(values.repo)));
  if (!loaded.state) {
    for (const e of loaded.errors) process.stdout.write(`${e.file}:${e.line}:${e.col}: error: ${e.message}\n`);
    process.stdout.write(`0 passed, 0 failed (the repo is invalid: ${loaded.errors.length} error${loaded.errors.length === 1 ? "" : "s"})\n`);
    return 1;
  }
  const results = runRuleTests(loaded.state, { filter: values.filter });
  let passed = 0;
  for (const r of results) {
    if (r.passed) passed++;
    const late = r.late ? ` (${r.late} late event${r.late === 1 ? "" : "s"})` : "";
    process.stdout.write(`${r.passed ? "ok  " : "FAIL"} ${r.rule}: ${r.test}${late}${r.passed ? "" : ` — ${r.message}`}\n`);
  }
  if (values.filter && results.length === 0) process.stderr.write(`viw test: no rule matches --filter ${values.filter}\n`);
  const failed = results.length - passed;
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  return failed > 0 || (values.filter !== undefined && results.length === 0) ? 1 : 0;
}
