/**
 * The sealer: a journal consumer that groups events by the interval of their
 * `received_at`, and once an interval has closed (plus a grace for events
 * still on their way into the journal) writes its batch file and signed
 * manifest to WORM, a signed checkpoint every `checkpointEvery` manifests, and
 * only then moves its journal cursor.
 *
 * Crash safety: a manifest is the commit point. Each records `journal_through`
 * (the journal position read when it was sealed); on restart the sealer reads
 * the last manifest and re-reads the journal from its cursor, skipping records
 * at or below `journal_through` whose interval the chain already covers, so
 * nothing is sealed twice or skipped. The cursor is the position below the
 * oldest still-unsealed record, committed after the manifest is durable.
 * A batch file written just before a crash that left no manifest is an
 * unreferenced orphan: the batch name carries its hash, so the re-seal does
 * not collide with it.
 */
import { createHash } from "node:crypto";
import type { DesiredState } from "../../config/index.js";
import { canonicalJson, periodStart } from "../../config/index.js";
import type { Prepared, Service } from "../../gitops/service.js";
import { ServiceError } from "../../gitops/service.js";
import type { Signer } from "../../pki/signer.js";
import type { Journal, JournalRecord } from "../journal/contract.js";
import { canonicalJsonOf } from "../journal/index.js";
import {
  BATCH_FILE,
  batchName,
  CHECKPOINT_FILE,
  checkpointName,
  EMPTY_SHA256,
  encodeBatch,
  FORMAT,
  intervalStart,
  MANIFEST_FILE,
  manifestName,
  signDocument,
  type Checkpoint,
  type Manifest,
} from "./format.js";
import { keyBundle } from "./keys.js";
import { proofFor, type InclusionProof } from "./proof.js";
import { leafHash, MerkleFrontier, rootFromLeafHashes } from "./merkle.js";
import { parseCheckpoint } from "./verify.js";
import { DirectoryWorm, type WormStore } from "./worm.js";
import { EventIndex } from "./eventindex.js";
import { signReceipt, type Receipt } from "./receipt.js";
import type { NormalizedEvent } from "../journal/contract.js";

export interface SealerOptions {
  journal: Journal;
  /** A directory (the filesystem backend) or any WormStore. */
  wormDir?: string;
  worm?: WormStore;
  /** The Log Signing Key (software or PKCS#11) and its certificate from profile log-signing, with its issuers. */
  signer: Signer;
  certificatePem: string;
  chainPem?: string | readonly string[];
  /** Seal interval in ms. Default 60 000. */
  interval?: number;
  /** Wait after an interval closes for events still being journaled. Default min(5 s, interval/4). */
  grace?: number;
  /** A signed checkpoint every N manifests. Default 60 (hourly at the default interval). */
  checkpointEvery?: number;
  /** A run of more than this many empty intervals (after downtime) is sealed as one manifest. Default 60. */
  maxEmptyRun?: number;
  /**
   * The event index file (SQLite, e.g. DATA/chain/events.db): event_id →
   * (batch, leaf) for proof lookups; rebuilt from WORM when missing.
   */
  indexFile?: string;
  /** The journal consumer name. Default "sealer". */
  consumer?: string;
  now?: () => number;
  /** Told about failures of a seal attempt (it is retried on the next tick). */
  onError?: (err: unknown) => void;
}

interface Tip {
  seq: number;
  end: number;
  hash: string;
  keyId: string;
  journalThrough: number;
}

export interface SealerStatus {
  [k: string]: unknown;
  worm: string;
  interval_ms: number;
  key_id: string;
  last_seq: number | null;
  last_end: string | null;
  pending_events: number;
  cursor: number;
  last_error: string | null;
}

export class Sealer implements Service {
  readonly name = "sealer";
  readonly worm: WormStore;
  readonly interval: number;
  private readonly grace: number;
  private readonly checkpointEvery: number;
  private readonly maxEmptyRun: number;
  private readonly consumer: string;
  private readonly now: () => number;
  private signer: Signer;
  private bundle: ReturnType<typeof keyBundle>;
  private tip: Tip | undefined;
  /** The tree of manifests so far, for checkpoints. */
  private frontier = MerkleFrontier.empty();
  /** Batch files not yet removed by retention, oldest first, with the interval end once looked up. */
  private live: { name: string; end?: number }[] = [];
  private pending = new Map<number, JournalRecord[]>();
  private readPos = 0;
  private retention: string | undefined;
  /** The retention cutoff recorded in the last durable manifest: only batches before it may go. */
  private recordedCutoff: number | undefined;
  /** Where a new chain starts: the interval the sealer first started in. */
  private genesis: number | undefined;
  private started = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastError: string | null = null;
  private index: EventIndex | undefined;
  private indexing: Promise<void> = Promise.resolve();
  private readonly indexStop = { stopped: false };

  constructor(private readonly options: SealerOptions) {
    if (!options.worm && !options.wormDir) throw new Error("sealer: wormDir or worm is required");
    this.worm = options.worm ?? new DirectoryWorm(options.wormDir!);
    this.interval = options.interval ?? 60_000;
    if (!Number.isInteger(this.interval) || this.interval < 100) throw new Error(`sealer: seal interval ${this.interval} ms is below 100 ms`);
    this.grace = options.grace ?? Math.min(5_000, Math.floor(this.interval / 4));
    this.checkpointEvery = options.checkpointEvery ?? 60;
    this.maxEmptyRun = options.maxEmptyRun ?? 60;
    this.consumer = options.consumer ?? "sealer";
    this.now = options.now ?? Date.now;
    this.signer = options.signer;
    this.bundle = this.checkedBundle(options.signer, options.certificatePem, options.chainPem);
  }

  private checkedBundle(signer: Signer, certificatePem: string, chainPem?: string | readonly string[]) {
    const bundle = keyBundle(certificatePem, chainPem);
    if (bundle.keyId !== signer.keyId) throw new Error(`sealer: the log signing certificate is for key ${bundle.keyId}, the signer's key is ${signer.keyId}`);
    return bundle;
  }

  /** Loads the chain's tip from WORM and the journal cursor; starts the timer unless `manual`. */
  async start(options: { manual?: boolean } = {}): Promise<void> {
    if (this.started) return;
    await this.worm.put(this.bundle.name, this.bundle.bytes);
    const names = (await this.worm.list("manifests/")).filter((n) => MANIFEST_FILE.test(n));
    const damaged = (what: string) => new Error(`sealer: ${what}: the WORM directory is damaged, run viw verify-logs`);
    names.forEach((name, i) => {
      if (name !== manifestName(i)) throw damaged(`${manifestName(i)} is missing (next is ${name})`);
    });
    // Resume the tree of manifests from the newest checkpoint that carries its frontier, then the manifests after it.
    const frontier = await this.resumeFrontier(names.length);
    for (let seq = Math.max(0, frontier.size - 1); seq < names.length; seq++) {
      const bytes = (await this.worm.get(names[seq]!))!;
      let m: Manifest;
      try {
        m = JSON.parse(bytes.toString("utf8")) as Manifest;
      } catch {
        throw damaged(`${names[seq]} is not JSON`);
      }
      if (m.seq !== seq) throw damaged(`${names[seq]} holds manifest ${m.seq}`);
      if (seq >= frontier.size) frontier.append(leafHash(bytes));
      this.tip = { seq, end: Date.parse(m.end), hash: sha256(bytes), keyId: m.key_id, journalThrough: m.journal_through };
    }
    this.frontier = frontier;
    this.live = (await this.worm.list("batches/")).map((name) => ({ name }));
    if (!this.tip) this.genesis = intervalStart(this.now(), this.interval);
    this.readPos = this.options.journal.cursor(this.consumer);
    if (this.options.indexFile) this.openIndex(this.options.indexFile);
    this.started = true;
    if (this.tip && (this.tip.seq + 1) % this.checkpointEvery === 0) await this.checkpoint();
    if (!options.manual) this.schedule();
  }

  /** Opens the event index and indexes, in the background, the sealed batches it does not have (all of them when it was missing). */
  private openIndex(file: string): void {
    const report = (err: unknown) => {
      this.lastError = (err as Error).message;
      this.options.onError?.(err);
    };
    const index = EventIndex.open(file, report);
    this.index = index;
    const tip = this.tip?.seq ?? -1;
    this.indexing = index.catchUp(this.worm, tip, this.indexStop).then(
      () => undefined,
      (err) => report(err),
    );
  }

  /** Resolves once the event index covers every batch sealed before start() (tests, status). */
  async whenIndexed(): Promise<void> {
    await this.indexing;
    await this.index?.drained();
  }

  /** Seals with a new key from the next manifest on; the change is recorded in the chain. */
  async rotateKey(signer: Signer, certificatePem: string, chainPem?: string | readonly string[]): Promise<void> {
    const bundle = this.checkedBundle(signer, certificatePem, chainPem);
    await this.worm.put(bundle.name, bundle.bytes);
    await this.exclusive(async () => {
      this.signer = signer;
      this.bundle = bundle;
    });
  }

  private schedule(): void {
    if (this.stopped) return;
    const next = this.nextStart();
    const due = next === undefined ? this.now() + this.interval : next + this.interval + this.grace;
    const delay = Math.max(20, Math.min(due - this.now(), this.interval));
    this.timer = setTimeout(() => {
      this.tick()
        .catch(() => undefined) // kept in status().last_error; retried next tick
        .finally(() => this.schedule());
    }, delay);
    this.timer.unref?.();
  }

  /** Reads the journal and seals every interval that is due; returns how many manifests were written. */
  tick(): Promise<number> {
    if (!this.started) return Promise.reject(new Error("sealer: tick() before start()"));
    let sealed = 0;
    return this.exclusive(async () => {
      try {
        this.read();
        sealed = await this.sealDue();
        this.lastError = null;
      } catch (e) {
        this.lastError = (e as Error).message;
        this.options.onError?.(e);
        if (!this.options.onError) throw e;
      }
    }).then(() => sealed);
  }

  private exclusive(fn: () => Promise<void>): Promise<void> {
    const run = this.running.then(fn);
    this.running = run.catch(() => undefined);
    return run;
  }

  private read(): void {
    const journal = this.options.journal;
    for (;;) {
      const records = journal.read(this.readPos, 10_000);
      if (records.length === 0) return;
      for (const r of records) this.place(r);
      this.readPos = records[records.length - 1]!.seq;
    }
  }

  private place(r: JournalRecord): void {
    const received = Date.parse(r.event.received_at);
    let iv = Number.isFinite(received) ? intervalStart(received, this.interval) : undefined;
    const tip = this.tip;
    if (tip && iv !== undefined && iv < tip.end && r.seq <= tip.journalThrough) return; // sealed before a restart
    // Late (its interval is already sealed) or without a usable time: the first unsealed interval takes it.
    if (iv === undefined) iv = tip ? tip.end : intervalStart(this.now(), this.interval);
    else if (tip && iv < tip.end) iv = tip.end;
    const list = this.pending.get(iv);
    if (list) list.push(r);
    else this.pending.set(iv, [r]);
  }

  private nextStart(): number | undefined {
    if (this.tip) return this.tip.end;
    let min: number | undefined;
    for (const k of this.pending.keys()) if (min === undefined || k < min) min = k;
    if (this.genesis !== undefined && (min === undefined || this.genesis < min)) min = this.genesis;
    return min;
  }

  private async sealDue(): Promise<number> {
    let sealed = 0;
    const limit = intervalStart(this.now() - this.grace, this.interval); // intervals ending at or before this are due
    for (;;) {
      const start = this.nextStart();
      if (start === undefined || start + this.interval > limit) break;
      let end = start + this.interval;
      const records = this.pending.get(start) ?? [];
      if (records.length === 0) {
        // A run of empty intervals after downtime: one manifest for up to maxEmptyRun of them each, not one per minute of the outage.
        const emptyNext = (at: number) => at + this.interval <= limit && !this.pending.has(at);
        let runEnd = end;
        let n = 1;
        while (n <= this.maxEmptyRun && emptyNext(runEnd)) {
          runEnd += this.interval;
          n++;
        }
        if (n > this.maxEmptyRun) {
          while (emptyNext(runEnd)) runEnd += this.interval;
          end = runEnd;
        }
      }
      await this.seal(start, end, records);
      this.pending.delete(start);
      sealed++;
    }
    if (sealed > 0) {
      let oldest = Infinity;
      for (const list of this.pending.values()) for (const r of list) if (r.seq < oldest) oldest = r.seq;
      const cursor = oldest === Infinity ? this.readPos : oldest - 1;
      if (cursor > this.options.journal.cursor(this.consumer)) this.options.journal.commitCursor(this.consumer, cursor);
      await this.expire();
    }
    return sealed;
  }

  private retentionCutoff(): number | undefined {
    return this.retention ? periodStart(this.retention, new Date(this.now())).getTime() : undefined;
  }

  private async seal(start: number, end: number, records: JournalRecord[]): Promise<void> {
    const seq = this.tip ? this.tip.seq + 1 : 0;
    const expire = this.retentionCutoff();
    let batch: string | undefined;
    let root = rootFromLeafHashes(Buffer.alloc(0)).toString("hex");
    let batchSha = EMPTY_SHA256;
    if (records.length > 0) {
      const encoded = encodeBatch(records.map((r) => canonicalJsonOf(r) ?? canonicalJson(r.event)));
      batch = batchName(seq, encoded.sha256);
      root = encoded.root.toString("hex");
      batchSha = encoded.sha256;
      await this.worm.put(batch, encoded.bytes, { retainUntil: this.retainUntil(end) });
    }
    const signer = this.signer;
    const unsigned: Omit<Manifest, "signature"> = {
      format: FORMAT,
      seq,
      start: new Date(start).toISOString(),
      end: new Date(end).toISOString(),
      count: records.length,
      root,
      ...(batch ? { batch } : {}),
      batch_sha256: batchSha,
      prev: this.tip?.hash ?? null,
      key_id: signer.keyId,
      alg: signer.algorithm,
      ...(this.tip && this.tip.keyId !== signer.keyId ? { key_change: { from: this.tip.keyId, to: signer.keyId, certificate_sha256: this.bundle.certSha256 } } : {}),
      ...(expire !== undefined ? { expire_before: new Date(expire).toISOString() } : {}),
      journal_through: this.readPos,
      sealed_at: new Date(this.now()).toISOString(),
    };
    const { bytes } = await signDocument<Manifest>(unsigned, signer);
    await this.worm.put(manifestName(seq), bytes, { retainUntil: this.retainUntil(end) });
    this.frontier.append(leafHash(bytes));
    this.tip = { seq, end, hash: sha256(bytes), keyId: signer.keyId, journalThrough: this.readPos };
    this.recordedCutoff = expire;
    // After the manifest is durable: the index only ever points at sealed batches.
    // In the background, in slices: the index trails the seal by at most a few batches, which lookups search meanwhile.
    void this.index?.add(seq, records.map((r) => r.event.event_id));
    if (batch) this.live.push({ name: batch, end });
    if ((seq + 1) % this.checkpointEvery === 0) await this.checkpoint();
  }

  private retainUntil(end: number): Date | undefined {
    if (!this.retention) return undefined;
    // periodStart goes back; the same period forward from the interval end.
    const back = periodStart(this.retention, new Date(end)).getTime();
    return new Date(end + (end - back));
  }

  private async checkpoint(): Promise<void> {
    const tip = this.tip!;
    const size = tip.seq + 1;
    if (this.frontier.size !== size) throw new Error(`sealer: manifest tree has ${this.frontier.size} leaves at manifest ${tip.seq}`);
    if (await this.worm.get(checkpointName(size))) return;
    const signer = this.signer;
    const unsigned: Omit<Checkpoint, "signature"> = {
      format: FORMAT,
      kind: "checkpoint",
      size,
      root: this.frontier.root().toString("hex"),
      frontier: this.frontier.toHex(),
      last: tip.hash,
      end: new Date(tip.end).toISOString(),
      key_id: signer.keyId,
      alg: signer.algorithm,
      made_at: new Date(this.now()).toISOString(),
    };
    const { bytes } = await signDocument<Checkpoint>(unsigned, signer);
    await this.worm.put(checkpointName(size), bytes);
  }

  /** Removes batch files whose interval ended before the retention cutoff recorded in the (durable) last manifest. */
  private async expire(): Promise<void> {
    const cutoff = this.recordedCutoff;
    if (cutoff === undefined) return;
    while (this.live.length > 0) {
      const head = this.live[0]!;
      if (head.end === undefined) {
        // A batch from before the restart: its manifest says when its interval ended.
        const seq = Number(BATCH_FILE.exec(head.name)?.[1] ?? NaN);
        const bytes = Number.isFinite(seq) && this.tip && seq <= this.tip.seq ? await this.worm.get(manifestName(seq)) : undefined;
        if (!bytes) return; // not sealed (a crash leftover beyond the tip): never removed here
        head.end = Date.parse((JSON.parse(bytes.toString("utf8")) as Manifest).end);
      }
      if (head.end > cutoff) return;
      await this.worm.remove(head.name);
      this.live.shift();
    }
  }

  /** The manifest tree as of the newest usable checkpoint (its frontier matches its root and its last manifest), else empty. */
  private async resumeFrontier(manifests: number): Promise<MerkleFrontier> {
    const names = (await this.worm.list("checkpoints/")).filter((n) => CHECKPOINT_FILE.test(n));
    for (let i = names.length - 1; i >= 0; i--) {
      const cp = parseCheckpoint((await this.worm.get(names[i]!))!);
      if (typeof cp === "string" || !cp.frontier || cp.size > manifests) continue;
      let f: MerkleFrontier;
      try {
        f = MerkleFrontier.fromHex(cp.size, cp.frontier);
      } catch {
        continue;
      }
      const last = await this.worm.get(manifestName(cp.size - 1));
      if (f.root().toString("hex") === cp.root && last && sha256(last) === cp.last) return f;
    }
    return MerkleFrontier.empty();
  }

  async prepare(next: DesiredState): Promise<Prepared> {
    const period = next.retention.worm;
    try {
      periodStart(period, new Date());
    } catch (e) {
      throw new ServiceError(this.name, `retention.worm: ${(e as Error).message}`);
    }
    return {
      commit: () => {
        this.retention = period;
      },
    };
  }

  status(): SealerStatus {
    let pending = 0;
    for (const list of this.pending.values()) pending += list.length;
    return {
      worm: this.worm.location,
      interval_ms: this.interval,
      key_id: this.signer.keyId,
      last_seq: this.tip?.seq ?? null,
      last_end: this.tip ? new Date(this.tip.end).toISOString() : null,
      pending_events: pending,
      cursor: this.started ? this.options.journal.cursor(this.consumer) : 0,
      retention: this.retention ?? null,
      event_index: this.index ? (this.index.complete ? "complete" : "building") : "none",
      last_error: this.lastError,
    };
  }

  /** The inclusion proof of a sealed event (GET /v1/proof), or undefined while it is not sealed. */
  proofFor(eventId: string, near?: string): Promise<InclusionProof | undefined> {
    return proofFor(this.worm, eventId, { near, interval: this.interval, index: this.index });
  }

  /** The event index proof lookups use (GET /v1/proof), once started with `indexFile`. */
  get eventIndex(): EventIndex | undefined {
    return this.index;
  }

  /**
   * The signed receipt for events a bulk request just made durable in the
   * journal: the interval whose batch they will be (or were) sealed into.
   * It reads the journal under the seal lock, so the answer is where the
   * events were placed: an event whose interval was already sealed when it
   * reached the journal is placed in the first unsealed interval, and the
   * receipt names that one, not the interval of its received_at.
   */
  async receipt(events: readonly NormalizedEvent[], receivedAt: string): Promise<Receipt> {
    if (!this.started) throw new Error("sealer: receipt() before start()");
    if (events.length === 0) throw new Error("sealer: a receipt needs at least one event");
    let batch: { start: number; end: number } | undefined;
    let signer = this.signer;
    await this.exclusive(async () => {
      this.read();
      batch = await this.placement(events[0]!, receivedAt);
      signer = this.signer;
    });
    if (!batch) throw new Error(`sealer: event ${events[0]!.event_id} is not in the journal`);
    return signReceipt(events, receivedAt, batch, signer, this.now());
  }

  /** Where place() put an event that is in the journal (call after read(), under the lock). */
  private async placement(event: NormalizedEvent, receivedAt: string): Promise<{ start: number; end: number } | undefined> {
    const received = Date.parse(event.received_at ?? receivedAt);
    const own = Number.isFinite(received) ? intervalStart(received, this.interval) : undefined;
    const tip = this.tip;
    // Not late: every read placed it in its own interval, which is not sealed yet (sealed ones all end by tip.end).
    if (own !== undefined && (!tip || own >= tip.end)) return { start: own, end: own + this.interval };
    for (const [start, list] of this.pending) {
      for (let i = list.length - 1; i >= 0; i--) if (list[i]!.event.event_id === event.event_id) return { start, end: start + this.interval };
    }
    // Already sealed (a seal ran between the journal append and this call): the chain says where.
    const proof = await proofFor(this.worm, event.event_id, { near: event.received_at, interval: this.interval, index: this.index });
    return proof ? { start: Date.parse(proof.manifest.start), end: Date.parse(proof.manifest.end) } : undefined;
  }

  /** Stops the timer and waits for a seal in progress; unsealed events stay in the journal for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    this.indexStop.stopped = true;
    await this.indexing;
    await this.index?.drained();
    this.index?.close();
  }
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function createSealer(options: SealerOptions): Sealer {
  return new Sealer(options);
}
