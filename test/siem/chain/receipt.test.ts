/**
 * Signed ingest receipts: the batch a receipt names is the batch the sealer
 * puts the events in (late events and seals racing the receipt included),
 * and verifyReceipt confirms it from the WORM copy or names what is wrong.
 */
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createSealer, intervalStart, verifyReceipt, type Manifest, type Receipt, type Sealer } from "../../../engine/siem/chain/index.js";
import type { LocalJournal } from "../../../engine/siem/journal/index.js";
import type { NormalizedEvent } from "../../../engine/siem/journal/contract.js";
import { Clock, event, journalIn, logKey, makeCa, tempDir, type TestCa } from "./helpers.js";

const INTERVAL = 2000;
const ca: TestCa = makeCa();

interface Built {
  dir: string;
  worm: string;
  journal: LocalJournal;
  sealer: Sealer;
  clock: Clock;
}
const open: Built[] = [];
afterEach(async () => {
  for (const b of open.splice(0)) {
    await b.sealer.stop();
    await b.journal.close();
    rmSync(b.dir, { recursive: true, force: true });
  }
});

async function build(): Promise<Built> {
  const dir = tempDir();
  const worm = join(dir, "worm");
  const journal = journalIn(dir);
  const clock = new Clock(Math.ceil(Date.now() / INTERVAL) * INTERVAL + INTERVAL);
  const sealer = createSealer({ journal, wormDir: worm, ...logKey(ca), interval: INTERVAL, grace: 500, indexFile: join(dir, "chain", "events.db"), now: clock.now });
  await sealer.start({ manual: true });
  const b = { dir, worm, journal, sealer, clock };
  open.push(b);
  return b;
}

/** What bulk ingest does: journal the request's events (all with one received_at), then ask for the receipt. */
async function ingest(b: Built, n: number, receivedAt = b.clock.t): Promise<{ events: NormalizedEvent[]; receipt: Receipt }> {
  const events = Array.from({ length: n }, () => event(receivedAt));
  await b.journal.append(events.map((e) => ({ index: "viw-auth", event: e })));
  return { events, receipt: await b.sealer.receipt(events, new Date(receivedAt).toISOString()) };
}

/** Moves the clock past the end (plus grace) of the interval `t` is in, and seals. */
async function sealPast(b: Built, t: number): Promise<void> {
  b.clock.t = Math.max(b.clock.t, intervalStart(t, INTERVAL) + INTERVAL + 600);
  await b.sealer.tick();
}

const manifest = (b: Built, seq: number) => JSON.parse(readFileSync(join(b.worm, "manifests", `${String(seq).padStart(12, "0")}.json`), "utf8")) as Manifest;

describe("ingest receipts", () => {
  it("name the interval the events are sealed into; once sealed they verify with an inclusion proof per event", async () => {
    const b = await build();
    await ingest(b, 2); // another request in the same batch
    const { events, receipt } = await ingest(b, 5);
    expect(receipt).toMatchObject({ format: "viw-ingest-receipt/1", count: 5, event_ids: events.map((e) => e.event_id), key_id: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const start = intervalStart(Date.parse(events[0]!.received_at), INTERVAL);
    expect(receipt.batch).toEqual({ start: new Date(start).toISOString(), end: new Date(start + INTERVAL).toISOString() });

    const before = await verifyReceipt(receipt, { worm: b.worm });
    expect(before.ok).toBe(false);
    expect(before.problems[0]).toMatch(/is not sealed .* yet/);

    await sealPast(b, b.clock.t);
    const check = await verifyReceipt(receipt, { worm: b.worm, ca: ca.caPem });
    expect(check.problems).toEqual([]);
    expect(check).toMatchObject({ ok: true, seq: 0, events: 5, proven: 5, anchor: "checked" });
    expect(manifest(b, 0).start).toBe(receipt.batch.start);
    for (const id of receipt.event_ids) expect((await b.sealer.proofFor(id))?.seq).toBe(0);
  });

  it("an event whose interval was sealed before it reached the journal: the receipt names the first open batch, where it is sealed", async () => {
    const b = await build();
    const t0 = b.clock.t;
    await ingest(b, 1, t0);
    await sealPast(b, t0);
    // Received in the sealed interval (a slow request), journaled after its seal.
    const { events, receipt } = await ingest(b, 3, t0 + 100);
    const own = intervalStart(t0 + 100, INTERVAL);
    expect(Date.parse(receipt.batch.start)).toBe(own + INTERVAL);
    expect(events[0]!.received_at).toBe(new Date(t0 + 100).toISOString());
    await sealPast(b, own + INTERVAL);
    const check = await verifyReceipt(receipt, { worm: b.worm, ca: ca.caPem });
    expect(check.problems).toEqual([]);
    expect(check.seq).toBe(1);
    expect(manifest(b, 1)).toMatchObject({ start: receipt.batch.start, count: 3 });
  });

  it("a seal that runs between the journal append and the receipt: the receipt names the batch that sealed the events", async () => {
    const b = await build();
    const t0 = b.clock.t;
    const events = [event(t0), event(t0)];
    await b.journal.append(events.map((e) => ({ index: "viw-auth", event: e })));
    await sealPast(b, t0);
    const receipt = await b.sealer.receipt(events, new Date(t0).toISOString());
    expect(Date.parse(receipt.batch.start)).toBe(intervalStart(t0, INTERVAL));
    expect((await verifyReceipt(receipt, { worm: b.worm })).ok).toBe(true);
  });

  it("a receipt asked for after its interval is due but before the seal ran still names the right batch", async () => {
    const b = await build();
    const t0 = b.clock.t;
    b.clock.t = intervalStart(t0, INTERVAL) + INTERVAL + 1000; // due, the timer has not fired yet
    const events = [event(t0)];
    await b.journal.append(events.map((e) => ({ index: "viw-auth", event: e })));
    const receipt = await b.sealer.receipt(events, new Date(t0).toISOString());
    await b.sealer.tick();
    expect(Date.parse(receipt.batch.start)).toBe(intervalStart(t0, INTERVAL));
    expect((await verifyReceipt(receipt, { worm: b.worm })).ok).toBe(true);
  });

  it("a shipper resending the same event ids in one interval: each receipt is confirmed against its own copies", async () => {
    const b = await build();
    const t0 = b.clock.t;
    const send = async (at: number) => {
      const events = [event(at, { event_id: "dup-1" }), event(at, { event_id: "dup-2" })];
      await b.journal.append(events.map((e) => ({ index: "viw-auth", event: e })));
      return b.sealer.receipt(events, new Date(at).toISOString());
    };
    const first = await send(t0 + 10);
    const second = await send(t0 + 20);
    expect(second.leaves_sha256).not.toBe(first.leaves_sha256);
    await sealPast(b, t0);
    for (const r of [first, second]) expect((await verifyReceipt(r, { worm: b.worm })).problems).toEqual([]);
  });

  it("a tampered receipt, a forged one, or a modified sealed event is refused, naming what is wrong", async () => {
    const b = await build();
    await ingest(b, 3);
    const { receipt } = await ingest(b, 4);
    await ingest(b, 2);
    await sealPast(b, b.clock.t);
    expect((await verifyReceipt(receipt, { worm: b.worm })).ok).toBe(true);

    const badSig = await verifyReceipt({ ...receipt, received_at: "2020-01-01T00:00:00.000Z" }, { worm: b.worm });
    expect(badSig.problems.join("\n")).toMatch(/receipt's signature does not verify/);

    const otherIds = await verifyReceipt({ ...receipt, event_ids: [...receipt.event_ids.slice(0, 3), "ev-not-there"] }, { worm: b.worm });
    expect(otherIds.ok).toBe(false);
    expect(otherIds.problems.join("\n")).toMatch(/event "ev-not-there" is not in batch 0/);

    const swapped = [...receipt.event_ids];
    [swapped[0], swapped[1]] = [swapped[1]!, swapped[0]!];
    expect((await verifyReceipt({ ...receipt, event_ids: swapped }, { worm: b.worm })).problems.join("\n")).toMatch(/not in the order/);

    const moved = await verifyReceipt({ ...receipt, batch: { start: new Date(Date.parse(receipt.batch.start) - INTERVAL).toISOString(), end: receipt.batch.start } }, { worm: b.worm });
    expect(moved.problems.join("\n")).toMatch(/signature does not verify/);

    // Signed by a key the WORM store does not know.
    const forger = logKey(makeCa(tempDir("viw-ca-"), "Forger"));
    const { signReceipt } = await import("../../../engine/siem/chain/index.js");
    const events = receipt.event_ids.map((id) => JSON.parse(readFileSync(join(b.worm, manifest(b, 0).batch!), "utf8").split("\n").find((l) => l.includes(id))!));
    const forged = await signReceipt(events, receipt.received_at, { start: Date.parse(receipt.batch.start), end: Date.parse(receipt.batch.end) }, forger.signer);
    expect((await verifyReceipt(forged, { worm: b.worm })).problems.join("\n")).toMatch(/unknown key/);

    expect((await verifyReceipt({ ...receipt, count: 9 }, { worm: b.worm })).problems[0]).toMatch(/field count/);
    expect((await verifyReceipt("nope", { worm: b.worm })).problems[0]).toMatch(/not a JSON object/);

    // One sealed event changed after the seal: the batch no longer matches its signed root.
    const file = join(b.worm, manifest(b, 0).batch!);
    chmodSync(file, 0o644);
    writeFileSync(file, readFileSync(file, "utf8").replace('"result":"', '"result":"x'));
    expect((await verifyReceipt(receipt, { worm: b.worm })).problems.join("\n")).toMatch(/does not match the Merkle root/);
  });
});
