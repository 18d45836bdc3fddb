import type { LuaScript } from './lua.ts';
import type { UnavailableReason, WriteOutcome } from './errors.ts';

/**
 * A connection to Redis (one server, or every master of a cluster) as the remote map needs it:
 * reads that the server tracks for invalidation, single-key scripts, key scans, and what the
 * connection hears: invalidations and its own health. Several maps may share one link (each
 * filters invalidations by its key prefix).
 *
 * Invariants an implementation keeps:
 * - `get` is a plain GET on a connection with RESP3 client tracking ON, so the server will send
 *   an invalidation for that key to this link's listeners after the next write by anyone.
 * - Replies and invalidations of one connection reach listeners in the order the server sent
 *   them (RESP3 push messages share the connection with replies).
 * - `down(sinceMs)` is reported before any invalidation can have been missed; `up()` only once
 *   tracking is on again. Between the two the link delivers no invalidations it can vouch for.
 */
export interface RedisLink {
  /** `redis` (one server) or `redis-cluster`. */
  readonly kind: string;
  /** Whether every connection is up and tracking. */
  readonly healthy: boolean;
  get(key: string): Promise<string | null>;
  /** Runs a single-key script (EVALSHA, EVAL on NOSCRIPT) on the server owning `key`. */
  runScript(script: LuaScript, key: string, args: readonly string[]): Promise<unknown>;
  /** Every key matching the glob `match` on every master, in batches. Weakly consistent (SCAN). */
  scan(match: string, batchSize: number): AsyncIterable<readonly string[]>;
  /** Listens to invalidations and health; returns the unsubscribe function. */
  listen(listener: LinkListener): () => void;
  close(): Promise<void>;
}

export interface LinkListener {
  /** The server dropped `key` from tracking (it was written, expired or evicted); null = all keys. */
  invalidated(key: string | null): void;
  /**
   * A connection was lost or stopped answering. `sinceMs` (ms since epoch) is the last moment it
   * was known to deliver invalidations: staleness of anything cached is measured from there.
   */
  down(sinceMs: number): void;
  /** Every connection is back and tracking again; anything cached before is unvouched for. */
  up(): void;
}

/** The longest delay a Node timer honours (2^31 - 1 ms, about 24.8 days); past it, it fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A failed Redis call, classified by the link so the map can raise the right typed error with
 * its own context (map name, operation, key). Internal to the Redis store.
 */
export class LinkFailure extends Error {
  readonly kind: UnavailableReason | 'WRONGTYPE' | 'REFUSED';
  /** For a write: could it have been applied? */
  readonly outcome: Exclude<WriteOutcome, 'none'>;

  constructor(kind: LinkFailure['kind'], outcome: LinkFailure['outcome'], message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'LinkFailure';
    this.kind = kind;
    this.outcome = outcome;
  }
}
