/**
 * Loading + validating a large config repo: 2,000 rules, 300 profiles and 100
 * pin sets generated from the default ViWorkS content (target: under 1.5 s on
 * the 2-core CI machine), next to the bare yaml package parse of the same files
 * (the peer). Prints medians of wall and CPU time (user+sys), the first load of
 * the process, peak RSS (the process's max RSS after the runs) and the load average.
 *
 *   npm run build && npx vitest bench --run test/bench/config.bench.ts
 */
import { spawnSync } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bench, describe } from "vitest";
import { LineCounter, parseAllDocuments } from "yaml";
import { loadSnapshot, readDirSnapshot } from "../../engine/config/index.js";

const ROOT = resolve(import.meta.dirname, "../..");

async function generateRepo(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "viw-bench-config-"));
  for (const f of ["profiles", "pins", "policies", "detections", "dashboards"]) await cp(join(ROOT, f), join(dir, f), { recursive: true });
  await mkdir(join(dir, "detections/gen"));
  const profile = await readFile(join(ROOT, "profiles/tls-gateway.yaml"), "utf8");
  const pins = await readFile(join(ROOT, "pins/gateway.yaml"), "utf8");
  const rules = ["otp-credential-stuffing", "spa-without-tls", "ja3-not-allowlisted", "dos-handshake-burst", "tls-downgrade"];
  const ruleTexts = await Promise.all(rules.map((r) => readFile(join(ROOT, `detections/${r}.yaml`), "utf8")));
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 300; i++) {
    const text = profile.replace("id: tls-gateway", `id: gen-profile-${i}`);
    writes.push(writeFile(join(dir, `profiles/gen-profile-${i}.yaml`), i < 100 ? text.replace("pin_set: gateway", `pin_set: gen-pins-${i}`) : text.replace(/^pin_set: .*$/m, "")));
  }
  for (let i = 0; i < 100; i++) {
    const text = pins.replace("id: gateway", `id: gen-pins-${i}`).replace("profile: tls-gateway", `profile: gen-profile-${i}`);
    writes.push(writeFile(join(dir, `pins/gen-pins-${i}.yaml`), text));
  }
  for (let i = 0; i < 2000; i++) {
    const k = i % rules.length;
    writes.push(writeFile(join(dir, `detections/gen/${rules[k]}-${i}.yaml`), ruleTexts[k]!.replace(`id: ${rules[k]}`, `id: ${rules[k]}-${i}`)));
  }
  await Promise.all(writes);
  return dir;
}

const repo = await generateRepo();
const texts = (await readDirSnapshot(repo)).files.map((f) => f.bytes!.toString("utf8"));

interface Sample {
  wall: number;
  cpu: number;
}
const samples: Record<"cold" | "async" | "next" | "peer" | "cli", Sample[]> = { cold: [], async: [], next: [], peer: [], cli: [] };
let first: Sample | undefined;
let flip = 0;

async function measure(into: Sample[], run: () => unknown): Promise<void> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run();
  const wall = performance.now() - t0;
  const d = process.cpuUsage(cpu0);
  const s = { wall, cpu: (d.user + d.system) / 1000 };
  first ??= s; // the first load of the process also compiles the JSON Schemas
  into.push(s);
}

async function loadOnce(reuseParses: boolean): Promise<void> {
  const result = loadSnapshot(await readDirSnapshot(repo), { reuseParses });
  const e = result.errors[0];
  if (e) throw new Error(`generated repo is invalid: ${e.file}:${e.line}:${e.col}: ${e.message}`);
  if (result.state!.rules.size < 2000) throw new Error("rules missing");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

const RUNS = { iterations: 7, warmupIterations: 1, time: 0 };

describe("config load + validate (2,000 rules, 300 profiles, 100 pin sets)", () => {
  bench("cold: read + parse + validate every file + DesiredState", () => measure(samples.cold, () => loadOnce(false)), RUNS);
  bench(
    "cold, async loader (yaml-path files on worker threads; compiled build)",
    async () => {
      // The worker pool needs the compiled worker file: `npm run bench` builds first.
      const compiled = (await import(join(ROOT, "dist/engine/config/index.js"))) as typeof import("../../engine/config/index.js");
      await measure(samples.async, async () => {
        const result = await compiled.loadSnapshotAsync(await compiled.readDirSnapshot(repo), { reuseParses: false });
        if (result.errors.length || result.state!.rules.size < 2000) throw new Error("generated repo did not load");
      });
    },
    RUNS,
  );
  bench(
    "next revision: one rule changed, unchanged files' parses reused",
    async () => {
      const file = join(repo, "detections/gen/otp-credential-stuffing-0.yaml");
      const text = await readFile(file, "utf8");
      await writeFile(file, text.replace(/^title: .*$/m, `title: generated rule, edit ${flip++}`));
      await measure(samples.next, () => loadOnce(true));
    },
    RUNS,
  );
  bench(
    "viw validate as a user runs it: a new node process, start to exit (compiled build)",
    () => {
      // Process start, module loading and schema compilation included: what a CI job waits for.
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [join(ROOT, "dist/engine/cli/main.js"), "validate", "--repo", repo], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`viw validate failed: ${r.stdout}${r.stderr}`);
      samples.cli.push({ wall: performance.now() - t0, cpu: NaN });
    },
    RUNS,
  );
  bench(
    "peer: bare yaml package parse of the same files (no validation)",
    async () => {
      await measure(samples.peer, () => {
        for (const text of texts) parseAllDocuments(text, { lineCounter: new LineCounter(), schema: "core", uniqueKeys: true, strict: true });
      });
      if (samples.peer.length === RUNS.iterations + RUNS.warmupIterations) report();
    },
    RUNS,
  );
});

// vitest bench runs hooks but swallows their output, so the figures are printed after the last run.
function report(): void {
  const m = (k: keyof typeof samples, f: "wall" | "cpu") => median(samples[k].slice(RUNS.warmupIterations).map((s) => s[f]));
  const line = (name: string, k: keyof typeof samples) => `  ${name.padEnd(44)} wall ${m(k, "wall").toFixed(0).padStart(6)} ms   CPU ${m(k, "cpu").toFixed(0).padStart(6)} ms\n`;
  process.stderr.write(
    `\nconfig load, ${texts.length} files (${(texts.reduce((n, t) => n + t.length, 0) / 1e6).toFixed(1)} MB), medians of ${RUNS.iterations} runs:\n` +
      line("cold load (read+parse+schema+semantic+state)", "cold") +
      line("cold load, async loader", "async") +
      line("next revision (one rule changed)", "next") +
      line("peer: bare yaml parse", "peer") +
      `  viw validate, whole process (start to exit)  wall ${m("cli", "wall").toFixed(0).padStart(6)} ms\n` +
      `  first load of the process (schemas compiled): wall ${first!.wall.toFixed(0)} ms, CPU ${first!.cpu.toFixed(0)} ms\n` +
      `  bare yaml parse / whole cold load: wall ${(m("peer", "wall") / m("cold", "wall")).toFixed(2)}×, CPU ${(m("peer", "cpu") / m("cold", "cpu")).toFixed(2)}×\n` +
      `  peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB; ${cpus().length}× ${cpus()[0]?.model ?? "cpu"}, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}\n`,
  );
}
