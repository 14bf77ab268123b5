// Handshake load for test/bench/audit-handshakes.mjs, in its own process so the
// client's TLS work does not share the measured server's CPU or event loop.
// Every connection is a new full TLS 1.3 mTLS handshake (no session is
// offered for resumption) carrying one HTTP request, closed by the server
// after the answer (Connection: close).
// Usage: node audit-load.mjs CONFIG_JSON  ->  prints {"count","failed","seconds","rate","cpuUs" (client CPU per connection)}
//   CONFIG_JSON: {port, ca, cert, key, seconds, concurrency, path?, count? (stop after this many connections)}
import { readFileSync } from "node:fs";
import tls from "node:tls";

const cfg = JSON.parse(process.argv[2]);
const ctx = tls.createSecureContext({ ca: readFileSync(cfg.ca), cert: readFileSync(cfg.cert), key: readFileSync(cfg.key), minVersion: "TLSv1.3" });
const request = `GET ${cfg.path ?? "/"} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
let count = 0;
let failed = 0;
let resumed = 0;

function once() {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: "127.0.0.1", port: cfg.port, secureContext: ctx, servername: "localhost" });
    let answered = false;
    sock.once("secureConnect", () => {
      if (sock.isSessionReused()) resumed++;
      sock.write(request);
    });
    sock.once("data", (d) => void (answered = d.subarray(0, 12).toString("latin1") === "HTTP/1.1 200"));
    sock.on("error", () => {});
    sock.resume();
    sock.once("close", () => {
      if (answered) count++;
      else failed++;
      resolve();
    });
  });
}

const start = Date.now();
const cpu0 = process.cpuUsage();
const until = start + cfg.seconds * 1000;
// With cfg.count, exactly that many connections (the instruction-count bench wants the same workload in each arm).
let started = 0;
await Promise.all(
  Array.from({ length: cfg.concurrency }, async () => {
    while (Date.now() < until && (cfg.count === undefined || started < cfg.count)) {
      started++;
      await once();
    }
  }),
);
const seconds = (Date.now() - start) / 1000;
const cpu = process.cpuUsage(cpu0);
if (resumed) throw new Error(`${resumed} sessions were resumed; the benchmark must measure full handshakes`);
process.stdout.write(JSON.stringify({ count, failed, seconds, rate: count / seconds, cpuUs: (cpu.user + cpu.system) / Math.max(1, count) }) + "\n");
