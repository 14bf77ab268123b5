/**
 * The sealer writes a chain the verifier accepts, and every tamper case of
 * the spec (§9.2 "Log integrity") is detected and named at the right batch.
 */
import { chmodSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { canonicalJson, loadSnapshot, readDirSnapshot } from "../../../engine/config/index.js";
import { generatePrivateKey, softwareSigner } from "../../../engine/pki/keys/index.js";
import { createSealer, verifyChain, WormIncidentError, DirectoryWorm, type Manifest, type Sealer } from "../../../engine/siem/chain/index.js";
import { signDocument } from "../../../engine/siem/chain/format.js";
import type { LocalJournal } from "../../../engine/siem/journal/index.js";
import { Clock, event, journalIn, logKey, makeCa, tempDir, type LogKey, type TestCa } from "./helpers.js";

const INTERVAL = 2000;
const ca: TestCa = makeCa();
// Chains start after the test certificates' notBefore: the verifier checks each manifest was signed while its key's certificate was valid.
const startTime = () => Math.ceil(Date.now() / INTERVAL) * INTERVAL + INTERVAL;

interface Built {
  dir: string;
  worm: string;
  journal: LocalJournal;
  sealer: Sealer;
  clock: Clock;
  t0: number;
  key: LogKey;
  appended: string[];
}
const open: Built[] = [];
afterEach(async () => {
  for (const b of open.splice(0)) {
    await b.sealer.stop();
    await b.journal.close();
    rmSync(b.dir, { recursive: true, force: true });
  }
});

async function build(batches: number, opts: { checkpointEvery?: number; key?: LogKey; empty?: (i: number) => boolean; maxEmptyRun?: number } = {}): Promise<Built> {
  const dir = tempDir();
  const worm = join(dir, "worm");
  const journal = journalIn(dir);
  const key = opts.key ?? logKey(ca);
  const t0 = startTime();
  const clock = new Clock(t0);
  const sealer = createSealer({ journal, wormDir: worm, ...key, interval: INTERVAL, grace: 500, checkpointEvery: opts.checkpointEvery ?? 4, maxEmptyRun: opts.maxEmptyRun, now: clock.now });
  await sealer.start({ manual: true });
  const b: Built = { dir, worm, journal, sealer, clock, t0, key, appended: [] };
  open.push(b);
  await seal(b, batches, opts.empty ?? ((i) => i % 5 === 2));
  return b;
}

/** Appends events into the next `n` intervals and seals each as the clock passes it. */
async function seal(b: Built, n: number, empty: (i: number) => boolean = () => false): Promise<void> {
  for (let i = 0; i < n; i++) {
    const start = Math.floor(b.clock.t / INTERVAL) * INTERVAL;
    if (!empty(i)) {
      const evs = [event(start + 100), event(start + 900), event(start + 1500)];
      await b.journal.append(evs.map((event) => ({ index: "viw-auth", event })));
      b.appended.push(...evs.map((e) => e.event_id));
    }
    b.clock.t = start + INTERVAL + 600;
    await b.sealer.tick();
  }
}

const manifestPath = (b: Built, seq: number) => join(b.worm, "manifests", `${String(seq).padStart(12, "0")}.json`);
const manifestOf = (b: Built, seq: number) => JSON.parse(readFileSync(manifestPath(b, seq), "utf8")) as Manifest;
const writable = (p: string) => chmodSync(p, 0o644);

describe("sealed chain", () => {
  it("a clean chain verifies, against the CA chain, with its events, checkpoints and keys", async () => {
    const b = await build(10);
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.anchor).toBe("checked");
    expect(r.manifests).toBe(10);
    expect(r.events).toBe(b.appended.length);
    expect(r.batches).toBe(8); // intervals 2 and 7 were empty but still have manifests
    expect(r.checkpoints).toMatchObject({ stored: 2, verified: 2 });
    expect(r.keys).toEqual([expect.objectContaining({ key_id: b.key.signer.keyId, trusted: true })]);
    // empty intervals are sealed too, and intervals follow each other
    const m2 = manifestOf(b, 2);
    expect(m2).toMatchObject({ count: 0, start: new Date(b.t0 + 2 * INTERVAL).toISOString(), end: new Date(b.t0 + 3 * INTERVAL).toISOString() });
    expect(m2.batch).toBeUndefined();
    // every object is read-only once written
    expect(statSync(manifestPath(b, 0)).mode & 0o222).toBe(0);
    // batch lines are the canonical JSON of the events
    const m0 = manifestOf(b, 0);
    const lines = readFileSync(join(b.worm, m0.batch!), "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(canonicalJson(JSON.parse(l))).toBe(l);

    const unanchored = await verifyChain({ worm: b.worm });
    expect(unanchored.ok).toBe(true);
    expect(unanchored.anchor).toBe("not_checked");
    expect(unanchored.notes.join("\n")).toMatch(/trust anchor not checked/);
  });

  it("one byte of one event changed: modified_event at that batch", async () => {
    const b = await build(8);
    const m = manifestOf(b, 3);
    const file = join(b.worm, m.batch!);
    const bytes = readFileSync(file);
    const at = bytes.indexOf("login") + 1; // "login" -> "lpgin": still valid, canonical JSON
    bytes[at] = bytes[at]! + 1;
    writable(file);
    writeFileSync(file, bytes);
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.ok).toBe(false);
    expect(r.first_problem).toMatchObject({ kind: "modified_event", seq: 3, object: m.batch });
    expect(r.problems).toHaveLength(1);
  });

  it("an event edited by hand (re-serialized JSON) is named by line and event_id", async () => {
    const b = await build(4);
    const m = manifestOf(b, 1);
    const file = join(b.worm, m.batch!);
    const lines = readFileSync(file, "utf8").split("\n");
    const ev = JSON.parse(lines[1]!);
    lines[1] = JSON.stringify({ ...ev, result: "success" }, null, 1).replace(/\n/g, "");
    writable(file);
    writeFileSync(file, lines.join("\n"));
    const r = await verifyChain({ worm: b.worm });
    expect(r.first_problem).toMatchObject({ kind: "modified_event", seq: 1 });
    expect(r.first_problem!.message).toContain(`line 2`);
    expect(r.first_problem!.message).toContain(ev.event_id);
  });

  it("one batch deleted: missing_batch at that seq", async () => {
    const b = await build(8);
    const m = manifestOf(b, 4);
    rmSync(manifestPath(b, 4));
    rmSync(join(b.worm, m.batch!));
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.ok).toBe(false);
    expect(r.first_problem).toMatchObject({ kind: "missing_batch", seq: 4 });
    expect(r.first_problem!.message).toMatch(/batch 4 .*missing/);
  });

  it("only a batch file deleted (manifest kept): missing_batch naming the file", async () => {
    const b = await build(6);
    const m = manifestOf(b, 1);
    rmSync(join(b.worm, m.batch!));
    const r = await verifyChain({ worm: b.worm });
    expect(r.first_problem).toMatchObject({ kind: "missing_batch", seq: 1, object: m.batch });
  });

  it("two consecutive batches deleted: missing_batch naming both", async () => {
    const b = await build(9);
    for (const seq of [5, 6]) {
      const m = manifestOf(b, seq);
      rmSync(manifestPath(b, seq));
      if (m.batch) rmSync(join(b.worm, m.batch));
    }
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.first_problem).toMatchObject({ kind: "missing_batch", seq: 5 });
    expect(r.first_problem!.message).toContain("batches 5–6");
  });

  it("two batches swapped (manifests and batch files renamed): reordered", async () => {
    const b = await build(6);
    const [p3, p4] = [manifestPath(b, 3), manifestPath(b, 4)];
    renameSync(p3, p3 + ".x");
    renameSync(p4, p3);
    renameSync(p3 + ".x", p4);
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.first_problem).toMatchObject({ kind: "reordered", seq: 3 });
  });

  it("two batch files' contents swapped: reordered", async () => {
    const b = await build(6);
    const [f0, f1] = [join(b.worm, manifestOf(b, 0).batch!), join(b.worm, manifestOf(b, 1).batch!)];
    const [c0, c1] = [readFileSync(f0), readFileSync(f1)];
    writable(f0);
    writable(f1);
    writeFileSync(f0, c1);
    writeFileSync(f1, c0);
    const r = await verifyChain({ worm: b.worm });
    expect(r.first_problem).toMatchObject({ kind: "reordered", seq: 0 });
    expect(r.first_problem!.message).toContain("events of batch 1");
  });

  it("the newest N batches truncated: detected against a checkpoint kept earlier", async () => {
    const b = await build(12);
    const kept = readFileSync(join(b.worm, "checkpoints", `${String(12).padStart(12, "0")}.json`), "utf8");
    // the attacker removes the last 5 batches and every checkpoint that would give it away
    for (let seq = 7; seq < 12; seq++) {
      const m = manifestOf(b, seq);
      rmSync(manifestPath(b, seq));
      if (m.batch) rmSync(join(b.worm, m.batch));
    }
    rmSync(join(b.worm, "checkpoints", `${String(8).padStart(12, "0")}.json`));
    rmSync(join(b.worm, "checkpoints", `${String(12).padStart(12, "0")}.json`));
    // what remains is a consistent chain: without a checkpoint nothing can tell
    expect((await verifyChain({ worm: b.worm })).ok).toBe(true);
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem, checkpoint: kept });
    expect(r.ok).toBe(false);
    expect(r.first_problem).toMatchObject({ kind: "truncated", seq: 7, object: "--checkpoint" });
    expect(r.first_problem!.message).toMatch(/covers 12 manifests.*newest 5 batches were removed/);
    expect(r.checkpoints.external).toEqual({ size: 12, ok: false });
  });

  it("truncation is also caught by a checkpoint still in the WORM directory", async () => {
    const b = await build(9);
    rmSync(manifestPath(b, 8));
    const m7 = manifestOf(b, 7);
    rmSync(manifestPath(b, 7));
    if (m7.batch) rmSync(join(b.worm, m7.batch));
    const r = await verifyChain({ worm: b.worm });
    expect(r.first_problem).toMatchObject({ kind: "truncated", seq: 7 });
  });

  it("a manifest replaced by one signed with an unknown key: unknown_key", async () => {
    const b = await build(6);
    const original = manifestOf(b, 2);
    const forger = softwareSigner(generatePrivateKey("ecdsa-p256"));
    const { signature: _s, ...rest } = original;
    const { bytes } = await signDocument<Manifest>({ ...rest, key_id: forger.keyId, alg: forger.algorithm }, forger);
    writable(manifestPath(b, 2));
    writeFileSync(manifestPath(b, 2), bytes);
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.first_problem).toMatchObject({ kind: "unknown_key", seq: 2 });
    expect(r.first_problem!.message).toContain(forger.keyId);
  });

  it("a forger who also plants a certificate of their own CA is refused with --ca", async () => {
    const b = await build(4);
    const otherCa = makeCa(undefined, "Forger");
    const forgerKey = logKey(otherCa);
    const { keyBundle } = await import("../../../engine/siem/chain/keys.js");
    const bundle = keyBundle(forgerKey.certificatePem, forgerKey.chainPem);
    await new DirectoryWorm(b.worm).put(bundle.name, bundle.bytes);
    const { signature: _s, ...rest } = manifestOf(b, 1);
    const { bytes } = await signDocument<Manifest>({ ...rest, key_id: forgerKey.signer.keyId, alg: forgerKey.signer.algorithm }, forgerKey.signer);
    writable(manifestPath(b, 1));
    writeFileSync(manifestPath(b, 1), bytes);
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.first_problem).toMatchObject({ kind: "unknown_key", seq: 1 });
    expect(r.first_problem!.message).toMatch(/not trusted.*does not chain to the CA/);
    // without the anchor the planted certificate is believed, but the key change has no record
    const unanchored = await verifyChain({ worm: b.worm });
    expect(unanchored.first_problem).toMatchObject({ kind: "unknown_key", seq: 1 });
    expect(unanchored.first_problem!.message).toMatch(/no key-change record/);
  });

  it("a manifest field changed under its signature: bad_signature", async () => {
    const b = await build(4);
    const m = manifestOf(b, 2);
    writable(manifestPath(b, 2));
    writeFileSync(manifestPath(b, 2), canonicalJson({ ...m, sealed_at: new Date(Date.parse(m.sealed_at) + 1000).toISOString() }));
    const r = await verifyChain({ worm: b.worm });
    expect(r.first_problem).toMatchObject({ kind: "bad_signature", seq: 2 });
  });

  it("key rotation is recorded in the chain and the rotated chain verifies", async () => {
    const b = await build(3);
    const next = logKey(ca, "ed25519", "Log Signing Key 2");
    await b.sealer.rotateKey(next.signer, next.certificatePem, next.chainPem);
    await seal(b, 3);
    const m3 = manifestOf(b, 3);
    expect(m3.key_id).toBe(next.signer.keyId);
    expect(m3.key_change).toMatchObject({ from: b.key.signer.keyId, to: next.signer.keyId });
    expect(manifestOf(b, 4).key_change).toBeUndefined();
    expect(readdirSync(join(b.worm, "keys"))).toHaveLength(2);
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.problems).toEqual([]);
    expect(r.keys.map((k) => k.trusted)).toEqual([true, true]);
  });

  it("never overwrites: same bytes accepted, other bytes are an incident", async () => {
    const b = await build(1);
    const worm = new DirectoryWorm(b.worm);
    const name = "manifests/000000000000.json";
    const bytes = readFileSync(manifestPath(b, 0));
    await worm.put(name, bytes);
    await expect(worm.put(name, Buffer.from("{}"))).rejects.toBeInstanceOf(WormIncidentError);
    expect(readFileSync(manifestPath(b, 0)).equals(bytes)).toBe(true);
    await expect(worm.put("../escape", Buffer.from("x"))).rejects.toThrow(/invalid WORM object name/);
  });

  it("two writers racing for one name: one wins, the other is an incident, the winner's bytes stay", async () => {
    const dir = tempDir();
    const worm = new DirectoryWorm(join(dir, "w"));
    const results = await Promise.allSettled([worm.put("manifests/000000000007.json", Buffer.from("a")), worm.put("manifests/000000000007.json", Buffer.from("b"))]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const winner = results[0]!.status === "fulfilled" ? "a" : "b";
    expect((await worm.get("manifests/000000000007.json"))!.toString()).toBe(winner);
    expect(readdirSync(join(dir, "w", "manifests"))).toEqual(["000000000007.json"]); // no temp file left
    rmSync(dir, { recursive: true, force: true });
  });

  it("a WORM directory without its keys/ cannot vouch for anything; an empty one says so", async () => {
    const b = await build(2);
    rmSync(join(b.worm, "keys"), { recursive: true, force: true });
    const r = await verifyChain({ worm: b.worm });
    expect(r.first_problem).toMatchObject({ kind: "unknown_key", seq: 0 });
    const empty = await verifyChain({ worm: tempDir() });
    expect(empty).toMatchObject({ ok: true, manifests: 0 });
  });

  it("a restarted sealer resumes the manifest tree from its newest checkpoint, and later checkpoints still verify", async () => {
    const b = await build(10);
    await b.sealer.stop();
    const reads: string[] = [];
    const counting = new (class extends DirectoryWorm {
      override get(name: string) {
        reads.push(name);
        return super.get(name);
      }
    })(b.worm);
    const resumed = createSealer({ journal: b.journal, worm: counting, ...b.key, interval: INTERVAL, grace: 500, checkpointEvery: 4, now: b.clock.now });
    await resumed.start({ manual: true });
    // only the manifests from the checkpoint of 8 on are read, not the whole chain
    expect([...new Set(reads.filter((n) => n.startsWith("manifests/")))]).toEqual(["manifests/000000000007.json", "manifests/000000000008.json", "manifests/000000000009.json"]);
    b.sealer = resumed;
    await seal(b, 7);
    const cps = readdirSync(join(b.worm, "checkpoints"));
    expect(cps).toEqual(["000000000004.json", "000000000008.json", "000000000012.json", "000000000016.json"]);
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.problems).toEqual([]);
    expect(r.checkpoints).toMatchObject({ stored: 4, verified: 4 });
    expect(r.events).toBe(b.appended.length);
  });

  it("the sealer refuses to extend a damaged chain", async () => {
    const b = await build(3);
    await b.sealer.stop();
    renameSync(manifestPath(b, 1), manifestPath(b, 5));
    const again = createSealer({ journal: b.journal, wormDir: b.worm, ...b.key, interval: INTERVAL, now: b.clock.now });
    await expect(again.start({ manual: true })).rejects.toThrow(/000000000001\.json is missing .*damaged, run viw verify-logs/);
  });

  it("retention (policies/ retention.worm) removes only whole expired batches, and the chain still verifies", async () => {
    const repo = tempDir("viw-repo-");
    const { cpSync } = await import("node:fs");
    for (const d of ["profiles", "pins", "policies", "detections", "dashboards"]) cpSync(join(process.cwd(), d), join(repo, d), { recursive: true });
    writeFileSync(join(repo, "policies", "retention.yaml"), "id: retention\nkind: retention\nevents: 1d\nworm: 1d\n");
    const { state, errors } = loadSnapshot(await readDirSnapshot(repo));
    expect(errors).toEqual([]);
    rmSync(repo, { recursive: true, force: true });
    const b = await build(5, { empty: () => false, maxEmptyRun: 10 });
    const prepared = await b.sealer.prepare(state!, undefined);
    prepared.commit();
    b.clock.t += 2 * 86_400_000; // two days later
    await b.journal.append([{ index: "viw-auth", event: event(b.clock.t - 100) }]);
    b.clock.t += INTERVAL;
    await b.sealer.tick();
    const batches = readdirSync(join(b.worm, "batches"));
    expect(batches).toHaveLength(1); // the five old batches are gone, the new one stays
    const r = await verifyChain({ worm: b.worm, ca: ca.caPem });
    expect(r.problems).toEqual([]);
    expect(r.expired).toBe(5);
    // the manifest that allowed it is signed, and the gap of two days is one manifest of empty intervals
    const last = manifestOf(b, r.manifests - 1);
    expect(last.expire_before).toBeDefined();
    expect(manifestOf(b, 5)).toMatchObject({ count: 0, start: new Date(b.t0 + 5 * INTERVAL).toISOString() });
  });
});

describe("sealer", () => {
  it("seals late events into the next open batch, each event exactly once", async () => {
    const b = await build(2, { empty: () => false });
    const late = event(b.t0 + 100); // received in interval 0, already sealed
    await b.journal.append([{ index: "viw-auth", event: late }]);
    await seal(b, 1);
    const m2 = manifestOf(b, 2);
    expect(readFileSync(join(b.worm, m2.batch!), "utf8")).toContain(late.event_id);
    const r = await verifyChain({ worm: b.worm });
    expect(r.problems).toEqual([]);
    expect(r.events).toBe(b.appended.length + 1);
  });

  it("restarts from its cursor without duplicating or skipping, even if the cursor commit was lost", async () => {
    const dir = tempDir();
    const worm = join(dir, "worm");
    let journal = journalIn(dir);
    const key = logKey(ca);
    const T0 = startTime();
    const clock = new Clock(T0);
    // the first sealer's cursor commits are lost, as if it crashed right after each manifest was durable
    const lossy = Object.create(journal, { commitCursor: { value: () => undefined } }) as LocalJournal;
    const s1 = createSealer({ journal: lossy, wormDir: worm, ...key, interval: INTERVAL, grace: 500, now: clock.now });
    await s1.start({ manual: true });
    const ids: string[] = [];
    const add = async (t: number) => {
      const e = event(t);
      ids.push(e.event_id);
      await journal.append([{ index: "viw-auth", event: e }]);
    };
    await add(T0 + 10);
    await add(T0 + 1900);
    await add(T0 + INTERVAL + 10); // interval 1: still open when interval 0 is sealed
    clock.t = T0 + INTERVAL + 600;
    expect(await s1.tick()).toBe(1);
    await s1.stop(); // "crash": its pending event of interval 1 is only in the journal
    expect(journal.cursor("sealer")).toBe(0);
    await journal.close();

    journal = journalIn(dir);
    const s2 = createSealer({ journal, wormDir: worm, ...key, interval: INTERVAL, grace: 500, now: clock.now });
    await s2.start({ manual: true });
    await add(T0 + INTERVAL + 20);
    clock.t = T0 + 2 * INTERVAL + 600;
    expect(await s2.tick()).toBe(1);
    expect(journal.cursor("sealer")).toBe(4);
    await s2.stop();
    await journal.close();

    const r = await verifyChain({ worm });
    expect(r.problems).toEqual([]);
    const sealed = readdirSync(join(worm, "batches")).flatMap((f) =>
      readFileSync(join(worm, "batches", f), "utf8")
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l).event_id as string),
    );
    expect(sealed.sort()).toEqual([...ids].sort());
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a certificate that is not the signer's key", async () => {
    const dir = tempDir();
    const journal = journalIn(dir);
    const a = logKey(ca);
    const other = logKey(ca);
    expect(() => createSealer({ journal, wormDir: join(dir, "w"), signer: a.signer, certificatePem: other.certificatePem })).toThrow(/certificate is for key/);
    await journal.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs on its own timer and reports status", async () => {
    const dir = tempDir();
    const journal = journalIn(dir);
    const key = logKey(ca);
    const sealer = createSealer({ journal, wormDir: join(dir, "worm"), ...key, interval: 300, grace: 50 });
    await sealer.start();
    await journal.append([{ index: "viw-auth", event: event(Date.now()) }]);
    const deadline = Date.now() + 5000;
    while ((sealer.status().last_seq ?? -1) < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await sealer.stop();
    const st = sealer.status();
    expect(st.last_seq).toBeGreaterThanOrEqual(2);
    expect(st).toMatchObject({ interval_ms: 300, key_id: key.signer.keyId, pending_events: 0, last_error: null });
    const r = await verifyChain({ worm: join(dir, "worm"), ca: ca.caPem });
    expect(r.ok).toBe(true);
    expect(r.events).toBe(1);
    await journal.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
