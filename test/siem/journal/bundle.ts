// Child processes in tests (kill -9 scenarios, benchmarks) run TypeScript
// sources: Node 20 cannot strip types, so the entry is bundled with rolldown
// (vitest's bundler) into node_modules/.cache, where the packages left
// external still resolve. Removed when the test process exits.
import { build } from "rolldown";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const made: string[] = [];
process.once("exit", () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** Vitest's forks may be ended without an exit event: bundles older than an hour are swept. */
function sweep(cache: string): void {
  for (const d of readdirSync(cache)) {
    if (!d.startsWith("viw-test-")) continue;
    try {
      if (Date.now() - statSync(join(cache, d)).mtimeMs > 3_600_000) rmSync(join(cache, d), { recursive: true, force: true });
    } catch {
      // another process swept it
    }
  }
}

export async function bundleForNode(entry: string, keep = false): Promise<string> {
  // A fresh clone has no node_modules/.cache yet.
  mkdirSync(join(ROOT, "node_modules", ".cache"), { recursive: true });
  sweep(join(ROOT, "node_modules", ".cache"));
  const outDir = mkdtempSync(join(ROOT, "node_modules", ".cache", "viw-test-"));
  if (!keep) made.push(outDir);
  await build({
    input: entry,
    platform: "node",
    external: [/^[^./]/],
    logLevel: "silent",
    output: { dir: outDir, format: "esm", entryFileNames: "[name].mjs" },
  });
  const name = entry.split("/").pop()!.replace(/\.ts$/, ".mjs");
  return join(outDir, name);
}
