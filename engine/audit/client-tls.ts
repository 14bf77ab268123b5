import { DEFAULT_CIPHERS, createSecureContext, type SecureVersion } from "node:tls";

/**
 * The client side of the TLS audit (Dogtag's PKI client environment
 * variables): `viw` commands that speak TLS to the engine take the allowed
 * versions and suites from the environment, so an operator can reproduce a
 * refused handshake (e.g. VIW_TLS_MAX_VERSION=TLSv1.2 against the TLS
 * 1.3-only issuance port) and see it in the audit log.
 *
 *   VIW_TLS_MIN_VERSION / VIW_TLS_MAX_VERSION  TLSv1 | TLSv1.1 | TLSv1.2 | TLSv1.3 (also 1.2, tls1.2, tls1_2)
 *   VIW_TLS_CIPHERS       TLS 1.2-and-below cipher list, OpenSSL syntax (ECDHE-ECDSA-AES128-GCM-SHA256:...)
 *   VIW_TLS_CIPHERSUITES  TLS 1.3 suites, colon-separated (TLS_AES_128_GCM_SHA256:...)
 *
 * Setting one of the two cipher variables keeps node's defaults for the other
 * protocol family, so each can be narrowed on its own.
 */

export interface ClientTlsOptions {
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  ciphers?: string;
}

export class ClientTlsEnvError extends Error {
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = "ClientTlsEnvError";
  }
}

const VERSIONS: readonly SecureVersion[] = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
const TLS13_SUITES = ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256", "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"];

function version(variable: string, raw: string | undefined): SecureVersion | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const m = /^(?:tls\s*v?)?1(?:[._](\d))?$/i.exec(raw.trim());
  const v = m ? (m[1] === undefined || m[1] === "0" ? "TLSv1" : `TLSv1.${m[1]}`) : "";
  if (!(VERSIONS as readonly string[]).includes(v)) {
    throw new ClientTlsEnvError(variable, `${JSON.stringify(raw)} is not a TLS version; use one of ${VERSIONS.join(", ")}`);
  }
  return v as SecureVersion;
}

function split(list: string): string[] {
  return list.split(":").map((s) => s.trim()).filter(Boolean);
}

/** Reads and checks the VIW_TLS_* variables; throws ClientTlsEnvError naming the variable at fault. */
export function clientTlsOptions(env: NodeJS.ProcessEnv = process.env): ClientTlsOptions {
  const out: ClientTlsOptions = {};
  const min = version("VIW_TLS_MIN_VERSION", env.VIW_TLS_MIN_VERSION);
  const max = version("VIW_TLS_MAX_VERSION", env.VIW_TLS_MAX_VERSION);
  if (min && max && VERSIONS.indexOf(min) > VERSIONS.indexOf(max)) {
    throw new ClientTlsEnvError("VIW_TLS_MIN_VERSION", `${min} is above VIW_TLS_MAX_VERSION ${max}`);
  }
  if (min) out.minVersion = min;
  if (max) out.maxVersion = max;

  const rawCiphers = env.VIW_TLS_CIPHERS?.trim();
  const rawSuites = env.VIW_TLS_CIPHERSUITES?.trim();
  if (!rawCiphers && !rawSuites) return out;
  const defaults = split(DEFAULT_CIPHERS);
  let tls12 = defaults.filter((c) => !c.startsWith("TLS_"));
  let tls13 = defaults.filter((c) => c.startsWith("TLS_"));
  if (rawCiphers) {
    tls12 = split(rawCiphers);
    const misplaced = tls12.find((c) => c.startsWith("TLS_"));
    if (misplaced) throw new ClientTlsEnvError("VIW_TLS_CIPHERS", `${misplaced} is a TLS 1.3 suite; put it in VIW_TLS_CIPHERSUITES`);
    try {
      createSecureContext({ ciphers: tls12.join(":") });
    } catch {
      throw new ClientTlsEnvError("VIW_TLS_CIPHERS", `no cipher in ${JSON.stringify(rawCiphers)} is known to OpenSSL (see \`openssl ciphers -v\`)`);
    }
  }
  if (rawSuites) {
    tls13 = split(rawSuites);
    const unknown = tls13.find((s) => !TLS13_SUITES.includes(s));
    if (unknown) throw new ClientTlsEnvError("VIW_TLS_CIPHERSUITES", `${JSON.stringify(unknown)} is not a TLS 1.3 suite; use ${TLS13_SUITES.join(", ")}`);
  }
  out.ciphers = [...tls13, ...tls12].join(":");
  return out;
}
