import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseWithYaml } from "../../engine/config/parse.js";
import { parseFast } from "../../engine/config/yaml-fast.js";
import { CONFIG_FOLDERS, ROOT } from "./helpers.js";

// The fast parser must give exactly what the yaml path gives (values, and the
// line/col of every node), or decline so that the yaml path answers.

function yamlFiles(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir)) {
    const f = join(dir, e);
    if (statSync(f).isDirectory()) yamlFiles(f, out);
    else if (/\.ya?ml$/.test(e)) out.push(f);
  }
  return out;
}

/** Returns whether the fast parser took the text; fails the test when it took it and differs. */
function agree(text: string): boolean {
  const fast = parseFast(text);
  if (fast === null) return false;
  const reference = parseWithYaml(text);
  expect(reference, "the fast parser accepted a text the yaml path rejects").not.toHaveProperty("errors");
  expect(fast.value).toStrictEqual((reference as { value: unknown }).value);
  expect(fast.positions).toStrictEqual((reference as { positions: unknown }).positions);
  return true;
}

describe("fast YAML parser", () => {
  it("reads every file of the default repo exactly as the yaml path does", () => {
    const files = CONFIG_FOLDERS.flatMap((f) => yamlFiles(join(ROOT, f)));
    expect(files.length).toBeGreaterThan(30);
    const declined = files.filter((f) => !agree(readFileSync(f, "utf8")));
    // The default content (and the generated bench repo, made of copies of it) stays on the fast path.
    expect(declined).toEqual([]);
  });

  it("reads the bench's generated variants of the default files exactly as the yaml path does", () => {
    // test/bench/config.bench.ts builds its repo from these files with these edits.
    const profile = readFileSync(join(ROOT, "profiles/tls-gateway.yaml"), "utf8");
    const pins = readFileSync(join(ROOT, "pins/gateway.yaml"), "utf8");
    const variants = [
      profile.replace("id: tls-gateway", "id: gen-profile-1").replace("pin_set: gateway", "pin_set: gen-pins-1"),
      profile.replace("id: tls-gateway", "id: gen-profile-200").replace(/^pin_set: .*$/m, ""),
      pins.replace("id: gateway", "id: gen-pins-1").replace("profile: tls-gateway", "profile: gen-profile-1"),
      ...["otp-credential-stuffing", "spa-without-tls", "ja3-not-allowlisted", "dos-handshake-burst", "tls-downgrade"].map((r, i) =>
        readFileSync(join(ROOT, `detections/${r}.yaml`), "utf8").replace(`id: ${r}`, `id: ${r}-${i}`).replace(/^title: .*$/m, `title: generated rule, edit ${i}`),
      ),
    ];
    for (const text of variants) expect(agree(text)).toBe(true);
  });

  it("agrees with the yaml path or declines on every fixture, and declines every broken YAML one", () => {
    const files = yamlFiles(join(ROOT, "test/fixtures"));
    expect(files.length).toBeGreaterThan(20);
    for (const f of files) {
      const text = readFileSync(f, "utf8");
      const took = agree(text);
      if ("errors" in parseWithYaml(text)) expect(took, f).toBe(false);
    }
  });

  it("declines what is outside the subset", () => {
    for (const text of [
      "a: &x 1\nb: *x\n", // anchors and aliases
      "a: !!str 1\n", // tags
      "---\na: 1\n", // document markers
      "a: 1\n---\nb: 2\n",
      "a: 1\na: 2\n", // duplicate key
      "a:\n\tb: 1\n", // tab
      "a: 1\r\nb: 2\r\n", // CR line ends
      "a: x\n  y\n", // multi-line plain scalar
      "a: [1,\n  2]\n", // multi-line flow
      "a: |+\n  x\n\n", // keep chomping
      "a: b: c\n", // error
      "- a\n", // not a mapping
      "a: 1", // no final newline
      "? a\n: b\n", // explicit key
      "1: a\n", // keys that are not strings
      "true: a\n",
      "a:\n  null: b\n",
      "a: {1: b}\n",
      "a: >\n  x\n    more indented\n", // folded with a more-indented line
    ]) {
      expect(parseFast(text), JSON.stringify(text)).toBeNull();
    }
  });

  it("agrees with the yaml path on edge cases of indentation, chomping, quoting and flow, or declines", () => {
    const cases = [
      "a:\n- |\n x\n", "a:\n  - |\n   x\n", "a:\n  b: |\n   x\n", "a: |\n x\n", "a:\n  - b: |\n     x\n", "a:\n  - b: |\n    x\n",
      "a: |-\n  x\n\n\nb: 1\n", "a: >\n  x\n\n  y\n\n", "a: |\n  x\n  \n  y\n", "a: |\n  # c\n  x\n", "a: |\n  x\n # c\nb: 1\n",
      "a: 'x''y'\n", 'a: "\\u00e9\\x41"\n', "a: x # c\n", "a: x#c\n", "a: [a, b] # c\n", "a: {b: c} # c\n", "a: 'x'#c\n",
      "a:\n- b\n- c\nd: e\n", "a:\n  -\n    b: 1\n", "a:\n  - # c\n    b: 1\n", "a: -\n", "a: ? x\n", "a: ?x\n", "a: :x\n",
      "a: [?x, :x, -x]\n", "a: [a:b]\n", "a: {b: a:b}\n", "a: {b: [c, d], e: {f: g}}\n", "a: []\nb: {}\n", "a: [ ]\n", "a: [a , b]\n",
      '"a b": 1\n', "'a': 1\n", "a b: 1\n", "é: 1\n", "a:   \n", "a:\n\n\nb: 1\n", "a:\n  b:\n  c: 2\n", "a: 0o17\nb: 0x1f\nc: 1_0\nd: +.5\ne: 1e+3\n",
    ];
    let took = 0;
    for (const text of cases) if (agree(text)) took++;
    // Four of them are YAML errors (declined); every other one is in the subset.
    expect(took).toBe(cases.length - 4);
  });

  it("types plain scalars with the YAML 1.2 core schema as the yaml package does", () => {
    const words = ["yes", "no", "on", "0x1F", "0o17", "017", "1e3", "-1E-3", "~", "null", "NULL", "Null", "-0", "+1", ".inf", "-.Inf", ".NaN", "1.", ".5", "true", "False", "TRUE", "2026-05-01", "10:00", "1_000", "0b11"];
    const text = words.map((w, i) => `k${i}: ${w}\n`).join("") + `list: [${words.join(", ")}]\n`;
    expect(agree(text)).toBe(true);
    const v = parseFast(text)!.value;
    expect(v.k0).toBe("yes");
    expect(v.k3).toBe(31);
    expect(v.k6).toBe(1000);
    expect(Object.is(v.k12, -0)).toBe(true);
  });

  it("agrees with the yaml path on random config-shaped documents, and on them mutated (property)", () => {
    let accepted = 0;
    let total = 0;
    fc.assert(
      fc.property(documentArb, fc.array(fc.tuple(fc.nat(), fc.constantFrom(...MUTATIONS)), { minLength: 1, maxLength: 2 }), (doc, mutations) => {
        total++;
        if (agree(doc)) accepted++;
        let text = doc;
        for (const [at, m] of mutations) {
          const p = at % text.length;
          text = text.slice(0, p) + m + text.slice(p);
        }
        agree(text);
      }),
      { numRuns: Number(process.env.VIW_FC_RUNS ?? 500) },
    );
    // Not vacuous: most unmutated documents are read by the fast parser.
    expect(accepted).toBeGreaterThan(total / 2);
  });
});

// ---- random documents -------------------------------------------------------

const MUTATIONS = [" ", "  ", "\n", ":", ": ", "#", " #", "-", "- ", '"', "'", "[", "]", "{", "}", ",", "\t", "&a ", "*a", "!t ", "|", ">", "\\", "\n  ", "é", "x"];

const plainWords = [
  "yes", "no", "0x1F", "0o17", "1e3", "~", "null", "Null", "-0", "+12", ".inf", "-.Inf", ".nan", "3.14", "1.", "007", "true", "False",
  "2026-05-01", "10:00", "a:b", "http://x.example/y?z=1", "a#b", "::1/128", "-x", "?x", ":x", "a b", "éü 日本", "value with  spaces",
  "int-tls", "180d", "203.0.113.12", "ecdsa-p256", "gw.viworks.example", "a,b", "x]", "x}", "a :b", "",
];
// Scalars the yaml path rejects or reads oddly: the fast parser must decline them.
const badWords = ["a: b", "@x", "`x", "%x", "!x", "&x", "*x", "- x", "|", ">", "#x", "'", '"', '"unterminated', "[a", "{a", '"bad \\q escape"'];
const quotedWords = [
  '"*.gw.viworks.example"',
  '"plain"', '"with \\"escapes\\" \\n\\t\\\\"', '"# not a comment"', '"a: b"', '"\\x41\\u00e9\\U0001F600"', '"\\/ \\_ \\N \\0"',
  "'single'", "'it''s'", "'# also not a comment'", "'a: b'", '""', "''", '"2026-11-23T10:00:00Z"',
];
// Keys that are not strings (1, true, null) are valid YAML the fast parser declines; "declines what is outside the subset" covers them.
const keys = ["id", "title", "a", "b", "c", "key_usage", "max", "==", "in", "var", "x-y", "a.b", "k k", "é"];
const keyText = (k: string, quoted: boolean) => (quoted ? JSON.stringify(k) : k);

type Node =
  | { t: "scalar"; text: string }
  | { t: "block"; header: string; lines: string[] }
  | { t: "flow"; text: string }
  | { t: "map"; entries: [string, Node][] }
  | { t: "seq"; items: Node[] };

const scalarArb = fc.oneof(
  { arbitrary: fc.constantFrom(...plainWords).map((text): Node => ({ t: "scalar", text })), weight: 12 },
  { arbitrary: fc.constantFrom(...quotedWords).map((text): Node => ({ t: "scalar", text })), weight: 6 },
  { arbitrary: fc.constantFrom(...badWords).map((text): Node => ({ t: "scalar", text })), weight: 1 },
);
const notInFlow = new Set(["", "a,b", "x]", "x}"]);
const flowScalar = fc.oneof(
  { arbitrary: fc.constantFrom(...plainWords.filter((w) => !notInFlow.has(w))), weight: 40 },
  { arbitrary: fc.constantFrom(...quotedWords), weight: 20 },
  { arbitrary: fc.constantFrom(...badWords, ...notInFlow), weight: 1 },
);
const flowArb: fc.Arbitrary<string> = fc.letrec<{ flow: string }>((tie) => ({
  flow: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.array(fc.oneof(flowScalar, tie("flow")), { maxLength: 4 }).map((xs) => `[${xs.join(", ")}]`),
    fc
      .uniqueArray(fc.tuple(fc.constantFrom(...keys), fc.boolean(), fc.oneof(flowScalar, tie("flow"))), { maxLength: 3, selector: (x) => x[0] })
      .map((es) => `{${es.map(([k, q, v]) => `${keyText(k, q)}: ${v}`).join(", ")}}`),
  ),
})).flow;
const blockArb = fc
  .tuple(fc.constantFrom("|", "|-", ">", ">-"), fc.array(fc.constantFrom("line one", "two: x", "# three", "", "last", "a  b", "line one", "two: x", "# three", "", "  indented"), { minLength: 1, maxLength: 5 }).filter((ls) => ls[0] !== "" && ls[0] !== "  indented"))
  .map(([header, lines]): Node => ({ t: "block", header, lines }));

const nodeArb: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    scalarArb,
    flowArb.map((text): Node => ({ t: "flow", text })),
    blockArb,
    fc.uniqueArray(fc.tuple(fc.constantFrom(...keys), tie("node")), { minLength: 1, maxLength: 4, selector: (e) => e[0] }).map((entries): Node => ({ t: "map", entries })),
    fc.array(tie("node"), { minLength: 1, maxLength: 4 }).map((items): Node => ({ t: "seq", items })),
  ),
})).node;

interface Style {
  width: number;
  compactSeq: boolean;
  comments: boolean;
  quoteKeys: boolean;
}

function render(node: Node, indent: number, s: Style, out: string[], lead: string): void {
  const pad = " ".repeat(indent);
  const comment = s.comments ? "   # note: x" : "";
  switch (node.t) {
    case "scalar":
    case "flow":
      out.push(`${lead}${lead.endsWith(" ") || lead === "" ? "" : " "}${node.text}${comment}`);
      return;
    case "block":
      out.push(`${lead}${lead.endsWith(" ") ? "" : " "}${node.header}`);
      for (const l of node.lines) out.push(l === "" ? "" : " ".repeat(indent + s.width) + l);
      return;
    case "map":
      node.entries.forEach(([k, v], i) => {
        const keyLead = (i === 0 ? lead : pad) + keyText(k, s.quoteKeys && k.length % 2 === 0) + ":";
        if (v.t === "map" || v.t === "seq") {
          out.push(keyLead + (s.comments ? " # nested" : ""));
          if (s.comments) out.push(" ".repeat(indent + 1) + "# between");
          const inner = v.t === "seq" && s.compactSeq ? indent : indent + s.width;
          render(v, inner, s, out, " ".repeat(inner));
        } else render(v, indent, s, out, keyLead + " ");
      });
      return;
    case "seq":
      node.items.forEach((item, i) => {
        const dash = (i === 0 ? lead : pad) + "- ";
        if (item.t === "seq") {
          out.push(dash.trimEnd());
          render(item, indent + 2, s, out, " ".repeat(indent + 2));
        } else render(item, indent + 2, s, out, dash);
      });
      return;
  }
}

const documentArb = fc
  .tuple(
    fc.uniqueArray(fc.tuple(fc.constantFrom(...keys), nodeArb), { minLength: 1, maxLength: 5, selector: (e) => e[0] }),
    fc.record({ width: fc.constantFrom(2, 4), compactSeq: fc.boolean(), comments: fc.boolean(), quoteKeys: fc.boolean() }),
  )
  .map(([entries, style]) => {
    const out: string[] = style.comments ? ["# a leading comment"] : [];
    render({ t: "map", entries }, 0, style, out, "");
    return out.join("\n") + "\n";
  });
