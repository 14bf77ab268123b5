import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Certificates made with the openssl CLI in `dir` (EC P-256, like the engine's int-tls). */
export interface TestPki {
  dir: string;
  ca: string;
  serverKey: string;
  serverCert: string;
  /** name -> {cert, key} */
  clients: Record<"good" | "other" | "expired" | "revoked" | "evil", { cert: string; key: string; serial: string }>;
}

const osl = (dir: string, args: string[], input?: string): string =>
  execFileSync("openssl", args, { cwd: dir, input, stdio: ["pipe", "pipe", "pipe"] }).toString();

export function makePki(dir: string): TestPki {
  const key = (name: string): string => {
    osl(dir, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`]);
    return join(dir, `${name}.key`);
  };
  const selfSigned = (name: string, cn: string): void => {
    key(name);
    osl(dir, ["req", "-x509", "-new", "-key", `${name}.key`, "-subj", cn, "-days", "30", "-out", `${name}.crt`]);
  };
  selfSigned("ca", "/CN=Audit Test CA");
  selfSigned("ca2", "/CN=Other CA");
  writeFileSync(join(dir, "server.ext"), "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  writeFileSync(join(dir, "client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  const leaf = (name: string, subj: string, ca: string, serial: string, days: string, ext: string): { cert: string; key: string; serial: string } => {
    key(name);
    const csr = osl(dir, ["req", "-new", "-key", `${name}.key`, "-subj", subj]);
    osl(dir, ["x509", "-req", "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-set_serial", `0x${serial}`, "-days", days, "-extfile", ext, "-out", `${name}.crt`], csr);
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), serial };
  };
  const server = leaf("server", "/CN=localhost", "ca", "0100", "30", "server.ext");
  return {
    dir,
    ca: join(dir, "ca.crt"),
    serverKey: server.key,
    serverCert: server.cert,
    clients: {
      good: leaf("good", "/O=ViWorkS/CN=backend.viworks.example", "ca", "1001", "30", "client.ext"),
      other: leaf("other", "/CN=intruder.example", "ca2", "1002", "30", "client.ext"),
      expired: leaf("expired", "/CN=expired.viworks.example", "ca", "1003", "-1", "client.ext"),
      revoked: leaf("revoked", "/CN=revoked.viworks.example", "ca", "2bad", "30", "client.ext"),
      evil: leaf("evil", "/CN=evil][Outcome=Success][Info=/O=x", "ca", "1005", "30", "client.ext"),
    },
  };
}

export const read = (f: string): Buffer => readFileSync(f);

/** Runs a client to completion (or kills it after `timeoutMs`); resolves with its exit code and output. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 10_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
    child.stdin.end(opts.input ?? "");
  });
}

/** A long-lived client whose stdin stays open (an idle session). */
export function spawnIdle(cmd: string, args: string[]): ChildProcess {
  return spawn(cmd, args, { stdio: ["pipe", "ignore", "ignore"] });
}

export async function waitFor<T>(fn: () => T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
