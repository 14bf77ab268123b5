import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { FramingError, messageObject, parseSyslog, SyslogFramer } from "../../../engine/siem/index.js";

describe("syslog framing (RFC 5425 octet counting, LF accepted)", () => {
  it("reassembles frames however the stream is cut", () => {
    const msgs = ["<13>1 - - - - - - a", "<13>1 - - - - - - bé ü", "<14>Nov 22 10:00:00 host app: c"];
    const stream = Buffer.concat(msgs.map((m, i) => (i === 2 ? Buffer.from(m + "\n") : Buffer.from(`${Buffer.byteLength(m)} ${m}`))));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 8 }), (cuts) => {
        const f = new SyslogFramer(1024);
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const out: string[] = [];
        let prev = 0;
        for (const p of [...points, stream.length]) {
          out.push(...f.push(stream.subarray(prev, p)).map((b) => b.toString()));
          prev = p;
        }
        expect(out).toEqual(msgs);
        expect(f.pending).toBe(0);
      }),
    );
  });

  it("gives the same frames, errors included, for any stream cut into any reads as for the stream in one read", () => {
    const frame = fc.oneof(
      fc.string({ unit: fc.constantFrom("a", "é", " ", "1", "<", "\n", "😀"), maxLength: 300 }).map((m) => { const b = Buffer.from(`<13>1 - - - - - - ${m}`); return Buffer.concat([Buffer.from(`${b.length} `), b]); }),
      fc.string({ unit: fc.constantFrom("a", "é", " ", "1", "<"), maxLength: 300 }).map((m) => Buffer.from(`<14>${m}${m.length % 2 ? "\r" : ""}\n`)),
      fc.constantFrom(Buffer.from("\n"), Buffer.from("0 x"), Buffer.from("12x"), Buffer.from([0xff]), Buffer.from("999999 <13>")),
    );
    const run = (stream: Buffer, cuts: number[]) => {
      const f = new SyslogFramer(400);
      const out: string[] = [];
      let prev = 0;
      try {
        for (const p of [...cuts, stream.length]) {
          out.push(...f.push(stream.subarray(prev, p)).map((b) => b.toString("latin1")));
          prev = p;
        }
      } catch (e) {
        out.push(`error ${(e as FramingError).code}`);
        return out;
      }
      out.push(`pending ${f.pending}`);
      return out;
    };
    fc.assert(
      fc.property(fc.array(frame, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 40 }), (frames, raw) => {
        const stream = Buffer.concat(frames);
        const cuts = [...new Set(raw.map((x) => x % (stream.length + 1)))].sort((a, b) => a - b);
        const whole = run(stream, []);
        const cut = run(stream, cuts);
        if (!whole[whole.length - 1]!.startsWith("error")) expect(cut).toEqual(whole);
        // with an error, one read loses its frames with the connection; cut reads gave theirs before it
        else expect(cut[cut.length - 1]).toBe(whole[whole.length - 1]);
      }),
      { numRuns: 1000 },
    );
  });

  it("refuses oversized frames, bad lengths and garbage with a named reason", () => {
    const err = (input: string | Buffer, max = 100) => {
      try {
        new SyslogFramer(max).push(Buffer.from(input));
      } catch (e) {
        return e as FramingError;
      }
      return undefined;
    };
    expect(err("101 <13>...")).toMatchObject({ code: "frame_too_large" });
    expect(err("99999999999")).toMatchObject({ code: "frame_too_large" });
    expect(err("12x <13>")).toMatchObject({ code: "bad_length" });
    expect(err("0 <13>")).toMatchObject({ code: "bad_length" });
    expect(err(Buffer.from([0xff, 0x00]))).toMatchObject({ code: "bad_frame", message: expect.stringContaining("0xff") });
    expect(err("<13>" + "x".repeat(200))).toMatchObject({ code: "frame_too_large" });
    expect(err("5 <13>")).toBeUndefined(); // incomplete, waits for more
  });
});

describe("syslog message parsing", () => {
  it("RFC 5424 with structured data and BOM", () => {
    const m = parseSyslog('<165>1 2026-11-22T10:00:00.123+01:00 gw1.example vpn 42 ID7 [ex@1 a="x\\]y" b="2"][ex@2 c="3"] \ufeff{"action":"login"}');
    expect(m).toMatchObject({ facility: 20, severity: 5, timestamp: "2026-11-22T09:00:00.123Z", hostname: "gw1.example", app: "vpn", procid: "42", msgid: "ID7", sd: '[ex@1 a="x\\]y" b="2"][ex@2 c="3"]', msg: '{"action":"login"}' });
    expect(parseSyslog("<13>1 - - - - -")).toBe("truncated RFC 5424 header");
    expect(parseSyslog("<13>1 bogus-time h a - - - x")).toMatch(/bad RFC 5424 timestamp/);
    expect(parseSyslog("<999>1 - - - - - - x")).toMatch(/out of range/);
    expect(parseSyslog("no pri")).toMatch(/<PRI>/);
  });

  it("RFC 3164 best effort", () => {
    const m = parseSyslog("<38>Nov  2 03:04:05 gw2 sshd[991]: Accepted publickey") as Exclude<ReturnType<typeof parseSyslog>, string>;
    expect(m).toMatchObject({ facility: 4, severity: 6, hostname: "gw2", app: "sshd", procid: "991", msg: "Accepted publickey" });
    expect(m.timestamp).toMatch(/-11-02T03:04:05\.000Z$/);
    expect(parseSyslog("<13>free text")).toEqual({ facility: 1, severity: 5, msg: "free text" });
  });

  it("MSG as JSON object or key=value; otherwise plain text", () => {
    expect(messageObject(' {"a":1} \n')).toEqual({ a: 1 });
    expect(messageObject("[1]")).toBeUndefined();
    expect(messageObject("{oops")).toMatch(/not valid JSON/);
    expect(messageObject('action=login user_id=u1 error_msg="bad \\"otp\\"" rc=3')).toEqual({ action: "login", user_id: "u1", error_msg: 'bad "otp"', rc: "3" });
    expect(messageObject("user u1 logged in")).toBeUndefined();
    expect(messageObject("a=1 then text")).toBeUndefined();
  });
});
