// Load generator for test/bench/pki.bench.ts, run as its own process so the
// client's TLS and JSON work does not share the measured server's event loop.
// Usage: node pki-load.mjs CONFIG_JSON  ->  prints {"count","seconds","rate","statuses","cpuSeconds"}
// CONFIG_JSON: url, concurrency, seconds (or count), bodies, ca/cert/key for TLS.
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";

const cfg = JSON.parse(process.argv[2]);
const url = new URL(cfg.url);
const isTls = url.protocol === "https:";
const agent = new (isTls ? https : http).Agent({
  keepAlive: true,
  maxSockets: cfg.concurrency,
  ...(isTls ? { ca: readFileSync(cfg.ca), cert: cfg.cert && readFileSync(cfg.cert), key: cfg.key && readFileSync(cfg.key) } : {}),
});
const bodies = (cfg.bodies ?? []).map((b) => Buffer.from(b, cfg.bodyEncoding ?? "utf8"));
const contentType = cfg.contentType ?? "application/json";
const paths = cfg.paths ?? [url.pathname];
const statuses = {};
let count = 0;
let i = 0;

function once() {
  return new Promise((resolve) => {
    const n = i++;
    const body = bodies.length ? bodies[n % bodies.length] : undefined;
    const req = (isTls ? https : http).request(
      { host: url.hostname, port: url.port, path: paths[n % paths.length], method: body ? "POST" : "GET", agent, headers: body ? { "content-type": contentType, "content-length": body.length } : {} },
      (res) => {
        res.resume();
        res.on("end", () => {
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          resolve();
        });
      },
    );
    req.on("error", (e) => {
      statuses[e.code ?? "error"] = (statuses[e.code ?? "error"] ?? 0) + 1;
      resolve();
    });
    req.end(body);
  });
}

async function worker(until) {
  // cfg.count: a fixed number of requests in all (pki-instructions.mjs), else for cfg.seconds.
  while (Date.now() < until && !(cfg.count && i >= cfg.count + cfg.concurrency)) {
    await once();
    count++;
  }
}

// Warm-up: open the connections (TLS handshakes) before the clock starts.
await Promise.all(Array.from({ length: cfg.concurrency }, () => once()));
for (const k of Object.keys(statuses)) delete statuses[k];
// cfg.gate: say "warm" on stderr and wait for a line on stdin before the measured part (pki-instructions.mjs
// switches its count on in between, so the connections' TLS handshakes stay out of it).
if (cfg.gate) {
  process.stderr.write("warm\n");
  await new Promise((resolve) => process.stdin.once("data", resolve));
  process.stdin.pause();
}
const start = Date.now();
const cpu0 = process.cpuUsage();
await Promise.all(Array.from({ length: cfg.concurrency }, () => worker(start + cfg.seconds * 1000)));
const seconds = (Date.now() - start) / 1000;
const cpu = process.cpuUsage(cpu0);
// cpuSeconds: what this client used in the measured part (it shares the machine with the server it loads).
process.stdout.write(JSON.stringify({ count, seconds, rate: count / seconds, statuses, cpuSeconds: (cpu.user + cpu.system) / 1e6 }) + "\n");
agent.destroy();
