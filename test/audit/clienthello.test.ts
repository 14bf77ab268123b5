import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { readClientHello } from "../../engine/audit/index.js";

/** A ClientHello built field by field (RFC 8446 §4.1.2 layout), GREASE values included. */
function hello(opts: { legacy: number; ciphers: number[]; exts: [number, Buffer][] }): Buffer {
  const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
  const ciphers = Buffer.concat(opts.ciphers.map(u16));
  const exts = Buffer.concat(opts.exts.map(([t, d]) => Buffer.concat([u16(t), u16(d.length), d])));
  const body = Buffer.concat([u16(opts.legacy), Buffer.alloc(32, 7), Buffer.from([0]), u16(ciphers.length), ciphers, Buffer.from([1, 0]), u16(exts.length), exts]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return hs;
}
const record = (hs: Buffer): Buffer => Buffer.concat([Buffer.from([0x16, 3, 1, hs.length >> 8, hs.length & 0xff]), hs]);
const list16 = (vals: number[], lenBytes: 1 | 2): Buffer => {
  const b = Buffer.concat(vals.map((v) => Buffer.from([v >> 8, v & 0xff])));
  return Buffer.concat([lenBytes === 2 ? Buffer.from([b.length >> 8, b.length & 0xff]) : Buffer.from([b.length]), b]);
};

const hs = hello({
  legacy: 0x0303,
  ciphers: [0x2a2a, 0x1301, 0x1302, 0xc02b],
  exts: [
    [0x3a3a, Buffer.alloc(0)],
    [0, Buffer.from([0, 12, 0, 0, 9, ...Buffer.from("localhost")])],
    [10, list16([0x4a4a, 29, 23], 2)],
    [11, Buffer.from([1, 0])],
    [43, list16([0x5a5a, 0x0304, 0x0303], 1)],
  ],
});

describe("ClientHello → JA3", () => {
  it("computes the JA3 string and md5 with GREASE removed, the offered versions and SNI", () => {
    const r = readClientHello(record(hs));
    expect(r.state).toBe("ok");
    if (r.state !== "ok") return;
    expect(r.hello.ja3Text).toBe("771,4865-4866-49195,0-10-11-43,29-23,0");
    expect(r.hello.ja3).toBe(createHash("md5").update("771,4865-4866-49195,0-10-11-43,29-23,0").digest("hex"));
    expect(r.hello.offered).toEqual([0x0304, 0x0303]);
    expect(r.hello.serverName).toBe("localhost");
  });

  it("asks for more bytes until the hello is complete, also across two records", () => {
    const whole = record(hs);
    expect(readClientHello(whole.subarray(0, 3)).state).toBe("more");
    expect(readClientHello(whole.subarray(0, whole.length - 1)).state).toBe("more");
    const split = Buffer.concat([record(hs.subarray(0, 40)), record(hs.subarray(40))]);
    expect(readClientHello(split.subarray(0, 50)).state).toBe("more");
    const r = readClientHello(split);
    expect(r.state === "ok" && r.hello.ja3Text).toBe("771,4865-4866-49195,0-10-11-43,29-23,0");
  });

  it("says not-tls for plain text and bad for a handshake that is not a ClientHello or is truncated inside", () => {
    expect(readClientHello(Buffer.from("GET / HTTP/1.1\r\n")).state).toBe("not-tls");
    const notHello = Buffer.from(hs);
    notHello[0] = 2;
    expect(readClientHello(record(notHello)).state).toBe("bad");
    const lying = Buffer.from(hs);
    lying[4 + 2 + 32 + 1] = 0xff; // cipher list length beyond the message
    expect(readClientHello(record(lying)).state).toBe("bad");
  });
});
