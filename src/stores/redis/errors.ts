import { GovMapError, describeKey } from '../../map/errors.ts';

/**
 * The errors of the Redis store. They live here, not in `map/errors.ts`, because `map/` knows
 * nothing of Redis (DESIGN.md: dependencies point inward); they extend the same GovMapError, so a
 * caller handles them like any other map error (`instanceof GovMapError`, switch on `code`).
 */

/**
 * What a caller may assume about a write that failed with RedisUnavailableError.
 * - `not-applied`: the command never reached Redis, or Redis refused it before running it
 *   (offline client, CLUSTERDOWN, LOADING...). Retrying cannot apply it twice.
 * - `unknown`: the command was sent and the connection died or the reply timed out; Redis may
 *   have applied it. Reconcile (read the key) before retrying a non-idempotent write (`add`).
 * - `none`: a read; nothing was to be written.
 */
export type WriteOutcome = 'not-applied' | 'unknown' | 'none';

/** Why Redis could not answer. */
export type UnavailableReason =
  /** The client is not connected (down, reconnecting, or closed). */
  | 'OFFLINE'
  /** The connection dropped while the command was in flight. */
  | 'CONNECTION_LOST'
  /** No reply within `commandTimeoutMs`. */
  | 'TIMEOUT'
  /** The server answered CLUSTERDOWN, LOADING, MASTERDOWN, TRYAGAIN or READONLY. */
  | 'SERVER_NOT_READY';

/**
 * Redis could not be reached, or not in time. For a read, the near cache could not answer
 * either (no entry, or the entry is older than the staleness bound `staleReadMs`). For a write,
 * nothing is acknowledged that was not written: `outcome` says whether it may have been.
 */
export class RedisUnavailableError extends GovMapError {
  /** The map, or null for a failure to connect at all (`connectRedis`). */
  readonly map: string | null;
  readonly operation: string;
  readonly key: string | undefined;
  readonly reason: UnavailableReason;
  readonly outcome: WriteOutcome;

  constructor(map: string | null, operation: string, key: string | undefined, reason: UnavailableReason, outcome: WriteOutcome, cause?: unknown) {
    const what = key === undefined ? `${operation}()` : `${operation}() of key ${describeKey(key)}`;
    const effect =
      map === null
        ? 'no connection was made'
        : outcome === 'none'
          ? 'no value could be read (the near cache holds none within its staleness bound)'
          : outcome === 'not-applied'
            ? 'nothing was written'
            : 'the write may or may not have been applied: read the key before retrying';
    const subject = map === null ? 'redis' : `map "${map}"`;
    super('GOVMAP_REDIS_UNAVAILABLE', `${subject}: ${what} failed: Redis unavailable (${reason}); ${effect}`, { map, operation, key, reason, outcome }, { cause });
    this.map = map;
    this.operation = operation;
    this.key = key;
    this.reason = reason;
    this.outcome = outcome;
  }
}

/**
 * A Redis key of the map holds something its codec cannot read (another program wrote it, or a
 * different codec did): a wrong type, or a string that is not a canonical value. The map never
 * guesses at a value; the entry must be repaired or removed by hand.
 */
export class RedisValueCorruptError extends GovMapError {
  constructor(map: string, key: string, redisKey: string, rule: string) {
    super('GOVMAP_REDIS_VALUE_CORRUPT', `map "${map}": Redis key ${describeKey(redisKey)} (entry ${describeKey(key)}) ${rule}; it is left untouched`, { map, key, redisKey });
  }
}

/**
 * Redis answered a command with an error reply that is not about availability (out of memory
 * under `maxmemory`, an ACL refusal, a script error). The command was not applied.
 */
export class RedisCommandRefusedError extends GovMapError {
  constructor(map: string, operation: string, key: string | undefined, reply: string) {
    super(
      'GOVMAP_REDIS_COMMAND_REFUSED',
      `map "${map}": ${operation}()${key === undefined ? '' : ` of key ${describeKey(key)}`} refused by Redis: ${reply.slice(0, 200)}; nothing was written`,
      { map, operation, key, reply: reply.slice(0, 200) },
    );
  }
}
