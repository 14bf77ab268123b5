/**
 * The PKI: key providers (software, PKCS#11), CA bootstrap, profile-enforced
 * issuance, the certificate store, CRL and OCSP, and the service the daemon
 * hosts (issuance API over mTLS + the plain-HTTP PKI port).
 */
export type { Signer, KeyProvider } from "./signer.js";
export { KeyRing, KeyError, SoftwareKeyProvider, Pkcs11KeyProvider, softwareSigner, generatePrivateKey, type KeysOptions } from "./keys/index.js";
export { initCa, offlineDir, type InitCaOptions, type InitCaEntry } from "./ca.js";
