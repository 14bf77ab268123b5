/**
 * SPKI pin sets (pins/*.yaml): RFC 7469 pins, the pin-roll state machine and
 * the issuance gate it implies, pin-check telemetry for GET /v1/pins/ID, and
 * certificate renewal (the engine's own listeners and `viw agent renew`), and
 * emergency rotation (revoke + same-key reissue of a pin set or profile).
 */
export { pinOf, pinOfSpki, pinOfKey, isPin, shortPin, PinError, type PinResult, type PinSource } from "./pin.js";
export {
  PHASES,
  issuablePins,
  acceptedPins,
  pinAccepted,
  pinRetired,
  pinRetiredFrom,
  backupPins,
  effectiveRole,
  checkIssuance,
  checkProfileIssuance,
  checkPinSetRevision,
  type PinRefusal,
  type RevisionProblem,
} from "./roll.js";
export { PinTelemetry, pinRoutes, CONSUMER as PIN_TELEMETRY_CONSUMER, type PinStatus, type PinCountView } from "./telemetry.js";
export { realClock, ManualClock, type Clock } from "./clock.js";
export { Renewer, keepRenewed, engineCredential, validityOf, type Validity, type RenewalAlert, type RenewerOptions, type Credential, type KeepRenewedOptions, type EngineIssuer } from "./renew.js";
export { renewOnce, runAgent, makeCsr, newKey, installPair, recoverPair, AgentError, type AgentOptions, type RenewResult, type KeyType } from "./agent.js";
export { pinRollProblems } from "./revision.js";
export { emergencyRotate, emergencyRoutes, requestEmergencyRotation, EmergencyRequestError, authorityPki, ocspRequest, ocspAnswer, EmergencyError, EMERGENCY_REASONS, type EmergencyRequest, type EmergencyReport, type EmergencyPki, type LiveCert, type OcspStatus, type RevocationReason } from "./emergency.js";
