import { ConfigurationError, GovMapError, describeKey } from '../map/errors.ts';

/** A key that no store accepts: not a `/`-rooted path, too long, or with control characters. */
export class StateKeyError extends GovMapError {
  constructor(key: unknown, rule: string) {
    super('GOVMAP_STATE_KEY_INVALID', `state key ${describeKey(key)} is invalid: ${rule}`, { key: typeof key === 'string' ? key.slice(0, 200) : String(key), rule });
  }
}

/** The store could not be reached or failed the operation; nothing was changed by this call. */
export class StateStoreUnavailableError extends GovMapError {
  constructor(store: string, operation: string, cause: unknown) {
    super(
      'GOVMAP_STATE_UNAVAILABLE',
      `state store "${store}": ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      { store, operation },
      { cause },
    );
  }
}

/** A write named a lease that has ended; the key was not written. */
export class StateLeaseLostError extends GovMapError {
  constructor(store: string, leaseId: string) {
    super('GOVMAP_STATE_LEASE_LOST', `state store "${store}": lease ${leaseId} has ended; grant a new lease and write again`, { store, leaseId });
  }
}

/** An operation on a store after `close()`. */
export class StateStoreClosedError extends GovMapError {
  constructor(store: string, operation: string) {
    super('GOVMAP_STATE_STORE_CLOSED', `state store "${store}": ${operation}() called after close()`, { store, operation });
  }
}

/** Upper bound of a value, bytes of UTF-8: what govmap's file sources take, and room within etcd's 1.5 MiB request limit. */
export const MAX_VALUE_BYTES = 1024 * 1024;

/** Upper bound of a key, bytes: far above any key govmap writes, far below etcd's 1.5 MiB request limit. */
export const MAX_KEY_LENGTH = 512;

// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const CONTROL = /[\u0000-\u001f\u007f]/;
/**
 * A UTF-16 surrogate without its pair. Such a string has no UTF-8 form: etcd would store U+FFFD
 * in its place (the key read back or watched differs from the key written) and the file store
 * cannot URI-encode it into a file name.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Throws StateKeyError unless `key` is a `/`-rooted printable path of at most MAX_KEY_LENGTH. */
export function assertStateKey(key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string') throw new StateKeyError(key, `a ${what} must be a string`);
  if (!key.startsWith('/')) throw new StateKeyError(key, `a ${what} must start with "/"`);
  if (key.length > MAX_KEY_LENGTH) throw new StateKeyError(key, `a ${what} is at most ${MAX_KEY_LENGTH} characters`);
  if (CONTROL.test(key)) throw new StateKeyError(key, `a ${what} must not contain control characters`);
  if (LONE_SURROGATE.test(key)) throw new StateKeyError(key, `a ${what} must be well-formed Unicode (no unpaired surrogate)`);
}

/** An argument of a store operation other than the key is of the wrong type; nothing was written. */
export class StateArgumentError extends GovMapError {
  constructor(operation: string, argument: string, rule: string, received: unknown) {
    super('GOVMAP_STATE_ARGUMENT_INVALID', `state store ${operation}(): ${argument} is invalid: ${rule} (received ${describeKey(received)})`, { operation, argument, rule });
  }
}

/**
 * Throws StateArgumentError unless `value` is text and `expected` a revision or null. A number
 * where a bigint revision belongs would never equal one: the write would fail its comparison
 * forever instead of being refused.
 */
export function assertWrite(value: unknown, expected: unknown): void {
  if (typeof value !== 'string') throw new StateArgumentError('compareAndSet', 'value', 'the value is JSON text (a string)', value);
  // Refused here, by every store, and not left to etcd: it fails an oversized request as
  // "unavailable" after the client retried it, and those failures open the etcd client's own
  // breaker, which then fails every call of every consumer of the store for seconds. A limit
  // the memory and file stores did not share would let a value pass every test and fail in production.
  if (value.length > MAX_VALUE_BYTES / 3 && Buffer.byteLength(value, 'utf8') > MAX_VALUE_BYTES) {
    throw new StateArgumentError('compareAndSet', 'value', `a value is at most ${MAX_VALUE_BYTES} bytes of UTF-8 (${Buffer.byteLength(value, 'utf8')} given)`, `${value.slice(0, 40)}...`);
  }
  // etcd would store U+FFFD in its place: the value read back would differ from the one written.
  if (LONE_SURROGATE.test(value)) throw new StateArgumentError('compareAndSet', 'value', 'a value must be well-formed Unicode (no unpaired surrogate)', value.slice(0, 200));
  if (expected !== null && typeof expected !== 'bigint') {
    throw new StateArgumentError('compareAndSet', 'expected', 'a revision (bigint) read from the store, or null for "only if absent"', expected);
  }
}

/** Throws StateArgumentError unless `expected` is absent or a revision. */
export function assertDeleteRevision(expected: unknown): void {
  if (expected !== undefined && typeof expected !== 'bigint') throw new StateArgumentError('delete', 'expected', 'a revision (bigint) read from the store, or nothing', expected);
}

/** Lease time to live: a whole number of seconds, 1 to 1 day (etcd's own bounds are wider). */
export function assertLeaseTtl(ttlSeconds: unknown): asserts ttlSeconds is number {
  if (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 86_400) {
    throw new ConfigurationError('ttlSeconds', 'a lease time to live is a whole number of seconds from 1 to 86400', ttlSeconds);
  }
}
