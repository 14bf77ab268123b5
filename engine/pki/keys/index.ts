/**
 * Key providers: software keys in the data dir (`file:NAME`) and PKCS#11
 * tokens (RFC 7512 `pkcs11:` URIs), behind the Signer/KeyProvider contract.
 */
import { join } from "node:path";
import type { KeyAlgorithm } from "../../config/index.js";
import type { KeyProvider, Signer } from "../signer.js";
import { KeyError } from "./common.js";
import { Pkcs11KeyProvider } from "./pkcs11.js";
import { SoftwareKeyProvider } from "./software.js";

export { KeyError, algorithmOf, keyIdOf } from "./common.js";
export { SoftwareKeyProvider, softwareSigner, softwareKeyOf, generatePrivateKey, fileRefName } from "./software.js";
export { Pkcs11KeyProvider, type Pkcs11Options } from "./pkcs11.js";
export { parsePkcs11Uri, redactPkcs11Uri } from "./uri.js";

export interface KeysOptions {
  dataDir: string;
  /** PKCS#11 module path; without it `pkcs11:` references are refused. */
  pkcs11Module?: string;
  sessions?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * The engine's keys: `file:` references live in DATA/keys/, `pkcs11:` ones on
 * a token of the configured module. Its name says which provider new
 * intermediate keys go to.
 */
export class KeyRing implements KeyProvider {
  readonly name: "software" | "pkcs11";
  readonly software: SoftwareKeyProvider;
  readonly pkcs11?: Pkcs11KeyProvider;

  constructor(options: KeysOptions) {
    this.software = new SoftwareKeyProvider(join(options.dataDir, "keys"));
    if (options.pkcs11Module) this.pkcs11 = new Pkcs11KeyProvider({ module: options.pkcs11Module, sessions: options.sessions, env: options.env });
    this.name = this.pkcs11 ? "pkcs11" : "software";
  }

  private route(ref: string): KeyProvider {
    if (ref.startsWith("file:")) return this.software;
    if (ref.startsWith("pkcs11:")) {
      if (!this.pkcs11) throw new KeyError(`key ${ref.split("?")[0]} is on a PKCS#11 token but no PKCS#11 module is configured (--pkcs11-module)`, true);
      return this.pkcs11;
    }
    throw new KeyError(`unknown key reference scheme: ${JSON.stringify(ref.split("?")[0])} (expected file:NAME or pkcs11:...)`);
  }

  async open(ref: string): Promise<Signer> {
    return this.route(ref).open(ref);
  }

  async generate(ref: string, algorithm: KeyAlgorithm): Promise<Signer> {
    return this.route(ref).generate(ref, algorithm);
  }

  async close(): Promise<void> {
    await this.software.close();
    await this.pkcs11?.close();
  }
}
