import { describe, expect, it } from "vitest";
import type { PinSetDoc } from "../../engine/config/index.js";
import {
  acceptedPins,
  checkIssuance,
  checkPinSetRevision,
  checkProfileIssuance,
  issuablePins,
  pinRetired,
  pinRetiredFrom,
} from "../../engine/pki/pins/index.js";
import { pinRetiredFrom as detectRetiredFrom } from "../../engine/siem/detect/compile.js";

// The default gateway set's pins (pins/gateway.yaml) plus a next backup.
const A = "OwBrGMlpxCGg058WxNYnpfVDIR4IeBhwzS0tkXB/KMY="; // primary 2026a
const B = "RqKLJuEe0msolyS8tLNrgkgKmjyrpWmLwNfqMbo/mQ8="; // backup 2026b
const R = "MOkuFyV2TZJ1cLsdzcbPVRpjYVg8Lb/+LO/qc2dmfto="; // retired 2025
const C = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; // next backup 2027
const X = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="; // not in the set

const retiredR = { sha256: R, role: "retired" as const, label: "gateway key 2025", retired_at: "2026-05-01" };
function set(phase: PinSetDoc["roll"]["phase"], pins: PinSetDoc["pins"], roll: Partial<PinSetDoc["roll"]> = {}): PinSetDoc {
  return { id: "gateway", profile: "tls-gateway", hosts: ["gw.viworks.example"], pins, roll: { phase, since: "2026-11-01", window: "30d", adoption_threshold: 0.95, ...roll } };
}
const basePins: PinSetDoc["pins"] = [
  { sha256: A, role: "primary", label: "gateway key 2026a" },
  { sha256: B, role: "backup", label: "gateway key 2026b" },
  retiredR,
];

const stable = set("stable", basePins);
const deployed = set("backup-deployed", basePins, { since: "2026-11-10" });
const cutover = set("cutover", basePins, { since: "2026-12-01", to: B });
// The retired phase as the pull request after cutover writes it: A retired, B promoted, C the next backup.
const retired = set(
  "retired",
  [
    { sha256: A, role: "retired", label: "gateway key 2026a", retired_at: "2026-12-31" },
    { sha256: B, role: "primary", label: "gateway key 2026b" },
    { sha256: C, role: "backup", label: "gateway key 2027" },
    retiredR,
  ],
  { since: "2026-12-31" },
);
// The same phase written without re-labelling the roles (roll.to still names B).
const retiredByPhase = set("retired", [...basePins, { sha256: C, role: "backup" }], { since: "2026-12-31", to: B });

describe("pin-roll state machine", () => {
  const rows: { name: string; set: PinSetDoc; issuable: string[]; accepted: [string, string[]][] }[] = [
    { name: "stable", set: stable, issuable: [A], accepted: [["2026-04-30T23:59:59Z", [A, B, R]], ["2026-11-23T10:00:00Z", [A, B]]] },
    { name: "backup-deployed", set: deployed, issuable: [A], accepted: [["2026-11-23T10:00:00Z", [A, B]]] },
    {
      name: "cutover (window 30d from 2026-12-01)",
      set: cutover,
      issuable: [B],
      accepted: [["2026-12-15T00:00:00Z", [A, B]], ["2026-12-30T23:59:59Z", [A, B]], ["2026-12-31T00:00:00Z", [B]], ["2027-02-01T00:00:00Z", [B]]],
    },
    { name: "retired (roles rewritten)", set: retired, issuable: [B], accepted: [["2026-12-30T00:00:00Z", [A, B, C]], ["2027-01-10T00:00:00Z", [B, C]]] },
    { name: "retired (roll.to kept)", set: retiredByPhase, issuable: [B], accepted: [["2026-12-30T00:00:00Z", [A, B, C]], ["2027-01-10T00:00:00Z", [B, C]]] },
  ];
  for (const row of rows) {
    it(`${row.name}: the CA certifies ${row.issuable.length} key, clients accept what the phase says`, () => {
      expect(issuablePins(row.set)).toEqual(row.issuable);
      for (const [at, pins] of row.accepted) expect(acceptedPins(row.set, at), at).toEqual(pins);
    });

    it(`${row.name}: "retired at T" agrees with the pin_retired detection operator`, () => {
      const theirs = detectRetiredFrom(row.set);
      for (const p of [...row.set.pins.map((x) => x.sha256), X]) {
        expect(pinRetiredFrom(row.set, p), p).toBe(theirs.get(p));
        for (const [at] of row.accepted) {
          const t = Date.parse(at);
          const from = theirs.get(p);
          expect(pinRetired(row.set, p, at), `${p} at ${at}`).toBe(from !== undefined && from !== Infinity && t >= from);
        }
      }
    });
  }

  it("a cutover without roll.to certifies nothing and says why", () => {
    const s = set("cutover", basePins);
    expect(issuablePins(s)).toEqual([]);
    expect(checkIssuance(s, A)?.message).toBe("pin set gateway is in phase cutover: no key may be certified (cutover without roll.to); this CSR's key is " + A + " (the primary key, gateway key 2026a)");
  });
});

describe("checkIssuance", () => {
  it("cutover: the old key is refused with the set, the phase and the accepted pin; the backup key is allowed", () => {
    expect(checkIssuance(cutover, B)).toBeNull();
    const r = checkIssuance(cutover, A);
    expect(r).toEqual({
      code: "pin_not_allowed",
      message: `pin set gateway is in phase cutover: only the backup key ${B} (gateway key 2026b) may be certified; this CSR's key is ${A} (the outgoing primary, gateway key 2026a); the set is rolling away from this key: renew with the backup key`,
    });
  });

  it("stable and backup-deployed: the backup key is refused until cutover", () => {
    for (const s of [stable, deployed]) {
      expect(checkIssuance(s, A)).toBeNull();
      const r = checkIssuance(s, B)!;
      expect(r.code).toBe("pin_not_allowed");
      expect(r.message).toBe(
        `pin set gateway is in phase ${s.roll.phase}: only the primary key ${A} (gateway key 2026a) may be certified; this CSR's key is ${B} (the backup key, gateway key 2026b); certify the backup key only after a pull request moves the set to cutover with roll.to: ${B}`,
      );
    }
  });

  it("a key outside the set and a retired key are refused in every phase", () => {
    for (const s of [stable, deployed, cutover, retired, retiredByPhase]) {
      expect(checkIssuance(s, X)!.message).toContain(`this CSR's key is ${X}, which is not in the pin set (pinned clients would reject it)`);
      expect(checkIssuance(s, R)!.message).toContain(`${R} (a retired pin, gateway key 2025)`);
    }
    expect(checkIssuance(retired, A)!.message).toMatch(/^pin set gateway is in phase retired: only the primary key RqKL.* may be certified; this CSR's key is OwBr.* \(a retired pin, gateway key 2026a\)$/);
  });

  it("checkProfileIssuance: unpinned profiles pass, pinned ones go through the set; DER SPKI is hashed", () => {
    const sets = new Map([["gateway", cutover]]);
    expect(checkProfileIssuance(sets, { id: "vpn-server" }, X)).toBeNull();
    expect(checkProfileIssuance(sets, { id: "tls-gateway", pin_set: "gateway" }, B)).toBeNull();
    expect(checkProfileIssuance(sets, { id: "tls-gateway", pin_set: "gateway" }, A)?.code).toBe("pin_not_allowed");
    expect(checkProfileIssuance(sets, { id: "tls-gateway", pin_set: "nope" }, A)).toEqual({ code: "pin_set_missing", message: "profile tls-gateway is bound to pin set nope, which this revision does not have" });
    // Arbitrary bytes hash to a pin outside the set.
    expect(checkProfileIssuance(sets, { id: "tls-gateway", pin_set: "gateway" }, new Uint8Array([1, 2, 3]))?.message).toContain("not in the pin set");
  });
});

describe("checkPinSetRevision (needs the previous revision)", () => {
  const withPins = (s: PinSetDoc, pins: PinSetDoc["pins"]): PinSetDoc => ({ ...s, pins });
  const cases: { name: string; prev: PinSetDoc; next: PinSetDoc; problems: [string, RegExp][] }[] = [
    { name: "stable -> backup-deployed", prev: stable, next: deployed, problems: [] },
    { name: "backup-deployed -> cutover to the deployed backup", prev: deployed, next: cutover, problems: [] },
    { name: "cutover -> retired", prev: cutover, next: retired, problems: [] },
    { name: "cutover -> retired (roll.to kept)", prev: cutover, next: retiredByPhase, problems: [] },
    { name: "cutover -> backup-deployed (rollback)", prev: cutover, next: deployed, problems: [] },
    { name: "retired -> stable (next roll prepared)", prev: retired, next: { ...retired, roll: { ...retired.roll, phase: "stable" } }, problems: [] },
    { name: "stable -> cutover skips a phase", prev: stable, next: cutover, problems: [["roll.phase", /^phase stable -> cutover skips backup-deployed: a pin roll advances one phase per pull request/]] },
    {
      name: "removing the live key's pin",
      prev: stable,
      next: withPins(stable, [{ sha256: B, role: "primary" }, { sha256: C, role: "backup" }, retiredR]),
      problems: [["pins", /^removes the live key's pin OwBr\S+ \(gateway key 2026a\), certified in phase stable: certificates in service carry this key/]],
    },
    {
      name: "retiring the live key's pin in place",
      prev: stable,
      next: withPins(stable, [{ ...basePins[0]!, role: "retired", retired_at: "2026-11-20" }, { sha256: B, role: "primary" }, { sha256: C, role: "backup" }, retiredR]),
      problems: [["pins.0.role", /^retires the live key's pin OwBr/]],
    },
    {
      name: "retiring the cutover target",
      prev: cutover,
      next: withPins(cutover, [basePins[0]!, { sha256: B, role: "retired", retired_at: "2026-12-02" }, { sha256: C, role: "backup" }, retiredR]),
      problems: [["pins.1.role", /^retires the live key's pin RqKL\S+ \(gateway key 2026b\), certified in phase cutover/]],
    },
    {
      name: "cutover to a backup added in the same change",
      prev: deployed,
      next: set("cutover", [basePins[0]!, basePins[1]!, { sha256: C, role: "backup" }, retiredR], { to: C }),
      problems: [["roll.to", new RegExp(`^cutover to ${C.replace(/[+/]/g, "\\$&")}, which was not a pin in the previous revision: clients cannot carry a backup added in the same change`)]],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = checkPinSetRevision(c.prev, c.next);
      expect(got.map((p) => p.path.join("."))).toEqual(c.problems.map(([path]) => path));
      got.forEach((p, i) => expect(p.message).toMatch(c.problems[i]![1]));
    });
  }
  it("a new or deleted pin set has nothing to compare", () => {
    expect(checkPinSetRevision(undefined, stable)).toEqual([]);
    expect(checkPinSetRevision(stable, undefined)).toEqual([]);
  });
});
