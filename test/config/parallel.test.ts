import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultRepoCopy, ROOT } from "./helpers.js";

// The worker pool runs from the compiled output (npm test builds first); under
// the TypeScript sources it falls back to parsing inline.
const dist = join(ROOT, "dist/engine/config/index.js");

describe.runIf(existsSync(dist))("parsing on worker threads", () => {
  it("gives the same DesiredState and the same positioned errors as the inline loader", async () => {
    const config = (await import(dist)) as typeof import("../../engine/config/index.js");
    const repo = await defaultRepoCopy();
    const rule = await readFile(join(ROOT, "detections/tls-downgrade.yaml"), "utf8");
    await mkdir(join(repo, "detections/gen"));
    for (let i = 0; i < 420; i++) await writeFile(join(repo, `detections/gen/r-${i}.yaml`), rule.replace("id: tls-downgrade", `id: r-${i}`));
    const snapshot = await config.readDirSnapshot(repo);
    const inline = config.loadSnapshot(snapshot, { reuseParses: false });
    const parallel = await config.loadSnapshotAsync(snapshot, { reuseParses: false });
    expect(parallel.errors).toEqual([]);
    expect(parallel.state!.digest).toBe(inline.state!.digest);
    expect(parallel.state!.rules.size).toBe(inline.state!.rules.size);

    await writeFile(join(repo, "detections/gen/r-7.yaml"), rule.replace("id: tls-downgrade", "id: r-7").replace("severity: high", "severity: hihg"));
    await writeFile(join(repo, "detections/gen/r-9.yaml"), rule.replace("id: tls-downgrade", "id: r-9") + "id: again\n");
    const broken = await config.readDirSnapshot(repo);
    const a = config.loadSnapshot(broken, { reuseParses: false });
    const b = await config.loadSnapshotAsync(broken, { reuseParses: false });
    expect(b.errors).toEqual(a.errors);
    expect(b.errors.map((e) => `${e.file}:${e.line}:${e.col}`)).toEqual(["detections/gen/r-7.yaml:7:11", expect.stringMatching(/^detections\/gen\/r-9\.yaml:\d+:1$/)]);
    expect(b.state).toBeUndefined();
  });

  it("sends the files only the yaml package reads to the workers, with the same results", async () => {
    const config = (await import(dist)) as typeof import("../../engine/config/index.js");
    const repo = await defaultRepoCopy();
    const rule = await readFile(join(ROOT, "detections/tls-downgrade.yaml"), "utf8");
    await mkdir(join(repo, "detections/gen"));
    // A document start marker is valid YAML the fast parser leaves to the yaml package.
    for (let i = 0; i < 420; i++) await writeFile(join(repo, `detections/gen/r-${i}.yaml`), "---\n" + rule.replace("id: tls-downgrade", `id: r-${i}`));
    await writeFile(join(repo, "detections/gen/r-3.yaml"), "---\n" + rule.replace("id: tls-downgrade", "id: r-3").replace("severity: high", "severity: hihg"));
    await writeFile(join(repo, "detections/gen/r-5.yaml"), "---\n" + rule.replace("id: tls-downgrade", "id: r-5") + "suppress: 1m\n");
    const snapshot = await config.readDirSnapshot(repo);
    const inline = config.loadSnapshot(snapshot, { reuseParses: false });
    const parallel = await config.loadSnapshotAsync(snapshot, { reuseParses: false });
    expect(parallel.errors).toEqual(inline.errors);
    expect(parallel.errors.map((e) => `${e.file}:${e.line}:${e.col}: ${e.message}`)).toEqual([
      expect.stringMatching(/^detections\/gen\/r-3\.yaml:8:11: `severity` is `hihg`; it must be one of /),
      expect.stringMatching(/^detections\/gen\/r-5\.yaml:\d+:1: duplicate key/),
    ]);
  });
});
