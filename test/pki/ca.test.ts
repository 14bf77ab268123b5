import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { loadSnapshot, readDirSnapshot } from "../../engine/config/index.js";
import { initCa, KeyRing } from "../../engine/pki/index.js";
import { main } from "../../engine/cli/ca.js";
import { makeToken, SOFTHSM_MODULE } from "./softhsm.js";

const REPO = join(import.meta.dirname, "../..");

describe("viw ca init", () => {
  const data = mkdtempSync(join(tmpdir(), "viw-ca-"));
  afterAll(() => rmSync(data, { recursive: true, force: true }));

  it("makes the offline root and four intermediates that openssl accepts, then is idempotent", async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
    try {
      expect(await main(["init", "--data", data, "--repo", REPO])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    const text = out.join("");
    for (const id of ["root", "int-tls", "int-vpn", "int-backend", "int-device"]) expect(text).toMatch(new RegExp(`created .*${id} `));
    expect(statSync(join(data, "offline", "root.key")).mode & 0o777).toBe(0o600);
    expect(statSync(join(data, "keys", "int-tls.key")).mode & 0o777).toBe(0o600);
    const root = join(data, "pki/certs/root.crt");
    for (const id of ["int-tls", "int-vpn", "int-backend", "int-device"]) {
      const r = execFileSync("openssl", ["verify", "-CAfile", root, join(data, `pki/certs/${id}.crt`)]).toString();
      expect(r).toMatch(/: OK/);
    }
    const tls = execFileSync("openssl", ["x509", "-in", join(data, "pki/certs/int-tls.crt"), "-noout", "-text"]).toString();
    expect(tls).toMatch(/CA:TRUE, pathlen:0/);
    expect(tls).toMatch(/Permitted:\s+DNS:viworks.example\s+DNS:localhost\s+IP:10.0.0.0\/255.0.0.0/);
    expect(tls).toMatch(/Subject: O ?= ?ViWorkS, CN ?= ?ViWorkS Intermediate CA TLS/);
    expect(tls).toMatch(/crl\/root.crl/);

    const before = readFileSync(join(data, "pki/certs/int-tls.crt"), "utf8");
    const out2: string[] = [];
    const spy2 = vi.spyOn(process.stdout, "write").mockImplementation((s) => (out2.push(String(s)), true));
    try {
      expect(await main(["init", "--data", data, "--repo", REPO])).toBe(0);
    } finally {
      spy2.mockRestore();
    }
    expect(out2.join("")).not.toMatch(/created/);
    expect(out2.join("").match(/exists/g)).toHaveLength(5);
    expect(readFileSync(join(data, "pki/certs/int-tls.crt"), "utf8")).toBe(before);
  });

  it("generates the intermediates' keys on a PKCS#11 token", async () => {
    const token = makeToken("viw-ca", "4321");
    const dir = mkdtempSync(join(tmpdir(), "viw-ca-hsm-"));
    process.env.VIW_PKCS11_PIN = "4321";
    const keys = new KeyRing({ dataDir: dir, pkcs11Module: SOFTHSM_MODULE });
    try {
      const state = loadSnapshot(await readDirSnapshot(REPO)).state!;
      const made = await initCa({ dataDir: dir, state, provider: keys, pkcs11Token: "viw-ca" });
      const tls = made.find((m) => m.id === "int-tls")!;
      expect(tls.key).toBe("pkcs11:token=viw-ca;object=int-tls");
      expect(tls.note).toMatch(/set key.ref/);
      const signer = await keys.open("pkcs11:token=viw-ca;object=int-tls");
      const pub = signer.publicKey.export({ type: "spki", format: "pem" });
      const certPub = execFileSync("openssl", ["x509", "-in", join(dir, "pki/certs/int-tls.crt"), "-noout", "-pubkey"]).toString();
      expect(certPub).toBe(pub);
      expect(execFileSync("openssl", ["verify", "-CAfile", join(dir, "pki/certs/root.crt"), join(dir, "pki/certs/int-tls.crt")]).toString()).toMatch(/OK/);
    } finally {
      delete process.env.VIW_PKCS11_PIN;
      await keys.close();
      token.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses an invalid config with its errors", async () => {
    const repo = mkdtempSync(join(tmpdir(), "viw-ca-repo-"));
    execFileSync("cp", ["-r", join(REPO, "profiles"), join(REPO, "policies"), repo]);
    writeFileSync(join(repo, "profiles/issuers/int-tls.yaml"), "id: int-tls\nparent: nowhere\n");
    const err: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((s) => (err.push(String(s)), true));
    try {
      expect(await main(["init", "--data", join(repo, "d"), "--repo", repo])).toBe(1);
    } finally {
      spy.mockRestore();
      rmSync(repo, { recursive: true, force: true });
    }
    expect(err.join("")).toMatch(/profiles\/issuers\/int-tls.yaml:\d+:\d+: error/);
  });
});
