/**
 * Replay (`viw replay`): two revisions' rules run over the same stored events
 * and the alerts the change adds and removes, per rule and group — what a
 * reviewer wants to know about a rule change before it merges.
 *
 * Alerts are compared by rule, group and window start (not by id: the id
 * includes the rule's revision, so a changed rule that still fires the same
 * alerts shows no difference).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { canonicalJson, loadSnapshot, readGitSnapshot } from "../../config/index.js";
import type { DesiredState } from "../../config/index.js";
import type { NormalizedEvent } from "../journal/contract.js";
import { openJournal } from "../journal/index.js";
import { openStore } from "../store/index.js";
import { DEFAULT_LATENESS_MS, Engine } from "./engine.js";
import type { AlertEvent } from "./engine.js";
import { compileRules } from "./rules.js";
import { eventTime } from "./time.js";

export interface ReplayAlert {
  group: Record<string, unknown>;
  window_start: string;
  window_end: string;
  events: number;
}

export interface RuleReplay {
  rule: string;
  /** "added" / "removed" when the rule itself is new or gone in head; "changed"/"unchanged" otherwise. */
  change: "added" | "removed" | "changed" | "unchanged";
  base: number;
  head: number;
  added: ReplayAlert[];
  removed: ReplayAlert[];
}

export interface ReplayResult {
  base: string;
  head: string;
  events: number;
  from: string | null;
  to: string | null;
  rules: RuleReplay[];
}

export class ReplayError extends Error {}

function runRules(state: DesiredState, events: readonly NormalizedEvent[], end: number): AlertEvent[] {
  const alerts: AlertEvent[] = [];
  const engine = new Engine(compileRules(state), { onAlert: (a) => alerts.push(a), now: () => end });
  for (const e of events) engine.process(e);
  // The end of the stored events: waits that the live detector would have closed by now fire.
  engine.advanceWatermark(end - DEFAULT_LATENESS_MS);
  return alerts;
}

const keyOf = (a: AlertEvent) => `${canonicalJson(a.alert.group)}\u0000${a.alert.window_start}`;
const summary = (a: AlertEvent): ReplayAlert => ({ group: a.alert.group, window_start: a.alert.window_start, window_end: a.alert.window_end, events: a.alert.events.length });

/** Runs both revisions over `events` (any order: they are replayed in event-time order). */
export function replayStates(base: DesiredState, head: DesiredState, events: readonly NormalizedEvent[], end = Date.now()): ReplayResult {
  const sorted = events
    .map((e) => ({ e, t: eventTime(e.timestamp) }))
    .filter((x) => x.t === x.t && x.e.action !== "alert")
    .sort((a, b) => a.t - b.t)
    .map((x) => x.e);
  const byRule = (alerts: AlertEvent[]) => {
    const m = new Map<string, Map<string, AlertEvent>>();
    for (const a of alerts) {
      let r = m.get(a.alert.rule);
      if (!r) m.set(a.alert.rule, (r = new Map()));
      r.set(keyOf(a), a);
    }
    return m;
  };
  const b = byRule(runRules(base, sorted, end));
  const h = byRule(runRules(head, sorted, end));
  const ids = new Set([...base.rules.keys(), ...head.rules.keys()]);
  const rules: RuleReplay[] = [];
  for (const id of [...ids].sort()) {
    const inBase = base.rules.has(id) && base.rules.get(id)!.enabled !== false;
    const inHead = head.rules.has(id) && head.rules.get(id)!.enabled !== false;
    const ba = b.get(id) ?? new Map<string, AlertEvent>();
    const ha = h.get(id) ?? new Map<string, AlertEvent>();
    const change = !inBase && inHead ? "added" : inBase && !inHead ? "removed" : base.objectDigest("rule", id) === head.objectDigest("rule", id) ? "unchanged" : "changed";
    if (!inBase && !inHead) continue;
    rules.push({
      rule: id,
      change,
      base: ba.size,
      head: ha.size,
      added: [...ha].filter(([k]) => !ba.has(k)).map(([, a]) => summary(a)),
      removed: [...ba].filter(([k]) => !ha.has(k)).map(([, a]) => summary(a)),
    });
  }
  const first = sorted[0]?.timestamp ?? null;
  const last = sorted[sorted.length - 1]?.timestamp ?? null;
  return { base: base.revision, head: head.revision, events: sorted.length, from: first, to: last, rules };
}

/** A revision of the repo as a DesiredState, or an error naming what is wrong with it. */
export async function loadRevision(repo: string, rev: string): Promise<DesiredState> {
  let snapshot;
  try {
    snapshot = await readGitSnapshot(repo, rev);
  } catch (e) {
    throw new ReplayError(`cannot read revision ${rev} of ${repo}: ${(e as Error).message}`);
  }
  const loaded = loadSnapshot(snapshot);
  if (!loaded.state) {
    const first = loaded.errors.slice(0, 5).map((d) => `  ${d.file}:${d.line}:${d.col}: error: ${d.message}`);
    throw new ReplayError(`revision ${rev} is invalid (${loaded.errors.length} errors):\n${first.join("\n")}`);
  }
  return loaded.state;
}

/**
 * The stored events since a time: from the embedded store (DATA/store/events.db)
 * when there is one, else from the journal (DATA/journal/journal.db). Alerts are left out.
 */
export function storedEvents(dataDir: string, sinceMs: number): NormalizedEvent[] {
  const storeFile = join(dataDir, "store", "events.db");
  const journalFile = join(dataDir, "journal", "journal.db");
  const out: NormalizedEvent[] = [];
  if (existsSync(storeFile)) {
    const store = openStore(storeFile, { readonly: true });
    try {
      for (const e of store.eventsBetween(sinceMs)) out.push(e);
    } finally {
      store.close();
    }
    return out;
  }
  if (existsSync(journalFile)) {
    const journal = openJournal(journalFile);
    try {
      let after = 0;
      for (;;) {
        const recs = journal.read(after, 10_000);
        if (recs.length === 0) break;
        for (const r of recs) if (r.index !== "viw-alerts" && eventTime(r.event.timestamp) >= sinceMs) out.push(r.event);
        after = recs[recs.length - 1]!.seq;
      }
    } finally {
      void journal.close();
    }
    return out;
  }
  throw new ReplayError(`no stored events in ${dataDir}: neither store/events.db nor journal/journal.db exists`);
}

export function formatReplay(r: ReplayResult, format: "text" | "markdown"): string {
  const short = (rev: string) => (/^[0-9a-f]{40}$/.test(rev) ? rev.slice(0, 12) : rev);
  const span = r.from ? `${r.from} .. ${r.to}` : "no events";
  const changed = r.rules.filter((x) => x.added.length || x.removed.length);
  const lines: string[] = [];
  const fmtGroup = (g: Record<string, unknown>) => (Object.keys(g).length ? canonicalJson(g) : "(each event)");
  if (format === "markdown") {
    lines.push(`### Detection replay \`${short(r.base)}\` → \`${short(r.head)}\``, "");
    lines.push(`${r.events} stored events (${span}).`, "");
    if (!changed.length) lines.push("No alert would be added or removed.");
    else {
      lines.push("| rule | change | alerts base → head | added | removed |", "|---|---|---|---|---|");
      for (const x of changed) lines.push(`| \`${x.rule}\` | ${x.change} | ${x.base} → ${x.head} | ${x.added.length} | ${x.removed.length} |`);
      for (const x of changed) {
        lines.push("", `#### \`${x.rule}\``, "", "| | group | window |", "|---|---|---|");
        for (const a of x.added) lines.push(`| ➕ added | \`${fmtGroup(a.group)}\` | ${a.window_start} .. ${a.window_end} |`);
        for (const a of x.removed) lines.push(`| ➖ removed | \`${fmtGroup(a.group)}\` | ${a.window_start} .. ${a.window_end} |`);
      }
    }
  } else {
    lines.push(`replay ${short(r.base)}..${short(r.head)}: ${r.events} events (${span})`);
    for (const x of changed) {
      lines.push(`${x.rule} (${x.change}): ${x.base} -> ${x.head} alerts, +${x.added.length} -${x.removed.length}`);
      for (const a of x.added) lines.push(`  + ${fmtGroup(a.group)} ${a.window_start} .. ${a.window_end}`);
      for (const a of x.removed) lines.push(`  - ${fmtGroup(a.group)} ${a.window_start} .. ${a.window_end}`);
    }
    const added = changed.reduce((n, x) => n + x.added.length, 0);
    const removed = changed.reduce((n, x) => n + x.removed.length, 0);
    lines.push(`${added} added, ${removed} removed`);
  }
  return lines.join("\n") + "\n";
}
