import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { canonicalJson, loadSnapshot, readDirSnapshot, planChanges } from "../../engine/config/index.js";
import { defaultRepoCopy, ROOT } from "./helpers.js";

async function load(dir: string) {
  const r = loadSnapshot(await readDirSnapshot(dir));
  expect(r.errors).toEqual([]);
  return r.state!;
}

describe("DesiredState", () => {
  it("is content-addressed: the same content gives the same digest wherever it lives, any change a new one", async () => {
    const a = await load(ROOT);
    const copy = await defaultRepoCopy();
    // Reformatting and comments are not content.
    const path = join(copy, "profiles/tls-gateway.yaml");
    await writeFile(path, "# a new comment\n" + (await readFile(path, "utf8")).replace("key_types: [ecdsa-p256, rsa-2048]", "key_types:\n  - ecdsa-p256\n  - rsa-2048"));
    const b = await load(copy);
    expect(b.digest).toBe(a.digest);
    expect(b.objectDigest("profile", "tls-gateway")).toBe(a.objectDigest("profile", "tls-gateway"));
    await writeFile(path, (await readFile(path, "utf8")).replace("default: 90d", "default: 60d"));
    const c = await load(copy);
    expect(c.digest).not.toBe(a.digest);
    expect(c.objectDigest("profile", "tls-gateway")).not.toBe(a.objectDigest("profile", "tls-gateway"));
    expect(c.objectDigest("rule", "tls-downgrade")).toBe(a.objectDigest("rule", "tls-downgrade"));
  });

  it("digest is SHA-256 of the RFC 8785 form of {kind: {id: document}}, so anyone can recompute it", async () => {
    const s = await load(ROOT);
    const whole: Record<string, Record<string, unknown>> = {};
    const kinds = { issuer: s.issuers, profile: s.profiles, pinset: s.pinSets, rule: s.rules, list: s.lists, dashboard: s.dashboards, policy: s.policies } as Record<string, ReadonlyMap<string, unknown>>;
    for (const [kind, map] of Object.entries(kinds)) for (const [id, doc] of map) (whole[kind] ??= {})[id] = doc;
    expect(s.digest).toBe(createHash("sha256").update(canonicalJson(whole)).digest("hex"));
  });

  it("is frozen all the way down", async () => {
    const s = await load(ROOT);
    const p = s.profiles.get("tls-gateway")!;
    expect(() => {
      (p.validity as { max: string }).max = "999d";
    }).toThrow(TypeError);
    expect(() => {
      (p.key_types as string[]).push("rsa-1024");
    }).toThrow(TypeError);
    expect(Object.isFrozen(s)).toBe(true);
  });

  it("holds the spec's deployment: four intermediates under one offline root, the Backend's issuance rights, 13 months retention", async () => {
    const s = await load(ROOT);
    const roots = [...s.issuers.values()].filter((i) => i.parent === undefined);
    expect(roots.map((r) => [r.id, r.offline])).toEqual([["root", true]]);
    expect([...s.issuers.values()].filter((i) => i.parent === "root").map((i) => i.id).sort()).toEqual(["int-backend", "int-device", "int-tls", "int-vpn"]);
    const backend = s.issuanceClients.find((c) => c.id === "backend")!;
    expect(backend.operations).toEqual(["issue", "rotate", "revoke"]);
    expect(backend.profiles).toEqual(expect.arrayContaining(["tls-gateway", "vpn-server", "backend-api", "device-desktop", "device-mobile"]));
    expect(s.retention.events).toBe("13mo");
    expect(s.governance.approvals).toBe(2);
    expect(s.routing.default).toBe("viw-other");
    expect(s.profiles.get("tls-gateway")!.sans!.dns).toEqual(["gw.viworks.example", "*.gw.viworks.example"]);
    expect(s.profiles.get("backend-api")!.issuer).toBe("int-backend");
    // RFC 8813: keyEncipherment only where an RSA key may be used.
    for (const p of s.profiles.values()) {
      if (p.key_usage.includes("keyEncipherment")) expect(p.key_types.some((k) => k.startsWith("rsa-"))).toBe(true);
    }
  });

  it("locates every object for status and errors", async () => {
    const s = await load(ROOT);
    expect(s.locate("pinset", "gateway")).toMatchObject({ file: "pins/gateway.yaml" });
  });
});

describe("semantic checks", () => {
  async function errorsAfter(edits: [string, string, string][]): Promise<string[]> {
    const dir = await defaultRepoCopy();
    for (const [file, from, to] of edits) {
      const p = join(dir, file);
      const text = await readFile(p, "utf8");
      if (!text.includes(from)) throw new Error(`${file} lacks ${from}`);
      await writeFile(p, text.replace(from, to));
    }
    return loadSnapshot(await readDirSnapshot(dir)).errors.map((e) => `${e.file}:${e.line}: ${e.message}`);
  }

  it("refuses a cutover to a pin that is not a deployed backup", async () => {
    const errs = await errorsAfter([["pins/gateway.yaml", "  phase: stable\n", "  phase: cutover\n  to: MOkuFyV2TZJ1cLsdzcbPVRpjYVg8Lb/+LO/qc2dmfto=\n"]]);
    expect(errs).toEqual([expect.stringMatching(/^pins\/gateway\.yaml:\d+: roll\.to must name a deployed backup pin; `MOku.*` is retired$/)]);
  });

  it("refuses an issuer chain that loops", async () => {
    const errs = await errorsAfter([
      ["profiles/issuers/int-tls.yaml", "parent: root", "parent: int-vpn"],
      ["profiles/issuers/int-vpn.yaml", "parent: root", "parent: int-tls"],
    ]);
    expect(errs.some((e) => e.includes("issuer chain loops: int-tls → int-vpn → int-tls"))).toBe(true);
  });

  it("refuses a profile longer than its issuer allows and an IP range outside the issuer's", async () => {
    const errs = await errorsAfter([["profiles/tls-gateway.yaml", "ip: [198.51.100.0/24]", "ip: [203.0.113.0/24]"]]);
    expect(errs).toEqual([expect.stringContaining("IP range 203.0.113.0/24 is outside issuer `int-tls`'s permitted ranges")]);
  });

  it("refuses a threshold rule without its threshold and a group_by on an unknown field", async () => {
    const errs = await errorsAfter([["detections/otp-credential-stuffing.yaml", "group_by: [user_id]", "group_by: [username]"]]);
    expect(errs).toEqual([expect.stringContaining("`username` is not an event field")]);
  });

  it("refuses a shipper key that is not Ed25519 and a duplicate client id", async () => {
    const ingest = await readFile(join(ROOT, "policies/ingest.yaml"), "utf8");
    const key = /public_key: (\S+)/.exec(ingest)![1]!;
    const errs = await errorsAfter([
      ["policies/ingest.yaml", `public_key: ${key}`, "public_key: AAAA"],
      ["policies/issuance.yaml", "- id: platform-admin", "- id: backend"],
    ]);
    expect(errs).toEqual([
      expect.stringContaining("`shippers[0].public_key` must be an Ed25519 public key: 32 bytes in base64 (44 characters), or a PEM SubjectPublicKeyInfo; got `AAAA`"),
      expect.stringContaining("issuance client `backend` is already defined in policies/issuance.yaml"),
    ]);
  });
});

describe("plan verdicts", () => {
  it("judges an empty baseline: everything added, new profiles and issuers are relaxations", async () => {
    const s = await load(ROOT);
    const plan = planChanges(undefined, s);
    expect(plan.changes.every((c) => c.change === "added" && c.field === "")).toBe(true);
    expect(plan.changes.find((c) => c.kind === "profile" && c.id === "tls-gateway")?.verdict).toBe("relaxation");
    expect(plan.changes.find((c) => c.kind === "rule")?.verdict).toBe("tightening");
  });

  it("marks a widened allowlist, a disabled detection and shorter retention as relaxations", async () => {
    const a = await load(ROOT);
    const dir = await mkdtemp(join(tmpdir(), "viw-plan-"));
    for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) await cp(join(ROOT, f), join(dir, f), { recursive: true });
    const edit = async (file: string, from: string, to: string) => {
      const p = join(dir, file);
      await writeFile(p, (await readFile(p, "utf8")).replace(from, to));
    };
    await edit("detections/lists/ja3-allowlist.yaml", "values:\n", "values:\n  - 00000000000000000000000000000000\n");
    await edit("detections/tls-downgrade.yaml", "severity: high", "severity: high\nenabled: false");
    await edit("policies/retention.yaml", "events: 13mo", "events: 6mo");
    const b = await load(dir);
    const plan = planChanges(a, b);
    const verdicts = plan.changes.map((c) => [c.kind, c.id, c.field, c.verdict, c.reason]);
    expect(verdicts).toEqual(
      expect.arrayContaining([
        ["rule", "tls-downgrade", "enabled", "relaxation", "detection disabled"],
        ["list", "ja3-allowlist", "values", "relaxation", "allowlist widened"],
        ["policy", "retention", "events", "relaxation", "shorter retention"],
      ]),
    );
    expect(plan.relaxations).toBe(3);
  });
});
