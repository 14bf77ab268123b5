/**
 * Signed ingest receipts (spec §4.3, issue #7 item 8): the bulk ingest
 * answer names, per request, the seal interval the request's events go into,
 * the events (ids and a digest of their leaf hashes), signed with the Log
 * Signing Key. Once the interval is sealed, `verifyReceipt` (and
 * `viw verify-logs --receipt`) confirms from a WORM copy alone that every
 * event is in that batch, with its inclusion proof. Format: README.md.
 */
import { createHash } from "node:crypto";
import { canonicalJson, type KeyAlgorithm } from "../../config/index.js";
import type { Signer } from "../../pki/signer.js";
import type { NormalizedEvent } from "../journal/contract.js";
import { eventIdsOf } from "./eventindex.js";
import { hashBatch, MANIFEST_FILE, signatureValid, signDocument, type Manifest } from "./format.js";
import { loadStoredKeys, pemCertificates, validatePath, type StoredKey } from "./keys.js";
import { HASH_SIZE, inclusionProofs, verifyInclusion } from "./merkle.js";
import { parseManifest } from "./verify.js";
import { DirectoryWorm, type WormStore } from "./worm.js";

export const RECEIPT_FORMAT = "viw-ingest-receipt/1";

export interface Receipt {
  format: typeof RECEIPT_FORMAT;
  /** When the engine received the request (the events' received_at). */
  received_at: string;
  /** The seal interval [start, end) whose batch holds the events: the manifest with this start. */
  batch: { start: string; end: string };
  count: number;
  /** The accepted events, in journal (and so batch) order. */
  event_ids: string[];
  /** SHA-256 over the concatenated RFC 9162 leaf hashes (SHA-256(0x00 ‖ canonical JSON)) of the events, in order: the bytes the sealer hashes. */
  leaves_sha256: string;
  key_id: string;
  alg: KeyAlgorithm;
  issued_at: string;
  /** Base64 DER, over the canonical JSON of every other field (like a manifest). */
  signature: string;
}

/** The leaf hashes of events as the sealer will hash them (32 bytes each, in order). */
export function eventLeafHashes(events: readonly unknown[]): Buffer {
  const text = "\n" + events.map((e) => canonicalJson(e) + "\n").join("");
  return hashBatch(Buffer.from(text, "utf8"), 1).leaves;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export async function signReceipt(
  events: readonly NormalizedEvent[],
  receivedAt: string,
  batch: { start: number; end: number },
  signer: Signer,
  now: number = Date.now(),
): Promise<Receipt> {
  const unsigned: Omit<Receipt, "signature"> = {
    format: RECEIPT_FORMAT,
    received_at: receivedAt,
    batch: { start: new Date(batch.start).toISOString(), end: new Date(batch.end).toISOString() },
    count: events.length,
    event_ids: events.map((e) => e.event_id),
    leaves_sha256: sha256(eventLeafHashes(events)),
    key_id: signer.keyId,
    alg: signer.algorithm,
    issued_at: new Date(now).toISOString(),
  };
  return (await signDocument<Receipt>(unsigned, signer)).doc;
}

export interface ReceiptCheck {
  ok: boolean;
  /** The manifest (batch) sequence number the receipt's interval was sealed as, once found. */
  seq: number | null;
  batch: string | null;
  events: number;
  /** Events whose inclusion proof against the manifest's root verified. */
  proven: number;
  anchor: "checked" | "not_checked";
  problems: string[];
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const HEX64 = /^[0-9a-f]{64}$/;

/** The first shape error of a receipt (field named), or the receipt. */
export function parseReceipt(v: unknown): Receipt | string {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return "receipt: not a JSON object";
  const r = v as Record<string, unknown>;
  const bad = (field: string, want: string) => `receipt field ${field}: expected ${want}, got ${JSON.stringify(r[field])?.slice(0, 80)}`;
  if (r.format !== RECEIPT_FORMAT) return bad("format", JSON.stringify(RECEIPT_FORMAT));
  for (const f of ["received_at", "issued_at"]) if (typeof r[f] !== "string" || !ISO.test(r[f] as string)) return bad(f, "an ISO 8601 UTC time");
  const b = r.batch as Record<string, unknown> | undefined;
  if (!b || typeof b !== "object" || typeof b.start !== "string" || typeof b.end !== "string" || !ISO.test(b.start) || !ISO.test(b.end) || Date.parse(b.end) <= Date.parse(b.start)) return bad("batch", "{start, end}, ISO times with start < end");
  if (!Array.isArray(r.event_ids) || r.event_ids.length === 0 || r.event_ids.some((id) => typeof id !== "string" || id.length === 0)) return bad("event_ids", "a non-empty array of event ids");
  if (r.count !== r.event_ids.length) return bad("count", `the number of event_ids (${r.event_ids.length})`);
  for (const f of ["leaves_sha256", "key_id"]) if (typeof r[f] !== "string" || !HEX64.test(r[f] as string)) return bad(f, "64 hex digits");
  if (typeof r.alg !== "string") return bad("alg", "a key algorithm");
  if (typeof r.signature !== "string" || r.signature.length === 0) return bad("signature", "base64");
  return r as unknown as Receipt;
}

/**
 * Confirms a receipt against a WORM copy: its signature by a stored Log
 * Signing certificate (chaining to `ca` when given), the sealed manifest of
 * its interval (signature, interval), the batch file against the manifest's
 * root, and each event: present, in the receipt's order, its leaf hash in the
 * receipt's digest, its inclusion proof leading to the signed root.
 */
export async function verifyReceipt(input: unknown, options: { worm: string | WormStore; ca?: string }): Promise<ReceiptCheck> {
  const worm = typeof options.worm === "string" ? new DirectoryWorm(options.worm) : options.worm;
  const anchor = options.ca !== undefined ? "checked" : "not_checked";
  const problems: string[] = [];
  const result = (seq: number | null, batch: string | null, proven = 0): ReceiptCheck => ({
    ok: problems.length === 0,
    seq,
    batch,
    events: Array.isArray((input as Receipt)?.event_ids) ? (input as Receipt).event_ids.length : 0,
    proven,
    anchor,
    problems,
  });
  const receipt = parseReceipt(input);
  if (typeof receipt === "string") {
    problems.push(receipt);
    return result(null, null);
  }
  const keys = await loadStoredKeys(worm);
  const anchors = options.ca !== undefined ? pemCertificates(options.ca) : undefined;
  const trusted = (key: StoredKey, at: string, what: string): void => {
    if (!anchors) return;
    const v = validatePath(key, anchors);
    if (typeof v === "string") problems.push(`${what}: ${v}`);
    else if (Date.parse(at) < v.notBefore.getTime() || Date.parse(at) > v.notAfter.getTime()) problems.push(`${what}: signed at ${at}, outside the signing certificate's validity`);
  };
  const signedBy = (doc: Receipt | Manifest, what: string): StoredKey | undefined => {
    const candidates = keys.byId.get(doc.key_id) ?? [];
    if (candidates.length === 0) {
      problems.push(`${what} is signed by key ${doc.key_id}, which has no certificate in ${worm.location}/keys (unknown key)`);
      return undefined;
    }
    const key = candidates.find((k) => signatureValid(doc, k.publicKey));
    if (!key) problems.push(`${what}'s signature does not verify with the Log Signing certificate of key ${doc.key_id.slice(0, 16)}… (the ${what} was modified or not signed by it)`);
    return key;
  };
  const receiptKey = signedBy(receipt, "receipt");
  if (receiptKey) trusted(receiptKey, receipt.issued_at, "receipt");

  // The manifest whose interval starts at the receipt's: manifests are in time order.
  const names = (await worm.list("manifests/")).filter((n) => MANIFEST_FILE.test(n));
  const start = Date.parse(receipt.batch.start);
  const manifestAt = async (i: number): Promise<Manifest | undefined> => {
    const bytes = await worm.get(names[i]!);
    const m = bytes ? parseManifest(bytes) : "missing";
    if (typeof m === "string") {
      problems.push(`${names[i]}: ${m} (run viw verify-logs)`);
      return undefined;
    }
    return m;
  };
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const m = await manifestAt(mid);
    if (!m) return result(null, null);
    if (Date.parse(m.end) <= start) lo = mid + 1;
    else hi = mid;
  }
  const m = lo < names.length ? await manifestAt(lo) : undefined;
  if (!m) {
    if (problems.length === 0) problems.push(`batch ${receipt.batch.start} to ${receipt.batch.end} is not sealed in ${worm.location} yet (the chain has ${names.length} manifests)`);
    return result(null, null);
  }
  if (m.start !== receipt.batch.start || m.end !== receipt.batch.end) {
    problems.push(`no sealed batch for ${receipt.batch.start} to ${receipt.batch.end}: manifest ${m.seq} covers ${m.start} to ${m.end}`);
    return result(m.seq, m.batch ?? null);
  }
  if (m.seq !== lo) problems.push(`${names[lo]} holds manifest ${m.seq}: the chain is damaged (run viw verify-logs)`);
  const manifestKey = signedBy(m, `manifest ${m.seq}`);
  if (manifestKey && manifestKey !== receiptKey) trusted(manifestKey, m.sealed_at, `manifest ${m.seq}`);
  if (!m.batch) {
    problems.push(`batch ${m.seq} (${m.start}) is sealed with no events, but the receipt names ${receipt.count}`);
    return result(m.seq, null);
  }
  const content = await worm.get(m.batch);
  if (!content) {
    problems.push(`batch file ${m.batch} is missing (${m.expire_before && Date.parse(m.end) <= Date.parse(m.expire_before) ? "expired by retention" : "deleted"})`);
    return result(m.seq, m.batch);
  }
  const { leaves, root } = hashBatch(Buffer.concat([Buffer.from([0x0a]), content]), 1);
  if (root.toString("hex") !== m.root) {
    problems.push(`batch file ${m.batch} does not match the Merkle root its signed manifest ${m.seq} carries (modified batch; run viw verify-logs)`);
    return result(m.seq, m.batch);
  }

  const where = new Map<string, number[]>();
  eventIdsOf(content).forEach((id, i) => {
    if (!id) return;
    const list = where.get(id);
    if (list) list.push(i);
    else where.set(id, [i]);
  });
  const missing = receipt.event_ids.filter((id) => !where.has(id));
  for (const id of missing) problems.push(`event ${JSON.stringify(id)} is not in batch ${m.seq} (${m.batch})`);
  const digestOf = (idx: readonly number[]) => {
    const d = createHash("sha256");
    for (const i of idx) d.update(leaves.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
    return d.digest("hex");
  };
  // An id can repeat (a shipper resending a request): the receipt's events are the r-th copies for some r; the digest tells which.
  let indices: number[] = [];
  if (missing.length === 0) {
    const copies = receipt.event_ids.reduce((n, id) => Math.max(n, where.get(id)!.length), 1);
    for (let r = 0; r < copies; r++) {
      const pick = receipt.event_ids.map((id) => {
        const list = where.get(id)!;
        return list[Math.min(r, list.length - 1)]!;
      });
      if (r === 0 || digestOf(pick) === receipt.leaves_sha256) indices = pick;
      if (digestOf(indices) === receipt.leaves_sha256) break;
    }
    if (indices.some((i, k) => k > 0 && i <= indices[k - 1]!)) problems.push(`the receipt's events are not in the order batch ${m.seq} holds them`);
    if (digestOf(indices) !== receipt.leaves_sha256) problems.push(`the sealed events differ from the ones the receipt signed (leaves_sha256 mismatch): an event was modified after it was received, or the receipt was altered`);
  }
  let proven = 0;
  const rootBytes = Buffer.from(m.root, "hex");
  const paths = inclusionProofs(leaves, indices);
  indices.forEach((i, k) => {
    if (verifyInclusion(i, m.count, leaves.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE), paths[k]!, rootBytes)) proven++;
    else problems.push(`event at leaf ${i} of batch ${m.seq}: inclusion proof does not lead to the signed root`);
  });
  return result(m.seq, m.batch, proven);
}
