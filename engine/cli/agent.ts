import { parseDuration } from "../config/index.js";
import { AgentError, renewOnce, runAgent, type AgentOptions, type KeyType } from "../pki/pins/index.js";
import { parseOptions, UsageError } from "./args.js";

const USAGE = `usage: viw agent renew --cert FILE --key FILE [--exec CMD] [--url https://HOST:8444]
         [--client-cert FILE --client-key FILE] [--ca FILE] [--profile ID] [--usage server|client]
         [--reuse-key] [--backup-key FILE] [--key-type ecdsa-p256|ecdsa-p384|rsa-2048|rsa-3072|rsa-4096]
         [--renew-before DURATION] [--alert-before DURATION] [--once]
  Renews at 2/3 of the certificate's lifetime (jittered), retrying with backoff; --once renews now and exits.`;

const KEY_TYPES: readonly KeyType[] = ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"];

/** `viw agent renew`: parses, then runs engine/pki/pins/agent.ts. */
export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== "renew") throw new UsageError(sub ? `unknown agent command \`${sub}\`\n${USAGE}` : USAGE);
  const { values } = parseOptions(
    rest,
    {
      cert: { type: "string" },
      key: { type: "string" },
      exec: { type: "string" },
      url: { type: "string", default: "https://localhost:8444" },
      "client-cert": { type: "string" },
      "client-key": { type: "string" },
      ca: { type: "string" },
      profile: { type: "string" },
      usage: { type: "string" },
      "reuse-key": { type: "boolean", default: false },
      "backup-key": { type: "string" },
      "key-type": { type: "string" },
      "renew-before": { type: "string" },
      "alert-before": { type: "string" },
      once: { type: "boolean", default: false },
    },
    USAGE,
  );
  if (!values.cert || !values.key) throw new UsageError(`--cert and --key are required\n${USAGE}`);
  if (!!values["client-cert"] !== !!values["client-key"]) throw new UsageError("--client-cert and --client-key go together");
  if (values.usage !== undefined && values.usage !== "server" && values.usage !== "client") throw new UsageError(`--usage must be server or client, not ${values.usage}`);
  if (values["key-type"] !== undefined && !KEY_TYPES.includes(values["key-type"] as KeyType)) throw new UsageError(`--key-type must be one of ${KEY_TYPES.join(", ")}`);
  if (values["reuse-key"] && values["key-type"]) throw new UsageError("--reuse-key and --key-type exclude each other");
  const duration = (name: "renew-before" | "alert-before") => {
    const v = values[name];
    if (v === undefined) return undefined;
    try {
      return parseDuration(v);
    } catch {
      throw new UsageError(`--${name}: not a duration: ${v} (e.g. 30d, 12h)`);
    }
  };
  try {
    new URL(values.url!);
  } catch {
    throw new UsageError(`--url: not a URL: ${values.url}`);
  }
  const renewBefore = duration("renew-before");
  const alertBefore = duration("alert-before");
  const log = (line: string) => process.stderr.write(`viw agent: ${line}\n`);
  const opts: AgentOptions = {
    certFile: values.cert,
    keyFile: values.key,
    url: values.url!,
    reuseKey: values["reuse-key"]!,
    log,
    ...(values.exec !== undefined ? { exec: values.exec } : {}),
    ...(values["client-cert"] ? { clientCert: values["client-cert"], clientKey: values["client-key"]! } : {}),
    ...(values.ca ? { ca: values.ca } : {}),
    ...(values.profile ? { profile: values.profile } : {}),
    ...(values.usage ? { usage: values.usage as "server" | "client" } : {}),
    ...(values["backup-key"] ? { backupKey: values["backup-key"] } : {}),
    ...(values["key-type"] ? { keyType: values["key-type"] as KeyType } : {}),
  };
  if (values.once) {
    try {
      const r = await renewOnce(opts);
      process.stdout.write(`${JSON.stringify({ serial: r.serial, not_after: new Date(r.notAfter).toISOString(), pin: r.pin, key: r.key, via: r.via })}\n`);
      return 0;
    } catch (err) {
      if (!(err instanceof AgentError)) throw err;
      log(err.message);
      return 1;
    }
  }
  const renewer = runAgent({ ...opts, renewBefore, alertBefore });
  // The renewer's timers do not hold the process; this does, until SIGTERM/SIGINT.
  const hold = setInterval(() => {}, 1 << 30);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  clearInterval(hold);
  renewer.stop();
  await renewer.idle();
  return 0;
}
