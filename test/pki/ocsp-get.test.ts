// The OCSP GET hot path of the PKI port (engine/pki/pkiport.ts): repeated
// RFC 5019 GETs answered on the connection from ready answers, everything
// else handed to node:http. Clients here are raw keep-alive TCP connections
// (to see exactly what goes over one connection), fetch and openssl.
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, startPki, type Pki } from "./fixture.js";

let p: Pki;
beforeAll(async () => {
  p = await startPki();
}, 60_000);
afterAll(async () => p?.cleanup());

const issuerCrt = () => join(p.data, "pki/certs/int-tls.crt");

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** One keep-alive HTTP/1.1 connection: write raw bytes, read whole answers (Content-Length or chunked) in order. */
class Conn {
  private buf = Buffer.alloc(0);
  private waiting: (() => void)[] = [];
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiting.splice(0).forEach((w) => w());
    });
    socket.on("close", () => {
      this.closed = true;
      this.waiting.splice(0).forEach((w) => w());
    });
  }
  static open(): Promise<Conn> {
    const { hostname, port } = new URL(p.pki);
    return new Promise((resolve, reject) => {
      const s = connect(Number(port), hostname, () => resolve(new Conn(s)));
      s.on("error", reject);
    });
  }
  send(raw: string | Buffer): void {
    this.socket.write(raw);
  }
  async answer(): Promise<Answer> {
    for (;;) {
      const end = this.buf.indexOf("\r\n\r\n");
      if (end >= 0) {
        const lines = this.buf.subarray(0, end).toString("latin1").split("\r\n");
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(":")).toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
        const status = Number(lines[0]!.split(" ")[1]);
        if (headers["transfer-encoding"] === "chunked") {
          const chunks: Buffer[] = [];
          let at = end + 4;
          for (;;) {
            const eol = this.buf.indexOf("\r\n", at);
            if (eol < 0) break;
            const size = parseInt(this.buf.subarray(at, eol).toString(), 16);
            if (this.buf.length < eol + 2 + size + 2) break;
            if (size === 0) {
              this.buf = this.buf.subarray(eol + 4);
              return { status, headers, body: Buffer.concat(chunks) };
            }
            chunks.push(this.buf.subarray(eol + 2, eol + 2 + size));
            at = eol + 2 + size + 2;
          }
        } else {
          const len = Number(headers["content-length"] ?? 0);
          if (this.buf.length >= end + 4 + len) {
            const body = this.buf.subarray(end + 4, end + 4 + len);
            this.buf = this.buf.subarray(end + 4 + len);
            return { status, headers, body };
          }
        }
      }
      if (this.closed) throw new Error("connection closed before a whole answer");
      await new Promise<void>((r) => this.waiting.push(r));
    }
  }
  close(): void {
    this.socket.destroy();
  }
}

const host = () => new URL(p.pki).host;
const get = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: ${host()}\r\nUser-Agent: test\r\n${extra}\r\n`;

/** A certificate of the engine-listener profile and its OCSP request (openssl, no nonce). */
async function certWithRequest(name: string) {
  const r = await p.svc.issueForEngine("engine-listener", generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey, { cn: "localhost", dns: ["localhost"] });
  const file = join(p.dir, `${name}.crt`);
  writeFileSync(file, r.certificate);
  const reqFile = join(p.dir, `${name}.req`);
  await run("openssl", ["ocsp", "-issuer", issuerCrt(), "-cert", file, "-no_nonce", "-reqout", reqFile]);
  const b64 = readFileSync(reqFile).toString("base64");
  return { serial: r.serial, file, reqFile, b64, encoded: `/ocsp/${encodeURIComponent(b64)}`, plain: `/ocsp/${b64}` };
}

/**
 * Waits for the start of a wall-clock second: a ready answer is re-checked
 * with the authority once a second anyway, so the steps after this run within
 * one second to show the change is seen at once, not at the next second.
 */
function startOfSecond(): Promise<void> {
  return new Promise((r) => setTimeout(r, 1005 - (Date.now() % 1000)));
}

/** The certificate status openssl reads from a response, after checking its signature. */
async function statusOf(body: Buffer, cert: string, name: string): Promise<string> {
  const f = join(p.dir, `${name}-${Date.now()}-${Math.random()}.resp`);
  writeFileSync(f, body);
  const r = await run("openssl", ["ocsp", "-respin", f, "-issuer", issuerCrt(), "-cert", cert, "-CAfile", p.files.root]);
  expect(r.stdout + r.stderr).toMatch(/Response verify OK/);
  return /: (good|revoked|unknown)/.exec(r.stdout)?.[1] ?? r.stdout;
}

describe("OCSP GET hot path", () => {
  it("answers repeated GETs on a keep-alive connection with the same bytes and headers node:http gives", async () => {
    const c = await certWithRequest("hot1");
    expect(c.b64).toMatch(/[+/=]/); // so the URL-encoded and plain forms differ
    // The first GET of a URL goes through node:http and makes its answer ready.
    const first = await fetch(p.pki + c.encoded);
    expect(first.status).toBe(200);
    const body = Buffer.from(await first.arrayBuffer());
    const conn = await Conn.open();
    try {
      for (let i = 0; i < 3; i++) {
        conn.send(get(c.encoded));
        const a = await conn.answer();
        expect(a.status).toBe(200);
        expect(a.body.equals(body)).toBe(true);
        for (const h of ["content-type", "etag", "last-modified", "expires", "content-length"]) expect(a.headers[h], h).toBe(first.headers.get(h));
        const age = Number(/^max-age=(\d+), public, no-transform, must-revalidate$/.exec(a.headers["cache-control"]!)?.[1]);
        expect(age).toBeGreaterThan(3 * 3600);
        expect(age).toBeLessThanOrEqual(Math.floor((Date.parse(a.headers.expires!) - Date.now()) / 1000) + 1);
        expect(Date.parse(a.headers.date!)).toBeGreaterThan(Date.now() - 5000);
        expect(a.headers.connection).toBe("keep-alive");
        expect(a.headers["keep-alive"]).toBe("timeout=5");
      }
      expect(await statusOf(body, c.file, "hot1")).toBe("good");
    } finally {
      conn.close();
    }
  });

  it("serves the URL-encoded and the plain base64 form of one request alike", async () => {
    const c = await certWithRequest("hot2");
    const viaFetch = Buffer.from(await (await fetch(p.pki + c.encoded)).arrayBuffer());
    // The plain form ('/' and '+' as they are) is its own key: first through node:http, then ready.
    const plainFirst = await fetch(p.pki + c.plain);
    expect(plainFirst.status).toBe(200);
    expect(Buffer.from(await plainFirst.arrayBuffer()).equals(viaFetch)).toBe(true);
    const conn = await Conn.open();
    try {
      for (const path of [c.plain, c.encoded, c.plain, c.encoded]) {
        conn.send(get(path));
        const a = await conn.answer();
        expect(a.status, path).toBe(200);
        expect(a.body.equals(viaFetch)).toBe(true);
      }
    } finally {
      conn.close();
    }
  });

  it("a revocation flips the ready answer to revoked at once, on the same connection", async () => {
    const c = await certWithRequest("hot3");
    await fetch(p.pki + c.encoded);
    const conn = await Conn.open();
    try {
      conn.send(get(c.encoded));
      const before = await conn.answer();
      conn.send(get(c.encoded));
      expect((await conn.answer()).body.equals(before.body)).toBe(true);
      expect(await statusOf(before.body, c.file, "hot3")).toBe("good");
      await startOfSecond();
      conn.send(get(c.encoded));
      expect((await conn.answer()).body.equals(before.body)).toBe(true);
      await p.svc.authority.revoke({ serial: c.serial, reason: "keyCompromise" }, "engine");
      conn.send(get(c.encoded));
      const after = await conn.answer();
      expect(after.status).toBe(200);
      expect(after.headers.etag).not.toBe(before.headers.etag);
      expect(await statusOf(after.body, c.file, "hot3")).toBe("revoked");
      // And openssl asking by POST (fresh, with a nonce) agrees.
      const post = await run("openssl", ["ocsp", "-issuer", issuerCrt(), "-cert", c.file, "-url", `${p.pki}/ocsp`, "-CAfile", p.files.root]);
      expect(post.stdout).toMatch(/hot3.crt: revoked/);
    } finally {
      conn.close();
    }
  });

  it("a new revision replaces the ready answers (re-signed)", async () => {
    const c = await certWithRequest("hot4");
    await fetch(p.pki + c.encoded);
    const conn = await Conn.open();
    try {
      await startOfSecond();
      conn.send(get(c.encoded));
      const before = await conn.answer();
      const a = p.svc.authority;
      a.swap(await a.build(p.state, p.keys, a.runtime));
      conn.send(get(c.encoded));
      const after = await conn.answer();
      expect(after.status).toBe(200);
      expect(after.body.equals(before.body)).toBe(false); // signed again after the authority dropped its cache
      expect(await statusOf(after.body, c.file, "hot4")).toBe("good");
    } finally {
      conn.close();
    }
  });

  it("hands the connection to node:http for anything else, answering everything in order", async () => {
    const c = await certWithRequest("hot5");
    const good = Buffer.from(await (await fetch(p.pki + c.encoded)).arrayBuffer());
    const conn = await Conn.open();
    try {
      conn.send(get(c.encoded));
      expect((await conn.answer()).body.equals(good)).toBe(true);
      // Two GETs in one write (pipelined): both answered, in order.
      conn.send(get(c.encoded) + get("/ocsp/!!!notbase64"));
      expect((await conn.answer()).body.equals(good)).toBe(true);
      const bad = await conn.answer();
      expect(bad.status).toBe(400);
      expect(bad.body.toString()).toMatch(/not base64/);
      // A conditional GET: 304 from node:http.
      conn.send(get(c.encoded, `If-None-Match: ${(await fetch(p.pki + c.encoded)).headers.get("etag")}\r\n`));
      expect((await conn.answer()).status).toBe(304);
      // A POST on the same connection, then a GET split over two writes.
      const der = readFileSync(c.reqFile);
      conn.send(Buffer.concat([Buffer.from(`POST /ocsp HTTP/1.1\r\nHost: ${host()}\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${der.length}\r\n\r\n`), der]));
      const post = await conn.answer();
      expect(post.status).toBe(200);
      expect(post.body.equals(good)).toBe(true); // no nonce: the cached response
      const split = get(c.encoded);
      conn.send(split.slice(0, 20));
      await new Promise((r) => setTimeout(r, 50));
      conn.send(split.slice(20));
      expect((await conn.answer()).body.equals(good)).toBe(true);
      const crl = await (async () => {
        conn.send(get("/crl/int-tls.crl"));
        return conn.answer();
      })();
      expect(crl.status).toBe(200);
      expect(crl.headers["content-type"]).toBe("application/pkix-crl");
    } finally {
      conn.close();
    }
  });

  it("leaves requests with a header to honour, HTTP/1.0 or odd bytes to node:http", async () => {
    const c = await certWithRequest("hot6");
    const good = Buffer.from(await (await fetch(p.pki + c.encoded)).arrayBuffer());
    // Connection: close is honoured: answer, then the server closes.
    const closing = await Conn.open();
    closing.send(get(c.encoded, "Connection: close\r\n"));
    const a = await closing.answer();
    expect(a.body.equals(good)).toBe(true);
    expect(a.headers.connection).toBe("close");
    await new Promise<void>((r) => (closing.closed ? r() : closing.socket.on("close", () => r())));
    // A header line with a control character: node:http refuses it, as before the hot path.
    const odd = await Conn.open();
    odd.send(get(c.encoded, "X-Odd: a\x01b\r\n"));
    const refused = await odd.answer().catch(() => ({ status: 0 }) as Answer);
    expect([400, 0]).toContain(refused.status);
    odd.close();
    // HTTP/1.0 without keep-alive: answered by node:http and closed.
    const old = await Conn.open();
    old.send(`GET ${c.encoded} HTTP/1.0\r\n\r\n`);
    const a10 = await old.answer();
    expect(a10.status).toBe(200);
    expect(a10.body.equals(good)).toBe(true);
    old.close();
  });

  it("keeps serving through garbage, resets and half-closes on hot-path connections", async () => {
    const c = await certWithRequest("hot7");
    const good = Buffer.from(await (await fetch(p.pki + c.encoded)).arrayBuffer());
    const { hostname, port } = new URL(p.pki);
    const junk = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7919 + n) % 256));
    const sends: Buffer[] = [
      Buffer.from(get(c.encoded) + "garbage after the request"),
      Buffer.concat([Buffer.from(get(c.encoded).slice(0, -2)), junk(300)]),
      Buffer.concat([Buffer.from(`GET ${c.encoded} HTTP/1.1\r\nHost: x\r\n`), junk(40), Buffer.from("\r\n\r\n")]),
      junk(5000),
      Buffer.from(get(c.encoded).repeat(20)),
    ];
    await Promise.all(
      sends.flatMap((bytes) =>
        [false, true].map(
          (reset) =>
            new Promise<void>((resolve) => {
              const s = connect(Number(port), hostname, () => {
                s.write(bytes);
                if (reset) s.resetAndDestroy();
                else s.end();
              });
              s.on("data", () => {});
              s.on("error", () => resolve());
              s.on("close", () => resolve());
            }),
        ),
      ),
    );
    // Still answering, from the hot path too.
    const conn = await Conn.open();
    try {
      conn.send(get(c.encoded));
      expect((await conn.answer()).body.equals(good)).toBe(true);
    } finally {
      conn.close();
    }
    expect((await fetch(p.pki + c.encoded)).status).toBe(200);
  });

  it("closing the service closes idle hot-path connections at once", async () => {
    const own = await startPki();
    try {
      const r = await own.svc.issueForEngine("engine-listener", generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey, { cn: "localhost", dns: ["localhost"] });
      const file = join(own.dir, "c.crt");
      writeFileSync(file, r.certificate);
      await run("openssl", ["ocsp", "-issuer", join(own.data, "pki/certs/int-tls.crt"), "-cert", file, "-no_nonce", "-reqout", join(own.dir, "c.req")]);
      const path = `/ocsp/${encodeURIComponent(readFileSync(join(own.dir, "c.req")).toString("base64"))}`;
      await fetch(own.pki + path);
      const { hostname, port } = new URL(own.pki);
      const s = await new Promise<Socket>((resolve) => {
        const x = connect(Number(port), hostname, () => resolve(x));
      });
      const closed = new Promise<void>((resolve) => s.on("close", () => resolve()));
      s.on("data", () => {});
      s.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await own.svc.close();
      await closed;
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      await own.keys.close();
      rmSync(own.dir, { recursive: true, force: true });
    }
  });
});
