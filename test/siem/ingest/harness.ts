// A SIEM service on loopback with the default config content, test PKI and
// shipper keys generated here (the policies' public keys are replaced by ours).
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DesiredState } from "../../../engine/config/index.js";
import { testStateFrom } from "./state.js";
import { createSiemService, type SiemService, type SiemServiceOptions } from "../../../engine/siem/index.js";
import { makePki, type TestPki } from "./pki.js";

export const REPO = join(import.meta.dirname, "..", "..", "..");

export interface Shipper {
  id: string;
  privateKey: KeyObject;
  publicRaw: string;
}

export function newShipper(id: string): Shipper {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const der = publicKey.export({ format: "der", type: "spki" });
  return { id, privateKey, publicRaw: der.subarray(der.length - 32).toString("base64") };
}

export function signBody(shipper: Shipper, body: Buffer): string {
  return `ed25519=${sign(null, body, shipper.privateKey).toString("base64")}`;
}

/** The default content with the ingest policy's shipper keys swapped for test keys. */
export function testState(shippers: Record<string, Shipper>, edit?: (ingestYaml: string) => string): Promise<DesiredState> {
  return testStateFrom(REPO, Object.fromEntries(Object.entries(shippers).map(([id, s]) => [id, s.publicRaw])), edit);
}

export interface Harness {
  dataDir: string;
  pki: TestPki;
  service: SiemService;
  shippers: { gw: Shipper; backend: Shipper };
  syslog: string;
  bulk: string;
  syslogPort: number;
  bulkPort: number;
  close(): Promise<void>;
}

export async function startHarness(opts: Partial<SiemServiceOptions> = {}, pki: TestPki = makePki(), dataDir = mkdtempSync(join(tmpdir(), "viw-ingest-data-"))): Promise<Harness> {
  const shippers = { gw: newShipper("vector-gw"), backend: newShipper("backend") };
  const state = await testState({ "vector-gw": shippers.gw, backend: shippers.backend });
  const service = await createSiemService({ dataDir, enrich: false, ...opts });
  const prepared = await service.prepare(state, undefined);
  prepared.commit();
  const tls = { key: pki.serverKey, cert: pki.serverCert, ca: [pki.caCert], issuers: { "int-tls": pki.caCert } };
  const addrs = await service.listen({ syslog: { port: 0, tls }, bulk: { port: 0, tls } });
  return {
    dataDir,
    pki,
    service,
    shippers,
    syslog: addrs.syslog!,
    bulk: addrs.bulk!,
    syslogPort: Number(addrs.syslog!.split(":").pop()),
    bulkPort: Number(addrs.bulk!.split(":").pop()),
    async close() {
      await service.close();
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(pki.dir, { recursive: true, force: true });
    },
  };
}
