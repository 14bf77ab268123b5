import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { openStore } from "../../../engine/siem/index.js";
import { startServiceChild, type ServiceChild } from "./child.js";
import { newShipper, signBody } from "./harness.js";
import { makePki } from "./pki.js";
import { startRsyslog } from "./rsyslog.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function postBulk(url: string, pki: ReturnType<typeof makePki>, body: Buffer, signature: string): Promise<number> {
  const c = pki.client("gw1");
  return new Promise((resolve) => {
    const req = request(`${url}/v1/ingest/bulk`, { method: "POST", ca: pki.caCert, key: c.key, cert: c.cert, headers: { "Viw-Key-Id": "vector-gw", "Viw-Signature": signature, "Content-Length": body.length }, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", () => resolve(0));
    });
    req.on("error", () => resolve(0));
    req.end(body);
  });
}

describe("reliability: kill -9 of the service while rsyslog and a bulk client send", () => {
  it("after restart every acknowledged bulk event is stored exactly once, syslog events are never stored twice, consumers resume from their cursors", async () => {
    const pki = makePki();
    const dataDir = mkdtempSync(join(tmpdir(), "viw-crash-data-"));
    const gw = newShipper("vector-gw");
    const shippers = { "vector-gw": gw.publicRaw };
    let child: ServiceChild | undefined = await startServiceChild({ dataDir, pkiDir: pki.dir, syslogPort: 0, bulkPort: 0, shippers });
    const syslogPort = Number(child.syslog.split(":").pop());
    const bulkPort = Number(child.bulk.split(":").pop());
    const bulkUrl = child.bulk;
    const rs = await startRsyslog({ port: syslogPort, caFile: pki.files["int-tls.crt"]!, certFile: pki.files["gw1.crt"]!, keyFile: pki.files["gw1.key"]! });
    try {
      const acked: string[] = [];
      let sent = 0;
      let stop = false;
      const sender = (async () => {
        let k = 0;
        while (!stop) {
          const ids = Array.from({ length: 200 }, (_, i) => `b-${k}-${i}`);
          k++;
          const body = Buffer.from(ids.map((id) => JSON.stringify({ event_id: id, action: "login", user_id: "crash" })).join("\n"));
          sent += ids.length;
          const status = await postBulk(bulkUrl, pki, body, signBody(gw, body));
          if (status === 200) acked.push(...ids);
          else await sleep(50);
        }
      })();
      const N = 20_000;
      const file = join(dataDir, "syslog.txt");
      writeFileSync(file, Array.from({ length: N }, (_, i) => JSON.stringify({ event_id: `s-${i}`, action: "gw_health" })).join("\n") + "\n");
      const logger = run("logger", ["-u", rs.socket, "-t", "gw", "-f", file]);

      while (acked.length < 2000) await sleep(20);
      const before = await child.status();
      await child.kill9();
      const ackedAtKill = acked.length;
      await sleep(300);
      // same ports: rsyslog reconnects and the bulk client retries
      for (let attempt = 0; ; attempt++) {
        try {
          child = await startServiceChild({ dataDir, pkiDir: pki.dir, syslogPort, bulkPort, shippers });
          break;
        } catch (err) {
          if (attempt > 20) throw err;
          await sleep(200);
        }
      }
      const afterRestart = await child.status();
      expect(afterRestart.lastSeq).toBeGreaterThanOrEqual(before.lastSeq);
      expect(afterRestart.cursors.store).toBeGreaterThanOrEqual(before.cursors.store!);
      while (acked.length < ackedAtKill + 2000) await sleep(20);
      stop = true;
      await sender;
      await logger;
      // wait until the store consumer has everything
      for (let i = 0; i < 300; i++) {
        const s = await child.status();
        if (s.cursors.store === s.lastSeq && s.stored >= acked.length) break;
        await sleep(100);
      }
      await sleep(1500); // rsyslog's retries after the reconnect
      await child.stop();
      child = undefined;

      const store = openStore(join(dataDir, "store", "events.db"), { readonly: true });
      const present = new Set((store.db.prepare("SELECT event_id FROM events WHERE event_id LIKE 'b-%'").all() as { event_id: string }[]).map((r) => r.event_id));
      const missing = acked.filter((id) => !present.has(id));
      expect(missing).toEqual([]);
      const counts = store.db.prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM events").get() as { n: number; d: number };
      expect(counts.n).toBe(counts.d);
      const syslogStored = (store.db.prepare("SELECT COUNT(*) AS n FROM events WHERE event_id LIKE 's-%'").get() as { n: number }).n;
      store.close();
      console.log(`kill -9: ${acked.length} bulk events acknowledged (of ${sent} sent), all stored once; ${syslogStored}/${N} syslog events stored (plain TCP syslog has no application ack: what was in flight at the kill may be lost)`);
      // rsyslog resumes forwarding after the restart, but how much of its in-memory queue survives its own
      // suspension back-off varies run to run; what the engine owes it is "never twice" (checked above) and delivery resuming.
      expect(syslogStored).toBeGreaterThan(0);
    } finally {
      await child?.stop();
      await rs.stop();
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(pki.dir, { recursive: true, force: true });
    }
  }, 120_000);
});
