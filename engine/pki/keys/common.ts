import { createHash, type KeyObject } from "node:crypto";
import type { KeyAlgorithm } from "../../config/index.js";

/** Hex SHA-256 of the DER SubjectPublicKeyInfo: the Signer's keyId. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash("sha256").update(publicKey.export({ type: "spki", format: "der" })).digest("hex");
}

/** The hash the Signer applies for an algorithm (null: Ed25519 signs the message itself). */
export function hashOf(algorithm: KeyAlgorithm): "sha256" | "sha384" | null {
  if (algorithm === "ed25519") return null;
  return algorithm === "ecdsa-p384" ? "sha384" : "sha256";
}

/** The algorithm a public key is, or a message saying why it is none we sign with. */
export function algorithmOf(publicKey: KeyObject): KeyAlgorithm {
  return algorithmOfDetails(publicKey.asymmetricKeyType, publicKey.asymmetricKeyDetails ?? {});
}

/** algorithmOf from a key's type and details (what a crypto worker reports of a key it imported). */
export function algorithmOfDetails(type: string | undefined, d: { namedCurve?: string; modulusLength?: number }): KeyAlgorithm {
  switch (type) {
    case "ec":
      if (d.namedCurve === "prime256v1" || d.namedCurve === "P-256") return "ecdsa-p256";
      if (d.namedCurve === "secp384r1" || d.namedCurve === "P-384") return "ecdsa-p384";
      break;
    case "rsa":
      if (d.modulusLength === 2048) return "rsa-2048";
      if (d.modulusLength === 3072) return "rsa-3072";
      if (d.modulusLength === 4096) return "rsa-4096";
      break;
    case "ed25519":
      return "ed25519";
  }
  throw new KeyError(`unsupported key: ${type}${d.namedCurve ? " " + d.namedCurve : ""}${d.modulusLength ? " " + d.modulusLength + " bits" : ""}`);
}

/**
 * A key that cannot be used: missing file or token object, wrong PIN, token
 * absent. `unavailable` marks the cases an API answers with 503.
 */
export class KeyError extends Error {
  constructor(
    message: string,
    readonly unavailable = false,
  ) {
    super(message);
    this.name = "KeyError";
  }
}
