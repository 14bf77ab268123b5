import { Server, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Authority, Logger } from "./authority.js";
import { IssueError } from "./errors.js";
import { readBody, sendError } from "./http.js";
import { toPem } from "./x509.js";

type OcspAnswer = Awaited<ReturnType<Authority["ocsp"]>>;
type CachedAnswer = NonNullable<OcspAnswer["cached"]>;

/**
 * The plain-HTTP PKI port: CRLs (RFC 5280) and OCSP (RFC 6960, RFC 5019
 * GET form), cacheable by any HTTP cache in front of it.
 */
export function createPkiServer(authority: Authority, options: { log?: Logger; readyLimit?: number } = {}): Server {
  return new PkiServer(authority, options);
}

/** A connection still served by the OCSP GET hot path. */
interface FastConnection {
  /** The authority is being asked; data arriving meanwhile waits in `held`. */
  busy: boolean;
  held?: Buffer;
  /** The client half-closed while busy: end after the answer. */
  ended: boolean;
  /** Answered at least once: the idle timeout is node:http's keepAliveTimeout from then on. */
  answered: boolean;
}

/**
 * Simple repeated OCSP GETs are answered on the connection itself, below
 * node:http; everything else goes to node:http.
 *
 * Why by hand: this is the responder's hot path, and node:http's own work
 * per request (request and response objects, header parsing and writing)
 * is most of its cost. Measured by test/bench/ocsp.bench.ts (2 shared cores,
 * wrk, 16 keep-alive connections): a cached answer through node:http costs
 * ~60 µs of CPU, written here ~23 µs (mostly the write system call), and
 * throughput goes from ~1.7x (before this file's ready answers) and ~2.8x
 * (node:http with them) to ~4.7x cfssl ocspserve. So a connection starts here: each
 * data chunk that is exactly one GET of a URL already answered once through
 * node:http (a key of ReadyAnswers), with only plain headers (checked by
 * SIMPLE_GET: no body, no Connection, Expect, Upgrade or conditional
 * headers), is answered with the ready bytes. The first chunk that is
 * anything else (another method or URL, a request split over two reads,
 * pipelined requests, a header to honour) is put back and the connection
 * handed to node:http for the rest of its life (through its 'connection'
 * listener, as any injected socket), so node:http keeps parsing and
 * answering everything it did before.
 */
class PkiServer extends Server {
  private readonly ready: ReadyAnswers;
  private readonly fast = new Map<Socket, FastConnection>();
  private readonly toHttp: (socket: Socket) => void;

  constructor(
    private readonly authority: Authority,
    private readonly options: { log?: Logger; readyLimit?: number },
  ) {
    super();
    this.ready = new ReadyAnswers(authority, options.readyLimit ?? 100_000, () => this.keepAliveTimeout);
    this.on("request", (req: IncomingMessage, res: ServerResponse) => this.request(req, res));
    const [toHttp] = this.listeners("connection") as ((socket: Socket) => void)[];
    if (!toHttp) throw new Error("node:http server without its connection listener");
    this.toHttp = toHttp;
    this.removeListener("connection", toHttp);
    this.on("connection", (socket: Socket) => this.connection(socket));
  }

  /** node:http's request path: every method and route. */
  private request(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? "/";
    const known = req.method === "GET" ? this.ready.get(url) : undefined;
    const log = this.options.log;
    let work: Promise<void>;
    if (known && this.ready.current(known, Date.now())) work = (async () => sendReady(this.ready, known, req, res))();
    else if (known) work = this.ready.check(url, known).then(({ ready, out }) => (ready ? sendReady(this.ready, ready, req, res) : sendOcsp(this.ready, url, known.request, out, req, res, log)));
    else work = handle(this.authority, this.ready, req, res, log);
    work.catch((err: unknown) => {
      if (err instanceof IssueError) sendError(res, err);
      else {
        log?.error({ path: req.url, err: (err as Error).stack ?? String(err) }, "pki request failed");
        if (!res.headersSent) {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end("internal error\n");
        } else res.destroy();
      }
    });
  }

  private connection(socket: Socket): void {
    const conn: FastConnection = { busy: false, ended: false, answered: false };
    this.fast.set(socket, conn);
    const onError = () => socket.destroy();
    const onEnd = () => {
      if (conn.busy) conn.ended = true;
      else socket.end();
    };
    const onClose = () => this.fast.delete(socket);
    const handOff = (chunk: Buffer) => {
      this.fast.delete(socket);
      socket.off("data", onData).off("error", onError).off("end", onEnd).off("close", onClose).off("timeout", onError);
      // A stream that has ended cannot take its data back (unshift): drop it rather than answer half.
      if (conn.ended) return void socket.destroy();
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(chunk);
      this.toHttp.call(this, socket);
      socket.resume();
    };
    const send = (r: Ready, now: number) => {
      this.ready.refresh(r, now);
      // Like node:http: stop reading from a client that does not read its answers.
      if (!socket.write(r.wire)) {
        socket.pause();
        socket.once("drain", () => socket.resume());
      }
      if (!conn.answered) {
        conn.answered = true;
        socket.setTimeout(this.keepAliveTimeout);
      }
    };
    const onData = (chunk: Buffer): void => {
      if (conn.busy) {
        conn.held = conn.held ? Buffer.concat([conn.held, chunk]) : chunk;
        return;
      }
      let url: string | undefined;
      let known: Ready | undefined;
      let now = 0;
      let current = false;
      try {
        url = simpleGet(chunk);
        known = url === undefined ? undefined : this.ready.get(url);
        now = Date.now();
        current = !!known && this.ready.current(known, now);
      } catch {
        known = undefined; // node:http's path answers (500) and logs whatever failed
      }
      if (!known || url === undefined) return handOff(chunk);
      if (current) {
        send(known, now);
        if (!this.listening) socket.end();
        return;
      }
      // Once a second, and after a revision or a revocation: ask the authority,
      // reading nothing more from this client meanwhile.
      conn.busy = true;
      socket.pause();
      const done = (r: Ready | undefined) => {
        conn.busy = false;
        if (socket.destroyed) return;
        const held = conn.held;
        conn.held = undefined;
        // An answer that is not a cached good one (an error, a failed re-sign...) takes node:http's path, which logs it.
        if (!r) return handOff(held ? Buffer.concat([chunk, held]) : chunk);
        socket.resume();
        send(r, Date.now());
        if (held) onData(held);
        else if (conn.ended || !this.listening) socket.end();
      };
      this.ready.check(url, known).then(
        ({ ready }) => done(ready),
        () => done(undefined),
      );
    };
    socket.on("data", onData).on("error", onError).on("end", onEnd).on("close", onClose).on("timeout", onError);
    socket.setTimeout(this.headersTimeout);
  }

  override closeIdleConnections(): void {
    for (const [socket, conn] of this.fast) if (!conn.busy) socket.destroy();
    super.closeIdleConnections();
  }

  override closeAllConnections(): void {
    for (const socket of this.fast.keys()) socket.destroy();
    super.closeAllConnections();
  }
}

// One GET of an /ocsp/ URL with plain header lines and nothing after the
// blank line: RFC 9112 request-line and field-line grammar, restricted to
// visible ASCII (anything else goes to node:http to judge).
const SIMPLE_GET = /^GET (\/ocsp\/[\x21-\x7e]+) HTTP\/1\.1\r\n((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*\r\n)+)\r\n$/;
// Headers node:http acts on (framing, connection, conditional answers): left to it.
const NOT_SIMPLE = /(?:^|\n)(?:connection|content-length|transfer-encoding|expect|upgrade|if-none-match|if-modified-since|te|trailer):/i;
const HOST = /(?:^|\n)host:/i;

/** The URL of a chunk that is exactly one simple OCSP GET (HTTP/1.1, with Host), else undefined. */
function simpleGet(chunk: Buffer): string | undefined {
  if (chunk.length > 8192 || chunk[0] !== 0x47 /* G */) return undefined;
  const m = SIMPLE_GET.exec(chunk.toString("latin1"));
  if (!m || !HOST.test(m[2]!) || NOT_SIMPLE.test(m[2]!)) return undefined;
  return m[1];
}

function maxAge(nextUpdate: Date, now: number): string {
  return `max-age=${Math.max(0, Math.floor((nextUpdate.getTime() - now) / 1000))}, public, no-transform, must-revalidate`;
}

function cacheHeaders(thisUpdate: Date, nextUpdate: Date, now: number): Record<string, string> {
  return { "cache-control": maxAge(nextUpdate, now), "last-modified": thisUpdate.toUTCString(), expires: nextUpdate.toUTCString() };
}

/** One OCSP GET URL's answer, formatted once per signed response. */
interface Ready {
  /** The DER OCSPRequest the URL carries. */
  request: Buffer;
  /** The authority's cached response this was built from. */
  cached: CachedAnswer;
  /** Flat header list; CACHE_CONTROL indexes its value, which changes each second. */
  headers: string[];
  /** The whole HTTP/1.1 keep-alive response (status line, headers, body) for the connection-level path. */
  wire: Buffer;
  /** The second (Unix time) max-age, Date and `wire` were written for. */
  second: number;
  /** What the authority's answer was checked against: its runtime (revision), the certificate's revocation, the second. */
  checked?: { runtime: unknown; revoked: boolean; second: number };
}
const CACHE_CONTROL = 3;

/**
 * Ready-made answers to OCSP GETs, keyed by the request URL exactly as it
 * arrived (URL-encoded or plain base64 are two keys, each filled by its first
 * request): a repeated RFC 5019 GET, which is what relying parties and HTTP
 * caches send, needs no URL decoding, base64 or ASN.1, and its response is
 * formatted once a second rather than per request.
 *
 * The authority stays the judge of what to answer: a Ready is sent as it is
 * only within the second its answer was checked with authority.ocsp(), and
 * while the authority still runs the same revision and the certificate's
 * revocation state (CertStore.isRevoked, cached in memory and dropped by
 * every revocation) is what it was then. A revocation therefore flips the
 * answer at once, a new revision or a re-sign within a second.
 */
class ReadyAnswers {
  private readonly byUrl = new Map<string, Ready>();
  constructor(
    private readonly authority: Authority,
    private readonly limit: number,
    /** node:http's keepAliveTimeout (ms), announced in the Keep-Alive header as node:http does. */
    private readonly keepAlive: () => number,
  ) {}

  get(url: string): Ready | undefined {
    return this.byUrl.get(url);
  }

  set(url: string, request: Buffer, cached: CachedAnswer): Ready {
    // Bounded like the authority's own caches: requests for arbitrary URLs must not grow memory.
    if (this.byUrl.size >= this.limit) this.byUrl.clear();
    const r: Ready = {
      request,
      cached,
      // prettier-ignore
      headers: [
        "content-type", "application/ocsp-response",
        "cache-control", "",
        "content-length", String(cached.der.length),
        "last-modified", cached.thisUpdate.toUTCString(),
        "expires", cached.nextUpdate.toUTCString(),
        "etag", cached.etag,
      ],
      wire: cached.der,
      second: -1,
    };
    this.byUrl.set(url, r);
    return r;
  }

  /** Whether `r` may be sent without asking the authority (see the class comment). */
  current(r: Ready, now: number): boolean {
    const c = r.checked;
    return c !== undefined && c.second === Math.floor(now / 1000) && c.runtime === this.authority.runtime && c.revoked === this.authority.store.isRevoked(r.cached.serial);
  }

  /** Asks the authority again; `ready` is what to send when its answer is a cached (cacheable) one. */
  async check(url: string, r: Ready): Promise<{ ready?: Ready; out: OcspAnswer }> {
    // Taken before asking, so a change while the answer is being signed is seen by the next request.
    const checked = { runtime: this.authority.runtime, revoked: this.authority.store.isRevoked(r.cached.serial), second: Math.floor(Date.now() / 1000) };
    const out = await this.authority.ocsp(r.request);
    if (out.status !== 200 || !out.cached) return { out };
    const ready = out.cached === r.cached ? r : this.set(url, r.request, out.cached);
    ready.checked = checked;
    return { ready, out };
  }

  /** Brings max-age, the Date header and the wire form of `r` to the current second. */
  refresh(r: Ready, now: number): void {
    const second = Math.floor(now / 1000);
    if (second === r.second) return;
    r.second = second;
    r.headers[CACHE_CONTROL] = maxAge(r.cached.nextUpdate, now);
    let head = "HTTP/1.1 200 OK\r\n";
    for (let i = 0; i < r.headers.length; i += 2) head += `${r.headers[i]}: ${r.headers[i + 1]}\r\n`;
    const keepAlive = Math.floor(this.keepAlive() / 1000);
    head += `Date: ${new Date(second * 1000).toUTCString()}\r\nConnection: keep-alive\r\n${keepAlive ? `Keep-Alive: timeout=${keepAlive}\r\n` : ""}\r\n`;
    r.wire = Buffer.concat([Buffer.from(head, "latin1"), r.cached.der]);
  }
}

/** The If-None-Match request header, read from rawHeaders so the headers object is not built for every request. */
function ifNoneMatch(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === "if-none-match") return raw[i + 1];
  }
  return undefined;
}

/** Writes a cached GET answer (or 304), refreshing max-age once a second. */
function sendReady(ready: ReadyAnswers, r: Ready, req: IncomingMessage, res: ServerResponse): void {
  ready.refresh(r, Date.now());
  if (ifNoneMatch(req) === r.cached.etag) {
    res.writeHead(304, ["etag", r.cached.etag, "cache-control", r.headers[CACHE_CONTROL]!]);
    res.end();
    return;
  }
  res.writeHead(200, r.headers);
  res.end(r.cached.der);
}

/** Sends the authority's answer; a cached answer to a GET is kept ready for the next request for `url`. */
function sendOcsp(ready: ReadyAnswers, url: string, request: Buffer, out: OcspAnswer, req: IncomingMessage, res: ServerResponse, log?: Logger): void {
  if (req.method === "GET" && out.cached && out.status === 200) {
    const known = ready.get(url);
    sendReady(ready, known?.cached === out.cached ? known : ready.set(url, request, out.cached), req, res);
    return;
  }
  const headers: Record<string, string> = { "content-type": "application/ocsp-response", "content-length": String(out.body.length) };
  if (out.error) {
    headers["viw-error"] = out.error.replace(/[^\x20-\x7e]/g, "?");
    log?.warn({ path: req.method === "GET" ? "/ocsp/…" : url.split("?")[0], status: out.status, reason: out.error }, "OCSP request not answered with a status");
  }
  if (out.cached) Object.assign(headers, cacheHeaders(out.cached.thisUpdate, out.cached.nextUpdate, Date.now()), { etag: out.cached.etag });
  else if (out.status === 200) headers["cache-control"] = "no-cache, no-store";
  res.writeHead(out.status, headers);
  res.end(out.body);
}

async function handle(authority: Authority, ready: ReadyAnswers, req: IncomingMessage, res: ServerResponse, log?: Logger): Promise<void> {
  const url = req.url ?? "/";
  const path = url.split("?")[0]!;
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
  sendOcsp(ready, url, der, await authority.ocsp(der), req, res, log);
}
