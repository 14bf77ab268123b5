/**
 * `viw rotate` against a real dev daemon (its own CA, issuance API over mTLS,
 * CRL and OCSP on the PKI port): two gateway certificates issued over the
 * API, a dry run that changes nothing, the rotation that revokes both and
 * reissues them for the same keys — checked with openssl's OCSP client and
 * CRL parser — and a keyCompromise rotation that reissues nothing.
 */
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UsageError } from "../../engine/cli/args.js";
import { runCli } from "../../engine/cli/main.js";
import { main as rotate } from "../../engine/cli/rotate.js";
import type { Daemon } from "../../engine/daemon.js";
import { pinOf } from "../../engine/pki/pins/index.js";
import { captureOutput } from "../capture.js";
import { postAsBackend, startDevDaemon } from "../daemon/dev.js";

const exec = promisify(execFile);
const ROOT = join(import.meta.dirname, "../..");
const work = mkdtempSync(join(tmpdir(), "viw-rotate-cli-"));
const data = join(work, "data");
const repo = join(work, "repo");
let daemon: Daemon;
let endpoints: Record<string, string>;

async function gatewayKey(name: string, cn: string) {
  const key = join(work, `${name}.key`);
  const csr = join(work, `${name}.csr`);
  await exec("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${cn}`, "-addext", `subjectAltName=DNS:${cn}`]);
  const text = readFileSync(csr, "utf8");
  return { csr: text, pin: pinOf(text).pin, cn };
}
let A: Awaited<ReturnType<typeof gatewayKey>>;
let B: Awaited<ReturnType<typeof gatewayKey>>;

/** POST /v1/certs/issue/server on the issuance port, mTLS with the dev Backend client certificate. */
const issue = (profile: string, csr: string) => postAsBackend(data, "/v1/certs/issue/server", { profile, csr });

/** What the daemon's OCSP responder says about a serial, through openssl's OCSP client. */
async function ocsp(serial: string): Promise<string> {
  const r = await exec("openssl", ["ocsp", "-issuer", join(data, "pki/certs/int-tls.crt"), "-serial", `0x${serial}`, "-url", `${endpoints.pki}/ocsp`, "-CAfile", join(data, "dev", "ca-chain.pem")]);
  const line = r.stdout.split("\n").find((l) => l.startsWith(`0x${serial}:`));
  expect(r.stderr).toContain("Response verify OK");
  return line?.split(":")[1]?.trim() ?? `no answer in ${r.stdout}`;
}

/** The daemon's CRL of int-tls as openssl reads it. */
async function crl(): Promise<string> {
  const file = join(work, "int-tls.crl");
  writeFileSync(file, Buffer.from(await (await fetch(`${endpoints.pki}/crl/int-tls.crl`)).arrayBuffer()));
  return (await exec("openssl", ["crl", "-inform", "DER", "-in", file, "-noout", "-text"])).stdout;
}

const run = (...args: string[]) => captureOutput(() => rotate(args));

beforeAll(async () => {
  [A, B] = await Promise.all([gatewayKey("gw-a", "gw.viworks.example"), gatewayKey("gw-b", "edge1.gw.viworks.example")]);
  // The default config, with both gateway keys pinned as primaries of the gateway pin set.
  for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(ROOT, f), join(repo, f), { recursive: true });
  const file = join(repo, "pins/gateway.yaml");
  const yaml = readFileSync(file, "utf8").replace(
    "  - sha256: OwBrGMlpxCGg058WxNYnpfVDIR4IeBhwzS0tkXB/KMY=\n    role: primary\n",
    `  - sha256: ${A.pin}\n    role: primary\n  - sha256: ${B.pin}\n    role: primary\n`,
  );
  expect(yaml).toContain(B.pin);
  writeFileSync(file, yaml);
  ({ daemon, endpoints } = await startDevDaemon({ repo, data, pollIntervalMs: 3_600_000 }));
}, 90_000);

afterAll(async () => {
  await daemon?.stop();
  rmSync(work, { recursive: true, force: true });
});

const hex = (s: string) => s.toUpperCase();

describe("viw rotate", () => {
  let first: string[] = [];
  let successors: string[] = [];

  it("dry run by default: lists what it would do and changes nothing", async () => {
    const a = await issue("tls-gateway", A.csr);
    const b = await issue("tls-gateway", B.csr);
    expect([a.status, b.status], JSON.stringify([a.body, b.body])).toEqual([201, 201]);
    first = [a.body.serial, b.body.serial];
    const r = await run("--pin-set", "gateway", "--reason", "superseded", "--data", data);
    expect(r.code).toBe(0);
    expect(r.out).toContain("dry run: emergency rotation of pin set gateway (profile tls-gateway), reason superseded\n");
    expect(r.out).toContain(`  would revoke ${first[0]} (superseded) and reissue it for the same key ${A.pin}\n`);
    expect(r.out).toContain(`  would revoke ${first[1]} (superseded) and reissue it for the same key ${B.pin}\n`);
    expect(r.out).toContain("dry run: nothing was revoked; run again with --yes to revoke 2 certificates\n");
    // By profile, the same certificates; the JSON report says it was a dry run.
    const byProfile = await run("--profile", "tls-gateway", "--admin", endpoints.admin!, "--format", "json");
    expect(byProfile.code).toBe(0);
    expect(JSON.parse(byProfile.out)).toMatchObject({ profile: "tls-gateway", dry_run: true, revoked: [{ serial: first[0], successor: "(dry run)" }, { serial: first[1], successor: "(dry run)" }], not_reissued: [], failed: [] });
    expect(await ocsp(first[0]!)).toBe("good");
    expect(await ocsp(first[1]!)).toBe("good");
    expect(await crl()).not.toContain(hex(first[0]!));
  });

  it("--yes: both revoked, successors for the same keys, CRL and OCSP updated before it returns", async () => {
    const r = await run("--pin-set", "gateway", "--reason", "superseded", "--data", data, "--yes", "--format", "json");
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(r.out);
    expect(report).toMatchObject({ profile: "tls-gateway", pin_set: "gateway", reason: "superseded", dry_run: false, not_reissued: [], failed: [] });
    expect(report.revoked.map((c: { serial: string }) => c.serial)).toEqual(first);
    expect(report.revoked.map((c: { spki_sha256: string }) => c.spki_sha256)).toEqual([A.pin, B.pin]);
    expect(report.revoked.every((c: { ocsp: string }) => c.ocsp === "revoked")).toBe(true);
    successors = report.revoked.map((c: { successor: string }) => c.successor);
    expect(successors.every((s) => /^[0-9A-F]+$/i.test(s) && !first.includes(s))).toBe(true);

    for (const s of first) expect(await ocsp(s)).toBe("revoked");
    for (const s of successors) expect(await ocsp(s)).toBe("good");
    const list = await crl();
    for (const s of first) expect(list).toContain(`Serial Number: ${hex(s)}`);
    expect(list).toContain("Superseded");
    expect(list).toContain(`X509v3 CRL Number: \n                ${report.crl_numbers["int-tls"]}`);
  });

  it("text output names each certificate, its successor, the OCSP answer and the CRL number", async () => {
    // Rotate the successors again, this time printed for a person.
    const r = await run("--pin-set", "gateway", "--reason", "cessationOfOperation", "--data", data, "--yes");
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trimEnd().split("\n");
    expect(lines[0]).toBe("emergency rotation of pin set gateway (profile tls-gateway), reason cessationOfOperation");
    expect(lines[1]).toMatch(new RegExp(`^  revoked ${successors[0]} \\(cessationOfOperation\\) → successor [0-9A-F]+ for the same key; OCSP: revoked$`, "i"));
    expect(lines[2]).toMatch(new RegExp(`^  revoked ${successors[1]} \\(cessationOfOperation\\) → successor [0-9A-F]+ for the same key; OCSP: revoked$`, "i"));
    expect(lines[3]).toMatch(/^CRL of int-tls: number \d+, published$/);
    expect(lines[4]).toBe("2 revoked, 2 reissued, 0 not reissued, 0 failed");
    successors = lines.slice(1, 3).map((l) => / successor ([0-9A-F]+) /i.exec(l)![1]!);
  });

  it("keyCompromise of one key: its certificate revoked, nothing reissued; the other key's untouched", async () => {
    const r = await run("--pin-set", "gateway", "--reason", "keyCompromise", "--keys", A.pin, "--admin", endpoints.admin!, "--yes");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`  revoked ${successors[0]} (keyCompromise); not reissued: key compromised: its holder must present a new key; OCSP: revoked\n`);
    expect(r.out).toContain("1 revoked, 0 reissued, 1 not reissued, 0 failed\n");
    expect(await ocsp(successors[0]!)).toBe("revoked");
    expect(await ocsp(successors[1]!)).toBe("good");
    expect(await crl()).toContain("Key Compromise");
    // Nothing live is left for that key: a second run has nothing to do.
    const again = await run("--pin-set", "gateway", "--reason", "keyCompromise", "--keys", A.pin, "--data", data, "--yes");
    expect(again.code).toBe(0);
    expect(again.out).toContain(`no live certificate of profile tls-gateway for key ${A.pin}: nothing to revoke\n`);
  });

  it("an unknown pin set or profile: exit 1 with the daemon's reason", async () => {
    const r = await run("--pin-set", "nope", "--data", data, "--yes");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^viw rotate: no pin set "nope" in revision /);
    const p = await run("--profile", "nope", "--data", data);
    expect(p.code).toBe(1);
    expect(p.err).toMatch(/^viw rotate: no profile "nope" in revision /);
  });

  it("no daemon to ask: exit 1 naming the endpoints file or the unreachable port", async () => {
    const empty = mkdtempSync(join(work, "nodaemon-"));
    const r = await run("--pin-set", "gateway", "--data", empty);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`viw rotate: no running daemon found: cannot read ${join(empty, "run", "endpoints.json")} (ENOENT)`);
    // A port that was just free: nothing listens there.
    const srv = createServer().listen(0, "127.0.0.1");
    await once(srv, "listening");
    const port = (srv.address() as AddressInfo).port;
    srv.close();
    await once(srv, "close");
    const down = await run("--pin-set", "gateway", "--admin", `http://127.0.0.1:${port}`);
    expect(down.code).toBe(1);
    expect(down.err).toMatch(new RegExp(`^viw rotate: cannot reach the daemon's admin port at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  });

  it("usage errors (exit 2 through viw's UsageError)", async () => {
    const usage = async (args: string[], message: RegExp) => {
      const r = run(...args);
      await expect(r).rejects.toBeInstanceOf(UsageError);
      await expect(r).rejects.toThrow(message);
    };
    await usage(["--data", data], /give exactly one of --pin-set ID or --profile ID/);
    await usage(["--pin-set", "gateway", "--profile", "tls-gateway"], /give exactly one of/);
    await usage(["--pin-set", "gateway", "--reason", "oops"], /--reason must be unspecified, keyCompromise, .* or privilegeWithdrawn, not oops/);
    await usage(["--pin-set", "gateway", "--keys", "notapin"], /--keys must be pin-sha256 values .* not "notapin"/);
    await usage(["--pin-set", "gateway", "--admin", "http://x", "--data", data], /give --admin URL or --data DIR, not both/);
    await usage(["--pin-set", "gateway", "--bogus"], /Unknown option '--bogus'/);
    await usage(["--pin-set", "gateway", "--format", "yaml"], /--format must be text or json, not yaml/);
    // `viw rotate` is in the command table: viw dispatches to it and lists it.
    await expect(runCli(["rotate", "--pin-set", "gateway", "--reason", "oops"])).rejects.toThrow(/--reason must be/);
    expect((await captureOutput(() => runCli(["help"]))).out).toMatch(/^  rotate +emergency rotation: revoke and reissue/m);
  });
});
