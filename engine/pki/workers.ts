import type { KeyObject } from "node:crypto";
import { Worker } from "node:worker_threads";
import type { Signer } from "./signer.js";

/**
 * The issuance API's CPU-heavy crypto on worker threads: the CSR key import
 * and proof-of-possession check, and the leaf signature with a software key.
 * One Node event loop serves the issuance API, and with everything on it that
 * loop is the throughput limit while the machine's other core idles
 * (test/bench/pki.bench.ts). The jobs of one event-loop turn travel as one
 * message each way, so the hop costs the loop a fixed few microseconds per
 * turn rather than per certificate. Software keys are handed to the workers,
 * threads of this process: they never leave the engine. PKCS#11 keys keep
 * signing through their session pool.
 *
 * Written as a CommonJS string run with eval: the worker needs only
 * node:crypto, and the same code then runs from the TypeScript sources
 * (tests) and the compiled engine.
 */
const WORKER = `
const { parentPort } = require("node:worker_threads");
const { constants, createHash, createPublicKey, KeyObject, sign, verify, webcrypto } = require("node:crypto");
const keys = new Map();
async function publicKey(j) {
  // EC keys as the raw point (see importPublicKey in csr.ts for why), anything else through the SPKI decoder.
  if (j.crv) return KeyObject.from(await webcrypto.subtle.importKey("raw", j.der.subarray(j.bits, j.bitsEnd), { name: "ECDSA", namedCurve: j.crv }, true, ["verify"]));
  return createPublicKey({ key: j.der.subarray(j.spki, j.spkiEnd), format: "der", type: "spki" });
}
parentPort.on("message", async (m) => {
  if (m.keys) for (const [id, key] of m.keys) keys.set(id, key);
  const out = new Array(m.jobs.length);
  for (let i = 0; i < m.jobs.length; i++) {
    const j = m.jobs[i];
    try {
      if (j.op === "verify") {
        let key;
        try {
          key = await publicKey(j);
        } catch (err) {
          out[i] = { keyError: String((err && err.message) || err) };
          continue;
        }
        const d = key.asymmetricKeyDetails || {};
        let ok = false;
        if (j.hash !== undefined) {
          try {
            ok = verify(j.hash, j.der.subarray(j.info, j.infoEnd), key, j.der.subarray(j.sig, j.sigEnd));
          } catch {
            ok = false;
          }
        }
        // The key's identifiers too (SKI: SHA-1 of the key bits, RFC 5280 §4.2.1.2 method 1; the record's SHA-256 of the SPKI).
        const ski = createHash("sha1").update(j.der.subarray(j.bits, j.bitsEnd)).digest();
        const spkiSha256 = createHash("sha256").update(j.der.subarray(j.spki, j.spkiEnd)).digest("base64");
        out[i] = { type: key.asymmetricKeyType, namedCurve: d.namedCurve, modulusLength: d.modulusLength, ok, ski, spkiSha256 };
      } else {
        const key = keys.get(j.key);
        if (!key) throw new Error("no key " + j.key + " on this crypto worker");
        out[i] = { sig: sign(j.hash, j.data, { key, dsaEncoding: "der", padding: constants.RSA_PKCS1_PADDING }) };
      }
    } catch (err) {
      out[i] = { error: String((err && err.message) || err) };
    }
  }
  parentPort.postMessage({ id: m.id, out });
});
`;

/** A CSR's proof of possession, by offsets into its DER (one copy of the request crosses, not five views of a pooled buffer). */
export interface VerifyJob {
  op: "verify";
  der: Uint8Array;
  /** certificationRequestInfo, the signed bytes. */
  info: number;
  infoEnd: number;
  sig: number;
  sigEnd: number;
  /** The SubjectPublicKeyInfo, and within it the key bits (used for the raw EC import when `crv` is set). */
  spki: number;
  spkiEnd: number;
  bits: number;
  bitsEnd: number;
  crv?: string;
  /** The signature's hash (null: Ed25519); undefined when the algorithm is not accepted, so nothing is verified. */
  hash?: string | null;
}

export type VerifyResult = { keyError: string } | { type: string; namedCurve?: string; modulusLength?: number; ok: boolean; ski: Uint8Array; spkiSha256: string };

interface SignJob {
  op: "sign";
  key: string;
  hash: string | null;
  data: Uint8Array;
}

type Job = VerifyJob | SignJob;
type Reply = VerifyResult | { sig: Uint8Array } | { error: string };

interface Pending {
  resolve(r: Reply): void;
  reject(e: Error): void;
}

class Thread {
  readonly worker: Worker;
  readonly waiting = new Map<number, Pending[]>();
  outstanding = 0;
  readonly keys = new Set<string>();
  dead = false;

  constructor(onGone: (t: Thread, err: Error) => void) {
    this.worker = new Worker(WORKER, { eval: true, name: "viw-pki-crypto" });
    this.worker.unref();
    this.worker.on("message", (m: { id: number; out: Reply[] }) => {
      const batch = this.waiting.get(m.id);
      if (!batch) return;
      this.waiting.delete(m.id);
      this.outstanding -= batch.length;
      // Unreferenced while idle: a CLI run that is done is not held open by the pool.
      if (this.outstanding === 0) this.worker.unref();
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(m.out[i]!);
    });
    this.worker.on("error", (err) => onGone(this, err));
    this.worker.on("exit", (code) => onGone(this, new Error(`PKI crypto worker exited (${code})`)));
  }
}

/**
 * The workers (started on first use) and the software keys they sign with.
 * `size` threads; a batch goes to the one with the fewest jobs under way.
 */
export class CryptoWorkers {
  private readonly threads: Thread[] = [];
  private readonly keys = new Map<string, KeyObject>();
  private queue: { job: Job; pending: Pending }[] = [];
  private nextId = 1;
  private closed = false;

  constructor(readonly size: number) {}

  /** Checks a CSR's self-signature on a worker: the key's type and size, and whether the signature verifies. */
  verify(job: VerifyJob): Promise<VerifyResult> {
    return this.submit(job) as Promise<VerifyResult>;
  }

  /** A Signer with the same key whose signatures are made on the workers. */
  signer(base: Signer, key: KeyObject, hash: string | null): Signer {
    this.keys.set(base.keyId, key);
    return {
      keyId: base.keyId,
      algorithm: base.algorithm,
      publicKey: base.publicKey,
      sign: async (data: Uint8Array) => {
        // A copy of exactly these bytes: a view into Node's shared 8 KB buffer pool would clone the whole pool.
        const r = (await this.submit({ op: "sign", key: base.keyId, hash, data: new Uint8Array(data) })) as { sig?: Uint8Array; error?: string };
        if (!r.sig) throw new Error(`signing with ${base.keyId.slice(0, 16)}… on the crypto worker failed: ${r.error}`);
        return Buffer.from(r.sig.buffer, r.sig.byteOffset, r.sig.byteLength);
      },
    };
  }

  private submit(job: Job): Promise<Reply> {
    if (this.closed) return Promise.reject(new Error("the PKI crypto workers are closed"));
    return new Promise((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(this.flush);
      this.queue.push({ job, pending: { resolve, reject } });
    });
  }

  private readonly flush = (): void => {
    const queue = this.queue;
    this.queue = [];
    if (queue.length === 0) return;
    let thread: Thread;
    try {
      thread = this.pick();
    } catch (err) {
      for (const q of queue) q.pending.reject(err as Error);
      return;
    }
    const id = this.nextId++;
    const fresh: [string, KeyObject][] = [];
    for (const [kid, key] of this.keys) {
      if (!thread.keys.has(kid)) {
        fresh.push([kid, key]);
        thread.keys.add(kid);
      }
    }
    if (thread.outstanding === 0) thread.worker.ref();
    thread.outstanding += queue.length;
    thread.waiting.set(
      id,
      queue.map((q) => q.pending),
    );
    thread.worker.postMessage({ id, jobs: queue.map((q) => q.job), ...(fresh.length ? { keys: fresh } : {}) });
  };

  private pick(): Thread {
    while (this.threads.length < this.size) this.threads.push(new Thread(this.gone));
    let best = this.threads[0]!;
    for (const t of this.threads) if (t.outstanding < best.outstanding) best = t;
    return best;
  }

  /** A worker that failed: its jobs fail (a 500 for those requests), the next batch starts a fresh one. */
  private readonly gone = (t: Thread, err: Error): void => {
    if (t.dead) return;
    t.dead = true;
    const i = this.threads.indexOf(t);
    if (i >= 0) this.threads.splice(i, 1);
    for (const batch of t.waiting.values()) for (const p of batch) p.reject(err);
    t.waiting.clear();
    void t.worker.terminate();
  };

  async close(): Promise<void> {
    this.closed = true;
    const threads = this.threads.splice(0);
    for (const t of threads) {
      t.dead = true;
      for (const batch of t.waiting.values()) for (const p of batch) p.reject(new Error("the PKI crypto workers are closed"));
    }
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }
}
