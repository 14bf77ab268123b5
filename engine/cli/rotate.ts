import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { EMERGENCY_REASONS, EmergencyRequestError, isPin, requestEmergencyRotation, type EmergencyReport, type RevocationReason } from "../pki/pins/index.js";
import { oneOf, parseOptions, UsageError } from "./args.js";

const USAGE =
  "usage: viw rotate (--pin-set ID | --profile ID) [--reason REASON] [--keys PIN,...] [--no-reissue] [--admin URL | --data DIR] [--yes] [--format text|json]";

/**
 * `viw rotate`: emergency rotation of every live certificate of a pin set's
 * profile (or of a profile): revoke, reissue for the same key where the pin
 * set still allows it, CRL and OCSP updated before the daemon answers.
 *
 * Without --yes it is a dry run: the daemon lists what it would revoke and
 * reissue and changes nothing. Revocation cannot be undone, so the command
 * that does it must say so explicitly, including in scripts (no prompt).
 */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseOptions(
    argv,
    {
      "pin-set": { type: "string" },
      profile: { type: "string" },
      reason: { type: "string", default: "superseded" },
      keys: { type: "string" },
      "no-reissue": { type: "boolean", default: false },
      admin: { type: "string" },
      data: { type: "string" },
      yes: { type: "boolean", default: false },
      format: { type: "string", default: "text" },
    },
    USAGE,
  );
  const format = oneOf("format", values.format, ["text", "json"]);
  if ((values["pin-set"] === undefined) === (values.profile === undefined)) throw new UsageError(`give exactly one of --pin-set ID or --profile ID\n${USAGE}`);
  const reason = oneOf("reason", values.reason, EMERGENCY_REASONS) as RevocationReason;
  const pins = values.keys === undefined ? undefined : values.keys.split(",").map((k) => k.trim());
  if (pins) {
    const bad = pins.filter((p) => !isPin(p));
    if (bad.length || !pins.length) throw new UsageError(`--keys must be pin-sha256 values (base64 SHA-256 of the SPKI, as \`viw pin\` prints), comma-separated; not ${bad.map((b) => JSON.stringify(b)).join(", ") || '""'}`);
  }
  if (values.admin !== undefined && values.data !== undefined) throw new UsageError(`give --admin URL or --data DIR, not both\n${USAGE}`);
  const admin = values.admin ?? adminOf(resolve(values.data ?? process.env.VIW_DATA ?? ".viw-data"));
  if (admin === undefined) return 1;
  if (!URL.canParse(admin)) throw new UsageError(`--admin must be a URL such as http://127.0.0.1:9090, not ${admin}`);

  let report: EmergencyReport;
  try {
    report = await requestEmergencyRotation(admin, {
      ...(values["pin-set"] !== undefined ? { pinSet: values["pin-set"] } : { profile: values.profile! }),
      reason,
      ...(pins ? { pins } : {}),
      ...(values["no-reissue"] ? { reissue: false } : {}),
      dryRun: !values.yes,
    });
  } catch (err) {
    if (!(err instanceof EmergencyRequestError)) throw err;
    process.stderr.write(`viw rotate: ${err.message}\n`);
    return 1;
  }
  process.stdout.write(format === "json" ? JSON.stringify(report, null, 2) + "\n" : text(report, pins));
  return report.failed.length ? 1 : 0;
}

/** The admin URL a running daemon wrote to DATA/run/endpoints.json. */
function adminOf(data: string): string | undefined {
  const file = join(data, "run", "endpoints.json");
  try {
    const url = (JSON.parse(readFileSync(file, "utf8")) as { admin?: unknown }).admin;
    if (typeof url === "string" && url) return url;
    process.stderr.write(`viw rotate: ${file} names no admin endpoint; pass --admin URL\n`);
  } catch (err) {
    process.stderr.write(`viw rotate: no running daemon found: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); start \`viw run\` with this --data or pass --admin URL\n`);
  }
  return undefined;
}

function text(r: EmergencyReport, keys?: string[]): string {
  const target = r.pin_set !== undefined ? `pin set ${r.pin_set} (profile ${r.profile})` : `profile ${r.profile}`;
  const total = r.revoked.length + r.not_reissued.length;
  const lines = [`${r.dry_run ? "dry run: " : ""}emergency rotation of ${target}, reason ${r.reason}`];
  if (total === 0 && r.failed.length === 0) return lines.concat(`no live certificate of profile ${r.profile}${keys ? ` for key${keys.length === 1 ? "" : "s"} ${keys.join(", ")}` : ""}: nothing to revoke`).join("\n") + "\n";
  const ocsp = (s?: string) => (s ? `; OCSP: ${s}` : "");
  if (r.dry_run) {
    for (const c of r.revoked) lines.push(`  would revoke ${c.serial} (${r.reason}) and reissue it for the same key ${c.spki_sha256}`);
    for (const c of r.not_reissued) lines.push(`  would revoke ${c.serial} (${r.reason}); not reissued: ${c.why}`);
    lines.push(`dry run: nothing was revoked; run again with --yes to revoke ${total} certificate${total === 1 ? "" : "s"}`);
    return lines.join("\n") + "\n";
  }
  for (const c of r.revoked) lines.push(`  revoked ${c.serial} (${r.reason}) → successor ${c.successor} for the same key${ocsp(c.ocsp)}`);
  for (const c of r.not_reissued) lines.push(`  revoked ${c.serial} (${r.reason}); not reissued: ${c.why}${ocsp(c.ocsp)}`);
  for (const c of r.failed) lines.push(`  FAILED ${c.serial}: ${c.error}`);
  for (const [issuer, n] of Object.entries(r.crl_numbers)) lines.push(`CRL of ${issuer}: number ${n}, published`);
  lines.push(`${total} revoked, ${r.revoked.length} reissued, ${r.not_reissued.length} not reissued, ${r.failed.length} failed`);
  return lines.join("\n") + "\n";
}
