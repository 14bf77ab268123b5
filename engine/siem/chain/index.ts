/**
 * The signed log chain (spec §4.3): the sealer turns the journal into
 * per-interval Merkle batches with signed, hash-linked manifests and
 * checkpoints in WORM storage; the verifier checks a WORM copy end to end;
 * inclusion proofs show one event is in the chain (found through the event
 * index); signed ingest receipts name the batch a bulk request's events go
 * to. Format: README.md here.
 */
export { createSealer, Sealer } from "./sealer.js";
export type { SealerOptions, SealerStatus } from "./sealer.js";
export { verifyChain } from "./verify.js";
export type { VerifyOptions, VerifyReport, Problem, ProblemKind, KeyReport } from "./verify.js";
export { proofFor, checkProof, proofRoutes, latestCheckpoint, checkpointsConsistent } from "./proof.js";
export type { InclusionProof, ProofCheck, ProofLookup, CheckpointAnswer } from "./proof.js";
export { verifyReceipt, parseReceipt, signReceipt, eventLeafHashes, RECEIPT_FORMAT } from "./receipt.js";
export type { Receipt, ReceiptCheck } from "./receipt.js";
export { EventIndex } from "./eventindex.js";
export type { EventLocation, EventLocator } from "./eventindex.js";
export { DirectoryWorm, WormIncidentError } from "./worm.js";
export type { WormStore, PutOptions } from "./worm.js";
export { FORMAT, intervalStart } from "./format.js";
export type { Manifest, Checkpoint, KeyChange } from "./format.js";
export * as merkle from "./merkle.js";
