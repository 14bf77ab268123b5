/**
 * Real parts for the chain tests: a CA (root → int-backend) made with the
 * openssl CLI that issues Log Signing Key certificates as profile log-signing
 * does (digitalSignature, contentCommitment), software keys through the PKI
 * key provider's Signer, and the SQLite journal.
 */
import { execFileSync } from "node:child_process";
import type { KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generatePrivateKey, softwareSigner } from "../../../engine/pki/keys/index.js";
import type { Signer } from "../../../engine/pki/signer.js";
import type { KeyAlgorithm } from "../../../engine/config/index.js";
import { openJournal } from "../../../engine/siem/journal/index.js";
import type { NormalizedEvent } from "../../../engine/siem/journal/contract.js";

export function tempDir(prefix = "viw-chain-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

const openssl = (dir: string, args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });

export interface TestCa {
  dir: string;
  /** root + intermediate PEM: what `--ca` takes. */
  caPem: string;
  rootPem: string;
  intPem: string;
  issue(key: KeyObject, cn: string, days?: number): string;
}

export function makeCa(dir = tempDir("viw-ca-"), name = "ViWorkS Test"): TestCa {
  openssl(dir, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "root.key", "-out", "root.pem", "-days", "3650", "-subj", `/O=ViWorkS/CN=${name} Root`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  openssl(dir, ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "int.key", "-out", "int.csr", "-subj", `/O=ViWorkS/CN=${name} int-backend`]);
  writeFileSync(join(dir, "int.ext"), "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n");
  openssl(dir, ["x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial", "-out", "int.pem", "-days", "1825", "-extfile", "int.ext"]);
  writeFileSync(join(dir, "leaf.ext"), "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n");
  const rootPem = readFileSync(join(dir, "root.pem"), "utf8");
  const intPem = readFileSync(join(dir, "int.pem"), "utf8");
  let n = 0;
  return {
    dir,
    rootPem,
    intPem,
    caPem: intPem + rootPem,
    issue(key, cn, days = 365) {
      const base = `leaf${n++}`;
      writeFileSync(join(dir, `${base}.key`), key.export({ type: "pkcs8", format: "pem" }) as string, { mode: 0o600 });
      openssl(dir, ["req", "-new", "-key", `${base}.key`, "-out", `${base}.csr`, "-subj", `/O=ViWorkS/CN=${cn}`]);
      openssl(dir, ["x509", "-req", "-in", `${base}.csr`, "-CA", "int.pem", "-CAkey", "int.key", "-CAcreateserial", "-out", `${base}.pem`, "-days", String(days), "-extfile", "leaf.ext"]);
      rmSync(join(dir, `${base}.key`));
      return readFileSync(join(dir, `${base}.pem`), "utf8");
    },
  };
}

export interface LogKey {
  signer: Signer;
  certificatePem: string;
  chainPem: string;
}

export function logKey(ca: TestCa, algorithm: KeyAlgorithm = "ecdsa-p256", cn = "Log Signing Key"): LogKey {
  const key = generatePrivateKey(algorithm);
  return { signer: softwareSigner(key), certificatePem: ca.issue(key, cn), chainPem: ca.intPem };
}

export function journalIn(dir: string) {
  return openJournal(join(dir, "journal.db"), { groupMs: 0 });
}

let counter = 0;
export function event(receivedAt: number, extra: Record<string, unknown> = {}): NormalizedEvent {
  const n = counter++;
  return {
    event_id: `ev-${n.toString().padStart(8, "0")}`,
    timestamp: new Date(receivedAt - 50).toISOString(),
    received_at: new Date(receivedAt).toISOString(),
    action: "login",
    result: n % 3 === 0 ? "failure" : "success",
    user_id: `u-${n % 17}`,
    src_ip: `203.0.113.${n % 250}`,
    ...extra,
  };
}

/** A clock tests move by hand. */
export class Clock {
  constructor(public t: number) {}
  now = () => this.t;
  advance(ms: number) {
    this.t += ms;
  }
}
