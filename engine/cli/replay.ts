import { resolve } from "node:path";
import { parseDuration } from "../config/index.js";
import { formatReplay, loadRevision, replayStates, ReplayError, storedEvents } from "../siem/detect/index.js";
import { parseOptions, UsageError } from "./args.js";

const USAGE = "usage: viw replay --base REV [--head REV] [--since 7d] [--repo DIR] [--data DIR] [--format text|markdown]";

/** `viw replay`: the alerts a rule change adds and removes on the stored events. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseOptions(
    argv,
    {
      base: { type: "string" },
      head: { type: "string", default: "HEAD" },
      since: { type: "string", default: "7d" },
      repo: { type: "string", default: "." },
      data: { type: "string", default: process.env.VIW_DATA ?? ".viw-data" },
      format: { type: "string", default: "text" },
    },
    USAGE,
  );
  if (!values.base) throw new UsageError(`--base is required\n${USAGE}`);
  if (values.format !== "text" && values.format !== "markdown") throw new UsageError(`--format must be text or markdown, not ${values.format}`);
  let sinceMs: number;
  try {
    sinceMs = Date.now() - parseDuration(values.since);
  } catch {
    throw new UsageError(`--since must be a duration like 7d or 12h, not ${values.since}`);
  }
  try {
    const repo = resolve(values.repo);
    const [base, head] = await Promise.all([loadRevision(repo, values.base), loadRevision(repo, values.head)]);
    const events = storedEvents(resolve(values.data), sinceMs);
    process.stdout.write(formatReplay(replayStates(base, head, events), values.format));
    return 0;
  } catch (e) {
    if (e instanceof ReplayError) {
      process.stderr.write(`viw replay: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
