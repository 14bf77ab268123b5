// Every test run gets its own temporary directory, removed when the run ends:
// tests (and the daemons, rsyslog and openssl they start) make their scratch
// dirs with os.tmpdir(), which reads TMPDIR, so nothing a run makes is left in
// /tmp, whichever test made it and however it ended. Set VIW_KEEP_TMP=1 to keep
// it for a look after a failure.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), "viw-test-"));
  // forks inherit the environment: every test file and every process it starts
  process.env.TMPDIR = dir;
  return () => {
    if (process.env.VIW_KEEP_TMP) console.log(`test scratch kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
}
