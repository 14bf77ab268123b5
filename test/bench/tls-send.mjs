// Sends a file of octet-counted syslog frames over TLS with a client
// certificate, as fast as the receiver reads (TCP flow control), then exits.
// argv: host port caFile certFile keyFile dataFile
import { connect } from "node:tls";
import { createReadStream, readFileSync } from "node:fs";

const [host, port, ca, cert, key, file] = process.argv.slice(2);
const t0 = process.hrtime.bigint();
const socket = connect({ host, port: Number(port), ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), servername: "localhost" }, () => {
  createReadStream(file, { highWaterMark: 256 * 1024 }).pipe(socket);
});
socket.on("finish", () => {
  process.stdout.write(JSON.stringify({ sentMs: Number(process.hrtime.bigint() - t0) / 1e6 }) + "\n");
  // keep the connection until the receiver closes or we are killed, so nothing is cut off
  setTimeout(() => socket.destroy(), 60_000).unref();
});
socket.on("error", (e) => {
  process.stderr.write(`tls-send: ${e.message}\n`);
  process.exit(1);
});
