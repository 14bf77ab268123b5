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
