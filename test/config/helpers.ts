import { cp, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { captureOutput } from "../capture.js";

export const ROOT = resolve(import.meta.dirname, "../..");
export const CONFIG_FOLDERS = ["profiles", "pins", "policies", "detections", "dashboards"];

/** A scratch copy of the default config repo, optionally with fixture files laid over it. */
export async function defaultRepoCopy(overlay?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "viw-config-"));
  for (const f of CONFIG_FOLDERS) await cp(join(ROOT, f), join(dir, f), { recursive: true });
  if (overlay) await cp(overlay, dir, { recursive: true });
  return dir;
}

/** Runs a `viw` command in-process and captures what it prints; a usage error is exit 2 with its message on stderr. */
export async function runViw(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { runCli } = await import("../../engine/cli/main.js");
  let usage = "";
  const r = await captureOutput(async () => {
    try {
      return await runCli(argv);
    } catch (e) {
      if ((e as Error).constructor.name !== "UsageError") throw e;
      usage = (e as Error).message;
      return 2;
    }
  });
  return { code: r.code, stdout: r.out, stderr: r.err + usage };
}
