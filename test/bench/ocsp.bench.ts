/**
 * OCSP benchmark (issue #3: "OCSP GET >= 2x `cfssl ocspserve` (pre-signed
 * responses) with fresh responses"), side by side in one run:
 *  - ours: GET /ocsp/<url-encoded base64 request> (RFC 5019) on the engine's
 *    PKI HTTP port, set up as the daemon does (createPkiService + listen),
 *    answering from its cache of responses it signed itself and re-signs when
 *    a status changes or half the validity has passed;
 *  - cfssl ocspserve (1.2) serving the same responses, pre-signed by us and
 *    loaded from a file. cfssl 1.2 cannot decode GET requests (it keeps the
 *    path's leading '/'), so it gets the same requests as POST bodies; ours
 *    is measured with POST too, and with GETs carrying a Connection header,
 *    which skip the connection-level hot path (node:http answers them), for
 *    reference.
 * One native load generator (wrk, keep-alive, one thread, CONCURRENCY
 * connections) drives every peer, in alternating rounds; the figures are
 * medians over the rounds, with the server's CPU time per response (ours:
 * process.cpuUsage of this process, which hosts the PKI port; cfssl: /proc)
 * and the load average. The machine is shared, so rates are pessimistic;
 * CPU per response holds up better.
 *
 *   npx vitest bench --run test/bench/ocsp.bench.ts
 *   (VIW_BENCH_SECONDS=5 per run, VIW_BENCH_ROUNDS=5, VIW_BENCH_CERTS=64)
 *
 * Needs wrk (Debian package `wrk`) and cfssl (`golang-cfssl`); skips with a
 * message when either is missing.
 */
import { execFile as execFileCb, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { bench, describe } from "vitest";
import { cpuSeconds, freePort, median, waitPort } from "./peers.js";
import { startPki, type Pki } from "../pki/fixture.js";

const execFile = promisify(execFileCb);
const SECONDS = Number(process.env.VIW_BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.VIW_BENCH_ROUNDS ?? 5);
const CERTS = Number(process.env.VIW_BENCH_CERTS ?? 64);
const CONCURRENCY = 16;
const LUA = join(import.meta.dirname, "ocsp-wrk.lua");

function has(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const missing = ["wrk", "cfssl"].filter((c) => !has(c));

interface Run {
  requests: number;
  rate: number;
  /** Server CPU microseconds per response. */
  cpuUs: number;
}

const UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

/**
 * One wrk run; `cpu` reads the server's CPU seconds. Any non-2xx answer or
 * socket error fails the benchmark, and so do answers shorter on average than
 * `minBytes` (cfssl answers an OCSP error, 5 bytes, with a 200 for a
 * certificate it has no response for).
 */
async function wrk(base: string, args: string[], cpu: () => number, minBytes: number): Promise<Run> {
  const c0 = cpu();
  const { stdout } = await execFile("wrk", ["-t", "1", "-c", String(CONCURRENCY), "-d", `${SECONDS}s`, "-s", LUA, base, "--", ...args], { maxBuffer: 1 << 20 });
  const c1 = cpu();
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1]);
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  if (!requests || !rate) throw new Error(`wrk printed no rate:\n${stdout}`);
  if (/Non-2xx|Socket errors/.test(stdout)) throw new Error(`${base}: not every answer was a 200:\n${stdout}`);
  const read = /([\d.]+)([KMG]?B) read/.exec(stdout);
  const perAnswer = read ? (Number(read[1]) * UNITS[read[2]!]!) / requests : 0;
  if (perAnswer < minBytes) throw new Error(`${base}: ${perAnswer.toFixed(0)} bytes per answer, less than a signed response (${minBytes}):\n${stdout}`);
  return { requests, rate, cpuUs: ((c1 - c0) * 1e6) / requests };
}

const lines: string[] = [];
function report(line: string): void {
  line += ` [load average ${loadavg()[0]!.toFixed(1)}]`;
  lines.push(line);
  process.stdout.write(`  ${line}\n`);
}

let p: Pki | undefined;
let cfssl: ChildProcess | undefined;

if (missing.length) {
  process.stdout.write(`\n  ocsp bench skipped: ${missing.join(" and ")} not installed (apt-get install ${missing.map((m) => (m === "cfssl" ? "golang-cfssl" : m)).join(" ")})\n\n`);
} else {
  p = await startPki();
  try {
    const issuerCrt = join(p.data, "pki/certs/int-tls.crt");
    const getPaths: string[] = [];
    const postFiles: string[] = [];
    const responses: string[] = [];
    for (let i = 0; i < CERTS; i++) {
      const leaf = join(p.dir, `ocspbench${i}.crt`);
      const r = await p.svc.issueForEngine("engine-listener", generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey, { cn: "localhost", dns: ["localhost"] });
      writeFileSync(leaf, r.certificate);
      const reqFile = join(p.dir, `ocspbench${i}.req`);
      await execFile("openssl", ["ocsp", "-issuer", issuerCrt, "-cert", leaf, "-no_nonce", "-reqout", reqFile]);
      const der = readFileSync(reqFile);
      getPaths.push(`/ocsp/${encodeURIComponent(der.toString("base64"))}`);
      postFiles.push(reqFile);
      // Our own first answer (signed now) is what cfssl is given to serve.
      const answer = await fetch(p.pki + getPaths[i]);
      if (answer.status !== 200) throw new Error(`ours: GET answered ${answer.status}`);
      responses.push(Buffer.from(await answer.arrayBuffer()).toString("base64"));
    }
    const minBytes = Math.min(...responses.map((r) => Buffer.from(r, "base64").length));
    const respFile = join(p.dir, "responses.txt");
    writeFileSync(respFile, responses.join("\n") + "\n");
    const port = await freePort();
    cfssl = spawn("cfssl", ["ocspserve", "-address", "127.0.0.1", "-port", String(port), "-responses", respFile, "-loglevel", "5"], { stdio: "ignore" });
    const cfsslUrl = `http://127.0.0.1:${port}`;
    await waitPort(cfsslUrl + "/");
    // Both answer the same request with the same bytes before anything is timed.
    const probe = await fetch(cfsslUrl + "/", { method: "POST", body: readFileSync(postFiles[0]!), headers: { "content-type": "application/ocsp-request" } });
    if (!Buffer.from(await probe.arrayBuffer()).equals(Buffer.from(responses[0]!, "base64"))) throw new Error("cfssl ocspserve does not answer with the pre-signed response");

    const oursCpu = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    };
    const cfsslCpu = () => cpuSeconds(cfssl!.pid!);
    const oursGet: Run[] = [];
    const oursPost: Run[] = [];
    const oursHttp: Run[] = [];
    const cfsslPost: Run[] = [];
    // Warm-up (JIT, connections) before the first timed round.
    await execFile("wrk", ["-t", "1", "-c", String(CONCURRENCY), "-d", "1s", "-s", LUA, p.pki, "--", "GET", ...getPaths]);
    await execFile("wrk", ["-t", "1", "-c", String(CONCURRENCY), "-d", "1s", "-s", LUA, cfsslUrl, "--", "POST", "/", ...postFiles]);
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which peer goes first so a burst of load elsewhere does not always hit the same one.
      const order = round % 2 === 0 ? ["ours", "cfssl"] : ["cfssl", "ours"];
      for (const who of order) {
        if (who === "ours") oursGet.push(await wrk(p.pki, ["GET", ...getPaths], oursCpu, minBytes));
        else cfsslPost.push(await wrk(cfsslUrl, ["POST", "/", ...postFiles], cfsslCpu, minBytes));
      }
      oursPost.push(await wrk(p.pki, ["POST", "/ocsp", ...postFiles], oursCpu, minBytes));
      oursHttp.push(await wrk(p.pki, ["GET-KEEPALIVE", ...getPaths], oursCpu, minBytes));
      process.stdout.write(
        `  round ${round + 1}: ours GET ${oursGet.at(-1)!.rate.toFixed(0)}/s (${oursGet.at(-1)!.cpuUs.toFixed(1)} µs CPU/response), cfssl POST ${cfsslPost.at(-1)!.rate.toFixed(0)}/s (${cfsslPost.at(-1)!.cpuUs.toFixed(1)} µs), ours POST ${oursPost.at(-1)!.rate.toFixed(0)}/s, ours GET via node:http ${oursHttp.at(-1)!.rate.toFixed(0)}/s [load ${loadavg()[0]!.toFixed(1)}]\n`,
      );
    }
    const rate = (rs: Run[]) => median(rs.map((r) => r.rate));
    const cpuUs = (rs: Run[]) => median(rs.map((r) => r.cpuUs));
    report(
      `OCSP, wrk 1 thread x ${CONCURRENCY} connections, ${CERTS} certificates, ${ROUNDS} rounds of ${SECONDS} s: ours GET ${rate(oursGet).toFixed(0)}/s vs cfssl ocspserve POST ${rate(cfsslPost).toFixed(0)}/s -> ratio ${(rate(oursGet) / rate(cfsslPost)).toFixed(2)}x (target >= 2); ours POST (no nonce) ${rate(oursPost).toFixed(0)}/s -> ${(rate(oursPost) / rate(cfsslPost)).toFixed(2)}x; ours GET through node:http only (a Connection header) ${rate(oursHttp).toFixed(0)}/s -> ${(rate(oursHttp) / rate(cfsslPost)).toFixed(2)}x`,
    );
    report(
      `OCSP server CPU per response: ours GET ${cpuUs(oursGet).toFixed(1)} µs, ours POST ${cpuUs(oursPost).toFixed(1)} µs, ours GET through node:http ${cpuUs(oursHttp).toFixed(1)} µs; cfssl ocspserve POST ${cpuUs(cfsslPost).toFixed(1)} µs -> cfssl/ours GET ${(cpuUs(cfsslPost) / cpuUs(oursGet)).toFixed(2)}x`,
    );
    process.stdout.write("\n" + lines.map((l) => "  " + l).join("\n") + "\n\n");
  } finally {
    // Here rather than in afterAll, which a benchmark run does not reliably reach.
    cfssl?.kill();
    await p.cleanup();
  }
}

// The figures are the lines printed above (wrk against each server); vitest's
// own timing of one fetch at a time would measure the client, not the servers.
describe("ocsp", () => {
  bench.skip(missing.length ? `OCSP GET vs cfssl ocspserve (needs ${missing.join(", ")})` : "OCSP GET vs cfssl ocspserve: figures printed above", () => {});
});
