import { createHash, verify } from "node:crypto";
import { mkdtempSync, rmSync, statSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyRing, Pkcs11KeyProvider, SoftwareKeyProvider, KeyError } from "../../engine/pki/keys/index.js";
import { makeToken, SOFTHSM_MODULE } from "./softhsm.js";

describe("software keys", () => {
  const dir = mkdtempSync(join(tmpdir(), "viw-keys-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("generates a 0600 key file and signs verifiable DER ECDSA", async () => {
    const p = new SoftwareKeyProvider(dir);
    const s = await p.generate("file:a.key", "ecdsa-p256");
    expect(statSync(join(dir, "a.key")).mode & 0o777).toBe(0o600);
    const sig = await s.sign(Buffer.from("hello"));
    expect(sig[0]).toBe(0x30);
    expect(verify("sha256", Buffer.from("hello"), s.publicKey, sig)).toBe(true);
    const again = await p.open("file:a.key");
    expect(again.keyId).toBe(s.keyId);
    expect(s.keyId).toBe(createHash("sha256").update(s.publicKey.export({ type: "spki", format: "der" })).digest("hex"));
  });

  it("refuses to overwrite, path escapes and missing keys", async () => {
    const p = new SoftwareKeyProvider(dir);
    await expect(p.generate("file:a.key", "ecdsa-p256")).rejects.toThrow(/already exists/);
    await expect(p.open("file:../etc/passwd")).rejects.toThrow(/expected file:NAME/);
    await expect(p.open("file:none.key")).rejects.toThrow(/no such key file/);
  });
});

describe("PKCS#11 keys on SoftHSM2", () => {
  let token: ReturnType<typeof makeToken>;
  beforeAll(() => {
    token = makeToken("viw-test", "1234");
  });
  afterAll(() => token.cleanup());

  it("generates a non-extractable P-256 key and signs many times in parallel", async () => {
    const p = new Pkcs11KeyProvider({ module: SOFTHSM_MODULE, env: { VIW_PKCS11_PIN: "1234" } });
    try {
      const s = await p.generate("pkcs11:token=viw-test;object=int-tls", "ecdsa-p256");
      expect(s.algorithm).toBe("ecdsa-p256");
      const msgs = Array.from({ length: 200 }, (_, i) => Buffer.from(`message ${i}`));
      const sigs = await Promise.all(msgs.map((m) => s.sign(m)));
      for (let i = 0; i < msgs.length; i++) expect(verify("sha256", msgs[i]!, s.publicKey, sigs[i]!)).toBe(true);
      // The key is sensitive and not extractable: pkcs11-tool cannot read it out.
      const { execFileSync } = await import("node:child_process");
      const listing = execFileSync("pkcs11-tool", ["--module", SOFTHSM_MODULE, "--token-label", "viw-test", "--login", "--pin", "1234", "--list-objects", "--type", "privkey"], { env: process.env }).toString();
      expect(listing).toMatch(/int-tls/);
      expect(listing).toMatch(/sensitive/);
      expect(listing).toMatch(/never extractable/);
      const reopened = await p.open("pkcs11:token=viw-test;object=int-tls");
      expect(reopened.keyId).toBe(s.keyId);
      const rsa = await p.generate("pkcs11:token=viw-test;object=rsa1", "rsa-2048");
      expect(verify("sha256", Buffer.from("x"), rsa.publicKey, await rsa.sign(Buffer.from("x")))).toBe(true);
    } finally {
      await p.close();
    }
  });

  it("generates a non-extractable Ed25519 key in the token (CKM_EC_EDWARDS_KEY_PAIR_GEN) and signs with CKM_EDDSA", async () => {
    const p = new Pkcs11KeyProvider({ module: SOFTHSM_MODULE, env: { VIW_PKCS11_PIN: "1234" } });
    try {
      const s = await p.generate("pkcs11:token=viw-test;object=log-signing", "ed25519");
      expect(s.algorithm).toBe("ed25519");
      expect(s.publicKey.asymmetricKeyType).toBe("ed25519");
      const msgs = Array.from({ length: 64 }, (_, i) => Buffer.from(`sealed head ${i}`));
      const sigs = await Promise.all(msgs.map((m) => s.sign(m)));
      for (let i = 0; i < msgs.length; i++) {
        expect(sigs[i]!.length).toBe(64);
        expect(verify(null, msgs[i]!, s.publicKey, sigs[i]!)).toBe(true);
      }
      expect(verify(null, Buffer.from("other"), s.publicKey, sigs[0]!)).toBe(false);
      const { execFileSync } = await import("node:child_process");
      const listing = execFileSync("pkcs11-tool", ["--module", SOFTHSM_MODULE, "--token-label", "viw-test", "--login", "--pin", "1234", "--list-objects", "--type", "privkey"], { env: process.env }).toString();
      const entry = listing.split(/\n(?=Private Key Object)/).find((b) => /label:\s+log-signing/.test(b));
      expect(entry).toMatch(/EC_EDWARDS|EDDSA|edwards/i);
      expect(entry).toMatch(/sensitive/);
      expect(entry).toMatch(/never extractable/);
      const reopened = await p.open("pkcs11:token=viw-test;object=log-signing");
      expect(reopened.keyId).toBe(s.keyId);
      expect(reopened.publicKey.equals(s.publicKey)).toBe(true);

      // A certificate signed on the token is one openssl accepts (an Ed25519 CA, self-signed).
      const { signCertificate, nameOf, randomSerial, spkiOf, extensions, keyIdentifier, toPem } = await import("../../engine/pki/x509.js");
      const now = new Date(Math.floor(Date.now() / 1000) * 1000);
      const der = await signCertificate(
        {
          serial: randomSerial(),
          issuer: nameOf({ CN: "ed25519 on a token" }),
          subject: nameOf({ CN: "ed25519 on a token" }),
          notBefore: now,
          notAfter: new Date(now.getTime() + 86400_000),
          spki: spkiOf(s.publicKey),
          extensions: [extensions.basicConstraints(true), extensions.keyUsage(["keyCertSign", "cRLSign"]), extensions.subjectKeyIdentifier(keyIdentifier(spkiOf(s.publicKey)))],
        },
        reopened,
      );
      const crt = join(token.dir, "ed.crt");
      (await import("node:fs")).writeFileSync(crt, toPem(der));
      expect(execFileSync("openssl", ["verify", "-CAfile", crt, crt]).toString()).toMatch(/OK/);
      expect(execFileSync("openssl", ["x509", "-in", crt, "-noout", "-text"]).toString()).toMatch(/Signature Algorithm: ED25519/);
    } finally {
      await p.close();
    }
  });

  it("takes the PIN from pin-source and never puts it in an error", async () => {
    const pinFile = join(token.dir, "pin");
    (await import("node:fs")).writeFileSync(pinFile, "1234\n");
    const p = new Pkcs11KeyProvider({ module: SOFTHSM_MODULE, env: {} });
    try {
      const s = await p.open(`pkcs11:token=viw-test;object=int-tls?pin-source=${pinFile}`);
      expect(s.algorithm).toBe("ecdsa-p256");
    } finally {
      await p.close();
    }
  });

  it("says clearly when the PIN is wrong or the token or key is missing", async () => {
    const wrong = new Pkcs11KeyProvider({ module: SOFTHSM_MODULE, env: { VIW_PKCS11_PIN: "9999" } });
    const err = await wrong.open("pkcs11:token=viw-test;object=int-tls").catch((e: unknown) => e as KeyError);
    await wrong.close();
    expect(err).toBeInstanceOf(KeyError);
    expect((err as KeyError).message).toMatch(/wrong PIN/);
    expect((err as KeyError).message).not.toMatch(/9999/);
    expect((err as KeyError).unavailable).toBe(true);

    const p = new Pkcs11KeyProvider({ module: SOFTHSM_MODULE, env: { VIW_PKCS11_PIN: "1234" } });
    try {
      await expect(p.open("pkcs11:token=nope;object=int-tls")).rejects.toThrow(/token `nope` not found .*tokens present: `viw-test`/);
      await expect(p.open("pkcs11:token=viw-test;object=nothing")).rejects.toThrow(/no private key pkcs11:token=viw-test;object=nothing/);
      const e2 = await p.open("pkcs11:token=viw-test;object=x?pin-value=secret-pin").catch((e: Error) => e);
      expect(String(e2)).not.toMatch(/secret-pin/);
    } finally {
      await p.close();
    }
    const ring = new KeyRing({ dataDir: token.dir });
    await expect(ring.open("pkcs11:token=viw-test;object=int-tls")).rejects.toThrow(/no PKCS#11 module is configured/);
    expect(readFileSync).toBeTypeOf("function");
  });
});
