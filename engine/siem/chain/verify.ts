/**
 * End-to-end verification of a WORM copy: every manifest's form, signature,
 * key and link; every batch file's hash, event count and Merkle root; every
 * checkpoint (stored, or one the verifier kept) against the manifests. Needs
 * nothing but the WORM directory and, to check the keys, the CA chain.
 */
import { createHash, type X509Certificate } from "node:crypto";
import { canonicalJson } from "../../config/index.js";
import {
  CHECKPOINT_FILE,
  EMPTY_SHA256,
  FORMAT,
  hashBatch,
  MANIFEST_FILE,
  signatureValid,
  type Checkpoint,
  type Manifest,
} from "./format.js";
import { loadStoredKeys, pemCertificates, validatePath, type StoredKey } from "./keys.js";
import { HASH_SIZE, leafHash, MerkleFrontier, rootFromLeafHashes } from "./merkle.js";
import { DirectoryWorm, type WormStore } from "./worm.js";

export type ProblemKind =
  | "modified_event"
  | "missing_batch"
  | "reordered"
  | "truncated"
  | "bad_signature"
  | "unknown_key"
  | "key_not_valid"
  | "broken_link"
  | "root_mismatch"
  | "checkpoint_mismatch"
  | "malformed";

export interface Problem {
  kind: ProblemKind;
  /** The manifest/batch sequence number the problem is at (null when it is not one batch's). */
  seq: number | null;
  /** The WORM object concerned. */
  object: string;
  message: string;
}

export interface KeyReport {
  key_id: string;
  subject: string;
  not_before: string;
  not_after: string;
  /** true: chains to --ca; false: does not; null: no --ca given. */
  trusted: boolean | null;
  reason?: string;
}

export interface VerifyReport {
  ok: boolean;
  worm: string;
  /** "checked" with --ca; otherwise the keys are the stored certificates, unchecked. */
  anchor: "checked" | "not_checked";
  manifests: number;
  batches: number;
  events: number;
  bytes: number;
  /** Batch files removed by retention (allowed by a signed manifest). */
  expired: number;
  from: string | null;
  to: string | null;
  keys: KeyReport[];
  checkpoints: { stored: number; verified: number; external: { size: number; ok: boolean } | null };
  first_problem: Problem | null;
  problems: Problem[];
  notes: string[];
}

export interface VerifyOptions {
  /** The WORM directory or store. */
  worm: string | WormStore;
  /** PEM text of the CA chain that issued the Log Signing Key certificates. */
  ca?: string;
  /** JSON text of a checkpoint the verifier kept from an earlier run or the daemon. */
  checkpoint?: string;
  /** Called after each manifest with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

const MAX_PROBLEMS = 1000;

interface Loaded {
  name: string;
  seq: number;
  bytes: Buffer;
  hash: string;
  m?: Manifest;
}

interface KeyTrust {
  keys: StoredKey[];
  /** Validity windows of the certificates that are acceptable (all stored ones without --ca). */
  windows: { notBefore: number; notAfter: number; certSha256: string }[];
  reason?: string;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export async function verifyChain(options: VerifyOptions): Promise<VerifyReport> {
  const worm = typeof options.worm === "string" ? new DirectoryWorm(options.worm) : options.worm;
  const problems: Problem[] = [];
  const bySeq = new Set<number>();
  const notes: string[] = [];
  const report = (p: Problem) => {
    // The first problem found at a batch explains it; later symptoms of the same cause would only repeat it.
    if (p.seq !== null && bySeq.has(p.seq)) return;
    if (p.seq !== null) bySeq.add(p.seq);
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };

  // Keys: the stored certificates, checked against the CA when one is given.
  const anchors: X509Certificate[] | undefined = options.ca !== undefined ? pemCertificates(options.ca) : undefined;
  if (anchors && anchors.length === 0) throw new Error("--ca: no PEM certificate in the file");
  const stored = await loadStoredKeys(worm);
  for (const p of stored.problems) notes.push(`${p.file}: ${p.message}`);
  const trust = new Map<string, KeyTrust>();
  const keyReports: KeyReport[] = [];
  for (const [keyId, keys] of stored.byId) {
    const t: KeyTrust = { keys, windows: [] };
    for (const k of keys) {
      const r: KeyReport = {
        key_id: keyId,
        subject: k.certificate.subject.replace(/\n/g, ", "),
        not_before: new Date(k.certificate.validFrom).toISOString(),
        not_after: new Date(k.certificate.validTo).toISOString(),
        trusted: null,
      };
      if (anchors) {
        const v = validatePath(k, anchors);
        if (typeof v === "string") {
          r.trusted = false;
          r.reason = v;
          t.reason = v;
        } else {
          r.trusted = true;
          t.windows.push({ notBefore: v.notBefore.getTime(), notAfter: v.notAfter.getTime(), certSha256: k.certSha256 });
        }
      } else {
        t.windows.push({ notBefore: Date.parse(k.certificate.validFrom), notAfter: Date.parse(k.certificate.validTo), certSha256: k.certSha256 });
      }
      keyReports.push(r);
    }
    trust.set(keyId, t);
  }
  if (!anchors) notes.push("trust anchor not checked: the keys are the certificates stored in the WORM directory (give --ca to check them against the CA)");

  /** Why a document signed by `keyId` at `at` cannot be accepted, or undefined. */
  const keyProblem = (doc: Manifest | Checkpoint, at: number, object: string, seq: number | null): Problem | undefined => {
    const t = trust.get(doc.key_id);
    if (!t) return { kind: "unknown_key", seq, object, message: `signed by key ${doc.key_id}, which has no certificate in keys/` };
    if (t.windows.length === 0) return { kind: "unknown_key", seq, object, message: `signed by key ${doc.key_id}, which is not trusted: ${t.reason}` };
    if (!t.keys.some((k) => signatureValid(doc, k.publicKey))) return { kind: "bad_signature", seq, object, message: `the signature by key ${doc.key_id} does not verify (the manifest was altered or forged)` };
    if (!t.windows.some((w) => at >= w.notBefore && at <= w.notAfter)) {
      return { kind: "key_not_valid", seq, object, message: `signed at ${new Date(at).toISOString()}, outside the validity of key ${doc.key_id}'s certificate` };
    }
    return undefined;
  };

  // Pass 1: manifests (small), so batch checks can recognise a batch that belongs elsewhere.
  const names = (await worm.list("manifests/")).filter((n) => {
    if (MANIFEST_FILE.test(n)) return true;
    notes.push(`${n}: not a manifest name, ignored`);
    return false;
  });
  const loaded: Loaded[] = [];
  // Manifests are small: read them 64 at a time so a long chain is not one file round trip after another.
  const contents: (Buffer | undefined)[] = [];
  for (let i = 0; i < names.length; i += 64) contents.push(...(await Promise.all(names.slice(i, i + 64).map((n) => worm.get(n)))));
  for (const [i, name] of names.entries()) {
    const seq = Number(MANIFEST_FILE.exec(name)![1]);
    const bytes = contents[i] ?? Buffer.alloc(0);
    const item: Loaded = { name, seq, bytes, hash: sha256(bytes) };
    const parsed = parseManifest(bytes);
    if (typeof parsed === "string") report({ kind: "malformed", seq, object: name, message: parsed });
    else item.m = parsed;
    loaded.push(item);
  }
  const sealedBy = new Map<string, number>(); // batch_sha256 -> seq it is recorded in
  let expireBefore = -Infinity;
  for (const l of loaded) {
    if (!l.m) continue;
    if (l.m.count > 0) sealedBy.set(l.m.batch_sha256, l.m.seq);
    const kp = keyProblem(l.m, Date.parse(l.m.sealed_at), l.name, l.seq);
    if (kp) {
      report(kp);
      l.m = { ...l.m, expire_before: undefined }; // an unverified manifest grants nothing
    }
    if (l.m.expire_before) expireBefore = Math.max(expireBefore, Date.parse(l.m.expire_before));
  }

  // Pass 2: the chain in order, each batch against its manifest.
  let events = 0;
  let bytes = 0;
  let batches = 0;
  let expired = 0;
  const leaves = new Map<number, Buffer>();
  let expected = 0;
  let prev: Loaded | undefined;
  const referenced = new Set<string>();
  /** A batch file with one spare byte before it (hashBatch borrows it), or undefined if absent. */
  const readBatch = async (m: Manifest | undefined): Promise<Buffer | undefined> => {
    if (!m?.batch) return undefined;
    if (worm instanceof DirectoryWorm) return worm.getWithSpare(m.batch, 1);
    const b = await worm.get(m.batch);
    return b && Buffer.concat([Buffer.from([0x0a]), b]);
  };
  let nextFile = readBatch(loaded[0]?.m);
  for (let i = 0; i < loaded.length; i++) {
    const l = loaded[i]!;
    const file = await nextFile;
    nextFile = readBatch(loaded[i + 1]?.m); // read the next batch while this one is hashed
    leaves.set(l.seq, leafHash(l.bytes));
    if (l.seq > expected) {
      report({
        kind: "missing_batch",
        seq: expected,
        object: `manifests/ seq ${expected}${l.seq - 1 > expected ? `–${l.seq - 1}` : ""}`,
        message: l.seq - expected === 1 ? `batch ${expected} (manifest and events) is missing: the chain goes from ${expected - 1} to ${l.seq}` : `batches ${expected}–${l.seq - 1} (${l.seq - expected} manifests and their events) are missing: the chain goes from ${expected - 1} to ${l.seq}`,
      });
    }
    const contiguous = prev !== undefined && prev.seq === l.seq - 1;
    const m = l.m;
    if (m) {
      if (m.batch) referenced.add(m.batch);
      if (m.seq !== l.seq) {
        report({ kind: "reordered", seq: l.seq, object: l.name, message: `holds manifest ${m.seq} (interval ${m.start}), not ${l.seq}: batches were reordered` });
      } else if (l.seq === 0 && m.prev !== null) {
        report({ kind: "broken_link", seq: 0, object: l.name, message: "manifest 0 names a previous manifest: the head of the chain is missing" });
      } else if (contiguous && m.prev !== prev!.hash) {
        const pm = prev!.m;
        const moved = pm && Date.parse(m.start) < Date.parse(pm.end);
        report({
          kind: moved ? "reordered" : "broken_link",
          seq: l.seq,
          object: l.name,
          message: moved ? `interval ${m.start} comes after ${pm!.end}: batches were reordered` : `its link (prev ${m.prev?.slice(0, 16)}…) does not match manifest ${prev!.seq} (${prev!.hash.slice(0, 16)}…): manifest ${prev!.seq} was replaced`,
        });
      } else if (contiguous && prev!.m && m.start !== prev!.m.end) {
        const earlier = Date.parse(m.start) < Date.parse(prev!.m.end);
        report({ kind: earlier ? "reordered" : "missing_batch", seq: l.seq, object: l.name, message: earlier ? `interval ${m.start} starts before the previous one ends (${prev!.m.end})` : `no batch covers ${prev!.m.end} to ${m.start}` });
      } else if (contiguous && prev!.m && prev!.m.key_id !== m.key_id && !(m.key_change?.from === prev!.m.key_id && m.key_change.to === m.key_id && trust.get(m.key_id)?.keys.some((k) => k.certSha256 === m.key_change!.certificate_sha256))) {
        report({ kind: "unknown_key", seq: l.seq, object: l.name, message: `signed by key ${m.key_id} while manifest ${prev!.seq} was signed by ${prev!.m.key_id}, with no key-change record linking them` });
      }
      if (m.count === 0) {
        if (m.batch !== undefined || m.batch_sha256 !== EMPTY_SHA256 || m.root !== EMPTY_ROOT) report({ kind: "malformed", seq: l.seq, object: l.name, message: "an empty interval with a batch, batch hash or root" });
      } else if (!file) {
        if (Date.parse(m.end) <= expireBefore) expired++;
        else report({ kind: "missing_batch", seq: l.seq, object: m.batch!, message: `batch file ${m.batch} (${m.count} events of ${m.start}) is missing` });
      } else {
        const content = file.subarray(1);
        bytes += content.length;
        batches++;
        const h = hashBatch(file, 1);
        if (h.count === m.count && !h.unterminated && h.root.toString("hex") === m.root) {
          // The file is exactly its LF-terminated lines, and the signed root commits to every line and
          // their number, so a matching root proves the file's bytes and with them its SHA-256: hashing
          // the file again would double the work (README.md). It is hashed when something is wrong.
          events += h.count;
        } else {
          const sha = sha256(content);
          const belongs = sealedBy.get(sha);
          if (sha === m.batch_sha256) {
            if (h.count !== m.count || h.unterminated) report({ kind: "malformed", seq: l.seq, object: m.batch!, message: `${h.count} events where the manifest says ${m.count}` });
            else report({ kind: "root_mismatch", seq: l.seq, object: l.name, message: "the Merkle root of the batch differs from the signed root" });
          } else if (belongs !== undefined && belongs !== l.seq) {
            report({ kind: "reordered", seq: l.seq, object: m.batch!, message: `holds the events of batch ${belongs}, not ${l.seq}: batches were reordered` });
          } else {
            report({ kind: "modified_event", seq: l.seq, object: m.batch!, message: describeModification(file, m) });
          }
        }
      }
    }
    options.onProgress?.(i + 1, loaded.length);
    prev = l;
    expected = Math.max(expected, l.seq + 1);
  }
  const last = loaded[loaded.length - 1];

  // Checkpoints: each must be signed by a known key and match the manifests it covers.
  const cpNames = (await worm.list("checkpoints/")).filter((n) => CHECKPOINT_FILE.test(n));
  let verified = 0;
  const checkCheckpoint = (text: string | Buffer, object: string): boolean => {
    const cp = parseCheckpoint(text);
    if (typeof cp === "string") {
      report({ kind: "malformed", seq: null, object, message: cp });
      return false;
    }
    const kp = keyProblem(cp, Date.parse(cp.made_at), object, null);
    if (kp) {
      report(kp);
      return false;
    }
    if (cp.frontier !== undefined) {
      let ok = false;
      try {
        ok = MerkleFrontier.fromHex(cp.size, cp.frontier).root().toString("hex") === cp.root;
      } catch {
        ok = false;
      }
      if (!ok) {
        report({ kind: "malformed", seq: null, object, message: "the checkpoint's frontier does not give its root" });
        return false;
      }
    }
    if (cp.size > expected) {
      report({
        kind: "truncated",
        seq: expected,
        object,
        message: `the checkpoint covers ${cp.size} manifests up to ${cp.end}, the WORM directory ends at ${expected === 0 ? "nothing" : `manifest ${expected - 1}${last?.m ? ` (${last.m.end})` : ""}`}: the newest ${cp.size - expected} batch${cp.size - expected === 1 ? " was" : "es were"} removed`,
      });
      return false;
    }
    const covered: Buffer[] = [];
    for (let s = 0; s < cp.size; s++) {
      const leaf = leaves.get(s);
      if (!leaf) return false; // a missing manifest, reported above
      covered.push(leaf);
    }
    if (rootFromLeafHashes(Buffer.concat(covered, cp.size * HASH_SIZE)).toString("hex") !== cp.root) {
      report({ kind: "checkpoint_mismatch", seq: null, object, message: `manifests 0–${cp.size - 1} do not hash to the checkpoint's root: a manifest in that range was replaced` });
      return false;
    }
    return true;
  };
  for (const name of cpNames) if (checkCheckpoint((await worm.get(name))!, name)) verified++;
  let external: VerifyReport["checkpoints"]["external"] = null;
  if (options.checkpoint !== undefined) {
    const cp = parseCheckpoint(options.checkpoint);
    external = { size: typeof cp === "string" ? 0 : cp.size, ok: checkCheckpoint(options.checkpoint, "--checkpoint") };
  }

  for (const b of await worm.list("batches/")) if (!referenced.has(b)) notes.push(`${b}: not referenced by any manifest (left by a crash before its manifest was written, or planted); not evidence`);

  problems.sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity));
  const first = loaded.find((l) => l.m)?.m;
  return {
    ok: problems.length === 0,
    worm: worm.location,
    anchor: anchors ? "checked" : "not_checked",
    manifests: loaded.length,
    batches,
    events,
    bytes,
    expired,
    from: first?.start ?? null,
    to: last?.m?.end ?? null,
    keys: keyReports,
    checkpoints: { stored: cpNames.length, verified, external },
    first_problem: problems[0] ?? null,
    problems,
    notes,
  };
}

const EMPTY_ROOT = rootFromLeafHashes(Buffer.alloc(0)).toString("hex");
const HEX64 = /^[0-9a-f]{64}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function parseJson(bytes: Uint8Array | string): Record<string, unknown> | string {
  const text = typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8");
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `not JSON (${(e as Error).message})`;
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) return "not a JSON object";
  return v as Record<string, unknown>;
}

/** A manifest exactly as the sealer writes it, or what is wrong with it. */
export function parseManifest(bytes: Uint8Array): Manifest | string {
  const v = parseJson(bytes);
  if (typeof v === "string") return `manifest ${v}`;
  const bad = (field: string, want: string) => `manifest field ${field}: expected ${want}, got ${JSON.stringify(v[field])}`;
  if (v.format !== FORMAT) return bad("format", JSON.stringify(FORMAT));
  for (const f of ["seq", "count", "journal_through"]) if (!Number.isSafeInteger(v[f]) || (v[f] as number) < 0) return bad(f, "a non-negative integer");
  for (const f of ["start", "end", "sealed_at"]) if (typeof v[f] !== "string" || !ISO.test(v[f] as string)) return bad(f, "an ISO 8601 UTC time");
  for (const f of ["root", "batch_sha256", "key_id"]) if (typeof v[f] !== "string" || !HEX64.test(v[f] as string)) return bad(f, "64 hex digits");
  if (v.prev !== null && (typeof v.prev !== "string" || !HEX64.test(v.prev))) return bad("prev", "null or 64 hex digits");
  if (v.batch !== undefined && (typeof v.batch !== "string" || !/^batches\/[0-9]{12}-[0-9a-f]{16}\.jsonl$/.test(v.batch))) return bad("batch", "a batches/ name");
  if (typeof v.signature !== "string") return bad("signature", "base64");
  if (typeof v.alg !== "string") return bad("alg", "a key algorithm");
  if (Buffer.from(canonicalJson(v)).compare(Buffer.from(bytes)) !== 0) return "manifest is not in canonical JSON form (modified)";
  return v as unknown as Manifest;
}

export function parseCheckpoint(text: Uint8Array | string): Checkpoint | string {
  const v = parseJson(text);
  if (typeof v === "string") return `checkpoint ${v}`;
  if (v.format !== FORMAT || v.kind !== "checkpoint") return `not a ${FORMAT} checkpoint`;
  if (!Number.isSafeInteger(v.size) || (v.size as number) < 1) return "checkpoint field size: expected a positive integer";
  for (const f of ["root", "last", "key_id"]) if (typeof v[f] !== "string" || !HEX64.test(v[f] as string)) return `checkpoint field ${f}: expected 64 hex digits`;
  if (typeof v.signature !== "string" || typeof v.made_at !== "string" || typeof v.end !== "string") return "checkpoint: missing signature, made_at or end";
  return v as unknown as Checkpoint;
}

/** Names the event that changed when it can be told from the file alone. */
function describeModification(file: Buffer, m: Manifest): string {
  const { count } = hashBatch(file, 1);
  if (count !== m.count) return `batch file ${m.batch} has ${count} events where the signed manifest says ${m.count}: events were added or removed`;
  const lines = file.subarray(1).toString("utf8").split("\n");
  for (let i = 0; i < lines.length - 1; i++) {
    const line = lines[i]!;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return `event at line ${i + 1} of ${m.batch} was modified (no longer JSON)`;
    }
    if (canonicalJson(parsed) !== line) return `event at line ${i + 1} of ${m.batch}${eventIdOf(parsed)} was modified (no longer in the sealed canonical form)`;
  }
  return `an event of ${m.batch} was modified: the file no longer matches its signed SHA-256 and Merkle root`;
}

function eventIdOf(v: unknown): string {
  const id = v && typeof v === "object" ? (v as { event_id?: unknown }).event_id : undefined;
  return typeof id === "string" ? ` (event_id ${id})` : "";
}
