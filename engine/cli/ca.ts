/**
 * `viw ca init`: bootstraps the offline root and the intermediates of the config's issuers.
 * `viw ca crl`: signs the offline root's next CRL with the key in DATA/offline/.
 * `viw ca revoke-intermediate ID`: revokes an intermediate at the root and signs the root's next CRL.
 */
import { resolve } from "node:path";
import { loadSnapshot, readDirSnapshot, type DesiredState } from "../config/index.js";
import { initCa, KeyRing, revokeIntermediate, RootCrlError, signRootCrl, type RootCrlResult } from "../pki/index.js";
import { oneOf, parseOptions, UsageError } from "./args.js";

const USAGE = [
  "usage: viw ca init [--data DIR] [--repo DIR] [--pkcs11-module PATH --pkcs11-token LABEL] [--format text|json]",
  "       viw ca crl [--data DIR] [--repo DIR] [--issuer ROOT] [--next-update 30d] [--format text|json]",
  "       viw ca revoke-intermediate ID [--reason REASON] [--data DIR] [--repo DIR] [--issuer ROOT] [--next-update 30d] [--format text|json]",
].join("\n");

const COMMON = {
  data: { type: "string", default: process.env.VIW_DATA ?? ".viw-data" },
  repo: { type: "string", default: "." },
  format: { type: "string", default: "text" },
} as const;

async function loadState(repo: string, command: string): Promise<DesiredState | undefined> {
  const loaded = loadSnapshot(await readDirSnapshot(resolve(repo)));
  if (loaded.state) return loaded.state;
  for (const e of loaded.errors) process.stderr.write(`${e.file}:${e.line}:${e.col}: error: ${e.message}\n`);
  process.stderr.write(`viw ca ${command}: the config in ${repo} is invalid\n`);
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "init") return init(rest);
  if (sub === "crl" || sub === "revoke-intermediate") return rootCrl(sub, rest);
  throw new UsageError(sub ? `unknown ca subcommand \`${sub}\`\n${USAGE}` : USAGE);
}

async function init(argv: string[]): Promise<number> {
  const { values } = parseOptions(
    argv,
    { ...COMMON, "pkcs11-module": { type: "string", default: process.env.VIW_PKCS11_MODULE }, "pkcs11-token": { type: "string", default: process.env.VIW_PKCS11_TOKEN } },
    USAGE,
  );
  const format = oneOf("format", values.format, ["text", "json"]);
  if (values["pkcs11-module"] && !values["pkcs11-token"]) throw new UsageError(`--pkcs11-module needs --pkcs11-token\n${USAGE}`);
  const state = await loadState(values.repo, "init");
  if (!state) return 1;
  const dataDir = resolve(values.data);
  const keys = new KeyRing({ dataDir, pkcs11Module: values["pkcs11-module"] });
  try {
    const made = await initCa({ dataDir, state, provider: keys, pkcs11Token: values["pkcs11-token"] });
    if (format === "json") {
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

async function rootCrl(sub: "crl" | "revoke-intermediate", argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions(
    argv,
    { ...COMMON, issuer: { type: "string" }, "next-update": { type: "string" }, ...(sub === "revoke-intermediate" ? { reason: { type: "string", default: "unspecified" } } : {}) },
    USAGE,
    sub === "revoke-intermediate",
  );
  const format = oneOf("format", values.format, ["text", "json"]);
  if (sub === "revoke-intermediate" && positionals.length !== 1) throw new UsageError(`viw ca revoke-intermediate takes one intermediate id\n${USAGE}`);
  const state = await loadState(values.repo, sub);
  if (!state) return 1;
  const options = { dataDir: resolve(values.data), state, ...(values.issuer ? { root: values.issuer } : {}), ...(values["next-update"] ? { nextUpdate: values["next-update"] } : {}) };
  let out: RootCrlResult & { serial?: string };
  try {
    out = sub === "crl" ? await signRootCrl(options) : await revokeIntermediate({ ...options, id: positionals[0]!, reason: (values as { reason?: string }).reason });
  } catch (err) {
    if (!(err instanceof RootCrlError)) throw err;
    process.stderr.write(`viw ca ${sub}: ${err.message}\n`);
    return 1;
  }
  if (format === "json") process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  else {
    if (out.serial) process.stdout.write(`revoked ${positionals[0]} (serial ${out.serial}) at ${out.issuer}\n`);
    process.stdout.write(`signed CRL ${out.number} of ${out.issuer}: ${out.revoked.length} revoked, next update ${out.next_update}\n  DER ${out.der}\n  PEM ${out.pem}\n`);
  }
  return 0;
}
