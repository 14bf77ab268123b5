import type { DesiredState } from "../config/index.js";
import type { Diagnostic } from "../config/index.js";

/**
 * What every hosted service (CA, OCSP, ingest, detector, sealer, dashboards)
 * offers the reconciler. A revision goes live in two steps so it is all or
 * nothing: every service prepares (builds its next runtime without touching
 * what serves now, and may refuse), and only when all have prepared does the
 * reconciler commit each one (a swap that cannot fail).
 */
export interface Service {
  readonly name: string;
  prepare(next: DesiredState, current: DesiredState | undefined): Promise<Prepared>;
  /** What /v1/status shows under services.NAME. */
  status?(): Record<string, unknown>;
  /** Drains and releases the service's listeners and files on shutdown (SIGTERM). */
  close?(): Promise<void> | void;
}

export interface Prepared {
  commit(): void;
  /** Releases what prepare built when another service refused. */
  abort?(): void;
}

/** A service's refusal of a revision, positioned where it can be. */
export class ServiceError extends Error {
  constructor(
    readonly service: string,
    message: string,
    readonly diagnostics: Diagnostic[] = [],
  ) {
    super(`${service}: ${message}`);
  }
}
