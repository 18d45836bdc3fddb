export { createAuditRecorder, AuditRecorder } from './recorder.ts';
export type { AuditRecorderStats } from './recorder.ts';
export type { AuditRecorderOptions } from './options.ts';
export { verifySpool, formatVerifyReport } from './verify.ts';
export type { VerifyOptions, VerifyProblem, VerifyProgress, VerifyReport } from './verify.ts';
export { KafkaForwarder, AuditDeduplicator, startKafkaForwarder, dedupKeyOf, DEDUP_HEADER } from './kafka-forwarder.ts';
export type { KafkaForwarderOptions, KafkaForwarderStats } from './kafka-forwarder.ts';
export type { ForwarderLockHolder } from './errors.ts';
export { registerAuditMetrics } from './metrics.ts';
export { tailSpool } from './tail.ts';
export type { TailOptions } from './tail.ts';
export { parseSpoolLine, isReadStream, AUDIT_SCHEMA_VERSION, GENESIS_HASH } from './event.ts';
export { GOVERNANCE_OPS } from './event.ts';
export type { AuditEvent, AuditGap, AuditOpType, GovernanceOpType, AuditOutcome, GapCause, SealRecord, SegmentRecord, SpoolLine } from './event.ts';
export {
  AuditConfigurationError,
  AuditSpoolLockedError,
  AuditForwarderLockedError,
  AuditNotDurableError,
  AuditStoppedError,
  AuditSpoolDirectoryError,
  AuditSpoolPathError,
  AuditTamperedError,
  AuditJournalError,
  KafkaDrainTimeoutError,
  KafkaSendTimeoutError,
  AuditEventError,
} from './errors.ts';
export { defaultRecordValue } from './options.ts';
export { auditBreakerTransitions, auditSwitchChanges, auditLeakSuspects } from './governance.ts';
export type { GovernanceAuditSink } from './governance.ts';
export type { GovernanceEvent, GovernanceDetailValue } from './governance-event.ts';
export { MAX_DETAIL_CHARS } from './governance-event.ts';
