import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

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
 * synchronous=FULL). `insert` resolves only once the row is on disk; inserts
 * arriving together share one transaction and one fsync (group commit), which
 * is what lets durable issuance keep up with concurrent clients.
 */
export class CertStore {
  private readonly db: Database.Database;
  private readonly stmts;
  private queue: { rec: CertRecord; resolve: () => void; reject: (e: Error) => void }[] = [];
  private flushing = false;

  constructor(dataDir: string) {
    const dir = join(dataDir, "pki");
    mkdirSync(dir, { recursive: true });
    this.db = new Database(join(dir, "pki.db"));
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
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
    this.stmts = {
      insert: this.db.prepare(
        `INSERT INTO certs (serial, issuer, profile, revision, client, subject, sans, not_before, not_after, der, spki_sha256, issued_at, revoked_at, reason, superseded_by, revoke_after)
         VALUES (@serial, @issuer, @profile, @revision, @client, @subject, @sans, @not_before, @not_after, @der, @spki_sha256, @issued_at, NULL, NULL, NULL, NULL)`,
      ),
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
  insert(rec: Omit<CertRecord, "revoked_at" | "reason" | "superseded_by" | "revoke_after">): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ rec: rec as CertRecord, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.flushing = false;
    try {
      this.db.transaction(() => {
        for (const { rec } of batch) this.stmts.insert.run({ ...rec, sans: JSON.stringify(rec.sans) });
      })();
      for (const b of batch) b.resolve();
    } catch (err) {
      // One bad row must not fail the others: retry each on its own.
      for (const b of batch) {
        try {
          this.stmts.insert.run({ ...b.rec, sans: JSON.stringify(b.rec.sans) });
          b.resolve();
        } catch (e) {
          b.reject(e as Error);
        }
      }
      void err;
    }
  }

  get(serial: string): CertRecord | undefined {
    return fromRow(this.stmts.get.get(serial) as Row | undefined);
  }

  status(serial: string): { issuer: string; revoked_at: number | null; reason: number | null } | undefined {
    return this.stmts.status.get(serial) as { issuer: string; revoked_at: number | null; reason: number | null } | undefined;
  }

  /** False when it was already revoked. */
  revoke(serial: string, at: number, reason: number): boolean {
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

  /** The next CRL number of an issuer, persisted before it is used so it is never reused. */
  nextCrlNumber(issuer: string): number {
    return (this.stmts.crlNumber.get(issuer) as { number: number }).number;
  }

  /** Bulk insert for tests and benchmarks (one transaction). */
  insertMany(recs: Omit<CertRecord, "revoked_at" | "reason" | "superseded_by" | "revoke_after">[], revoked?: { at: number; reason: number }): void {
    this.db.transaction(() => {
      for (const r of recs) {
        this.stmts.insert.run({ ...r, sans: JSON.stringify(r.sans) });
        if (revoked) this.stmts.revoke.run(revoked.at, revoked.reason, r.serial);
      }
    })();
  }

  close(): void {
    if (this.queue.length) this.flush();
    this.db.close();
  }
}
