import { hash } from "node:crypto";

/**
 * ClientHello reading for the audit: JA3 (the Salesforce fingerprint:
 * md5 of "version,ciphers,extensions,groups,point_formats", GREASE values
 * removed) and the versions the client offered. Hand-written because it runs
 * on the raw bytes of every connection before TLS takes them (the hot path)
 * and no maintained npm package parses a ClientHello from a Buffer.
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

/** Reassembles the handshake bytes of the leading handshake records (a hello may span records and TCP segments). */
export function readClientHello(buf: Buffer): HelloResult {
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
    return { state: "ok", hello: parseHello(hs.subarray(4, need)) };
  } catch {
    return { state: "bad" };
  }
}

function parseHello(b: Buffer): ClientHello {
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
  const ja3 = hash("md5", ja3Text, "hex");
  return { version, offered, ja3, ja3Text, ...(serverName !== undefined ? { serverName } : {}) };
}
