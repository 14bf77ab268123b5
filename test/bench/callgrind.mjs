// What the instruction-count benches (audit-, detect-, pki-instructions.mjs) share: valgrind's callgrind
// counts instructions, which the machine's load does not change, so their figures hold on a shared machine.
import { execFileSync, spawn } from "node:child_process";

/** Exits with a message naming the bench when valgrind is missing. */
export function requireValgrind(bench) {
  try {
    execFileSync("valgrind", ["--version"], { stdio: "pipe" });
  } catch {
    console.error(`${bench}: valgrind is not installed (apt-get install valgrind)`);
    process.exit(2);
  }
}

/**
 * Starts a node process under callgrind with counting off (callgrind_control turns it on for the measured
 * window) and an IPC channel; `reply()` waits for its next message, or fails with the end of its stderr if it exits.
 */
export function spawnUnderCallgrind(outFile, nodeArgs, valgrindArgs = []) {
  const child = spawn("valgrind", ["--tool=callgrind", "--instr-atstart=no", ...valgrindArgs, `--callgrind-out-file=${outFile}`, process.execPath, "--single-threaded", ...nodeArgs], {
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const reply = () =>
    new Promise((resolve, reject) => {
      const onExit = (code) => reject(new Error(`${outFile}: server exited (${code})\n${stderr.slice(-2000)}`));
      child.once("exit", onExit);
      child.once("message", (m) => {
        child.off("exit", onExit);
        resolve(m);
      });
    });
  return { child, reply };
}
