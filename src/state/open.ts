import { ConfigurationError } from '../map/errors.ts';
import { refuseUnknownOptions } from '../map/known-options.ts';
import { EtcdStateStore } from './etcd-store.ts';
import type { EtcdStateStoreOptions } from './etcd-store.ts';
import { FileStateStore } from './file-store.ts';
import type { FileStateStoreOptions } from './file-store.ts';
import { MemoryStateStore } from './memory-store.ts';
import type { StateStore } from './store.ts';

/** Which store to open: the embedded default, a directory, or a real etcd. */
export type StateStoreConfig =
  | { readonly kind: 'memory' }
  | ({ readonly kind: 'file' } & FileStateStoreOptions)
  | ({ readonly kind: 'etcd' } & EtcdStateStoreOptions);

/** A memory store takes nothing but its kind. */
const MEMORY_CONFIG: ReadonlySet<string> = new Set(['kind']);

/**
 * Opens the store a configuration names. Constructing an etcd store loads nothing: the etcd3
 * client is imported on the store's first operation.
 */
export function openStateStore(config: StateStoreConfig = { kind: 'memory' }): StateStore {
  // `kind` picks the store; the store itself takes the rest only (it refuses keys it does not know).
  switch (config?.kind) {
    case 'memory':
      refuseUnknownOptions(config, MEMORY_CONFIG, 'openStateStore({ kind: "memory" })');
      return new MemoryStateStore();
    case 'file': {
      const { kind: _file, ...options } = config;
      return new FileStateStore(options);
    }
    case 'etcd': {
      const { kind: _etcd, ...options } = config;
      return new EtcdStateStore(options);
    }
    default:
      throw new ConfigurationError('kind', 'a state store is "memory", "file" or "etcd"', (config as { kind?: unknown } | undefined)?.kind);
  }
}
