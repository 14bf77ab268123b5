/**
 * Canonical JSON (RFC 8785, JCS): object keys sorted by UTF-16 code units, no
 * insignificant whitespace, numbers and strings as ECMAScript serializes them.
 * Digests of config revisions and sealed events are taken over this form, so it
 * must never change. Written by hand because it is a few lines on a hot path
 * (the sealer) and the packages that do it add nothing.
 */
export function canonicalJson(value: unknown): string {
  return isFlat(value) ? JSON.stringify(value, Object.keys(value).sort()) : canonicalWalk(value);
}

/**
 * An object whose values are all strings, finite numbers, booleans, null or
 * undefined: the usual event. For it, JSON.stringify with the sorted key list
 * as its replacer writes exactly the RFC 8785 form (the same number and string
 * serialization, keys in UTF-16 order, undefined left out) about 4x faster
 * than the walk; the journal and the sealer serialize every event.
 */
function isFlat(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  // only plain objects: a Date or a class with toJSON would serialize differently
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const k in value) {
    const v = (value as Record<string, unknown>)[k];
    const t = typeof v;
    if (t === "string" || t === "boolean" || v === null || v === undefined) continue;
    if (t !== "number" || !Number.isFinite(v)) return false;
  }
  return true;
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
