import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authority, initCa, KeyRing } from "../../engine/pki/index.js";
import { loadState, REPO, run } from "./fixture.js";
import { makeToken, SOFTHSM_MODULE } from "./softhsm.js";

describe("issuers with keys on a PKCS#11 token (SoftHSM2)", () => {
  let token: ReturnType<typeof makeToken>;
  let dir: string;
  let repo: string;
  beforeAll(() => {
    token = makeToken("viw-int", "2468");
    dir = mkdtempSync(join(tmpdir(), "viw-pki-hsm-"));
    repo = join(dir, "repo");
    execFileSync("mkdir", ["-p", repo]);
    execFileSync("cp", ["-r", REPO + "/profiles", REPO + "/policies", REPO + "/pins", repo]);
    for (const id of ["int-tls", "int-vpn", "int-backend", "int-device"]) {
      const f = join(repo, "profiles/issuers", `${id}.yaml`);
      writeFileSync(f, readFileSync(f, "utf8").replace(`ref: file:${id}.key`, `ref: "pkcs11:token=viw-int;object=${id}"`));
    }
  });
  afterAll(() => {
    token.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("bootstraps, then issues 300 certificates concurrently through the session pool", async () => {
    const state = await loadState(repo);
    const keys = new KeyRing({ dataDir: join(dir, "data"), pkcs11Module: SOFTHSM_MODULE, env: { VIW_PKCS11_PIN: "2468" } });
    const a = new Authority({ dataDir: join(dir, "data") });
    try {
      const made = await initCa({ dataDir: join(dir, "data"), state, provider: keys });
      expect(made.find((m) => m.id === "int-tls")?.key).toBe("pkcs11:token=viw-int;object=int-tls");
      a.swap(await a.build(state, keys));
      const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const out = await Promise.all(Array.from({ length: 300 }, (_, i) => a.issueForEngine("engine-listener", k.publicKey, { cn: "localhost", dns: ["localhost"], ip: [`127.0.0.${(i % 250) + 1}`] })));
      expect(new Set(out.map((o) => o.serial)).size).toBe(300);
      const leaf = join(dir, "leaf.crt");
      writeFileSync(leaf, out[299]!.certificate);
      const v = await run("openssl", ["verify", "-CAfile", join(dir, "data/pki/certs/root.crt"), "-untrusted", join(dir, "data/pki/certs/int-tls.crt"), "-purpose", "sslserver", leaf]);
      expect(v.stdout).toMatch(/OK/);
      // The CRL is signed on the token too.
      const crl = await a.refreshCrl("int-tls");
      writeFileSync(join(dir, "t.crl"), crl.der);
      expect((await run("openssl", ["crl", "-inform", "DER", "-in", join(dir, "t.crl"), "-noout", "-CAfile", join(dir, "data/pki/certs/int-tls.crt")])).stderr).toMatch(/verify OK/);
    } finally {
      await a.close();
      await keys.close();
    }
  });

  it("a wrong PIN refuses the revision with a clear error", async () => {
    const state = await loadState(repo);
    const keys = new KeyRing({ dataDir: join(dir, "data"), pkcs11Module: SOFTHSM_MODULE, env: { VIW_PKCS11_PIN: "0000" } });
    const a = new Authority({ dataDir: join(dir, "data") });
    try {
      await expect(a.build(state, keys)).rejects.toThrow(/issuer int-\w+: its key pkcs11:token=viw-int;object=int-\w+ cannot be opened: PKCS#11 token `viw-int`: wrong PIN/);
    } finally {
      await a.close();
      await keys.close();
    }
  });
});
