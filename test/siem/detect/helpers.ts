import { resolve } from "node:path";
import { stringify } from "yaml";
import { loadSnapshot, readDirSnapshot } from "../../../engine/config/index.js";
import type { DesiredState, RuleDoc } from "../../../engine/config/index.js";
import type { Snapshot } from "../../../engine/config/index.js";

export const ROOT = resolve(import.meta.dirname, "../../..");

let base: Snapshot | undefined;

/** The default config repo, with rules replaced or added (and optionally some removed). */
export async function stateWith(rules: Partial<RuleDoc>[] = [], opts: { only?: boolean; revision?: string } = {}): Promise<DesiredState> {
  base ??= await readDirSnapshot(ROOT);
  const files = base.files.filter((f) => !(opts.only && f.path.startsWith("detections/") && !f.path.startsWith("detections/lists/")));
  for (const r of rules) {
    // Validation wants a firing and a non-firing test; these engine tests do not run them.
    const placeholder = (alerts: number) => ({ name: `placeholder ${alerts}`, events: [{ timestamp: "2026-11-23T10:00:00Z" }], expect: { alerts } });
    const doc = { tests: [placeholder(1), placeholder(0)], ...r };
    const bytes = Buffer.from(stringify(doc));
    const path = `detections/${r.id}.yaml`;
    const i = files.findIndex((f) => f.path === path);
    const file = { path, bytes, size: bytes.length };
    if (i >= 0) files[i] = file;
    else files.push(file);
  }
  const { state, errors } = loadSnapshot({ revision: opts.revision ?? "test-rev", files });
  if (!state) throw new Error(errors.map((e) => `${e.file}:${e.line}:${e.col}: ${e.message}`).join("\n"));
  return state;
}

let seq = 0;
/** An event at `base + offsetMs`. */
export function ev(offsetMs: number, fields: Record<string, unknown>, base = Date.parse("2026-11-23T10:00:00Z")) {
  return { event_id: `e${++seq}`, timestamp: new Date(base + offsetMs).toISOString(), received_at: new Date(base + offsetMs).toISOString(), ...fields };
}
