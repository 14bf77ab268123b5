import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { TLSSocket } from "node:tls";
import type { Authority, ClientIdentity, Logger } from "./authority.js";
import { IssueError } from "./errors.js";
import { readBody, sendError, sendJson, sendText } from "./http.js";

export interface IssuanceTls {
  /** The listener's own certificate chain and key (PEM). */
  cert: string | Buffer;
  key: string | Buffer;
  /** The CA bundle client certificates must chain to (PEM). */
  ca: string | Buffer;
}

export interface IssuanceServerOptions {
  bodyLimit?: number;
  log?: Logger;
}

const identities = new WeakMap<TLSSocket, ClientIdentity | null>();

/**
 * The issuance API (DESIGN.md §4): HTTPS with TLS 1.3 only and a client
 * certificate required; the certificate's issuer and names are matched
 * against the issuance policy on every request.
 */
export function createIssuanceServer(authority: Authority, tls: IssuanceTls, options: IssuanceServerOptions = {}): Server {
  const limit = options.bodyLimit ?? 64 * 1024;
  const log = options.log;
  const server = createServer(
    { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3", maxVersion: "TLSv1.3" },
    (req, res) => {
      handle(authority, req, res, limit).catch((err: unknown) => {
        if (err instanceof IssueError) {
          log?.warn({ path: req.url, status: err.status, code: err.code, field: err.field, message: err.message }, "issuance request refused");
          sendError(res, err);
        } else {
          log?.error({ path: req.url, err: (err as Error).stack ?? String(err) }, "issuance request failed");
          if (!res.headersSent) sendJson(res, 500, { error: { code: "internal", message: "internal error" } });
          else res.destroy();
        }
      });
    },
  );
  server.keepAliveTimeout = 30_000;
  return server;
}

/** JSON of each issuer's chain (the frozen array every answer of a revision shares), serialised once. */
const chainJson = new WeakMap<readonly string[], string>();

/**
 * An answer as JSON. An issued certificate's chain (three PEMs, most of the
 * text) is spliced in from its cached JSON rather than escaped again for
 * every certificate.
 */
function answerText(out: unknown): string {
  const chain = (out as { chain?: unknown } | undefined)?.chain;
  if (!Array.isArray(chain) || !Object.isFrozen(chain)) return JSON.stringify(out);
  let cj = chainJson.get(chain);
  if (cj === undefined) chainJson.set(chain, (cj = JSON.stringify(chain)));
  const head = JSON.stringify({ ...(out as object), chain: undefined });
  return `${head.slice(0, -1)},"chain":${cj}}`;
}

function identityOf(authority: Authority, req: IncomingMessage): ClientIdentity {
  const socket = req.socket as TLSSocket;
  let id = identities.get(socket);
  if (id === undefined) {
    const peer = socket.getPeerX509Certificate();
    id = peer ? (authority.identify(peer) ?? null) : null;
    identities.set(socket, id);
  }
  if (!id) throw new IssueError(403, "client_not_authorized", "the client certificate was not issued by an issuer of this engine");
  return id;
}

async function json(req: IncomingMessage, limit: number): Promise<unknown> {
  const body = await readBody(req, limit);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new IssueError(400, "bad_json", `the body is not JSON (${(err as Error).message})`);
  }
}

async function handle(authority: Authority, req: IncomingMessage, res: ServerResponse, limit: number): Promise<void> {
  // The path split off by hand (a WHATWG URL parse per request is measurable on the hot path); the query only where a route has one.
  const target = req.url ?? "/";
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  const who = identityOf(authority, req);
  const post = (handler: () => Promise<unknown>, status = 201) => {
    if (req.method !== "POST") throw new IssueError(400, "method", `${path} takes POST`);
    return handler().then((out) => sendText(res, status, answerText(out)));
  };
  switch (path) {
    case "/v1/certs/issue/server":
      return post(async () => authority.issue("server", await json(req, limit), who));
    case "/v1/certs/issue/client":
      return post(async () => authority.issue("client", await json(req, limit), who));
    case "/v1/certs/rotate":
      return post(async () => authority.rotate(await json(req, limit), who));
    case "/v1/certs/revoke":
      return post(async () => authority.revoke(await json(req, limit), who), 200);
    case "/v1/ca/chain": {
      const issuer = new URLSearchParams(q < 0 ? "" : target.slice(q + 1)).get("issuer");
      if (!issuer) throw new IssueError(400, "bad_request", "issuer is required (?issuer=ID)", "issuer");
      const pem = authority.chain(issuer);
      res.writeHead(200, { "content-type": "application/pem-certificate-chain", "content-length": Buffer.byteLength(pem) });
      res.end(pem);
      return;
    }
  }
  const m = /^\/v1\/certs\/([^/]+)$/.exec(path);
  if (m && req.method === "GET") return sendJson(res, 200, authority.certificate(decodeURIComponent(m[1]!)));
  throw new IssueError(404, "not_found", `no route ${req.method} ${path}`);
}
