// A DesiredState from the default content with test shipper keys (shared by the harness and child processes).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSnapshot, readDirSnapshot, type DesiredState } from "../../../engine/config/index.js";

export async function testStateFrom(repo: string, publicKeys: Record<string, string>, edit?: (ingestYaml: string) => string): Promise<DesiredState> {
  const dir = mkdtempSync(join(tmpdir(), "viw-ingest-cfg-"));
  try {
    for (const d of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(repo, d), join(dir, d), { recursive: true });
    let ingest = readFileSync(join(dir, "policies", "ingest.yaml"), "utf8");
    for (const [id, key] of Object.entries(publicKeys)) {
      ingest = ingest.replace(new RegExp(`(- id: ${id}\\n(?:.*\\n)*?\\s+public_key: ).*`), `$1${key}`);
    }
    if (edit) ingest = edit(ingest);
    writeFileSync(join(dir, "policies", "ingest.yaml"), ingest);
    const r = loadSnapshot(await readDirSnapshot(dir));
    if (!r.state) throw new Error(`test config invalid: ${JSON.stringify(r.errors.slice(0, 3))}`);
    return r.state;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
