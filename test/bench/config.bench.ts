/**
 * Loading + validating a large config repo: 2,000 rules, 300 profiles and 100
 * pin sets generated from the default ViWorkS content (target: under 1.5 s on
 * the 2-core CI machine). Peak memory is the process's max RSS after the runs.
 *
 *   npx vitest bench --run test/bench/config.bench.ts
 */
import { cp, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bench, describe } from "vitest";
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
const cpuMs: number[] = [];
let flip = 0;

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

describe("config load + validate (2,000 rules, 300 profiles, 100 pin sets)", () => {
  bench(
    "cold: read + parse + validate every file",
    async () => {
      const before = process.cpuUsage();
      await loadOnce(false);
      const d = process.cpuUsage(before);
      cpuMs.push((d.user + d.system) / 1000);
      if (cpuMs.length === 8) report();
    },
    { iterations: 7, warmupIterations: 1, time: 0 },
  );
  bench(
    "cold, YAML parsed on worker threads (compiled build)",
    async () => {
      // The worker pool needs the compiled worker file: `npm run bench` builds first.
      const compiled = (await import(join(ROOT, "dist/engine/config/index.js"))) as typeof import("../../engine/config/index.js");
      const result = await compiled.loadSnapshotAsync(await compiled.readDirSnapshot(repo), { reuseParses: false });
      if (result.errors.length || result.state!.rules.size < 2000) throw new Error("generated repo did not load");
    },
    { iterations: 7, warmupIterations: 1, time: 0 },
  );
  bench(
    "next revision: one rule changed, unchanged files' parses reused",
    async () => {
      const file = join(repo, "detections/gen/otp-credential-stuffing-0.yaml");
      const text = await readFile(file, "utf8");
      await writeFile(file, text.replace(/^title: .*$/m, `title: generated rule, edit ${flip++}`));
      await loadOnce(true);
    },
    { iterations: 7, warmupIterations: 1, time: 0 },
  );
});

// vitest bench runs hooks but swallows their output, so the figures are printed after the last cold run.
function report(): void {
  const rss = process.resourceUsage().maxRSS / 1024;
  process.stderr.write(
    `cold load CPU time (user+sys) median ${median(cpuMs).toFixed(0)} ms over ${cpuMs.length} runs; ` +
      `peak RSS ${rss.toFixed(0)} MiB; ${cpus().length}× ${cpus()[0]?.model ?? "cpu"}, node ${process.version}, load average ${loadavg()[0]!.toFixed(2)}\n`,
  );
}

