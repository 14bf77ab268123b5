/**
 * Inclusion proofs: that one event is in a sealed batch whose signed manifest
 * is in the chain. A proof is self-contained JSON (the event, its batch's
 * audit path, the manifest, the signing key's certificate bundle), so it can
 * be handed to an auditor and checked offline with `viw verify-logs --event`.
 */
import type { X509Certificate } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import { canonicalJson } from "../../config/index.js";
import { CHECKPOINT_FILE, hashBatch, intervalStart, MANIFEST_FILE, manifestName, signatureValid, type Checkpoint, type Manifest } from "./format.js";
import { certificateSha256, loadStoredKeys, pemCertificates, validatePath, type StoredKey } from "./keys.js";
import { consistencyProof, HASH_SIZE, inclusionProof, leafHash, rootFromInclusionProof, verifyConsistency } from "./merkle.js";
import { parseCheckpoint, parseManifest } from "./verify.js";
import { DirectoryWorm, type WormStore } from "./worm.js";
import type { EventLocator } from "./eventindex.js";

export interface InclusionProof {
  event_id: string;
  /** The event exactly as sealed (its canonical JSON is the leaf). */
  event: Record<string, unknown>;
  batch: string;
  seq: number;
  leaf_index: number;
  tree_size: number;
  /** RFC 9162 audit path, hex, leaf to root. */
  audit_path: string[];
  manifest: Manifest;
  /** The signing key's certificate then its issuers, PEM. */
  certificate: string;
}

export interface ProofLookup {
  /** The event's received_at (or any time in its interval): looks there first instead of scanning newest to oldest. */
  near?: string;
  /** Seal interval in ms, to turn `near` into a batch. */
  interval?: number;
  /** The sealer's event index: one lookup instead of a search; a miss in a complete index means "not sealed". */
  index?: EventLocator;
}

/**
 * Finds the event in the sealed batches and builds its proof. Canonical JSON
 * makes `"event_id":"…"` an exact byte pattern, so a batch is searched with
 * Buffer.indexOf before any line is parsed.
 */
export async function proofFor(wormOrDir: string | WormStore, eventId: string, lookup: ProofLookup = {}): Promise<InclusionProof | undefined> {
  const worm = typeof wormOrDir === "string" ? new DirectoryWorm(wormOrDir) : wormOrDir;
  if (lookup.index) {
    const at = lookup.index.find(eventId);
    if (at) {
      const m = await readManifest(worm, manifestName(at.seq));
      const p = m ? await searchBatch(worm, m, eventId, at.leaf) : undefined;
      if (p) return p;
      // The index disagrees with the WORM store (restored, replaced, or expired batch): search as without it.
    } else if (lookup.index.complete) {
      // Every sealed batch is indexed except the few still being written: only those can hold it.
      for (const seq of [...lookup.index.lagging()]) {
        const m = await readManifest(worm, manifestName(seq));
        const p = m ? await searchBatch(worm, m, eventId) : undefined;
        if (p) return p;
      }
      return undefined;
    }
  }
  const names = (await worm.list("manifests/")).filter((n) => MANIFEST_FILE.test(n));
  const near = lookup.near ? Date.parse(lookup.near) : NaN;
  const tried = new Set<string>();
  if (Number.isFinite(near)) {
    // Manifests are in time order: binary search for the event's interval, then look a little
    // further (an event that arrived after its interval was sealed is in the next open batch).
    const interval = lookup.interval ?? 60_000;
    const from = intervalStart(near, interval);
    let lo = 0;
    let hi = names.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = await readManifest(worm, names[mid]!);
      if (m && Date.parse(m.end) <= from) lo = mid + 1;
      else hi = mid;
    }
    const until = from + Math.max(10 * interval, 3_600_000);
    for (let i = lo; i < names.length; i++) {
      const m = await readManifest(worm, names[i]!);
      if (!m) continue;
      if (Date.parse(m.start) > until) break;
      tried.add(names[i]!);
      const p = await searchBatch(worm, m, eventId);
      if (p) return p;
    }
  }
  names.reverse();
  for (const name of names) {
    if (tried.has(name)) continue;
    const m = await readManifest(worm, name);
    if (!m) continue;
    const p = await searchBatch(worm, m, eventId);
    if (p) return p;
  }
  return undefined;
}

async function readManifest(worm: WormStore, name: string): Promise<Manifest | undefined> {
  const bytes = await worm.get(name);
  if (!bytes) return undefined;
  const m = parseManifest(bytes);
  return typeof m === "string" ? undefined : m;
}

/** The event's proof from batch `m`; with `leaf`, only that line is looked at (an index answer). */
async function searchBatch(worm: WormStore, m: Manifest, eventId: string, leaf?: number): Promise<InclusionProof | undefined> {
  if (!m.batch) return undefined;
  const content = await worm.get(m.batch);
  if (!content) return undefined;
  const needle = Buffer.from(`"event_id":${JSON.stringify(eventId)}`);
  let at = leaf === undefined ? content.indexOf(needle) : lineStartOf(content, leaf);
  if (at >= 0 && leaf !== undefined) {
    const end = content.indexOf(0x0a, at);
    const found = content.subarray(at, end < 0 ? content.length : end).indexOf(needle);
    at = found < 0 ? -1 : at + found;
  }
  while (at >= 0) {
    const lineStart = content.lastIndexOf(0x0a, at) + 1;
    const lineEnd = content.indexOf(0x0a, at);
    const line = content.subarray(lineStart, lineEnd < 0 ? content.length : lineEnd);
    const event = JSON.parse(line.toString("utf8")) as Record<string, unknown>;
    if (event.event_id === eventId) {
      const file = Buffer.concat([Buffer.from([0x0a]), content]);
      const { leaves } = hashBatch(file, 1);
      let index = leaf ?? 0;
      if (leaf === undefined) for (let i = content.indexOf(0x0a); i >= 0 && i < lineStart; i = content.indexOf(0x0a, i + 1)) index++;
      const key = (await loadStoredKeys(worm)).byId.get(m.key_id)?.[0];
      return {
        event_id: eventId,
        event,
        batch: m.batch,
        seq: m.seq,
        leaf_index: index,
        tree_size: m.count,
        audit_path: inclusionProof(leaves, index).map((h) => h.toString("hex")),
        manifest: m,
        certificate: key ? [key.certificate, ...key.chain].map((c) => c.toString().trim()).join("\n") + "\n" : "",
      };
    }
    if (leaf !== undefined) return undefined;
    at = content.indexOf(needle, at + needle.length);
  }
  return undefined;
}

/** Offset of line `index` (0-based) of an LF-separated file, -1 past its end. */
function lineStartOf(content: Buffer, index: number): number {
  let at = 0;
  for (let i = 0; i < index; i++) {
    const lf = content.indexOf(0x0a, at);
    if (lf < 0 || lf + 1 >= content.length) return -1;
    at = lf + 1;
  }
  return at < content.length ? at : -1;
}

export interface ProofCheck {
  ok: boolean;
  event_id: string;
  seq: number;
  anchor: "checked" | "not_checked";
  /** Set when --worm was given: the manifest is the one in the WORM chain. */
  in_chain: boolean | null;
  problems: string[];
}

/**
 * Checks a proof: leaf → audit path → the manifest's root, the manifest's
 * signature by the enclosed certificate's key, that certificate against the
 * CA when given, and the manifest against the WORM copy when given.
 */
export async function checkProof(proof: InclusionProof, options: { ca?: string; worm?: string | WormStore } = {}): Promise<ProofCheck> {
  const problems: string[] = [];
  const m = proof.manifest;
  const leaf = leafHash(Buffer.from(canonicalJson(proof.event), "utf8"));
  if (proof.event?.event_id !== proof.event_id) problems.push(`the proof's event has event_id ${JSON.stringify(proof.event?.event_id)}, not ${JSON.stringify(proof.event_id)}`);
  const root = rootFromInclusionProof(proof.leaf_index, m.count, leaf, (proof.audit_path ?? []).map((h) => Buffer.from(h, "hex")));
  if (!root) problems.push(`the audit path does not fit leaf ${proof.leaf_index} of a batch of ${m.count} events`);
  else if (root.toString("hex") !== m.root) problems.push(`the event and audit path lead to root ${root.toString("hex").slice(0, 16)}…, the manifest signed ${m.root.slice(0, 16)}…: the event was modified or is not in batch ${m.seq}`);

  let certs: X509Certificate[] = [];
  try {
    certs = pemCertificates(proof.certificate ?? "");
  } catch (e) {
    problems.push(`the proof's certificate cannot be read: ${(e as Error).message}`);
  }
  const [leafCert, ...chain] = certs;
  if (!leafCert) problems.push("the proof carries no signing certificate");
  else {
    const key: StoredKey = { keyId: m.key_id, publicKey: leafCert.publicKey, certificate: leafCert, chain, certSha256: certificateSha256(leafCert), file: "" };
    if (!signatureValid(m, leafCert.publicKey)) problems.push(`the manifest's signature does not verify with the enclosed certificate (${leafCert.subject.replace(/\n/g, ", ")})`);
    if (options.ca !== undefined) {
      const v = validatePath(key, pemCertificates(options.ca));
      if (typeof v === "string") problems.push(v);
      else if (Date.parse(m.sealed_at) < v.notBefore.getTime() || Date.parse(m.sealed_at) > v.notAfter.getTime()) problems.push(`sealed at ${m.sealed_at}, outside the signing certificate's validity`);
    }
  }

  let inChain: boolean | null = null;
  if (options.worm !== undefined) {
    const worm = typeof options.worm === "string" ? new DirectoryWorm(options.worm) : options.worm;
    const stored = await worm.get(`manifests/${String(m.seq).padStart(12, "0")}.json`);
    inChain = !!stored && stored.equals(Buffer.from(canonicalJson(m), "utf8"));
    if (!inChain) problems.push(`manifest ${m.seq} in ${worm.location} ${stored ? "differs from the proof's" : "does not exist"}`);
  }
  return { ok: problems.length === 0, event_id: proof.event_id, seq: m?.seq, anchor: options.ca !== undefined ? "checked" : "not_checked", in_chain: inChain, problems };
}


export interface CheckpointAnswer {
  checkpoint: Checkpoint;
  /** RFC 9162 consistency proof from the tree of `from` manifests to this checkpoint's, hex. */
  consistency?: { from: number; path: string[] };
}

/**
 * The newest checkpoint, and with `from` (the size of a checkpoint the caller
 * kept) the proof that the chain it covers is an extension of that one: a
 * monitor that keeps only checkpoints can tell that nothing was rewritten or
 * cut, without a copy of the WORM store.
 */
export async function latestCheckpoint(wormOrDir: string | WormStore, from?: number): Promise<CheckpointAnswer | undefined> {
  const worm = typeof wormOrDir === "string" ? new DirectoryWorm(wormOrDir) : wormOrDir;
  const names = (await worm.list("checkpoints/")).filter((n) => CHECKPOINT_FILE.test(n));
  const last = names[names.length - 1];
  if (!last) return undefined;
  const checkpoint = parseCheckpoint((await worm.get(last))!);
  if (typeof checkpoint === "string") throw new Error(`${last}: ${checkpoint}`);
  if (from === undefined) return { checkpoint };
  if (!Number.isSafeInteger(from) || from < 1 || from > checkpoint.size) throw new RangeError(`from must be between 1 and ${checkpoint.size}`);
  const leaves = Buffer.alloc(checkpoint.size * HASH_SIZE);
  for (let seq = 0; seq < checkpoint.size; seq++) {
    const bytes = await worm.get(`manifests/${String(seq).padStart(12, "0")}.json`);
    if (!bytes) throw new Error(`manifest ${seq} is missing: run viw verify-logs`);
    leafHash(bytes).copy(leaves, seq * HASH_SIZE);
  }
  return { checkpoint, consistency: { from, path: consistencyProof(leaves, from).map((h) => h.toString("hex")) } };
}

/** That `newer` extends `older` (both checkpoints, signatures checked elsewhere). */
export function checkpointsConsistent(older: Checkpoint, newer: Checkpoint, path: readonly string[]): boolean {
  return verifyConsistency(older.size, newer.size, Buffer.from(older.root, "hex"), Buffer.from(newer.root, "hex"), path.map((h) => Buffer.from(h, "hex")));
}

/**
 * GET /v1/proof?event_id=ID[&near=TIME] for the admin port: 200 the proof,
 * 404 when the event is not (yet) in a sealed batch, 400 without event_id.
 * GET /v1/checkpoint[?from=SIZE]: the newest checkpoint, with a consistency
 * proof from a kept one of SIZE manifests.
 */
export function proofRoutes(options: { worm: string | WormStore; interval?: number; index?: () => EventLocator | undefined }): FastifyPluginAsync {
  const worm = typeof options.worm === "string" ? new DirectoryWorm(options.worm) : options.worm;
  return async (app) => {
    app.get("/v1/proof", async (request, reply) => {
      const q = request.query as Record<string, unknown>;
      const eventId = q.event_id;
      if (typeof eventId !== "string" || eventId.length === 0 || eventId.length > 512) {
        return reply.code(400).send({ error: { code: "bad_request", message: "query parameter event_id is required (1 to 512 characters)", field: "event_id" } });
      }
      const near = typeof q.near === "string" ? q.near : undefined;
      if (near !== undefined && !Number.isFinite(Date.parse(near))) {
        return reply.code(400).send({ error: { code: "bad_request", message: `near: not a time: ${JSON.stringify(near)}`, field: "near" } });
      }
      const proof = await proofFor(worm, eventId, { near, interval: options.interval, index: options.index?.() });
      if (!proof) return reply.code(404).send({ error: { code: "not_found", message: `event ${JSON.stringify(eventId)} is not in a sealed batch (not received, or its interval is not sealed yet)` } });
      return proof;
    });
    app.get("/v1/checkpoint", async (request, reply) => {
      const q = request.query as Record<string, unknown>;
      let from: number | undefined;
      if (q.from !== undefined) {
        from = Number(q.from);
        if (typeof q.from !== "string" || !/^[0-9]+$/.test(q.from)) return reply.code(400).send({ error: { code: "bad_request", message: `from: not a checkpoint size: ${JSON.stringify(q.from)}`, field: "from" } });
      }
      try {
        const answer = await latestCheckpoint(worm, from);
        if (!answer) return reply.code(404).send({ error: { code: "not_found", message: "no checkpoint has been written yet" } });
        return answer;
      } catch (e) {
        if (e instanceof RangeError) return reply.code(400).send({ error: { code: "bad_request", message: `from: ${e.message}`, field: "from" } });
        throw e;
      }
    });
  };
}
