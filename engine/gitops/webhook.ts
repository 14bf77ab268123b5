/**
 * Authenticates a forge's push webhook (POST /v1/webhook/git) with the shared
 * secret VIW_WEBHOOK_SECRET: GitHub signs the raw body
 * (`X-Hub-Signature-256: sha256=HMAC-SHA256(secret, body)`), GitLab sends the
 * secret itself (`X-Gitlab-Token`). Both compared in constant time.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export type WebhookCheck = { ok: true; forge: "github" | "gitlab" | "none"; ref?: string } | { ok: false; status: 401 | 403; message: string };

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * `secret` undefined: accepted only when `allowUnsigned` (dev mode, admin port on loopback).
 * The pushed ref is returned when the payload names one, so pushes to other branches can be ignored.
 */
export function checkWebhook(headers: Record<string, string | string[] | undefined>, body: Buffer, secret: string | undefined, allowUnsigned: boolean): WebhookCheck {
  const h = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  let forge: "github" | "gitlab" | "none";
  if (!secret) {
    if (!allowUnsigned) return { ok: false, status: 403, message: "webhooks are disabled: set VIW_WEBHOOK_SECRET to the secret configured in the forge" };
    forge = "none";
  } else if (h("x-hub-signature-256")) {
    const expected = "sha256=" + createHmac("sha256", secret).update(body).digest("hex");
    if (!safeEqual(h("x-hub-signature-256")!, expected)) return { ok: false, status: 401, message: "X-Hub-Signature-256 does not match the body signed with the webhook secret" };
    forge = "github";
  } else if (h("x-gitlab-token")) {
    if (!safeEqual(h("x-gitlab-token")!, secret)) return { ok: false, status: 401, message: "X-Gitlab-Token does not match the webhook secret" };
    forge = "gitlab";
  } else {
    return { ok: false, status: 401, message: "missing X-Hub-Signature-256 (GitHub) or X-Gitlab-Token (GitLab) header" };
  }
  let ref: string | undefined;
  try {
    let text = body.toString("utf8");
    // GitHub's "application/x-www-form-urlencoded" delivery wraps the JSON in payload=...
    if (text.startsWith("payload=")) text = new URLSearchParams(text).get("payload") ?? "";
    const payload = JSON.parse(text) as { ref?: unknown };
    if (typeof payload.ref === "string") ref = payload.ref;
  } catch {
    // the payload is only a hint: a fetch happens either way
  }
  return { ok: true, forge, ref };
}
