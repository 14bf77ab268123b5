/**
 * The PKI: key providers (software, PKCS#11), CA bootstrap, profile-enforced
 * issuance, the certificate store, CRL and OCSP, and the service the daemon
 * hosts (issuance API over mTLS + the plain-HTTP PKI port).
 *
 * What the daemon uses:
 *   const keys = new KeyRing({ dataDir, pkcs11Module? });          // file: and pkcs11: key refs
 *   await initCa({ dataDir, state, provider: keys });              // first --dev start (idempotent)
 *   const pki = createPkiService({ dataDir, provider: keys, log }); // a Service: prepare(next) / commit()
 *     // cryptoWorkers (default one per core up to 4, none on one core): threads for the CSR checks and software-key leaf signatures (workers.ts)
 *   await pki.issueForEngine("engine-listener", publicKey, { cn, dns, ip });  // its own certificates
 *   await pki.listen({ issuance: { host, port, tls: { cert, key, ca: caBundlePem(dataDir, state) } }, pki: { host, port } });
 *   await pki.close(); await keys.close();
 * `viw ca init` (engine/cli/ca.ts) calls initCa; `viw ca crl` / `ca revoke-intermediate`
 * call signRootCrl / revokeIntermediate (the offline root's CRLs, signed where its key is).
 */
export type { Signer, KeyProvider } from "./signer.js";
export { KeyRing, KeyError, SoftwareKeyProvider, Pkcs11KeyProvider, softwareSigner, generatePrivateKey, type KeysOptions } from "./keys/index.js";
export { initCa, offlineDir, caBundlePem, type InitCaOptions, type InitCaEntry } from "./ca.js";
export { createPkiService, type PkiService, type PkiServiceOptions, type ListenOptions } from "./service.js";
export { Authority, type ClientIdentity, type IssuedCertificate, type Logger, type Runtime } from "./authority.js";
export type { IssuanceTls } from "./api.js";
export { IssueError } from "./errors.js";
export { CertStore, REASON_CODES, type RevocationReason, type LiveCertificate } from "./store.js";
export { buildCrl } from "./crl.js";
export { signRootCrl, revokeIntermediate, rootCrlPaths, RootCrlError, type RootCrlOptions, type RootCrlResult, type RootRevocation } from "./rootcrl.js";
export { parseCsr } from "./csr.js";
export { enforceProfile } from "./profile.js";
export { toPem, fromPem, normalizeSerial } from "./x509.js";
