/**
 * Change evidence from the timeline: which reviewed commit was live when, who
 * signed and approved it, what it relaxed, and whether the timeline verified.
 */
import { readTimeline, type KeyInfo, type TimelineEntry } from "./timeline.js";

export interface LiveInterval {
  revision: string;
  commit?: string;
  tree?: string;
  digest?: string;
  from: string;
  /** null: still live at the end of the timeline. */
  to: string | null;
  trust?: string;
  bootstrap: boolean;
  signer: { principal: string; fingerprint: string } | null;
  approvers: { principal: string; fingerprint: string }[];
  changes: number;
  relaxations: { kind: string; id: string; field?: string; reason?: string }[];
  seq: number;
}

export interface Evidence {
  verified: boolean;
  verification: string;
  entries: number;
  head: string;
  /** The keys that signed the timeline (the Log Signing Key shows its certificate). */
  keys: KeyInfo[];
  from?: string;
  to?: string;
  live: LiveInterval[];
  refused: { time: string; revision: string; reason?: string; missing_approvals?: number; seq: number }[];
}

/** Builds the evidence for [from, to] (ISO times or epoch ms; either may be open). */
export async function buildEvidence(dataDir: string, range: { from?: Date; to?: Date } = {}): Promise<Evidence> {
  const v = await readTimeline(dataDir);
  const live: LiveInterval[] = [];
  let open: LiveInterval | undefined;
  const refused: Evidence["refused"] = [];
  const close = (at: string) => {
    if (open) open.to = at;
    open = undefined;
  };
  for (const e of v.entries) {
    if (e.type === "applied") {
      close(e.time);
      open = intervalOf(e);
      live.push(open);
    } else if (e.type === "stopped") {
      close(e.time);
    } else if (e.type === "refused") {
      refused.push({ time: e.time, revision: e.revision, reason: e.reason, missing_approvals: e.missing_approvals, seq: e.seq });
    }
  }
  const from = range.from?.getTime() ?? -Infinity;
  const to = range.to?.getTime() ?? Infinity;
  const overlaps = (a: string, b: string | null) => Date.parse(a) <= to && (b === null ? Infinity : Date.parse(b)) >= from;
  return {
    verified: v.ok,
    verification: v.ok ? `timeline verified: ${v.entries.length} entries, hash chain and signatures intact, head ${v.head}` : `timeline FAILED verification: ${v.error}`,
    entries: v.entries.length,
    head: v.head,
    keys: v.keys,
    from: range.from?.toISOString(),
    to: range.to?.toISOString(),
    live: live.filter((i) => overlaps(i.from, i.to)),
    refused: refused.filter((r) => overlaps(r.time, r.time)),
  };
}

function intervalOf(e: TimelineEntry): LiveInterval {
  return {
    revision: e.revision,
    commit: e.commit,
    tree: e.tree,
    digest: e.digest,
    from: e.time,
    to: null,
    trust: e.trust,
    bootstrap: e.bootstrap ?? false,
    signer: e.signer ?? null,
    approvers: e.approvers ?? [],
    changes: e.plan?.changes ?? 0,
    relaxations: (e.plan?.items ?? []).filter((i) => i.relaxation).map(({ kind, id, field, reason }) => ({ kind, id, field, reason })),
    seq: e.seq,
  };
}

/** The evidence as a Markdown report for an auditor. */
export function evidenceMarkdown(ev: Evidence): string {
  const out: string[] = [];
  out.push("# viw change evidence", "");
  out.push(`Range: ${ev.from ?? "beginning"} → ${ev.to ?? "now"}`, "");
  out.push(ev.verified ? `**${ev.verification}**` : `**WARNING — ${ev.verification}**`, "");
  for (const k of ev.keys) {
    out.push(`- signed by key ${k.key_id} (${k.entries} entries): ${k.certificate ? `certificate ${k.certificate.subject.replace(/\n/g, ", ")}, serial ${k.certificate.serial}, issued by ${k.certificate.issuer.replace(/\n/g, ", ")}; chain ${k.certificate.chain_verified ? "verified" : "NOT verified"} to root SHA-256 ${k.certificate.root_sha256}` : "the engine's timeline key (DATA/keys/timeline.key)"}`);
  }
  out.push("");
  out.push("## Live revisions", "");
  out.push("| live from | live until | commit | signed by | approved by | changes | relaxations |");
  out.push("|---|---|---|---|---|---|---|");
  for (const i of ev.live) {
    const signer = i.signer ? `${i.signer.principal} (${i.signer.fingerprint})` : i.trust === "unsigned-dev" ? "unsigned (dev mode)" : "—";
    const approvers = i.approvers.map((a) => a.principal).join(", ") || (i.bootstrap ? "bootstrap" : "—");
    const relax = i.relaxations.map((r) => `${r.kind}/${r.id}${r.field ? `.${r.field}` : ""}`).join(", ") || "none";
    out.push(`| ${i.from} | ${i.to ?? "now"} | \`${(i.commit ?? i.revision).slice(0, 12)}\` | ${signer} | ${approvers} | ${i.changes} | ${relax} |`);
  }
  const withRelax = ev.live.filter((i) => i.relaxations.length);
  if (withRelax.length) {
    out.push("", "## Relaxations", "");
    for (const i of withRelax) {
      for (const r of i.relaxations) {
        out.push(`- \`${(i.commit ?? i.revision).slice(0, 12)}\` ${r.kind}/${r.id}${r.field ? ` ${r.field}` : ""}: ${r.reason ?? "relaxation"} — approved by ${i.approvers.map((a) => a.principal).join(", ") || "nobody (bootstrap)"}`);
      }
    }
  }
  if (ev.refused.length) {
    out.push("", "## Refused revisions", "");
    for (const r of ev.refused) {
      out.push(`- ${r.time} \`${r.revision.slice(0, 12)}\`: ${r.reason ?? "refused"}${r.missing_approvals ? ` (${r.missing_approvals} approvals missing)` : ""}`);
    }
  }
  return out.join("\n") + "\n";
}
