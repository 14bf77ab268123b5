import { Schema, isScalar } from "yaml";
import type { PositionTable } from "./parse.js";

/**
 * A fast parser for the YAML subset config files are written in. It exists
 * because the yaml package (tokens → CST → Document → JS, ~1–2 ms per rule
 * file) is most of the time of a cold load of a large repo; this one goes from
 * text to the JS value and the position table in one pass.
 *
 * It accepts only what it is sure to read exactly as the yaml path does (YAML
 * 1.2 core schema, same values, same node positions): block mappings and
 * sequences, one-line flow collections, one-line plain and quoted scalars,
 * `|`/`>` block scalars with clip or strip chomping, comments. For anything
 * else — anchors, aliases, tags, directives, several documents, tabs, CR line
 * ends, multi-line flow or plain scalars, duplicate keys, anything odd or
 * wrong — it returns null and the caller parses with the yaml package, so
 * every error message and position stays the yaml path's.
 * test/config/yaml-fast.test.ts checks both give identical results.
 */
export interface FastParse {
  value: Record<string, unknown>;
  positions: PositionTable;
}

const SEP = "\u0000";
const DECLINE = new Error("outside the fast subset");

const SPACE = 0x20;
const NL = 0x0a;
const HASH = 0x23;
const COLON = 0x3a;
const DASH = 0x2d;
const DQ = 0x22;
const SQ = 0x27;

/** Characters that may not start a plain scalar (YAML c-indicator), plus `-?:` which the callers handle. */
const NOT_PLAIN_START = new Set([..."-?:,[]{}#&*!|>'\"%@`"].map((c) => c.charCodeAt(0)));

// The core schema's scalar tags, in yaml's resolution order: the first default tag
// whose test matches resolves a plain scalar, else it is a string. Reusing them
// keeps the typing exactly the yaml path's ("yes" stays a string, 0x1F is 31…).
const CORE_TAGS = new Schema({ schema: "core" }).tags.filter(
  (t): t is typeof t & { test: RegExp; resolve: (s: string, onError: (m: string) => void, o: object) => unknown } =>
    t.default === true && !t.collection && t.test instanceof RegExp,
);
const RESOLVE_OPTIONS = { intAsBigInt: false };
/** What ends a plain scalar inside a flow collection (with `: ` and ` #`). */
const FLOW_END = new Set([SPACE, 0x2c, 0x5b, 0x5d, 0x7b, 0x7d]);

const plainCache = new Map<string, unknown>();

/** First characters of every core-schema scalar that is not a string (null, bool, int, float). */
const MAY_BE_TYPED = new Set([..."~nNtTfF0123456789+-."].map((c) => c.charCodeAt(0)));

function resolvePlain(s: string): unknown {
  if (s.length > 0 && !MAY_BE_TYPED.has(s.charCodeAt(0))) return s;
  const hit = plainCache.get(s);
  if (hit !== undefined || plainCache.has(s)) return hit;
  let value: unknown = s;
  for (const tag of CORE_TAGS) {
    if (!tag.test.test(s)) continue;
    let failed = false;
    const r = tag.resolve(s, () => (failed = true), RESOLVE_OPTIONS);
    if (failed) throw DECLINE;
    value = isScalar(r) ? r.value : r;
    break;
  }
  if (plainCache.size > 20_000) plainCache.clear();
  plainCache.set(s, value);
  return value;
}

const ESCAPES: Record<string, string> = {
  "0": "\0",
  a: "\x07",
  b: "\b",
  e: "\x1b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  N: "\u0085",
  _: "\u00a0",
  L: "\u2028",
  P: "\u2029",
  " ": " ",
  '"': '"',
  "/": "/",
  "\\": "\\",
};

/** Returns null when the text is outside the subset (the caller then uses the yaml package). */
export function parseFast(text: string): FastParse | null {
  // Whole-file refusals: cheaper to check once than on every line.
  if (text.length === 0 || text.charCodeAt(text.length - 1) !== NL) return null;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\ufeff\ud800-\udfff]/.test(text)) return null;
  try {
    return new FastParser(text).document();
  } catch {
    // DECLINE, or anything unforeseen (a stack overflow on absurd nesting): the yaml path answers.
    return null;
  }
}

class FastParser {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  /** Column of the first non-space character; -1 for blank and comment-only lines. */
  private readonly indents: number[] = [];
  private li = 0;
  readonly positions: PositionTable = {};

  constructor(private readonly t: string) {
    let start = 0;
    const n = t.length;
    while (start < n) {
      let end = t.indexOf("\n", start);
      if (end < 0) end = n;
      let p = start;
      while (p < end && t.charCodeAt(p) === SPACE) p++;
      if (p === start && p < end) {
        // Directives (%) and document markers (--- and ...) at a line start: several documents or a header.
        const c = t.charCodeAt(p);
        if (c === 0x25) throw DECLINE;
        if ((c === DASH || c === 0x2e) && t.startsWith(c === DASH ? "---" : "...", p) && (p + 3 === end || t.charCodeAt(p + 3) === SPACE)) throw DECLINE;
      }
      this.starts.push(start);
      this.ends.push(end);
      this.indents.push(p === end || t.charCodeAt(p) === HASH ? -1 : p - start);
      start = end + 1;
    }
  }

  document(): FastParse {
    const li = this.nextContent(0);
    if (li >= this.starts.length || this.indents[li] !== 0) throw DECLINE;
    const p = this.starts[li]!;
    if (this.keyEnd(p, this.ends[li]!) < 0) throw DECLINE;
    this.put("", li, p, li, p);
    const value = this.map(li, 0, "");
    if (this.nextContent(this.li) < this.starts.length) throw DECLINE;
    return { value, positions: this.positions };
  }

  private nextContent(li: number): number {
    while (li < this.indents.length && this.indents[li] === -1) li++;
    return li;
  }

  /**
   * Records a node's 1-based line and UTF-16 column, as yaml's LineCounter
   * reports them; the callers know the lines, so no offset search is needed.
   */
  private put(path: string, vLine: number, valueOffset: number, kLine: number, keyOffset: number): void {
    this.positions[path] = [vLine + 1, valueOffset - this.starts[vLine]! + 1, kLine + 1, keyOffset - this.starts[kLine]! + 1];
  }

  /**
   * Where the `:` of an implicit key starting at p sits, or -1 when the line
   * from p is not `key: …`. Only keys the subset reads back unchanged count.
   */
  private keyEnd(p: number, end: number): number {
    const t = this.t;
    const c = t.charCodeAt(p);
    let colon: number;
    if (c === DQ || c === SQ) {
      const close = this.quotedEnd(p, end);
      if (close < 0) return -1;
      colon = close;
      if (t.charCodeAt(colon) !== COLON) return -1;
    } else {
      if (NOT_PLAIN_START.has(c) || c === SPACE) return -1;
      colon = -1;
      for (let q = p + 1; q < end; q++) {
        const d = t.charCodeAt(q);
        if (d === COLON) {
          const e = q + 1 === end ? SPACE : t.charCodeAt(q + 1);
          if (e === SPACE) {
            colon = q;
            break;
          }
        } else if (d === HASH && t.charCodeAt(q - 1) === SPACE) return -1;
      }
      if (colon < 0) return -1;
      if (t.charCodeAt(colon - 1) === SPACE) throw DECLINE;
    }
    if (colon + 1 < end && t.charCodeAt(colon + 1) !== SPACE) return -1;
    if (colon - p > 1000) throw DECLINE;
    return colon;
  }

  /** Index just past the closing quote of a one-line quoted scalar at p, or -1. */
  private quotedEnd(p: number, end: number): number {
    const t = this.t;
    const q = t.charCodeAt(p);
    for (let i = p + 1; i < end; i++) {
      const c = t.charCodeAt(i);
      if (q === DQ && c === 0x5c) i++;
      else if (c === q) {
        if (q === SQ && t.charCodeAt(i + 1) === SQ) i++;
        else return i + 1;
      }
    }
    return -1;
  }

  private key(p: number, colon: number): string {
    const c = this.t.charCodeAt(p);
    const key = c === DQ || c === SQ ? this.quoted(p, colon) : resolvePlain(this.t.slice(p, colon));
    if (typeof key !== "string" || key === "" || key === "__proto__" || key === "<<") throw DECLINE;
    return key;
  }

  private quoted(p: number, close: number): string {
    const t = this.t;
    const body = t.slice(p + 1, close - 1);
    if (t.charCodeAt(p) === SQ) return body.includes("''") ? body.replaceAll("''", "'") : body;
    if (!body.includes("\\")) return body;
    let out = "";
    for (let i = 0; i < body.length; i++) {
      const ch = body[i]!;
      if (ch !== "\\") {
        out += ch;
        continue;
      }
      const next = body[++i];
      if (next === undefined) throw DECLINE;
      const simple = ESCAPES[next];
      if (simple !== undefined) {
        out += simple;
        continue;
      }
      const len = next === "x" ? 2 : next === "u" ? 4 : next === "U" ? 8 : 0;
      const hex = body.slice(i + 1, i + 1 + len);
      if (len === 0 || !/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) throw DECLINE;
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff) throw DECLINE;
      out += String.fromCodePoint(cp);
      i += len;
    }
    return out;
  }

  /** A block mapping whose first key starts at column `col` of line `li`. */
  private map(li: number, col: number, path: string): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    let p = this.starts[li]! + col;
    for (;;) {
      const end = this.ends[li]!;
      const colon = this.keyEnd(p, end);
      if (colon < 0) throw DECLINE;
      const key = this.key(p, colon);
      if (Object.hasOwn(out, key)) throw DECLINE;
      const kp = path === "" ? key : path + SEP + key;
      out[key] = this.value(li, col, colon + 1, kp, p, true);
      const next = this.nextContent(this.li);
      if (next >= this.starts.length) break;
      const ind = this.indents[next]!;
      if (ind < col) break;
      if (ind > col) throw DECLINE;
      li = next;
      p = this.starts[li]! + col;
      const c = this.t.charCodeAt(p);
      if (c === DASH && this.isDash(p, this.ends[li]!)) throw DECLINE;
    }
    return out;
  }

  private isDash(p: number, end: number): boolean {
    return this.t.charCodeAt(p) === DASH && (p + 1 === end || this.t.charCodeAt(p + 1) === SPACE);
  }

  /** A block sequence whose dashes sit at column `col`, the first on line `li`. */
  private seq(li: number, col: number, path: string): unknown[] {
    const out: unknown[] = [];
    for (;;) {
      const p = this.starts[li]! + col;
      const ip = path === "" ? String(out.length) : path + SEP + out.length;
      out.push(this.value(li, col, p + 1, ip, -1, false));
      const next = this.nextContent(this.li);
      if (next >= this.starts.length) break;
      const ind = this.indents[next]!;
      if (ind < col) break;
      if (ind > col) throw DECLINE;
      const q = this.starts[next]! + col;
      if (!this.isDash(q, this.ends[next]!)) break;
      li = next;
    }
    return out;
  }

  /**
   * The node after a `key:` (inMap) or a `-` on line li, from offset `from`;
   * `col` is the column of the enclosing collection. Records its position and
   * leaves this.li on the line after it.
   */
  private value(li: number, col: number, from: number, path: string, keyOffset: number, inMap: boolean): unknown {
    const t = this.t;
    const end = this.ends[li]!;
    let v = from;
    while (v < end && t.charCodeAt(v) === SPACE) v++;
    if (v === end || t.charCodeAt(v) === HASH) {
      if (v < end && v === from) throw DECLINE; // `key:#` is not a comment
      // The node starts on a later line, or it is null (positioned where the line's text ends).
      const next = this.nextContent(li + 1);
      if (next < this.starts.length) {
        const ind = this.indents[next]!;
        const q = this.starts[next]! + ind;
        const nend = this.ends[next]!;
        if (ind > col || (inMap && ind === col && this.isDash(q, nend))) {
          if (keyOffset < 0) this.put(path, next, q, next, q);
          else this.put(path, next, q, li, keyOffset);
          if (this.isDash(q, nend)) return this.seq(next, ind, path);
          if (this.keyEnd(q, nend) >= 0) return this.map(next, ind, path);
          throw DECLINE; // a scalar on its own line: rare, and may continue over lines
        }
      }
      this.put(path, li, v, li, keyOffset < 0 ? v : keyOffset);
      this.li = li + 1;
      return null;
    }
    this.put(path, li, v, li, keyOffset < 0 ? v : keyOffset);
    const c = t.charCodeAt(v);
    if (!inMap) {
      if (this.isDash(v, end)) throw DECLINE; // `- - x`
      if (this.keyEnd(v, end) >= 0) return this.map(li, v - this.starts[li]!, path);
    }
    let value: unknown;
    let after: number;
    if (c === 0x7c || c === 0x3e) return this.blockScalar(li, col, v);
    if (c === 0x5b || c === 0x7b) {
      this.li = li; // flow() records positions on this line
      const r = this.flow(v, end, path);
      value = r.value;
      after = r.end;
    } else if (c === DQ || c === SQ) {
      after = this.quotedEnd(v, end);
      if (after < 0) throw DECLINE;
      value = this.quoted(v, after);
    } else {
      if (NOT_PLAIN_START.has(c) && !((c === DASH || c === 0x3f || c === COLON) && v + 1 < end && t.charCodeAt(v + 1) !== SPACE)) {
        throw DECLINE;
      }
      let e = v + 1;
      for (; e < end; e++) {
        const d = t.charCodeAt(e);
        if (d === HASH && t.charCodeAt(e - 1) === SPACE) break;
        if (d === COLON && (e + 1 === end || t.charCodeAt(e + 1) === SPACE)) throw DECLINE;
      }
      let s = e;
      while (t.charCodeAt(s - 1) === SPACE) s--;
      value = resolvePlain(t.slice(v, s));
      after = s;
    }
    this.endOfLine(after, end);
    // Nothing may continue the value on a more indented line (a multi-line scalar, or an error).
    const next = this.nextContent(li + 1);
    if (next < this.starts.length && this.indents[next]! > col) throw DECLINE;
    this.li = li + 1;
    return value;
  }

  /** After a value only spaces and a comment (after a space) may follow. */
  private endOfLine(p: number, end: number): void {
    const t = this.t;
    const start = p;
    while (p < end && t.charCodeAt(p) === SPACE) p++;
    if (p === end) return;
    if (t.charCodeAt(p) !== HASH || p === start) throw DECLINE;
  }

  /** `|`, `|-`, `>` or `>-` at v; content lines are more indented than `col`. */
  private blockScalar(li: number, col: number, v: number): string {
    const t = this.t;
    const end = this.ends[li]!;
    const folded = t.charCodeAt(v) === 0x3e;
    let p = v + 1;
    const strip = t.charCodeAt(p) === DASH;
    if (strip) p++;
    while (p < end && t.charCodeAt(p) === SPACE) p++;
    if (p !== end) throw DECLINE;
    const lines: string[] = [];
    let indent = -1;
    let i = li + 1;
    let lastContent = -1;
    for (; i < this.starts.length; i++) {
      const s = this.starts[i]!;
      const e = this.ends[i]!;
      let q = s;
      while (q < e && t.charCodeAt(q) === SPACE) q++;
      if (q === e) {
        if (indent < 0 || e - s > indent) throw DECLINE; // leading blank lines, or spaces past the indentation
        lines.push("");
        continue;
      }
      const ind = q - s;
      if (indent < 0) {
        if (ind <= col) throw DECLINE; // empty block scalar
        indent = ind;
      } else if (ind < indent) break;
      if (folded && ind > indent) throw DECLINE; // more-indented lines keep their breaks: not in the subset
      lines.push(t.slice(s + indent, e));
      lastContent = lines.length;
    }
    if (lastContent < 0) throw DECLINE;
    if (i < this.starts.length && this.nextContent(i) < this.starts.length && this.indents[this.nextContent(i)]! > col) throw DECLINE;
    const body = lines.slice(0, lastContent);
    let text: string;
    if (!folded) text = body.join("\n");
    else {
      text = body[0]!;
      for (let k = 1; k < body.length; k++) {
        const line = body[k]!;
        if (line === "") text += "\n";
        else text += body[k - 1] === "" ? line : " " + line;
      }
    }
    this.li = i;
    return strip ? text : text + "\n";
  }

  /** A one-line flow collection at p; returns the value and the offset after it. */
  private flow(p: number, end: number, path: string): { value: unknown; end: number } {
    const t = this.t;
    const open = t.charCodeAt(p);
    const close = open === 0x5b ? 0x5d : 0x7d;
    const skip = (q: number) => {
      while (q < end && t.charCodeAt(q) === SPACE) q++;
      return q;
    };
    let q = skip(p + 1);
    if (t.charCodeAt(q) === close) return { value: open === 0x5b ? [] : {}, end: q + 1 };
    if (open === 0x5b) {
      const out: unknown[] = [];
      for (;;) {
        const ip = path === "" ? String(out.length) : path + SEP + out.length;
        this.put(ip, this.li, q, this.li, q);
        const r = this.flowItem(q, end, ip);
        out.push(r.value);
        q = skip(r.end);
        const c = t.charCodeAt(q);
        if (c === close) return { value: out, end: q + 1 };
        if (c !== 0x2c) throw DECLINE;
        q = skip(q + 1);
        if (q >= end || t.charCodeAt(q) === close) throw DECLINE;
      }
    }
    const out: Record<string, unknown> = {};
    for (;;) {
      const c = t.charCodeAt(q);
      let colon: number;
      if (c === DQ || c === SQ) {
        colon = this.quotedEnd(q, end);
        if (colon < 0) throw DECLINE;
      } else {
        if (NOT_PLAIN_START.has(c)) throw DECLINE;
        colon = q;
        while (colon < end) {
          const d = t.charCodeAt(colon);
          if (d === COLON || d === 0x2c || d === 0x5b || d === 0x5d || d === 0x7b || d === 0x7d || d === HASH || d === SPACE) break;
          colon++;
        }
      }
      if (t.charCodeAt(colon) !== COLON || t.charCodeAt(colon + 1) !== SPACE) throw DECLINE;
      const key = this.key(q, colon);
      if (Object.hasOwn(out, key)) throw DECLINE;
      const kp = path === "" ? key : path + SEP + key;
      const v = skip(colon + 1);
      const vc = t.charCodeAt(v);
      if (v >= end || vc === 0x2c || vc === close || vc === HASH) throw DECLINE;
      this.put(kp, this.li, v, this.li, q);
      const r = this.flowItem(v, end, kp);
      out[key] = r.value;
      q = skip(r.end);
      const d = t.charCodeAt(q);
      if (d === close) return { value: out, end: q + 1 };
      if (d !== 0x2c) throw DECLINE;
      q = skip(q + 1);
      if (q >= end || t.charCodeAt(q) === close) throw DECLINE;
    }
  }

  private flowItem(p: number, end: number, path: string): { value: unknown; end: number } {
    const t = this.t;
    const c = t.charCodeAt(p);
    if (c === 0x5b || c === 0x7b) return this.flow(p, end, path);
    if (c === DQ || c === SQ) {
      const e = this.quotedEnd(p, end);
      if (e < 0) throw DECLINE;
      const after = t.charCodeAt(e);
      if (after !== 0x2c && after !== 0x5d && after !== 0x7d && after !== SPACE) throw DECLINE;
      let q = e;
      while (q < end && t.charCodeAt(q) === SPACE) q++;
      if (t.charCodeAt(q) === COLON) throw DECLINE; // an implicit key inside a flow sequence
      return { value: this.quoted(p, e), end: e };
    }
    if (NOT_PLAIN_START.has(c) && !((c === DASH || c === 0x3f || c === COLON) && p + 1 < end && !FLOW_END.has(t.charCodeAt(p + 1)))) throw DECLINE;
    let e = p;
    while (e < end) {
      const d = t.charCodeAt(e);
      if (d === 0x2c || d === 0x5b || d === 0x5d || d === 0x7b || d === 0x7d) break;
      if (d === HASH && t.charCodeAt(e - 1) === SPACE) throw DECLINE;
      if (d === COLON) {
        // `::1/128` is one scalar; a `:` before a space or an indicator makes a key.
        const n = e + 1 < end ? t.charCodeAt(e + 1) : SPACE;
        if (n === SPACE || n === 0x2c || n === 0x5b || n === 0x5d || n === 0x7b || n === 0x7d) throw DECLINE;
      }
      e++;
    }
    if (e >= end) throw DECLINE;
    let s = e;
    while (t.charCodeAt(s - 1) === SPACE) s--;
    return { value: resolvePlain(t.slice(p, s)), end: s };
  }
}
