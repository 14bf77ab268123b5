import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { readClientHello, type ClientHello } from "../../engine/audit/index.js";

/**
 * readClientHello parses in place; the reference below is the plain reading
 * it replaced (arrays joined, each record copied out), kept here as the
 * oracle: on any hello, split over any records and segments, truncated or
 * with a byte changed, both must give the same answer.
 */

type HelloResult = { state: "more" } | { state: "not-tls" } | { state: "ok"; hello: ClientHello } | { state: "bad" };
const MAX_HELLO = 64 * 1024;
const isGrease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);

function referenceRead(buf: Buffer): HelloResult {
  if (buf.length < 1) return { state: "more" };
  if (buf[0] !== 0x16) return { state: "not-tls" };
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  while (need < 0 || have < need) {
    if (buf.length < off + 5) return buf.length > MAX_HELLO ? { state: "bad" } : { state: "more" };
    if (buf[off] !== 0x16) return { state: "bad" };
    const len = buf.readUInt16BE(off + 3);
    if (buf.length < off + 5 + len) return off + 5 + len > MAX_HELLO ? { state: "bad" } : { state: "more" };
    parts.push(buf.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need < 0 && have >= 4) {
      const hs = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (hs[0] !== 0x01) return { state: "bad" };
      need = 4 + hs.readUIntBE(1, 3);
      if (need > MAX_HELLO) return { state: "bad" };
    }
  }
  const hs = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  try {
    return { state: "ok", hello: referenceParse(hs.subarray(4, need)) };
  } catch {
    return { state: "bad" };
  }
}

function referenceParse(b: Buffer): ClientHello {
  let p = 0;
  const need = (n: number): void => {
    if (p + n > b.length) throw new RangeError("truncated ClientHello");
  };
  need(2 + 32 + 1);
  const version = b.readUInt16BE(p);
  p += 2 + 32;
  p += 1 + b[p]!; // session id
  need(2);
  const cipherLen = b.readUInt16BE(p);
  p += 2;
  need(cipherLen);
  const ciphers: number[] = [];
  for (let i = 0; i + 1 < cipherLen; i += 2) {
    const c = b.readUInt16BE(p + i);
    if (!isGrease(c)) ciphers.push(c);
  }
  p += cipherLen;
  need(1);
  p += 1 + b[p]!; // compression methods
  const exts: number[] = [];
  const groups: number[] = [];
  const formats: number[] = [];
  let offered: number[] = [];
  let serverName: string | undefined;
  if (p + 2 <= b.length) {
    const end = Math.min(b.length, p + 2 + b.readUInt16BE(p));
    p += 2;
    while (p + 4 <= end) {
      const type = b.readUInt16BE(p);
      const len = b.readUInt16BE(p + 2);
      const d = b.subarray(p + 4, p + 4 + len);
      p += 4 + len;
      if (isGrease(type)) continue;
      exts.push(type);
      if (type === 10 && d.length >= 2) {
        for (let i = 2; i + 1 < Math.min(d.length, 2 + d.readUInt16BE(0)); i += 2) {
          const g = d.readUInt16BE(i);
          if (!isGrease(g)) groups.push(g);
        }
      } else if (type === 11 && d.length >= 1) {
        for (let i = 1; i < Math.min(d.length, 1 + d[0]!); i++) formats.push(d[i]!);
      } else if (type === 43 && d.length >= 1) {
        for (let i = 1; i + 1 < Math.min(d.length, 1 + d[0]!); i += 2) {
          const v = d.readUInt16BE(i);
          if (!isGrease(v)) offered.push(v);
        }
      } else if (type === 0 && d.length >= 5 && d[2] === 0) {
        serverName = d.subarray(5, 5 + d.readUInt16BE(3)).toString("latin1");
      }
    }
  }
  if (offered.length === 0) offered = [version];
  const ja3Text = `${version},${ciphers.join("-")},${exts.join("-")},${groups.join("-")},${formats.join("-")}`;
  const ja3 = createHash("md5").update(ja3Text).digest("hex");
  return { version, offered, ja3, ja3Text, ...(serverName !== undefined ? { serverName } : {}) };
}

const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const grease = fc.integer({ min: 0, max: 15 }).map((i) => (((i << 4) | 0x0a) << 8) | ((i << 4) | 0x0a));
const u16v = fc.oneof(fc.integer({ min: 0, max: 0xffff }), grease, fc.constantFrom(0x0304, 0x0303, 0x0302, 29, 23));
const list = (lenBytes: 1 | 2, items: fc.Arbitrary<number[]>) =>
  items.map((xs) => [...(lenBytes === 2 ? u16(xs.length) : [xs.length & 0xff]), ...xs]);
const ext = fc.oneof(
  fc.tuple(fc.constant(10), list(2, fc.array(u16v, { maxLength: 6 }).map((vs) => vs.flatMap(u16)))),
  fc.tuple(fc.constant(11), list(1, fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 4 }))),
  fc.tuple(fc.constant(43), list(1, fc.array(u16v, { maxLength: 5 }).map((vs) => vs.flatMap(u16)))),
  fc.tuple(fc.constant(0), fc.string({ maxLength: 20 }).map((h) => { const b = [...Buffer.from(h, "latin1")]; return [...u16(b.length + 3), 0, ...u16(b.length), ...b]; })),
  fc.tuple(fc.oneof(u16v, grease), fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 8 })),
);
/** A ClientHello handshake message (RFC 8446 §4.1.2), sometimes with odd lengths. */
const hello = fc
  .record({
    legacy: u16v,
    session: fc.integer({ min: 0, max: 32 }),
    ciphers: fc.array(u16v, { maxLength: 12 }),
    oddCipherByte: fc.boolean(),
    compression: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 2 }),
    exts: fc.option(fc.array(ext, { maxLength: 8 }), { nil: undefined }),
  })
  .map((h) => {
    const ciphers = h.ciphers.flatMap(u16).concat(h.oddCipherByte ? [0x13] : []);
    const body = [...u16(h.legacy), ...new Array(32).fill(7), h.session, ...new Array(h.session).fill(1), ...u16(ciphers.length), ...ciphers, h.compression.length, ...h.compression];
    if (h.exts) {
      const e = h.exts.flatMap(([t, d]) => [...u16(t), ...u16(d.length), ...d]);
      body.push(...u16(e.length), ...e);
    }
    return Buffer.from([1, 0, body.length >> 8, body.length & 0xff, ...body]);
  });
/** The handshake in TLS records of the given sizes. */
const records = (hs: Buffer, cuts: number[]): Buffer => {
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, hs.length]) {
    const end = Math.min(hs.length, Math.max(at + 1, c));
    if (at >= hs.length) break;
    const part = hs.subarray(at, end);
    out.push(Buffer.from([0x16, 3, 1, part.length >> 8, part.length & 0xff]), part);
    at = end;
  }
  return Buffer.concat(out);
};

describe("readClientHello against the reference reading (property)", () => {
  it("gives the same answer on any hello, record split, truncation or changed byte", () => {
    fc.assert(
      fc.property(
        hello,
        fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 3 }),
        fc.option(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { nil: undefined }),
        fc.option(fc.nat(), { nil: undefined }),
        (hs, cuts, change, cut) => {
          let wire = records(hs, [...cuts].sort((a, b) => a - b));
          if (change) {
            wire = Buffer.from(wire);
            wire[change[0] % wire.length] = change[1];
          }
          if (cut !== undefined) wire = wire.subarray(0, cut % (wire.length + 1));
          expect(readClientHello(wire)).toEqual(referenceRead(wire));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
