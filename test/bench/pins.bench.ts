/**
 * Pin benchmarks (issue #9). Lines start with "pins-bench:".
 *  - pin-sha256 of a PEM certificate: pinOf (DER walk over the exact SPKI
 *    bytes) vs the peers node:crypto X509Certificate + SPKI export + SHA-256,
 *    and the openssl pipeline every pinning guide gives (one process chain).
 *  - the issuance gate (checkProfileIssuance) per CSR, vs the CSR parse it
 *    follows in the PKI (engine/pki parseCsr), so its share of issuance is clear.
 *  - pin-check telemetry: events counted per second, and GET /v1/pins/ID with
 *    50,000 devices in the window.
 *
 *   npx vitest bench --run test/bench/pins.bench.ts
 */
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bench, describe } from "vitest";
import type { PinSetDoc } from "../../engine/config/index.js";
import { parseCsr } from "../../engine/pki/index.js";
import { checkProfileIssuance, pinOf, PinTelemetry } from "../../engine/pki/pins/index.js";

const report = (s: string) => console.log(`pins-bench: ${s}`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
function perOp(n: number, fn: () => void, rounds = 5): number {
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e3 / n);
  }
  return median(times); // µs per op
}

const dir = mkdtempSync(join(tmpdir(), "viw-pinbench-"));
const crt = join(dir, "c.crt");
const csrFile = join(dir, "c.csr");
execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "c.key"), "-out", crt, "-subj", "/CN=gw.viworks.example", "-days", "1"], { stdio: "pipe" });
execFileSync("openssl", ["req", "-new", "-key", join(dir, "c.key"), "-out", csrFile, "-subj", "/CN=gw.viworks.example"], { stdio: "pipe" });
const pem = readFileSync(crt);
const csrPem = readFileSync(csrFile, "utf8");

describe("pins", () => {
  bench(
    "pin-sha256, issuance gate, telemetry",
    async () => {
      const ours = perOp(2_000, () => pinOf(pem));
      const node = perOp(2_000, () => createHash("sha256").update(new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" })).digest("base64"));
      const openssl = perOp(
        3,
        () => {
          const pub = execFileSync("openssl", ["x509", "-in", crt, "-pubkey", "-noout"]);
          const der = execFileSync("openssl", ["pkey", "-pubin", "-outform", "der"], { input: pub });
          execFileSync("openssl", ["dgst", "-sha256", "-binary"], { input: der });
        },
        3,
      );
      report(`pin of a PEM certificate: pinOf ${ours.toFixed(1)} µs, node X509Certificate+export ${node.toFixed(1)} µs (x${(node / ours).toFixed(1)}), openssl pipeline ${(openssl / 1000).toFixed(1)} ms (x${(openssl / ours).toFixed(0)})`);

      const set: PinSetDoc = {
        id: "gateway",
        profile: "tls-gateway",
        hosts: ["gw.viworks.example"],
        pins: [{ sha256: pinOf(pem).pin, role: "backup" }, { sha256: "OwBrGMlpxCGg058WxNYnpfVDIR4IeBhwzS0tkXB/KMY=", role: "primary" }],
        roll: { phase: "cutover", since: "2026-11-20", to: pinOf(pem).pin, window: "30d" },
      };
      const sets = new Map([["gateway", set]]);
      const profile = { id: "tls-gateway", pin_set: "gateway" };
      const csr = await parseCsr(csrPem);
      const gate = perOp(20_000, () => checkProfileIssuance(sets, profile, csr.spkiDer));
      const parses: number[] = [];
      for (let r = 0; r < 5; r++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < 1_000; i++) await parseCsr(csrPem);
        parses.push(Number(process.hrtime.bigint() - t0) / 1e3 / 1_000);
      }
      const parse = median(parses);
      report(`issuance gate (SHA-256 of the SPKI + phase check): ${gate.toFixed(2)} µs per CSR; parseCsr of the same CSR ${parse.toFixed(1)} µs (gate = ${((gate / parse) * 100).toFixed(1)} % of it)`);

      const t = new PinTelemetry({ now: () => Date.parse("2026-11-23T12:00:00Z") });
      t.setPinSets(sets);
      const pins = set.pins.map((p) => p.sha256);
      const events = Array.from({ length: 300_000 }, (_, i) => ({ event_id: `e${i}`, timestamp: "2026-11-22T10:00:00Z", received_at: "2026-11-22T10:00:00Z", action: "pin_check", device_id: `dev-${i % 50_000}`, extra: { pin: pins[i % 2]!, pin_set: "gateway", client_version: `3.${i % 5}.0` } }));
      const t0 = performance.now();
      for (const e of events) t.observe(e);
      const countMs = performance.now() - t0;
      const status = perOp(1, () => t.pinStatus("gateway"), 5);
      report(`telemetry: 300,000 pin_check events counted in ${countMs.toFixed(0)} ms (${(3e5 / (countMs / 1000) / 1e6).toFixed(2)} M events/s); GET /v1/pins/gateway over 50,000 devices ${(status / 1000).toFixed(1)} ms`);
    },
    { iterations: 1, warmupIterations: 0 },
  );
});

process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
