/**
 * `viw run --repo DIR --trust FILE`: a local repository followed in place
 * (commits noticed through its refs, no webhook), and the option parsing of
 * `viw run` (flags and VIW_* environment, usage errors).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRunArgs, parseListen } from "../../engine/cli/run.js";
import { UsageError } from "../../engine/cli/main.js";
import { createDaemon, type Daemon } from "../../engine/daemon.js";
import { makeWorld, type World } from "../gitops/fixture.js";

let world: World;
let data: string;
let daemon: Daemon;

beforeAll(async () => {
  world = makeWorld();
  world.commit("initial", {}, "alice");
  data = mkdtempSync(join(tmpdir(), "viw-local-"));
  // The config flow alone (capabilities: false): this suite is about following the repo, not the services.
  daemon = createDaemon({ repo: world.repo, data, trust: world.allowedSigners, capabilities: false, listen: { admin: { host: "127.0.0.1", port: 0 } }, logger: pino({ level: "silent" }) });
  await daemon.start();
  await daemon.reconciler.whenReady();
}, 30_000);

afterAll(async () => {
  await daemon?.stop();
  world?.cleanup();
  rmSync(data, { recursive: true, force: true });
});

async function waitFor<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("a local repository followed in place", () => {
  it("applies a new signed commit on its own and ignores uncommitted edits", async () => {
    expect(daemon.reconciler.applied!.commit).toBe(world.head());
    const rev = world.commit("tighten", { "profiles/backend-api.yaml": world.read("profiles/backend-api.yaml").replace("default: 90d", "default: 60d") }, "carol");
    await waitFor(() => (daemon.reconciler.applied!.revision === rev ? true : undefined));
    expect(daemon.reconciler.applied!.signer!.principal).toBe("carol@viworks.example");
    // An edit that is not committed is not what was signed: nothing happens.
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(world.repo, "profiles/backend-api.yaml"), world.read("profiles/backend-api.yaml").replace("default: 60d", "default: 50d"));
    await new Promise((r) => setTimeout(r, 600));
    expect(daemon.reconciler.lastAttempt!.revision).toBe(rev);
    world.git("checkout", "--", "profiles/backend-api.yaml");
    // A commit by an outsider is noticed and refused.
    const bad = world.commit("outsider", { "profiles/backend-api.yaml": world.read("profiles/backend-api.yaml").replace("default: 60d", "default: 59d") }, "mallory");
    await waitFor(() => (daemon.reconciler.lastAttempt?.revision === bad ? true : undefined));
    expect(daemon.reconciler.lastAttempt).toMatchObject({ ok: false, stage: "trust" });
    expect(daemon.reconciler.applied!.revision).toBe(rev);
  });
});

describe("an unreachable remote", () => {
  it("keeps nothing applied, says why in status, and never logs the token", async () => {
    const d = mkdtempSync(join(tmpdir(), "viw-unreach-"));
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (l: string) => void lines.push(l) });
    process.env.VIW_GIT_TOKEN = "tok-SECRET-123";
    try {
      const daemon = createDaemon({ gitUrl: "https://user:pw-SECRET@127.0.0.1:1/cfg.git", branch: "main", data: d, trust: world.allowedSigners, capabilities: false, listen: { admin: { host: "127.0.0.1", port: 0 } }, logger });
      await daemon.start();
      for (let i = 0; i < 100 && !daemon.reconciler.lastAttempt; i++) await new Promise((r) => setTimeout(r, 50));
      const s = (await (await fetch(`${daemon.adminUrl}/v1/status`)).json()) as any;
      expect(s.applied).toBeNull();
      expect(s.last_attempt).toMatchObject({ ok: false, stage: "fetch" });
      expect(s.last_attempt.reason).toMatch(/fetch of git https:\/\/127\.0\.0\.1:1\/cfg\.git branch main failed/);
      expect(s.source.description).toBe("git https://127.0.0.1:1/cfg.git branch main");
      await daemon.stop();
      const all = lines.join("") + JSON.stringify(s);
      expect(all).not.toContain("SECRET");
      expect(all).toContain("source update failed");
    } finally {
      delete process.env.VIW_GIT_TOKEN;
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe("viw run options", () => {
  it("parses flags, repeatable listeners (port 0, IPv6) and VIW_* environment", () => {
    const o = parseRunArgs(["--git", "https://git.example/cfg.git", "--branch", "prod", "--trust", "/etc/viw/allowed", "--listen", "admin=127.0.0.1:0", "--listen", "issuance=[::1]:8444", "--seal-interval", "5s"], {});
    expect(o).toMatchObject({ gitUrl: "https://git.example/cfg.git", branch: "prod", trust: "/etc/viw/allowed", sealInterval: "5s", listen: { admin: { host: "127.0.0.1", port: 0 }, issuance: { host: "::1", port: 8444 } } });
    const e = parseRunArgs([], { VIW_DEV: "1", VIW_REPO: "/cfg", VIW_DATA: "/d", VIW_LISTEN: "admin=127.0.0.1:9999", VIW_POLL_INTERVAL: "10s" });
    expect(e).toMatchObject({ dev: true, repo: "/cfg", data: "/d", listen: { admin: { port: 9999 } }, pollIntervalMs: 10_000 });
  });
  it("refuses what cannot run, naming the option", () => {
    expect(() => parseRunArgs([], {})).toThrow(/--trust FILE .* is required outside --dev/);
    expect(() => parseRunArgs(["--dev", "--repo", ".", "--git", "x"], {})).toThrow(/exclusive/);
    expect(() => parseRunArgs(["--dev", "--store", "mongo"], {})).toThrow(/--store mongo/);
    expect(() => parseRunArgs(["--dev", "--store", "elasticsearch"], {})).toThrow(/--elasticsearch-url/);
    expect(() => parseListen("web=127.0.0.1:80")).toThrow(/unknown listener `web`/);
    expect(() => parseListen("admin=127.0.0.1:99999")).toThrow(/out of range/);
    expect(() => parseListen("admin")).toThrow(UsageError);
    expect(() => parseRunArgs(["--dev", "--bogus"], {})).toThrow(UsageError);
    expect(() => parseRunArgs(["--dev", "--seal-interval", "soon"], {})).toThrow(/--seal-interval soon/);
  });
});
