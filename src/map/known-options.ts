import { ConfigurationError } from './errors.ts';

/**
 * Refusing option keys a constructor does not know. A misspelt key (`maxkeys` for `maxKeys`,
 * `openDuration` for `openDurationMs`) is otherwise dropped without a word and leaves the
 * default in force: a map the user believes bounded is unbounded. So every public constructor
 * compares the keys it was given with the keys of its options interface, and names the first
 * stranger, with the known key the user most likely meant.
 *
 * Each part throws its own configuration error (its class and code); this file only finds the
 * key and words the rule. `refuseUnknownOptions` is the common case, ConfigurationError.
 */

/** The unknown key found, and the rule it broke, worded for a `ConfigurationError`-like class. */
export interface UnknownOption {
  /** The key as given (cut to a printable length). */
  readonly option: string;
  /** `is not an option of GovernedMap; did you mean "maxKeys"?` */
  readonly rule: string;
  /** The known key suggested, if one is close. */
  readonly suggestion: string | undefined;
}

/**
 * The known keys of an options interface, checked by the compiler: `keys` must name every key of
 * `T` and nothing else (an excess key is a type error, a missing one too). Declaring the set
 * beside the interface with this keeps the two in sync.
 */
export function optionKeys<T>(keys: { readonly [P in keyof Required<T>]: true }): ReadonlySet<string> {
  return new Set(Object.keys(keys));
}

/**
 * The first own enumerable key of `options` that `known` lacks, or undefined. Only the object
 * passed is read: inherited keys are the caller's prototype's business, and a known key whose
 * value is `undefined` is fine (it means "the default").
 */
export function findUnknownOption(options: object, known: ReadonlySet<string>, owner: string): UnknownOption | undefined {
  for (const key of Object.keys(options)) {
    if (known.has(key)) continue;
    const suggestion = closestOption(key, known);
    const rule = `is not an option of ${owner}${suggestion === undefined ? '' : `; did you mean "${suggestion}"?`}`;
    return { option: printable(key), rule, suggestion };
  }
  return undefined;
}

/**
 * Throws ConfigurationError unless `options` is an object: from plain JavaScript, `null` or a
 * number reached the constructor's first property read as a bare TypeError.
 */
export function assertOptionsObject(options: unknown, owner: string, shape = '{ ... }'): asserts options is object {
  if (options === null || typeof options !== 'object') throw new ConfigurationError('options', `${owner} takes an options object ${shape}`, options);
}

/**
 * Throws ConfigurationError (`GOVMAP_INVALID_CONFIGURATION`) for options that are not an object
 * (`null` from a YAML key left empty, a number), for their first unknown key, and for their first
 * key given as `null` (unless `nullable` lists it: see refuseNullOptions).
 */
export function refuseUnknownOptions(options: unknown, known: ReadonlySet<string>, owner: string, nullable: ReadonlySet<string> = NONE): asserts options is object {
  assertOptionsObject(options, owner);
  const unknown = findUnknownOption(options, known, owner);
  if (unknown !== undefined) throw new ConfigurationError(unknown.option, unknown.rule);
  refuseNullOptions(options, nullable);
}

const NONE: ReadonlySet<string> = new Set();

/** The rule a `null` option broke, worded for a `ConfigurationError`-like class. */
export const NULL_OPTION_RULE = 'null is not a value of this option; leave it out (or undefined) for its default';

/**
 * The first own enumerable key of `options` whose value is `null`, or undefined. Only `undefined`
 * means "the default": with `??` a null (a YAML or JSON key left empty, a caller's
 * `config.maxKeys ?? null`) took the default without a word, and a map its owner believed capped
 * was unbounded. `nullable` lists the keys whose documented values include null (the Advisor's
 * `gc: null`, "no monitor").
 */
export function findNullOption(options: object, nullable: ReadonlySet<string> = NONE): string | undefined {
  for (const [key, value] of Object.entries(options)) {
    if (value === null && !nullable.has(key)) return printable(key);
  }
  return undefined;
}

/** Throws ConfigurationError naming the first option given as `null` (see findNullOption). */
export function refuseNullOptions(options: object, nullable: ReadonlySet<string> = NONE): void {
  const option = findNullOption(options, nullable);
  if (option !== undefined) throw new ConfigurationError(option, NULL_OPTION_RULE, null);
}

/** Longest suggestion distance: two typos (`maxkey`, `timoutMs`) still find their key; three is a different word. */
const MAX_DISTANCE = 2;

/**
 * The known key the user most likely meant: one equal ignoring case first (`maxkeys`), else the
 * nearest within MAX_DISTANCE edits (first declared wins a tie). A distance must also be smaller
 * than the typed key, so `id` does not suggest `ttlMs`-like keys it shares nothing with.
 */
export function closestOption(key: string, known: Iterable<string>): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = MAX_DISTANCE + 1;
  for (const candidate of known) {
    if (candidate.toLowerCase() === lower) return candidate;
    const distance = editDistance(key, candidate, bestDistance);
    if (distance < bestDistance && distance < key.length) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * Levenshtein distance with adjacent transpositions counted as one edit (optimal string
 * alignment: `tiemoutMs` is one typo, not two). Gives up at `limit` (returns it): only distances
 * below the best so far matter, and option names are short, so two rows suffice.
 */
export function editDistance(a: string, b: string, limit = Number.POSITIVE_INFINITY): number {
  if (Math.abs(a.length - b.length) >= limit) return limit;
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  let current = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    current[0] = i;
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2]! + 1);
      current[j] = d;
      if (d < rowMin) rowMin = d;
    }
    if (rowMin >= limit) return limit;
    [before, previous, current] = [previous, current, before];
  }
  return Math.min(previous[b.length]!, limit);
}

/** Keys come from the caller: escape control bytes and bound the length before they enter a message. */
function printable(key: string): string {
  const escaped = JSON.stringify(key).slice(1, -1);
  return escaped.length > 80 ? `${escaped.slice(0, 77)}...` : escaped;
}
