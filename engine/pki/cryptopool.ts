import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { KeyObject } from "node:crypto";

/**
 * Worker threads of the engine process that do the issuance API's OpenSSL
 * work: the CSR key import and proof-of-possession check, and signatures with
 * software keys. Measured on the issuance benchmark, these calls held the
 * event loop (OpenSSL 3's per-call setup, and its locks shared with libuv's
 * pool under load) longer than TLS and HTTP together; here the event loop
 * only walks DER and moves bytes. Private keys are handed to the workers as
 * KeyObjects: they stay inside this process, as with the libuv pool before.
 * Plain JS evaluated in the worker, so it runs the same from the TypeScript
 * sources (vitest) and from dist/.
 */
const WORKER = `
const { parentPort } = require("node:worker_threads");
const { constants, createPublicKey, sign, verify } = require("node:crypto");
const keys = new Map();
function run(m) {
  if (m.op === "verify") {
    let key;
    try {
      key = createPublicKey(m.jwk ? { key: m.jwk, format: "jwk" } : { key: Buffer.from(m.spki), format: "der", type: "spki" });
    } catch (e) {
      return { id: m.id, error: String((e && e.message) || e), stage: "key" };
    }
    const d = key.asymmetricKeyDetails || {};
    let ok = false;
    try { ok = verify(m.hash, m.data, key, m.sig); } catch { ok = false; }
    return { id: m.id, ok, type: key.asymmetricKeyType, curve: d.namedCurve, bits: d.modulusLength };
  }
  try {
    return { id: m.id, sig: sign(m.hash, m.data, { key: keys.get(m.key), dsaEncoding: "der", padding: constants.RSA_PKCS1_PADDING }) };
  } catch (e) {
    return { id: m.id, error: String((e && e.message) || e) };
  }
}
parentPort.on("message", (batch) => {
  const out = [];
  for (const m of batch) {
    if (m.op === "key") keys.set(m.key, m.value);
    else out.push(run(m));
  }
  if (out.length) parentPort.postMessage(out);
});
`;

/** What a verified key is, as node:crypto describes it. */
export interface KeyDetails {
  type: string | undefined;
  namedCurve?: string;
  modulusLength?: number;
}

interface Reply {
  id: number;
  ok?: boolean;
  sig?: Uint8Array;
  error?: string;
  stage?: "key";
  type?: string;
  curve?: string;
  bits?: number;
}

/** A public key that could not be imported (as opposed to a signature that does not verify). */
export class KeyImportError extends Error {}

class Lane {
  readonly worker: Worker;
  readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  readonly keys = new WeakSet<object>();

  constructor() {
    this.worker = new Worker(WORKER, { eval: true });
    this.worker.on("message", (replies: Reply[]) => {
      for (const r of replies) {
        const p = this.pending.get(r.id);
        if (!p) continue;
        this.pending.delete(r.id);
        p.resolve(r);
      }
      // Only while a job is under way does the worker keep the process alive (a CLI must not exit mid-signature).
      if (this.pending.size === 0) this.worker.unref();
    });
    this.worker.on("error", (err) => this.fail(err));
    this.worker.on("exit", (code) => this.fail(new Error(`crypto worker exited (${code})`)));
    // After the listeners: adding a "message" listener refs the worker's port again.
    this.worker.unref();
  }

  private fail(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    lanes = lanes.filter((l) => l !== this);
  }

  /**
   * Jobs of one turn of the event loop go to the worker as one message: on
   * this VM each postMessage (a lock and an eventfd write) cost more than the
   * signature it carried.
   */
  private queue: object[] = [];
  private flush = (): void => {
    const batch = this.queue;
    this.queue = [];
    this.worker.postMessage(batch);
  };

  send(message: object): void {
    if (this.queue.length === 0) setImmediate(this.flush);
    this.queue.push(message);
  }

  post(id: number, message: object): Promise<Reply> {
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.send(message);
    });
  }
}

/**
 * A copy with its own ArrayBuffer. postMessage clones a view's whole
 * ArrayBuffer, and small Buffers are views into Node's shared 8 KiB pool:
 * without this every job carried several 8 KiB slabs.
 */
function exact(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

let lanes: Lane[] = [];
let nextId = 1;
let keyIds = new WeakMap<KeyObject, number>();
let nextKey = 1;

function lane(): Lane {
  if (lanes.length === 0) {
    // At least two: one lane can take a job while the other is preempted on a shared machine.
    const n = Math.max(2, Math.min(4, availableParallelism()));
    lanes = Array.from({ length: n }, () => new Lane());
  }
  // The least busy lane.
  let best = lanes[0]!;
  for (const l of lanes) if (l.pending.size < best.pending.size) best = l;
  return best;
}

/**
 * Verifies `signature` over `data` with a public key given as JWK (cheaper to
 * import than DER under OpenSSL 3) or DER SPKI. Resolves whether it verified
 * and what key it was; rejects with KeyImportError when the key is no key.
 */
export async function verifyInPool(hash: string | null, data: Uint8Array, key: { jwk: object } | { spki: Uint8Array }, signature: Uint8Array): Promise<{ ok: boolean; details: KeyDetails }> {
  const id = nextId++;
  const k = "spki" in key ? { spki: exact(key.spki) } : key;
  const r = await lane().post(id, { op: "verify", id, hash, data: exact(data), sig: exact(signature), ...k });
  if (r.error !== undefined) throw r.stage === "key" ? new KeyImportError(r.error) : new Error(r.error);
  return { ok: r.ok === true, details: { type: r.type, ...(r.curve ? { namedCurve: r.curve } : {}), ...(r.bits ? { modulusLength: r.bits } : {}) } };
}

/** Signs with a private KeyObject on a worker (handed to each worker once). */
export async function signInPool(hash: string | null, data: Uint8Array, key: KeyObject): Promise<Buffer> {
  let k = keyIds.get(key);
  if (k === undefined) keyIds.set(key, (k = nextKey++));
  const l = lane();
  if (!l.keys.has(key)) {
    l.send({ op: "key", key: k, value: key });
    l.keys.add(key);
  }
  const id = nextId++;
  const r = await l.post(id, { op: "sign", id, hash, data: exact(data), key: k });
  if (r.error !== undefined || !r.sig) throw new Error(r.error ?? "no signature");
  return Buffer.from(r.sig.buffer, r.sig.byteOffset, r.sig.byteLength);
}

/** Stops the workers (tests; the process exits without it). */
export async function closeCryptoPool(): Promise<void> {
  const all = lanes;
  lanes = [];
  keyIds = new WeakMap();
  await Promise.all(all.map((l) => l.worker.terminate()));
}
