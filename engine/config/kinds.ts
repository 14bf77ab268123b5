import type { Kind } from "./types.js";

/** The top-level folders of a config repo; nothing else is read. */
export const CONFIG_FOLDERS = ["policies", "profiles", "detections", "dashboards", "pins"] as const;

export const MAX_FILE_BYTES = 1024 * 1024;

export type Placement = { kind: Kind; id: string } | { error: string } | null;

/**
 * Which kind a repo path holds. Rules and dashboards may be grouped in
 * sub-folders; the other kinds sit flat in their folder. Returns null for files
 * that are not YAML (README.md and the like are ignored).
 */
export function placementOf(path: string): Placement {
  const m = /^(.*\/)?([^/]+)\.(ya?ml)$/.exec(path);
  if (!m) return null;
  const dir = (m[1] ?? "").replace(/\/$/, "");
  const id = m[2]!;
  const top = dir.split("/")[0];
  if (dir === "profiles/issuers") return { kind: "issuer", id };
  if (dir === "profiles") return { kind: "profile", id };
  if (dir === "pins") return { kind: "pinset", id };
  if (dir === "policies") return { kind: "policy", id };
  if (dir === "detections/lists") return { kind: "list", id };
  if (top === "detections" && !dir.startsWith("detections/lists/")) return { kind: "rule", id };
  if (top === "dashboards") return { kind: "dashboard", id };
  if ((CONFIG_FOLDERS as readonly string[]).includes(top ?? "")) {
    return { error: `${dir}/ is not a config location (see engine/schemas: profiles/, profiles/issuers/, pins/, policies/, detections/, detections/lists/, dashboards/)` };
  }
  return null;
}

/** The schema file that validates a kind (policies: by their `kind` field). */
export function schemaFileOf(kind: Kind, policyKind?: string): string {
  if (kind === "policy") return `policy-${policyKind}.schema.json`;
  return `${kind}.schema.json`;
}

export const POLICY_KINDS = ["issuance", "ingest", "governance", "retention", "routing", "ct"] as const;
