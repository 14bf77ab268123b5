/**
 * The event index: proofs found with a constant number of WORM reads however
 * many batches the chain holds; the index is idempotent and rebuilt from the
 * WORM store when deleted or damaged.
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { checkProof, createSealer, DirectoryWorm, EventIndex, intervalStart, proofFor, type Sealer, type WormStore } from "../../../engine/siem/chain/index.js";
import type { LocalJournal } from "../../../engine/siem/journal/index.js";
import { Clock, event, journalIn, logKey, makeCa, tempDir, type LogKey } from "./helpers.js";

const INTERVAL = 1000;
const ca = makeCa();
const key: LogKey = logKey(ca);

/** Counts reads of batch files and manifests. */
class CountingWorm implements WormStore {
  reads = 0;
  constructor(private readonly inner: DirectoryWorm) {}
  get location() {
    return this.inner.location;
  }
  put(name: string, data: Uint8Array) {
    return this.inner.put(name, data);
  }
  get(name: string) {
    if (name.startsWith("batches/") || name.startsWith("manifests/")) this.reads++;
    return this.inner.get(name);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  remove(name: string) {
    return this.inner.remove(name);
  }
}

interface World {
  dir: string;
  journal: LocalJournal;
  clock: Clock;
  ids: string[];
  sealers: Sealer[];
}
const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) {
    for (const s of w.sealers) await s.stop();
    await w.journal.close();
    rmSync(w.dir, { recursive: true, force: true });
  }
});

const indexFile = (w: World) => join(w.dir, "chain", "events.db");

async function startSealer(w: World): Promise<Sealer> {
  const sealer = createSealer({ journal: w.journal, wormDir: join(w.dir, "worm"), ...key, interval: INTERVAL, grace: 200, indexFile: indexFile(w), now: w.clock.now, checkpointEvery: 1000 });
  await sealer.start({ manual: true });
  w.sealers.push(sealer);
  return sealer;
}

/** `batches` sealed intervals of 2 events each. */
async function world(batches: number): Promise<{ w: World; sealer: Sealer }> {
  const dir = tempDir();
  const w: World = { dir, journal: journalIn(dir), clock: new Clock(Math.ceil(Date.now() / INTERVAL) * INTERVAL + INTERVAL), ids: [], sealers: [] };
  worlds.push(w);
  const sealer = await startSealer(w);
  for (let i = 0; i < batches; i++) {
    const start = intervalStart(w.clock.t, INTERVAL);
    const evs = [event(start + 10), event(start + 500)];
    await w.journal.append(evs.map((e) => ({ index: "viw-auth", event: e })));
    w.ids.push(...evs.map((e) => e.event_id));
    w.clock.t = start + INTERVAL + 300;
    await sealer.tick();
  }
  await sealer.whenIndexed();
  return { w, sealer };
}

describe("event index", () => {
  it("finds any event of a long chain without a near hint in a constant number of reads, and the proof verifies", async () => {
    const { w, sealer } = await world(150);
    const worm = new CountingWorm(new DirectoryWorm(join(w.dir, "worm")));
    for (const i of [0, 1, 149, 150, 299]) {
      worm.reads = 0;
      const proof = await proofFor(worm, w.ids[i]!, { index: sealer.eventIndex });
      expect(proof?.seq).toBe(Math.floor(i / 2));
      expect(proof?.leaf_index).toBe(i % 2);
      expect(worm.reads).toBe(2); // its manifest and its batch, whatever the chain's length
      expect((await checkProof(proof!, { ca: ca.caPem, worm: join(w.dir, "worm") })).ok).toBe(true);
    }
    // The same lookup without the index searches batch after batch.
    worm.reads = 0;
    expect((await proofFor(worm, w.ids[0]!))?.seq).toBe(0);
    expect(worm.reads).toBeGreaterThan(150);
    // A complete index answers "not sealed" without reading any batch.
    worm.reads = 0;
    expect(await proofFor(worm, "ev-never-received", { index: sealer.eventIndex })).toBeUndefined();
    expect(worm.reads).toBe(0);
    expect(sealer.status()).toMatchObject({ event_index: "complete" });
  }, 60_000);

  it("a batch still being written to the index is searched, so a proof asked right after the seal is found", async () => {
    const { w, sealer } = await world(3);
    const start = intervalStart(w.clock.t, INTERVAL);
    const evs = Array.from({ length: 20_000 }, (_, i) => event(start + 1 + (i % 900)));
    await w.journal.append(evs.map((e) => ({ index: "viw-auth", event: e })));
    w.clock.t = start + INTERVAL + 300;
    await sealer.tick();
    // 20,000 rows are written in slices between turns of the event loop: the batch is still lagging here.
    expect(sealer.eventIndex!.lagging()).toContain(3);
    const worm = new CountingWorm(new DirectoryWorm(join(w.dir, "worm")));
    const proof = await proofFor(worm, evs[19_999]!.event_id, { index: sealer.eventIndex });
    expect(proof).toMatchObject({ seq: 3, leaf_index: 19_999 });
    expect(worm.reads).toBeLessThanOrEqual(2);
    await sealer.whenIndexed();
    expect(sealer.eventIndex!.lagging()).toEqual([]);
    expect(sealer.eventIndex!.find(evs[12_345]!.event_id)).toEqual({ seq: 3, leaf: 12_345 });
  }, 60_000);

  it("is rebuilt from the WORM store when its file is deleted or damaged, and a replay changes nothing", async () => {
    const { w, sealer } = await world(40);
    const stats = sealer.eventIndex!.stats();
    expect(stats).toEqual({ events: 80, batches: 40 });
    await sealer.stop();

    rmSync(indexFile(w));
    for (const s of ["-wal", "-shm"]) rmSync(indexFile(w) + s, { force: true });
    const again = await startSealer(w);
    expect(again.eventIndex!.created).toBe(true);
    await again.whenIndexed();
    expect(existsSync(indexFile(w))).toBe(true);
    expect(again.eventIndex!.stats()).toEqual(stats);
    const worm = new CountingWorm(new DirectoryWorm(join(w.dir, "worm")));
    expect((await proofFor(worm, w.ids[5]!, { index: again.eventIndex }))?.seq).toBe(2);
    expect(worm.reads).toBe(2);
    // Replaying the whole chain into a complete index adds nothing and keeps each event's place.
    expect(await again.eventIndex!.catchUp(new DirectoryWorm(join(w.dir, "worm")), 39)).toBe(0);
    expect(again.eventIndex!.stats()).toEqual(stats);
    await again.stop();

    const errors: string[] = [];
    for (const s of ["-wal", "-shm"]) rmSync(indexFile(w) + s, { force: true });
    writeFileSync(indexFile(w), Buffer.alloc(8192, 0x5a));
    const third = createSealer({ journal: w.journal, wormDir: join(w.dir, "worm"), ...key, interval: INTERVAL, grace: 200, indexFile: indexFile(w), now: w.clock.now, onError: (e) => errors.push((e as Error).message) });
    await third.start({ manual: true });
    w.sealers.push(third);
    await third.whenIndexed();
    expect(errors.join("\n")).toMatch(/events\.db is unreadable .* rebuilding it/);
    expect(third.eventIndex!.stats()).toEqual(stats);
    expect((await third.proofFor(w.ids[79]!))?.seq).toBe(39);
  }, 60_000);

  it("a stale index (its WORM store replaced) costs a search, never a wrong proof", async () => {
    const { w, sealer } = await world(5);
    const other = tempDir();
    try {
      const index = EventIndex.open(join(other, "events.db"));
      await index.add(0, ["x", "y", w.ids[9]!]); // points at batch 0, leaf 2: wrong
      await index.catchUp(new DirectoryWorm(join(w.dir, "worm")), -1);
      const proof = await proofFor(join(w.dir, "worm"), w.ids[9]!, { index });
      expect(proof?.seq).toBe(4);
      expect(proof?.leaf_index).toBe(1);
      index.close();
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
    expect(sealer.eventIndex!.find(w.ids[9]!)).toEqual({ seq: 4, leaf: 1 });
  });
});
