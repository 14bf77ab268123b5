import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { checkWebhook, credentialEnv, redactUrl } from "../../engine/gitops/index.js";

const body = Buffer.from(JSON.stringify({ ref: "refs/heads/main" }));
const gh = (secret: string) => "sha256=" + createHmac("sha256", secret).update(body).digest("hex");

describe("webhook authentication", () => {
  it("accepts GitHub's HMAC of the raw body and GitLab's token, and returns the pushed ref", () => {
    expect(checkWebhook({ "x-hub-signature-256": gh("k") }, body, "k", false)).toEqual({ ok: true, forge: "github", ref: "refs/heads/main" });
    expect(checkWebhook({ "x-gitlab-token": "k" }, body, "k", false)).toEqual({ ok: true, forge: "gitlab", ref: "refs/heads/main" });
  });
  it("reads the ref from GitHub's form-encoded delivery too", () => {
    const form = Buffer.from("payload=" + encodeURIComponent(JSON.stringify({ ref: "refs/heads/prod" })));
    const sig = "sha256=" + createHmac("sha256", "k").update(form).digest("hex");
    expect(checkWebhook({ "x-hub-signature-256": sig }, form, "k", false)).toEqual({ ok: true, forge: "github", ref: "refs/heads/prod" });
  });
  it("refuses a wrong signature, a wrong token, a missing header, and unsigned hooks outside dev", () => {
    expect(checkWebhook({ "x-hub-signature-256": gh("other") }, body, "k", false)).toMatchObject({ ok: false, status: 401 });
    expect(checkWebhook({ "x-hub-signature-256": gh("k") }, Buffer.from("{}"), "k", false)).toMatchObject({ ok: false, status: 401 });
    expect(checkWebhook({ "x-gitlab-token": "kk" }, body, "k", false)).toMatchObject({ ok: false, status: 401 });
    expect(checkWebhook({}, body, "k", false)).toMatchObject({ ok: false, status: 401, message: expect.stringMatching(/X-Hub-Signature-256/) });
    expect(checkWebhook({}, body, undefined, false)).toMatchObject({ ok: false, status: 403, message: expect.stringMatching(/VIW_WEBHOOK_SECRET/) });
    expect(checkWebhook({}, body, undefined, true)).toMatchObject({ ok: true, forge: "none" });
  });
});

describe("git credentials", () => {
  it("come from the environment into git's environment, and URLs are shown without them", () => {
    const env = credentialEnv({ VIW_GIT_TOKEN: "tok", VIW_GIT_SSH_KEY: "/k/id" });
    expect(env.GIT_CONFIG_KEY_0).toBe("http.extraHeader");
    expect(Buffer.from(env.GIT_CONFIG_VALUE_0!.replace("Authorization: Basic ", ""), "base64").toString()).toBe("x-access-token:tok");
    expect(env.GIT_SSH_COMMAND).toContain("-i '/k/id'");
    expect(redactUrl("https://user:secret@git.example/repo.git")).toBe("https://git.example/repo.git");
  });
});
