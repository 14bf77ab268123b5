import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "node:https";
import { ServiceError } from "../../../engine/gitops/service.js";
import { queryEvents } from "../../../engine/siem/index.js";
import { newShipper, signBody, startHarness, testState, type Harness } from "./harness.js";

let h: Harness;
beforeAll(async () => {
  const dev = newShipper("dev");
  h = await startHarness({ extraShippers: [{ id: "dev", public_key: dev.publicRaw }] });
  (h as Harness & { dev: typeof dev }).dev = dev;
});
afterAll(async () => {
  await h?.close();
});

function post(shipper: ReturnType<typeof newShipper>, lines: object[], client = "gw1"): Promise<{ status: number; body: any }> {
  const body = Buffer.from(lines.map((l) => JSON.stringify(l)).join("\n"));
  const c = h.pki.client(client);
  return new Promise((resolve, reject) => {
    const req = request(`${h.bulk}/v1/ingest/bulk`, { method: "POST", ca: h.pki.caCert, key: c.key, cert: c.cert, headers: { "Viw-Key-Id": shipper.id, "Viw-Signature": signBody(shipper, body) } }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("SiemService: revisions by prepare/commit", () => {
  it("accepts the dev shipper passed by the daemon besides policies/", async () => {
    const dev = (h as Harness & { dev: ReturnType<typeof newShipper> }).dev;
    expect((await post(dev, [{ event_id: "dev-1", action: "login" }])).status).toBe(200);
  });

  it("a prepared revision changes nothing until commit; then shippers and routing swap", async () => {
    const rotated = newShipper("vector-gw");
    const next = await testState({ "vector-gw": rotated, backend: h.shippers.backend }, (y) => y);
    // routing change too: login now goes to viw-login
    const routed = { ...next, routing: { routes: [{ index: "viw-login", actions: ["login"] }], default: "viw-other" } } as typeof next;
    const prepared = await h.service.prepare(routed, undefined);
    expect((await post(h.shippers.gw, [{ event_id: "rev-old-1", action: "login" }])).status).toBe(200);
    expect((await post(rotated, [{ event_id: "rev-new-0", action: "login" }])).status).toBe(401);
    prepared.commit();
    expect((await post(h.shippers.gw, [{ event_id: "rev-old-2", action: "login" }])).status).toBe(401);
    expect((await post(rotated, [{ event_id: "rev-new-1", action: "login" }])).status).toBe(200);
    await h.service.idle();
    expect(queryEvents(h.service.store!, { index: "viw-login" }).hits.map((e) => e.event_id)).toEqual(["rev-new-1"]);
    expect(queryEvents(h.service.store!, { index: "viw-auth", where: { "==": [{ var: "event_id" }, "rev-old-1"] } }).total).toBe(1);
  });

  it("refuses a revision whose shipper key cannot be loaded, keeping the current one", async () => {
    const state = await testState({ "vector-gw": h.shippers.gw, backend: h.shippers.backend });
    const broken = { ...state, shippers: [{ id: "vector-gw", public_key: "bm90IGEga2V5" }] } as typeof state;
    await expect(h.service.prepare(broken, state)).rejects.toBeInstanceOf(ServiceError);
  });

  it("status shows the journal, cursors and sinks", () => {
    const s = h.service.status!();
    expect(s).toMatchObject({ sinks: ["store"], journal: { last_seq: expect.any(Number), cursors: { store: expect.any(Number) } } });
  });
});
