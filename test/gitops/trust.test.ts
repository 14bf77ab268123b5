/** Commit signatures, anti-rollback and approvals, with real git, ssh-keygen and SSH keys. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { approve, countApprovals, isDescendant, readApprovals, verifyCommit, APPROVALS_REF } from "../../engine/gitops/index.js";
import { main as approveMain } from "../../engine/cli/approve.js";
import { makeWorld, type World } from "./fixture.js";
import { captureOutput } from "../capture.js";

let w: World;
let signed: string;
let unsigned: string;
let outsider: string;
let second: string;

beforeAll(() => {
  w = makeWorld();
  signed = w.commit("one", {}, "alice");
  unsigned = w.commit("two", { "profiles/x.txt": "x" }, null);
  outsider = w.commit("three", { "profiles/x.txt": "y" }, "mallory");
  second = w.commit("four", { "profiles/x.txt": "z" }, "bob");
});
afterAll(() => w.cleanup());

describe("verifyCommit", () => {
  it("accepts a commit signed by an allowed signer and names the signer", async () => {
    const r = await verifyCommit(w.repo, signed, w.allowedSigners);
    expect(r).toMatchObject({ ok: true, signer: { principal: "alice@viworks.example" } });
    if (r.ok) expect(r.signer.fingerprint).toMatch(/^SHA256:/);
  });
  it("refuses unsigned commits and commits signed by a key not in the file", async () => {
    expect(await verifyCommit(w.repo, unsigned, w.allowedSigners)).toMatchObject({ ok: false, code: "unsigned" });
    expect(await verifyCommit(w.repo, outsider, w.allowedSigners)).toMatchObject({ ok: false, code: "unknown-key" });
    expect(await verifyCommit(w.repo, "no-such-rev", w.allowedSigners)).toMatchObject({ ok: false, code: "error" });
  });
});

describe("isDescendant", () => {
  it("knows ancestry both ways", async () => {
    expect(await isDescendant(w.repo, signed, second)).toBe(true);
    expect(await isDescendant(w.repo, second, signed)).toBe(false);
    expect(await isDescendant(w.repo, second, second)).toBe(true);
  });
});

describe("approvals", () => {
  it("verifies approvals per principal and counts distinct approvers other than the signer", async () => {
    expect(await readApprovals(w.repo, second, w.allowedSigners)).toEqual([]);
    await approve(w.repo, second, { key: w.key("bob") }); // the signer
    await approve(w.repo, second, { key: w.key("carol") });
    await approve(w.repo, second, { key: w.key("mallory") }); // not allowed
    const again = await approve(w.repo, second, { key: w.key("carol") });
    expect(again.added).toBe(false);
    const found = await readApprovals(w.repo, second, w.allowedSigners);
    expect(found.map((a) => a.principal).sort()).toEqual(["bob@viworks.example", "carol@viworks.example"]);
    const count = countApprovals(found, { required: 2, approvers: [], signer: { principal: "bob@viworks.example", fingerprint: found.find((a) => a.principal.startsWith("bob"))!.fingerprint } });
    expect(count.counted.map((a) => a.principal)).toEqual(["carol@viworks.example"]);
    expect(count.missing).toBe(1);
    // Governance can restrict who counts.
    expect(countApprovals(found, { required: 1, approvers: ["dave@viworks.example"] }).missing).toBe(1);
  });

  it("an approval copied onto another commit does not verify (it signs commit and tree)", async () => {
    const note = w.git("notes", `--ref=${APPROVALS_REF}`, "show", second);
    w.git("notes", `--ref=${APPROVALS_REF}`, "add", "-f", "-m", note, signed);
    expect(await readApprovals(w.repo, signed, w.allowedSigners)).toEqual([]);
  });

  it("viw approve signs with the key given and says how to publish it; a bad revision is exit 1", async () => {
    const ok = await captureOutput(() => approveMain([second, "--repo", w.repo, "--key", w.key("dave")]));
    const bad = await captureOutput(() => approveMain(["nope", "--repo", w.repo, "--key", w.key("dave")]));
    expect(ok.code).toBe(0);
    expect(bad.code).toBe(1);
    const out = ok.out + ok.err + bad.out + bad.err;
    expect(out).toContain(`approved commit ${second}`);
    expect(out).toContain("git push <remote> refs/notes/viw-approvals");
    expect(out).toContain("unknown revision nope");
    expect((await readApprovals(w.repo, second, w.allowedSigners)).map((a) => a.principal)).toContain("dave@viworks.example");
  });

  it("--push merges approvals already on the remote, so concurrent approvers do not overwrite each other", async () => {
    const { execFileSync } = await import("node:child_process");
    const { join } = await import("node:path");
    const remote = join(w.root, "remote.git");
    execFileSync("git", ["clone", "-q", "--bare", w.repo, remote]);
    const clone = (name: string) => {
      const dir = join(w.root, name);
      execFileSync("git", ["clone", "-q", remote, dir]);
      execFileSync("git", ["-C", dir, "config", "user.email", `${name}@viworks.example`]);
      execFileSync("git", ["-C", dir, "config", "user.name", name]);
      return dir;
    };
    const bobDir = clone("bob");
    const carolDir = clone("carol");
    const r1 = await approve(bobDir, signed, { key: w.key("bob"), push: "origin" });
    expect(r1.pushed).toBe("origin");
    await approve(carolDir, signed, { key: w.key("carol"), push: "origin" });
    const daemonView = clone("daemon");
    execFileSync("git", ["-C", daemonView, "fetch", "-q", "origin", `+${APPROVALS_REF}:${APPROVALS_REF}`]);
    expect((await readApprovals(daemonView, signed, w.allowedSigners)).map((a) => a.principal).sort()).toEqual(["bob@viworks.example", "carol@viworks.example"]);
  });
});
