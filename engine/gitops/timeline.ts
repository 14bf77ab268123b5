/**
 * The applied-revision timeline (DESIGN.md §7): DATA/timeline/timeline.jsonl,
 * one JSON object per line, each naming the hash of the one before it and
 * signed with the engine's Ed25519 timeline key, so an edit, a removal or a
 * reordering anywhere breaks verification from that line on. The head hash
 * also travels in every `config_apply` event, which the SIEM's Merkle sealer
 * covers; that anchors the end of the timeline against truncation.
 *
 * The key is DATA/keys/timeline.key (PKCS#8 PEM, 0600) with its public half in
 * timeline.pub; a Signer from the PKI (the Log Signing Key) can replace it, its
 * public key then being written to DATA/keys/KEYID.pub so verification finds it.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as edSign, verify as edVerify, type KeyObject } from "node:crypto";
import { X509Certificate } from "node:crypto";
import { chmod, mkdir, open, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { canonicalJson } from "../config/index.js";

export interface TimelineSigner {
  keyId: string;
  /** SPKI DER of the verifying key. */
  publicKey: Uint8Array;
  sign(data: Uint8Array): Promise<Uint8Array> | Uint8Array;
  /** The key's certificate from the engine's CA (the Log Signing Key), PEM with its chain. */
  certificatePem?: string;
}

/** Ed25519 signs the bytes; ECDSA/RSA sign SHA-256 of them (DER signatures). */
function digestFor(key: KeyObject): string | null {
  return key.asymmetricKeyType === "ed25519" || key.asymmetricKeyType === "ed448" ? null : "sha256";
}

/** A TimelineSigner over a private key the engine holds (e.g. the Log Signing Key and its certificate). */
export function keySigner(key: KeyObject, certificatePem?: string): TimelineSigner {
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  return { keyId: keyIdOf(spki), publicKey: spki, sign: (data) => edSign(digestFor(key), data, key), certificatePem };
}

export interface PlanSummary {
  changes: number;
  relaxations: number;
  items: { kind: string; id: string; field?: string; change: string; relaxation: boolean; reason?: string }[];
}

/** What the reconciler records about one revision. */
export interface TimelineRecord {
  type: "applied" | "refused" | "stopped";
  revision: string;
  commit?: string;
  tree?: string;
  digest?: string;
  trust?: "signed" | "unsigned-dev";
  signer?: { principal: string; fingerprint: string } | null;
  approvers?: { principal: string; fingerprint: string }[];
  bootstrap?: boolean;
  plan?: PlanSummary;
  result: "applied" | "refused" | "stopped";
  reason?: string;
  errors?: { file: string; line: number; col: number; message: string }[];
  missing_approvals?: number;
}

export interface TimelineEntry extends TimelineRecord {
  seq: number;
  time: string;
  prev: string;
  hash: string;
  key: string;
  sig: string;
}

const GENESIS = "0".repeat(64);

function bodyOf(e: Omit<TimelineEntry, "hash" | "key" | "sig">): string {
  return canonicalJson(e as unknown as Record<string, unknown>);
}

function keyIdOf(spki: Uint8Array): string {
  return createHash("sha256").update(spki).digest("hex").slice(0, 16);
}

/** Loads DATA/keys/timeline.key, creating it (0600) on first use. */
export async function fileSigner(dataDir: string): Promise<TimelineSigner> {
  const dir = join(dataDir, "keys");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, "timeline.key");
  let priv: KeyObject;
  try {
    priv = createPrivateKey(await readFile(keyFile));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const pair = generateKeyPairSync("ed25519");
    priv = pair.privateKey;
    await writeFile(keyFile, priv.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
  }
  await chmod(keyFile, 0o600);
  const pub = createPublicKey(priv);
  const spki = pub.export({ type: "spki", format: "der" });
  await writeFile(join(dir, "timeline.pub"), pub.export({ type: "spki", format: "pem" }));
  return { keyId: keyIdOf(spki), publicKey: spki, sign: (data) => edSign(null, data, priv) };
}

export class Timeline {
  private seq = 0;
  private head = GENESIS;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly file: string,
    private signer: TimelineSigner,
  ) {}

  /** Opens DATA/timeline/timeline.jsonl, resuming its chain. A torn last line (crash mid-write) is dropped. */
  static async open(dataDir: string, signer?: TimelineSigner): Promise<Timeline> {
    const dir = join(dataDir, "timeline");
    await mkdir(dir, { recursive: true });
    const s = signer ?? (await fileSigner(dataDir));
    const t = new Timeline(join(dir, "timeline.jsonl"), s);
    await t.publishKey(dataDir);
    let text = "";
    try {
      text = await readFile(t.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (text && !text.endsWith("\n")) {
      text = text.slice(0, text.lastIndexOf("\n") + 1);
      await writeFile(t.file, text);
    }
    const last = text.trimEnd().split("\n").filter(Boolean).pop();
    if (last) {
      const e = JSON.parse(last) as TimelineEntry;
      t.seq = e.seq;
      t.head = e.hash;
    }
    return t;
  }

  private async publishKey(dataDir: string): Promise<void> {
    const pem = createPublicKey({ key: Buffer.from(this.signer.publicKey), format: "der", type: "spki" }).export({ type: "spki", format: "pem" });
    await writeFile(join(dataDir, "keys", `${this.signer.keyId}.pub`), pem);
    if (this.signer.certificatePem) await writeFile(join(dataDir, "keys", `${this.signer.keyId}.crt`), this.signer.certificatePem);
  }

  get keyId(): string {
    return this.signer.keyId;
  }

  /** Switches to another signer (the PKI's Log Signing Key) for the entries that follow. */
  async useSigner(dataDir: string, signer: TimelineSigner): Promise<void> {
    this.signer = signer;
    await this.publishKey(dataDir);
  }

  get headHash(): string {
    return this.head;
  }

  /** Appends a record, durably (fsync), one writer at a time. */
  append(record: TimelineRecord, now = new Date()): Promise<TimelineEntry> {
    const run = this.queue.then(async () => {
      // Through JSON first: what is signed must be exactly what a reader parses back (no undefined, no class instances).
      const unsigned = JSON.parse(JSON.stringify({ ...record, seq: this.seq + 1, time: now.toISOString(), prev: this.head })) as Omit<TimelineEntry, "hash" | "key" | "sig">;
      const body = bodyOf(unsigned);
      const hash = createHash("sha256").update(body).digest("hex");
      const sig = Buffer.from(await this.signer.sign(Buffer.from(body))).toString("base64");
      const entry: TimelineEntry = { ...unsigned, hash, key: this.signer.keyId, sig };
      const fh = await open(this.file, "a", 0o644);
      try {
        await fh.write(JSON.stringify(entry) + "\n");
        await fh.datasync();
      } finally {
        await fh.close();
      }
      this.seq = entry.seq;
      this.head = hash;
      return entry;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}

export interface KeyInfo {
  key_id: string;
  entries: number;
  /** The certificate of a PKI-issued key (the Log Signing Key); absent for the engine's own timeline.key. */
  certificate?: {
    subject: string;
    issuer: string;
    serial: string;
    not_after: string;
    /** The stored chain links up to a self-signed root and the certificate is for this key. */
    chain_verified: boolean;
    /** Compare with the CA root you trust (e.g. DATA/dev/ca-chain.pem, or your offline root). */
    root_sha256: string;
  };
}

export interface Verification {
  ok: boolean;
  entries: TimelineEntry[];
  keys: KeyInfo[];
  /** The first problem found, with its line number. */
  error?: string;
  head: string;
}

/** Reads and verifies the whole timeline of a data dir. */
export async function readTimeline(dataDir: string): Promise<Verification> {
  const file = join(dataDir, "timeline", "timeline.jsonl");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { ok: true, entries: [], keys: [], head: GENESIS };
    throw err;
  }
  const keys = new Map<string, KeyObject>();
  const keyDir = join(dataDir, "keys");
  for (const name of await readdir(keyDir).catch(() => [] as string[])) {
    if (!name.endsWith(".pub")) continue;
    try {
      const k = createPublicKey(await readFile(join(keyDir, name)));
      keys.set(keyIdOf(k.export({ type: "spki", format: "der" })), k);
    } catch {
      // not a key: ignored
    }
  }
  const entries: TimelineEntry[] = [];
  let prev = GENESIS;
  const keyInfo = async (): Promise<KeyInfo[]> => {
    const count = new Map<string, number>();
    for (const e of entries) count.set(e.key, (count.get(e.key) ?? 0) + 1);
    const out: KeyInfo[] = [];
    for (const [key_id, n] of count) {
      const info: KeyInfo = { key_id, entries: n };
      try {
        const pems = (await readFile(join(keyDir, `${key_id}.crt`), "utf8")).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
        const chain = pems.map((p) => new X509Certificate(p));
        const c = chain[0]!;
        // The chain as stored (leaf, issuer, ..., root): each certificate signed by the next, the key matching the leaf.
        const linked = chain.every((cert, i) => (i + 1 < chain.length ? cert.verify(chain[i + 1]!.publicKey) : cert.verify(cert.publicKey)));
        const keyMatches = keyIdOf(c.publicKey.export({ type: "spki", format: "der" })) === key_id;
        const root = chain[chain.length - 1]!;
        info.certificate = {
          subject: c.subject,
          issuer: c.issuer,
          serial: c.serialNumber,
          not_after: new Date(c.validTo).toISOString(),
          chain_verified: linked && keyMatches && chain.length > 1,
          root_sha256: root.fingerprint256,
        };
      } catch {
        // the engine's own timeline key has no certificate
      }
      out.push(info);
    }
    return out;
  };
  const fail = async (error: string): Promise<Verification> => ({ ok: false, entries, keys: await keyInfo(), head: prev, error });
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.trim()) continue;
    const where = `${file}:${i + 1}`;
    let e: TimelineEntry;
    try {
      e = JSON.parse(line) as TimelineEntry;
    } catch {
      return fail(`${where}: not valid JSON`);
    }
    const { hash, key, sig, ...unsigned } = e;
    if (unsigned.seq !== entries.length + 1) return fail(`${where}: sequence ${unsigned.seq}, expected ${entries.length + 1} (an entry was removed or reordered)`);
    if (unsigned.prev !== prev) return fail(`${where}: does not chain to the entry before it`);
    const body = bodyOf(unsigned);
    if (createHash("sha256").update(body).digest("hex") !== hash) return fail(`${where}: content does not match its hash (edited)`);
    const pub = keys.get(key);
    if (!pub) return fail(`${where}: signed by unknown key ${key}`);
    if (!edVerify(digestFor(pub), Buffer.from(body), pub, Buffer.from(sig ?? "", "base64"))) return fail(`${where}: bad signature`);
    entries.push(e);
    prev = hash;
  }
  return { ok: true, entries, keys: await keyInfo(), head: prev };
}
