import type { RangeBounds } from './range.ts';

export type OpType = 'LOAD' | 'STORE' | 'DELETE' | 'RANGE';
export type Outcome = 'ok' | 'miss' | 'rejected' | 'error';

/**
 * What a map tells the parts that watch it (audit, sandbox). Called synchronously on the
 * operation's path, so an observer must do the least it can: copy fixed fields and return.
 * Arguments are positional, not an event object, so that observing allocates nothing.
 */
export interface MapObserver<K = unknown> {
  /**
   * @param value for STORE the value written (or refused), for DELETE the value removed (also
   *   by an expiry or an eviction, reason `EXPIRED` or `EVICTED`); `undefined` for reads. The
   *   audit records money from it as a decimal string.
   */
  onOperation(map: string, op: OpType, key: K | undefined, outcome: Outcome, reason: string | null, bounds: RangeBounds | null, value?: unknown): void;
  /** Lifecycle of the map instance itself. */
  onLifecycle?(map: string, event: 'CREATED' | 'DISPOSED'): void;
  /**
   * Resolves once everything this observer was told so far is durable (the audit: fsynced).
   * `updateAsync` awaits it before it settles, so an awaited write is a durable write.
   */
  flush?(): Promise<void>;
}
