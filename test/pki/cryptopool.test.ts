import { generateKeyPairSync, verify } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { closeCryptoPool, signInPool } from "../../engine/pki/cryptopool.js";

const ports = () => process.getActiveResourcesInfo().filter((r) => r === "MessagePort" || r === "Worker").length;

describe("crypto worker pool", () => {
  afterAll(() => closeCryptoPool());

  it("keeps the process alive only while a job is under way (a CLI neither hangs after signing nor exits before)", async () => {
    await closeCryptoPool();
    const baseline = ports();
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    // One signature, as `viw ca crl` makes: it reaches one worker; the others, idle, must not hold the process either.
    expect(verify("sha256", Buffer.from("one"), publicKey, await signInPool("sha256", Buffer.from("one"), privateKey))).toBe(true);
    expect(ports()).toBe(baseline);
    const pending = Promise.all(Array.from({ length: 20 }, (_, i) => signInPool("sha256", Buffer.from(`m${i}`), privateKey)));
    await new Promise((r) => setImmediate(r));
    expect(ports()).toBeGreaterThan(baseline);
    const sigs = await pending;
    sigs.forEach((s, i) => expect(verify("sha256", Buffer.from(`m${i}`), publicKey, s)).toBe(true));
    expect(ports()).toBe(baseline);
  });
});
