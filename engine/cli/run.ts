/** `viw run`: parses the daemon's options (flags or VIW_* environment) and runs it until SIGTERM. */
import { parseArgs } from "node:util";
import { isDuration } from "../config/index.js";
import { createDaemon, LISTENER_NAMES, type DaemonOptions, type ListenerName } from "../daemon.js";
import { parseOrUsage, UsageError } from "./args.js";

const USAGE = "usage: viw run [--repo DIR | --git URL --branch B] [--data DIR] [--trust FILE] [--trust-gpg GNUPGHOME] [--dev] [--listen NAME=HOST:PORT ...] [--seal-interval D] [--store sqlite|elasticsearch] [--elasticsearch-url URL] [--allow-rollback] [--poll-interval D]";

/** NAME=HOST:PORT, HOST may be [v6]; port 0 = any free port. */
export function parseListen(spec: string): [ListenerName, { host: string; port: number }] {
  const m = /^([a-z]+)=(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(spec);
  if (!m) throw new UsageError(`--listen ${spec}: expected NAME=HOST:PORT (NAME one of ${LISTENER_NAMES.join(", ")})`);
  const name = m[1] as ListenerName;
  if (!LISTENER_NAMES.includes(name)) throw new UsageError(`--listen ${spec}: unknown listener \`${m[1]}\` (one of ${LISTENER_NAMES.join(", ")})`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen ${spec}: port ${port} out of range`);
  return [name, { host: m[2]!.replace(/^\[|\]$/g, ""), port }];
}

function parseMs(flag: string, v: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(v);
  if (!m) throw new UsageError(`${flag} ${v}: expected a duration like 30s, 500ms or 5m`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
}

export function parseRunArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): DaemonOptions {
  const { values } = parseOrUsage(() => parseArgs({
    args: argv,
    options: {
      repo: { type: "string" },
      git: { type: "string" },
      branch: { type: "string" },
      data: { type: "string" },
      trust: { type: "string" },
      "trust-gpg": { type: "string" },
      dev: { type: "boolean" },
      listen: { type: "string", multiple: true },
      "seal-interval": { type: "string" },
      store: { type: "string" },
      "elasticsearch-url": { type: "string" },
      "allow-rollback": { type: "boolean" },
      "poll-interval": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  }));
  if (values.help) throw new UsageError(USAGE);
  const bool = (v: string | undefined) => v !== undefined && /^(1|true|yes)$/i.test(v);
  const repo = values.repo ?? env.VIW_REPO;
  const gitUrl = values.git ?? env.VIW_GIT;
  const dev = values.dev ?? bool(env.VIW_DEV);
  const trust = values.trust ?? env.VIW_TRUST;
  const trustGpg = values["trust-gpg"] ?? env.VIW_TRUST_GPG;
  if (repo && gitUrl) throw new UsageError("--repo and --git are exclusive: follow a directory or a remote, not both");
  if (!dev && !trust && !trustGpg) throw new UsageError("--trust FILE (an allowed-signers file) is required outside --dev: production applies only signed commits");
  const store = values.store ?? env.VIW_STORE;
  if (store !== undefined && store !== "sqlite" && store !== "elasticsearch") throw new UsageError(`--store ${store}: expected sqlite or elasticsearch`);
  const esUrl = values["elasticsearch-url"] ?? env.VIW_ELASTICSEARCH_URL;
  if (store === "elasticsearch" && !esUrl) throw new UsageError("--store elasticsearch needs --elasticsearch-url URL");
  const listen: DaemonOptions["listen"] = {};
  const specs = values.listen ?? (env.VIW_LISTEN ? env.VIW_LISTEN.split(/[\s,]+/).filter(Boolean) : []);
  for (const spec of specs) {
    const [name, addr] = parseListen(spec);
    listen[name] = addr;
  }
  const poll = values["poll-interval"] ?? env.VIW_POLL_INTERVAL;
  const seal = values["seal-interval"] ?? env.VIW_SEAL_INTERVAL;
  if (seal !== undefined && !isDuration(seal)) throw new UsageError(`--seal-interval ${seal}: expected a duration like 60s, 5m or 1h`);
  return {
    repo: gitUrl ? undefined : (repo ?? "."),
    gitUrl,
    branch: values.branch ?? env.VIW_BRANCH ?? (gitUrl ? "main" : undefined),
    data: values.data ?? env.VIW_DATA ?? ".viw-data",
    trust,
    trustGpg,
    dev,
    allowRollback: values["allow-rollback"] ?? bool(env.VIW_ALLOW_ROLLBACK),
    listen,
    sealInterval: seal,
    store: store as DaemonOptions["store"],
    elasticsearchUrl: esUrl,
    pollIntervalMs: poll ? parseMs("--poll-interval", poll) : undefined,
    webhookSecret: env.VIW_WEBHOOK_SECRET,
  };
}

export async function main(argv: string[]): Promise<number> {
  const opts = parseRunArgs(argv);
  const daemon = createDaemon(opts);
  // A background task's rejected promise (a consumer loop, a timer) must not take down every listener:
  // it is logged loudly and the daemon keeps serving; /v1/status and the metrics show the affected service.
  process.on("unhandledRejection", (reason) => {
    daemon.logger.error({ err: reason instanceof Error ? reason.stack : String(reason) }, "unhandled rejection in a background task");
  });
  try {
    await daemon.start();
  } catch (err) {
    // e.g. a port in use: say so plainly, release what was opened, and exit even if a library left a handle.
    daemon.logger.fatal({ err: (err as Error).message }, "viw run could not start");
    await daemon.stop().catch(() => undefined);
    setTimeout(() => process.exit(1), 1000).unref();
    return 1;
  }
  return new Promise<number>((resolve) => {
    const stop = () => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      // Safety net: a handle some library leaves open must not keep a drained daemon alive.
      const exitSoon = (code: number) => setTimeout(() => process.exit(code), 3000).unref();
      daemon.stop().then(
        () => {
          exitSoon(0);
          resolve(0);
        },
        (err: unknown) => {
          daemon.logger.error({ err: (err as Error).message }, "shutdown failed");
          exitSoon(1);
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    process.on("SIGHUP", () => void daemon.reconcileNow(true));
  });
}
