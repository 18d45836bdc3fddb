import type { Clock, TimerHandle } from './clock.ts';

/** What a bucket does to a call whose time ran out. */
export interface Expirable {
  readonly settled: boolean;
  expire(): void;
}

class Bucket {
  readonly start: number;
  readonly controller = new AbortController();
  calls: Expirable[] = [];
  timer: TimerHandle | null = null;

  constructor(start: number) {
    this.start = start;
  }
}

/**
 * Per-call timeouts without a timer per call. Every call of a breaker has the same budget, so
 * calls started in the same millisecond share a deadline: they share one bucket, one timer and
 * one AbortController. Starting a call is an array push (plus, once per millisecond, one timer
 * and one controller), where a timer per call costs a setTimeout/clearTimeout pair and an
 * AbortController each.
 *
 * Invariant: a bucket for start millisecond `s` fires at `s + timeoutMs`, and `s = ceil(now)`,
 * so a call never times out before its full budget; it may be up to 1 ms late. When a bucket
 * fires, its unsettled calls expire first (counted as timeouts, their promises rejected), then
 * the shared signal aborts so their work can stop; calls that settled in time are unaffected.
 */
export class TimeoutBuckets {
  readonly timeoutMs: number;
  readonly #clock: Clock;
  readonly #reason: () => unknown;
  #current: Bucket | null = null;

  constructor(timeoutMs: number, clock: Clock, reason: () => unknown) {
    this.timeoutMs = timeoutMs;
    this.#clock = clock;
    this.#reason = reason;
  }

  /** Registers `call` started at `now`; returns the signal that aborts when its time is up. */
  enlist(call: Expirable, now: number): AbortSignal {
    const start = Math.ceil(now);
    let bucket = this.#current;
    if (bucket === null || bucket.start !== start) {
      const fresh = new Bucket(start);
      fresh.timer = this.#clock.setTimer(() => this.#fire(fresh), start + this.timeoutMs - now);
      this.#current = bucket = fresh;
    }
    bucket.calls.push(call);
    return bucket.controller.signal;
  }

  #fire(bucket: Bucket): void {
    if (this.#current === bucket) this.#current = null;
    const calls = bucket.calls;
    bucket.calls = [];
    let expired = false;
    for (const call of calls) {
      if (call.settled) continue;
      expired = true;
      call.expire();
    }
    if (expired) bucket.controller.abort(this.#reason());
  }
}
