/**
 * Pin-aware issuance on the real mTLS API with the default (pinned) config:
 * tls-gateway is bound to pin set `gateway`, so in phase stable only the
 * primary key may be certified (engine/pki/pins/roll.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, loadState, makeCsr, REPO, type Pki, startPki } from "./fixture.js";

let p: Pki;
beforeAll(async () => {
  p = await startPki({ state: await loadState(REPO, { pinned: true }) });
}, 120_000);
afterAll(async () => {
  await p?.cleanup();
});

describe("issuance for a pinned profile", () => {
  it("refuses a key the pin set does not allow, naming the pin set, the phase and the accepted pins", async () => {
    const { csr } = makeCsr(p.dir, "gw-unpinned", "/CN=gw.viworks.example", "DNS:gw.viworks.example");
    const r = await api(p, "POST", "/v1/certs/issue/server", { profile: "tls-gateway", csr });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "pin_not_allowed", field: "csr" });
    expect(r.body.error.message).toContain("gateway");
    expect(r.body.error.message).toContain("stable");
    expect(r.body.error.message).toContain("OwBrGMlpxCGg058WxNYnpfVDIR4IeBhwzS0tkXB/KMY=");
  });

  it("still issues for profiles without a pin set", async () => {
    const { csr } = makeCsr(p.dir, "ovpn", "/CN=ovpn.fra1.viworks.example", "DNS:ovpn.fra1.viworks.example");
    const r = await api(p, "POST", "/v1/certs/issue/server", { profile: "vpn-server", csr });
    expect(r.status).toBe(201);
  });
});
