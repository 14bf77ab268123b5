import type { KeyObject } from "node:crypto";
import type { KeyAlgorithm } from "../config/index.js";

/**
 * A private key the engine can use but never read: software keys in the data
 * dir (development) or PKCS#11 objects (production). The CA, the OCSP
 * responder and the log sealer all sign through this.
 */
export interface Signer {
  /** Hex SHA-256 of the DER SubjectPublicKeyInfo. */
  readonly keyId: string;
  readonly algorithm: KeyAlgorithm;
  readonly publicKey: KeyObject;
  /**
   * Signs `data` (the signer hashes: SHA-256 for P-256/RSA, SHA-384 for P-384,
   * none for Ed25519). ECDSA signatures come back DER-encoded, as X.509, CRL,
   * OCSP and the sealed log use them.
   */
  sign(data: Uint8Array): Promise<Buffer>;
}

export interface KeyProvider {
  readonly name: "software" | "pkcs11";
  /** Opens an existing key by its issuer `key.ref` (file:NAME or an RFC 7512 pkcs11: URI). */
  open(ref: string): Promise<Signer>;
  /** Creates a key inside the provider (non-extractable on a token). */
  generate(ref: string, algorithm: KeyAlgorithm): Promise<Signer>;
  close(): Promise<void>;
}
