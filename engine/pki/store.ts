import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Worker } from "node:worker_threads";

const INSERT_SQL = `INSERT INTO certs (serial, issuer, profile, revision, client, subject, sans, not_before, not_after, der, spki_sha256, issued_at, revoked_at, reason, superseded_by, revoke_after)
  VALUES (@serial, @issuer, @profile, @revision, @client, @subject, @sans, @not_before, @not_after, @der, @spki_sha256, @issued_at, NULL, NULL, NULL, NULL)`;

/**
 * The writer thread: inserts arriving together share one transaction and one
 * fsync (group commit), and the fsync blocks this thread, not the event loop
 * that serves TLS and signs. Plain JS evaluated in the worker, so it runs the
 * same from the TypeScript sources and from dist/.
 */
const WRITER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.sqlite);
const db = new Database(workerData.path);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
db.pragma("busy_timeout = 10000");
const insert = db.prepare(workerData.sql);
let queue = [];
let scheduled = false;
const row = (r) => ({ ...r, der: Buffer.from(r.der.buffer, r.der.byteOffset, r.der.byteLength) });
function flush() {
  scheduled = false;
  const batch = queue;
  queue = [];
  try {
    db.transaction(() => { for (const m of batch) insert.run(row(m.rec)); })();
    parentPort.postMessage({ ok: batch.map((m) => m.id), failed: [] });
  } catch {
    const ok = [], failed = [];
    for (const m of batch) {
      try { insert.run(row(m.rec)); ok.push(m.id); } catch (e) { failed.push([m.id, String(e && e.message)]); }
    }
    parentPort.postMessage({ ok, failed });
  }
}
parentPort.on("message", (batch) => {
  for (const m of batch) queue.push(m);
  if (!scheduled) { scheduled = true; setImmediate(flush); }
});
`;

export type RevocationReason =
  | "unspecified"
  | "keyCompromise"
  | "cACompromise"
  | "affiliationChanged"
  | "superseded"
  | "cessationOfOperation"
  | "certificateHold"
  | "privilegeWithdrawn"
  | "aACompromise";

/** RFC 5280 §5.3.1 CRLReason codes (7 is unused, 8 removeFromCRL is delta-CRL only). */
export const REASON_CODES: Record<RevocationReason, number> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

export interface CertRecord {
  serial: string;
  issuer: string;
  profile: string;
  revision: string;
  client: string;
  subject: string;
  sans: { dns: string[]; ip: string[]; uri: string[] };
  not_before: number;
  not_after: number;
  der: Buffer;
  spki_sha256: string;
  issued_at: number;
  revoked_at: number | null;
  reason: number | null;
  /** Rotation: the successor's serial and when this one is to be revoked as superseded. */
  superseded_by: string | null;
  revoke_after: number | null;
}

/** A certificate still in force (not revoked, not expired), as emergency rotation lists them. */
export interface LiveCertificate {
  serial: string;
  issuer: string;
  profile: string;
  subject: Record<string, string>;
  sans: { dns: string[]; ip: string[]; uri: string[] };
  not_after: number;
  spki_sha256: string;
  der: Buffer;
}

export interface Revoked {
  serial: string;
  revoked_at: number;
  reason: number;
}

type Row = Omit<CertRecord, "sans"> & { sans: string };

function fromRow(r: Row | undefined): CertRecord | undefined {
  return r && { ...r, sans: JSON.parse(r.sans) as CertRecord["sans"] };
}

/**
 * Every certificate the engine issued, in DATA/pki/pki.db (SQLite, WAL,
 * synchronous=FULL). `insert` resolves only once the row is on disk, written
 * by the writer thread (see WRITER) with group commit, which is what lets
 * durable issuance keep up with concurrent clients. Reads and the rare
 * updates (revocation, CRL numbers) use this thread's connection.
 */
export class CertStore {
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly writer: Worker;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private drained?: () => void;

  constructor(dataDir: string) {
    const dir = join(dataDir, "pki");
    mkdirSync(dir, { recursive: true });
    const path = join(dir, "pki.db");
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("busy_timeout = 10000");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS certs (
        serial TEXT PRIMARY KEY, issuer TEXT NOT NULL, profile TEXT NOT NULL, revision TEXT NOT NULL,
        client TEXT NOT NULL, subject TEXT NOT NULL, sans TEXT NOT NULL,
        not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, der BLOB NOT NULL, spki_sha256 TEXT NOT NULL,
        issued_at INTEGER NOT NULL, revoked_at INTEGER, reason INTEGER, superseded_by TEXT, revoke_after INTEGER
      );
      CREATE INDEX IF NOT EXISTS certs_revoked ON certs (issuer, revoked_at) WHERE revoked_at IS NOT NULL;
      CREATE INDEX IF NOT EXISTS certs_due ON certs (revoke_after) WHERE revoke_after IS NOT NULL AND revoked_at IS NULL;
      CREATE TABLE IF NOT EXISTS crl_numbers (issuer TEXT PRIMARY KEY, number INTEGER NOT NULL);
    `);
    this.writer = new Worker(WRITER, { eval: true, workerData: { sqlite: createRequire(import.meta.url).resolve("better-sqlite3"), path, sql: INSERT_SQL } });
    this.writer.unref();
    this.writer.on("message", (m: { ok: number[]; failed: [number, string][] }) => {
      for (const id of m.ok) this.settle(id)?.resolve();
      for (const [id, msg] of m.failed) this.settle(id)?.reject(new Error(msg));
    });
    this.writer.on("error", (err) => {
      for (const id of [...this.pending.keys()]) this.settle(id)?.reject(err);
    });
    this.stmts = {
      insert: this.db.prepare(INSERT_SQL),
      get: this.db.prepare("SELECT * FROM certs WHERE serial = ?"),
      status: this.db.prepare("SELECT issuer, revoked_at, reason FROM certs WHERE serial = ?"),
      revoke: this.db.prepare("UPDATE certs SET revoked_at = ?, reason = ?, revoke_after = NULL WHERE serial = ? AND revoked_at IS NULL"),
      supersede: this.db.prepare("UPDATE certs SET superseded_by = ?, revoke_after = ? WHERE serial = ? AND revoked_at IS NULL"),
      due: this.db.prepare("SELECT serial FROM certs WHERE revoke_after IS NOT NULL AND revoked_at IS NULL AND revoke_after <= ?"),
      revoked: this.db.prepare("SELECT serial, revoked_at, reason FROM certs WHERE issuer = ? AND revoked_at IS NOT NULL AND not_after > ?").raw(),
      crlNumber: this.db.prepare("INSERT INTO crl_numbers (issuer, number) VALUES (?, 1) ON CONFLICT(issuer) DO UPDATE SET number = number + 1 RETURNING number"),
    };
  }

  private settle(id: number) {
    const p = this.pending.get(id);
    this.pending.delete(id);
    if (this.pending.size === 0) this.drained?.();
    return p;
  }

  /** Inserts of one turn of the event loop travel to the writer as one message (a postMessage costs more than the row). */
  private outbox: { id: number; rec: object }[] = [];
  private readonly send = (): void => {
    const batch = this.outbox;
    this.outbox = [];
    this.writer.postMessage(batch);
  };

  /** Durable before it resolves (see the class comment). */
  insert(rec: Omit<CertRecord, "revoked_at" | "reason" | "superseded_by" | "revoke_after">): Promise<void> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      if (this.outbox.length === 0) setImmediate(this.send);
      // der as a copy with its own ArrayBuffer: postMessage would clone the whole 8 KiB pool slab a small Buffer views.
      this.outbox.push({ id, rec: { ...rec, der: new Uint8Array(rec.der), sans: JSON.stringify(rec.sans) } });
    });
  }

  get(serial: string): CertRecord | undefined {
    return fromRow(this.stmts.get.get(serial) as Row | undefined);
  }

  status(serial: string): { issuer: string; revoked_at: number | null; reason: number | null } | undefined {
    return this.stmts.status.get(serial) as { issuer: string; revoked_at: number | null; reason: number | null } | undefined;
  }

  /**
   * Whether a certificate (an API client's) is revoked, asked on every
   * issuance request. Cached: every revocation goes through this store, which
   * drops the cache.
   */
  isRevoked(serial: string): boolean {
    let v = this.revokedCache.get(serial);
    if (v === undefined) {
      if (this.revokedCache.size > 10_000) this.revokedCache.clear();
      v = (this.stmts.status.get(serial) as { revoked_at: number | null } | undefined)?.revoked_at != null;
      this.revokedCache.set(serial, v);
    }
    return v;
  }
  private readonly revokedCache = new Map<string, boolean>();

  /** False when it was already revoked. */
  revoke(serial: string, at: number, reason: number): boolean {
    this.revokedCache.clear();
    return this.stmts.revoke.run(at, reason, serial).changes === 1;
  }

  supersede(serial: string, successor: string, revokeAfter: number): void {
    this.stmts.supersede.run(successor, revokeAfter, serial);
  }

  /** Predecessors whose rotation overlap has ended. */
  dueForSupersede(now: number): string[] {
    return (this.stmts.due.all(now) as { serial: string }[]).map((r) => r.serial);
  }

  /** Revoked and not yet expired certificates of an issuer, as [serial, revoked_at, reason] rows. */
  revokedOf(issuer: string, now: number): [string, number, number][] {
    return this.stmts.revoked.all(issuer, now) as [string, number, number][];
  }

  /**
   * Certificates of these profiles that are neither revoked nor expired at
   * `now`, oldest first. Read on this thread's connection, which sees every
   * insert that has resolved (WAL, same file).
   */
  live(profiles: readonly string[], now: number): LiveCertificate[] {
    if (profiles.length === 0) return [];
    const rows = this.db
      .prepare(`SELECT serial, issuer, profile, subject, sans, not_after, spki_sha256, der FROM certs WHERE revoked_at IS NULL AND not_after > ? AND profile IN (${profiles.map(() => "?").join(",")}) ORDER BY issued_at, serial`)
      .all(now, ...profiles) as (Omit<LiveCertificate, "subject" | "sans"> & { subject: string; sans: string })[];
    return rows.map((r) => ({ ...r, subject: JSON.parse(r.subject) as Record<string, string>, sans: JSON.parse(r.sans) as LiveCertificate["sans"] }));
  }

  /** The next CRL number of an issuer, persisted before it is used so it is never reused. */
  nextCrlNumber(issuer: string): number {
    return (this.stmts.crlNumber.get(issuer) as { number: number }).number;
  }

  /** Bulk insert for tests and benchmarks (one transaction). */
  insertMany(recs: Omit<CertRecord, "revoked_at" | "reason" | "superseded_by" | "revoke_after">[], revoked?: { at: number; reason: number }): void {
    this.revokedCache.clear();
    this.db.transaction(() => {
      for (const r of recs) {
        this.stmts.insert.run({ ...r, sans: JSON.stringify(r.sans) });
        if (revoked) this.stmts.revoke.run(revoked.at, revoked.reason, r.serial);
      }
    })();
  }

  /** Waits for the inserts under way, then closes both connections. */
  async close(): Promise<void> {
    if (this.pending.size) await new Promise<void>((r) => (this.drained = r));
    await this.writer.terminate();
    this.db.close();
  }
}
