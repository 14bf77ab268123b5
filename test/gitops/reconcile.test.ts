/**
 * The reconciler's all-or-nothing contract, with the real config loader and a
 * real watched directory; the hosted services are small recording Services
 * (a test double of the Service contract, not of a product part).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DesiredState } from "../../engine/config/index.js";
import { DirSource, Reconciler, ServiceError, Timeline, readTimeline, type Service } from "../../engine/gitops/index.js";
import { MAIN } from "./fixture.js";

class Recorder implements Service {
  log: string[] = [];
  live?: DesiredState;
  refuse?: (next: DesiredState) => ServiceError | undefined;
  active = 0;
  maxActive = 0;
  delayMs = 0;
  constructor(readonly name: string) {}
  async prepare(next: DesiredState, current: DesiredState | undefined) {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      this.log.push(`prepare ${next.digest.slice(0, 8)} from ${current?.digest.slice(0, 8) ?? "nothing"}`);
      const err = this.refuse?.(next);
      if (err) throw err;
      return {
        commit: () => {
          this.live = next;
          this.log.push(`commit ${next.digest.slice(0, 8)}`);
        },
        abort: () => this.log.push(`abort ${next.digest.slice(0, 8)}`),
      };
    } finally {
      this.active--;
    }
  }
  status() {
    return { revision: this.live?.revision ?? null };
  }
}

let dir: string;
let data: string;
let a: Recorder;
let b: Recorder;
let rc: Reconciler;
let source: DirSource;
const PROFILE = "profiles/backend-api.yaml";

function edit(path: string, from: string | RegExp, to: string): void {
  const f = join(dir, path);
  writeFileSync(f, readFileSync(f, "utf8").replace(from, to));
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "viw-rc-repo-"));
  data = mkdtempSync(join(tmpdir(), "viw-rc-data-"));
  for (const f of ["policies", "profiles", "detections", "dashboards", "pins"]) cpSync(join(MAIN, f), join(dir, f), { recursive: true });
  a = new Recorder("a");
  b = new Recorder("b");
  source = new DirSource(dir, 50);
  rc = new Reconciler({ source, services: [a, b], timeline: await Timeline.open(data), logger: pino({ level: "silent" }) });
});

afterEach(async () => {
  await source.close();
  rmSync(dir, { recursive: true, force: true });
  rmSync(data, { recursive: true, force: true });
});

describe("Reconciler", () => {
  it("prepares every service, then commits every service, and records the revision", async () => {
    await rc.trigger("test");
    const d = rc.applied!.digest.slice(0, 8);
    expect(a.log).toEqual([`prepare ${d} from nothing`, `commit ${d}`]);
    expect(b.log).toEqual([`prepare ${d} from nothing`, `commit ${d}`]);
    expect(rc.applied!.bootstrap).toBe(true);
    expect(rc.applied!.trust).toBe("unsigned-dev");
    const t = await readTimeline(data);
    expect(t.ok).toBe(true);
    expect(t.entries.map((e) => e.type)).toEqual(["applied"]);
    expect(t.entries[0]!.digest).toBe(rc.applied!.digest);
  });

  it("aborts the prepared services when one refuses; the applied revision keeps serving; the refusal is remembered", async () => {
    await rc.trigger("test");
    const first = rc.applied!;
    b.refuse = () => new ServiceError("b", "cannot load profile", [{ file: PROFILE, line: 9, col: 3, message: "key type not supported by this HSM" }]);
    edit(PROFILE, "default: 90d", "default: 60d");
    a.log = [];
    b.log = [];
    await rc.trigger("test");
    expect(rc.applied).toBe(first);
    expect(a.live).toBe(first.state);
    expect(a.log[0]).toMatch(/^prepare/);
    expect(a.log[1]).toMatch(/^abort/);
    expect(a.log.some((l) => l.startsWith("commit"))).toBe(false);
    expect(rc.lastAttempt).toMatchObject({ ok: false, stage: "prepare" });
    expect(rc.lastAttempt!.errors).toEqual([{ file: PROFILE, line: 9, col: 3, message: "b: key type not supported by this HSM" }]);

    // Same revision again: not retried.
    a.log = [];
    await rc.trigger("again");
    expect(a.log).toEqual([]);
    // Forced (SIGHUP): retried, and now accepted.
    b.refuse = undefined;
    await rc.trigger("sighup", true);
    expect(rc.applied).not.toBe(first);
    expect(a.log.at(-1)).toMatch(/^commit/);
    expect(b.live).toBe(rc.applied!.state);
  });

  it("refuses an invalid revision before any service sees it, with file:line:col", async () => {
    await rc.trigger("test");
    const first = rc.applied!;
    edit(PROFILE, "default: 90d", "default: [");
    a.log = [];
    await rc.trigger("test");
    expect(a.log).toEqual([]);
    expect(rc.applied).toBe(first);
    expect(rc.lastAttempt!.stage).toBe("load");
    expect(rc.lastAttempt!.errors[0]).toMatchObject({ file: PROFILE });
    expect(rc.lastAttempt!.errors[0]!.line).toBeGreaterThan(0);
    const t = await readTimeline(data);
    expect(t.entries.map((e) => e.type)).toEqual(["applied", "refused"]);
    expect(t.entries[1]!.errors![0]!.file).toBe(PROFILE);
  });

  it("runs one revision at a time: triggers during a reconcile coalesce", async () => {
    a.delayMs = 50;
    await rc.trigger("first");
    a.log = [];
    edit(PROFILE, "default: 90d", "default: 80d");
    const runs = [rc.trigger("1"), rc.trigger("2"), rc.trigger("3")];
    edit(PROFILE, "default: 80d", "default: 70d");
    await Promise.all(runs);
    expect(a.maxActive).toBe(1);
    expect(rc.applied!.state.profiles.get("backend-api")!.validity.default).toBe("70d");
    expect(a.log.filter((l) => l.startsWith("commit")).length).toBeLessThanOrEqual(2);
  });

  it("a relaxation applied in dev mode (no --trust) still raises a critical policy_relaxation event", async () => {
    const events: Record<string, unknown>[] = [];
    rc = new Reconciler({ source, services: [a], timeline: await Timeline.open(data), logger: pino({ level: "silent" }), emit: (e) => void events.push(...e) });
    await rc.trigger("test");
    await rc.flushEvents();
    expect(events.filter((e) => e.action === "policy_relaxation")).toEqual([]);
    edit(PROFILE, "default: 90d", "default: 120d");
    await rc.trigger("test");
    expect(rc.applied!.state.profiles.get("backend-api")!.validity.default).toBe("120d");
    await rc.flushEvents();
    const relax = events.filter((e) => e.action === "policy_relaxation");
    expect(relax).toHaveLength(1);
    expect(relax[0]).toMatchObject({ severity: "critical", result: "success", policy_id: "profile/backend-api", error_msg: "longer validity" });
    expect(events.filter((e) => e.action === "config_apply")).toHaveLength(2);
  });

  it("the watched directory triggers a reconcile within the debounce after an edit", async () => {
    let changes = 0;
    await source.start(() => changes++);
    edit(PROFILE, "default: 90d", "default: 89d");
    const t0 = Date.now();
    while (changes === 0 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
    expect(changes).toBe(1);
    // Files outside the config folders are not watched.
    writeFileSync(join(dir, "README.md"), "x");
    await new Promise((r) => setTimeout(r, 300));
    expect(changes).toBe(1);
  });
});
