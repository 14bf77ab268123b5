import { cp, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");
export const CONFIG_FOLDERS = ["profiles", "pins", "policies", "detections", "dashboards"];

/** A scratch copy of the default config repo, optionally with fixture files laid over it. */
export async function defaultRepoCopy(overlay?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "viw-config-"));
  for (const f of CONFIG_FOLDERS) await cp(join(ROOT, f), join(dir, f), { recursive: true });
  if (overlay) await cp(overlay, dir, { recursive: true });
  return dir;
}

/** Runs a `viw` command in-process and captures what it prints. */
export async function runViw(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { runCli } = await import("../../engine/cli/main.js");
  let stdout = "";
  let stderr = "";
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((c: string | Uint8Array) => ((stdout += String(c)), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => ((stderr += String(c)), true)) as typeof process.stderr.write;
  try {
    let code: number;
    try {
      code = await runCli(argv);
    } catch (e) {
      if ((e as Error).constructor.name !== "UsageError") throw e;
      stderr += (e as Error).message;
      code = 2;
    }
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}
