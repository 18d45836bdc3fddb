import type { StateStore } from '../state/store.ts';
import { AdvisorStateError } from './errors.ts';
import { ISO_WEEK_PATTERN, isoWeekBefore } from './iso-week.ts';

/** What the advisor needs of a state store (memory, file or etcd: src/state/). */
export type AdvisorStateStore = Pick<StateStore, 'kind' | 'get' | 'compareAndSet'>;

/** Weeks kept per map: the one in progress, the two the signal compares, and one more for context. */
export const KEPT_WEEKS = 4;
/** Compare-and-set attempts before a sync gives up until the next one (other writers kept winning). */
const CAS_ATTEMPTS = 5;

/** The persisted value, JSON: `{"v":1,"map":"balances","weeks":{"2025-W02":1200,"2025-W03":1900},"updatedAt":"<iso>"}`. */
interface StoredWeeks {
  readonly v: 1;
  readonly map: string;
  readonly weeks: Record<string, number>;
  readonly updatedAt: string;
}

/**
 * Range calls per ISO week of one map, persisted in a state store because a week outlives a
 * process. Counts are sums: every process adds its own increments, so two processes sharing
 * one key (the same instance id after a restart overlap) add up instead of overwriting.
 *
 * Invariants:
 * - `persisted` is what the store held at `revision` (as this process last read or wrote it);
 *   `pending` holds increments not yet written. The count of a week is persisted + pending.
 * - a write is a compare-and-set at `revision`; when another writer got there first, the
 *   stored value is adopted and the pending increments re-applied on top of it, so no
 *   increment is lost or counted twice.
 * - a stored value this code did not write (bad JSON, wrong schema) is never overwritten:
 *   the key is "blocked", counting continues in memory, and the error is reported.
 * - an unreachable store loses nothing either: increments stay pending until a sync succeeds.
 */
export class RangeWeekCounts {
  readonly key: string;
  readonly map: string;
  #persisted = new Map<string, number>();
  readonly #pending = new Map<string, number>();
  #revision: bigint | null = null;
  #loaded = false;
  #blocked: AdvisorStateError | null = null;
  #lastError: Error | null = null;
  #chain: Promise<void> = Promise.resolve();

  constructor(key: string, map: string) {
    this.key = key;
    this.map = map;
  }

  add(week: string, count: number): void {
    if (count <= 0) return;
    this.#pending.set(week, (this.#pending.get(week) ?? 0) + count);
  }

  count(week: string): number {
    return (this.#persisted.get(week) ?? 0) + (this.#pending.get(week) ?? 0);
  }

  /** Whether increments wait for a sync that succeeds (without a state store: always, once counted). */
  get hasPending(): boolean {
    return this.#pending.size > 0;
  }

  /** True once the stored history (if any) has been read: before that, counts are this process's only. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** Why the counts are not persisted right now, or null. */
  get problem(): string | null {
    if (this.#blocked !== null) return this.#blocked.message;
    if (this.#lastError !== null) return `advisor state store unavailable (${this.#lastError.message}); counts kept in memory until it is back`;
    return null;
  }

  get blocked(): AdvisorStateError | null {
    return this.#blocked;
  }

  /**
   * Reads the stored history once, then writes pending increments. Never throws: problems are
   * kept in `problem`. Calls run one at a time (a second waits for the first): two overlapping
   * syncs of one object could both re-apply the same pending increment.
   */
  sync(store: AdvisorStateStore | null, nowMs: number): Promise<void> {
    const run = this.#chain.then(() => this.#sync(store, nowMs));
    this.#chain = run;
    return run;
  }

  async #sync(store: AdvisorStateStore | null, nowMs: number): Promise<void> {
    if (store === null) {
      this.#loaded = true;
      return;
    }
    try {
      if (this.#blocked !== null) {
        // Blocked until someone repairs or deletes the value: look again, adopt it if it is fine now.
        const entry = await store.get(this.key);
        this.#persisted = entry === undefined ? new Map<string, number>() : this.#parse(entry.value);
        this.#revision = entry?.revision ?? null;
        this.#blocked = null;
        this.#loaded = true;
      }
      if (!this.#loaded) {
        const entry = await store.get(this.key);
        if (entry !== undefined) {
          this.#persisted = this.#parse(entry.value);
          this.#revision = entry.revision;
        }
        this.#loaded = true;
      }
      if (this.#pending.size === 0) {
        this.#lastError = null;
        return;
      }
      const oldest = isoWeekBefore(nowMs, KEPT_WEEKS - 1);
      for (let attempt = 1; attempt <= CAS_ATTEMPTS; attempt++) {
        const sending = new Map(this.#pending);
        const merged = new Map(this.#persisted);
        for (const [week, n] of sending) merged.set(week, (merged.get(week) ?? 0) + n);
        // ISO week labels sort in time order, so a string comparison prunes the old ones.
        for (const week of merged.keys()) if (week < oldest) merged.delete(week);
        const value: StoredWeeks = { v: 1, map: this.map, weeks: Object.fromEntries([...merged].sort()), updatedAt: new Date(nowMs).toISOString() };
        const result = await store.compareAndSet(this.key, JSON.stringify(value), this.#revision);
        if (result.ok) {
          this.#persisted = merged;
          this.#revision = result.revision;
          for (const [week, n] of sending) {
            const left = (this.#pending.get(week) ?? 0) - n;
            if (left > 0) this.#pending.set(week, left);
            else this.#pending.delete(week);
          }
          this.#lastError = null;
          return;
        }
        // Someone else wrote: adopt what is stored and re-apply our increments on top.
        this.#persisted = result.current === undefined ? new Map<string, number>() : this.#parse(result.current.value);
        this.#revision = result.current?.revision ?? null;
      }
      this.#lastError = new Error(`${CAS_ATTEMPTS} compare-and-set attempts lost to other writers of ${this.key}`);
    } catch (error) {
      if (error instanceof AdvisorStateError) this.#blocked = error;
      else this.#lastError = error instanceof Error ? error : new Error(String(error));
    }
  }

  #parse(text: string): Map<string, number> {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new AdvisorStateError(this.key, 'the value is not JSON');
    }
    if (value === null || typeof value !== 'object') throw new AdvisorStateError(this.key, 'the value is not a JSON object');
    const v = value as Partial<StoredWeeks>;
    if (v.v === undefined) throw new AdvisorStateError(this.key, 'it has no schema version (field "v"; this version writes 1)');
    if (v.v !== 1) throw new AdvisorStateError(this.key, `unknown schema version ${JSON.stringify(v.v)} (expected 1)`);
    if (v.map !== this.map) throw new AdvisorStateError(this.key, `it belongs to map ${JSON.stringify(v.map)}, not "${this.map}"`);
    if (v.weeks === null || typeof v.weeks !== 'object' || Array.isArray(v.weeks)) throw new AdvisorStateError(this.key, '"weeks" must be an object of ISO week -> count');
    const out = new Map<string, number>();
    for (const [week, count] of Object.entries(v.weeks)) {
      if (!ISO_WEEK_PATTERN.test(week)) throw new AdvisorStateError(this.key, `week ${JSON.stringify(week)} is not an ISO week (YYYY-Www)`);
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) throw new AdvisorStateError(this.key, `the count of ${week} must be a non-negative whole number`);
      out.set(week, count);
    }
    return out;
  }
}
