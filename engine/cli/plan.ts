import { resolve } from "node:path";
import { loadSnapshot, planChanges, readDirSnapshot, readGitSnapshot } from "../config/index.js";
import type { Change, Diagnostic, LoadResult, Plan, Snapshot } from "../config/index.js";
import { pinRollProblems } from "../pki/pins/index.js";
import { oneOf, parseOptions, UsageError } from "./args.js";
import { formatDiagnostic } from "./validate.js";

const USAGE = "usage: viw plan [--repo DIR] [--from REV] [--to REV] [--format text|json|markdown]";

export async function main(argv: string[]): Promise<number> {
  const { values } = parseOptions(
    argv,
    { repo: { type: "string", default: "." }, from: { type: "string" }, to: { type: "string" }, format: { type: "string", default: "text" } },
    USAGE,
  );
  const format = oneOf("format", values.format, ["text", "json", "markdown"]);
  const repo = resolve(values.repo);
  // DESIGN §3: by default the last commit's parent against the working tree.
  const fromRev = values.from ?? "HEAD~1";
  let from: LoadResult | undefined;
  try {
    from = loadSnapshot(await readGitSnapshot(repo, fromRev));
  } catch (err) {
    if (values.from !== undefined) throw new UsageError((err as Error).message);
    from = undefined; // a repo with one commit: everything is new
  }
  let to: LoadResult;
  let toFiles: Snapshot;
  try {
    toFiles = values.to !== undefined ? await readGitSnapshot(repo, values.to) : await readDirSnapshot(repo);
    to = loadSnapshot(toFiles);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const invalid = [from, to].filter((r): r is LoadResult => r !== undefined && r.errors.length > 0);
  if (invalid.length) {
    for (const r of invalid) {
      process.stderr.write(`revision ${r.revision} is invalid:\n`);
      for (const e of r.errors) process.stderr.write(formatDiagnostic(e) + "\n");
    }
    if (format === "json") process.stdout.write(JSON.stringify({ valid: false, errors: invalid.flatMap((r) => r.errors.map((e) => ({ revision: r.revision, ...e }))) }, null, 2) + "\n");
    return 1;
  }
  const plan = planChanges(from?.state, to.state!);
  // Each side is valid on its own, but a pin roll must also be a legal step from the previous revision; the daemon would refuse it.
  const problems = pinRollProblems(from?.state, to.state!, toFiles);
  process.stdout.write(format === "json" ? JSON.stringify(problems.length ? { ...plan, problems } : plan, null, 2) + "\n" : format === "markdown" ? markdown(plan, problems) : text(plan, problems));
  for (const d of problems) if (format === "json") process.stderr.write(formatDiagnostic(d) + "\n");
  return problems.length ? 1 : 0;
}

function show(v: unknown): string {
  if (v === undefined) return "∅";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function mark(c: Change): string {
  return c.verdict === "relaxation" ? "RELAXATION" : c.verdict === "tightening" ? "tightening" : "";
}

function describe(c: Change): string {
  const where = `${c.kind} ${c.id}${c.field ? ` ${c.field}` : ""}`;
  if (c.change === "changed") return `~ ${where}: ${show(c.old)} → ${show(c.new)}`;
  if (c.change === "added") return `+ ${where}${c.new !== undefined ? `: ${show(c.new)}` : ""}`;
  return `- ${where}${c.old !== undefined ? `: ${show(c.old)}` : ""}`;
}

function summary(p: Plan): string {
  return `${p.changes.length} change${p.changes.length === 1 ? "" : "s"}, ${p.relaxations} relaxation${p.relaxations === 1 ? "" : "s"}, ${p.tightenings} tightening${p.tightenings === 1 ? "" : "s"}`;
}

function text(p: Plan, problems: Diagnostic[]): string {
  const lines = [`plan ${p.from ?? "(nothing)"} → ${p.to}`];
  for (const c of p.changes) {
    const m = mark(c);
    lines.push(`${describe(c)}${m ? `  [${m}: ${c.reason}]` : ""}`);
  }
  lines.push(summary(p));
  if (problems.length) lines.push(`${problems.length} pin-roll problem${problems.length === 1 ? "" : "s"} (the daemon refuses this revision):`, ...problems.map(formatDiagnostic));
  return lines.join("\n") + "\n";
}

function cell(v: unknown): string {
  return v === undefined ? "" : "`" + show(v).replace(/\|/g, "\\|").replace(/`/g, "'") + "`";
}

function markdown(p: Plan, problems: Diagnostic[]): string {
  const out = [`### viw plan: ${summary(p)}`, ""];
  if (problems.length) {
    out.push(`> ❌ **${problems.length} pin-roll problem${problems.length === 1 ? "" : "s"}**: the daemon refuses this revision.`, ">");
    for (const d of problems) out.push(`> - \`${d.file}:${d.line}:${d.col}\` ${d.message}`);
    out.push("");
  }
  if (p.relaxations > 0) out.push(`> **${p.relaxations} relaxation${p.relaxations === 1 ? "" : "s"}**: governance approvals are required before the daemon applies this revision.`, "");
  if (p.changes.length === 0) return out.concat("No changes.", "").join("\n");
  out.push("| | kind | object | field | old | new | verdict |", "|---|---|---|---|---|---|---|");
  for (const c of p.changes) {
    const sign = c.change === "added" ? "+" : c.change === "removed" ? "−" : "~";
    const verdict = c.verdict === "relaxation" ? `⚠️ **relaxation**: ${c.reason}` : c.verdict === "tightening" ? `tightening: ${c.reason}` : "";
    out.push(`| ${sign} | ${c.kind} | ${c.id} | ${c.field ? "`" + c.field + "`" : ""} | ${cell(c.old)} | ${cell(c.new)} | ${verdict} |`);
  }
  return out.join("\n") + "\n";
}
