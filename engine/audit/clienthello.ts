import { hash } from "node:crypto";

/**
 * ClientHello reading for the audit: JA3 (the Salesforce fingerprint:
 * md5 of "version,ciphers,extensions,groups,point_formats", GREASE values
 * removed) and the versions the client offered. Hand-written because it runs
 * on the raw bytes of every connection before TLS takes them (the hot path)
 * and no maintained npm package parses a ClientHello from a Buffer. It reads
 * the hello in place (no copy of the bytes, no intermediate arrays: the JA3
 * lists are written straight into their string) when one record holds it,
 * which is how every TLS stack sends it; a hello split over records is
 * reassembled first.
 */

export interface ClientHello {
  /** legacy_version of the ClientHello (0x0303 for TLS 1.2 and 1.3). */
  version: number;
  /** The versions offered: supported_versions if present, else legacy_version. */
  offered: number[];
  ja3: string;
  ja3Text: string;
  serverName?: string;
}

/** Need more bytes, not TLS at all, or a parsed hello. */
export type HelloResult = { state: "more" } | { state: "not-tls" } | { state: "ok"; hello: ClientHello } | { state: "bad" };

const MAX_HELLO = 64 * 1024;
// The answers without a hello are shared: the peek asks once per TCP segment.
const MORE: HelloResult = Object.freeze({ state: "more" });
const NOT_TLS: HelloResult = Object.freeze({ state: "not-tls" });
const BAD: HelloResult = Object.freeze({ state: "bad" });

const isGrease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);

export function versionName(v: number): string {
  switch (v) {
    case 0x0304: return "TLSv1.3";
    case 0x0303: return "TLSv1.2";
    case 0x0302: return "TLSv1.1";
    case 0x0301: return "TLSv1";
    case 0x0300: return "SSLv3";
    default: return `0x${v.toString(16).padStart(4, "0")}`;
  }
}

/** The handshake bytes of the leading handshake records (a hello may span records and TCP segments). */
export function readClientHello(buf: Buffer): HelloResult {
  if (buf.length < 1) return MORE;
  if (buf[0] !== 0x16) return NOT_TLS;
  if (buf.length >= 9) {
    // One record holding the whole ClientHello (the usual case): parsed where it lies.
    const len = (buf[3]! << 8) | buf[4]!;
    if (len >= 4 && buf.length >= 5 + len) {
      if (buf[5] !== 0x01) return BAD;
      const need = 4 + ((buf[6]! << 16) | (buf[7]! << 8) | buf[8]!);
      if (need > MAX_HELLO) return BAD;
      if (need <= len) return parsed(buf, 9, 5 + need);
    }
  }
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  while (need < 0 || have < need) {
    if (buf.length < off + 5) return buf.length > MAX_HELLO ? BAD : MORE;
    if (buf[off] !== 0x16) return BAD;
    const len = buf.readUInt16BE(off + 3);
    if (buf.length < off + 5 + len) return off + 5 + len > MAX_HELLO ? BAD : MORE;
    parts.push(buf.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need < 0 && have >= 4) {
      const hs = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (hs[0] !== 0x01) return BAD;
      need = 4 + hs.readUIntBE(1, 3);
      if (need > MAX_HELLO) return BAD;
    }
  }
  const hs = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return parsed(hs, 4, need);
}

function parsed(b: Buffer, start: number, end: number): HelloResult {
  const hello = parseHello(b, start, end);
  return hello ? { state: "ok", hello } : BAD;
}

/**
 * The JA3 text is written as latin1 digits into this buffer (grown on demand),
 * so the md5 reads it where it was written and the only strings made are the
 * JA3 text and its hash. Three regions: the text itself, then the groups and
 * the point formats, which are read with the extension list but come after it
 * in the text (each region holds at most 4 characters per byte of the hello).
 */
let scratch = Buffer.allocUnsafe(3 * 1024);

/** Writes a list item (0-65535 in decimal, after a dash unless it is the list's first, at `from`) at `at`; returns the end. */
function item(t: Buffer, from: number, at: number, v: number): number {
  if (at > from) t[at++] = 45;
  if (v >= 10000) t[at++] = 48 + ((v / 10000) | 0);
  if (v >= 1000) t[at++] = 48 + (((v / 1000) | 0) % 10);
  if (v >= 100) t[at++] = 48 + (((v / 100) | 0) % 10);
  if (v >= 10) t[at++] = 48 + (((v / 10) | 0) % 10);
  t[at++] = 48 + (v % 10);
  return at;
}

/** The ClientHello body b[start, end); undefined when it is truncated. */
function parseHello(b: Buffer, start: number, end: number): ClientHello | undefined {
  const u16 = (i: number): number => (b[i]! << 8) | b[i + 1]!;
  let p = start;
  if (p + 35 > end) return undefined;
  const region = 4 * (end - start) + 16;
  if (scratch.length < 3 * region) scratch = Buffer.allocUnsafe(3 * region);
  const t = scratch;
  const version = u16(p);
  let n = item(t, 0, 0, version);
  t[n++] = 44;
  p += 34;
  p += 1 + b[p]!; // session id
  if (p + 2 > end) return undefined;
  const cipherLen = u16(p);
  p += 2;
  if (p + cipherLen > end) return undefined;
  let from = n;
  for (let i = p; i + 1 < p + cipherLen; i += 2) {
    const c = u16(i);
    if (!isGrease(c)) n = item(t, from, n, c);
  }
  p += cipherLen;
  if (p + 1 > end) return undefined;
  p += 1 + b[p]!; // compression methods
  t[n++] = 44;
  from = n;
  let g = region;
  let f = 2 * region;
  let offered: number[] | undefined;
  let serverName: string | undefined;
  if (p + 2 <= end) {
    const extEnd = Math.min(end, p + 2 + u16(p));
    p += 2;
    while (p + 4 <= extEnd) {
      const type = u16(p);
      // an extension's data is cut at the end of the hello, not of the extension list
      const d = p + 4;
      const dEnd = Math.min(end, d + u16(p + 2));
      p = d + u16(p + 2);
      if (isGrease(type)) continue;
      n = item(t, from, n, type);
      const dLen = dEnd - d;
      if (type === 10 && dLen >= 2) {
        const stop = Math.min(dEnd, d + 2 + u16(d));
        for (let i = d + 2; i + 1 < stop; i += 2) {
          const v = u16(i);
          if (!isGrease(v)) g = item(t, region, g, v);
        }
      } else if (type === 11 && dLen >= 1) {
        const stop = Math.min(dEnd, d + 1 + b[d]!);
        for (let i = d + 1; i < stop; i++) f = item(t, 2 * region, f, b[i]!);
      } else if (type === 43 && dLen >= 1) {
        const stop = Math.min(dEnd, d + 1 + b[d]!);
        for (let i = d + 1; i + 1 < stop; i += 2) {
          const v = u16(i);
          if (!isGrease(v)) (offered ??= []).push(v);
        }
      } else if (type === 0 && dLen >= 5 && b[d + 2] === 0) {
        serverName = b.toString("latin1", d + 5, Math.min(dEnd, d + 5 + u16(d + 3)));
      }
    }
  }
  t[n++] = 44;
  n += t.copy(t, n, region, g);
  t[n++] = 44;
  n += t.copy(t, n, 2 * region, f);
  const text = t.subarray(0, n);
  const hello: ClientHello = { version, offered: offered ?? [version], ja3: hash("md5", text, "hex"), ja3Text: text.toString("latin1") };
  if (serverName !== undefined) hello.serverName = serverName;
  return hello;
}
