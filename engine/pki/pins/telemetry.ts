import { readFileSync } from "node:fs";
import type { FastifyPluginAsync } from "fastify";
import { parseDuration, type DesiredState, type PinSetDoc, type RollPhase } from "../../config/index.js";
import { ServiceError, type Prepared, type Service } from "../../gitops/service.js";
import { consume, type Consumer, type Journal, type JournalRecord, type NormalizedEvent } from "../../siem/journal/index.js";
import { backupPins, effectiveRole, issuablePins, pinRetiredFrom } from "./roll.js";
import { pinRollProblems } from "./revision.js";
import { writeFileDurably } from "../files.js";

/**
 * Pin-roll telemetry: pinning clients report each pin check as a `pin_check`
 * event (extra.pin: the pin the client carries and checked, extra.pin_set,
 * extra.client_version, device_id). Counted per pin set, pin and phase, and
 * per device, this says how many clients already carry the backup pin: the
 * number a reviewer wants before approving the cutover pull request.
 *
 * Counts survive restarts: the aggregate is written (temp + fsync + rename)
 * with the last journal seq it covers before the journal cursor is committed,
 * so a replay after a crash skips what is already counted (exactly once).
 */

export const CONSUMER = "pins";
const DEFAULT_WINDOW = "30d";
const DEFAULT_THRESHOLD = 0.95;
/** Devices unseen for this long are forgotten (longer than any sensible roll window). */
const DEVICE_TTL = 180 * 86_400_000;

interface PinCount {
  count: number;
  byPhase: Partial<Record<RollPhase | "unknown", number>>;
  versions: Record<string, number>;
  lastSeen: number;
}

interface DeviceSeen {
  /** Last pin check of any pin of the set. */
  seen: number;
  /** Last pin check presenting each pin. */
  pins: Record<string, number>;
}

interface SetCounts {
  pins: Record<string, PinCount>;
  devices: Record<string, DeviceSeen>;
}

interface Snapshot {
  seq: number;
  sets: Record<string, SetCounts>;
}

export interface PinCountView {
  sha256: string;
  role: string;
  label?: string;
  /** Whether clients still accept it now (per the roll phase). */
  accepted: boolean;
  /** From when it is no longer accepted (ISO), when that is scheduled. */
  retired_from?: string;
  count: number;
  by_phase: Record<string, number>;
  client_versions: Record<string, number>;
  /** Distinct devices presenting it within the adoption window. */
  devices: number;
  last_seen?: string;
}

export interface PinStatus {
  id: string;
  profile: string;
  phase: RollPhase;
  since: string;
  to?: string;
  window: string;
  /** Keys the CA certifies in this phase. */
  issuable: string[];
  pins: PinCountView[];
  /** Pins presented for this set that it does not list (misconfigured or stale clients). */
  unknown_pins: { sha256: string; count: number; last_seen: string }[];
  adoption: {
    backup: string[];
    window_start: string;
    /** Distinct devices with a pin check in the window. */
    devices: number;
    /** Of those, devices that presented a backup pin. */
    adopted: number;
    ratio: number | null;
    threshold: number;
  };
  /** Backup adoption among devices in the window reached the declared threshold. */
  cutover_safe: boolean;
}

function eventTime(ts: unknown): number {
  const t = typeof ts === "string" ? Date.parse(ts) : typeof ts === "number" ? ts : NaN;
  return Number.isFinite(t) ? t : NaN;
}

/** Counts pin checks from the journal and answers GET /v1/pins/ID. */
export class PinTelemetry {
  private sets = new Map<string, PinSetDoc>();
  private counts: Snapshot = { seq: 0, sets: {} };
  private consumer?: Consumer;
  private readonly now: () => number;

  constructor(private readonly options: { stateFile?: string; now?: () => number } = {}) {
    this.now = options.now ?? Date.now;
    if (options.stateFile) {
      try {
        const s = JSON.parse(readFileSync(options.stateFile, "utf8")) as Snapshot;
        if (typeof s.seq === "number" && s.sets && typeof s.sets === "object") this.counts = s;
      } catch {
        /* first start, or unreadable: count from the journal cursor */
      }
    }
  }

  /** The pin sets of the applied revision. */
  setPinSets(sets: ReadonlyMap<string, PinSetDoc>): void {
    this.sets = new Map(sets);
  }

  /** Counts one event; events other than pin_check (or without a pin and pin set) are ignored. */
  observe(event: NormalizedEvent): void {
    if (event.action !== "pin_check") return;
    const extra = event.extra as Record<string, unknown> | undefined;
    const pin = extra?.pin;
    const setId = extra?.pin_set;
    if (typeof pin !== "string" || typeof setId !== "string" || pin.length > 128 || setId.length > 128) return;
    const t = eventTime(event.timestamp);
    if (!Number.isFinite(t)) return;
    const sc = (this.counts.sets[setId] ??= { pins: {}, devices: {} });
    const pc = (sc.pins[pin] ??= { count: 0, byPhase: {}, versions: {}, lastSeen: 0 });
    const phase = this.sets.get(setId)?.roll.phase ?? "unknown";
    pc.count++;
    pc.byPhase[phase] = (pc.byPhase[phase] ?? 0) + 1;
    const version = typeof extra?.client_version === "string" ? extra.client_version.slice(0, 64) : "unknown";
    pc.versions[version] = (pc.versions[version] ?? 0) + 1;
    if (t > pc.lastSeen) pc.lastSeen = t;
    const device = event.device_id;
    if (typeof device === "string" && device.length > 0) {
      const d = (sc.devices[device] ??= { seen: 0, pins: {} });
      if (t > d.seen) d.seen = t;
      if (t > (d.pins[pin] ?? 0)) d.pins[pin] = t;
    }
  }

  /** Handles a journal batch: records at or below the saved seq were already counted. */
  handle(records: readonly JournalRecord[]): void {
    let last = this.counts.seq;
    for (const r of records) {
      if (r.seq <= this.counts.seq) continue;
      this.observe(r.event);
      last = r.seq;
    }
    if (last === this.counts.seq) return;
    this.counts.seq = last;
    this.prune();
    this.save();
  }

  /** Starts counting from the journal (consumer "pins"); the journal should list it among its consumers. */
  start(journal: Journal, onError?: (err: unknown) => void): Consumer {
    this.consumer = consume(journal, CONSUMER, (records) => this.handle(records), { onError: onError ? (err) => onError(err) : undefined });
    return this.consumer;
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
  }

  private prune(): void {
    const horizon = this.now() - DEVICE_TTL;
    for (const sc of Object.values(this.counts.sets)) {
      for (const [id, d] of Object.entries(sc.devices)) if (d.seen < horizon) delete sc.devices[id];
    }
  }

  private save(): void {
    const file = this.options.stateFile;
    if (!file) return;
    writeFileDurably(file, JSON.stringify(this.counts), 0o600);
  }

  /** GET /v1/pins/ID: undefined for a pin set the applied revision does not have. */
  pinStatus(id: string, at: number = this.now()): PinStatus | undefined {
    const set = this.sets.get(id);
    if (!set) return undefined;
    const window = set.roll.window ?? DEFAULT_WINDOW;
    const start = at - parseDuration(window);
    const sc = this.counts.sets[id] ?? { pins: {}, devices: {} };
    const listed = new Set(set.pins.map((p) => p.sha256));
    const backup = backupPins(set);
    // One pass over the devices: per-pin distinct devices in the window, and backup adoption.
    const perPin = new Map<string, number>();
    let devices = 0;
    let adopted = 0;
    for (const id in sc.devices) {
      const d = sc.devices[id]!;
      if (d.seen < start) continue;
      for (const pin in d.pins) {
        const t = d.pins[pin]!;
        if (t >= start && t <= at) perPin.set(pin, (perPin.get(pin) ?? 0) + 1);
      }
      if (d.seen > at + 60_000) continue;
      devices++;
      if (backup.some((b) => (d.pins[b] ?? -Infinity) >= start)) adopted++;
    }
    const pins: PinCountView[] = set.pins.map((p) => {
      const c = sc.pins[p.sha256];
      const from = pinRetiredFrom(set, p.sha256)!;
      return {
        sha256: p.sha256,
        role: effectiveRole(set, p.sha256),
        ...(p.label ? { label: p.label } : {}),
        accepted: at < from,
        ...(Number.isFinite(from) ? { retired_from: new Date(from).toISOString() } : {}),
        count: c?.count ?? 0,
        by_phase: { ...(c?.byPhase ?? {}) } as Record<string, number>,
        client_versions: { ...(c?.versions ?? {}) },
        devices: perPin.get(p.sha256) ?? 0,
        ...(c?.lastSeen ? { last_seen: new Date(c.lastSeen).toISOString() } : {}),
      };
    });
    const unknown = Object.entries(sc.pins)
      .filter(([pin]) => !listed.has(pin))
      .map(([pin, c]) => ({ sha256: pin, count: c.count, last_seen: new Date(c.lastSeen).toISOString() }));
    const ratio = devices ? adopted / devices : null;
    const threshold = set.roll.adoption_threshold ?? DEFAULT_THRESHOLD;
    return {
      id,
      profile: set.profile,
      phase: set.roll.phase,
      since: set.roll.since,
      ...(set.roll.to ? { to: set.roll.to } : {}),
      window,
      issuable: issuablePins(set),
      pins,
      unknown_pins: unknown,
      adoption: { backup, window_start: new Date(start).toISOString(), devices, adopted, ratio, threshold },
      cutover_safe: ratio !== null && ratio >= threshold,
    };
  }

  /** The pin sets and whether each may cut over (GET /v1/pins). */
  list(at: number = this.now()): { id: string; phase: RollPhase; cutover_safe: boolean; adoption: number | null }[] {
    return [...this.sets.keys()].sort().map((id) => {
      const s = this.pinStatus(id, at)!;
      return { id, phase: s.phase, cutover_safe: s.cutover_safe, adoption: s.adoption.ratio };
    });
  }

  /** A Service for the reconciler: each applied revision's pin sets take effect at commit. */
  service(): Service {
    return {
      name: "pins",
      // A pin roll must advance one reviewed step at a time; a revision that would cut pinned clients off is refused whole.
      prepare: async (next: DesiredState, current: DesiredState | undefined): Promise<Prepared> => {
        const problems = pinRollProblems(current, next);
        if (problems.length) throw new ServiceError("pins", problems.map((d) => `${d.file}:${d.line}:${d.col}: ${d.message}`).join("; "), problems);
        return { commit: () => this.setPinSets(next.pinSets) };
      },
      status: () => ({ pin_sets: this.sets.size, counted_through: this.counts.seq }),
      close: () => this.stop(),
    };
  }
}

/** The admin-port routes: GET /v1/pins and GET /v1/pins/:id. */
export function pinRoutes(telemetry: PinTelemetry): FastifyPluginAsync {
  return async (app) => {
    app.get("/v1/pins", async () => ({ pin_sets: telemetry.list() }));
    app.get("/v1/pins/:id", async (request, reply) => {
      const id = (request.params as { id: string }).id;
      const status = telemetry.pinStatus(id);
      if (!status) return reply.code(404).send({ error: { code: "not_found", message: `no pin set ${JSON.stringify(id)} in the applied revision (pins/${id}.yaml)` } });
      return status;
    });
  };
}
