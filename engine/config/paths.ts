import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root, whether running from engine/ (tests) or dist/engine/ (built). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("viw package root not found");
    dir = up;
  }
  return dir;
}

export function schemasDir(): string {
  return join(packageRoot(), "engine", "schemas");
}
