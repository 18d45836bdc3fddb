import { InvalidArgumentError, RangeBoundsError, describeKey } from './errors.ts';
import { findUnknownOption } from './known-options.ts';

/**
 * Range bounds. `start` is inclusive; `end` is exclusive unless `inclusive` is true, so
 * consecutive pages `[a, b)`, `[b, c)` never overlap. `prefix` keeps keys that start with it
 * (string keys only). Bounded walks visit keys in ascending order; an unbounded walk visits
 * them in insertion order, which costs no sort.
 */
export interface RangeOptions<K> {
  readonly prefix?: string;
  readonly start?: K;
  readonly end?: K;
  readonly inclusive?: boolean;
}

/** The bounds as written in an audit event (DESIGN.md: range_bounds). */
export interface RangeBounds {
  readonly start: string | null;
  readonly end: string | null;
  readonly inclusive: boolean;
  readonly prefix: string | null;
}

/** Return `false` to stop the walk. Must be synchronous: a returned promise is an error. */
export type RangeCallback<K, V> = (key: K, value: V) => boolean | void;

export interface RangeResult {
  /** Entries handed to the callback. */
  readonly visited: number;
  /** True when the callback stopped the walk by returning false. */
  readonly stopped: boolean;
}

/** Natural order of strings (UTF-16 code units), numbers and bigints. */
export function compareKeys<K>(a: K, b: K): number {
  const x = a as unknown as string;
  const y = b as unknown as string;
  return x < y ? -1 : x > y ? 1 : 0;
}

export function isBounded<K>(options: RangeOptions<K> | undefined): boolean {
  return options !== undefined && (options.prefix !== undefined || options.start !== undefined || options.end !== undefined);
}

/**
 * Whether `key` is inside the bounds. `map` names the map in the error thrown when a bound is of
 * another type than the key: `'acct-1' < 5` and `'acct-1' > 5` are both false, so a number bound
 * over string keys would let every key through. Checked per key compared, so it costs a `typeof`
 * per key and a map whose keys mix strings and numbers can still be walked by prefix alone.
 */
export function inBounds<K>(map: string, key: K, options: RangeOptions<K>): boolean {
  if (options.prefix !== undefined && !(typeof key === 'string' && key.startsWith(options.prefix))) return false;
  if (options.start !== undefined) checkComparable(map, 'options.start', key, options);
  if (options.end !== undefined) checkComparable(map, 'options.end', key, options);
  if (options.start !== undefined && compareKeys(key, options.start) < 0) return false;
  if (options.end !== undefined) {
    const order = compareKeys(key, options.end);
    if (options.inclusive === true ? order > 0 : order >= 0) return false;
  }
  return true;
}

export function describeBounds<K>(options: RangeOptions<K> | undefined): RangeBounds | null {
  if (!isBounded(options)) return null;
  const text = (k: K | undefined): string | null => (k === undefined ? null : String(k));
  return {
    start: text(options!.start),
    end: text(options!.end),
    inclusive: options!.inclusive === true,
    prefix: options!.prefix ?? null,
  };
}

/**
 * Refuses range options a walk cannot honour, for every map kind: not an object, a prefix that
 * is not a string, or a bound that is not a key (null or NaN would silently match nothing).
 */
export function checkRangeOptions(map: string, options: unknown): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(map, 'range', 'options', 'must be an object { prefix, start, end, inclusive }');
  // A misspelt bound (`{ prefx: 'org-1001:' }`) would walk every key instead of one org's.
  const unknown = findUnknownOption(options, RANGE_OPTIONS, 'range (prefix, start, end, inclusive)');
  if (unknown !== undefined) throw new InvalidArgumentError(map, 'range', `options.${unknown.option}`, unknown.rule);
  const { prefix, start, end, inclusive } = options as RangeOptions<unknown>;
  if (prefix !== undefined && typeof prefix !== 'string') throw new InvalidArgumentError(map, 'range', 'options.prefix', 'must be a string');
  // `inclusive: 'true'` (a query-string value) would otherwise silently leave the end bound out.
  if (inclusive !== undefined && typeof inclusive !== 'boolean') throw new InvalidArgumentError(map, 'range', 'options.inclusive', 'must be true or false, or left out');
  checkBound(map, 'options.start', start);
  checkBound(map, 'options.end', end);
  if (start === undefined || end === undefined) return;
  if (family(start) !== family(end)) {
    throw new RangeBoundsError(
      map,
      'range',
      'options.start',
      `${describeKey(start)} (${typeof start}) and "options.end" ${describeKey(end)} (${typeof end}) must be of the same type: keys of one type do not sort against the other`,
      'GOVMAP_RANGE_BOUNDS_MISMATCHED',
      start,
      end,
    );
  }
  // Always a caller's bug (swapped arguments, a page cursor past its end): refused rather than
  // walked as an empty range. start === end is a valid empty (or, inclusive, one-key) page.
  if (compareKeys(start, end) > 0) {
    throw new RangeBoundsError(map, 'range', 'options.start', `${describeKey(start)} sorts after "options.end" ${describeKey(end)}: start must not be greater than end`, 'GOVMAP_RANGE_BOUNDS_REVERSED', start, end);
  }
}

/** Numbers and bigints compare exactly with each other in JavaScript; strings only with strings. */
function family(key: unknown): 'string' | 'numeric' | 'other' {
  return typeof key === 'string' ? 'string' : typeof key === 'number' || typeof key === 'bigint' ? 'numeric' : 'other';
}

function checkComparable<K>(map: string, argument: 'options.start' | 'options.end', key: K, options: RangeOptions<K>): void {
  const bound = argument === 'options.start' ? options.start : options.end;
  if (family(key) === family(bound)) return;
  throw new RangeBoundsError(
    map,
    'range',
    argument,
    `${describeKey(bound)} is a ${typeof bound} but the map holds a ${typeof key} key (${describeKey(key)}): a bound must be of the keys' type (convert a query-string value first)`,
    'GOVMAP_RANGE_BOUNDS_MISMATCHED',
    options.start,
    options.end,
  );
}

const RANGE_OPTIONS: ReadonlySet<string> = new Set(['prefix', 'start', 'end', 'inclusive'] satisfies Array<keyof RangeOptions<unknown>>);

/** Range bounds are keys: strings, finite numbers or bigints. */
function checkBound(map: string, argument: string, bound: unknown): void {
  if (bound === undefined) return;
  if (typeof bound === 'string' || typeof bound === 'bigint' || (typeof bound === 'number' && !Number.isNaN(bound))) return;
  throw new InvalidArgumentError(map, 'range', argument, 'must be a string, a number (not NaN) or a bigint key, or left out');
}
