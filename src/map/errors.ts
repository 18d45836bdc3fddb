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
  const text = typeof key === 'string' ? JSON.stringify(key) : typeof key === 'bigint' ? `${key}n` : String(key);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The business validator refused a write. The map is unchanged. */
export class ValidationError extends GovMapError {
  readonly map: string;
  readonly key: unknown;
  /** The validator's own reason code, e.g. `BALANCE_UNDERFLOW`. */
  readonly reason: string;

  constructor(map: string, key: unknown, reason: string, detail?: string) {
    super(
      'GOVMAP_VALIDATION_REJECTED',
      `map "${map}": write to key ${describeKey(key)} rejected by its validator (${reason})${detail ? `: ${detail}` : ''}`,
      { map, key: typeof key === 'bigint' ? key.toString() : key, reason },
    );
    this.map = map;
    this.key = key;
    this.reason = reason;
  }
}

/** The validator itself threw: treated as a rejection (fail closed), with the cause attached. */
export class ValidatorFailedError extends GovMapError {
  constructor(map: string, key: unknown, cause: unknown) {
    super(
      'GOVMAP_VALIDATOR_FAILED',
      `map "${map}": the validator threw while checking key ${describeKey(key)}; the write was refused (fail closed)`,
      { map, key: typeof key === 'bigint' ? key.toString() : key },
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
  constructor(map: string, operation: string, argument: string, rule: string) {
    super('GOVMAP_INVALID_ARGUMENT', `map "${map}": ${operation}(): argument "${argument}" ${rule}`, {
      map,
      operation,
      argument,
    });
  }
}

/** The map is at `maxKeys` and its policy is to reject new keys. */
export class CapacityExceededError extends GovMapError {
  constructor(map: string, key: unknown, maxKeys: number) {
    super(
      'GOVMAP_CAPACITY_EXCEEDED',
      `map "${map}": cannot add key ${describeKey(key)}: the map holds its maximum of ${maxKeys} keys (policy "reject")`,
      { map, key: typeof key === 'bigint' ? key.toString() : key, maxKeys },
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
      { map, key: typeof key === 'bigint' ? key.toString() : key, attempts },
    );
  }
}

/** An asynchronous update was cancelled through its AbortSignal before it committed. */
export class UpdateAbortedError extends GovMapError {
  constructor(map: string, key: unknown, cause: unknown) {
    super(
      'GOVMAP_UPDATE_ABORTED',
      `map "${map}": updateAsync of key ${describeKey(key)} was aborted before it committed; the map is unchanged`,
      { map, key: typeof key === 'bigint' ? key.toString() : key },
      { cause },
    );
  }
}

/** The map was disposed; a disposed map accepts no operation (its lifecycle is explicit). */
export class MapDisposedError extends GovMapError {
  constructor(map: string, operation: string) {
    super('GOVMAP_MAP_DISPOSED', `map "${map}": ${operation}() called after dispose()`, { map, operation });
  }
}
