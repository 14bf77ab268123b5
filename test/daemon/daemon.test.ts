/**
 * The real daemon, end to end, following a real git remote (file://) signed
 * with real SSH keys: what goes live, what is refused and why, approvals of a
 * relaxation, the evidence timeline.
 */
import { createHmac, generateKeyPairSync, X509Certificate } from "node:crypto";
import { execFileSync } from "node:child_process";
import { connect } from "node:tls";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createDaemon, type Daemon } from "../../engine/daemon.js";
import { main as evidenceMain } from "../../engine/cli/evidence.js";
import { approve } from "../../engine/gitops/index.js";
import { makeWorld, type World } from "../gitops/fixture.js";
import { ANY_PORT, postAsBackend } from "./dev.js";

const SECRET = "s3cret-webhook";
let world: World;
let data: string;
let daemon: Daemon;
let admin: string;

async function get(path: string): Promise<{ status: number; body: any }> {
  const r = await fetch(admin + path);
  const text = await r.text();
  return { status: r.status, body: text.startsWith("{") ? JSON.parse(text) : text };
}

/** A GitHub-style push webhook; `wait` returns once the reconcile it caused is done. */
async function push(ref = "refs/heads/main"): Promise<{ status: number; body: any }> {
  const body = JSON.stringify({ ref });
  const sig = "sha256=" + createHmac("sha256", SECRET).update(body).digest("hex");
  const r = await fetch(`${admin}/v1/webhook/git?wait=true`, { method: "POST", headers: { "content-type": "application/json", "x-hub-signature-256": sig, "x-github-event": "push" }, body });
  return { status: r.status, body: await r.json() };
}

async function status(): Promise<any> {
  return (await get("/v1/status")).body;
}

async function evidence(format: "json" | "markdown"): Promise<{ code: number; out: string }> {
  let out = "";
  const w = vi.spyOn(process.stdout, "write").mockImplementation((c: any) => ((out += String(c)), true));
  const e = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const code = await evidenceMain(["--data", data, "--format", format]);
    return { code, out };
  } finally {
    w.mockRestore();
    e.mockRestore();
  }
}

const PROFILE = "profiles/backend-api.yaml";

beforeAll(async () => {
  world = makeWorld();
  world.commit("initial config", {}, "alice");
  data = mkdtempSync(join(tmpdir(), "viw-daemon-"));
  daemon = createDaemon({
    gitUrl: `file://${world.repo}`,
    branch: "main",
    data,
    trust: world.allowedSigners,
    // dev: the CA is bootstrapped and the listeners get certificates; --trust still gates every revision.
    dev: true,
    listen: ANY_PORT,
    pollIntervalMs: 3_600_000,
    webhookSecret: SECRET,
    logger: pino({ level: "silent" }),
  });
  await daemon.start();
  admin = daemon.adminUrl;
  await daemon.reconciler.whenReady();
  await daemon.whenListening();
  csr = makeCsr();
}, 60_000);

let csr: string;
function makeCsr(): string {
  const key = join(data, "api.key");
  execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/CN=api.viworks.example", "-addext", "subjectAltName=DNS:api.viworks.example", "-out", join(data, "api.csr")], { stdio: "ignore" });
  return readFileSync(join(data, "api.csr"), "utf8");
}

/** POST /v1/certs/issue/server over mTLS with the dev Backend client certificate. */
const issue = (profile = "backend-api") => postAsBackend(data, "/v1/certs/issue/server", { profile, csr });

function validityDays(pem: string): number {
  const c = new X509Certificate(pem);
  return Math.round((Date.parse(c.validTo) - Date.parse(c.validFrom)) / 86_400_000);
}

afterAll(async () => {
  await daemon?.stop();
  world?.cleanup();
  rmSync(data, { recursive: true, force: true });
});

describe("viw run following a signed git remote", () => {
  it("applies the first signed commit as a bootstrap and reports it", async () => {
    expect((await get("/readyz")).status).toBe(200);
    const s = await status();
    expect(s.applied.revision).toBe(world.head());
    expect(s.applied.signer.principal).toBe("alice@viworks.example");
    expect(s.applied.bootstrap).toBe(true);
    expect(s.trust.mode).toBe("signed");
    const endpoints = JSON.parse(readFileSync(join(data, "run", "endpoints.json"), "utf8"));
    expect(endpoints.admin).toBe(admin);
    expect(Object.keys(endpoints).sort()).toEqual(["admin", "bulk", "issuance", "pki", "syslog"]);
    expect(s.services.pki.revision).toBe(world.head());
    expect(Object.keys(s.services)).toEqual(expect.arrayContaining(["pki", "ingest", "detector", "sealer", "pins"]));
    // Other capabilities' handlers are mounted on the admin port.
    const pins = (await get("/v1/pins")).body;
    expect(pins.pin_sets.map((p: any) => p.id).sort()).toEqual(["backend-api", "gateway"]);
    expect((await get("/v1/query?index=viw-policy&limit=0")).status).toBe(200);
    expect((await get("/v1/proof")).status).toBe(400);
    const metrics = (await get("/metrics")).body as string;
    expect(metrics).toContain(`viw_config_revision_info{revision="${world.head()}"`);
  });

  it("applies a signed tightening at once on the webhook; the next issuance follows it", async () => {
    const before = await issue();
    expect(before.status).toBe(201);
    expect(validityDays(before.body.certificate)).toBe(90);
    const rev = world.commit("shorter default validity", { [PROFILE]: world.read(PROFILE).replace("default: 90d", "default: 60d") }, "bob");
    const r = await push();
    expect(r.status).toBe(200);
    const s = await status();
    expect(s.applied.revision).toBe(rev);
    expect(s.applied.signer.principal).toBe("bob@viworks.example");
    expect(s.applied.bootstrap).toBe(false);
    const after = await issue();
    expect(after.status).toBe(201);
    expect(after.body.revision).toBe(rev);
    expect(validityDays(after.body.certificate)).toBe(60);
  });

  it("refuses an invalid commit with file:line while the previous revision keeps serving", async () => {
    const live = (await status()).applied.revision;
    const bad = world.commit("typo", { [PROFILE]: world.read(PROFILE).replace("default: 60d", "default: sixty") }, "alice");
    // Issuance keeps answering from the live revision during the attempt: no failed request.
    let stop = false;
    const results: number[] = [];
    const load = (async () => {
      while (!stop) results.push((await issue()).status);
    })();
    await push();
    stop = true;
    await load;
    expect(results.length).toBeGreaterThan(0);
    expect(results.every((c) => c === 201)).toBe(true);
    const s = await status();
    expect(s.applied.revision).toBe(live);
    expect(s.last_attempt.revision).toBe(bad);
    expect(s.last_attempt.ok).toBe(false);
    expect(s.last_attempt.stage).toBe("load");
    const err = s.last_attempt.errors[0];
    expect(err.file).toBe(PROFILE);
    expect(err.line).toBeGreaterThan(1);
    expect(err.col).toBeGreaterThan(0);
    expect(err.message).toMatch(/sixty|duration|pattern/i);
    expect((await get("/readyz")).status).toBe(200);
    const failures = (await get("/metrics")).body as string;
    expect(failures).toMatch(/viw_reconcile_failures_total\{stage="load"\} 1/);
    // Fixed by the next commit.
    const fixed = world.commit("fix", { [PROFILE]: world.read(PROFILE).replace("default: sixty", "default: 45d") }, "alice");
    await push();
    expect((await status()).applied.revision).toBe(fixed);
  });

  it("refuses an unsigned commit and a commit signed by an unknown key", async () => {
    const live = (await status()).applied.revision;
    const unsigned = world.commit("unsigned", { [PROFILE]: world.read(PROFILE).replace("default: 45d", "default: 44d") }, null);
    await push();
    let s = await status();
    expect(s.applied.revision).toBe(live);
    expect(s.last_attempt).toMatchObject({ revision: unsigned, ok: false, stage: "trust" });
    expect(s.last_attempt.reason).toMatch(/not signed/);

    const mallory = world.commit("signed by an outsider", { [PROFILE]: world.read(PROFILE).replace("default: 44d", "default: 43d") }, "mallory");
    await push();
    s = await status();
    expect(s.applied.revision).toBe(live);
    expect(s.last_attempt).toMatchObject({ revision: mallory, ok: false, stage: "trust" });
    expect(s.last_attempt.reason).toMatch(/not in the allowed-signers file/);
    // Back to a state signed by a trusted key (a descendant): applied.
    const good = world.commit("re-signed by alice", {}, "alice");
    await push();
    expect((await status()).applied.revision).toBe(good);
    // Every decision is in the audit log too.
    const audit = readFileSync(join(data, "audit", "audit.log"), "utf8");
    expect(audit).toMatch(new RegExp(`\\[AuditEvent=CONFIG_REVISION\\].*\\[Outcome=Failure\\]\\[Revision=${unsigned}\\]`));
    expect(audit).toMatch(new RegExp(`\\[AuditEvent=CONFIG_REVISION\\]\\[SubjectID=alice@viworks.example\\]\\[Outcome=Success\\]\\[Revision=${good}\\]`));
  });

  it("refuses a force-pushed older commit (anti-rollback)", async () => {
    const live = (await status()).applied.revision;
    const older = world.git("rev-parse", "HEAD~5");
    world.git("reset", "-q", "--hard", older);
    await push();
    const s = await status();
    expect(s.applied.revision).toBe(live);
    expect(s.last_attempt).toMatchObject({ revision: older, ok: false, stage: "rollback" });
    expect(s.last_attempt.reason).toMatch(/not a descendant/);
    world.git("reset", "-q", "--hard", live);
    await push();
    expect((await status()).applied.revision).toBe(live);
  });

  it("holds a relaxation until two approvers other than the signer approve it", async () => {
    const live = (await status()).applied.revision;
    const relax = world.commit("longer default validity", { [PROFILE]: world.read(PROFILE).replace(/default: \w+/, "default: 120d") }, "alice");
    await push();
    let s = await status();
    expect(s.applied.revision).toBe(live);
    expect(s.last_attempt).toMatchObject({ revision: relax, ok: false, stage: "approvals" });
    expect(s.last_attempt.missing_approvals).toMatchObject({ required: 2, have: [], missing: 2 });
    expect(s.last_attempt.missing_approvals.eligible).toEqual(expect.arrayContaining(["bob@viworks.example", "carol@viworks.example"]));
    expect(s.last_attempt.missing_approvals.eligible).not.toContain("alice@viworks.example");
    expect((await get("/metrics")).body).toMatch(/^viw_config_approvals_missing 2$/m);
    expect(s.recent_events.some((e: any) => e.action === "policy_relaxation" && e.severity === "critical" && e.trace_id === relax)).toBe(true);
    // ...and in the event flow: journaled, routed to viw-policy, queryable.
    const where = encodeURIComponent(JSON.stringify({ and: [{ "==": [{ var: "action" }, "policy_relaxation"] }, { "==": [{ var: "trace_id" }, relax] }] }));
    let hits: any[] = [];
    for (let i = 0; i < 60 && hits.length === 0; i++) {
      hits = (await get(`/v1/query?index=viw-policy&since=1h&where=${where}`)).body.hits ?? [];
      if (!hits.length) await new Promise((r) => setTimeout(r, 100));
    }
    expect(hits[0]).toMatchObject({ action: "policy_relaxation", severity: "critical", result: "failure", policy_id: "profile/backend-api", error_code: "approvals_missing" });

    // The author's own approval and an outsider's do not count.
    await approve(world.repo, relax, { key: world.key("alice") });
    await approve(world.repo, relax, { key: world.key("mallory") });
    await approve(world.repo, relax, { key: world.key("bob") });
    await push();
    s = await status();
    expect(s.applied.revision).toBe(live);
    expect(s.last_attempt.missing_approvals).toMatchObject({ have: ["bob@viworks.example"], missing: 1 });

    await approve(world.repo, relax, { key: world.key("carol") });
    await push();
    s = await status();
    expect(s.applied.revision).toBe(relax);
    expect(s.applied.approvers.map((a: any) => a.principal).sort()).toEqual(["bob@viworks.example", "carol@viworks.example"]);
    expect(s.applied.relaxations).toBe(1);
  });

  it("renews the issuance, syslog and bulk listeners' certificate in place, no restart", async () => {
    const endpoints = JSON.parse(readFileSync(join(data, "run", "endpoints.json"), "utf8"));
    const serial = (name: "issuance" | "syslog" | "bulk") =>
      new Promise<string>((resolve, reject) => {
        const url = new URL(name === "syslog" ? `tls://${endpoints.syslog}` : endpoints[name]);
        const s = connect({ host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port), servername: "localhost", ca: readFileSync(join(data, "dev", "ca-chain.pem")), cert: readFileSync(join(data, "dev", "backend-client.crt")), key: readFileSync(join(data, "dev", "backend-client.key")) }, () => {
          resolve(s.getPeerCertificate().serialNumber);
          s.end();
        });
        s.on("error", reject);
      });
    const names = ["issuance", "syslog", "bulk"] as const;
    const before = await Promise.all(names.map(serial));
    expect(new Set(before).size).toBe(1);
    // A connection opened before the swap keeps working across it.
    const url = new URL(endpoints.bulk);
    const open = connect({ host: url.hostname, port: Number(url.port), servername: "localhost", ca: readFileSync(join(data, "dev", "ca-chain.pem")), cert: readFileSync(join(data, "dev", "backend-client.crt")), key: readFileSync(join(data, "dev", "backend-client.key")) });
    await new Promise((r, j) => open.once("secureConnect", r).once("error", j));
    await daemon.renewListenerCertificate();
    const after = await Promise.all(names.map(serial));
    for (let i = 0; i < names.length; i++) expect(after[i], names[i]).not.toBe(before[i]);
    expect(new Set(after).size).toBe(1);
    expect(open.destroyed).toBe(false);
    open.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    const reply = await new Promise<string>((r) => {
      let text = "";
      open.on("data", (d) => (text += d));
      open.on("end", () => r(text));
    });
    expect(reply).toMatch(/^HTTP\/1\.1 404/);
    expect((await issue()).status).toBe(201);
  });

  it("rejects a webhook with a bad signature and ignores pushes to other branches", async () => {
    const r = await fetch(`${admin}/v1/webhook/git`, { method: "POST", headers: { "content-type": "application/json", "x-hub-signature-256": "sha256=00" }, body: "{}" });
    expect(r.status).toBe(401);
    const g = await fetch(`${admin}/v1/webhook/git`, { method: "POST", headers: { "content-type": "application/json", "x-gitlab-token": SECRET }, body: JSON.stringify({ ref: "refs/heads/feature" }) });
    expect(g.status).toBe(202);
    expect((await g.json()).ignored).toMatch(/feature/);
  });

  it("viw evidence shows who signed and approved what was live when, and detects tampering", async () => {
    const { code, out } = await evidence("json");
    expect(code).toBe(0);
    const ev = JSON.parse(out);
    expect(ev.verified).toBe(true);
    const last = ev.live[ev.live.length - 1];
    expect(last.to).toBeNull();
    expect(last.approvers.map((a: any) => a.principal).sort()).toEqual(["bob@viworks.example", "carol@viworks.example"]);
    expect(last.relaxations[0]).toMatchObject({ kind: "profile", id: "backend-api", field: "validity.default" });
    expect(ev.live[0].bootstrap).toBe(true);
    expect(ev.live[0].signer.principal).toBe("alice@viworks.example");
    // Each interval ends where the next begins.
    for (let i = 1; i < ev.live.length; i++) expect(ev.live[i - 1].to).toBe(ev.live[i].from);
    const reasons = ev.refused.map((r: any) => r.reason).join("\n");
    expect(reasons).toMatch(/not signed/);
    expect(reasons).toMatch(/allowed-signers/);
    expect(reasons).toMatch(/not a descendant/);
    expect(reasons).toMatch(/approval/);

    // The bootstrap entry is signed with the engine's own key, the rest with the Log Signing Key from the CA.
    expect(ev.keys).toHaveLength(2);
    const logKey = ev.keys.find((k: any) => k.certificate);
    expect(logKey.certificate.subject).toMatch(/Log Signing/);
    expect(logKey.certificate.chain_verified).toBe(true);
    // The root it chains to is the CA's root (the last certificate of DATA/dev/ca-chain.pem is not necessarily the root: compare by fingerprint).
    const { X509Certificate: X } = await import("node:crypto");
    const roots = (readFileSync(join(data, "dev", "ca-chain.pem"), "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((p) => new X(p)).filter((c) => c.verify(c.publicKey));
    expect(roots.map((r) => r.fingerprint256)).toContain(logKey.certificate.root_sha256);
    const md = await evidence("markdown");
    expect(md.out).toContain("timeline verified");
    expect(md.out).toContain("bob@viworks.example");
    expect(md.out).toContain("profile/backend-api.validity.default");

    // Someone rewrites history: the refused unsigned commit becomes "applied".
    const file = join(data, "timeline", "timeline.jsonl");
    const text = readFileSync(file, "utf8");
    writeFileSync(file, text.replace('"type":"refused"', '"type":"applied"'));
    const t = await evidence("json");
    expect(t.code).toBe(1);
    expect(JSON.parse(t.out).verified).toBe(false);
    expect(JSON.parse(t.out).verification).toMatch(/timeline\.jsonl:\d+: content does not match/);
    writeFileSync(file, text);
  });

  it("after a restart resumes the applied commit without new approvals and still refuses a rollback", async () => {
    const live = (await status()).applied.revision;
    const older = world.git("rev-parse", `${live}~1`); // signed by alice: refused for the rollback, not the signature
    await daemon.stop();
    daemon = createDaemon({ ...daemon.opts, logger: pino({ level: "silent" }) });
    await daemon.start();
    admin = daemon.adminUrl;
    await daemon.reconciler.whenReady();
    let s = await status();
    expect(s.applied.revision).toBe(live);
    expect(s.applied.bootstrap).toBe(false);
    world.git("reset", "-q", "--hard", older);
    await push();
    s = await status();
    expect(s.applied.revision).toBe(live);
    expect(s.last_attempt).toMatchObject({ revision: older, stage: "rollback" });
    const ev = JSON.parse((await evidence("json")).out);
    expect(ev.verified).toBe(true);
    // The stop closed one interval; the resumed one is open.
    expect(ev.live.at(-2).to).not.toBeNull();
    expect(ev.live.at(-1)).toMatchObject({ commit: live, to: null });
  }, 60_000);
});
