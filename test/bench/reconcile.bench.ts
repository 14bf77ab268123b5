/**
 * Webhook → revision live in every hosted service, for the default repo and
 * for a large one (2,000 rules, 300 profiles), with the full daemon (dev CA,
 * --trust: every revision signature-checked) following a file:// remote.
 * Each iteration commits a signed change, then times POST /v1/webhook/git?wait=true,
 * which answers once the reconcile it caused is done; the daemon's status is
 * checked to have the new revision live (so the figure is webhook → live).
 * During the 100 loaded reconciles, load loops call the issuance API (mTLS)
 * and OCSP and CRL on the PKI port, and count failed requests.
 *
 *   npx vitest bench --run test/bench/reconcile.bench.ts
 *
 * Peers: Flux and Argo CD poll every 1–3 minutes by default and publish no
 * commit-to-applied figure; the in-run comparison printed is against this
 * daemon's own poll interval (30 s default), the latency without a webhook.
 */
import { createHmac } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, bench, describe } from "vitest";
import { createDaemon, type Daemon } from "../../engine/daemon.js";
import { makeWorld, type World } from "../gitops/fixture.js";

const SECRET = "bench";

interface Rig {
  world: World;
  data: string;
  daemon: Daemon;
  admin: string;
  samples: number[];
  failures: number;
  failureCodes: number[];
  timings: Record<string, number>[];
  requests: number;
  firstError?: string;
  loadStop?: () => Promise<void>;
}

async function rig(large: boolean): Promise<Rig> {
  const world = makeWorld();
  if (large) {
    mkdirSync(join(world.repo, "detections", "gen"), { recursive: true });
    const rules = ["otp-credential-stuffing", "spa-without-tls", "ja3-not-allowlisted", "dos-handshake-burst", "tls-downgrade"];
    const texts = rules.map((r) => world.read(`detections/${r}.yaml`));
    for (let i = 0; i < 2000; i++) {
      const k = i % rules.length;
      writeFileSync(join(world.repo, `detections/gen/${rules[k]}-${i}.yaml`), texts[k]!.replace(`id: ${rules[k]}`, `id: ${rules[k]}-${i}`));
    }
    const profile = world.read("profiles/tls-gateway.yaml");
    for (let i = 0; i < 300; i++) writeFileSync(join(world.repo, `profiles/gen-profile-${i}.yaml`), profile.replace("id: tls-gateway", `id: gen-profile-${i}`).replace(/^pin_set: .*$/m, ""));
  }
  world.commit("initial", {}, "alice");
  const data = mkdtempSync(join(tmpdir(), "viw-bench-rc-"));
  const listen = Object.fromEntries(["admin", "issuance", "pki", "syslog", "bulk"].map((n) => [n, { host: "127.0.0.1", port: 0 }]));
  const daemon = createDaemon({ gitUrl: `file://${world.repo}`, branch: "main", data, trust: world.allowedSigners, dev: true, listen, pollIntervalMs: 3_600_000, webhookSecret: SECRET, logger: pino({ level: "silent" }) });
  await daemon.start();
  await daemon.reconciler.whenReady();
  await daemon.whenListening();
  return { world, data, daemon, admin: daemon.adminUrl, samples: [], failures: 0, failureCodes: [], timings: [], requests: 0 };
}

async function startLoad(r: Rig): Promise<void> {
  const ep = JSON.parse(readFileSync(join(r.data, "run", "endpoints.json"), "utf8"));
  const dir = r.data;
  execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "b.key"), "-subj", "/CN=api.viworks.example", "-addext", "subjectAltName=DNS:api.viworks.example", "-out", join(dir, "b.csr")], { stdio: "ignore" });
  const payload = JSON.stringify({ profile: "backend-api", csr: readFileSync(join(dir, "b.csr"), "utf8") });
  const tls = { ca: readFileSync(join(dir, "dev", "ca-chain.pem")), cert: readFileSync(join(dir, "dev", "backend-client.crt")), key: readFileSync(join(dir, "dev", "backend-client.key")) };
  const url = new URL(ep.issuance);
  let lastBody = "";
  const issue = () =>
    new Promise<number>((resolve) => {
      const req = request({ host: url.hostname, port: url.port, path: "/v1/certs/issue/server", method: "POST", ...tls, headers: { "content-type": "application/json" } }, (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => {
          if (res.statusCode !== 201 && !r.firstError) r.firstError = `${res.statusCode} ${text.slice(0, 300)}`;
          lastBody = text;
          resolve(res.statusCode ?? 0);
        });
      });
      req.on("error", (e) => {
        r.firstError ??= `issuance: ${e.message}`;
        resolve(0);
      });
      req.end(payload);
    });
  // An OCSP request (RFC 6960, GET form of RFC 5019) for a certificate issued now, made by openssl.
  if ((await issue()) !== 201) throw new Error(`issuance failed: ${r.firstError}`);
  const issued = JSON.parse(lastBody) as { certificate: string; chain: string[] };
  writeFileSync(join(dir, "leaf.pem"), issued.certificate);
  writeFileSync(join(dir, "issuer.pem"), issued.chain[0]!);
  execFileSync("openssl", ["ocsp", "-issuer", join(dir, "issuer.pem"), "-cert", join(dir, "leaf.pem"), "-no_nonce", "-reqout", join(dir, "ocsp.der")], { stdio: "ignore" });
  const ocspUrl = `${ep.pki}/ocsp/${encodeURIComponent(readFileSync(join(dir, "ocsp.der")).toString("base64"))}`;
  let stop = false;
  const loop = async (call: () => Promise<number>, ok: number) => {
    while (!stop) {
      r.requests++;
      const code = await call();
      if (code !== ok) {
        r.failures++;
        r.failureCodes.push(code);
      }
    }
  };
  const get = (u: string, what: string) => async () => {
    const res = await fetch(u).catch((e: Error) => ((r.firstError ??= `${what}: ${e.message} ${String((e as { cause?: unknown }).cause)}`), undefined));
    if (!res) return 0;
    await res.arrayBuffer();
    return res.status;
  };
  const loops = [loop(issue, 201), loop(get(ocspUrl, "ocsp"), 200), loop(get(`${ep.pki}/crl/int-tls.crl`, "crl"), 200)];
  r.loadStop = async () => {
    stop = true;
    await Promise.all(loops);
  };
}

let n = 0;
async function once(r: Rig): Promise<void> {
  const rev = r.world.commit(`bench ${++n}`, { "profiles/backend-api.yaml": r.world.read("profiles/backend-api.yaml").replace(/^title: .*$/m, `title: Backend API ${n}`) }, "alice");
  const body = JSON.stringify({ ref: "refs/heads/main" });
  const t0 = performance.now();
  const res = await fetch(`${r.admin}/v1/webhook/git?wait=true`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": "sha256=" + createHmac("sha256", SECRET).update(body).digest("hex") },
    body,
  });
  const out = (await res.json()) as { status: { applied: { revision: string }; services: { pki: { revision: string } }; last_attempt: { timings_ms: Record<string, number> } } };
  r.timings.push(out.status.last_attempt.timings_ms);
  const dt = performance.now() - t0;
  if (out.status.applied.revision !== rev || out.status.services.pki.revision !== rev) throw new Error(`revision ${rev} not live after the webhook`);
  r.samples.push(dt);
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

function report(name: string, r: Rig): void {
  const p50 = pct(r.samples, 50);
  const p99 = pct(r.samples, 99);
  process.stdout.write(
    `\n[reconcile] ${name}: webhook → live in every service over ${r.samples.length} signed commits: p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, max ${Math.max(...r.samples).toFixed(0)} ms` +
      ` | vs the 30 s poll interval (mean wait 15 s without the webhook): ${(15_000 / p50).toFixed(0)}× sooner` +
      ` | load during the reconciles: ${r.requests} issuance + OCSP + CRL requests, ${r.failures} failed${r.failures ? ` (statuses ${[...new Set(r.failureCodes)].join(",")}; first: ${r.firstError})` : ""}\n` +
      `[reconcile]   slowest sample's steps: ${JSON.stringify(r.timings[r.samples.indexOf(Math.max(...r.samples))])}\n` +
      `[reconcile]   median ms per step: ${Object.keys(r.timings[0] ?? {}).map((k) => `${k} ${pct(r.timings.map((t) => t[k] ?? 0), 50)}`).join(", ")}\n`,
  );
}

const rigs: Rig[] = [];
afterAll(async () => {
  for (const r of rigs) {
    await r.loadStop?.();
    await r.daemon.stop();
    r.world.cleanup();
    rmSync(r.data, { recursive: true, force: true });
  }
});

describe("reconcile latency", async () => {
  const small = await rig(false);
  rigs.push(small);
  bench(
    "default repo: signed commit → webhook → live (idle)",
    async () => {
      await once(small);
      if (small.samples.length === 30) {
        report("default repo, idle", small);
        small.samples = [];
        small.timings = [];
      }
    },
    { iterations: 30, warmupIterations: 0, time: 0 },
  );
  bench(
    "default repo: 100 reconciles under issuance + OCSP + CRL load",
    async () => {
      if (!small.loadStop) await startLoad(small);
      await once(small);
      if (small.samples.length === 100) {
        await small.loadStop?.();
        report("default repo, 100 consecutive reconciles under load (load generator in the same process)", small);
      }
    },
    { iterations: 100, warmupIterations: 0, time: 0 },
  );

  // Made at its first iteration, after the default-repo runs: config parses are cached per process, and a
  // daemon follows one repo, so building both rigs up front would make the first large sample a cold parse.
  let large: Rig | undefined;
  bench(
    "2,000 rules + 300 profiles: signed commit → webhook → live",
    async () => {
      if (!large) rigs.push((large = await rig(true)));
      await once(large);
      if (large.samples.length === 10) report("large repo (2,000 rules, 300 profiles), idle", large);
    },
    { iterations: 10, warmupIterations: 0, time: 0 },
  );
});
