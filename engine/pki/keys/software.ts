import { constants, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KeyAlgorithm } from "../../config/index.js";
import type { KeyProvider, Signer } from "../signer.js";
import { algorithmOf, hashOf, KeyError, keyIdOf } from "./common.js";

const FILE_REF = /^file:([A-Za-z0-9][A-Za-z0-9._-]*)$/;

/** The file name of a `file:NAME` reference, refusing anything that could leave the key dir. */
export function fileRefName(ref: string): string {
  const m = FILE_REF.exec(ref);
  if (!m) throw new KeyError(`not a software key reference: ${JSON.stringify(ref)} (expected file:NAME)`);
  return m[1]!;
}

/** The key behind a software Signer, for the PKI's crypto workers (threads of this process) to sign with. */
const KEYS = new WeakMap<Signer, { key: KeyObject; hash: string | null }>();
export function softwareKeyOf(signer: Signer): { key: KeyObject; hash: string | null } | undefined {
  return KEYS.get(signer);
}

class SoftwareSigner implements Signer {
  readonly keyId: string;
  readonly algorithm: KeyAlgorithm;
  readonly publicKey: KeyObject;
  private readonly hash: string | null;

  constructor(private readonly key: KeyObject) {
    this.publicKey = createPublicKey(key);
    this.algorithm = algorithmOf(this.publicKey);
    this.keyId = keyIdOf(this.publicKey);
    this.hash = hashOf(this.algorithm);
    KEYS.set(this, { key, hash: this.hash });
  }

  // EC and Ed25519 sign in the synchronous form: their signature costs less
  // than the thread-pool hop of the callback form (see parseCsr in ../csr.ts).
  // RSA signatures (milliseconds) go to libuv's pool, off the event loop.
  sign(data: Uint8Array): Promise<Buffer> {
    const options = { key: this.key, dsaEncoding: "der" as const, padding: constants.RSA_PKCS1_PADDING };
    if (!this.algorithm.startsWith("rsa")) {
      try {
        return Promise.resolve(sign(this.hash, data, options));
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    return new Promise((resolve, reject) => sign(this.hash, data, options, (err, sig) => (err ? reject(err) : resolve(sig))));
  }
}

export function generatePrivateKey(algorithm: KeyAlgorithm): KeyObject {
  switch (algorithm) {
    case "ecdsa-p256":
      return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    case "ecdsa-p384":
      return generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    case "rsa-2048":
    case "rsa-3072":
    case "rsa-4096":
      return generateKeyPairSync("rsa", { modulusLength: Number(algorithm.slice(4)) }).privateKey;
    case "ed25519":
      return generateKeyPairSync("ed25519").privateKey;
  }
}

/** A Signer over a key the engine holds in memory (its own listener and log keys). */
export function softwareSigner(key: KeyObject): Signer {
  return new SoftwareSigner(key);
}

/**
 * Software keys in one directory (DATA/keys/, or DATA/offline/ for the root):
 * PKCS#8 PEM files of mode 0600, named by `file:NAME` references.
 */
export class SoftwareKeyProvider implements KeyProvider {
  readonly name = "software" as const;
  constructor(readonly dir: string) {}

  path(ref: string): string {
    return join(this.dir, fileRefName(ref));
  }

  async open(ref: string): Promise<Signer> {
    const path = this.path(ref);
    let pem: string;
    try {
      pem = readFileSync(path, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new KeyError(`key ${ref}: ${code === "ENOENT" ? "no such key file " + path : (err as Error).message}`, true);
    }
    try {
      return new SoftwareSigner(createPrivateKey(pem));
    } catch (err) {
      throw new KeyError(`key ${ref}: ${path} is not a private key (${(err as Error).message})`);
    }
  }

  async generate(ref: string, algorithm: KeyAlgorithm): Promise<Signer> {
    const path = this.path(ref);
    const key = generatePrivateKey(algorithm);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    try {
      // wx: never overwrite a key that exists, whoever made it.
      writeFileSync(path, key.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new KeyError(`key ${ref}: ${path} already exists`);
      throw err;
    }
    return new SoftwareSigner(key);
  }

  async close(): Promise<void> {}
}
