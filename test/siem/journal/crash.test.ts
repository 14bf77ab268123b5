import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openJournal } from "../../../engine/siem/journal/index.js";
import { bundleForNode } from "./bundle.js";

describe("journal crash safety", () => {
  it("every acknowledged append survives kill -9 mid-append, and the head continues without reuse", async () => {
    const dir = mkdtempSync(join(tmpdir(), "viw-journal-crash-"));
    const file = join(dir, "j.db");
    try {
      const script = await bundleForNode(join(import.meta.dirname, "crash-child.ts"));
      const child = spawn(process.execPath, [script, file], { stdio: ["ignore", "pipe", "inherit"] });
      const acked: { first: number; last: number; firstId: string; lastId: string }[] = [];
      let buf = "";
      child.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const [first, last, firstId, lastId] = buf.slice(0, nl).split(" ");
          buf = buf.slice(nl + 1);
          acked.push({ first: Number(first), last: Number(last), firstId: firstId!, lastId: lastId! });
        }
      });
      await new Promise<void>((resolve, reject) => {
        const t = setInterval(() => {
          if (acked.length >= 300) {
            clearInterval(t);
            child.kill("SIGKILL");
            resolve();
          }
        }, 5);
        child.on("exit", (code) => {
          clearInterval(t);
          if (acked.length < 300) reject(new Error(`child exited early (${code})`));
        });
      });
      await new Promise((r) => child.once("exit", r));
      expect(acked.length).toBeGreaterThanOrEqual(300);

      const journal = openJournal(file);
      const maxAcked = Math.max(...acked.map((a) => a.last));
      expect(journal.lastSeq()).toBeGreaterThanOrEqual(maxAcked);
      const all = journal.read(0, 1_000_000);
      const bySeq = new Map(all.map((r) => [r.seq, r.event.event_id]));
      for (const a of acked) {
        expect(bySeq.get(a.first)).toBe(a.firstId);
        expect(bySeq.get(a.last)).toBe(a.lastId);
      }
      // gap-free from 1 to the head
      expect(all.map((r) => r.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
      const next = await journal.append([{ index: "viw-other", event: { event_id: "after", timestamp: "t", received_at: "t" } }]);
      expect(next.first).toBe(journal.lastSeq());
      expect(next.first).toBe(all.length + 1);
      await journal.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
