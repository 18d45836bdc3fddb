import { GovMapError, describeKey } from '../map/errors.ts';
import type { BreakerState } from './snapshot.ts';

/** The breaker did not make the call: it is OPEN, or HALF_OPEN with all its probes taken. */
export class CircuitOpenError extends GovMapError {
  readonly breaker: string;
  readonly state: BreakerState;
  /**
   * When the breaker will next let a call through (epoch ms), if it knows: null when HALF_OPEN,
   * and when OPEN past its wait while another instance probes (its verdict, not a time, decides).
   */
  readonly retryAt: number | null;

  constructor(breaker: string, state: BreakerState, retryAt: number | null) {
    super(
      'GOVMAP_CIRCUIT_OPEN',
      state === 'HALF_OPEN'
        ? `circuit "${breaker}" is HALF_OPEN and all its probe calls are taken; the call was not made`
        : `circuit "${breaker}" is OPEN; the call was not made${retryAt === null ? ' (another instance is probing the dependency; this one follows its verdict)' : ` (probing again from ${new Date(retryAt).toISOString()})`}`,
      { breaker, state, retryAt: retryAt === null ? null : new Date(retryAt).toISOString() },
    );
    this.breaker = breaker;
    this.state = state;
    this.retryAt = retryAt;
  }
}

/** The call did not settle within the breaker's timeout; its AbortSignal has been aborted. */
export class CallTimeoutError extends GovMapError {
  readonly breaker: string;
  readonly timeoutMs: number;

  constructor(breaker: string, timeoutMs: number) {
    super('GOVMAP_CALL_TIMEOUT', `call through circuit "${breaker}" did not settle within ${timeoutMs} ms; it was counted as a timeout and its signal aborted`, { breaker, timeoutMs });
    this.breaker = breaker;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * Thrown by a call to settle it without an outcome: its caller gave up (a client that hung up),
 * which says nothing of the dependency. The breaker counts it neither as a success nor as a
 * failure, and a HALF_OPEN probe abandoned so leaves its place to the next call. `cause` is the
 * call's own error.
 */
export class CallAbandonedError extends GovMapError {
  readonly breaker: string;

  constructor(breaker: string, cause: unknown) {
    super('GOVMAP_CALL_ABANDONED', `call through circuit "${breaker}" was abandoned by its caller; not counted for or against the dependency`, { breaker }, { cause });
    this.breaker = breaker;
  }
}

/** A key of a keyed breaker group that cannot name a breaker (and an etcd key segment). */
export class BreakerKeyError extends GovMapError {
  constructor(group: string, key: unknown, rule: string) {
    // Not String(key): a key with no string form (a null-prototype object) threw a bare TypeError from here.
    const shown = keyText(key);
    super('GOVMAP_BREAKER_KEY_INVALID', `breaker group "${group}": key ${JSON.stringify(shown)} is invalid: ${rule}`, { group, key: shown, rule });
  }
}

/**
 * A breaker method was given something it cannot use: `execute()` a call that is not a function
 * or a fallback that is neither a function nor `{ value }` (refused before admission, so a
 * programming error is never counted as a failure of the dependency, nor found only when the
 * breaker first opens); `restore()` a snapshot that would not pass decodeSnapshot.
 */
export class BreakerArgumentError extends GovMapError {
  constructor(breaker: string, operation: string, argument: string, rule: string, received: unknown) {
    super('GOVMAP_BREAKER_ARGUMENT_INVALID', `circuit "${breaker}": ${operation}() ${argument} is invalid: ${rule} (received ${describeKey(received)})`, { breaker, operation, argument, rule });
  }
}

/** A keyed breaker group was asked for a breaker after dispose(): a disposed group holds none and announces none. */
export class BreakerGroupDisposedError extends GovMapError {
  constructor(group: string, key: unknown) {
    const shown = keyText(key);
    super('GOVMAP_BREAKER_GROUP_DISPOSED', `breaker group "${group}": get("${shown}") called after dispose(); a disposed group creates no breakers`, { group, key: shown });
  }
}

/**
 * BreakerMetrics was asked to track something that is not a group, a breaker or a sync (a holder
 * of one, nothing at all). Refused at once: accepted, it failed every later scrape of the
 * registry, the map metrics sharing it included.
 */
export class NotABreakerSourceError extends GovMapError {
  constructor(method: 'trackGroup' | 'trackBreaker' | 'trackSync', expected: string, received: unknown) {
    const shown = typeof received === 'object' && received !== null ? `an object with keys ${JSON.stringify(Object.keys(received).slice(0, 8))}` : describeKey(received);
    super('GOVMAP_METRICS_NOT_A_BREAKER', `BreakerMetrics.${method}(): the argument must be ${expected}; received ${shown}`, { method, received: shown });
  }
}

/** A cluster sync was started or given breakers after close(): it would watch and write nothing, its breakers deciding alone while their owner believes them shared. */
export class BreakerSyncClosedError extends GovMapError {
  constructor(instance: string, operation: string) {
    super('GOVMAP_BREAKER_SYNC_CLOSED', `breaker cluster sync of instance "${instance}": ${operation}() called after close(); create a new BreakerClusterSync`, { instance, operation });
  }
}

/** A key as text for an error, at most 80 characters, whatever the caller passed. */
function keyText(key: unknown): string {
  if (typeof key === 'string') return key.slice(0, 80);
  try {
    return String(key).slice(0, 80);
  } catch {
    return Object.prototype.toString.call(key);
  }
}
