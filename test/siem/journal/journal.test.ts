import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalJson } from "../../../engine/config/index.js";
import { canonicalJsonOf, consume, openJournal, rawJson, type JournalRecord, type LocalJournal } from "../../../engine/siem/journal/index.js";

const dirs: string[] = [];
const open: LocalJournal[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "viw-journal-"));
  dirs.push(d);
  return d;
}
function j(file: string, opts = {}): LocalJournal {
  const journal = openJournal(file, opts);
  open.push(journal);
  return journal;
}
const ev = (n: number) => ({ index: "viw-auth", event: { event_id: `e${n}`, timestamp: new Date(1_700_000_000_000 + n).toISOString(), received_at: new Date().toISOString(), action: "login", n } });

afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("journal", () => {
  it("assigns increasing seqs, groups concurrent appends into one commit, reads in order", async () => {
    const journal = j(join(tmp(), "j.db"));
    const results = await Promise.all([journal.append([ev(1), ev(2)]), journal.append([ev(3)]), journal.append([ev(4), ev(5), ev(6)])]);
    expect(results).toEqual([{ first: 1, last: 2 }, { first: 3, last: 3 }, { first: 4, last: 6 }]);
    expect(journal.stats().appendedGroups).toBe(1);
    expect(journal.lastSeq()).toBe(6);
    const recs = journal.read(2, 3);
    expect(recs.map((r) => r.seq)).toEqual([3, 4, 5]);
    expect(recs[0]!.event.event_id).toBe("e3");
    expect(recs[0]!.index).toBe("viw-auth");
    expect(journal.read(6, 10)).toEqual([]);
  });

  it("holds each event as its RFC 8785 canonical JSON (the text given with it, else canonicalJson), so sealing may take it as is", async () => {
    const journal = j(join(tmp(), "j.db"));
    const given = '{"action":"login","event_id":"g","received_at":"2026-11-22T10:00:00.000Z","timestamp":"2026-11-22T10:00:00.000Z"}';
    await journal.append([
      { index: "viw-auth", event: { user_id: "ü", event_id: "a", timestamp: "2026-11-22T10:00:00.000Z", received_at: "2026-11-22T10:00:00.000Z", extra: { z: 1, a: [2, { y: null, b: "\u2028" }] } } },
      { index: "viw-auth", event: { event_id: "nan", timestamp: "2026-11-22T10:00:00.000Z", received_at: "2026-11-22T10:00:00.000Z", duration_ms: Number.NaN } },
      { index: "viw-auth", event: JSON.parse(given), json: given },
    ]);
    const recs = journal.read(0, 10);
    expect(recs.map((r) => rawJson(r))).toEqual(recs.map((r) => canonicalJson(r.event)));
    expect(recs.map((r) => canonicalJsonOf(r))).toEqual(recs.map((r) => rawJson(r)));
    expect(rawJson(recs[0]!)).toBe('{"event_id":"a","extra":{"a":[2,{"b":"\u2028","y":null}],"z":1},"received_at":"2026-11-22T10:00:00.000Z","timestamp":"2026-11-22T10:00:00.000Z","user_id":"ü"}');
    expect(recs[1]!.event.duration_ms).toBeNull();
    expect(rawJson(recs[2]!)).toBe(given);
  });

  it("keeps records, seq and cursors across a reopen; never reuses a seq after compaction", async () => {
    const file = join(tmp(), "j.db");
    let journal = j(file, { consumers: ["store", "sealer"] });
    await journal.append([ev(1), ev(2), ev(3)]);
    journal.commitCursor("store", 3);
    journal.commitCursor("sealer", 2);
    expect(journal.compact()).toBe(2);
    await journal.close();

    journal = j(file);
    expect(journal.lastSeq()).toBe(3);
    expect(journal.cursor("store")).toBe(3);
    expect(journal.cursor("sealer")).toBe(2);
    expect(journal.read(0, 10).map((r) => r.seq)).toEqual([3]);
    journal.commitCursor("sealer", 3);
    expect(journal.compact()).toBe(1);
    await journal.close();

    journal = j(file);
    expect(journal.read(0, 10)).toEqual([]);
    expect(await journal.append([ev(4)])).toEqual({ first: 4, last: 4 });
  });

  it("a new consumer starts at the oldest record held; unknown consumers never block compaction forever but known ones do", async () => {
    const journal = j(join(tmp(), "j.db"), { consumers: ["a"] });
    await journal.append([ev(1), ev(2)]);
    expect(journal.compact()).toBe(0); // "a" has read nothing
    journal.commitCursor("a", 2);
    expect(journal.cursor("late")).toBe(0); // registered now, before record 1
    expect(journal.compact()).toBe(0);
    journal.dropConsumer("late");
    expect(journal.compact()).toBe(2);
    expect(journal.cursor("later")).toBe(2);
    expect(() => journal.commitCursor("a", 99)).toThrow(/past the journal's head/);
  });

  it("reports full past the high-water mark", async () => {
    const journal = j(join(tmp(), "j.db"), { consumers: ["slow"], highWater: 3 });
    await journal.append([ev(1), ev(2), ev(3)]);
    expect(journal.isFull()).toBe(false);
    await journal.append([ev(4)]);
    expect(journal.isFull()).toBe(true);
    journal.commitCursor("slow", 4);
    expect(journal.isFull()).toBe(false);
  });

  it("consume: delivers every record once in order, commits the cursor, resumes after restart, retries a failed batch", async () => {
    const file = join(tmp(), "j.db");
    const journal = j(file, { consumers: ["c"] });
    const seen: number[] = [];
    let failOnce = true;
    const c = consume(
      journal,
      "c",
      (recs: JournalRecord[]) => {
        if (failOnce && recs.some((r) => r.seq === 5)) {
          failOnce = false;
          throw new Error("sink down");
        }
        seen.push(...recs.map((r) => r.seq));
      },
      { batch: 2, retryMs: 10 },
    );
    for (let i = 1; i <= 7; i++) await journal.append([ev(i)]);
    await c.idle();
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(journal.cursor("c")).toBe(7);
    await c.stop();
    await journal.append([ev(8), ev(9)]);
    await journal.close();

    const again = j(file);
    const seen2: number[] = [];
    const c2 = consume(again, "c", (recs) => void seen2.push(...recs.map((r) => r.seq)));
    await new Promise((r) => setTimeout(r, 50));
    await c2.idle();
    expect(seen2).toEqual([8, 9]);
    await c2.stop();
  });

  it("consume: a failing sink backs off; appends during the backoff do not trigger retries", async () => {
    const journal = j(join(tmp(), "j.db"), { consumers: ["c"] });
    let calls = 0;
    const errors: unknown[] = [];
    const c = consume(journal, "c", () => {
      calls++;
      throw new Error("down");
    }, { retryMs: 5000, onError: (e) => errors.push(e) });
    await journal.append([ev(1)]);
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 2; i < 10; i++) await journal.append([ev(i)]);
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toBe(1);
    expect(journal.cursor("c")).toBe(0);
    await c.stop();
    expect(errors).toHaveLength(1);
  });

  it("one row per commit group: reads across groups from the database after a reopen, raw and parsed alike; compaction trims a group a consumer is inside of", async () => {
    const file = join(tmp(), "j.db");
    let journal = j(file, { consumers: ["a", "b"] });
    for (let g = 0; g < 20; g++) await journal.append(Array.from({ length: 50 }, (_, i) => ev(g * 50 + i + 1)));
    expect(journal.stats().appendedGroups).toBe(20);
    await journal.close();

    journal = j(file);
    expect(journal.lastSeq()).toBe(1000);
    const parsed = journal.read(475, 100); // spans groups 10 and 11, read from SQLite (a fresh journal has no tail cache)
    expect(parsed.map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => 476 + i));
    expect(parsed.map((r) => r.event.event_id)).toEqual(Array.from({ length: 100 }, (_, i) => `e${476 + i}`));
    const raw = journal.readRaw(475, 100);
    expect(raw.map((r) => [r.seq, r.index, JSON.parse(r.json)])).toEqual(parsed.map((r) => [r.seq, r.index, r.event]));
    const all = journal.read(0, 10_000);
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    // as text (the store's read): the same records' lines, whole groups or slices of them, wherever a read starts and stops
    const asText = (after: number, limit: number) => journal.readRaw(after, limit).map((r) => `${r.index}\t${r.json}\n`).join("");
    for (const [after, limit] of [[0, 10_000], [475, 100], [0, 50], [49, 1], [50, 50], [999, 5], [1000, 5], [10, 2000]] as const) {
      const chunks = journal.readText(after, limit);
      expect(chunks.map((c) => c.text).join("")).toBe(asText(after, limit));
      expect(chunks.reduce((n, c) => n + c.count, 0)).toBe(Math.max(0, Math.min(limit, 1000 - after)));
      if (chunks.length > 0) expect(chunks[chunks.length - 1]!.seq).toBe(Math.min(1000, after + limit));
    }

    journal.commitCursor("a", 1000);
    journal.commitCursor("b", 123); // inside the third group (101..150)
    expect(journal.compact()).toBe(123);
    expect(journal.read(0, 3).map((r) => r.seq)).toEqual([124, 125, 126]);
    expect(journal.readText(0, 3).map((c) => [c.seq, c.count, c.text.split("\n").length - 1])).toEqual([[126, 3, 3]]);
    await journal.close();
    journal = j(file);
    expect(journal.read(0, 3).map((r) => [r.seq, r.event.event_id])).toEqual([[124, "e124"], [125, "e125"], [126, "e126"]]);
    expect(journal.cursor("late")).toBe(123); // a new consumer starts before the oldest record held
  });

  it("opens a journal written with one row per record (before commit groups) and keeps its records and head", async () => {
    const file = join(tmp(), "j.db");
    const Database = (await import("better-sqlite3")).default;
    const db = new Database(file);
    db.exec(`CREATE TABLE records (seq INTEGER PRIMARY KEY, idx TEXT NOT NULL, event TEXT NOT NULL);
      CREATE TABLE cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO meta VALUES ('last_seq', 3); INSERT INTO cursors VALUES ('store', 1);`);
    const ins = db.prepare("INSERT INTO records VALUES (?, ?, ?)");
    for (const k of [2, 3]) ins.run(k, "viw-auth", JSON.stringify(ev(k).event));
    db.close();
    const journal = j(file);
    expect(journal.lastSeq()).toBe(3);
    const old = journal.read(journal.cursor("store"), 10);
    expect(old.map((r) => [r.seq, r.index, r.event.event_id])).toEqual([[2, "viw-auth", "e2"], [3, "viw-auth", "e3"]]);
    expect(await journal.append([ev(4)])).toEqual({ first: 4, last: 4 });
    // records written before the journal held canonical JSON (here JSON.stringify's key order) are not offered as canonical
    expect(rawJson(old[0]!)).not.toBe(canonicalJson(old[0]!.event));
    expect(old.map((r) => canonicalJsonOf(r))).toEqual([undefined, undefined]);
    const fresh = journal.read(3, 10)[0]!;
    expect(canonicalJsonOf(fresh)).toBe(canonicalJson(fresh.event));
    // and that boundary survives a reopen
    await journal.close();
    open.splice(open.indexOf(journal), 1);
    const again = j(file);
    expect(again.read(1, 10).map((r) => canonicalJsonOf(r) !== undefined)).toEqual([false, false, true]);
  });
});
