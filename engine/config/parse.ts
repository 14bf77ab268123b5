import { isUtf8 } from "node:buffer";
import { LineCounter, isAlias, isMap, isNode, isPair, isScalar, isSeq, parseAllDocuments, visit } from "yaml";
import type { Document, Node as YamlNode } from "yaml";
import { MAX_FILE_BYTES, placementOf } from "./kinds.js";
import type { SnapshotFile } from "./snapshot.js";
import { parseFast } from "./yaml-fast.js";
import type { Diagnostic, Kind, Position } from "./types.js";

export type PathSegment = string | number;

/** Finds where a value of the file sits, for positioned errors after parsing. */
export interface Locator {
  /** The value at `path`, or the closest enclosing node that exists. */
  value(path: readonly PathSegment[]): Position;
  /** The key of the last segment of `path` (falls back to the value). */
  key(path: readonly PathSegment[]): Position;
}

export interface ParsedFile {
  path: string;
  kind: Kind;
  /** The file name's stem, which the object's `id` must equal. */
  stem: string;
  value: unknown;
  positions: PositionTable;
  at: Locator;
}

export type ParseResult = { ok: true; file: ParsedFile } | { ok: false; errors: Diagnostic[] };

/**
 * Parses one config file with YAML 1.2's core schema and keeps every node's
 * position. Refuses what makes review unreliable or parsing expensive: more than
 * one document, anchors and aliases (a reviewer must see each object as it
 * applies, and aliases are how YAML bombs are built), duplicate keys, explicit
 * tags, non-UTF-8 bytes and files over 1 MiB.
 */
export function parseFile(file: SnapshotFile): ParseResult {
  return parseFileWith(file, true)!;
}

/**
 * The same as parseFile when the fast parser reads the file (or a check before
 * YAML refuses it); null when only the yaml package can, so a caller can send
 * those files to worker threads.
 */
export function parseFileFast(file: SnapshotFile): ParseResult | null {
  return parseFileWith(file, false);
}

function parseFileWith(file: SnapshotFile, fallback: boolean): ParseResult | null {
  const placement = placementOf(file.path);
  const at1 = (message: string, line = 1, col = 1): ParseResult => ({
    ok: false,
    errors: [{ file: file.path, line, col, message }],
  });
  if (placement === null) return at1("not a YAML config file");
  if ("error" in placement) return at1(placement.error);
  if (file.bytes === null || file.size > MAX_FILE_BYTES) {
    return at1(`file is ${(file.size / 1048576).toFixed(1)} MiB; config files are limited to 1 MiB`);
  }
  const { kind, id: stem } = placement;
  const diag = (pos: { line: number; col: number }, message: string): Diagnostic => ({
    file: file.path,
    line: pos.line,
    col: pos.col,
    message,
    kind,
    id: stem,
  });

  // The native check answers for valid files; the hand-written one finds where an invalid one breaks.
  const bad = isUtf8(file.bytes) ? -1 : firstInvalidUtf8(file.bytes);
  if (bad >= 0) {
    const pos = lineColOfByte(file.bytes, bad);
    return { ok: false, errors: [diag(pos, `invalid UTF-8 at byte ${bad}: config files must be UTF-8 text`)] };
  }
  let text = file.bytes.toString("utf8");
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === "") return { ok: false, errors: [diag({ line: 1, col: 1 }, "file is empty; it must hold one object")] };

  const parsed = parseFast(text) ?? (fallback ? parseWithYaml(text) : null);
  if (parsed === null) return null;
  if ("errors" in parsed) return { ok: false, errors: parsed.errors.map((e) => diag(e, e.message)) };
  const { value, positions } = parsed;
  return { ok: true, file: { path: file.path, kind, stem, value, positions, at: locatorOf(file.path, positions) } };
}

/** An error of the text alone: the caller adds the file, kind and id. */
export interface TextError {
  line: number;
  col: number;
  message: string;
}

/**
 * The reference parse with the yaml package: the value, the position table,
 * or the first error. parseFast gives the same result faster for the files it
 * accepts.
 */
export function parseWithYaml(text: string): { value: Record<string, unknown>; positions: PositionTable } | { errors: TextError[] } {
  const at = (p: { line: number; col: number }, message: string): TextError => ({ line: p.line, col: p.col, message });
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, {
    lineCounter: lc,
    schema: "core",
    merge: false,
    uniqueKeys: true,
    prettyErrors: true,
    strict: true,
  });
  const pos = (offset: number) => lc.linePos(offset);
  if (!Array.isArray(docs)) {
    return { errors: [at({ line: 1, col: 1 }, "file holds no YAML document; it must hold one object")] };
  }
  const errors: TextError[] = [];
  if (docs.length > 1) {
    const second = docs[1]!;
    const start = second.range?.[0] ?? 0;
    errors.push(at(pos(start), "a second YAML document (---): a config file holds exactly one object"));
  }
  const doc = docs[0]!;
  for (const e of [...doc.errors, ...doc.warnings]) {
    const lp = e.linePos?.[0] ?? pos(e.pos[0]);
    errors.push(at(lp, yamlMessage(e.code, e.message)));
  }
  // One clear error per malformed file: after the first, YAML errors are mostly echoes of it.
  if (errors.length > 0) return { errors: [first(errors)] };

  visit(doc, {
    Node(_key, node) {
      const n = node as YamlNode & { anchor?: string; tag?: string; range?: [number, number, number] };
      if (isAlias(node)) {
        errors.push(at(pos(n.range?.[0] ?? 0), `alias *${node.source} is not allowed: anchors and aliases hide what a reviewer approves; write the value out`));
      } else if (n.anchor) {
        errors.push(at(pos(n.range?.[0] ?? 0), `anchor &${n.anchor} is not allowed: anchors and aliases hide what a reviewer approves; write the value out`));
      }
      if (n.tag && !isScalar(node)) {
        errors.push(at(pos(n.range?.[0] ?? 0), `tag ${n.tag} is not allowed in config files`));
      } else if (isScalar(node) && n.tag && !/^tag:yaml\.org,2002:(str|int|float|bool|null)$/.test(n.tag)) {
        errors.push(at(pos(n.range?.[0] ?? 0), `tag ${n.tag} is not allowed in config files`));
      }
    },
    Pair(_key, pair) {
      if (pair.key !== null && !isScalar(pair.key)) {
        const r = (pair.key as { range?: [number, number, number] }).range;
        errors.push(at(pos(r?.[0] ?? 0), "keys must be plain strings, not collections"));
      }
    },
  });
  if (errors.length > 0) return { errors: [first(errors)] };

  if (!isMap(doc.contents)) {
    const r = (doc.contents as { range?: [number, number, number] } | null)?.range;
    return { errors: [at(pos(r?.[0] ?? 0), "the file must hold a mapping (key: value lines) at the top level")] };
  }
  return { value: doc.toJS({ maxAliasCount: 0 }) as Record<string, unknown>, positions: positionTable(doc, pos) };
}

function yamlMessage(code: string, message: string): string {
  const first = message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
  if (code === "DUPLICATE_KEY") return "duplicate key: each key may appear once in a mapping";
  if (code === "TAG_RESOLVE_FAILED") return `${first.replace(/^Unresolved tag: /, "tag ")} is not allowed in config files`;
  return first.charAt(0).toLowerCase() + first.slice(1);
}

/**
 * Every node's position, keyed by its path: [valueLine, valueCol, keyLine, keyCol].
 * A plain table (not the yaml Document) so a parse can cross a worker boundary.
 */
export type PositionTable = Record<string, [number, number, number, number]>;

const SEP = "\u0000";

function positionTable(doc: Document, pos: (o: number) => { line: number; col: number }): PositionTable {
  const table: PositionTable = {};
  const at = (n: unknown) => pos((n as { range?: [number, number, number] } | null)?.range?.[0] ?? 0);
  const put = (path: string, valueNode: unknown, keyNode: unknown) => {
    const v = at(valueNode);
    const k = at(keyNode);
    table[path] = [v.line, v.col, k.line, k.col];
  };
  const walk = (node: unknown, path: string) => {
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair) || !isScalar(pair.key)) continue;
        const p = path === "" ? String(pair.key.value) : path + SEP + String(pair.key.value);
        const value = isNode(pair.value) ? pair.value : pair.key;
        put(p, value, pair.key);
        walk(pair.value, p);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const p = path === "" ? String(i) : path + SEP + i;
        put(p, item, item);
        walk(item, p);
      });
    }
  };
  put("", doc.contents, doc.contents);
  walk(doc.contents, "");
  return table;
}

/** The Locator over a position table: the closest enclosing node that exists answers. */
export function locatorOf(file: string, table: PositionTable): Locator {
  const find = (path: readonly PathSegment[]) => {
    for (let n = path.length; n >= 0; n--) {
      const hit = table[path.slice(0, n).map(String).join(SEP)];
      if (hit) return hit;
    }
    return [1, 1, 1, 1] as const;
  };
  return {
    value: (path) => {
      const [line, col] = find(path);
      return { file, line, col };
    },
    key: (path) => {
      const [, , line, col] = find(path);
      return { file, line, col };
    },
  };
}

/**
 * Byte offset of the first invalid UTF-8 sequence, or -1. Written by hand
 * because TextDecoder reports only that the input is invalid, not where, and
 * the error must name the line.
 */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else return i;
    if (i + need >= n) return i;
    let cp = c & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const cc = b[i + k];
      if (cc === undefined || (cc & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

function lineColOfByte(b: Uint8Array, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset; i++) {
    if (b[i] === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  const col = Buffer.from(b.subarray(lineStart, offset)).toString("utf8").length + 1;
  return { line, col };
}

function first<E extends { line: number; col: number }>(errors: E[]): E {
  return errors.reduce((a, b) => (b.line < a.line || (b.line === a.line && b.col < a.col) ? b : a));
}
