/**
 * A day of sealed output at the default one-minute interval: 1,440 manifests
 * written by the sealer from journaled events, verified end to end.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { checkProof, createSealer, proofFor, verifyChain } from "../../../engine/siem/chain/index.js";
import { Clock, event, journalIn, logKey, makeCa, tempDir } from "./helpers.js";

it("1,440 one-minute manifests (a day) seal and verify", async () => {
  const ca = makeCa();
  // On tmpfs when there is one: the code path is the same (every fsync is made) but a shared disk's
  // ~7 ms per fsync would make 1,440 seals take most of a minute.
  const dir = existsSync("/dev/shm") ? mkdtempSync("/dev/shm/viw-day-") : tempDir();
  const worm = join(dir, "worm");
  const journal = journalIn(dir);
  const MINUTE = 60_000;
  const t0 = Math.ceil(Date.now() / MINUTE) * MINUTE + MINUTE;
  const clock = new Clock(t0);
  const sealer = createSealer({ journal, wormDir: worm, ...logKey(ca), now: clock.now }); // defaults: 1 min, 5 s grace, hourly checkpoints
  await sealer.start({ manual: true });
  // Every minute has events except a quiet hour, which still gets its 60 manifests.
  const events = [];
  for (let m = 0; m < 1440; m++) if (m < 600 || m >= 660) for (let k = 0; k < 3; k++) events.push(event(t0 + m * MINUTE + k * 17_000 + 5));
  await journal.append(events.map((e) => ({ index: "viw-auth", event: e })));
  let sealed = 0;
  for (let m = 1; m <= 1440; m++) {
    clock.t = t0 + m * MINUTE + 5_000;
    sealed += await sealer.tick();
  }
  expect(sealed).toBe(1440);
  expect(journal.cursor("sealer")).toBe(events.length);
  await sealer.stop();
  await journal.close();

  const started = performance.now();
  const r = await verifyChain({ worm, ca: ca.caPem });
  const ms = performance.now() - started;
  expect(r.problems).toEqual([]);
  expect(r).toMatchObject({ ok: true, manifests: 1440, batches: 1380, events: events.length, checkpoints: { stored: 24, verified: 24 } });
  expect(r.from).toBe(new Date(t0).toISOString());
  expect(r.to).toBe(new Date(t0 + 1440 * MINUTE).toISOString());
  // an inclusion proof for an event of the morning, found by its received_at without scanning the day
  const target = events[1000]!;
  const t1 = performance.now();
  const proof = await proofFor(worm, target.event_id, { near: target.received_at, interval: MINUTE });
  const lookupMs = performance.now() - t1;
  expect(proof).toMatchObject({ event_id: target.event_id, seq: Math.floor((Date.parse(target.received_at) - t0) / MINUTE) });
  expect(await checkProof(proof!, { ca: ca.caPem, worm })).toMatchObject({ ok: true, in_chain: true });
  console.log(`proof lookup with near: ${lookupMs.toFixed(0)} ms`);
  console.log(`verified a day (1,440 manifests, ${events.length} events) in ${ms.toFixed(0)} ms`);
  rmSync(dir, { recursive: true, force: true });
  rmSync(ca.dir, { recursive: true, force: true });
}, 120_000);
