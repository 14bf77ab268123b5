import Database from "better-sqlite3";
import { closeSync, fdatasync, fdatasyncSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";

const INSERT_SQL = `INSERT INTO certs (serial, issuer, profile, revision, client, subject, sans, not_before, not_after, der, spki_sha256, issued_at, revoked_at, reason, superseded_by, revoke_after)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)`;

type NewRecord = Omit<CertRecord, "revoked_at" | "reason" | "superseded_by" | "revoke_after">;

/** Positional parameters of INSERT_SQL (binding by position is cheaper than by name). */
function insertParams(r: NewRecord): unknown[] {
  return [r.serial, r.issuer, r.profile, r.revision, r.client, r.subject, JSON.stringify(r.sans), r.not_before, r.not_after, r.der, r.spki_sha256, r.issued_at];
}

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
 * Every certificate the engine issued, in DATA/pki/pki.db (SQLite, WAL).
 *
 * `insert` resolves only once the row is on disk, with group commit: the
 * inserts of one event-loop turn share one transaction, then one fdatasync of
 * the WAL file on libuv's thread pool, and they resolve when it completes.
 * The connection runs synchronous=NORMAL, so SQLite writes the WAL frames at
 * commit without syncing them, and the fdatasync that follows is the sync
 * synchronous=FULL would have done at that commit; NORMAL still syncs the WAL
 * before each checkpoint and the database after it, so a checkpoint never
 * loses what was acknowledged. Why not FULL: its sync would block the event
 * loop that serves TLS; and a writer thread (the previous design) cost more
 * CPU per certificate in postMessage round trips than the insert itself (the
 * issuance API's hot path, see test/bench/pki.bench.ts). The rare updates
 * (revocation, rotation, CRL numbers) sync before they return.
 */
export class CertStore {
  private readonly db: Database.Database;
  private readonly stmts;
  /** The WAL file, which the group commit syncs (SQLite keeps it while this connection is open). */
  private readonly wal: number;
  private batch: { params: unknown[]; resolve: () => void; reject: (e: Error) => void }[] = [];
  private syncing = false;
  private drained?: () => void;

  constructor(dataDir: string) {
    const dir = join(dataDir, "pki");
    mkdirSync(dir, { recursive: true });
    const path = join(dir, "pki.db");
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
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
    // "a": created if SQLite has not made it yet (an empty WAL is a valid one); never written through.
    this.wal = openSync(`${path}-wal`, "a");
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

  /** Durable before it resolves (see the class comment). */
  insert(rec: NewRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      // While a sync is under way the rows wait for it to end and then go
      // together: one transaction and one sync per group, whatever the disk's
      // sync latency, rather than many small overlapping ones.
      if (this.batch.length === 0 && !this.syncing) setImmediate(this.commit);
      this.batch.push({ params: insertParams(rec), resolve, reject });
    });
  }

  private readonly commit = (): void => {
    const batch = this.batch;
    this.batch = [];
    let written = batch;
    try {
      this.db.transaction(() => {
        for (const b of batch) this.stmts.insert.run(b.params);
      })();
    } catch {
      // One bad row (a duplicate serial) must not fail the others: each on its own.
      written = [];
      for (const b of batch) {
        try {
          this.stmts.insert.run(b.params);
          written.push(b);
        } catch (err) {
          b.reject(err as Error);
        }
      }
    }
    if (written.length === 0) return this.settled();
    this.syncing = true;
    fdatasync(this.wal, (err) => {
      this.syncing = false;
      for (const b of written) {
        if (err) b.reject(err);
        else b.resolve();
      }
      if (this.batch.length) this.commit();
      else this.settled();
    });
  };

  private settled(): void {
    if (!this.syncing && this.batch.length === 0) this.drained?.();
  }

  /** The rare updates are durable before they return, as the inserts. */
  private sync(): void {
    fdatasyncSync(this.wal);
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
    const changed = this.stmts.revoke.run(at, reason, serial).changes === 1;
    this.sync();
    return changed;
  }

  supersede(serial: string, successor: string, revokeAfter: number): void {
    this.stmts.supersede.run(successor, revokeAfter, serial);
    this.sync();
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
    const n = (this.stmts.crlNumber.get(issuer) as { number: number }).number;
    this.sync();
    return n;
  }

  /** Bulk insert for tests and benchmarks (one transaction). */
  insertMany(recs: NewRecord[], revoked?: { at: number; reason: number }): void {
    this.revokedCache.clear();
    this.db.transaction(() => {
      for (const r of recs) {
        this.stmts.insert.run(insertParams(r));
        if (revoked) this.stmts.revoke.run(revoked.at, revoked.reason, r.serial);
      }
    })();
    this.sync();
  }

  /** Waits for the inserts under way, then closes the database. */
  async close(): Promise<void> {
    if (this.syncing || this.batch.length) await new Promise<void>((r) => (this.drained = r));
    this.db.close();
    closeSync(this.wal);
  }
}
