/**
 * RFC 6962/9162 known answers. Source of the vectors: the Certificate
 * Transparency reference test data (google/certificate-transparency
 * merkle_tree_test.cc), as republished in transparency-dev/merkle
 * testonly/constants.go: the 8 standard leaf inputs, the root for each tree
 * size 0..8, inclusion proofs and consistency proofs.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  consistencyProof,
  inclusionProof,
  inclusionProofs,
  leafHash,
  leafHashes,
  leafHashesInPlace,
  MerkleFrontier,
  merkleRoot,
  native,
  rootFromLeafHashes,
  rootFromLeafHashesJs,
  verifyConsistency,
  verifyInclusion,
} from "../../../engine/siem/chain/merkle.js";
import { hashBatch, hashBatchJs } from "../../../engine/siem/chain/format.js";

const LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"].map((h) => Buffer.from(h, "hex"));
const ROOTS = [
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];
// [leaf index, tree size, path]
const INCLUSION: [number, number, string[]][] = [
  [0, 1, []],
  [0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]],
  [5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]],
  [2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]],
  [1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]],
];
// [old size, new size, proof]
const CONSISTENCY: [number, number, string[]][] = [
  [1, 1, []],
  [1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]],
  [6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]],
  [2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]],
];
const hex = (b: Buffer[]) => b.map((x) => x.toString("hex"));

describe("RFC 9162 Merkle tree", () => {
  it("gives the CT reference root for every size 0..8", () => {
    for (let n = 0; n <= 8; n++) {
      expect(merkleRoot(LEAVES.slice(0, n)).toString("hex"), `size ${n}`).toBe(ROOTS[n]);
      expect(rootFromLeafHashesJs(leafHashes(LEAVES.slice(0, n))).toString("hex"), `js, size ${n}`).toBe(ROOTS[n]);
    }
  });

  it.runIf(native)("the C hot path (native/) agrees with the JS reference on any batch (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: "grapheme", maxLength: 40 }).map((s) => s.replace(/\n/g, " ")), { maxLength: 200 }), fc.boolean(), (lines, terminated) => {
        const text = lines.join("\n") + (terminated && lines.length ? "\n" : "");
        const a = Buffer.from("\n" + text);
        const b = Buffer.from(a);
        const n = hashBatch(a, 1);
        const j = hashBatchJs(b, 1);
        expect(n.leaves.equals(j.leaves)).toBe(true);
        expect(n.root.equals(j.root)).toBe(true);
        expect([n.count, n.unterminated]).toEqual([j.count, j.unterminated]);
        expect(rootFromLeafHashes(j.leaves).equals(rootFromLeafHashesJs(j.leaves))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("produces and verifies the CT reference inclusion proofs", () => {
    for (const [index, size, path] of INCLUSION) {
      const leaves = leafHashes(LEAVES.slice(0, size));
      expect(hex(inclusionProof(leaves, index))).toEqual(path);
      const root = Buffer.from(ROOTS[size]!, "hex");
      const proof = path.map((p) => Buffer.from(p, "hex"));
      expect(verifyInclusion(index, size, leafHash(LEAVES[index]!), proof, root)).toBe(true);
      // the same proof for the wrong leaf, index or size fails
      expect(verifyInclusion(index, size, leafHash(Buffer.from("ff", "hex")), proof, root)).toBe(false);
      if (size > 1) expect(verifyInclusion((index + 1) % size, size, leafHash(LEAVES[index]!), proof, root)).toBe(false);
      if (size < 8) expect(verifyInclusion(index, size + 1, leafHash(LEAVES[index]!), proof, Buffer.from(ROOTS[size + 1]!, "hex"))).toBe(false);
    }
  });

  it("produces and verifies the CT reference consistency proofs", () => {
    for (const [m, n, proof] of CONSISTENCY) {
      const leaves = leafHashes(LEAVES.slice(0, n));
      expect(hex(consistencyProof(leaves, m))).toEqual(proof);
      const p = proof.map((x) => Buffer.from(x, "hex"));
      expect(verifyConsistency(m, n, Buffer.from(ROOTS[m]!, "hex"), Buffer.from(ROOTS[n]!, "hex"), p)).toBe(true);
      if (m !== n) expect(verifyConsistency(m, n, Buffer.from(ROOTS[m + 1]!, "hex"), Buffer.from(ROOTS[n]!, "hex"), p)).toBe(false);
    }
  });

  it("hashes records in place exactly as one by one, leaving the text unchanged", () => {
    const records = ["{\"a\":1}", "{\"b\":\"é\"}", "", "{}"];
    const text = Buffer.from("\n" + records.join("\n") + "\n");
    const before = Buffer.from(text);
    const starts: number[] = [];
    const ends: number[] = [];
    let at = 1;
    for (const r of records) {
      starts.push(at);
      ends.push(at + Buffer.byteLength(r));
      at += Buffer.byteLength(r) + 1;
    }
    expect(leafHashesInPlace(text, starts, ends).equals(leafHashes(records.map((r) => Buffer.from(r))))).toBe(true);
    expect(text.equals(before)).toBe(true);
  });

  it("a frontier grown leaf by leaf, and one restored from its hex, has the RFC root at every size", () => {
    const f = MerkleFrontier.empty();
    expect(f.root().toString("hex")).toBe(ROOTS[0]);
    for (let n = 1; n <= 8; n++) {
      f.append(leafHash(LEAVES[n - 1]!));
      expect(f.root().toString("hex"), `size ${n}`).toBe(ROOTS[n]);
      expect(MerkleFrontier.fromHex(n, f.toHex()).root().toString("hex")).toBe(ROOTS[n]);
    }
    const many = Array.from({ length: 1000 }, (_, i) => Buffer.from(String(i)));
    const g = MerkleFrontier.empty();
    many.forEach((r, i) => {
      g.append(leafHash(r));
      if ([1, 2, 3, 63, 64, 65, 511, 999].includes(i)) expect(g.root().equals(merkleRoot(many.slice(0, i + 1)))).toBe(true);
    });
    expect(() => MerkleFrontier.fromHex(3, [ROOTS[1]!])).toThrow(/not a Merkle frontier/);
  });

  it("every inclusion and consistency proof of random trees verifies (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 8 }), { minLength: 1, maxLength: 70 }), fc.nat(), fc.nat(), (records, a, b) => {
        const leaves = leafHashes(records);
        const root = rootFromLeafHashes(leaves);
        const i = a % records.length;
        expect(verifyInclusion(i, records.length, leafHash(records[i]!), inclusionProof(leaves, i), root)).toBe(true);
        const m = (b % records.length) + 1;
        const oldRoot = rootFromLeafHashes(leaves.subarray(0, m * 32));
        expect(verifyConsistency(m, records.length, oldRoot, root, consistencyProof(leaves, m))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("audit paths of several leaves at once are each leaf's RFC 9162 path (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 8 }), { minLength: 1, maxLength: 70 }), fc.array(fc.nat(), { maxLength: 10 }), (records, picks) => {
        const leaves = leafHashes(records);
        const indices = picks.map((p) => p % records.length);
        expect(inclusionProofs(leaves, indices).map(hex)).toEqual(indices.map((i) => hex(inclusionProof(leaves, i))));
      }),
      { numRuns: 200 },
    );
    expect(() => inclusionProofs(leafHashes([Buffer.from("a")]), [1])).toThrow(/outside a tree of 1/);
  });
});
