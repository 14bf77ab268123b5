import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { checkProof, proofFor, verifyChain, verifyReceipt, type InclusionProof, type VerifyReport } from "../siem/chain/index.js";
import { parseOptions, UsageError } from "./args.js";

const USAGE = "usage: viw verify-logs [--data DIR | --worm DIR] [--ca FILE] [--checkpoint FILE] [--event EVENT_ID [--proof FILE] | --receipt FILE] [--format text|json]";

async function readArg(flag: string, file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    throw new UsageError(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
}

/** A one-line bar on stderr, redrawn at most every 100 ms; only on a terminal. */
function progressBar(): { update(done: number, total: number): void; end(): void } | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return {
    update(done, total) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const width = 30;
      const filled = total === 0 ? width : Math.round((done / total) * width);
      process.stderr.write(`\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total} batches`);
    },
    end() {
      process.stderr.write("\r\x1b[K");
    },
  };
}

function printReport(r: VerifyReport): void {
  const out = (s: string) => process.stdout.write(s + "\n");
  if (r.first_problem) {
    const p = r.first_problem;
    out(`TAMPERED: ${p.kind}${p.seq !== null ? ` at batch ${p.seq}` : ""} (${p.object}): ${p.message}`);
    if (r.problems.length > 1) {
      out(`${r.problems.length - 1} more problem${r.problems.length === 2 ? "" : "s"}:`);
      for (const q of r.problems.slice(1, 21)) out(`  ${q.kind}${q.seq !== null ? ` at batch ${q.seq}` : ""} (${q.object}): ${q.message}`);
      if (r.problems.length > 21) out(`  … (--format json lists all)`);
    }
  } else {
    out(`intact: ${r.manifests} manifests (${r.from ?? "-"} to ${r.to ?? "-"}), ${r.batches} batches, ${r.events} events, ${r.bytes} bytes${r.expired ? `, ${r.expired} batches expired by retention` : ""}`);
  }
  out(`checkpoints: ${r.checkpoints.verified}/${r.checkpoints.stored} stored verified${r.checkpoints.external ? `; --checkpoint (${r.checkpoints.external.size} manifests) ${r.checkpoints.external.ok ? "consistent" : "NOT consistent"}` : ""}`);
  for (const k of r.keys) out(`key ${k.key_id.slice(0, 16)}… ${k.subject} (${k.not_before} to ${k.not_after}): ${k.trusted === null ? "anchor not checked" : k.trusted ? "chains to --ca" : `NOT trusted: ${k.reason}`}`);
  for (const n of r.notes) out(`note: ${n}`);
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseOptions(
    argv,
    {
      data: { type: "string" },
      worm: { type: "string" },
      ca: { type: "string" },
      checkpoint: { type: "string" },
      event: { type: "string" },
      proof: { type: "string" },
      receipt: { type: "string" },
      format: { type: "string", default: "text" },
    },
    USAGE,
  );
  if (values.format !== "text" && values.format !== "json") throw new UsageError(`--format must be text or json, not ${values.format}\n${USAGE}`);
  if (values.data !== undefined && values.worm !== undefined) throw new UsageError(`give --data or --worm, not both\n${USAGE}`);
  if (values.proof !== undefined && values.event === undefined) throw new UsageError(`--proof needs --event EVENT_ID\n${USAGE}`);
  if (values.receipt !== undefined && values.event !== undefined) throw new UsageError(`give --receipt or --event, not both\n${USAGE}`);
  const ca = values.ca !== undefined ? await readArg("--ca", values.ca) : undefined;
  const wormGiven = values.worm ?? (values.data !== undefined ? join(values.data, "worm") : undefined);
  const worm = resolve(wormGiven ?? join(process.env.VIW_DATA ?? ".viw-data", "worm"));
  const json = values.format === "json";
  if (ca !== undefined && !ca.includes("-----BEGIN CERTIFICATE-----")) throw new UsageError(`--ca ${values.ca}: no PEM certificate in the file`);
  if (!(values.proof !== undefined && wormGiven === undefined) && !existsSync(worm)) throw new UsageError(`${values.worm !== undefined ? "--worm" : "--data"} ${wormGiven ?? ".viw-data"}: no WORM directory at ${worm}`);

  if (values.receipt !== undefined) {
    let receipt: unknown;
    const text = await readArg("--receipt", values.receipt);
    try {
      receipt = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`--receipt ${values.receipt}: not JSON (${(e as Error).message})`);
    }
    // A whole bulk response is accepted too: its receipt is the `receipt` field.
    if (receipt && typeof receipt === "object" && "receipt" in receipt && "accepted" in receipt) receipt = (receipt as { receipt: unknown }).receipt;
    const check = await verifyReceipt(receipt, { worm, ca });
    if (json) process.stdout.write(JSON.stringify(check, null, 2) + "\n");
    else {
      const r = receipt as { received_at?: string; batch?: { start?: string; end?: string } };
      process.stdout.write(
        check.ok
          ? `receipt confirmed: ${check.events} events received at ${r.received_at} are in sealed batch ${check.seq} (${r.batch?.start} to ${r.batch?.end}, ${check.batch}), ${check.proven} inclusion proofs verified, receipt and manifest signatures valid\n`
          : `RECEIPT NOT CONFIRMED (${values.receipt}):\n${check.problems.map((p) => `  ${p}`).join("\n")}\n`,
      );
      if (check.anchor === "not_checked") process.stdout.write("note: trust anchor not checked (give --ca to check the signing certificate against the CA)\n");
    }
    return check.ok ? 0 : 1;
  }

  if (values.event !== undefined) {
    let proof: InclusionProof | undefined;
    if (values.proof !== undefined) {
      try {
        proof = JSON.parse(await readArg("--proof", values.proof)) as InclusionProof;
      } catch (e) {
        if (e instanceof UsageError) throw e;
        throw new UsageError(`--proof ${values.proof}: not JSON (${(e as Error).message})`);
      }
      if (proof.event_id !== values.event) throw new UsageError(`--proof ${values.proof} is the proof of event ${JSON.stringify(proof.event_id)}, not ${JSON.stringify(values.event)}`);
    } else {
      proof = await proofFor(worm, values.event);
      if (!proof) {
        if (json) process.stdout.write(JSON.stringify({ ok: false, event_id: values.event, problems: [`event not found in the sealed batches of ${worm}`] }, null, 2) + "\n");
        else process.stdout.write(`NOT FOUND: event ${values.event} is in no sealed batch of ${worm}\n`);
        return 1;
      }
    }
    // With a proof file, the WORM copy is consulted only when one was named.
    const check = await checkProof(proof, { ca, worm: values.proof === undefined || wormGiven !== undefined ? worm : undefined });
    if (json) process.stdout.write(JSON.stringify({ ...check, proof }, null, 2) + "\n");
    else {
      process.stdout.write(
        check.ok
          ? `included: event ${check.event_id} is leaf ${proof.leaf_index} of ${proof.tree_size} in batch ${check.seq} (${proof.manifest.start}), root ${proof.manifest.root.slice(0, 16)}…, manifest signature valid${check.in_chain ? ", manifest is in the WORM chain" : ""}\n`
          : `NOT PROVEN: event ${check.event_id}:\n${check.problems.map((p) => `  ${p}`).join("\n")}\n`,
      );
      if (check.anchor === "not_checked") process.stdout.write("note: trust anchor not checked (give --ca to check the signing certificate against the CA)\n");
    }
    return check.ok ? 0 : 1;
  }

  const checkpoint = values.checkpoint !== undefined ? await readArg("--checkpoint", values.checkpoint) : undefined;
  const bar = json ? undefined : progressBar();
  let report: VerifyReport;
  try {
    report = await verifyChain({ worm, ca, checkpoint, onProgress: bar?.update });
  } finally {
    bar?.end();
  }
  if (report.manifests === 0 && !json) process.stdout.write(`note: no manifests in ${worm}\n`);
  if (json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else printReport(report);
  return report.ok ? 0 : 1;
}
