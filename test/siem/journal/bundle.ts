// Child processes in tests (kill -9 scenarios) run TypeScript sources: Node 20
// cannot strip types, so the entry is bundled with rolldown (vitest's bundler)
// into node_modules/.cache, where the packages left external still resolve.
import { build } from "rolldown";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..", "..");

export async function bundleForNode(entry: string): Promise<string> {
  const outDir = mkdtempSync(join(ROOT, "node_modules", ".cache", "viw-test-"));
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
