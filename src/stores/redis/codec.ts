/**
 * How a value travels to and from Redis: a string, so that any Redis client (redis-cli, a Go
 * service) reads the same thing, and so Redis' own integer commands (INCRBY) work on money.
 *
 * `decode` returns `undefined` for a string it does not accept (the map then raises
 * RedisValueCorruptError naming the key, never a guessed value); it must not throw.
 * `encode(decode(s)) === s` for every accepted `s`: compare-and-set compares encoded strings.
 */
export interface ValueCodec<V> {
  /** `int64` lets the map offer `add` (Redis INCRBY); anything else is opaque to Redis. */
  readonly kind: string;
  encode(value: V): string;
  decode(raw: string): V | undefined;
  /** Says why `value` cannot be encoded, or null when it can. Checked before any write. */
  check(value: unknown): string | null;
}

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

// Canonical decimal: no sign on zero, no leading zeros, no '+', at most 19 digits (int64).
const CANONICAL_INT = /^(0|-?[1-9][0-9]{0,18})$/;

/**
 * Signed 64-bit integers (money in minor units) as canonical decimal strings, the form Redis'
 * INCRBY reads and writes: `"1050"`, `"-3"`, `"0"`. Never a float.
 */
export const int64Codec: ValueCodec<bigint> = Object.freeze({
  kind: 'int64',
  encode: (value: bigint): string => value.toString(),
  decode: (raw: string): bigint | undefined => {
    if (!CANONICAL_INT.test(raw)) return undefined;
    const value = BigInt(raw);
    return value >= INT64_MIN && value <= INT64_MAX ? value : undefined;
  },
  check: (value: unknown): string | null => {
    if (typeof value !== 'bigint') return `must be a bigint (integer minor units), not a ${typeof value}`;
    if (value < INT64_MIN || value > INT64_MAX) return 'must fit in a signed 64-bit integer';
    return null;
  },
});

/**
 * A UTF-16 code unit of a surrogate pair standing alone. (With the `u` flag a paired surrogate is
 * one code point and does not match.) Redis holds bytes: node-redis encodes a string as UTF-8,
 * which turns every lone surrogate into U+FFFD, so such a string does not come back as written.
 */
export const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Strings stored as they are (well-formed UTF-16: anything else would not round-trip). */
export const stringCodec: ValueCodec<string> = Object.freeze({
  kind: 'string',
  encode: (value: string): string => value,
  decode: (raw: string): string => raw,
  check: (value: unknown): string | null =>
    typeof value !== 'string'
      ? `must be a string, not a ${typeof value}`
      : LONE_SURROGATE.test(value)
        ? 'must be well-formed UTF-16: a lone surrogate would be stored as U+FFFD'
        : null,
});
