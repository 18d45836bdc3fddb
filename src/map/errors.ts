/**
 * Every error govmap throws is a GovMapError: a class a caller can `instanceof`, a stable
 * `code` a program can switch on, and a message that names the input and the rule it broke.
 * Codes never change meaning once released; new failures get new codes.
 */
export class GovMapError extends Error {
  /** Stable, machine-readable identifier, `GOVMAP_*`. */
  readonly code: string;
  /** Structured context (map name, key, reason...) safe to log and to return to a client. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: string, message: string, details: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.details = Object.freeze({ ...details });
  }

  toJSON(): { code: string; message: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** Keys are rendered in messages, never trusted: bound their length and escape control bytes. */
export function describeKey(key: unknown): string {
  const text = typeof key === 'string' ? JSON.stringify(key) : typeof key === 'bigint' ? `${key}n` : safeString(key);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** `String(value)`, or its tag when it has no string form (`Object.create(null)`, a throwing `toString`). */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Longest string key kept whole in an error's `details` (which are logged and sent to clients). */
const DETAIL_KEY_CHARS = 256;

/** A key as an error's `details` carry it: bigints as decimal text, long strings cut. */
export function keyDetail(key: unknown): unknown {
  if (typeof key === 'bigint') return key.toString();
  if (typeof key === 'string' && key.length > DETAIL_KEY_CHARS) return `${key.slice(0, DETAIL_KEY_CHARS)}... (${key.length} characters)`;
  return key;
}

/** What a thrown value says about itself, for a message (bounded). */
export function describeCause(cause: unknown): string {
  const text = cause instanceof Error ? `${cause.name}: ${cause.message}` : cause === undefined ? 'undefined' : typeof cause === 'string' ? cause : safeString(cause);
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/** The business validator refused a write. The map is unchanged. */
export class ValidationError extends GovMapError {
  readonly map: string;
  readonly key: unknown;
  /** The validator's own reason code, e.g. `BALANCE_UNDERFLOW`. */
  readonly reason: string;

  constructor(map: string, key: unknown, reason: string, detail?: string, operation: 'write' | 'delete' = 'write') {
    super(
      'GOVMAP_VALIDATION_REJECTED',
      `map "${map}": ${operation} of key ${describeKey(key)} rejected by its ${operation === 'delete' ? 'validateDelete' : 'validator'} (${reason})${detail ? `: ${detail}` : ''}`,
      { map, key: keyDetail(key), reason, operation },
    );
    this.map = map;
    this.key = key;
    this.reason = reason;
  }
}

/**
 * The validator itself failed: it threw, or it answered with a promise (validators run inside
 * the write's atomic step and must be synchronous). Treated as a rejection (fail closed), with
 * the cause attached.
 */
export class ValidatorFailedError extends GovMapError {
  constructor(map: string, key: unknown, cause: unknown, how: 'threw' | 'async' = 'threw', operation: 'write' | 'delete' = 'write') {
    const which = operation === 'delete' ? 'validateDelete' : 'the validator';
    super(
      'GOVMAP_VALIDATOR_FAILED',
      how === 'async'
        ? `map "${map}": ${which} returned a promise while checking key ${describeKey(key)}; validators must be synchronous (do async checks before the write, or in updateAsync's function); the ${operation} was refused`
        : `map "${map}": ${which} threw while checking key ${describeKey(key)} (${describeCause(cause)}); the ${operation} was refused (fail closed)`,
      { map, key: keyDetail(key), operation, rule: how === 'async' ? 'VALIDATOR_ASYNC' : 'VALIDATOR_THREW' },
      { cause },
    );
  }
}

/** A map was configured without a business validator, or with an invalid option. */
export class ConfigurationError extends GovMapError {
  constructor(option: string, rule: string, received?: unknown) {
    super(
      'GOVMAP_INVALID_CONFIGURATION',
      `invalid option "${option}": ${rule}${received === undefined ? '' : ` (received ${describeKey(received)})`}`,
      { option, rule },
    );
  }
}

/** An argument of a map operation broke the operation's contract (e.g. storing `undefined`). */
export class InvalidArgumentError extends GovMapError {
  constructor(map: string, operation: string, argument: string, rule: string, code = 'GOVMAP_INVALID_ARGUMENT', details: Record<string, unknown> = {}) {
    super(code, `map "${map}": ${operation}(): argument "${argument}" ${rule}`, {
      map,
      operation,
      argument,
      ...details,
    });
  }
}

/**
 * range() bounds that cannot mean what the caller meant; an InvalidArgumentError (a handler that
 * maps those to a 400 keeps working), with its own codes:
 * - GOVMAP_RANGE_BOUNDS_REVERSED: `start` sorts after `end`, which would walk nothing
 * - GOVMAP_RANGE_BOUNDS_MISMATCHED: `start` and `end` are of different types, or a bound is of
 *   another type than a key it is compared with (a number from an unconverted query string over
 *   string keys), which would walk every key
 * `details.start` and `details.end` carry both bounds (bigints as decimal text).
 */
export class RangeBoundsError extends InvalidArgumentError {
  constructor(map: string, operation: string, argument: string, rule: string, code: 'GOVMAP_RANGE_BOUNDS_REVERSED' | 'GOVMAP_RANGE_BOUNDS_MISMATCHED', start: unknown, end: unknown) {
    super(map, operation, argument, rule, code, { start: keyDetail(start) ?? null, end: keyDetail(end) ?? null });
  }
}

/** The map is at `maxKeys` and its policy is to reject new keys. */
export class CapacityExceededError extends GovMapError {
  constructor(map: string, key: unknown, maxKeys: number) {
    super(
      'GOVMAP_CAPACITY_EXCEEDED',
      `map "${map}": cannot add key ${describeKey(key)}: the map holds its maximum of ${maxKeys} keys (policy "reject")`,
      { map, key: keyDetail(key), maxKeys },
    );
  }
}

/** A range callback returned a promise: range callbacks must be synchronous and must not block. */
export class AsyncRangeCallbackError extends GovMapError {
  constructor(map: string) {
    super(
      'GOVMAP_ASYNC_RANGE_CALLBACK',
      `map "${map}": range() callback returned a promise; range callbacks must be synchronous (collect the entries, then do async work after the walk)`,
      { map },
    );
  }
}

/** A read-modify-write saw the key change under it more often than its retry bound allows. */
export class UpdateConflictError extends GovMapError {
  constructor(map: string, key: unknown, attempts: number, why: string) {
    super(
      'GOVMAP_UPDATE_CONFLICT',
      `map "${map}": update of key ${describeKey(key)} gave up after ${attempts} attempt(s): ${why}`,
      { map, key: keyDetail(key), attempts },
    );
  }
}

/** An asynchronous update was cancelled through its AbortSignal before it committed. */
export class UpdateAbortedError extends GovMapError {
  constructor(map: string, key: unknown, cause: unknown) {
    super(
      'GOVMAP_UPDATE_ABORTED',
      `map "${map}": updateAsync of key ${describeKey(key)} was aborted before it committed; the map is unchanged`,
      { map, key: keyDetail(key) },
      { cause },
    );
  }
}

/** The map was disposed; a disposed map accepts no operation (its lifecycle is explicit). */
export class MapDisposedError extends GovMapError {
  /** `whileRunning`: the call began before dispose() and found the map disposed when it came to commit. */
  constructor(map: string, operation: string, whileRunning = false) {
    super(
      'GOVMAP_MAP_DISPOSED',
      whileRunning
        ? `map "${map}": the map was disposed while ${operation}() was running; nothing was written`
        : `map "${map}": ${operation}() called after dispose()`,
      { map, operation },
    );
  }
}

/**
 * The store refused a write the validator had accepted (a shared store's key too long for its
 * layout, a value out of its range, its table full...). The map is unchanged; the refusal is
 * counted and audited. Stores that throw govmap errors of their own pass them through as is.
 */
export class StoreRefusedError extends GovMapError {
  constructor(map: string, key: unknown, store: string, cause: unknown) {
    super(
      'GOVMAP_STORE_REFUSED',
      `map "${map}": the ${store} store refused the write of key ${describeKey(key)} (${describeCause(cause)}); the map is unchanged`,
      { map, key: keyDetail(key), store },
      { cause },
    );
  }
}

/**
 * An observer's flush (e.g. a third-party audit sink's) failed after updateAsync committed.
 * The write IS applied (`details.applied`): retrying the update would apply it twice.
 */
export class ObserverFlushError extends GovMapError {
  /** `operation`: the write the caller made (the Redis map's `add`, `store`...; updateAsync by default). */
  constructor(map: string, key: unknown, cause: unknown, operation = 'updateAsync') {
    super(
      'GOVMAP_OBSERVER_FLUSH_FAILED',
      `map "${map}": ${operation} of key ${describeKey(key)} was applied, but an observer could not make it durable (${describeCause(cause)}); do not retry it`,
      { map, key: keyDetail(key), applied: true },
      { cause },
    );
  }
}

/** An updateAsync of a key from inside an updateAsync of the same key: it would wait for itself forever. */
export class UpdateReentrantError extends GovMapError {
  constructor(map: string, key: unknown) {
    super(
      'GOVMAP_UPDATE_REENTRANT',
      `map "${map}": updateAsync of key ${describeKey(key)} was called from inside an update of the same key, which would wait for itself forever; return the new value from the outer update instead`,
      { map, key: keyDetail(key) },
    );
  }
}
