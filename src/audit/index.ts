export { createAuditRecorder, AuditRecorder } from './recorder.ts';
export type { AuditRecorderStats } from './recorder.ts';
export type { AuditRecorderOptions } from './options.ts';
