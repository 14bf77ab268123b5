/** `viw ca init`: bootstraps the offline root and the intermediates of the config's issuers. */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { loadSnapshot, readDirSnapshot } from "../config/index.js";
import { initCa, KeyRing } from "../pki/index.js";
import { UsageError } from "./main.js";

const USAGE = "usage: viw ca init [--data DIR] [--repo DIR] [--pkcs11-module PATH --pkcs11-token LABEL] [--format text|json]";

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== "init") throw new UsageError(sub ? `unknown ca subcommand \`${sub}\`\n${USAGE}` : USAGE);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        data: { type: "string", default: process.env.VIW_DATA ?? ".viw-data" },
        repo: { type: "string", default: "." },
        "pkcs11-module": { type: "string", default: process.env.VIW_PKCS11_MODULE },
        "pkcs11-token": { type: "string", default: process.env.VIW_PKCS11_TOKEN },
        format: { type: "string", default: "text" },
      },
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  if (values.format !== "text" && values.format !== "json") throw new UsageError(`--format must be text or json\n${USAGE}`);
  if (values["pkcs11-module"] && !values["pkcs11-token"]) throw new UsageError(`--pkcs11-module needs --pkcs11-token\n${USAGE}`);

  const loaded = loadSnapshot(await readDirSnapshot(resolve(values.repo)));
  if (!loaded.state) {
    for (const e of loaded.errors) process.stderr.write(`${e.file}:${e.line}:${e.col}: error: ${e.message}\n`);
    process.stderr.write(`viw ca init: the config in ${values.repo} is invalid\n`);
    return 1;
  }
  const dataDir = resolve(values.data);
  const keys = new KeyRing({ dataDir, pkcs11Module: values["pkcs11-module"] });
  try {
    const made = await initCa({ dataDir, state: loaded.state, provider: keys, pkcs11Token: values["pkcs11-token"] });
    if (values.format === "json") {
      process.stdout.write(JSON.stringify({ data: dataDir, issuers: made }, null, 2) + "\n");
    } else {
      for (const e of made) {
        process.stdout.write(`${e.action === "created" ? "created" : "exists "} ${e.role.padEnd(12)} ${e.id.padEnd(12)} key ${e.key}  cert ${e.certificate}  until ${e.not_after}\n`);
        if (e.note) process.stdout.write(`        note: ${e.note}\n`);
      }
    }
    return 0;
  } catch (err) {
    process.stderr.write(`viw ca init: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await keys.close();
  }
}
