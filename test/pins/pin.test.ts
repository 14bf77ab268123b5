import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { main as pinMain } from "../../engine/cli/pin.js";
import { isPin, pinOf, PinError } from "../../engine/pki/pins/index.js";

const dir = mkdtempSync(join(tmpdir(), "viw-pin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ossl = (args: string[], input?: Buffer | string) => execFileSync("openssl", args, { input, stdio: ["pipe", "pipe", "pipe"] });

/** The pin as RFC 7469 §2.4 and every pinning guide compute it with openssl. */
function opensslPin(certPath: string): string {
  const pub = ossl(["x509", "-in", certPath, "-pubkey", "-noout"]);
  const der = ossl(["pkey", "-pubin", "-outform", "der"], pub);
  const digest = ossl(["dgst", "-sha256", "-binary"], der);
  return ossl(["base64"], digest).toString().trim();
}

function makeCert(name: string, keyArgs: string[]) {
  const key = join(dir, `${name}.key`);
  const crt = join(dir, `${name}.crt`);
  const csr = join(dir, `${name}.csr`);
  ossl(["req", "-x509", ...keyArgs, "-nodes", "-keyout", key, "-out", crt, "-subj", `/CN=${name}.example`, "-days", "1"]);
  ossl(["req", "-new", "-key", key, "-out", csr, "-subj", `/CN=${name}.example`]);
  const pub = join(dir, `${name}.pub`);
  ossl(["pkey", "-in", key, "-pubout", "-out", pub]);
  const pubDer = join(dir, `${name}.pub.der`);
  ossl(["pkey", "-in", key, "-pubout", "-outform", "der", "-out", pubDer]);
  const crtDer = join(dir, `${name}.crt.der`);
  ossl(["x509", "-in", crt, "-outform", "der", "-out", crtDer]);
  const csrDer = join(dir, `${name}.csr.der`);
  ossl(["req", "-in", csr, "-outform", "der", "-out", csrDer]);
  return { key, crt, csr, pub, pubDer, crtDer, csrDer };
}

const KEYS: [string, string[]][] = [
  ["ec-p256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]],
  ["ec-p384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]],
  ["rsa-2048", ["-newkey", "rsa:2048"]],
  ["ed25519", ["-newkey", "ed25519"]],
];

describe("pin-sha256 matches openssl", () => {
  for (const [name, args] of KEYS) {
    it(`${name}: certificate, CSR, public and private key, PEM and DER all give openssl's pin`, () => {
      const f = makeCert(name, args);
      const expected = opensslPin(f.crt);
      expect(isPin(expected)).toBe(true);
      expect(pinOf(readFileSync(f.crt))).toMatchObject({ pin: expected, source: "certificate" });
      expect(pinOf(readFileSync(f.crtDer))).toMatchObject({ pin: expected, source: "certificate" });
      expect(pinOf(readFileSync(f.csr))).toMatchObject({ pin: expected, source: "csr" });
      expect(pinOf(readFileSync(f.csrDer))).toMatchObject({ pin: expected, source: "csr" });
      expect(pinOf(readFileSync(f.pub))).toMatchObject({ pin: expected, source: "public-key" });
      expect(pinOf(readFileSync(f.pubDer))).toMatchObject({ pin: expected, source: "public-key" });
      expect(pinOf(readFileSync(f.key))).toMatchObject({ pin: expected, source: "private-key" });
    });
  }

  it("two keys give two pins", () => {
    expect(pinOf(readFileSync(join(dir, "ec-p256.crt"))).pin).not.toBe(pinOf(readFileSync(join(dir, "rsa-2048.crt"))).pin);
  });

  it("rejects what has no key, saying what it found", () => {
    expect(() => pinOf("hello")).toThrow(PinError);
    expect(() => pinOf("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")).toThrow(/found X509 CRL/);
    expect(() => pinOf("-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n")).toThrow(/not a DER certificate/);
    expect(() => pinOf(Buffer.from([0x30, 0x82, 0xff]))).toThrow(/not a certificate, CSR or key/);
  });
});

describe("viw pin FILE", () => {
  const out: string[] = [];
  const err: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    out.length = 0;
    err.length = 0;
  });
  const capture = () => {
    vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
    vi.spyOn(process.stderr, "write").mockImplementation((s) => (err.push(String(s)), true));
  };

  it("prints the pin of one file, exit 0", async () => {
    capture();
    const crt = join(dir, "ec-p256.crt");
    expect(await pinMain([crt])).toBe(0);
    expect(out.join("")).toBe(opensslPin(crt) + "\n");
  });

  it("several files: FILE: PIN per line; a bad file is named on stderr, exit 1", async () => {
    capture();
    const bad = join(dir, "bad.pem");
    writeFileSync(bad, "not a key");
    const code = await pinMain([join(dir, "rsa-2048.csr"), bad, join(dir, "missing.pem")]);
    expect(code).toBe(1);
    expect(out.join("")).toBe(`${join(dir, "rsa-2048.csr")}: ${opensslPin(join(dir, "rsa-2048.crt"))}\n`);
    expect(err.join("")).toContain(`${bad}: not a certificate, CSR or key`);
    expect(err.join("")).toContain("missing.pem: no such file");
  });

  it("no file is a usage error", async () => {
    await expect(pinMain([])).rejects.toThrow(/usage: viw pin FILE/);
  });
});
