import { readFileSync } from "node:fs";
import { KeyError } from "./common.js";

/** An RFC 7512 PKCS#11 URI, as far as the engine uses it. */
export interface Pkcs11Uri {
  token?: string;
  object?: string;
  /** CKA_ID, raw bytes. */
  id?: Buffer;
  serial?: string;
  slotId?: number;
  type?: string;
  pinValue?: string;
  pinSource?: string;
  modulePath?: string;
}

function pct(text: string, ref: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new KeyError(`${redactPkcs11Uri(ref)}: bad percent-encoding`);
  }
}

/** Parses `pkcs11:token=viw;object=int-tls?pin-source=/run/pin`. */
export function parsePkcs11Uri(ref: string): Pkcs11Uri {
  if (!ref.startsWith("pkcs11:")) throw new KeyError(`not a PKCS#11 URI: ${JSON.stringify(redactPkcs11Uri(ref))}`);
  const rest = ref.slice("pkcs11:".length);
  const q = rest.indexOf("?");
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? "" : rest.slice(q + 1);
  const out: Pkcs11Uri = {};
  for (const part of path.split(";").filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq < 0) throw new KeyError(`${redactPkcs11Uri(ref)}: attribute without value: ${part}`);
    const name = part.slice(0, eq);
    const value = pct(part.slice(eq + 1), ref);
    if (name === "token") out.token = value;
    else if (name === "object") out.object = value;
    else if (name === "id") out.id = Buffer.from(value, "latin1");
    else if (name === "serial") out.serial = value;
    else if (name === "slot-id") out.slotId = Number(value);
    else if (name === "type") out.type = value;
    // manufacturer, model, library-* etc. do not select anything we need.
  }
  for (const part of query.split("&").filter(Boolean)) {
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? "" : pct(part.slice(eq + 1), ref);
    if (name === "pin-value") out.pinValue = value;
    else if (name === "pin-source") out.pinSource = value;
    else if (name === "module-path") out.modulePath = value;
  }
  if (out.token === undefined && out.serial === undefined && out.slotId === undefined) {
    throw new KeyError(`${redactPkcs11Uri(ref)}: names no token (add token=LABEL)`);
  }
  return out;
}

/** The URI without its query, so a PIN never reaches a log or an error. */
export function redactPkcs11Uri(ref: string): string {
  const q = ref.indexOf("?");
  return q < 0 ? ref : ref.slice(0, q) + "?…";
}

/** The user PIN: the URI's pin-value or pin-source, else VIW_PKCS11_PIN. */
export function pinFor(uri: Pkcs11Uri, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (uri.pinValue !== undefined) return uri.pinValue;
  if (uri.pinSource !== undefined) {
    const file = uri.pinSource.startsWith("file:") ? new URL(uri.pinSource).pathname : uri.pinSource;
    try {
      return readFileSync(file, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new KeyError(`cannot read the PIN from pin-source ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, true);
    }
  }
  return env.VIW_PKCS11_PIN;
}
