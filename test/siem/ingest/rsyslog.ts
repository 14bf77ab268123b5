// The test's own rsyslogd (own config, pid file and work dir; never the
// system service): imuxsock on a socket in the work dir, fed by `logger -u`,
// forwarding with omfwd over gtls, octet-counted, to the engine.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Rsyslog {
  socket: string;
  work: string;
  proc: ChildProcess;
  stop(): Promise<void>;
  stderr(): string;
}

export async function startRsyslog(opts: { port: number; caFile: string; certFile: string; keyFile: string; permittedPeer?: string; extraConfig?: string }): Promise<Rsyslog> {
  const work = mkdtempSync(join(tmpdir(), "viw-rsyslog-"));
  const socket = join(work, "log.sock");
  const conf = join(work, "rsyslog.conf");
  writeFileSync(
    conf,
    `global(workDirectory="${work}"
  DefaultNetstreamDriverCAFile="${opts.caFile}"
  DefaultNetstreamDriverCertFile="${opts.certFile}"
  DefaultNetstreamDriverKeyFile="${opts.keyFile}"
  maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="${socket}" CreatePath="on" RateLimit.Interval="0" UseSpecialParser="on")
${opts.extraConfig ?? ""}
action(type="omfwd" target="127.0.0.1" port="${opts.port}" protocol="tcp"
  StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="${opts.permittedPeer ?? "localhost"}"
  TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
  queue.type="LinkedList" queue.size="500000" queue.dequeueBatchSize="1024"
  action.resumeRetryCount="-1" action.resumeInterval="1")
`,
  );
  const pid = join(work, "rsyslogd.pid");
  let err = "";
  const proc = spawn("rsyslogd", ["-n", "-f", conf, "-i", pid], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (d: Buffer) => (err += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`rsyslogd did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    socket,
    work,
    proc,
    stderr: () => err + (existsSync(join(work, "debug")) ? readFileSync(join(work, "debug"), "utf8") : ""),
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (proc.exitCode === null) proc.kill("SIGKILL");
      }
      rmSync(work, { recursive: true, force: true });
    },
  };
}
