/**
 * PKI benchmarks, side by side with cfssl in one run (figures on a shared
 * 2-core machine are pessimistic):
 *  - issuance over the mTLS API, 16 concurrent keep-alive clients, vs
 *    `cfssl serve` signing the same CSRs (plain HTTP and with mTLS), each
 *    under two load generators: the Node one (pki-load.mjs) and ab
 *    (apache2-utils, native; left out when not installed), whose CPU per request is a tenth of the Node
 *    client's; ours with its crypto workers (the default) and without;
 *    ours records every certificate durably (SQLite WAL, one fdatasync per
 *    group of rows) before answering, cfssl (no db config) records nothing;
 *    both sign with the same int-tls P-256 key, and the load client uses
 *    keep-alive for every peer. Beside them, the floor of any Node server
 *    here: a do-nothing HTTPS server with the same TLS 1.3 + client
 *    certificate setup answering a canned response of the same size;
 *  - issuance with the intermediate's key on SoftHSM2 (PKCS#11);
 *  - a CRL of 100,000 revoked entries (target < 2 s).
 * The Node load generator runs as two processes of 8 clients for every peer;
 * "us/cert" figures divide the CPU time the server process used by the
 * certificates, which holds up better than rates on a shared machine, and
 * "us/request" the load generator's. Instructions per certificate on the
 * event loop and the worker: pki-instructions.mjs (callgrind).
 *
 *   npx vitest bench --run test/bench/pki.bench.ts
 * OCSP is measured in ocsp.bench.ts (a native load generator, wrk).
 */
import { execFile as execFileCb, spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, bench, describe } from "vitest";
import { cpuSeconds, freePort, median, waitPort } from "./peers.js";
import { Authority, initCa, KeyRing } from "../../engine/pki/index.js";
import { loadState, makeCsr, startPki, type Pki, REPO } from "../pki/fixture.js";
import { makeToken, SOFTHSM_MODULE } from "../pki/softhsm.js";

const execFile = promisify(execFileCb);
const SECONDS = Number(process.env.VIW_BENCH_SECONDS ?? 5);
const CONCURRENCY = 16;
const LOAD = join(import.meta.dirname, "pki-load.mjs");

interface LoadResult {
  count: number;
  seconds: number;
  rate: number;
  statuses: Record<string, number>;
  cpuSeconds: number;
}

/** CONCURRENCY clients split over two load processes (one Node process alone saturates before the servers do). */
async function load(cfg: Record<string, unknown>, processes = 2): Promise<LoadResult> {
  const runs = await Promise.all(
    Array.from({ length: processes }, async () => {
      const { stdout } = await execFile(process.execPath, [LOAD, JSON.stringify({ concurrency: CONCURRENCY / processes, seconds: SECONDS, ...cfg })], { maxBuffer: 1 << 26 });
      return JSON.parse(stdout) as LoadResult;
    }),
  );
  const statuses: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const count = runs.reduce((a, r) => a + r.count, 0);
  const seconds = Math.max(...runs.map((r) => r.seconds));
  return { count, seconds, rate: runs.reduce((a, r) => a + r.rate, 0), statuses, cpuSeconds: runs.reduce((a, r) => a + r.cpuSeconds, 0) };
}

const results = {
  lines: [] as string[],
  push(line: string) {
    line += ` [load average ${loadavg()[0]!.toFixed(1)}]`;
    this.lines.push(line);
    process.stdout.write(`  ${line}\n`);
  },
};
const children: ChildProcess[] = [];
const p: Pki = await startPki();
const csrs = Array.from({ length: 32 }, (_, i) => makeCsr(p.dir, `bench${i}`, "/CN=gw.viworks.example", "DNS:gw.viworks.example").csr);

// ---- issuance: ours over mTLS vs cfssl serve --------------------------------
/** One measured run against one server: its rate, the server's CPU per certificate and the client's per request. */
interface Run {
  rate: number;
  serverUs: number;
  clientUs: number;
}
interface Peer {
  name: string;
  url: string;
  /** Request bodies (the Node client cycles through them; ab posts the first). */
  bodies: string[];
  /** The CA the server chains to and the client certificate it accepts (none: plain HTTP). */
  tls?: Pki;
  pid: number;
  status: string;
}

function clientOf(pki: Pki) {
  return { ca: pki.files.root, cert: pki.files.backendCrt, key: pki.files.backendKey };
}

/** ab takes the client certificate and its key in one PEM file. */
function abClientOf(pki: Pki): string {
  const f = join(pki.dir, "ab-client.pem");
  writeFileSync(f, readFileSync(pki.files.backendCrt, "utf8") + readFileSync(pki.files.backendKey, "utf8"));
  return f;
}

/** The Node load generator: two processes of 8 keep-alive clients (pki-load.mjs). */
async function nodeRun(peer: Peer): Promise<Run> {
  const cpu0 = cpuSeconds(peer.pid);
  const r = await load({ url: peer.url, bodies: peer.bodies, ...(peer.tls ? clientOf(peer.tls) : {}) });
  const cpu = cpuSeconds(peer.pid) - cpu0;
  if (!r.statuses[peer.status] || Object.keys(r.statuses).length > 1) throw new Error(`${peer.name}: ${JSON.stringify(r.statuses)}`);
  return { rate: r.rate, serverUs: (cpu * 1e6) / r.count, clientUs: (r.cpuSeconds * 1e6) / r.count };
}

/**
 * ab (apache2-utils), a native load generator: one process, 16 keep-alive
 * connections, TLS 1.3 with the client certificate where the peer wants one.
 * The Node client costs about as much CPU per request as the server it
 * loads, on the same two cores; ab costs a tenth of that, so this is the
 * figure that shows the servers rather than the client.
 */
async function abRun(peer: Peer, dir: string): Promise<Run> {
  const body = join(dir, `ab-${peer.name.replace(/\W+/g, "-")}.json`);
  writeFileSync(body, peer.bodies[0]!);
  const cpu0 = cpuSeconds(peer.pid);
  const args = ["-f", "%U %S", "ab", "-q", "-k", "-l", "-c", String(CONCURRENCY), "-t", String(SECONDS), "-n", "100000000", "-p", body, "-T", "application/json"];
  if (peer.tls) args.push("-f", "TLS1.3", "-E", abClientOf(peer.tls));
  const { stdout, stderr } = await execFile("/usr/bin/time", [...args, peer.url], { maxBuffer: 1 << 26 });
  const cpu = cpuSeconds(peer.pid) - cpu0;
  const done = Number(/Complete requests:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const failed = Number(/Failed requests:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  if (!done || failed || non2xx) throw new Error(`${peer.name} under ab: ${done} done, ${failed} failed, ${non2xx} not 2xx`);
  const abCpu = stderr.trim().split(/\s+/).slice(-2).reduce((a, b) => a + Number(b), 0);
  return { rate: Number(/Requests per second:\s+([\d.]+)/.exec(stdout)![1]), serverUs: (cpu * 1e6) / done, clientUs: (abCpu * 1e6) / done };
}

// The same CA without crypto workers: everything on the event loop (cryptoWorkers: 0), side by side with the default.
const inline: Pki = await startPki({ cryptoWorkers: 0 });
{
  const cfg = join(p.dir, "cfssl.json");
  writeFileSync(cfg, JSON.stringify({ signing: { default: { expiry: "2160h", usages: ["digital signature", "server auth"] } } }));
  const caCrt = join(p.data, "pki/certs/int-tls.crt");
  const caKey = join(p.data, "keys/int-tls.key");
  const plainPort = await freePort();
  const tlsPort = plainPort + 1;
  const listenerKey = join(p.dir, "cfssl-listener.key");
  const lk = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const lc = await p.svc.issueForEngine("engine-listener", lk.publicKey, { cn: "localhost", dns: ["localhost"], ip: ["127.0.0.1"] });
  writeFileSync(listenerKey, lk.privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(join(p.dir, "cfssl-listener.crt"), lc.certificate + lc.chain[0]);
  const plain = spawn("cfssl", ["serve", "-address", "127.0.0.1", "-port", String(plainPort), "-ca", caCrt, "-ca-key", caKey, "-config", cfg, "-loglevel", "5"], { stdio: "ignore" });
  children.push(plain);
  const tls = spawn(
    "cfssl",
    ["serve", "-address", "127.0.0.1", "-port", String(tlsPort), "-ca", caCrt, "-ca-key", caKey, "-config", cfg, "-loglevel", "5", "-tls-cert", join(p.dir, "cfssl-listener.crt"), "-tls-key", listenerKey, "-mutual-tls-ca", p.files.ca],
    { stdio: "ignore" },
  );
  children.push(tls);
  await waitPort(`http://127.0.0.1:${plainPort}/`);
  const cfsslBodies = csrs.map((csr) => JSON.stringify({ certificate_request: csr }));
  const ourBodies = csrs.map((csr) => JSON.stringify({ profile: "tls-gateway", csr }));
  // The floor: what the same TLS listener setup and load cost with no CA behind it.
  const canned = JSON.stringify(await p.svc.authority.issue("server", { profile: "tls-gateway", csr: csrs[0] }, p.svc.authority.identify(new X509Certificate(readFileSync(p.files.backendCrt)))!));
  const floor = createHttpsServer({ cert: lc.certificate + lc.chain[0], key: lk.privateKey.export({ type: "pkcs8", format: "pem" }), ca: readFileSync(p.files.ca), requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3", maxVersion: "TLSv1.3" }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      JSON.parse(Buffer.concat(chunks).toString("utf8"));
      res.writeHead(201, { "content-type": "application/json", "content-length": Buffer.byteLength(canned) });
      res.end(canned);
    });
  });
  floor.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => floor.listen(0, "127.0.0.1", r));
  const peers: Peer[] = [
    { name: "ours", url: `${p.issuance}/v1/certs/issue/server`, bodies: ourBodies, tls: p, pid: process.pid, status: "201" },
    { name: "ours-inline", url: `${inline.issuance}/v1/certs/issue/server`, bodies: ourBodies, tls: inline, pid: process.pid, status: "201" },
    { name: "cfssl", url: `http://127.0.0.1:${plainPort}/api/v1/cfssl/sign`, bodies: cfsslBodies, pid: plain.pid!, status: "200" },
    { name: "cfssl-mtls", url: `https://127.0.0.1:${tlsPort}/api/v1/cfssl/sign`, bodies: cfsslBodies, tls: p, pid: tls.pid!, status: "200" },
    { name: "floor", url: `https://127.0.0.1:${(floor.address() as AddressInfo).port}/v1/certs/issue/server`, bodies: ourBodies, tls: p, pid: process.pid, status: "201" },
  ];
  const runs = new Map<string, Run[]>();
  const hasAb = await execFile("ab", ["-V"]).then(
    () => true,
    () => false,
  );
  if (!hasAb) results.push("ab is not installed (apt-get install apache2-utils): the native load generator's figures are left out");
  const generators = hasAb ? (["node", "ab"] as const) : (["node"] as const);
  for (let round = 0; round < 3; round++) {
    for (const gen of generators) {
      for (const peer of peers) {
        const r = gen === "node" ? await nodeRun(peer) : await abRun(peer, p.dir);
        const key = `${gen}:${peer.name}`;
        runs.set(key, [...(runs.get(key) ?? []), r]);
      }
    }
  }
  floor.close();
  const med = (gen: string, name: string, f: keyof Run) => median(runs.get(`${gen}:${name}`)!.map((r) => r[f]));
  for (const [gen, what] of [
    ["node", "Node load generator (pki-load.mjs, 2 processes x 8 keep-alive clients)"],
    ["ab", "ab (native, one process, 16 keep-alive connections)"],
  ] as const) {
    if (!runs.has(`${gen}:ours`)) continue;
    const cf = med(gen, "cfssl", "rate");
    const row = (name: string, label: string) =>
      `${label} ${med(gen, name, "rate").toFixed(0)}/s (${(med(gen, name, "rate") / cf).toFixed(2)}x cfssl plain), server ${med(gen, name, "serverUs").toFixed(0)} us/cert, client ${med(gen, name, "clientUs").toFixed(0)} us/request`;
    results.push(`issuance, ${CONCURRENCY} clients, ${what}:`);
    results.push(`  ${row("ours", "ours (mTLS, TLS 1.3, durable, crypto workers)")}`);
    results.push(`  ${row("ours-inline", "ours without crypto workers (all on the event loop)")}`);
    results.push(`  ${row("cfssl", "cfssl serve (plain HTTP)")}`);
    results.push(`  ${row("cfssl-mtls", "cfssl serve (mTLS)")}`);
    results.push(`  ${row("floor", "floor: do-nothing Node HTTPS server, same TLS 1.3 + client certificate setup, canned answer of the same size:")}`);
    results.push(`  -> ratio ours/cfssl plain ${(med(gen, "ours", "rate") / cf).toFixed(2)}x, ours/cfssl mTLS ${(med(gen, "ours", "rate") / med(gen, "cfssl-mtls", "rate")).toFixed(2)}x; with/without crypto workers ${(med(gen, "ours", "rate") / med(gen, "ours-inline", "rate")).toFixed(2)}x`);
  }
  results.push(
    "cfssl serve has no db config here, so it stores no certificate; ours records each durably (SQLite WAL, fdatasync per group) before it answers. Server CPU is the process's (ours: event loop + crypto worker + libuv pool); the client shares the same cores.",
  );
}

await inline.cleanup();
for (const c of children) c.kill();

// ---- issuance rate with the intermediate key on SoftHSM2 ---------------------
{
  const token = makeToken("viw-bench", "1111");
  const dir = mkdtempSync(join(tmpdir(), "viw-bench-hsm-"));
  const repo = join(dir, "repo");
  await execFile("mkdir", ["-p", repo]);
  await execFile("cp", ["-r", join(REPO, "profiles"), join(REPO, "policies"), join(REPO, "pins"), repo]);
  const f = join(repo, "profiles/issuers/int-tls.yaml");
  writeFileSync(f, readFileSync(f, "utf8").replace("ref: file:int-tls.key", 'ref: "pkcs11:token=viw-bench;object=int-tls"'));
  const state = await loadState(repo);
  const keys = new KeyRing({ dataDir: join(dir, "data"), pkcs11Module: SOFTHSM_MODULE, env: { VIW_PKCS11_PIN: "1111" } });
  await initCa({ dataDir: join(dir, "data"), state, provider: keys });
  const a = new Authority({ dataDir: join(dir, "data") });
  a.swap(await a.build(state, keys));
  const pub = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
  const rates: number[] = [];
  for (let round = 0; round < 3; round++) {
    let n = 0;
    const until = Date.now() + SECONDS * 1000;
    const start = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (Date.now() < until) {
          await a.issueForEngine("engine-listener", pub, { cn: "localhost", dns: ["localhost"] });
          n++;
        }
      }),
    );
    rates.push(n / ((Date.now() - start) / 1000));
  }
  results.push(`issuance with the int-tls key on SoftHSM2 (PKCS#11, ${CONCURRENCY} concurrent, in-process, durable): ${median(rates).toFixed(0)}/s (target >= 1000/s)`);
  await a.close();
  await keys.close();
  token.cleanup();
  rmSync(dir, { recursive: true, force: true });
}

// ---- CRL with 100,000 revoked entries -----------------------------------------
const crlTimes: number[] = [];
{
  const now = Date.now();
  const recs = Array.from({ length: 100_000 }, () => ({
    serial: randomBytes(16).toString("hex").replace(/^0+/, "1"),
    issuer: "int-vpn",
    profile: "vpn-server",
    revision: "bench",
    client: "bench",
    subject: "{}",
    sans: { dns: [], ip: [], uri: [] },
    not_before: now,
    not_after: now + 86400_000 * 90,
    der: Buffer.alloc(0),
    spki_sha256: "",
    issued_at: now,
  }));
  p.svc.authority.store.insertMany(recs, { at: now - 1000, reason: 1 });
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const crl = await p.svc.authority.refreshCrl("int-vpn");
    crlTimes.push(performance.now() - t0);
    if (crl.der.length < 100_000 * 30) throw new Error("CRL too small");
  }
  const file = join(p.dir, "big.crl");
  writeFileSync(file, (await p.svc.authority.crl("int-vpn")).der);
  const { stdout } = await execFile("openssl", ["crl", "-inform", "DER", "-in", file, "-noout", "-CAfile", join(p.data, "pki/certs/int-vpn.crt")]).catch((e) => e);
  void stdout;
  results.push(`CRL of 100,000 revoked entries: median ${median(crlTimes).toFixed(0)} ms (target < 2000 ms), ${(readFileSync(file).length / 1e6).toFixed(1)} MB`);
}

process.stdout.write("\n" + results.lines.map((r) => "  " + r).join("\n") + "\n\n");

describe("pki", () => {
  afterAll(async () => {
    await p.cleanup();
  });
  bench(
    "CRL of 100,000 revoked entries (int-vpn)",
    async () => {
      await p.svc.authority.refreshCrl("int-vpn");
    },
    { iterations: 3, time: 0 },
  );
});
