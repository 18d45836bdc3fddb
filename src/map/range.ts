import { InvalidArgumentError } from './errors.ts';
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

export function inBounds<K>(key: K, options: RangeOptions<K>): boolean {
  if (options.prefix !== undefined && !(typeof key === 'string' && key.startsWith(options.prefix))) return false;
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
}

const RANGE_OPTIONS: ReadonlySet<string> = new Set(['prefix', 'start', 'end', 'inclusive'] satisfies Array<keyof RangeOptions<unknown>>);

/** Range bounds are keys: strings, finite numbers or bigints. */
function checkBound(map: string, argument: string, bound: unknown): void {
  if (bound === undefined) return;
  if (typeof bound === 'string' || typeof bound === 'bigint' || (typeof bound === 'number' && !Number.isNaN(bound))) return;
  throw new InvalidArgumentError(map, 'range', argument, 'must be a string, a number (not NaN) or a bigint key, or left out');
}
