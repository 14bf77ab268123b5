import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Authority, Logger } from "./authority.js";
import { IssueError } from "./errors.js";
import { readBody, sendError } from "./http.js";
import { toPem } from "./x509.js";

/**
 * The plain-HTTP PKI port: CRLs (RFC 5280) and OCSP (RFC 6960, RFC 5019
 * GET form), cacheable by any HTTP cache in front of it.
 */
export function createPkiServer(authority: Authority, options: { log?: Logger } = {}): Server {
  return createServer((req, res) => {
    handle(authority, req, res, options.log).catch((err: unknown) => {
      if (err instanceof IssueError) sendError(res, err);
      else {
        options.log?.error({ path: req.url, err: (err as Error).stack ?? String(err) }, "pki request failed");
        if (!res.headersSent) {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end("internal error\n");
        } else res.destroy();
      }
    });
  });
}

function cacheHeaders(thisUpdate: Date, nextUpdate: Date, now: number): Record<string, string> {
  const maxAge = Math.max(0, Math.floor((nextUpdate.getTime() - now) / 1000));
  return {
    "cache-control": `max-age=${maxAge}, public, no-transform, must-revalidate`,
    "last-modified": thisUpdate.toUTCString(),
    expires: nextUpdate.toUTCString(),
  };
}

async function handle(authority: Authority, req: IncomingMessage, res: ServerResponse, log?: Logger): Promise<void> {
  const path = (req.url ?? "/").split("?")[0]!;
  const crl = /^\/crl\/([A-Za-z0-9._-]+)\.(crl|pem)$/.exec(path);
  if (crl && (req.method === "GET" || req.method === "HEAD")) {
    const state = await authority.crl(crl[1]!);
    const body = crl[2] === "pem" ? Buffer.from(toPem(state.der, "X509 CRL")) : state.der;
    const headers: Record<string, string> = {
      "content-type": crl[2] === "pem" ? "application/x-pem-file" : "application/pkix-crl",
      "content-length": String(body.length),
      ...(state.number ? cacheHeaders(state.thisUpdate, state.nextUpdate, Date.now()) : {}),
    };
    res.writeHead(200, headers);
    res.end(req.method === "HEAD" ? undefined : body);
    return;
  }
  let der: Buffer | undefined;
  if (req.method === "POST" && (path === "/ocsp" || path === "/ocsp/")) {
    der = await readBody(req, 16 * 1024);
  } else if (req.method === "GET" && path.startsWith("/ocsp/")) {
    // RFC 5019 §5: the base64 request, URL-encoded, may itself contain '/'.
    let text = "";
    try {
      text = decodeURIComponent(path.slice("/ocsp/".length));
    } catch {
      /* refused below as not base64 */
    }
    if (!/^[A-Za-z0-9+/=_-]+$/.test(text)) {
      log?.warn({ path: "/ocsp/…", status: 400 }, "malformed OCSP GET: the path is not base64");
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("malformed OCSP GET: the path is not base64\n");
      return;
    }
    der = Buffer.from(text, "base64");
  }
  if (!der) throw new IssueError(404, "not_found", `no route ${req.method} ${path}`);
  const out = await authority.ocsp(der);
  const headers: Record<string, string> = { "content-type": "application/ocsp-response", "content-length": String(out.body.length) };
  if (out.error) {
    headers["viw-error"] = out.error.replace(/[^\x20-\x7e]/g, "?");
    log?.warn({ path: req.method === "GET" ? "/ocsp/…" : path, status: out.status, reason: out.error }, "OCSP request not answered with a status");
  }
  if (out.cached) {
    Object.assign(headers, cacheHeaders(out.cached.thisUpdate, out.cached.nextUpdate, Date.now()), { etag: out.cached.etag });
    if (req.method === "GET" && req.headers["if-none-match"] === out.cached.etag) {
      res.writeHead(304, { etag: out.cached.etag, "cache-control": headers["cache-control"]! });
      res.end();
      return;
    }
  } else if (out.status === 200) headers["cache-control"] = "no-cache, no-store";
  res.writeHead(out.status, headers);
  res.end(out.body);
}
