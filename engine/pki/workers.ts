import * as nodeCrypto from "node:crypto";
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
 * (tests) and the compiled engine. The CSR check is `checkCsrKey`'s own text,
 * so the worker and the event loop (no workers) run one implementation.
 */
const WORKER = `
const { parentPort } = require("node:worker_threads");
const crypto = require("node:crypto");
const { constants, sign } = crypto;
const keys = new Map();
// Wire format (wire* in workers.ts): arrays, not objects, so no key names are serialised per job.
const checkCsrKey = ${checkCsrKey.toString()};
parentPort.on("message", async ([id, jobs, fresh]) => {
  if (fresh) for (const [kid, key] of fresh) keys.set(kid, key);
  const out = [];
  for (const j of jobs) {
    try {
      if (j[0] === 0) {
        out.push(await checkCsrKey(crypto, j));
      } else {
        const key = keys.get(j[1]);
        if (!key) throw new Error("no key " + j[1] + " on this crypto worker");
        out.push([2, sign(j[2], j[3], { key, dsaEncoding: "der", padding: constants.RSA_PKCS1_PADDING })]);
      }
    } catch (err) {
      out.push([3, String((err && err.message) || err)]);
    }
  }
  parentPort.postMessage([id, out]);
});
`;

/** A CSR's proof of possession, by offsets into its DER (one copy of the request crosses, not five views of a pooled buffer). */
export interface VerifyJob {
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

/** A job as it crosses: [0, der, info, infoEnd, sig, sigEnd, spki, spkiEnd, bits, bitsEnd, crv, hash] or [1, keyId, hash, data]. */
type WireJob = readonly unknown[];
/** A reply as it crosses: [0, type, namedCurve, modulusLength, ok, ski, spkiSha256], [1, keyError], [2, signature] or [3, error]. */
type WireReply = readonly [number, ...unknown[]];

function wireVerify(j: VerifyJob): WireJob {
  return [0, j.der, j.info, j.infoEnd, j.sig, j.sigEnd, j.spki, j.spkiEnd, j.bits, j.bitsEnd, j.crv ?? "", j.hash];
}

function verifyResult(r: WireReply): VerifyResult {
  if (r[0] === 1) return { keyError: r[1] as string };
  if (r[0] !== 0) throw new Error(`CSR check on the crypto worker failed: ${String(r[1])}`);
  const [, type, namedCurve, modulusLength, ok, ski, spkiSha256] = r as unknown as [0, string, string | undefined, number | undefined, boolean, Uint8Array, string];
  return { type, ...(namedCurve ? { namedCurve } : {}), ...(modulusLength ? { modulusLength } : {}), ok, ski, spkiSha256 };
}

/**
 * A CSR's key import, proof-of-possession check and key identifiers, on a wire job. It runs on the crypto workers,
 * whose source embeds this function's text (so it uses nothing but its arguments), and on the event loop when
 * there are none (`checkCsrHere`).
 */
export async function checkCsrKey(c: typeof import("node:crypto"), j: WireJob): Promise<WireReply> {
  const der = j[1] as Uint8Array;
  const at = (from: unknown, to: unknown) => der.subarray(from as number, to as number);
  let key;
  try {
    // EC keys as the raw point (see ecCurve in csr.ts for why), anything else through the SPKI decoder.
    key = j[10]
      ? c.KeyObject.from(await c.webcrypto.subtle.importKey("raw", at(j[8], j[9]), { name: "ECDSA", namedCurve: j[10] as string }, true, ["verify"]))
      : c.createPublicKey({ key: at(j[6], j[7]) as Buffer, format: "der", type: "spki" });
  } catch (err) {
    return [1, String((err as Error)?.message || err)];
  }
  const d = key.asymmetricKeyDetails ?? {};
  let ok = false;
  if (j[11] !== undefined) {
    try {
      ok = c.verify(j[11] as string | null, at(j[2], j[3]), key, at(j[4], j[5]));
    } catch {
      ok = false;
    }
  }
  // The key's identifiers too (SKI: SHA-1 of the key bits, RFC 5280 §4.2.1.2 method 1; the record's SHA-256 of the SPKI).
  const ski = c.createHash("sha1").update(at(j[8], j[9])).digest();
  const spkiSha256 = c.createHash("sha256").update(at(j[6], j[7])).digest("base64");
  return [0, key.asymmetricKeyType, d.namedCurve, d.modulusLength, ok, ski, spkiSha256];
}

/**
 * The same check on this thread (the CLI, tests, one-core machines). Verified in the synchronous form: the
 * thread-pool hop of the callback form (wake a pool thread, then the event loop again) cost more CPU per
 * certificate than it saved; the hop that pays is a batch to the crypto workers.
 */
export async function checkCsrHere(job: VerifyJob): Promise<VerifyResult> {
  return verifyResult(await checkCsrKey(nodeCrypto, wireVerify(job)));
}

type Reply = WireReply;

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
    this.worker.on("message", ([id, out]: [number, Reply[]]) => {
      const batch = this.waiting.get(id);
      if (!batch) return;
      this.waiting.delete(id);
      this.outstanding -= batch.length;
      // Unreferenced while idle: a CLI run that is done is not held open by the pool.
      if (this.outstanding === 0) this.worker.unref();
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(out[i]!);
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
  private queue: { job: WireJob; pending: Pending }[] = [];
  private nextId = 1;
  private closed = false;

  constructor(readonly size: number) {}

  /** Checks a CSR's self-signature on a worker: the key's type and size, and whether the signature verifies. */
  verify(job: VerifyJob): Promise<VerifyResult> {
    return this.submit(wireVerify(job)).then(verifyResult);
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
        const r = await this.submit([1, base.keyId, hash, new Uint8Array(data)]);
        if (r[0] !== 2) throw new Error(`signing with ${base.keyId.slice(0, 16)}… on the crypto worker failed: ${String(r[1])}`);
        const sig = r[1] as Uint8Array;
        return Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength);
      },
    };
  }

  private submit(job: WireJob): Promise<Reply> {
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
    thread.worker.postMessage(fresh.length ? [id, queue.map((q) => q.job), fresh] : [id, queue.map((q) => q.job)]);
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
