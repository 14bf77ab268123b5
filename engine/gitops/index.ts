/**
 * GitOps: where revisions come from (a watched directory, a followed git
 * remote or local repo, the push webhook), which of them may be applied
 * (signatures against an allowed-signers file, anti-rollback, signed
 * approvals of relaxations), the reconciler that applies one revision at a
 * time to every hosted Service all or nothing, and the signed timeline of
 * what was live when.
 */
export { Reconciler, summarize } from "./reconcile.js";
export type { Applied, Attempt, ConfigEvent, ReconcilerOptions, Stage } from "./reconcile.js";
export { DirSource, debounce } from "./source.js";
export type { Source } from "./source.js";
export { RemoteGitSource, LocalGitSource, redactUrl, credentialEnv } from "./source-git.js";
export { checkWebhook } from "./webhook.js";
export { verifyCommit, isDescendant, treeOf } from "./trust.js";
export type { Signer, TrustResult } from "./trust.js";
export { approve, readApprovals, countApprovals, approvalsTip, approvalMessage, allowedPrincipals, APPROVALS_REF, APPROVAL_NAMESPACE } from "./approvals.js";
export type { Approval, ApproveOptions, ApproveResult } from "./approvals.js";
export { Timeline, readTimeline, fileSigner, keySigner } from "./timeline.js";
export type { TimelineEntry, TimelineRecord, TimelineSigner, PlanSummary, Verification, KeyInfo } from "./timeline.js";
export { buildEvidence, evidenceMarkdown } from "./evidence.js";
export type { Evidence, LiveInterval } from "./evidence.js";
export { ServiceError } from "./service.js";
export type { Service, Prepared } from "./service.js";
