export { createAuditRecorder, AuditRecorder } from './recorder.ts';
export type { AuditRecorderStats } from './recorder.ts';
export type { AuditRecorderOptions } from './options.ts';
export { verifySpool, formatVerifyReport } from './verify.ts';
export type { VerifyOptions, VerifyProblem, VerifyReport } from './verify.ts';
export { KafkaForwarder, AuditDeduplicator, startKafkaForwarder, dedupKeyOf, DEDUP_HEADER } from './kafka-forwarder.ts';
export type { KafkaForwarderOptions, KafkaForwarderStats } from './kafka-forwarder.ts';
