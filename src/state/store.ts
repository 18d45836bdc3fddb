/**
 * The state store: one small interface behind which breaker and switch state lives, so that
 * the same code runs on an in-process map, a directory of files, or a real etcd cluster.
 *
 * Model (etcd's, reduced to what the parts need):
 * - a key is a `/`-separated path (`/govmap/circuit/<service>/<instance>`); its value is JSON
 *   text, handed back exactly as stored. The store never parses it: the consumer owns the
 *   schema, so the consumer is the one that can reject, log and count a malformed value.
 * - every write gives the key a new `revision`, greater than any revision the key had before.
 *   Compare revisions of the same key only (the file store numbers each key on its own).
 * - `compareAndSet` is the only write: it succeeds only if the key is still at the revision the
 *   writer last saw (`null` = the key must be absent). Two writers can never both win.
 * - a lease is a liveness token with a time to live; keys written under it vanish when it is
 *   revoked or expires (its holder died or lost the store), so a reader sees live writers only.
 * - a watch delivers every change under a prefix, in order, and resumes by itself after a
 *   disconnection; when it cannot resume (etcd compacted the history it needed) it re-lists and
 *   hands the consumer the complete current content (`onReset`) instead of a gap.
 */
export interface StateEntry {
  readonly key: string;
  /** JSON text exactly as it was written. */
  readonly value: string;
  /** Increases with every write of this key. */
  readonly revision: bigint;
}

/** Outcome of a compare-and-set: the new revision, or what the key holds instead. */
export type CasResult =
  | { readonly ok: true; readonly revision: bigint }
  | { readonly ok: false; readonly current: StateEntry | undefined };

export type StateEvent =
  | { readonly type: 'put'; readonly entry: StateEntry }
  | { readonly type: 'delete'; readonly key: string; readonly revision: bigint };

export interface StateWatchHandlers {
  /** One change under the prefix, in store order. */
  onEvent(event: StateEvent): void;
  /**
   * The complete current content under the prefix. Called first when the watch starts, and
   * again whenever the store had to re-list instead of resuming; the consumer replaces its view.
   */
  onReset(entries: readonly StateEntry[]): void;
  /** The connection to the store was lost or regained; the watch resumes by itself. */
  onStatus?(status: 'connected' | 'disconnected', error?: unknown): void;
}

export interface StateWatch {
  close(): Promise<void>;
}

/** A liveness token: keys written under it live as long as it does. Kept alive by its store. */
export interface StateLease {
  readonly id: string;
  /** Time to live, seconds: how long after its holder stops renewing it the lease expires. */
  readonly ttlSeconds: number;
  /** True once the store reported the lease gone; writes under it then fail. */
  readonly lost: boolean;
  /** Called once when the lease is lost (expired, revoked by someone else, store reset). */
  onLost(listener: () => void): () => void;
  /** Gives the lease up now: its keys are deleted. */
  revoke(): Promise<void>;
  /**
   * Stops renewing the lease without revoking it: its keys live on for its time to live, then
   * vanish, as if the holder had died (a restart within the TTL finds them). For a holder that
   * stops while the store stays open for others; `close()` of the store does this to every lease.
   */
  release(): void;
}

export interface CompareAndSetOptions {
  /** Attach the key to this lease (it is deleted when the lease ends). Default: no lease. */
  readonly lease?: StateLease;
}

export interface StateStore {
  /** `memory`, `file` or `etcd`: for logs and metrics. */
  readonly kind: string;
  get(key: string): Promise<StateEntry | undefined>;
  /** Every key that starts with `prefix`, in key order. */
  list(prefix: string): Promise<StateEntry[]>;
  /**
   * Writes `value` only if `key` is at revision `expected` (`null`: only if it is absent).
   * A failed comparison is not an error: the result carries the current entry.
   */
  compareAndSet(key: string, value: string, expected: bigint | null, options?: CompareAndSetOptions): Promise<CasResult>;
  /** Deletes `key` (only at revision `expected` when given). True if a key was deleted. */
  delete(key: string, expected?: bigint): Promise<boolean>;
  grantLease(ttlSeconds: number): Promise<StateLease>;
  /** Starts watching `prefix`; the first callback is `onReset` with the current content. */
  watch(prefix: string, handlers: StateWatchHandlers): StateWatch;
  /** Stops watches and lease renewals and releases connections. Leases are not revoked. */
  close(): Promise<void>;
}
