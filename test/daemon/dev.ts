import { readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { pino } from "pino";
import { createDaemon, type Daemon, type DaemonOptions } from "../../engine/daemon.js";

/** Every listener on a free loopback port. */
export const ANY_PORT = Object.fromEntries(["admin", "issuance", "pki", "syslog", "bulk"].map((n) => [n, { host: "127.0.0.1", port: 0 }])) as NonNullable<DaemonOptions["listen"]>;

/** A dev daemon in this process over `repo`, started, with its first revision applied and every listener bound. */
export async function startDevDaemon(opts: Omit<DaemonOptions, "dev" | "listen" | "logger"> & { repo: string; data: string }): Promise<{ daemon: Daemon; endpoints: Record<string, string> }> {
  const daemon = createDaemon({ ...opts, dev: true, listen: ANY_PORT, logger: pino({ level: "silent" }) });
  await daemon.start();
  await daemon.reconciler.whenReady();
  await daemon.whenListening();
  return { daemon, endpoints: endpointsOf(opts.data) };
}

/** DATA/run/endpoints.json. */
export function endpointsOf(data: string): Record<string, string> {
  return JSON.parse(readFileSync(join(data, "run", "endpoints.json"), "utf8"));
}

/** POST JSON to the issuance API over mTLS with the dev Backend client certificate (DATA/dev/). */
export function postAsBackend(data: string, path: string, payload: unknown): Promise<{ status: number; body: any }> {
  const url = new URL(endpointsOf(data).issuance!);
  const text = JSON.stringify(payload);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: "POST",
        ca: readFileSync(join(data, "dev", "ca-chain.pem")),
        cert: readFileSync(join(data, "dev", "backend-client.crt")),
        key: readFileSync(join(data, "dev", "backend-client.key")),
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) },
      },
      (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}
