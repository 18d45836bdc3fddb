export { createAuditRecorder, AuditRecorder } from './recorder.ts';
export type { AuditRecorderStats } from './recorder.ts';
export type { AuditRecorderOptions } from './options.ts';
export { verifySpool, formatVerifyReport } from './verify.ts';
export type { VerifyOptions, VerifyProblem, VerifyReport } from './verify.ts';
