/**
 * `viw verify-logs` as a user runs it (exit codes, text and JSON, --event with
 * a proof file or the WORM dir) and GET /v1/proof on a real loopback listener.
 */
import { chmodSync, cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../../engine/cli/verify-logs.js";
import { UsageError } from "../../../engine/cli/main.js";
import { checkProof, checkpointsConsistent, createSealer, proofRoutes, type Checkpoint, type CheckpointAnswer, type InclusionProof, type Manifest } from "../../../engine/siem/chain/index.js";
import { Clock, event, journalIn, logKey, makeCa, tempDir } from "./helpers.js";

const INTERVAL = 2000;
const ca = makeCa();
let dir: string;
let worm: string;
let caFile: string;
const ids: string[] = [];

beforeAll(async () => {
  dir = tempDir();
  worm = join(dir, "worm");
  caFile = join(dir, "ca.pem");
  writeFileSync(caFile, ca.caPem);
  const journal = journalIn(dir);
  const clock = new Clock(Math.ceil(Date.now() / INTERVAL) * INTERVAL + INTERVAL);
  const sealer = createSealer({ journal, wormDir: worm, ...logKey(ca), interval: INTERVAL, grace: 500, checkpointEvery: 3, now: clock.now });
  await sealer.start({ manual: true });
  for (let i = 0; i < 6; i++) {
    const start = clock.t;
    const evs = Array.from({ length: 5 }, (_, k) => event(start + 100 + k * 10));
    ids.push(...evs.map((e) => e.event_id));
    await journal.append(evs.map((e) => ({ index: "viw-auth", event: e })));
    clock.t = start + INTERVAL;
    clock.advance(600);
    await sealer.tick();
    clock.t = start + INTERVAL;
  }
  await sealer.stop();
  await journal.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => {
    out += String(s);
    return true;
  });
  try {
    return { code: await main(argv), out };
  } finally {
    spy.mockRestore();
  }
}

function copyWorm(): string {
  const copy = join(tempDir(), "worm");
  // a copied WORM directory, as an auditor would get it
  cpSync(worm, copy, { recursive: true });
  return copy;
}

describe("viw verify-logs", () => {
  it("exit 0 and a summary on an intact copy; the anchor state is said", async () => {
    const ok = await run(["--worm", worm, "--ca", caFile]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^intact: 6 manifests .* 6 batches, 30 events/m);
    expect(ok.out).toContain("chains to --ca");
    const unanchored = await run(["--worm", worm]);
    expect(unanchored.code).toBe(0);
    expect(unanchored.out).toContain("anchor not checked");
    const viaData = await run(["--data", dir, "--format", "json"]);
    expect(viaData.code).toBe(0);
    expect(JSON.parse(viaData.out)).toMatchObject({ ok: true, manifests: 6, events: 30, anchor: "not_checked", first_problem: null });
  });

  it("exit 1 naming the first broken batch, in text and JSON", async () => {
    const copy = copyWorm();
    const m = JSON.parse(readFileSync(join(copy, "manifests", "000000000002.json"), "utf8")) as Manifest;
    const file = join(copy, m.batch!);
    chmodSync(file, 0o644);
    writeFileSync(file, readFileSync(file, "utf8").replace("success", "failure"));
    const text = await run(["--worm", copy, "--ca", caFile]);
    expect(text.code).toBe(1);
    expect(text.out).toMatch(/^TAMPERED: modified_event at batch 2 \(batches\/000000000002-/);
    const json = await run(["--worm", copy, "--format", "json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out).first_problem).toMatchObject({ kind: "modified_event", seq: 2 });
    rmSync(join(copy, ".."), { recursive: true, force: true });
  });

  it("--checkpoint catches a truncated copy", async () => {
    const copy = copyWorm();
    const kept = join(dir, "kept-checkpoint.json");
    writeFileSync(kept, readFileSync(join(worm, "checkpoints", "000000000006.json")));
    for (const seq of [4, 5]) {
      const name = join(copy, "manifests", `00000000000${seq}.json`);
      const m = JSON.parse(readFileSync(name, "utf8")) as Manifest;
      rmSync(name);
      rmSync(join(copy, m.batch!));
    }
    rmSync(join(copy, "checkpoints", "000000000006.json"));
    expect((await run(["--worm", copy])).code).toBe(0);
    const r = await run(["--worm", copy, "--checkpoint", kept]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^TAMPERED: truncated at batch 4 \(--checkpoint\)/);
    rmSync(join(copy, ".."), { recursive: true, force: true });
  });

  it("usage errors exit 2 with a message naming the problem", async () => {
    await expect(main(["--worm", join(dir, "nope")])).rejects.toThrow(UsageError);
    await expect(main(["--worm", worm, "--format", "xml"])).rejects.toThrow(/--format must be text or json/);
    await expect(main(["--worm", worm, "--ca", join(dir, "missing.pem")])).rejects.toThrow(/--ca .*no such file/);
    await expect(main(["--worm", worm, "--data", dir])).rejects.toThrow(/not both/);
    await expect(main(["--worm", worm, "--bogus"])).rejects.toThrow(UsageError);
    await expect(main(["--worm", worm, "--proof", "x.json"])).rejects.toThrow(/--proof needs --event/);
  });
});

describe("inclusion proofs", () => {
  it("--event proves one event from the WORM dir, and from a proof file offline", async () => {
    const id = ids[17]!;
    const r = await run(["--worm", worm, "--ca", caFile, "--event", id, "--format", "json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out) as { ok: boolean; in_chain: boolean; proof: InclusionProof };
    expect(out).toMatchObject({ ok: true, in_chain: true, anchor: "checked" });
    expect(out.proof).toMatchObject({ event_id: id, seq: 3, leaf_index: 2, tree_size: 5 });
    expect(out.proof.audit_path).toHaveLength(3);

    const proofFile = join(dir, "proof.json");
    writeFileSync(proofFile, JSON.stringify(out.proof));
    const offline = await run(["--event", id, "--proof", proofFile, "--ca", caFile]);
    expect(offline.code).toBe(0);
    expect(offline.out).toMatch(/^included: event .* is leaf 2 of 5 in batch 3/);

    // a doctored event in the proof is refused
    const forged = { ...out.proof, event: { ...out.proof.event, result: "other" } };
    writeFileSync(proofFile, JSON.stringify(forged));
    const bad = await run(["--event", id, "--proof", proofFile]);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/NOT PROVEN[\s\S]*the event was modified/);

    // a certificate from another CA is refused with --ca
    const other = makeCa(undefined, "Other");
    writeFileSync(join(dir, "other.pem"), other.caPem);
    const wrongCa = await checkProof(out.proof, { ca: other.caPem });
    expect(wrongCa.ok).toBe(false);
    expect(wrongCa.problems.join()).toMatch(/does not chain to the CA/);

    const missing = await run(["--worm", worm, "--event", "no-such-event"]);
    expect(missing.code).toBe(1);
    expect(missing.out).toMatch(/NOT FOUND/);
  });

  it("GET /v1/proof and /v1/checkpoint on the admin listener: verifiable proofs, 404, 400", async () => {
    const app = Fastify();
    await app.register(proofRoutes({ worm, interval: INTERVAL }));
    const base = await app.listen({ host: "127.0.0.1", port: 0 });
    try {
      const id = ids[3]!;
      const ok = await fetch(`${base}/v1/proof?event_id=${encodeURIComponent(id)}`);
      expect(ok.status).toBe(200);
      const proof = (await ok.json()) as InclusionProof;
      expect(proof).toMatchObject({ event_id: id, seq: 0, leaf_index: 3 });
      expect(await checkProof(proof, { ca: ca.caPem, worm })).toMatchObject({ ok: true, in_chain: true });
      const near = await fetch(`${base}/v1/proof?event_id=${encodeURIComponent(ids[29]!)}&near=${encodeURIComponent(proof.manifest.start)}`);
      expect(near.status).toBe(200);
      const nf = await fetch(`${base}/v1/proof?event_id=nope`);
      expect(nf.status).toBe(404);
      expect(((await nf.json()) as { error: { code: string } }).error.code).toBe("not_found");
      const bad = await fetch(`${base}/v1/proof`);
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ error: { field: "event_id" } });
      const badNear = await fetch(`${base}/v1/proof?event_id=x&near=yesterday`);
      expect(badNear.status).toBe(400);

      // a monitor that kept the checkpoint of 3 manifests checks the newest one extends it
      const kept = JSON.parse(readFileSync(join(worm, "checkpoints", "000000000003.json"), "utf8")) as Checkpoint;
      const cp = await fetch(`${base}/v1/checkpoint?from=3`);
      expect(cp.status).toBe(200);
      const answer = (await cp.json()) as CheckpointAnswer;
      expect(answer.checkpoint.size).toBe(6);
      expect(checkpointsConsistent(kept, answer.checkpoint, answer.consistency!.path)).toBe(true);
      expect(checkpointsConsistent({ ...kept, root: answer.checkpoint.root }, answer.checkpoint, answer.consistency!.path)).toBe(false);
      expect((await fetch(`${base}/v1/checkpoint?from=7`)).status).toBe(400);
      expect((await fetch(`${base}/v1/checkpoint?from=abc`)).status).toBe(400);
      expect(((await (await fetch(`${base}/v1/checkpoint`)).json()) as CheckpointAnswer).consistency).toBeUndefined();
    } finally {
      await app.close();
    }
  });
});
