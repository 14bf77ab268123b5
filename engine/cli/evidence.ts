/** `viw evidence [--data DIR] [--from T] [--to T] [--format json|markdown]`: which reviewed commit was live when. Exit 1 when the timeline does not verify. */
import { parseArgs } from "node:util";
import { buildEvidence, evidenceMarkdown } from "../gitops/index.js";
import { parseOrUsage, UsageError } from "./args.js";

function time(flag: string, v: string | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = /^\d+$/.test(v) ? new Date(Number(v)) : new Date(v);
  if (Number.isNaN(d.getTime())) throw new UsageError(`${flag} ${v}: expected an ISO 8601 time (2026-11-23T10:00:00Z) or epoch milliseconds`);
  return d;
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseOrUsage(() => parseArgs({
    args: argv,
    options: { data: { type: "string" }, from: { type: "string" }, to: { type: "string" }, format: { type: "string" }, help: { type: "boolean", short: "h" } },
  }));
  if (values.help) throw new UsageError("usage: viw evidence [--data DIR] [--from T] [--to T] [--format json|markdown]");
  const format = values.format ?? "markdown";
  if (format !== "json" && format !== "markdown") throw new UsageError(`--format ${format}: expected json or markdown`);
  const ev = await buildEvidence(values.data ?? process.env.VIW_DATA ?? ".viw-data", { from: time("--from", values.from), to: time("--to", values.to) });
  process.stdout.write(format === "json" ? JSON.stringify(ev, null, 2) + "\n" : evidenceMarkdown(ev));
  if (!ev.verified) process.stderr.write(`viw evidence: ${ev.verification}\n`);
  return ev.verified ? 0 : 1;
}
