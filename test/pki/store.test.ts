import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CertStore } from "../../engine/pki/index.js";

describe("CertStore.live", () => {
  const dir = mkdtempSync(join(tmpdir(), "viw-store-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("lists the unrevoked, unexpired certificates of the asked profiles, oldest first, as emergency rotation reads them", async () => {
    const store = new CertStore(dir);
    const now = Date.now();
    const rec = (serial: string, profile: string, notAfter: number, issuedAt: number) => ({
      serial,
      issuer: "int-tls",
      profile,
      revision: "r1",
      client: "backend",
      subject: JSON.stringify({ CN: `cn-${serial}` }),
      sans: { dns: [`${serial}.viworks.example`], ip: ["10.0.0.1"], uri: [] },
      not_before: now - 1000,
      not_after: notAfter,
      der: Buffer.from(serial, "hex"),
      spki_sha256: `pin-${serial}`,
      issued_at: issuedAt,
    });
    try {
      // Durable inserts through the writer thread, then read on the main connection.
      await Promise.all([
        store.insert(rec("0b", "tls-gateway", now + 86400_000, now - 10)),
        store.insert(rec("0a", "tls-gateway", now + 86400_000, now - 20)),
        store.insert(rec("0c", "tls-gateway", now - 1, now - 30)), // expired
        store.insert(rec("0d", "tls-gateway", now + 86400_000, now - 40)), // revoked below
        store.insert(rec("0e", "vpn-server", now + 86400_000, now - 50)),
        store.insert(rec("0f", "backend-client", now + 86400_000, now - 60)),
      ]);
      expect(store.revoke("0d", now, 1)).toBe(true);
      const live = store.live(["tls-gateway", "vpn-server"], now);
      expect(live.map((c) => c.serial)).toEqual(["0e", "0a", "0b"]);
      expect(live[1]).toEqual({ serial: "0a", issuer: "int-tls", profile: "tls-gateway", subject: { CN: "cn-0a" }, sans: { dns: ["0a.viworks.example"], ip: ["10.0.0.1"], uri: [] }, not_after: now + 86400_000, spki_sha256: "pin-0a", der: Buffer.from("0a", "hex") });
      expect(store.live([], now)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe("CertStore group commit", () => {
  const dir = mkdtempSync(join(tmpdir(), "viw-store-gc-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const rec = (serial: string) => ({
    serial,
    issuer: "int-tls",
    profile: "tls-gateway",
    revision: "r1",
    client: "backend",
    subject: JSON.stringify({ CN: serial }),
    sans: { dns: [`${serial}.viworks.example`], ip: [], uri: [] },
    not_before: 1,
    not_after: Date.now() + 86400_000,
    der: Buffer.from(serial, "hex"),
    spki_sha256: `pin-${serial}`,
    issued_at: 1,
  });

  it("a duplicate serial fails alone; the rest of its batch is recorded and read back after a reopen", async () => {
    const store = new CertStore(dir);
    await store.insert(rec("01"));
    // One event-loop turn: one batch, one transaction, one WAL sync.
    const results = await Promise.allSettled([store.insert(rec("02")), store.insert(rec("01")), store.insert(rec("03"))]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/UNIQUE/);
    const many = Array.from({ length: 200 }, (_, i) => rec((0x1000 + i).toString(16)));
    await Promise.all(many.map((r) => store.insert(r)));
    expect(store.revoke("02", 5, 1)).toBe(true);
    expect(store.nextCrlNumber("int-tls")).toBe(1);
    await store.close();

    const again = new CertStore(dir);
    try {
      expect(again.get("01")?.subject).toBe('{"CN":"01"}');
      expect(again.get("03")?.sans).toEqual({ dns: ["03.viworks.example"], ip: [], uri: [] });
      expect(again.status("02")).toEqual({ issuer: "int-tls", revoked_at: 5, reason: 1 });
      expect(again.live(["tls-gateway"], Date.now())).toHaveLength(202);
      expect(again.nextCrlNumber("int-tls")).toBe(2);
    } finally {
      await again.close();
    }
  });

  it("close waits for the inserts under way", async () => {
    const store = new CertStore(dir);
    const pending = Array.from({ length: 50 }, (_, i) => store.insert(rec((0x2000 + i).toString(16))));
    await store.close();
    await Promise.all(pending);
    const again = new CertStore(dir);
    expect(again.get("2031")?.profile).toBe("tls-gateway");
    await again.close();
  });
});
