/**
 * The pins service refuses a revision whose pin roll would strand pinned
 * clients (checkPinSetRevision), so the daemon keeps the last good revision.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadSnapshot, readDirSnapshot, type DesiredState } from "../../engine/config/index.js";
import { ServiceError } from "../../engine/gitops/service.js";
import { PinTelemetry } from "../../engine/pki/pins/index.js";

const ROOT = join(import.meta.dirname, "../..");

async function stateWith(edit?: (gateway: string) => string): Promise<DesiredState> {
  const dir = mkdtempSync(join(tmpdir(), "viw-pins-gate-"));
  for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(ROOT, f), join(dir, f), { recursive: true });
  const file = join(dir, "pins/gateway.yaml");
  if (edit) writeFileSync(file, edit(readFileSync(file, "utf8")));
  const r = loadSnapshot(await readDirSnapshot(dir));
  if (!r.state) throw new Error(JSON.stringify(r.errors));
  return r.state;
}

describe("pins service gate", () => {
  const service = new PinTelemetry({ stateFile: join(mkdtempSync(join(tmpdir(), "viw-pins-")), "pins.json") }).service();

  it("refuses a jump from stable straight to cutover, naming the file and the skipped phase", async () => {
    const current = await stateWith();
    const next = await stateWith((t) => t.replace("  phase: stable\n", "  phase: cutover\n  to: RqKLJuEe0msolyS8tLNrgkgKmjyrpWmLwNfqMbo/mQ8=\n"));
    const err = await service.prepare(next, current).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceError);
    const diags = (err as ServiceError).diagnostics;
    expect(diags).toHaveLength(1);
    expect(diags[0]).toMatchObject({ file: "pins/gateway.yaml", kind: "pinset", id: "gateway" });
    expect(diags[0]!.message).toMatch(/^roll\.phase: phase stable -> cutover skips backup-deployed/);
  });

  it("accepts the next step of the roll and a first (bootstrap) revision", async () => {
    const current = await stateWith();
    const next = await stateWith((t) => t.replace("  phase: stable\n", "  phase: backup-deployed\n"));
    await expect(service.prepare(next, current)).resolves.toHaveProperty("commit");
    await expect(service.prepare(next, undefined)).resolves.toHaveProperty("commit");
  });
});
