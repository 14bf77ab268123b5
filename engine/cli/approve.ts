/** `viw approve REV [--repo DIR] [--key SSH_KEY] [--push REMOTE]`: a signed approval of a revision, in git notes. */
import { parseArgs } from "node:util";
import { approve, APPROVALS_REF } from "../gitops/index.js";
import { parseOrUsage, UsageError } from "./args.js";

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseOrUsage(() => parseArgs({
    args: argv,
    options: { repo: { type: "string" }, key: { type: "string" }, push: { type: "string" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  }));
  if (values.help || positionals.length !== 1) throw new UsageError("usage: viw approve REV [--repo DIR] [--key SSH_KEY] [--push REMOTE]");
  const repo = values.repo ?? ".";
  try {
    const r = await approve(repo, positionals[0]!, { key: values.key, push: values.push });
    process.stdout.write(
      `${r.added ? "approved" : "already approved"} commit ${r.commit} (tree ${r.tree}) in ${APPROVALS_REF}\n` +
        (r.pushed ? `pushed ${APPROVALS_REF} to ${r.pushed}\n` : `publish it with: git push <remote> ${APPROVALS_REF}\n`),
    );
    return 0;
  } catch (err) {
    process.stderr.write(`viw approve: ${(err as Error).message}\n`);
    return 1;
  }
}
