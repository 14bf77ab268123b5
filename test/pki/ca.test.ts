import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { loadSnapshot, readDirSnapshot } from "../../engine/config/index.js";
import { initCa, KeyRing } from "../../engine/pki/index.js";
import { main } from "../../engine/cli/ca.js";
import { makeToken, SOFTHSM_MODULE } from "./softhsm.js";
import { captureOutput } from "../capture.js";

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

describe("viw ca crl and revoke-intermediate (the offline root's CRLs)", () => {
  const data = mkdtempSync(join(tmpdir(), "viw-rootcrl-"));
  afterAll(() => rmSync(data, { recursive: true, force: true }));
  const root = join(data, "pki/certs/root.crt");
  const pem = join(data, "pki/crl/root.crl.pem");
  const ca = (...args: string[]) => captureOutput(() => main([...args, "--data", data, "--repo", REPO]));
  const crlText = () => execFileSync("openssl", ["crl", "-in", pem, "-noout", "-text"]).toString();
  const verifyWithCrl = (id: string) => {
    try {
      return execFileSync("openssl", ["verify", "-crl_check", "-CAfile", root, "-CRLfile", pem, join(data, `pki/certs/${id}.crt`)], { stdio: "pipe" }).toString();
    } catch (err) {
      return String((err as { stdout?: Buffer }).stdout) + String((err as { stderr?: Buffer }).stderr);
    }
  };

  it("signs the next root CRL with the offline key, which openssl verifies", async () => {
    expect((await captureOutput(() => main(["init", "--data", data, "--repo", REPO]))).code).toBe(0);
    const r = await ca("crl", "--next-update", "30d");
    expect(r.code).toBe(0);
    // ca init published CRL 1; this one continues after it.
    expect(r.out).toMatch(/signed CRL 2 of root: 0 revoked/);
    expect(r.out).toContain(`DER ${join(data, "pki/crl/root.crl")}`);
    expect(r.out).toContain(`PEM ${pem}`);
    expect(readFileSync(pem, "utf8")).toMatch(/^-----BEGIN X509 CRL-----/);
    const verified = execFileSync("sh", ["-c", `openssl crl -in ${pem} -noout -CAfile ${root} -verify 2>&1`]).toString();
    expect(verified).toMatch(/verify OK/);
    const text = crlText();
    expect(text).toMatch(/X509v3 CRL Number:\s+2/);
    expect(text).toMatch(/No Revoked Certificates/);
    const m = /Last Update: (.*)\n\s+Next Update: (.*)\n/.exec(text)!;
    expect(Date.parse(m[2]!) - Date.parse(m[1]!)).toBe(30 * 86400_000);
    // The DER the PKI port serves is the same CRL.
    expect(execFileSync("openssl", ["crl", "-inform", "DER", "-in", join(data, "pki/crl/root.crl"), "-noout", "-crlnumber"]).toString()).toMatch(/crlNumber=0x02/);
    expect(verifyWithCrl("int-vpn")).toMatch(/: OK/);
  });

  it("revokes an intermediate: the CRL lists it with its reason and openssl -crl_check refuses it", async () => {
    const r = await ca("revoke-intermediate", "int-vpn", "--reason", "keyCompromise", "--format", "json");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out) as { number: number; serial: string; revoked: { issuer: string; serial: string }[] };
    expect(out.number).toBe(3);
    expect(out.revoked.map((x) => x.issuer)).toEqual(["int-vpn"]);
    const serial = execFileSync("openssl", ["x509", "-in", join(data, "pki/certs/int-vpn.crt"), "-noout", "-serial"]).toString().trim().split("=")[1]!;
    expect(BigInt("0x" + out.serial)).toBe(BigInt("0x" + serial));
    const text = crlText();
    expect(text.toUpperCase()).toContain(serial.toUpperCase());
    expect(text).toMatch(/Key Compromise/);
    expect(verifyWithCrl("int-vpn")).toMatch(/certificate revoked/);
    expect(verifyWithCrl("int-tls")).toMatch(/: OK/);

    // The revocation and the number persist beside the root key: the next CRL keeps listing it.
    expect(JSON.parse(readFileSync(join(data, "offline/root.crl.json"), "utf8")).number).toBe(3);
    const again = await ca("crl");
    expect(again.code).toBe(0);
    expect(again.out).toMatch(/signed CRL 4 of root: 1 revoked/);
    expect(verifyWithCrl("int-vpn")).toMatch(/certificate revoked/);
  });

  it("refuses bad requests with the reason, leaving the published CRL as it was", async () => {
    const before = readFileSync(pem, "utf8");
    const twice = await ca("revoke-intermediate", "int-vpn");
    expect(twice.code).toBe(1);
    expect(twice.err).toMatch(/int-vpn \(serial [0-9a-f]+\) is already revoked/);
    const unknown = await ca("revoke-intermediate", "int-nope");
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/no certificate of int-nope/);
    const reason = await ca("revoke-intermediate", "int-tls", "--reason", "because");
    expect(reason.code).toBe(1);
    expect(reason.err).toMatch(/reason must be one of .*keyCompromise/);
    const next = await ca("crl", "--next-update", "soon");
    expect(next.code).toBe(1);
    expect(next.err).toMatch(/--next-update/);
    await expect(ca("revoke-intermediate")).rejects.toThrow(/takes one intermediate id/);
    await expect(ca("crl", "--bogus")).rejects.toThrow(/Unknown option '--bogus'/);
    expect(readFileSync(pem, "utf8")).toBe(before);

    // The operator took the key away to removable media: nothing is signed, and the message says where it must be.
    renameSync(join(data, "offline/root.key"), join(data, "root.key.away"));
    try {
      const away = await ca("crl");
      expect(away.code).toBe(1);
      expect(away.err).toMatch(/the offline key of root is not here .*bring it back to .*offline\//);
    } finally {
      renameSync(join(data, "root.key.away"), join(data, "offline/root.key"));
    }
    expect(readFileSync(pem, "utf8")).toBe(before);
    const after = await ca("crl");
    expect(after.out).toMatch(/signed CRL 5 of root/);
  });
});
