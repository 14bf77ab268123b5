import { createHash, generateKeyPairSync, verify, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { IssueError, parseCsr, softwareSigner, toPem, fromPem } from "../../engine/pki/index.js";
import { softwareKeyOf } from "../../engine/pki/keys/index.js";
import { CryptoWorkers } from "../../engine/pki/workers.js";
import { api, makeCsr, run, startPki } from "./fixture.js";

const dir = mkdtempSync(join(tmpdir(), "viw-pki-workers-"));
const workers = new CryptoWorkers(2);
afterAll(async () => {
  await workers.close();
  rmSync(dir, { recursive: true, force: true });
});

const outcome = (p: Promise<unknown>) =>
  p.then(
    (v) => ({ ok: v }),
    (e: unknown) => ({ err: e instanceof IssueError ? { status: e.status, code: e.code, field: e.field, message: e.message } : String(e) }),
  );

describe("the PKI crypto workers", () => {
  const ec = makeCsr(dir, "w-ec", "/CN=gw.viworks.example", "DNS:gw.viworks.example,IP:10.0.0.1");
  const p384 = makeCsr(dir, "w-384", "/CN=gw.viworks.example", undefined, ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]);
  const rsa = makeCsr(dir, "w-rsa", "/CN=gw.viworks.example", undefined, ["-newkey", "rsa:2048"]);
  const ed = makeCsr(dir, "w-ed", "/CN=gw.viworks.example", undefined, ["-newkey", "ed25519"]);

  it("read the same key types, subjects and SANs as the event-loop path", async () => {
    for (const { csr } of [ec, p384, rsa, ed]) {
      const here = await parseCsr(csr);
      const there = await parseCsr(csr, workers);
      expect(there).toEqual(here);
    }
    expect((await parseCsr(rsa.csr, workers)).keyAlgorithm).toBe("rsa-2048");
    expect((await parseCsr(ed.csr, workers)).keyAlgorithm).toBe("ed25519");
    expect((await parseCsr(p384.csr, workers)).keyAlgorithm).toBe("ecdsa-p384");
  });

  it("refuse every corrupted request exactly as the event-loop path does (same status, code and message)", async () => {
    const ders = [ec, p384, rsa, ed].map((c) => fromPem(c.csr, "CERTIFICATE REQUEST")[0]!);
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.nat(3), fc.nat(), fc.integer({ min: 1, max: 255 }), async (which, at, xor) => {
        const bad = Buffer.from(ders[which]!);
        bad[at % bad.length]! ^= xor;
        const pem = toPem(bad, "CERTIFICATE REQUEST");
        const [here, there] = await Promise.all([outcome(parseCsr(pem)), outcome(parseCsr(pem, workers))]);
        expect(there).toEqual(here);
        if ("err" in here) refused++;
      }),
      { numRuns: 300 },
    );
    expect(refused).toBeGreaterThan(100);
  });

  it("give each of many concurrent requests its own answer (batches of one event-loop turn)", async () => {
    const good = fromPem(ec.csr, "CERTIFICATE REQUEST")[0]!;
    const badSig = Buffer.from(good);
    badSig[badSig.length - 3]! ^= 0x01;
    const forged = toPem(badSig, "CERTIFICATE REQUEST");
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => outcome(parseCsr(i % 3 === 0 ? forged : ec.csr, workers))));
    results.forEach((r, i) => {
      if (i % 3 === 0) expect(r).toMatchObject({ err: { status: 400, code: "bad_csr_signature", field: "csr" } });
      else expect(r).toHaveProperty("ok");
    });
  });

  it("sign with a software key handed to them; the signature verifies with the key's public half", async () => {
    for (const alg of [{ type: "ec" as const, opts: { namedCurve: "P-256" } }, { type: "ed25519" as const, opts: {} }, { type: "rsa" as const, opts: { modulusLength: 2048 } }]) {
      const { privateKey } = generateKeyPairSync(alg.type as "ec", alg.opts as { namedCurve: string });
      const base = softwareSigner(privateKey);
      const soft = softwareKeyOf(base)!;
      const pooled = workers.signer(base, soft.key, soft.hash);
      expect(pooled.keyId).toBe(base.keyId);
      const data = Buffer.from(`to be signed ${alg.type}`);
      const sigs = await Promise.all([pooled.sign(data), pooled.sign(data)]);
      for (const sig of sigs) expect(verify(soft.hash, data, base.publicKey, sig)).toBe(true);
      expect(verify(soft.hash, Buffer.from("other"), base.publicKey, sigs[0]!)).toBe(false);
    }
  });

  it("a worker that dies fails only the jobs it held; the next ones run on a fresh worker", async () => {
    const one = new CryptoWorkers(1);
    try {
      expect((await parseCsr(ec.csr, one)).keyAlgorithm).toBe("ecdsa-p256");
      const threads = (one as unknown as { threads: { worker: { terminate(): Promise<number> } }[] }).threads;
      const inFlight = parseCsr(ec.csr, one).then(
        () => "done",
        (e: Error) => e.message,
      );
      // Killed while the batch is queued or running: the request fails (the API answers 500), nothing hangs.
      await new Promise((r) => setImmediate(r));
      await threads[0]!.worker.terminate();
      expect(await inFlight).toMatch(/done|exited/);
      expect((await parseCsr(ec.csr, one)).keyAlgorithm).toBe("ecdsa-p256");
    } finally {
      await one.close();
    }
    await expect(parseCsr(ec.csr, one)).rejects.toThrow(/closed/);
  });
});

describe("the issuance API with and without crypto workers", () => {
  for (const cryptoWorkers of [0, 2]) {
    it(`cryptoWorkers ${cryptoWorkers}: issues certificates openssl verifies, refuses a forged CSR, answers concurrent requests each with its own key`, async () => {
      const p = await startPki({ cryptoWorkers });
      try {
        const csrs = Array.from({ length: 6 }, (_, i) => makeCsr(p.dir, `k${i}`, "/CN=gw.viworks.example", "DNS:gw.viworks.example"));
        const answers = await Promise.all(csrs.map(({ csr }) => api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr })));
        const chain = (id: string) => join(p.data, `pki/certs/${id}.crt`);
        for (const [i, r] of answers.entries()) {
          expect(r.status).toBe(201);
          const leaf = join(p.dir, `k${i}.crt`);
          writeFileSync(leaf, r.body.certificate);
          expect((await run("openssl", ["verify", "-CAfile", p.files.root, "-untrusted", chain("int-tls"), "-purpose", "sslserver", leaf])).stdout).toMatch(/OK/);
          // The certificate carries the key of its own CSR (the answers did not cross).
          const certKey = (await run("openssl", ["x509", "-in", leaf, "-noout", "-pubkey"])).stdout;
          const csrKey = (await run("openssl", ["pkey", "-in", csrs[i]!.keyPath, "-pubout"])).stdout;
          expect(certKey).toBe(csrKey);
          // Recorded before it was returned; the SPKI hash (computed with the CSR check) is the certificate key's.
          const spki = new X509Certificate(r.body.certificate).publicKey.export({ type: "spki", format: "der" });
          expect(r.body.spki_sha256).toBe(createHash("sha256").update(spki).digest("base64"));
          expect(p.svc.authority.store.get(r.body.serial)?.spki_sha256).toBe(r.body.spki_sha256);
          // SKI: SHA-1 of the key bits (the uncompressed P-256 point ends the SPKI), RFC 5280 method 1.
          const ski = (await run("openssl", ["x509", "-in", leaf, "-noout", "-ext", "subjectKeyIdentifier"])).stdout.split("\n")[1]!.trim();
          expect(ski).toBe(createHash("sha1").update(spki.subarray(spki.length - 65)).digest("hex").toUpperCase().match(/../g)!.join(":"));
        }
        const der = fromPem(csrs[0]!.csr, "CERTIFICATE REQUEST")[0]!;
        der[der.length - 3]! ^= 0x01;
        const forged = await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr: toPem(der, "CERTIFICATE REQUEST") });
        expect(forged.status).toBe(400);
        expect(forged.body.error).toMatchObject({ code: "bad_csr_signature", field: "csr" });
      } finally {
        await p.cleanup();
      }
    });
  }
});
