// Runs service-child.ts in its own process (bundled, Node 20 has no type stripping).
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { bundleForNode } from "../journal/bundle.js";
import { REPO } from "./harness.js";

let script: Promise<string> | undefined;

export interface ServiceChild {
  proc: ChildProcess;
  syslog: string;
  bulk: string;
  status(lite?: boolean): Promise<{ lastSeq: number; cursors: Record<string, number>; stored: number; vmHwmKb: number }>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

export async function startServiceChild(cfg: { dataDir: string; pkiDir: string; syslogPort: number; bulkPort: number; shippers: Record<string, string> }): Promise<ServiceChild> {
  script ??= bundleForNode(join(import.meta.dirname, "service-child.ts"));
  // VIW_CHILD_NODE_ARGS: extra node flags for the child (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p" when profiling a benchmark)
  const nodeArgs = (process.env.VIW_CHILD_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const proc = spawn(process.execPath, [...nodeArgs, await script, JSON.stringify({ repo: REPO, ...cfg })], { stdio: ["pipe", "pipe", "inherit"] });
  const waiters: ((line: string) => void)[] = [];
  let buf = "";
  proc.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      waiters.shift()?.(line);
    }
  });
  const next = () =>
    new Promise<string>((resolve, reject) => {
      waiters.push(resolve);
      const onExit = (code: number | null) => reject(new Error(`service child exited (${code})`));
      proc.once("exit", onExit);
      waiters[waiters.length - 1] = (line) => {
        proc.off("exit", onExit);
        resolve(line);
      };
    });
  const addrs = JSON.parse(await next()) as { syslog: string; bulk: string };
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  return {
    proc,
    ...addrs,
    async status(lite = false) {
      const p = next();
      proc.stdin!.write(lite ? "status-lite\n" : "status\n");
      return JSON.parse(await p);
    },
    async kill9() {
      proc.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        await exited;
      }
    },
  };
}
