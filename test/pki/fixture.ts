import { execFile as execFileCb, execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { loadSnapshot, readDirSnapshot, type DesiredState } from "../../engine/config/index.js";
import { createPkiService, initCa, KeyRing, type PkiService } from "../../engine/pki/index.js";

export const REPO = join(import.meta.dirname, "../..");
const execFile = promisify(execFileCb);

export async function run(cmd: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const p = execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
    if (input !== undefined) {
      p.child.stdin!.end(input);
    }
    const { stdout, stderr } = await p;
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/**
 * The repo's DesiredState. By default its profiles are unbound from their pin
 * sets: the default pins are the ViWorkS production keys, which these tests'
 * fresh keys cannot match (pin-aware issuance is tested in test/pins/).
 */
export async function loadState(repo = REPO, { pinned = false } = {}): Promise<DesiredState> {
  const snapshot = await readDirSnapshot(repo);
  if (!pinned) {
    for (const f of snapshot.files) {
      if (/^profiles\/[^/]+\.ya?ml$/.test(f.path) && f.bytes) f.bytes = Buffer.from(f.bytes.toString("utf8").replace(/^pin_set: .*$/m, ""));
    }
  }
  const r = loadSnapshot(snapshot);
  if (!r.state) throw new Error(JSON.stringify(r.errors));
  return r.state;
}

/** A key and CSR made by openssl, as a gateway or the Backend would. */
export function makeCsr(dir: string, name: string, subj: string, sans?: string, keyArgs = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]): { key: string; csr: string; keyPath: string } {
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  execFileSync("openssl", ["req", "-new", ...keyArgs, "-nodes", "-keyout", keyPath, "-out", csrPath, "-subj", subj, ...(sans ? ["-addext", `subjectAltName=${sans}`] : [])], { stdio: "pipe" });
  return { key: readFileSync(keyPath, "utf8"), csr: readFileSync(csrPath, "utf8"), keyPath };
}

export interface Pki {
  dir: string;
  data: string;
  state: DesiredState;
  svc: PkiService;
  keys: KeyRing;
  issuance: string;
  pki: string;
  /** Files for curl: the engine's CA bundle, root, and client credentials. */
  files: { ca: string; root: string; backendCrt: string; backendKey: string; adminCrt: string; adminKey: string; strangerCrt: string; strangerKey: string; listenerCrt: string };
  cleanup(): Promise<void>;
}

/** A CA in a temp dir with the service listening on loopback (port 0), and client credentials made with issueForEngine. */
export async function startPki(opts: { state?: DesiredState; log?: boolean; cryptoWorkers?: number } = {}): Promise<Pki> {
  const dir = mkdtempSync(join(tmpdir(), "viw-pki-"));
  const data = join(dir, "data");
  const state = opts.state ?? (await loadState());
  const keys = new KeyRing({ dataDir: data });
  await initCa({ dataDir: data, state, provider: keys });
  const svc = createPkiService({ dataDir: data, provider: keys, tickInterval: 1000, ...(opts.cryptoWorkers !== undefined ? { cryptoWorkers: opts.cryptoWorkers } : {}) });
  (await svc.prepare(state, undefined)).commit();

  const clientCert = async (profile: string, cn: string) => {
    const k = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const out = await svc.issueForEngine(profile, k.publicKey, { cn, dns: [cn] });
    const crt = join(dir, `${cn}.crt`);
    const key = join(dir, `${cn}.key`);
    writeFileSync(crt, out.certificate + out.chain.slice(0, -1).join(""));
    writeFileSync(key, k.privateKey.export({ type: "pkcs8", format: "pem" }));
    return { crt, key };
  };
  const listenerKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const listener = await svc.issueForEngine("engine-listener", listenerKey.publicKey, { cn: "localhost", dns: ["localhost"], ip: ["127.0.0.1", "::1"] });
  const caBundle = [...state.issuers.keys()].map((id) => readFileSync(join(data, "pki/certs", `${id}.crt`), "utf8")).join("");
  const files = {
    ca: join(dir, "ca-chain.pem"),
    root: join(data, "pki/certs/root.crt"),
    listenerCrt: join(dir, "listener.crt"),
    ...(await clientCert("backend-client", "backend.viworks.example").then((c) => ({ backendCrt: c.crt, backendKey: c.key }))),
    ...(await clientCert("backend-client", "pki-admin.viworks.example").then((c) => ({ adminCrt: c.crt, adminKey: c.key }))),
    ...(await clientCert("log-shipper", "stranger.viworks.example").then((c) => ({ strangerCrt: c.crt, strangerKey: c.key }))),
  };
  writeFileSync(files.ca, caBundle);
  writeFileSync(files.listenerCrt, listener.certificate + listener.chain.slice(0, -1).join(""));
  const urls = await svc.listen({
    issuance: { host: "127.0.0.1", port: 0, tls: { cert: listener.certificate + listener.chain.slice(0, -1).join(""), key: listenerKey.privateKey.export({ type: "pkcs8", format: "pem" }), ca: caBundle } },
    pki: { host: "127.0.0.1", port: 0 },
  });
  return {
    dir,
    data,
    state,
    svc,
    keys,
    issuance: urls.issuance!,
    pki: urls.pki!,
    files,
    cleanup: async () => {
      await svc.close();
      await keys.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** curl against the issuance API with a client certificate; returns status and parsed body. */
export async function api(p: Pki, method: string, path: string, body?: unknown, who: "backend" | "admin" | "stranger" | "none" = "backend", extra: string[] = []): Promise<{ status: number; body: any; curl: number; stderr: string }> {
  const cred = who === "backend" ? [p.files.backendCrt, p.files.backendKey] : who === "admin" ? [p.files.adminCrt, p.files.adminKey] : who === "stranger" ? [p.files.strangerCrt, p.files.strangerKey] : undefined;
  const args = ["-sS", "--cacert", p.files.root, "-X", method, "-w", "\n%{http_code}", ...(cred ? ["--cert", cred[0]!, "--key", cred[1]!] : []), ...extra];
  if (body !== undefined) args.push("-H", "content-type: application/json", "--data-binary", "@-");
  const r = await run("curl", [...args, p.issuance + path], body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body));
  const lines = r.stdout.split("\n");
  const status = Number(lines.pop());
  const text = lines.join("\n");
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* PEM or empty */
  }
  return { status, body: parsed, curl: r.code, stderr: r.stderr };
}
