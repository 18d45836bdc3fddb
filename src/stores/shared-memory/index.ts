export { SharedInt64Store } from './int64-store.ts';
export { SharedRecordStore } from './record-store.ts';
export type { SharedRecordStoreOptions } from './record-store.ts';
export { SharedMemoryStore } from './store-base.ts';
export type { SharedAttachOptions, SharedMapHandle, SharedMapOptions, SharedMapStats, IntegrityReport, GrowableSharedArrayBuffer } from './shared-table.ts';
export type { FieldType, RecordLayout, RecordOf, ValueLayout } from './codecs.ts';
export { MAX_RECORD_FIELDS } from './codecs.ts';
export {
  SharedKeyError,
  SharedValueError,
  SharedInt64OverflowError,
  SharedMapFullError,
  SharedThreadsExhaustedError,
  SharedLockTimeoutError,
  SharedHandleError,
  SharedStoreClosedError,
} from './errors.ts';
