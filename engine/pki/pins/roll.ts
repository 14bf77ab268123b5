import { parseDuration, type PinDoc, type PinSetDoc, type ProfileDoc, type RollPhase } from "../../config/index.js";
import { pinOfSpki } from "./pin.js";

/**
 * The pin-roll state machine of a pin set (pins/*.yaml), as pure functions of
 * the set and a time. The set's YAML is the state; a pull request is the only
 * transition. What each phase means for the CA and for pinned clients:
 *
 * | phase           | the CA certifies      | clients accept                                   |
 * |-----------------|-----------------------|--------------------------------------------------|
 * | stable          | the primary           | primary, backups, retired pins before retired_at |
 * | backup-deployed | the primary           | same (adoption of the backup is being measured)  |
 * | cutover         | only `roll.to`        | `roll.to`, backups, the outgoing primary until   |
 * |                 |                       | roll.since + roll.window                         |
 * | retired         | `roll.to`, or the     | the new primary and backups; an outgoing primary |
 * |                 | primary without it    | no longer (from roll.since); retired pins never  |
 *
 * "Outgoing primary": a pin with role primary that is not `roll.to` while the
 * phase is cutover or retired. A retired pin is accepted before its
 * `retired_at` and never from then on (none without `retired_at`). This is the
 * same notion of "retired at T" that the `pin_retired` detection operator
 * uses (engine/siem/detect/compile.ts pinRetiredFrom); test/pins/roll.test.ts
 * compares the two on every phase.
 */

export const PHASES: readonly RollPhase[] = ["stable", "backup-deployed", "cutover", "retired"];

const ISSUES_PRIMARY: ReadonlySet<RollPhase> = new Set(["stable", "backup-deployed"]);

function time(v: string | number | Date): number {
  return v instanceof Date ? v.getTime() : typeof v === "number" ? v : Date.parse(v);
}

/** When the outgoing primary stops being accepted (cutover: since + window; retired: since). */
function outgoingUntil(set: PinSetDoc): number {
  const since = time(set.roll.since);
  if (set.roll.phase === "retired") return since;
  return since + (set.roll.window ? parseDuration(set.roll.window) : 0);
}

function isOutgoing(set: PinSetDoc, p: PinDoc): boolean {
  return p.role === "primary" && set.roll.to !== undefined && p.sha256 !== set.roll.to && (set.roll.phase === "cutover" || set.roll.phase === "retired");
}

/** The pins whose keys the CA may certify now. */
export function issuablePins(set: PinSetDoc): string[] {
  const { phase, to } = set.roll;
  if (ISSUES_PRIMARY.has(phase)) return set.pins.filter((p) => p.role === "primary").map((p) => p.sha256);
  if (phase === "cutover") return to !== undefined && set.pins.some((p) => p.sha256 === to && p.role !== "retired") ? [to] : [];
  // retired: the key rolled to (now the primary, or still marked backup), else the primary.
  if (to !== undefined) return set.pins.some((p) => p.sha256 === to && p.role !== "retired") ? [to] : [];
  return set.pins.filter((p) => p.role === "primary").map((p) => p.sha256);
}

/**
 * From when a pin of the set is no longer accepted by clients: Infinity
 * (accepted), -Infinity (never accepted), or a time in ms. undefined for a
 * pin the set does not list.
 */
export function pinRetiredFrom(set: PinSetDoc, pin: string): number | undefined {
  const p = set.pins.find((x) => x.sha256 === pin);
  if (!p) return undefined;
  if (p.role === "retired") return p.retired_at === undefined ? -Infinity : time(p.retired_at);
  if (isOutgoing(set, p)) return outgoingUntil(set);
  return Infinity;
}

/** Whether clients still accept `pin` at time `at` (false for a pin the set does not list). */
export function pinAccepted(set: PinSetDoc, pin: string, at: string | number | Date): boolean {
  const from = pinRetiredFrom(set, pin);
  return from !== undefined && time(at) < from;
}

/** Whether `pin` is a listed pin that clients no longer accept at `at`: the pin-roll mismatch condition. */
export function pinRetired(set: PinSetDoc, pin: string, at: string | number | Date): boolean {
  const from = pinRetiredFrom(set, pin);
  return from !== undefined && time(at) >= from;
}

/** The pins clients accept at `at`. */
export function acceptedPins(set: PinSetDoc, at: string | number | Date): string[] {
  return set.pins.filter((p) => pinAccepted(set, p.sha256, at)).map((p) => p.sha256);
}

/** The backup pins whose adoption telemetry measures: `roll.to` when it names a backup, else every backup. */
export function backupPins(set: PinSetDoc): string[] {
  const backups = set.pins.filter((p) => p.role === "backup").map((p) => p.sha256);
  const to = set.roll.to;
  return to !== undefined && backups.includes(to) ? [to] : backups;
}

/** The role of a pin as the current phase sees it: "outgoing" for a primary being rolled away from. */
export function effectiveRole(set: PinSetDoc, pin: string): PinDoc["role"] | "outgoing" | "unknown" {
  const p = set.pins.find((x) => x.sha256 === pin);
  if (!p) return "unknown";
  return isOutgoing(set, p) ? "outgoing" : p.role;
}

export interface PinRefusal {
  code: "pin_not_allowed" | "pin_set_missing";
  message: string;
}

function describe(set: PinSetDoc, pin: string): string {
  const p = set.pins.find((x) => x.sha256 === pin);
  const label = p?.label ? `, ${p.label}` : "";
  switch (effectiveRole(set, pin)) {
    case "unknown":
      return `${pin}, which is not in the pin set (pinned clients would reject it)`;
    case "outgoing":
      return `${pin} (the outgoing primary${label})`;
    case "retired":
      return `${pin} (a retired pin${label})`;
    default:
      return `${pin} (the ${p!.role} key${label})`;
  }
}

function nameKeys(set: PinSetDoc, pins: string[]): string {
  const one = (pin: string) => {
    const p = set.pins.find((x) => x.sha256 === pin)!;
    return `${pin}${p.label ? ` (${p.label})` : ""}`;
  };
  return pins.map(one).join(", ");
}

/**
 * Whether the CA may certify a key with pin `spkiPin` for this pin set now;
 * null when it may, else a refusal naming the set, the phase, the pins it
 * accepts and what to do instead.
 */
export function checkIssuance(set: PinSetDoc, spkiPin: string, now: string | number | Date = Date.now()): PinRefusal | null {
  void now; // The phase applies from the revision that declares it; `now` is kept for a phase with a start date.
  const allowed = issuablePins(set);
  if (allowed.includes(spkiPin)) return null;
  const { phase, to } = set.roll;
  const head = `pin set ${set.id} is in phase ${phase}`;
  let only: string;
  if (allowed.length === 0) {
    only = phase === "cutover" && to === undefined ? "no key may be certified (cutover without roll.to)" : `no key may be certified (roll.to ${to} is not a usable pin of the set)`;
  } else if (phase === "cutover" || (phase === "retired" && to !== undefined)) {
    only = `only the ${phase === "cutover" ? "backup key" : "key rolled to"} ${nameKeys(set, allowed)} may be certified`;
  } else {
    only = `only the primary key${allowed.length > 1 ? "s" : ""} ${nameKeys(set, allowed)} may be certified`;
  }
  let hint = "";
  const role = effectiveRole(set, spkiPin);
  if (role === "backup") hint = phase === "cutover" ? `; this cutover goes to ${to}, not to this backup` : `; certify the backup key only after a pull request moves the set to cutover with roll.to: ${spkiPin}`;
  else if (role === "unknown") hint = "; add the key's pin as a backup, ship it to clients and roll (backup-deployed, cutover) before certifying it";
  else if (role === "outgoing") hint = "; the set is rolling away from this key: renew with the backup key";
  return { code: "pin_not_allowed", message: `${head}: ${only}; this CSR's key is ${describe(set, spkiPin)}${hint}` };
}

/**
 * The issuance gate for a profile: null when the profile has no pin set or
 * the key is allowed. The PKI calls it after parsing the CSR (issue and
 * rotate) and for the engine's own certificates, and answers a refusal with
 * 400 {code, message, field: "csr"}.
 */
export function checkProfileIssuance(
  pinSets: ReadonlyMap<string, PinSetDoc>,
  profile: Pick<ProfileDoc, "id" | "pin_set">,
  spki: Uint8Array | string,
  now: string | number | Date = Date.now(),
): PinRefusal | null {
  if (profile.pin_set === undefined) return null;
  const set = pinSets.get(profile.pin_set);
  if (!set) return { code: "pin_set_missing", message: `profile ${profile.id} is bound to pin set ${profile.pin_set}, which this revision does not have` };
  return checkIssuance(set, typeof spki === "string" ? spki : pinOfSpki(spki), now);
}

// ---------------------------------------------------------------- revisions

/** A problem with a pin-set change, at a path inside the new revision's file (for the validator to position). */
export interface RevisionProblem {
  path: (string | number)[];
  message: string;
}

const NEXT: Record<RollPhase, readonly RollPhase[]> = {
  stable: ["backup-deployed"],
  "backup-deployed": ["cutover", "stable"],
  cutover: ["retired", "backup-deployed", "stable"],
  retired: ["stable", "backup-deployed"],
};

/**
 * Checks that need the previous revision of a pin set (the validator's
 * single-revision rules are in engine/config/semantic.ts):
 * - the live key's pin (one the CA certifies now) is not removed or retired;
 * - the phase moves one step forward (or back, as a rollback), never skips:
 *   stable -> backup-deployed -> cutover -> retired -> stable;
 * - a cutover goes to a backup that was already deployed (a backup pin of the
 *   previous revision), not to a key added in the same change.
 */
export function checkPinSetRevision(prev: PinSetDoc | undefined, next: PinSetDoc | undefined): RevisionProblem[] {
  if (!prev || !next) return [];
  const out: RevisionProblem[] = [];
  for (const live of issuablePins(prev)) {
    const i = next.pins.findIndex((p) => p.sha256 === live);
    const label = prev.pins.find((p) => p.sha256 === live)?.label;
    const what = `the live key's pin ${live}${label ? ` (${label})` : ""}, certified in phase ${prev.roll.phase}`;
    if (i < 0) out.push({ path: ["pins"], message: `removes ${what}: certificates in service carry this key and pinned clients would reject them; roll to the backup first (backup-deployed, cutover, retired)` });
    else if (next.pins[i]!.role === "retired") out.push({ path: ["pins", i, "role"], message: `retires ${what}: roll to the backup first (cutover with roll.to the backup, then retired)` });
  }
  const from = prev.roll.phase;
  const to = next.roll.phase;
  if (from !== to && !NEXT[from].includes(to)) {
    const forward = PHASES.indexOf(to) > PHASES.indexOf(from);
    out.push({
      path: ["roll", "phase"],
      message: forward
        ? `phase ${from} -> ${to} skips ${PHASES.slice(PHASES.indexOf(from) + 1, PHASES.indexOf(to)).join(", ")}: a pin roll advances one phase per pull request (stable -> backup-deployed -> cutover -> retired)`
        : `phase ${from} -> ${to} is not a step of the pin roll (allowed from ${from}: ${NEXT[from].join(", ")})`,
    });
  }
  if (to === "cutover" && next.roll.to !== undefined && (from !== "cutover" || prev.roll.to !== next.roll.to)) {
    const before = prev.pins.find((p) => p.sha256 === next.roll.to);
    if (!before || before.role !== "backup") {
      out.push({
        path: ["roll", "to"],
        message: `cutover to ${next.roll.to}, which was ${before ? `the ${before.role} pin` : "not a pin"} in the previous revision: clients cannot carry a backup added in the same change; deploy it as a backup first`,
      });
    }
  }
  return out;
}
