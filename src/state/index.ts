export type { StateStore, StateEntry, StateEvent, StateLease, StateWatch, StateWatchHandlers, CasResult, CompareAndSetOptions } from './store.ts';
export { MemoryStateStore } from './memory-store.ts';
export { FileStateStore } from './file-store.ts';
export type { FileStateStoreOptions } from './file-store.ts';
export { EtcdStateStore } from './etcd-store.ts';
export type { EtcdStateStoreOptions } from './etcd-store.ts';
export { StateKeyError, StateArgumentError, StateStoreUnavailableError, StateLeaseLostError, StateStoreClosedError, assertStateKey, MAX_KEY_LENGTH, MAX_VALUE_BYTES } from './errors.ts';
export { openStateStore } from './open.ts';
export type { StateStoreConfig } from './open.ts';
