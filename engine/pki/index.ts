/**
 * The PKI: key providers (software, PKCS#11), CA bootstrap, profile-enforced
 * issuance, the certificate store, CRL and OCSP, and the service the daemon
 * hosts (issuance API over mTLS + the plain-HTTP PKI port).
 */
export type { Signer, KeyProvider } from "./signer.js";
export { KeyRing, KeyError, SoftwareKeyProvider, Pkcs11KeyProvider, softwareSigner, generatePrivateKey, type KeysOptions } from "./keys/index.js";
export { initCa, offlineDir, caBundlePem, type InitCaOptions, type InitCaEntry } from "./ca.js";
export { createPkiService, type PkiService, type PkiServiceOptions, type ListenOptions } from "./service.js";
export { Authority, type ClientIdentity, type IssuedCertificate, type Logger, type Runtime } from "./authority.js";
export type { IssuanceTls } from "./api.js";
export { IssueError } from "./errors.js";
export { CertStore, REASON_CODES, type RevocationReason } from "./store.js";
export { buildCrl } from "./crl.js";
export { parseCsr } from "./csr.js";
export { enforceProfile } from "./profile.js";
export { toPem, fromPem } from "./x509.js";
