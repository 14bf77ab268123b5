/** The signed, hash-chained timeline: what verifies and what is detected. */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Timeline, buildEvidence, evidenceMarkdown, readTimeline } from "../../engine/gitops/index.js";

let data: string;
beforeEach(() => {
  data = mkdtempSync(join(tmpdir(), "viw-tl-"));
});
afterEach(() => rmSync(data, { recursive: true, force: true }));

async function three(): Promise<string> {
  const t = await Timeline.open(data);
  await t.append({ type: "applied", result: "applied", revision: "a".repeat(40), commit: "a".repeat(40), digest: "d1", bootstrap: true, signer: { principal: "alice", fingerprint: "SHA256:x" } }, new Date("2026-11-01T00:00:00Z"));
  await t.append({ type: "refused", result: "refused", revision: "b".repeat(40), reason: "commit bbbb is not signed" }, new Date("2026-11-02T00:00:00Z"));
  await t.append(
    {
      type: "applied",
      result: "applied",
      revision: "c".repeat(40),
      commit: "c".repeat(40),
      digest: "d3",
      signer: { principal: "alice", fingerprint: "SHA256:x" },
      approvers: [{ principal: "bob", fingerprint: "SHA256:y" }, { principal: "carol", fingerprint: "SHA256:z" }],
      plan: { changes: 1, relaxations: 1, items: [{ kind: "profile", id: "p", field: "validity.max", change: "changed", relaxation: true, reason: "longer validity" }] },
    },
    new Date("2026-11-03T00:00:00Z"),
  );
  return join(data, "timeline", "timeline.jsonl");
}

describe("timeline", () => {
  it("chains and signs entries; the key file is private", async () => {
    await three();
    const v = await readTimeline(data);
    expect(v.ok).toBe(true);
    expect(v.entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(v.entries[1]!.prev).toBe(v.entries[0]!.hash);
    expect(statSync(join(data, "keys", "timeline.key")).mode & 0o777).toBe(0o600);
  });

  it("resumes the chain after a restart and drops a torn last line", async () => {
    const file = await three();
    appendFileSync(file, '{"seq":4,"ty');
    const t = await Timeline.open(data);
    await t.append({ type: "stopped", result: "stopped", revision: "c".repeat(40) });
    const v = await readTimeline(data);
    expect(v.ok).toBe(true);
    expect(v.entries.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });

  it.each([
    ["an edited field", (lines: string[]) => (lines[0] = lines[0]!.replace('"alice"', '"mallory"')), /:1: content does not match/],
    ["a removed entry", (lines: string[]) => lines.splice(1, 1), /:2: sequence 3, expected 2/],
    ["reordered entries", (lines: string[]) => ([lines[1], lines[2]] = [lines[2]!, lines[1]!]), /:2: sequence 3/],
    ["a re-hashed but unsigned edit", (lines: string[]) => {
      const e = JSON.parse(lines[2]!);
      e.approvers = [];
      lines[2] = JSON.stringify(e);
    }, /:3: content does not match/],
  ])("detects %s", async (_name, mutate, error) => {
    const file = await three();
    const lines = readFileSync(file, "utf8").trimEnd().split("\n");
    mutate(lines);
    writeFileSync(file, lines.join("\n") + "\n");
    const v = await readTimeline(data);
    expect(v.ok).toBe(false);
    expect(v.error).toMatch(error);
    const ev = await buildEvidence(data);
    expect(ev.verified).toBe(false);
    expect(evidenceMarkdown(ev)).toContain("WARNING — timeline FAILED verification");
  });

  it("detects a forged signature", async () => {
    const file = await three();
    const lines = readFileSync(file, "utf8").trimEnd().split("\n");
    const e = JSON.parse(lines[1]!);
    e.sig = Buffer.alloc(64, 1).toString("base64");
    lines[1] = JSON.stringify(e);
    writeFileSync(file, lines.join("\n") + "\n");
    expect((await readTimeline(data)).error).toMatch(/:2: bad signature/);
  });

  it("evidence: live intervals, signers, approvers, relaxations, refusals, and a time range", async () => {
    await three();
    const ev = await buildEvidence(data);
    expect(ev.verified).toBe(true);
    expect(ev.live).toHaveLength(2);
    expect(ev.live[0]).toMatchObject({ from: "2026-11-01T00:00:00.000Z", to: "2026-11-03T00:00:00.000Z", bootstrap: true });
    expect(ev.live[1]).toMatchObject({ to: null, relaxations: [{ kind: "profile", id: "p", field: "validity.max", reason: "longer validity" }] });
    expect(ev.refused).toEqual([expect.objectContaining({ reason: "commit bbbb is not signed" })]);
    const md = evidenceMarkdown(ev);
    expect(md).toContain("| 2026-11-03T00:00:00.000Z | now | `cccccccccccc` | alice (SHA256:x) | bob, carol | 1 | profile/p.validity.max |");
    const before = await buildEvidence(data, { to: new Date("2026-11-01T12:00:00Z") });
    expect(before.live.map((i) => i.commit)).toEqual(["a".repeat(40)]);
    expect(before.refused).toEqual([]);
  });
});
