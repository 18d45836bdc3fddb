import { GovernedMap, reject } from '../map/index.ts';
import { deepFreeze } from '../switches/definition.ts';

/** A response remembered for the `cache` degradation. */
export interface CachedResponse {
  readonly value: unknown;
  /** When it was stored, ms since the epoch (its age is shown to the client). */
  readonly storedAtMs: number;
}

/** Longest request signature kept: a signature is a method, a path and a few ids, not a body. */
export const MAX_SIGNATURE_LENGTH = 1024;

/**
 * The last good response per request signature of one route, for the `cache` degradation, in a
 * GovernedMap (validated writes, TTL, bounded size with oldest-first eviction, metrics like any
 * governed map). Keys are `orgId | txnType | signature`: a response made for one org is never
 * served to another, even when a prefix rule routes both through this route.
 */
export class ResponseCache {
  readonly map: GovernedMap<string, CachedResponse>;
  readonly #clock: () => number;

  constructor(routeId: string, options: { readonly ttlMs: number; readonly maxEntries: number; readonly clock?: () => number }) {
    this.#clock = options.clock ?? Date.now;
    this.map = new GovernedMap<string, CachedResponse>({
      name: `route_cache:${routeId}`,
      ttlMs: options.ttlMs,
      maxKeys: options.maxEntries,
      onFull: 'evict-oldest',
      clock: this.#clock,
      // remember() stores a copy, deep-frozen there; the map's own freeze would be shallow.
      freezeValues: false,
      validate: (key, next) => {
        if (key.length > MAX_SIGNATURE_LENGTH * 2) return reject('SIGNATURE_TOO_LONG', `a cache key is at most ${MAX_SIGNATURE_LENGTH * 2} characters`);
        if (next.value === undefined) return reject('NO_RESPONSE', 'only a response can be cached');
        if (!Number.isFinite(next.storedAtMs)) return reject('NO_TIMESTAMP', 'a cached response carries its time');
        return true;
      },
    });
  }

  static key(orgId: string | undefined, txnType: string | undefined, signature: string): string {
    return `${orgId ?? ''}|${txnType ?? ''}|${signature}`;
  }

  /**
   * Keeps a structured clone of `value` (bigint, Date, Map... kept; a class instance becomes a
   * plain object). The live caller's object stays its own: a handler that adds per-request fields
   * to it after execute() returned must not put them in another request's degraded answer. A
   * value structuredClone cannot copy (a function in it) is not cached: its degraded answer is a
   * CACHE_MISS, while the live answer still goes out.
   */
  remember(key: string, value: unknown): void {
    if (value === undefined || key.length > MAX_SIGNATURE_LENGTH * 2) return;
    let copy: unknown;
    try {
      copy = deepFreeze(structuredClone(value));
    } catch {
      return; // thrown from inside execute(), it would turn a call that succeeded into a failure
    }
    this.map.store(key, Object.freeze({ value: copy, storedAtMs: this.#clock() }));
  }

  /** A fresh copy per degraded answer: its handler may change it like a live answer. */
  recall(key: string): { readonly value: unknown; readonly ageMs: number } | undefined {
    const hit = this.map.load(key);
    return hit === undefined ? undefined : { value: structuredClone(hit.value), ageMs: Math.max(0, this.#clock() - hit.storedAtMs) };
  }

  dispose(): void {
    this.map.dispose();
  }
}
