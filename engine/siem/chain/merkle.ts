/**
 * RFC 9162 §2.1 Merkle trees: leaf = SHA-256(0x00 ‖ d), node = SHA-256(0x01 ‖ l ‖ r),
 * the tree over n leaves splits at the largest power of two below n. Written
 * here rather than taken from a package because it is the sealer's hot path
 * (millions of leaves a minute) and the verifier's; the hashing itself is
 * node:crypto (OpenSSL).
 *
 * Hashes are 32-byte Buffers; a list of n hashes is one Buffer of 32·n bytes
 * so a million-leaf tree is two allocations, not a million.
 */
import { createHash, hash as oneShotHash } from "node:crypto";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { packageRoot } from "../../config/index.js";

export const HASH_SIZE = 32;
const EMPTY_ROOT = createHash("sha256").digest();

/** node:crypto's one-shot hash (Node ≥ 20.12) skips the Hash object: ~30% less per call. */
const sha256: (data: Uint8Array) => Buffer =
  typeof oneShotHash === "function"
    ? (data) => oneShotHash("sha256", data, "buffer") as unknown as Buffer
    : (data) => createHash("sha256").update(data).digest();

/**
 * The optional C hot path (native/merkle.c, built with `node-gyp rebuild -C
 * engine/siem/chain/native`): whole batches in one call instead of one
 * binding call per hash. Absent (not built, or VIW_MERKLE_NATIVE=0), the JS
 * functions here do the same work, slower.
 */
interface NativeMerkle {
  leafHashesOfLines(buf: Buffer, from: number): Buffer;
  rootOfLeaves(leaves: Buffer): Buffer;
}

function loadNative(): NativeMerkle | undefined {
  if (process.env.VIW_MERKLE_NATIVE === "0") return undefined;
  try {
    const file = join(packageRoot(), "engine", "siem", "chain", "native", "build", "Release", "viw_merkle.node");
    return existsSync(file) ? (createRequire(import.meta.url)(file) as NativeMerkle) : undefined;
  } catch {
    return undefined;
  }
}

export const native: NativeMerkle | undefined = loadNative();

export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export function leafHash(data: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(data.length + 1);
  buf[0] = 0;
  buf.set(data, 1);
  return sha256(buf);
}

const nodeInput = Buffer.alloc(1 + 2 * HASH_SIZE);
nodeInput[0] = 1;

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  nodeInput.set(left, 1);
  nodeInput.set(right, 1 + HASH_SIZE);
  return sha256(nodeInput);
}

/**
 * Leaf hashes of the records of `text` at [starts[i], ends[i]). Each record
 * must be preceded by one byte the function may borrow (the batch file's
 * newline, or a spare first byte): it writes the 0x00 prefix there, hashes in
 * place and restores it, so no record is copied.
 */
export function leafHashesInPlace(text: Buffer, starts: ArrayLike<number>, ends: ArrayLike<number>): Buffer {
  const n = starts.length;
  const out = Buffer.allocUnsafe(n * HASH_SIZE);
  for (let i = 0; i < n; i++) {
    const s = starts[i]! - 1;
    const saved = text[s]!;
    text[s] = 0;
    out.set(sha256(text.subarray(s, ends[i]!)), i * HASH_SIZE);
    text[s] = saved;
  }
  return out;
}

/** Leaf hashes of separate records (the general, copying path). */
export function leafHashes(records: readonly Uint8Array[]): Buffer {
  const out = Buffer.allocUnsafe(records.length * HASH_SIZE);
  records.forEach((r, i) => out.set(leafHash(r), i * HASH_SIZE));
  return out;
}

export function hashAt(hashes: Buffer, i: number): Buffer {
  return hashes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
}

/**
 * The next level up: adjacent pairs hashed, an odd last node carried up as is.
 * Carrying the odd node is what makes the bottom-up tree equal the RFC's
 * split-at-power-of-two definition.
 */
function levelUp(level: Buffer): Buffer {
  const n = level.length / HASH_SIZE;
  const up = Buffer.allocUnsafe(Math.ceil(n / 2) * HASH_SIZE);
  let j = 0;
  for (let i = 0; i + 1 < n; i += 2, j++) up.set(nodeHash(hashAt(level, i), hashAt(level, i + 1)), j * HASH_SIZE);
  if (n % 2 === 1) level.copy(up, j * HASH_SIZE, (n - 1) * HASH_SIZE, n * HASH_SIZE);
  return up;
}

/** MTH over leaf hashes (32·n bytes); SHA-256("") for the empty tree. */
export function rootFromLeafHashes(leaves: Buffer): Buffer {
  return native ? native.rootOfLeaves(leaves) : rootFromLeafHashesJs(leaves);
}

export function rootFromLeafHashesJs(leaves: Buffer): Buffer {
  if (leaves.length === 0) return Buffer.from(EMPTY_ROOT);
  let level = leaves;
  while (level.length > HASH_SIZE) level = levelUp(level);
  return Buffer.from(level);
}

export function merkleRoot(records: readonly Uint8Array[]): Buffer {
  return rootFromLeafHashes(leafHashes(records));
}

/** RFC 9162 §2.1.3.1 PATH(m, D[n]), from the leaf hashes. */
export function inclusionProof(leaves: Buffer, index: number): Buffer[] {
  const n = leaves.length / HASH_SIZE;
  if (!Number.isInteger(index) || index < 0 || index >= n) throw new RangeError(`leaf index ${index} outside a tree of ${n}`);
  const path: Buffer[] = [];
  let level = leaves;
  let i = index;
  while (level.length > HASH_SIZE) {
    const size = level.length / HASH_SIZE;
    const sibling = i ^ 1;
    if (sibling < size) path.push(Buffer.from(hashAt(level, sibling)));
    level = levelUp(level);
    i >>= 1;
  }
  return path;
}

/** Audit paths of several leaves of one tree: the levels are built once (PATH per leaf would rebuild them each time). */
export function inclusionProofs(leaves: Buffer, indices: readonly number[]): Buffer[][] {
  const n = leaves.length / HASH_SIZE;
  for (const index of indices) if (!Number.isInteger(index) || index < 0 || index >= n) throw new RangeError(`leaf index ${index} outside a tree of ${n}`);
  const paths: Buffer[][] = indices.map(() => []);
  const at = [...indices];
  let level = leaves;
  while (level.length > HASH_SIZE) {
    const size = level.length / HASH_SIZE;
    for (let k = 0; k < at.length; k++) {
      const sibling = at[k]! ^ 1;
      if (sibling < size) paths[k]!.push(Buffer.from(hashAt(level, sibling)));
      at[k] = at[k]! >> 1;
    }
    level = levelUp(level);
  }
  return paths;
}

/** RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or undefined if the path has the wrong shape. */
export function rootFromInclusionProof(index: number, size: number, leaf: Uint8Array, path: readonly Uint8Array[]): Buffer | undefined {
  if (!Number.isInteger(index) || !Number.isInteger(size) || index < 0 || index >= size) return undefined;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of path) {
    if (p.length !== HASH_SIZE || sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

export function verifyInclusion(index: number, size: number, leaf: Uint8Array, path: readonly Uint8Array[], root: Uint8Array): boolean {
  const r = rootFromInclusionProof(index, size, leaf, path);
  return r !== undefined && r.equals(root);
}

function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function subtreeRoot(leaves: Buffer, from: number, to: number): Buffer {
  return rootFromLeafHashes(leaves.subarray(from * HASH_SIZE, to * HASH_SIZE));
}

/** RFC 9162 §2.1.4.1 PROOF(m, D[n]): that the first m leaves are a prefix of the n. */
export function consistencyProof(leaves: Buffer, m: number): Buffer[] {
  const n = leaves.length / HASH_SIZE;
  if (!Number.isInteger(m) || m < 1 || m > n) throw new RangeError(`consistency from ${m} to ${n}`);
  const proof: Buffer[] = [];
  // SUBPROOF(m, D[from:to], b), iteratively.
  let from = 0;
  let to = n;
  let b = true;
  let mm = m;
  for (;;) {
    const size = to - from;
    if (mm === size) {
      if (!b) proof.push(subtreeRoot(leaves, from, to));
      break;
    }
    const k = largestPowerOfTwoBelow(size);
    if (mm <= k) {
      proof.push(subtreeRoot(leaves, from + k, to));
      to = from + k;
    } else {
      proof.push(subtreeRoot(leaves, from, from + k));
      from += k;
      mm -= k;
      b = false;
    }
  }
  return proof.reverse();
}

/** RFC 9162 §2.1.4.2. */
export function verifyConsistency(m: number, n: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 1 || m > n) return false;
  if (m === n) return proof.length === 0 && Buffer.from(oldRoot).equals(newRoot);
  let path = [...proof];
  if (path.some((p) => p.length !== HASH_SIZE) || path.length === 0) return false;
  if ((m & (m - 1)) === 0) path = [oldRoot, ...path];
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}

/**
 * The right edge of a growing tree: the roots of its perfect subtrees, largest
 * first (one per set bit of the size). Enough to append and to compute the
 * root, so the sealer resumes from a checkpoint in O(log n) instead of
 * re-reading every manifest.
 */
export class MerkleFrontier {
  private constructor(
    public size: number,
    private readonly nodes: Buffer[],
  ) {}

  static empty(): MerkleFrontier {
    return new MerkleFrontier(0, []);
  }

  static fromHex(size: number, hex: readonly string[]): MerkleFrontier {
    let bits = 0;
    for (let s = size; s > 0; s = Math.floor(s / 2)) bits += s % 2;
    if (!Number.isSafeInteger(size) || size < 0 || hex.length !== bits || hex.some((h) => !/^[0-9a-f]{64}$/.test(h))) throw new Error(`not a Merkle frontier of size ${size}`);
    return new MerkleFrontier(size, hex.map((h) => Buffer.from(h, "hex")));
  }

  append(leaf: Buffer): void {
    let node = leaf;
    // Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
    for (let s = this.size; s % 2 === 1; s = Math.floor(s / 2)) node = nodeHash(this.nodes.pop()!, node);
    this.nodes.push(Buffer.from(node));
    this.size++;
  }

  root(): Buffer {
    if (this.nodes.length === 0) return Buffer.from(EMPTY_ROOT);
    let r = this.nodes[this.nodes.length - 1]!;
    for (let i = this.nodes.length - 2; i >= 0; i--) r = nodeHash(this.nodes[i]!, r);
    return Buffer.from(r);
  }

  toHex(): string[] {
    return this.nodes.map((n) => n.toString("hex"));
  }
}
