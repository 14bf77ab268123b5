/**
 * kill -9 of the whole daemon (`viw run --dev`, the compiled engine) while
 * rsyslog (omfwd over gtls, fed by logger) and a bulk client (signed NDJSON
 * over mTLS) send: after a restart on the same ports, every bulk event that
 * was acknowledged (200) is in the store exactly once, as /v1/query on the
 * admin port answers, syslog events are never stored twice, and the journal
 * consumers resume from their durable cursors. Needs the build (dist/),
 * made in beforeAll as `npm test` does.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createPrivateKey, sign } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO } from "./harness.js";
import { startRsyslog, type Rsyslog } from "./rsyslog.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let repo: string;
let data: string;
let daemon: ChildProcess | undefined;
let rs: Rsyslog | undefined;
let output = "";

beforeAll(() => {
  // tsc emits even when a file elsewhere has a type error (other areas in flight)
  spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: REPO, stdio: "ignore" });
  repo = mkdtempSync(join(tmpdir(), "viw-dcrash-repo-"));
  data = mkdtempSync(join(tmpdir(), "viw-dcrash-data-"));
  for (const f of ["policies", "profiles", "detections", "dashboards", "pins"]) cpSync(join(REPO, f), join(repo, f), { recursive: true });
}, 180_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill("SIGKILL");
  await rs?.stop();
  if (repo) rmSync(repo, { recursive: true, force: true });
  if (data) rmSync(data, { recursive: true, force: true });
});

async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 60_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}\n${output.slice(-3000)}`);
    await sleep(50);
  }
}

type Endpoints = Record<"admin" | "issuance" | "pki" | "syslog" | "bulk", string>;

/** Starts the daemon; `ports` pins the listeners (the restart reuses the first run's ports). */
async function startDaemon(ports?: Endpoints): Promise<Endpoints> {
  const file = join(data, "run", "endpoints.json");
  rmSync(file, { force: true });
  const port = (u: string) => u.split(":").pop()!.replace(/\/.*$/, "");
  const listen = (["admin", "issuance", "pki", "syslog", "bulk"] as const).flatMap((n) => ["--listen", `${n}=127.0.0.1:${ports ? port(ports[n]) : 0}`]);
  daemon = spawn(process.execPath, [join(REPO, "dist/engine/cli/main.js"), "run", "--dev", "--repo", repo, "--data", data, ...listen], { stdio: ["ignore", "pipe", "pipe"] });
  daemon.stdout!.on("data", (c) => (output = (output + c).slice(-20_000)));
  daemon.stderr!.on("data", (c) => (output = (output + c).slice(-20_000)));
  const endpoints = await until("endpoints.json", () => (existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Endpoints) : undefined));
  await until("readyz", async () => ((await fetch(`${endpoints.admin}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined));
  return endpoints;
}

async function ingestStatus(admin: string): Promise<{ last_seq: number; cursors: Record<string, number> }> {
  const s = (await (await fetch(`${admin}/v1/status`)).json()) as { services: { ingest: { journal: { last_seq: number; cursors: Record<string, number> } } } };
  return s.services.ingest.journal;
}

async function query(admin: string, where: unknown): Promise<{ total: number; hits: { event_id: string }[] }> {
  const r = await fetch(`${admin}/v1/query?limit=10000&where=${encodeURIComponent(JSON.stringify(where))}`);
  expect(r.status).toBe(200);
  return (await r.json()) as { total: number; hits: { event_id: string }[] };
}

describe("kill -9 of the daemon while rsyslog and a bulk client send", () => {
  it("every acknowledged bulk event is stored exactly once after the restart; syslog never twice; consumers resume from their cursors", async () => {
    let endpoints = await startDaemon();
    const dev = join(data, "dev");
    const ca = readFileSync(join(dev, "ca-chain.pem"));
    const cert = readFileSync(join(dev, "backend-client.crt"));
    const key = readFileSync(join(dev, "backend-client.key"));
    const shipperKey = createPrivateKey(readFileSync(join(dev, "shipper-dev.key")));
    rs = await startRsyslog({ port: Number(endpoints.syslog.split(":").pop()), caFile: join(dev, "ca-chain.pem"), certFile: join(dev, "backend-client.crt"), keyFile: join(dev, "backend-client.key"), permittedPeer: "localhost" });

    const post = (url: string, body: Buffer) =>
      new Promise<number>((resolve) => {
        const req = request(`${url}/v1/ingest/bulk`, { method: "POST", ca, cert, key, agent: false, headers: { "Viw-Key-Id": "dev", "Viw-Signature": `ed25519=${sign(null, body, shipperKey).toString("base64")}`, "Content-Length": body.length } }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", () => resolve(0));
        });
        req.on("error", () => resolve(0));
        req.end(body);
      });
    const acked: string[] = [];
    let sent = 0;
    let stop = false;
    let bulkUrl = endpoints.bulk;
    const sender = (async () => {
      for (let k = 0; !stop; k++) {
        const ids = Array.from({ length: 200 }, (_, i) => `dk-${k}-${i}`);
        const body = Buffer.from(ids.map((id) => JSON.stringify({ event_id: id, action: "login", result: "success", user_id: "crash-bulk" })).join("\n"));
        sent += ids.length;
        // an unacknowledged request is sent again, as a shipper does: the store is idempotent by event_id
        for (;;) {
          const status = await post(bulkUrl, body);
          if (status === 200) {
            acked.push(...ids);
            break;
          }
          await sleep(100);
          if (stop) break;
        }
      }
    })();
    const N = 20_000;
    const file = join(data, "syslog.txt");
    writeFileSync(file, Array.from({ length: N }, (_, i) => JSON.stringify({ event_id: `ds-${i}`, action: "gw_health", user_id: "crash-syslog" })).join("\n") + "\n");
    const logger = run("logger", ["-u", rs.socket, "-t", "gw", "-f", file]);

    await until("2000 acknowledged bulk events", () => acked.length >= 2000);
    const before = await ingestStatus(endpoints.admin);
    daemon!.kill("SIGKILL");
    await new Promise((r) => daemon!.once("exit", r));
    const ackedAtKill = acked.length;

    endpoints = await startDaemon(endpoints);
    bulkUrl = endpoints.bulk;
    const after = await ingestStatus(endpoints.admin);
    // nothing durable was lost and no consumer went back before its committed cursor
    expect(after.last_seq).toBeGreaterThanOrEqual(before.last_seq);
    for (const [consumer, seq] of Object.entries(before.cursors)) expect(after.cursors[consumer] ?? -1).toBeGreaterThanOrEqual(seq);

    await until("2000 more acknowledged after the restart", () => acked.length >= ackedAtKill + 2000);
    stop = true;
    await sender;
    await logger;

    const bulkWhere = { "==": [{ var: "user_id" }, "crash-bulk"] };
    const stored = await until("every acknowledged bulk event in the store", async () => {
      const r = await query(endpoints.admin, bulkWhere);
      return r.total >= acked.length ? r : undefined;
    });
    const ids = stored.hits.map((h) => h.event_id);
    expect(new Set(ids).size).toBe(ids.length); // once each
    const present = new Set(ids);
    expect(acked.filter((id) => !present.has(id))).toEqual([]);
    expect(stored.total).toBeLessThanOrEqual(sent);

    // syslog has no application-level ack: what was in flight at the kill may be lost, never duplicated
    await sleep(1500);
    const sys = await query(endpoints.admin, { "==": [{ var: "user_id" }, "crash-syslog"] });
    const sysIds = sys.hits.map((h) => h.event_id);
    expect(sys.total).toBeGreaterThan(0);
    expect(new Set(sysIds).size).toBe(sysIds.length);
    console.log(`daemon kill -9: ${acked.length} bulk events acknowledged (${ackedAtKill} before the kill), all stored once; ${sys.total}/${N} syslog events stored, none twice`);

    // consumers caught up from their cursors after the restart
    const final = await until("the consumers to catch up", async () => {
      const s = await ingestStatus(endpoints.admin);
      return s.cursors.store === s.last_seq ? s : undefined;
    });
    expect(final.cursors.store).toBeGreaterThan(after.cursors.store!);

    const exited = new Promise<number | null>((r) => daemon!.once("exit", (code) => r(code)));
    daemon!.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 240_000);
});
