import { verify } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { isUtf8 } from "node:buffer";
import { gunzip } from "node:zlib";
import { describePeer, identityMatches, type ListenerTls, type PeerIdentity } from "./identity.js";
import { reportIngestError, type IngestContext } from "./runtime.js";
import type { JournalItem, NormalizedEvent } from "../journal/index.js";

export const BULK_PATH = "/v1/ingest/bulk";

export interface BulkOptions {
  /** Bytes of request bodies being handled at once before answering 429. Default 256 MiB. */
  maxInFlightBytes?: number;
  /** Seconds in Retry-After. Default 1. */
  retryAfter?: number;
  /**
   * The signed ingest receipt for a request's durable events (the chain's
   * batch they will be sealed into); returned as `receipt` in the 200 body.
   */
  receipt?: (events: readonly NormalizedEvent[], receivedAt: string) => unknown;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * POST /v1/ingest/bulk (DESIGN §4): mTLS, then the Ed25519 signature over the
 * raw body (before anything is decompressed or parsed), then gzip with a
 * decompressed-size limit, NDJSON with per-line errors, and 200 only once
 * the accepted events are durable in the journal.
 */
export function createBulkServer(ctx: IngestContext, tls: ListenerTls, opts: BulkOptions = {}): Server {
  const maxInFlight = opts.maxInFlightBytes ?? 256 * 1024 * 1024;
  const retryAfter = String(opts.retryAfter ?? 1);
  let inFlight = 0;
  const peers = new WeakMap<TLSSocket, PeerIdentity | undefined>();

  const server = createServer({ key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof HttpError ? err : new HttpError(503, "internal", "the journal could not take the events; retry", { "Retry-After": retryAfter });
      if (!(err instanceof HttpError)) ctx.log?.("bulk ingest failed", err);
      ctx.metrics.rejected.inc({ path: "bulk", reason: e.reason });
      send(res, e.status, { error: { code: e.reason, message: e.message } }, e.headers);
    });
  });
  server.on("tlsClientError", () => ctx.metrics.connections.inc({ path: "bulk", outcome: "tls_error" }));
  server.on("secureConnection", () => ctx.metrics.connections.inc({ path: "bulk", outcome: "accepted" }));
  server.headersTimeout = 30_000;
  server.requestTimeout = 120_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url?.split("?")[0];
    if (url !== BULK_PATH) throw new HttpError(404, "not_found", `no such endpoint ${url}; bulk ingest is POST ${BULK_PATH}`);
    if (req.method !== "POST") throw new HttpError(405, "method", `use POST ${BULK_PATH}`, { Allow: "POST" });
    const cfg = ctx.config();
    const limits = cfg.limits;

    if (ctx.journal.isFull()) {
      ctx.metrics.backpressure.inc({ path: "bulk" });
      throw new HttpError(503, "backpressure", "the journal is at its high-water mark or the disk is full; retry later", { "Retry-After": retryAfter });
    }
    const keyId = header(req, "viw-key-id");
    const sigHeader = header(req, "viw-signature");
    if (!keyId) throw new HttpError(401, "no_key_id", "missing Viw-Key-Id header");
    if (!sigHeader) throw new HttpError(401, "no_signature", "missing Viw-Signature header (ed25519=BASE64 over the raw body)");
    const m = /^ed25519=([A-Za-z0-9+/_-]+={0,2})$/.exec(sigHeader.trim());
    if (!m) throw new HttpError(401, "bad_signature_header", "Viw-Signature must be ed25519=BASE64");
    const signature = Buffer.from(m[1]!, m[1]!.includes("-") || m[1]!.includes("_") ? "base64url" : "base64");
    const shipper = cfg.shippers.get(keyId);
    if (!shipper) {
      reportIngestError(ctx, { error_code: "unknown_shipper", error_msg: `bulk request from unknown shipper ${JSON.stringify(keyId.slice(0, 64))}`, src_ip: req.socket.remoteAddress });
      throw new HttpError(401, "unknown_shipper", `unknown shipper \`${keyId.slice(0, 64)}\` (not in policies/)`);
    }
    const socket = req.socket as TLSSocket;
    if (!peers.has(socket)) peers.set(socket, ctx.issuers.peer(socket));
    const peer = peers.get(socket);
    if (shipper.identity && !(peer && (identityMatches(peer, shipper.identity) || ctx.extraIdentities?.some((i) => identityMatches(peer, i))))) {
      throw new HttpError(403, "identity", `shipper ${shipper.id} must present a certificate of ${shipper.identity.issuer}${shipper.identity.cn ? ` CN=${shipper.identity.cn}` : ""}; got ${describePeer(peer)}`);
    }

    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > limits.body_bytes) throw new HttpError(413, "too_large", `body of ${declared} bytes exceeds the limit of ${limits.body_bytes}`);
    // bodies still arriving count too: their bytes are already on their way into memory
    let held = Number.isFinite(declared) ? declared : 0;
    if (inFlight > 0 && inFlight + held > maxInFlight) {
      ctx.metrics.backpressure.inc({ path: "bulk" });
      throw new HttpError(429, "busy", `too many bulk bytes in flight (${inFlight} of ${maxInFlight}); retry`, { "Retry-After": retryAfter });
    }
    inFlight += held;
    try {
      const body = await readBody(req, limits.body_bytes);
      inFlight += body.length - held;
      held = body.length;
      if (!verify(null, body, shipper.key, signature)) {
        reportIngestError(ctx, { error_code: "bad_signature", error_msg: `bulk request with a bad signature for shipper ${shipper.id}`, src_ip: req.socket.remoteAddress });
        throw new HttpError(401, "bad_signature", `signature does not verify with shipper ${shipper.id}'s key`);
      }
      let text = body;
      const encoding = header(req, "content-encoding")?.toLowerCase();
      if (encoding === "gzip" || (encoding === undefined && body[0] === 0x1f && body[1] === 0x8b)) text = await gunzipLimited(body, limits.body_bytes);
      else if (encoding !== undefined && encoding !== "identity") throw new HttpError(415, "encoding", `unsupported Content-Encoding ${encoding} (gzip or none)`);

      const receivedAt = new Date().toISOString();
      const accepted: JournalItem[] = [];
      const errors: { line: number; message: string }[] = [];
      const normalizer = cfg.normalizer;
      const ctxN = { receivedAt };
      const lines = splitLines(text, limits.lines);
      if (lines === undefined) throw new HttpError(413, "too_many_lines", `more than ${limits.lines} lines in one request`);
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i]!;
        if (typeof line !== "string") {
          errors.push({ line: i + 1, message: "invalid UTF-8" });
          continue;
        }
        if (line.length === 0 || line.trim() === "") continue;
        const r = normalizer.parse(line, ctxN);
        if (r.ok) accepted.push(r);
        else errors.push({ line: i + 1, message: r.errors.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message)).join("; ") });
      }
      if (accepted.length > 0) await ctx.journal.append(accepted);
      ctx.metrics.accepted.inc({ path: "bulk" }, accepted.length);
      if (errors.length > 0) ctx.metrics.rejected.inc({ path: "bulk", reason: "invalid_event" }, errors.length);
      ctx.metrics.requests.inc({ code: "200" });
      const receipt = accepted.length > 0 && opts.receipt ? await opts.receipt(accepted.map((a) => a.event), receivedAt) : undefined;
      send(res, 200, { accepted: accepted.length, rejected: errors.length, errors: errors.slice(0, 1000), received_at: receivedAt, receipt });
    } finally {
      inFlight -= held;
    }
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (status !== 200) ctx.metrics.requests.inc({ code: String(status) });
    if (res.headersSent) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  return server;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        // stop reading; the connection closes after the 413 is written
        req.pause();
        req.socket.once("finish", () => req.socket.destroy());
        reject(new HttpError(413, "too_large", `body exceeds the limit of ${limit} bytes`, { Connection: "close" }));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!done) resolve(Buffer.concat(chunks, size));
    });
    req.on("error", (err) => {
      if (!done) reject(new HttpError(400, "aborted", `request aborted: ${err.message}`));
    });
  });
}

function gunzipLimited(body: Buffer, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    gunzip(body, { maxOutputLength: limit }, (err, out) => {
      if (!err) return resolve(out);
      if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE" || err instanceof RangeError) {
        reject(new HttpError(413, "gzip_too_large", `decompressed body exceeds the limit of ${limit} bytes`));
      } else reject(new HttpError(400, "bad_gzip", `body is not valid gzip: ${err.message}`));
    });
  });
}

/**
 * NDJSON lines; a line that is not UTF-8 comes back as `null` so it is
 * reported by number. `undefined` when there are more lines than allowed.
 */
function splitLines(body: Buffer, maxLines: number): (string | null)[] | undefined {
  if (isUtf8(body)) {
    const lines = body.toString("utf8").split("\n");
    if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    return lines.length > maxLines ? undefined : lines;
  }
  const out: (string | null)[] = [];
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf(0x0a, start);
    if (end < 0) end = body.length;
    const line = body.subarray(start, end);
    out.push(isUtf8(line) ? line.toString("utf8") : null);
    if (out.length > maxLines) return undefined;
    start = end + 1;
  }
  return out;
}
