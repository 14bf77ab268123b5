/**
 * The sealed log's on-disk format (see README.md in this folder): batch files
 * of canonical JSON events, signed manifests linked by hash, signed
 * checkpoints over the manifests. Everything signed or hashed is canonical
 * JSON (RFC 8785 via engine/config canonicalJson: keys sorted by UTF-16 code
 * units, no insignificant whitespace, ECMAScript number and string forms,
 * UTF-8), so any verifier can recompute the bytes.
 */
import { verify as verifySignature, type KeyObject } from "node:crypto";
import { canonicalJson } from "../../config/index.js";
import type { KeyAlgorithm } from "../../config/index.js";
import type { Signer } from "../../pki/signer.js";
import { HASH_SIZE, leafHashesInPlace, native, rootFromLeafHashesJs, sha256Hex } from "./merkle.js";

export const FORMAT = "viw-log-chain/1";
export const EMPTY_SHA256 = sha256Hex("");

export interface KeyChange {
  /** The key that signed the previous manifest. */
  from: string;
  /** The key that signs this one (its certificate is in keys/). */
  to: string;
  /** SHA-256 of the DER certificate of the new key. */
  certificate_sha256: string;
}

/** One seal interval. `signature` is over the canonical JSON of every other field. */
export interface Manifest {
  format: typeof FORMAT;
  seq: number;
  /** Interval [start, end), ISO 8601 UTC; end - start is the seal interval (longer for a run of empty intervals sealed after downtime). */
  start: string;
  end: string;
  count: number;
  /** RFC 9162 Merkle root of the events, hex. */
  root: string;
  /** WORM name of the batch file; absent when count is 0. */
  batch?: string;
  batch_sha256: string;
  /** SHA-256 of the previous manifest file, hex; null for seq 0. */
  prev: string | null;
  key_id: string;
  alg: KeyAlgorithm;
  key_change?: KeyChange;
  /** Batch files of intervals ending at or before this time may have been removed by retention. */
  expire_before?: string;
  /** The sealer's journal position: every journal record up to here with an interval before `end` is sealed (restart state). */
  journal_through: number;
  sealed_at: string;
  signature: string;
}

/** A signed tree head over manifests 0..size-1 (leaf i = the bytes of manifest i). */
export interface Checkpoint {
  format: typeof FORMAT;
  kind: "checkpoint";
  size: number;
  root: string;
  /** SHA-256 of manifest size-1 and its interval end. */
  last: string;
  end: string;
  /** The tree's perfect-subtree roots (hex, largest first): lets the sealer resume without re-reading every manifest. */
  frontier?: string[];
  key_id: string;
  alg: KeyAlgorithm;
  made_at: string;
  signature: string;
}

const pad = (n: number) => String(n).padStart(12, "0");
export const manifestName = (seq: number) => `manifests/${pad(seq)}.json`;
export const batchName = (seq: number, sha256: string) => `batches/${pad(seq)}-${sha256.slice(0, 16)}.jsonl`;
export const checkpointName = (size: number) => `checkpoints/${pad(size)}.json`;
export const certificateName = (keyId: string, certSha256: string) => `keys/${keyId}-${certSha256.slice(0, 16)}.pem`;
export const MANIFEST_FILE = /^manifests\/([0-9]{12})\.json$/;
export const CHECKPOINT_FILE = /^checkpoints\/([0-9]{12})\.json$/;
export const BATCH_FILE = /^batches\/([0-9]{12})-[0-9a-f]{16}\.jsonl$/;

/** The bytes a manifest or checkpoint signature covers. */
export function signingInput(doc: object): Buffer {
  const { signature: _omit, ...rest } = doc as { signature?: string };
  return Buffer.from(canonicalJson(rest), "utf8");
}

/** A signed chain document: a manifest, a checkpoint or an ingest receipt. */
export interface SignedDocument {
  alg: KeyAlgorithm;
  signature: string;
}

export async function signDocument<T extends SignedDocument>(unsigned: Omit<T, "signature">, signer: Signer): Promise<{ doc: T; bytes: Buffer }> {
  const signature = (await signer.sign(signingInput(unsigned))).toString("base64");
  const doc = { ...unsigned, signature } as T;
  return { doc, bytes: Buffer.from(canonicalJson(doc), "utf8") };
}

/** The digest the Signer contract applies per algorithm (none for Ed25519). */
function hashOf(alg: KeyAlgorithm): string | null {
  return alg === "ed25519" ? null : alg === "ecdsa-p384" ? "sha384" : "sha256";
}

export function signatureValid(doc: SignedDocument, publicKey: KeyObject): boolean {
  try {
    return verifySignature(hashOf(doc.alg), signingInput(doc), { key: publicKey, dsaEncoding: "der" }, Buffer.from(doc.signature, "base64"));
  } catch {
    return false;
  }
}

/** A batch file ready to write: `bytes` is what goes to WORM, `leaves` its leaf hashes. */
export interface EncodedBatch {
  bytes: Buffer;
  count: number;
  root: Buffer;
  sha256: string;
}

/**
 * Events as the batch file holds them: one canonical JSON object per line,
 * each line ending in LF (canonical JSON has no raw LF, so lines are records).
 * `lines` are the events' canonical JSON texts (the journal holds events in
 * that form). The buffer keeps one spare byte before the file so every record
 * has a byte before it the in-place leaf hashing can borrow.
 */
export function encodeBatch(lines: readonly string[]): EncodedBatch {
  // In chunks: one string for a whole batch would hit V8's maximum string length (~512 M characters) near a million large events.
  const chunks: Buffer[] = [Buffer.from([0x0a])];
  let text = "";
  for (const line of lines) {
    text += line + "\n";
    if (text.length > 1 << 23) {
      chunks.push(Buffer.from(text, "utf8"));
      text = "";
    }
  }
  chunks.push(Buffer.from(text, "utf8"));
  const whole = Buffer.concat(chunks);
  const { root } = hashBatch(whole, 1);
  const bytes = whole.subarray(1);
  return { bytes, count: lines.length, root, sha256: sha256Hex(bytes) };
}

/** Start and end offsets of the LF-terminated records of buf[from..]. */
export function recordOffsets(buf: Buffer, from: number): { starts: number[]; ends: number[]; unterminated: boolean } {
  const starts: number[] = [];
  const ends: number[] = [];
  let at = from;
  for (;;) {
    if (at >= buf.length) return { starts, ends, unterminated: false };
    const lf = buf.indexOf(0x0a, at);
    if (lf < 0) {
      starts.push(at);
      ends.push(buf.length);
      return { starts, ends, unterminated: true };
    }
    starts.push(at);
    ends.push(lf);
    at = lf + 1;
  }
}

/**
 * Merkle root of the records in buf[from..]; buf[from-1] must exist (it is
 * borrowed for the 0x00 leaf prefix and restored).
 */
export function hashBatch(buf: Buffer, from: number): { root: Buffer; leaves: Buffer; count: number; unterminated: boolean } {
  if (native) {
    const leaves = native.leafHashesOfLines(buf, from);
    return { root: native.rootOfLeaves(leaves), leaves, count: leaves.length / HASH_SIZE, unterminated: buf.length > from && buf[buf.length - 1] !== 0x0a };
  }
  return hashBatchJs(buf, from);
}

export function hashBatchJs(buf: Buffer, from: number): { root: Buffer; leaves: Buffer; count: number; unterminated: boolean } {
  const { starts, ends, unterminated } = recordOffsets(buf, from);
  const leaves = leafHashesInPlace(buf, starts, ends);
  return { root: rootFromLeafHashesJs(leaves), leaves, count: starts.length, unterminated };
}

/** The interval an instant falls in, as epoch ms of its start. */
export function intervalStart(ms: number, interval: number): number {
  return Math.floor(ms / interval) * interval;
}
