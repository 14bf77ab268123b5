// Handshake load for test/bench/audit.bench.ts, in its own process so the
// client's TLS work does not share the measured server's event loop.
// Every connection is a new full TLS 1.3 mTLS handshake (no resumption)
// carrying one HTTP request, closed by the server after the answer.
// Usage: node audit-load.mjs CONFIG_JSON  ->  prints {"count","failed","seconds","rate"}
import { readFileSync } from "node:fs";
import tls from "node:tls";

const cfg = JSON.parse(process.argv[2]);
const ctx = tls.createSecureContext({ ca: readFileSync(cfg.ca), cert: readFileSync(cfg.cert), key: readFileSync(cfg.key), minVersion: "TLSv1.3" });
let count = 0;
let failed = 0;

function once() {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: "127.0.0.1", port: cfg.port, secureContext: ctx, servername: "localhost" });
    // One request per connection, as issuance clients do; the server closes (Connection: close).
    sock.once("secureConnect", () => {
      count++;
      sock.write("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    });
    sock.on("error", () => void failed++);
    sock.once("close", resolve);
    sock.resume();
  });
}

const start = Date.now();
const until = start + cfg.seconds * 1000;
await Promise.all(
  Array.from({ length: cfg.concurrency }, async () => {
    while (Date.now() < until) await once();
  }),
);
const seconds = (Date.now() - start) / 1000;
process.stdout.write(JSON.stringify({ count, failed, seconds, rate: count / seconds }) + "\n");
