import { cp, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultRepoCopy, ROOT, runViw } from "./helpers.js";

/** One broken file per error class (test/fixtures/broken/CASE/ laid over the default repo) and the exact line viw prints. */
const EXPECTED: Record<string, string> = {
  alias: "profiles/tls-gateway.yaml:8:15: error: anchor &k is not allowed: anchors and aliases hide what a reviewer approves; write the value out",
  "bad-duration": "profiles/tls-gateway.yaml:11:12: error: `validity.default` must be a duration such as 180d, 4320h, 30m or 10s; got `90 days`",
  "bad-pin": "pins/gateway.yaml:13:13: error: `pins[1].sha256` must be a base64 SHA-256 of a SubjectPublicKeyInfo (44 characters ending in =), as `viw pin FILE` prints; got `RqKLJuEe0msolyS8tLNrgkgKmjyrpWmLwNfqMbo/mQ8`",
  "duplicate-key": "profiles/tls-gateway.yaml:8:1: error: duplicate key: each key may appear once in a mapping",
  "eku-mismatch": "profiles/tls-gateway.yaml:19:21: error: a server profile must include serverAuth in extended_key_usage",
  "id-mismatch": "profiles/tls-gateway.yaml:4:5: error: id `tls-gw` must equal the file name `tls-gateway`",
  "missing-list": "detections/ja3-not-allowlisted.yaml:12:24: error: list `ja3-allow` does not exist (detections/lists/ja3-allow.yaml)",
  "multi-document": "profiles/tls-gateway.yaml:23:1: error: a second YAML document (---): a config file holds exactly one object",
  "no-backup-pin": "pins/gateway.yaml:10:3: error: pin set `gateway` has no backup pin: without one, losing or rotating the key bricks pinned clients (RFC 7469 §4.3)",
  "non-utf8": "profiles/tls-gateway.yaml:5:31: error: invalid UTF-8 at byte 259: config files must be UTF-8 text",
  "not-a-mapping": "detections/lists/ja3-allowlist.yaml:1:1: error: the file must hold a mapping (key: value lines) at the top level",
  "policy-kind": "policies/retention.yaml:4:7: error: policy `kind` is `retain`; it must be one of issuance, ingest, governance, retention, routing, ct",
  "san-outside-issuer": "profiles/tls-gateway.yaml:16:53: error: DNS pattern `*.example.com` is outside issuer `int-tls`'s permitted names (viworks.example, localhost)",
  "second-root": "profiles/issuers/int-vpn.yaml:3:5: error: second root issuer: `root` (profiles/issuers/root.yaml) is already the root; give this one a `parent`",
  "syntax-error": "profiles/tls-gateway.yaml:9:1: error: flow sequence in block collection must be sufficiently indented and end with a ]",
  tag: "profiles/tls-gateway.yaml:22:15: error: tag !duration is not allowed in config files",
  "unknown-index": "dashboards/auth-funnel.yaml:13:31: error: index `viw-authn` is not in the routing table (viw-other, viw-auth, viw-tunnel, viw-gw, viw-policy, viw-admin, viw-pki, viw-alerts)",
  "unknown-issuer": "profiles/tls-gateway.yaml:6:9: error: issuer `int-web` does not exist (profiles/issuers/int-web.yaml)",
  "unknown-key": "profiles/tls-gateway.yaml:22:1: error: unknown field `renew_befor`; did you mean `renew_before`?",
  "unknown-operator": "detections/otp-credential-stuffing.yaml:11:18: error: unknown operator `equals`",
  "validity-over-limit": "profiles/tls-gateway.yaml:10:8: error: validity.max 400d exceeds the 180d limit for server profiles",
  "window-too-long": "detections/otp-credential-stuffing.yaml:14:9: error: window 30d is longer than the 7d a rule may keep state for",
  "wrong-location": "profiles/extra/thing.yaml:1:1: error: profiles/extra/ is not a config location (see engine/schemas: profiles/, profiles/issuers/, pins/, policies/, detections/, detections/lists/, dashboards/)",
  "wrong-type": "profiles/tls-gateway.yaml:8:12: error: `key_types` must be a list, not the string `ecdsa-p256`",
};

const FIXTURES = join(ROOT, "test/fixtures/broken");

describe("viw validate", () => {
  it("passes the default ViWorkS repo", async () => {
    const r = await runViw(["validate", "--repo", ROOT]);
    expect(r.stdout).toMatch(/^valid: \d+ files, digest [0-9a-f]{64}\n$/);
    expect(r.code).toBe(0);
  });

  it("has an expectation for every fixture", async () => {
    expect((await readdir(FIXTURES)).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const [name, line] of Object.entries(EXPECTED)) {
    it(`reports ${name} as exactly one positioned error`, async () => {
      const repo = await defaultRepoCopy(join(FIXTURES, name));
      const r = await runViw(["validate", "--repo", repo]);
      expect(r.stdout).toBe(line + "\n");
      expect(r.code).toBe(1);
    });
  }

  it("refuses a file over 1 MiB without reading it", async () => {
    const repo = await defaultRepoCopy();
    await writeFile(join(repo, "detections/lists/huge.yaml"), "id: huge\npurpose: allow\nvalues:\n" + "  - x\n".repeat(300_000));
    const r = await runViw(["validate", "--repo", repo]);
    expect(r.stdout).toBe("detections/lists/huge.yaml:1:1: error: file is 1.7 MiB; config files are limited to 1 MiB\n");
    expect(r.code).toBe(1);
  });

  it("goes on after a broken file and reports every other one", async () => {
    const repo = await defaultRepoCopy(join(FIXTURES, "duplicate-key"));
    // These fixtures break different files, so they can be laid over one repo together.
    for (const other of ["missing-list", "no-backup-pin", "unknown-index"]) await cp(join(FIXTURES, other), repo, { recursive: true });
    const r = await runViw(["validate", "--repo", repo]);
    expect(r.stdout.trim().split("\n")).toEqual([
      EXPECTED["unknown-index"],
      EXPECTED["missing-list"],
      EXPECTED["no-backup-pin"],
      EXPECTED["duplicate-key"],
    ]);
    expect(r.stderr).toMatch(/^4 errors in 4 of \d+ files/);
  });

  it("prints the DESIGN.md json shape", async () => {
    const repo = await defaultRepoCopy(join(FIXTURES, "validity-over-limit"));
    const r = await runViw(["validate", "--repo", repo, "--format", "json"]);
    expect(JSON.parse(r.stdout)).toEqual({
      valid: false,
      errors: [
        {
          file: "profiles/tls-gateway.yaml",
          line: 10,
          col: 8,
          message: "validity.max 400d exceeds the 180d limit for server profiles",
          kind: "profile",
          id: "tls-gateway",
        },
      ],
    });
    expect(r.code).toBe(1);
    const ok = await runViw(["validate", "--repo", ROOT, "--format", "json"]);
    expect(JSON.parse(ok.stdout)).toEqual({ valid: true, errors: [] });
  });

  it("exits 2 on a usage error", async () => {
    expect((await runViw(["validate", "--colour"])).code).toBe(2);
    expect((await runViw(["validate", "--format", "xml"])).code).toBe(2);
    expect((await runViw(["frobnicate"])).code).toBe(2);
  });
});
