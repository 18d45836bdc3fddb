import type { JsonValue, SwitchAudience, SwitchDefinition } from './definition.ts';

/**
 * Targeting: whether one switch is on for one request. Pure and total: no input makes it throw,
 * and the same (definition, context) always gives the same answer in every process, because
 * the rollout bucket is a hash of the context value (FNV-1a, 32 bit), never a random draw.
 *
 * Order (the first that applies decides):
 *   1. kill                          -> off, KILLED
 *   2. enabled = false               -> off, DISABLED
 *   3. a deny audience matches       -> off, DENIED
 *   4. allow given, none matches     -> off, NOT_TARGETED
 *   5. rollout, context key absent   -> off, ROLLOUT_KEY_MISSING
 *      rollout, bucket >= threshold  -> off, ROLLOUT_EXCLUDED
 *      rollout, bucket <  threshold  -> on,  ROLLOUT_INCLUDED
 *   6. allow matched                 -> on,  TARGETED
 *   7. otherwise                     -> on,  ON
 */

/** Request attributes targeting reads: `orgId`, `txnType`, `account`, any X-Biz-Tag key. */
export type SwitchContext = Readonly<Record<string, string | undefined>>;

export type SwitchReason =
  | 'ON'
  | 'TARGETED'
  | 'ROLLOUT_INCLUDED'
  | 'ROLLOUT_EXCLUDED'
  | 'ROLLOUT_KEY_MISSING'
  | 'NOT_TARGETED'
  | 'DENIED'
  | 'DISABLED'
  | 'KILLED'
  | 'UNKNOWN_SWITCH';

export interface SwitchEvaluation {
  readonly name: string;
  readonly on: boolean;
  /** The definition's `value` when on, `offValue` when off; `false` for an unknown switch. */
  readonly value: JsonValue;
  readonly reason: SwitchReason;
  /** Version of the snapshot the answer came from. */
  readonly version: number;
}

/** Rollout resolution: buckets 0..9999, so a percent with two decimals is exact (12.34% = 1234 buckets). */
export const ROLLOUT_BUCKETS = 10_000;

/** A switch whose answer does not depend on the request: decided once per snapshot. */
export function isStatic(definition: SwitchDefinition): boolean {
  return definition.kill || !definition.enabled || (definition.rollout === null && definition.allow.length === 0 && definition.deny.length === 0);
}

export function decide(definition: SwitchDefinition, context: SwitchContext): { on: boolean; reason: SwitchReason } {
  if (definition.kill) return { on: false, reason: 'KILLED' };
  if (!definition.enabled) return { on: false, reason: 'DISABLED' };
  if (definition.deny.length > 0 && matchesAny(definition.deny, context)) return { on: false, reason: 'DENIED' };
  const allowed = definition.allow.length > 0;
  if (allowed && !matchesAny(definition.allow, context)) return { on: false, reason: 'NOT_TARGETED' };
  const rollout = definition.rollout;
  if (rollout !== null) {
    const key = attribute(context, rollout.by);
    if (key === undefined || key === '') return { on: false, reason: 'ROLLOUT_KEY_MISSING' };
    // bucket < percent% of ROLLOUT_BUCKETS; percent has two decimals, so percent * 100 is the
    // bucket count (rounded to shed the float error of e.g. 12.34 * 100 = 1233.9999...).
    return rolloutBucket(rollout.salt, key, rollout.bucketing) < Math.round(rollout.percent * 100)
      ? { on: true, reason: 'ROLLOUT_INCLUDED' }
      : { on: false, reason: 'ROLLOUT_EXCLUDED' };
  }
  return { on: true, reason: allowed ? 'TARGETED' : 'ON' };
}

function matchesAny(audiences: readonly SwitchAudience[], context: SwitchContext): boolean {
  for (const audience of audiences) if (matches(audience, context)) return true;
  return false;
}

function matches(audience: SwitchAudience, context: SwitchContext): boolean {
  if (audience.orgIds.length > 0) {
    const org = attribute(context, 'orgId');
    if (org === undefined || !audience.orgIds.some((pattern) => orgMatches(pattern, org))) return false;
  }
  if (audience.txnTypes.length > 0) {
    const txn = attribute(context, 'txnType');
    if (txn === undefined || !audience.txnTypes.includes(txn)) return false;
  }
  return true;
}

/**
 * A context attribute as targeting reads it: a string as it is; a finite number or a boolean as
 * its string, the rule of the OpenFeature provider (toSwitchContext), so `{ orgId: 1001 }` from
 * plain JavaScript meets the same allow, deny and rollout as `'1001'` (a numeric org must not
 * slip past a deny list, nor throw from `startsWith` where evaluation promises never to throw);
 * anything else is absent. `key` may be any tag key, `constructor` and `toString` included, and
 * most contexts are plain objects (board.view() merges into one), whose inherited function must
 * not be read as the request's value. A string a context inherits on purpose
 * (Object.create(defaults)) still counts.
 */
function attribute(context: SwitchContext, key: string): string | undefined {
  const value = context[key] as unknown;
  if (typeof value === 'string') return value;
  if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') return String(value);
  return undefined;
}

/** `1001` matches only 1001; `1001*` matches every org id starting with 1001 (1001 included). */
export function orgMatches(pattern: string, orgId: string): boolean {
  return pattern.endsWith('*') ? orgId.startsWith(pattern.slice(0, -1)) : orgId === pattern;
}

/**
 * The rollout bucket of `value` under `salt`: FNV-1a over the UTF-16 code units of
 * `salt + "\u0000" + value`, reduced mod ROLLOUT_BUCKETS. The NUL separator keeps ("ab","c")
 * and ("a","bc") apart. FNV-1a is not cryptographic; rollout needs stability and spread, not secrecy.
 * `bucketing` 2 (opt-in, see SwitchRollout) passes the hash through murmur3's fmix32 first:
 * FNV-1a ends without a final mix, and sequential org ids under some salts land unevenly across
 * the percent bins (a 100-bin chi-square of 258 where 148 is the p = 0.001 limit).
 */
export function rolloutBucket(salt: string, value: string, bucketing: 1 | 2 = 1): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < salt.length; i++) hash = Math.imul(hash ^ salt.charCodeAt(i), 0x01000193);
  hash = Math.imul(hash ^ 0, 0x01000193);
  for (let i = 0; i < value.length; i++) hash = Math.imul(hash ^ value.charCodeAt(i), 0x01000193);
  if (bucketing === 2) {
    hash ^= hash >>> 16;
    hash = Math.imul(hash, 0x85ebca6b);
    hash ^= hash >>> 13;
    hash = Math.imul(hash, 0xc2b2ae35);
    hash ^= hash >>> 16;
  }
  return (hash >>> 0) % ROLLOUT_BUCKETS;
}
