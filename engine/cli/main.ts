#!/usr/bin/env node
/**
 * `viw`: finds the command and hands it its arguments. Each command lives in
 * its own module here, parses with node:util parseArgs, calls the capability's
 * public surface and prints; exit codes follow DESIGN.md §3 (2 = usage).
 */
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";

export interface Command {
  /** Returns the exit code. */
  main(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, { module: string; summary: string }> = {
  validate: { module: "./validate.js", summary: "schema and semantic checks of a config repo" },
  plan: { module: "./plan.js", summary: "semantic diff of two revisions, relaxations marked" },
  test: { module: "./test.js", summary: "run the tests embedded in detection rules" },
  run: { module: "./run.js", summary: "the daemon" },
  ca: { module: "./ca.js", summary: "ca init|crl|revoke-intermediate: bootstrap the CA; sign the offline root's CRL" },
  "verify-logs": { module: "./verify-logs.js", summary: "verify the signed log batches" },
  replay: { module: "./replay.js", summary: "alerts a rule change adds or removes on stored events" },
  approve: { module: "./approve.js", summary: "record a signed approval of a revision" },
  evidence: { module: "./evidence.js", summary: "which reviewed commit was live when" },
  query: { module: "./query.js", summary: "events from the store" },
  pin: { module: "./pin.js", summary: "RFC 7469 pin-sha256 of a certificate, CSR or key" },
  agent: { module: "./agent.js", summary: "agent renew: keep a certificate renewed" },
  rotate: { module: "./rotate.js", summary: "emergency rotation: revoke and reissue a pin set's or profile's certificates" },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return ["usage: viw COMMAND [options]", "", ...Object.entries(COMMANDS).map(([c, { summary }]) => `  ${c.padEnd(width)}  ${summary}`)].join("\n");
}

export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage() + "\n");
    return name ? 0 : 2;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`viw: unknown command \`${name}\`\n${usage()}\n`);
    return 2;
  }
  const mod = (await import(entry.module)) as Command;
  return mod.main(rest);
}

export { UsageError } from "./args.js";
import { UsageError } from "./args.js";

function invokedDirectly(): boolean {
  // npm links the bin through node_modules/.bin, so compare real paths.
  try {
    return import.meta.url === pathToFileURL(realpathSync(process.argv[1] ?? "")).href;
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  runCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof UsageError) {
        process.stderr.write(`viw: ${err.message}\n`);
        process.exitCode = 2;
      } else {
        process.stderr.write(`viw: ${(err as Error).stack ?? String(err)}\n`);
        process.exitCode = 1;
      }
    },
  );
}
