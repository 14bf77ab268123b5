/**
 * Syslog over TLS framing (RFC 5425 / RFC 6587): octet counting
 * (`LEN SP MSG`) and, accepted as well, LF-terminated frames starting with
 * `<PRI>`. Hand-written because it is the per-byte hot path of the syslog
 * listener and must survive frames split across reads at any byte.
 */
export class FramingError extends Error {
  constructor(
    readonly code: "frame_too_large" | "bad_length" | "bad_frame",
    message: string,
  ) {
    super(message);
  }
}

const EMPTY = Buffer.alloc(0);

export class SyslogFramer {
  private buf: Buffer = EMPTY;

  constructor(private readonly maxFrame: number) {}

  /** Bytes held for an incomplete frame. */
  get pending(): number {
    return this.buf.length;
  }

  /**
   * Appends a chunk and returns the complete frames in it. Throws a
   * FramingError when the stream cannot be framed any more (the connection
   * must then be closed: there is no way to find the next frame).
   */
  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    if (this.buf.length === 0) return this.scan(chunk, 0, frames);
    // A frame the last read cut: joined with only the bytes of this chunk that finish it. Joining the
    // whole chunk copied every read (a read nearly always ends inside a frame) into a new buffer.
    const need = this.needed(chunk);
    if (need < 0 || need >= chunk.length) {
      const all = Buffer.concat([this.buf, chunk]);
      this.buf = EMPTY;
      return this.scan(all, 0, frames);
    }
    const head = Buffer.concat([this.buf, chunk.subarray(0, need)]);
    this.buf = EMPTY;
    this.scan(head, 0, frames);
    // the held bytes were one frame's start, so `head` is that frame exactly
    if (this.buf.length > 0) {
      const rest = Buffer.concat([this.buf, chunk.subarray(need)]);
      this.buf = EMPTY;
      return this.scan(rest, 0, frames);
    }
    return this.scan(chunk, need, frames);
  }

  /** Bytes of `chunk` that complete the held frame, or -1 when that is not known yet. */
  private needed(chunk: Buffer): number {
    const b = this.buf;
    const c = b[0]!;
    if (c >= 0x30 && c <= 0x39) {
      let len = 0;
      let i = 0;
      while (i < b.length && b[i]! >= 0x30 && b[i]! <= 0x39 && i < 10) len = len * 10 + (b[i++]! - 0x30);
      if (i >= b.length || b[i] !== 0x20) return -1; // the length is not complete (or not valid: scan says so)
      return i + 1 + len - b.length;
    }
    if (c === 0x3c) {
      const lf = chunk.indexOf(0x0a);
      return lf < 0 ? -1 : lf + 1;
    }
    return -1;
  }

  private scan(buf: Buffer, from: number, frames: Buffer[]): Buffer[] {
    let pos = from;
    const n = buf.length;
    while (pos < n) {
      const c = buf[pos]!;
      if (c >= 0x30 && c <= 0x39) {
        // octet counting: MSG-LEN is 1-9 digits without a leading zero, then SP
        let len = 0;
        let i = pos;
        while (i < n && buf[i]! >= 0x30 && buf[i]! <= 0x39) {
          len = len * 10 + (buf[i]! - 0x30);
          i++;
          if (i - pos > 9 || len > this.maxFrame) {
            throw new FramingError("frame_too_large", `frame length ${buf.subarray(pos, Math.min(i, pos + 12)).toString("latin1")}… exceeds the limit of ${this.maxFrame} bytes`);
          }
        }
        if (i === n) break; // length continues in the next read
        if (buf[i] !== 0x20) throw new FramingError("bad_length", `octet count must be digits then a space, got ${JSON.stringify(buf.subarray(pos, i + 1).toString("latin1"))}`);
        if (len === 0 || buf[pos] === 0x30) throw new FramingError("bad_length", `octet count ${buf.subarray(pos, i).toString("latin1")} is not a positive length`);
        const start = i + 1;
        if (start + len > n) break;
        frames.push(buf.subarray(start, start + len));
        pos = start + len;
      } else if (c === 0x3c /* < */) {
        const end = buf.indexOf(0x0a, pos);
        if (end < 0) {
          if (n - pos > this.maxFrame) throw new FramingError("frame_too_large", `LF-framed message longer than the limit of ${this.maxFrame} bytes`);
          break;
        }
        if (end - pos > this.maxFrame) throw new FramingError("frame_too_large", `LF-framed message longer than the limit of ${this.maxFrame} bytes`);
        let stop = end;
        if (stop > pos && buf[stop - 1] === 0x0d) stop--;
        frames.push(buf.subarray(pos, stop));
        pos = end + 1;
      } else if (c === 0x0a || c === 0x0d || c === 0x20) {
        pos++; // stray separators between frames
      } else {
        throw new FramingError("bad_frame", `expected an octet count or <PRI>, got byte 0x${c.toString(16).padStart(2, "0")}`);
      }
    }
    // copy the tail so the big read buffer can be collected
    this.buf = pos >= n ? EMPTY : Buffer.from(buf.subarray(pos));
    return frames;
  }
}

export interface SyslogMessage {
  facility: number;
  severity: number;
  /** ISO time from the header, when it has one. */
  timestamp?: string;
  hostname?: string;
  app?: string;
  procid?: string;
  msgid?: string;
  /** RFC 5424 structured data as given (not interpreted). */
  sd?: string;
  msg: string;
}

const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };

const lastHeaderTime = { text: "", iso: "" };

/** RFC 5424, or RFC 3164 as best effort. Returns an error message for what is not syslog at all. */
export function parseSyslog(text: string): SyslogMessage | string {
  if (text.charCodeAt(0) !== 0x3c) return "message does not start with <PRI>";
  const close = text.indexOf(">", 1);
  if (close < 2 || close > 4) return "malformed <PRI>";
  const pri = Number(text.slice(1, close));
  if (!Number.isInteger(pri) || pri > 191) return `PRI ${text.slice(1, close)} is out of range`;
  const facility = pri >> 3;
  const severity = pri & 7;
  let p = close + 1;
  if (text.charCodeAt(p) === 0x31 /* 1 */ && text.charCodeAt(p + 1) === 0x20) {
    // RFC 5424: VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
    p += 2;
    const fields: string[] = [];
    for (let k = 0; k < 5; k++) {
      const sp = text.indexOf(" ", p);
      if (sp < 0) return "truncated RFC 5424 header";
      fields.push(text.slice(p, sp));
      p = sp + 1;
    }
    let sd: string | undefined;
    if (text.charCodeAt(p) === 0x2d /* - */) p += 1;
    else if (text.charCodeAt(p) === 0x5b /* [ */) {
      const start = p;
      while (text.charCodeAt(p) === 0x5b) {
        p++;
        let inQuote = false;
        for (; p < text.length; p++) {
          const ch = text.charCodeAt(p);
          if (ch === 0x5c /* \ */ && inQuote) p++;
          else if (ch === 0x22) inQuote = !inQuote;
          else if (ch === 0x5d && !inQuote) break;
        }
        if (p >= text.length) return "unterminated structured data";
        p++;
      }
      sd = text.slice(start, p);
    } else return "malformed structured data";
    let msg = text.charCodeAt(p) === 0x20 ? text.slice(p + 1) : text.slice(p);
    if (msg.charCodeAt(0) === 0xfeff) msg = msg.slice(1);
    const [ts, host, app, procid, msgid] = fields.map((f) => (f === "-" ? undefined : f));
    let timestamp: string | undefined;
    if (ts !== undefined) {
      if (ts === lastHeaderTime.text) timestamp = lastHeaderTime.iso;
      else {
        const t = Date.parse(ts);
        if (Number.isNaN(t)) return `bad RFC 5424 timestamp ${JSON.stringify(ts.slice(0, 40))}`;
        timestamp = new Date(t).toISOString();
        // a sender's frames in one read mostly share the header time (second or millisecond resolution)
        lastHeaderTime.text = ts;
        lastHeaderTime.iso = timestamp;
      }
    }
    return { facility, severity, timestamp, hostname: host, app, procid, msgid, sd, msg };
  }
  // RFC 3164 best effort: "Mmm dd hh:mm:ss HOST TAG[PID]: MSG"
  const rest = text.slice(p);
  const m = /^([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\S+) ([^:\[\s]+)(?:\[([^\]]*)\])?: ?/.exec(rest);
  if (!m || MONTHS[m[1]!] === undefined) return { facility, severity, msg: rest };
  const now = new Date();
  const d = new Date(Date.UTC(now.getUTCFullYear(), MONTHS[m[1]!]!, Number(m[2]!.trim()), Number(m[3]), Number(m[4]), Number(m[5])));
  // a date in the future by more than a day belongs to last year (December logs read in January)
  if (d.getTime() - now.getTime() > 86_400_000) d.setUTCFullYear(d.getUTCFullYear() - 1);
  return { facility, severity, timestamp: d.toISOString(), hostname: m[6], app: m[7], procid: m[8], msg: rest.slice(m[0].length) };
}

/**
 * The MSG part as an event object: a JSON object, or `key=value` pairs
 * (values may be "quoted"); anything else is plain text (undefined).
 */
export function messageObject(msg: string): Record<string, unknown> | string | undefined {
  const s = msg.trim();
  if (s.charCodeAt(0) === 0x7b /* { */) {
    try {
      const v = JSON.parse(s) as unknown;
      return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : "MSG is JSON but not an object";
    } catch (err) {
      return `MSG is not valid JSON: ${(err as Error).message}`;
    }
  }
  if (s.indexOf("=") < 1) return undefined;
  const out: Record<string, unknown> = {};
  const re = /\s*([A-Za-z_][\w.-]*)=("((?:[^"\\]|\\.)*)"|\S*)/y;
  let pos = 0;
  let m: RegExpExecArray | null;
  while (pos < s.length) {
    re.lastIndex = pos;
    m = re.exec(s);
    if (!m) return undefined; // not key=value throughout: plain text
    out[m[1]!] = m[3] !== undefined ? m[3].replace(/\\(.)/g, "$1") : m[2];
    pos = re.lastIndex;
  }
  return out;
}
