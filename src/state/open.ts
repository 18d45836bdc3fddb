import { ConfigurationError } from '../map/errors.ts';
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

/**
 * Opens the store a configuration names. Constructing an etcd store loads nothing: the etcd3
 * client is imported on the store's first operation.
 */
export function openStateStore(config: StateStoreConfig = { kind: 'memory' }): StateStore {
  switch (config?.kind) {
    case 'memory':
      return new MemoryStateStore();
    case 'file':
      return new FileStateStore(config);
    case 'etcd':
      return new EtcdStateStore(config);
    default:
      throw new ConfigurationError('kind', 'a state store is "memory", "file" or "etcd"', (config as { kind?: unknown } | undefined)?.kind);
  }
}
