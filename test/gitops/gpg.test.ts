/** Optional OpenPGP commit signatures (`--trust-gpg GNUPGHOME`), with real gpg keys. */
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { pino } from "pino";
import { LocalGitSource, Reconciler, Timeline, verifyCommit } from "../../engine/gitops/index.js";
import { makeWorld, type World } from "./fixture.js";

let w: World;
let signerHome: string;
let trustHome: string;
const fpr: Record<string, string> = {};

function gpg(home: string, args: string[], input?: string): string {
  return execFileSync("gpg", ["--homedir", home, "--batch", "--no-tty", ...args], { input, encoding: "utf8", stdio: ["pipe", "pipe", "ignore"] });
}

function gpgCommit(message: string, who: string): string {
  execFileSync("git", ["-c", "gpg.format=openpgp", "-c", `user.signingkey=${fpr[who]}`, "commit", "-q", "--allow-empty", "-S", "-m", message], { cwd: w.repo, env: { ...process.env, GNUPGHOME: signerHome }, stdio: "ignore" });
  return w.head();
}

beforeAll(() => {
  w = makeWorld();
  signerHome = join(w.root, "gnupg-signer");
  trustHome = join(w.root, "gnupg-trust");
  mkdirSync(signerHome, { mode: 0o700 });
  mkdirSync(trustHome, { mode: 0o700 });
  for (const who of ["gina", "oscar"]) {
    gpg(signerHome, ["--passphrase", "", "--quick-gen-key", `${who} <${who}@viworks.example>`, "ed25519", "sign", "1y"]);
    fpr[who] = /^fpr:+([0-9A-F]{40}):/m.exec(gpg(signerHome, ["--with-colons", "--list-secret-keys", `${who}@viworks.example`]))![1]!;
  }
  // Only gina's public key is trusted.
  gpg(trustHome, ["--import"], gpg(signerHome, ["--armor", "--export", fpr.gina!]));
}, 60_000);

afterAll(() => {
  for (const home of [signerHome, trustHome]) execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" });
  w.cleanup();
});

describe("--trust-gpg", () => {
  it("accepts a commit signed by a key in the trusted keyring and names the signer", async () => {
    const rev = gpgCommit("gpg signed", "gina");
    const r = await verifyCommit(w.repo, rev, { gnupgHome: trustHome });
    expect(r).toMatchObject({ ok: true, signer: { principal: "gina <gina@viworks.example>", fingerprint: fpr.gina } });
  });
  it("refuses a key that is not in the trusted keyring, and an SSH signature without an allowed-signers file", async () => {
    const rev = gpgCommit("outsider", "oscar");
    const r = await verifyCommit(w.repo, rev, { gnupgHome: trustHome });
    expect(r).toMatchObject({ ok: false, code: "unknown-key" });
    const ssh = w.commit("ssh signed", {}, "alice");
    expect((await verifyCommit(w.repo, ssh, { gnupgHome: trustHome })).ok).toBe(false);
    // Both anchors together: each signature kind is checked against its own.
    expect((await verifyCommit(w.repo, ssh, { gnupgHome: trustHome, allowedSigners: w.allowedSigners })).ok).toBe(true);
    expect((await verifyCommit(w.repo, rev, { gnupgHome: trustHome, allowedSigners: w.allowedSigners })).ok).toBe(false);
  });

  it("with GPG trust only, a relaxation cannot be approved (approvals are SSH): it is held, with the reason", async () => {
    const data = mkdtempSync(join(tmpdir(), "viw-gpg-"));
    try {
      const base = gpgCommit("base", "gina");
      const rc = new Reconciler({ source: new LocalGitSource(w.repo), trustGpg: trustHome, timeline: await Timeline.open(data), logger: pino({ level: "silent" }) });
      await rc.trigger("test");
      expect(rc.applied?.revision).toBe(base);
      w.git("add", "-A");
      const profile = "profiles/backend-api.yaml";
      const { writeFileSync, readFileSync } = await import("node:fs");
      writeFileSync(join(w.repo, profile), readFileSync(join(w.repo, profile), "utf8").replace("default: 90d", "default: 120d"));
      w.git("add", profile);
      const relax = gpgCommit("relax", "gina");
      await rc.trigger("test");
      expect(rc.applied?.revision).toBe(base);
      expect(rc.lastAttempt).toMatchObject({ revision: relax, ok: false, stage: "approvals" });
      expect(rc.lastAttempt!.reason).toMatch(/--trust FILE/);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });
});
