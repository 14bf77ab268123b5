/**
 * Ingest receipts end to end through a dev daemon: curl posts a signed NDJSON
 * body over mTLS to the real bulk port, the 200 carries a signed receipt, the
 * 1 s sealer seals the batch it names, GET /v1/proof on the admin port finds
 * each event (through the event index, no `near`) in that batch, and
 * `viw verify-logs --receipt` confirms it from the WORM directory; a
 * tampered receipt fails.
 */
import { execFile } from "node:child_process";
import { createPrivateKey, sign } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Daemon } from "../../../engine/daemon.js";
import { main as verifyLogs } from "../../../engine/cli/verify-logs.js";
import { checkProof, type Receipt } from "../../../engine/siem/chain/index.js";
import { UsageError } from "../../../engine/cli/args.js";
import { captureOutput } from "../../capture.js";
import { MAIN } from "../../gitops/fixture.js";
import { startDevDaemon } from "../../daemon/dev.js";

const run = promisify(execFile);
const repo = mkdtempSync(join(tmpdir(), "viw-rcpt-repo-"));
const data = mkdtempSync(join(tmpdir(), "viw-rcpt-data-"));
let daemon: Daemon;
let endpoints: Record<string, string>;

beforeAll(async () => {
  for (const f of ["policies", "profiles", "detections", "dashboards", "pins"]) cpSync(join(MAIN, f), join(repo, f), { recursive: true });
  ({ daemon, endpoints } = await startDevDaemon({ repo, data, sealInterval: "1s" }));
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  rmSync(repo, { recursive: true, force: true });
  rmSync(data, { recursive: true, force: true });
});

let n = 0;
/** What a shipper runs: curl with the dev client certificate and the dev shipper's Ed25519 signature over the raw body. */
async function post(lines: object[]): Promise<{ status: number; body: any }> {
  const body = Buffer.from(lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  const file = join(data, `bulk-${++n}.ndjson`);
  writeFileSync(file, body);
  const signature = sign(null, body, createPrivateKey(readFileSync(join(data, "dev", "shipper-dev.key")))).toString("base64");
  const dev = join(data, "dev");
  const { stdout } = await run("curl", ["-sS", "--cacert", join(dev, "ca-chain.pem"), "--cert", join(dev, "backend-client.crt"), "--key", join(dev, "backend-client.key"), "-o", `${file}.out`, "-w", "%{http_code}",
    "-H", "Content-Type: application/x-ndjson", "-H", "Viw-Key-Id: dev", "-H", `Viw-Signature: ed25519=${signature}`, "--data-binary", `@${file}`, `${endpoints.bulk}/v1/ingest/bulk`]);
  return { status: Number(stdout), body: JSON.parse(readFileSync(`${file}.out`, "utf8")) };
}

async function proof(id: string): Promise<{ status: number; body: any }> {
  const r = await fetch(`${endpoints.admin ?? daemon.adminUrl}/v1/proof?event_id=${encodeURIComponent(id)}`);
  return { status: r.status, body: await r.json() };
}

async function verifyReceiptFile(receipt: unknown, extra: string[] = []): Promise<{ code: number; out: string }> {
  const file = join(data, `receipt-${++n}.json`);
  writeFileSync(file, JSON.stringify(receipt));
  const r = await captureOutput(() => verifyLogs(["--worm", join(data, "worm"), "--receipt", file, "--ca", join(data, "dev", "ca-chain.pem"), ...extra]));
  return { code: r.code, out: r.out };
}

describe("signed ingest receipts through the dev daemon", () => {
  it("the bulk answer's receipt names the batch each event is sealed in; proofs and verify-logs --receipt confirm it", async () => {
    const stamp = Date.now();
    const lines = Array.from({ length: 6 }, (_, i) => ({ event_id: `rcpt-${stamp}-${i}`, timestamp: new Date().toISOString(), action: "login", result: "success", user_id: `u-${i}`, src_ip: "198.51.100.7" }));
    const r = await post([...lines.slice(0, 3), { event_id: `rcpt-${stamp}-bad`, action: "login", src_port: "not-a-port" }, ...lines.slice(3)]);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ accepted: 6, rejected: 1 });
    const receipt = r.body.receipt as Receipt;
    expect(receipt).toMatchObject({ format: "viw-ingest-receipt/1", count: 6, event_ids: lines.map((l) => l.event_id), received_at: r.body.received_at });
    expect(Date.parse(receipt.batch.end) - Date.parse(receipt.batch.start)).toBe(1000);

    // Not sealed yet (or just sealed): wait for the 1 s sealer, then every event's proof is in the named batch.
    let p = await proof(lines[0]!.event_id);
    for (let i = 0; i < 100 && p.status === 404; i++) {
      await new Promise((res) => setTimeout(res, 100));
      p = await proof(lines[0]!.event_id);
    }
    expect(p.status).toBe(200);
    for (const l of lines) {
      const q = await proof(l.event_id);
      expect(q.status).toBe(200);
      expect(q.body.manifest.start).toBe(receipt.batch.start);
      expect(q.body.manifest.end).toBe(receipt.batch.end);
      expect((await checkProof(q.body, { ca: readFileSync(join(data, "dev", "ca-chain.pem"), "utf8") })).ok).toBe(true);
    }

    const ok = await verifyReceiptFile(receipt);
    expect(ok.out).toMatch(/^receipt confirmed: 6 events .* in sealed batch \d+ .*6 inclusion proofs verified/);
    expect(ok.code).toBe(0);
    // The whole bulk answer is accepted as the receipt file too.
    expect((await verifyReceiptFile(r.body)).code).toBe(0);
    const json = await verifyReceiptFile(receipt, ["--format", "json"]);
    expect(JSON.parse(json.out)).toMatchObject({ ok: true, events: 6, proven: 6, anchor: "checked" });

    const tampered = await verifyReceiptFile({ ...receipt, event_ids: [...receipt.event_ids.slice(0, 5), `rcpt-${stamp}-bad`] });
    expect(tampered.code).toBe(1);
    expect(tampered.out).toMatch(/RECEIPT NOT CONFIRMED/);
    expect(tampered.out).toMatch(/receipt's signature does not verify/);
    expect(tampered.out).toMatch(/event "rcpt-\d+-bad" is not in batch/);
  }, 60_000);

  it("usage errors (exit 2): --receipt with --event, a missing or non-JSON receipt file", async () => {
    const worm = join(data, "worm");
    await expect(verifyLogs(["--worm", worm, "--receipt", "x.json", "--event", "e"])).rejects.toThrow(/--receipt or --event, not both/);
    await expect(verifyLogs(["--worm", worm, "--receipt", join(data, "nope.json")])).rejects.toThrow(UsageError);
    await expect(verifyLogs(["--worm", worm, "--receipt", join(data, "nope.json")])).rejects.toThrow(/--receipt .*nope\.json: no such file/);
    writeFileSync(join(data, "garbage.json"), "{not json");
    await expect(verifyLogs(["--worm", worm, "--receipt", join(data, "garbage.json")])).rejects.toThrow(/garbage\.json: not JSON/);
  });
});
