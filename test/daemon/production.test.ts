/**
 * Production mode (no --dev): the CA was initialised beforehand (`viw ca init`)
 * and the operator provisioned the engine's keys in DATA/tls/; the daemon
 * issues their certificates, never creates a key, never writes DATA/dev/.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSnapshot, readGitSnapshot } from "../../engine/config/index.js";
import { createDaemon, type Daemon } from "../../engine/daemon.js";
import { KeyRing, initCa } from "../../engine/pki/index.js";
import { makeWorld, type World } from "../gitops/fixture.js";

let world: World;
const dirs: string[] = [];
const daemons: Daemon[] = [];
const listen = Object.fromEntries(["admin", "issuance", "pki", "syslog", "bulk"].map((n) => [n, { host: "127.0.0.1", port: 0 }]));

async function caInitialised(): Promise<string> {
  const data = mkdtempSync(join(tmpdir(), "viw-prod-"));
  dirs.push(data);
  const state = loadSnapshot(await readGitSnapshot(world.repo, "HEAD")).state!;
  const keys = new KeyRing({ dataDir: data });
  await initCa({ dataDir: data, state, provider: keys });
  await keys.close();
  return data;
}

beforeAll(() => {
  world = makeWorld();
  world.commit("initial", {}, "alice");
});
afterAll(async () => {
  for (const d of daemons) await d.stop();
  world.cleanup();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("production mode", () => {
  it("issues certificates for the provisioned keys and becomes ready", async () => {
    const data = await caInitialised();
    mkdirSync(join(data, "tls"), { recursive: true });
    execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", join(data, "tls", "listener.key")]);
    execFileSync("openssl", ["genpkey", "-algorithm", "ed25519", "-out", join(data, "tls", "log-signing.key")]);
    const daemon = createDaemon({ repo: world.repo, data, trust: world.allowedSigners, listen, logger: pino({ level: "silent" }) });
    daemons.push(daemon);
    await daemon.start();
    await daemon.reconciler.whenReady();
    await daemon.whenListening();
    expect((await fetch(`${daemon.adminUrl}/readyz`)).status).toBe(200);
    const cert = new X509Certificate(readFileSync(join(data, "tls", "listener.crt")));
    expect(cert.issuer).toMatch(/TLS/);
    expect(cert.subjectAltName).toContain("DNS:localhost");
    expect(existsSync(join(data, "dev"))).toBe(false);
    const s = (await (await fetch(`${daemon.adminUrl}/v1/status`)).json()) as any;
    expect(s.trust.mode).toBe("signed");
    expect(s.applied.signer.principal).toBe("alice@viworks.example");
  }, 60_000);

  it("without provisioned keys: not ready, and says which key to provision", async () => {
    const data = await caInitialised();
    const daemon = createDaemon({ repo: world.repo, data, trust: world.allowedSigners, listen, logger: pino({ level: "silent" }) });
    daemons.push(daemon);
    await daemon.start();
    await daemon.reconciler.whenReady();
    await daemon.whenListening().catch(() => undefined);
    const r = await fetch(`${daemon.adminUrl}/readyz`);
    expect(r.status).toBe(503);
    expect((await r.json()).reason).toMatch(/listener\.key.*production never creates keys/);
    expect(existsSync(join(data, "tls", "listener.key"))).toBe(false);
  }, 60_000);
});
