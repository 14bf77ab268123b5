import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";

/**
 * A fresh SoftHSM2 token in a temp dir. SOFTHSM2_CONF is read at
 * C_Initialize, so it is set in this process's env for the test's lifetime.
 */
export function makeToken(label = "viw-test", pin = "1234"): { dir: string; label: string; pin: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), "viw-hsm-"));
  mkdirSync(join(dir, "tokens"));
  const conf = join(dir, "softhsm2.conf");
  writeFileSync(conf, `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  execFileSync("softhsm2-util", ["--init-token", "--free", "--label", label, "--so-pin", "5678", "--pin", pin], { env: process.env, stdio: "pipe" });
  return { dir, label, pin, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
