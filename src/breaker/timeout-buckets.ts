import type { Clock } from './clock.ts';

/**
 * A call a bucket can time out. The bucket links its calls through these fields (an intrusive
 * doubly linked list), so a call that settles in time unlinks itself in O(1) and is garbage at
 * once, instead of being held until its deadline.
 */
export class Expirable {
  /** @internal */ prev: Expirable | null = null;
  /** @internal */ next: Expirable | null = null;
  /** @internal */ bucket: Bucket | null = null;

  /** Called at the deadline if the call has not settled (unlinked) by then. */
  expire(): void {}

  /** The call settled: leave the bucket. */
  leaveBucket(): void {
    const bucket = this.bucket;
    if (bucket === null) return;
    this.bucket = null;
    if (this.prev === null) bucket.head = this.next;
    else this.prev.next = this.next;
    if (this.next !== null) this.next.prev = this.prev;
    this.prev = this.next = null;
  }
}

/** @internal */
export class Bucket {
  readonly start: number;
  readonly controller = new AbortController();
  head: Expirable | null = null;

  constructor(start: number) {
    this.start = start;
  }
}

/**
 * Per-call timeouts without a timer per call. Every call of a breaker has the same budget, so
 * calls started in the same slice of time share a deadline: they share one bucket, one timer and
 * one AbortController. Starting a call links it into the bucket (plus, once per slice, one
 * timer and one controller), where a timer per call costs a setTimeout/clearTimeout pair and an
 * AbortController each. A slice is 1 ms up to a 2 s budget, then timeoutMs / 1000 (rounded
 * down): a 60 s budget at a call per millisecond would otherwise keep 60,000 timers alive and
 * wake the process every millisecond, for a precision no caller of a 60 s budget needs.
 *
 * Invariants: a bucket for slice start `s` fires at `s + timeoutMs`, and `s` is `now` rounded up
 * to a slice, so a call never times out before its full budget; it may be up to one slice (1 ms,
 * or a thousandth of the budget) late. At most about 1,000 buckets are alive at once. A bucket holds
 * only its unsettled calls. When it fires, they expire first (counted as timeouts, their
 * promises rejected), then the shared signal aborts so their work can stop; calls that settled
 * in time have left: their outcome is unaffected, but they were handed the same signal, which
 * now aborts too. A call must be done with its signal when it settles (docs/breaker.md).
 */
export class TimeoutBuckets {
  readonly timeoutMs: number;
  readonly #clock: Clock;
  readonly #reason: () => unknown;
  readonly #slice: number;
  #current: Bucket | null = null;

  constructor(timeoutMs: number, clock: Clock, reason: () => unknown) {
    this.timeoutMs = timeoutMs;
    this.#clock = clock;
    this.#reason = reason;
    this.#slice = Math.max(1, Math.floor(timeoutMs / 1000));
  }

  /** Links `call`, started at `now`; returns the signal that aborts when its time is up. */
  enlist(call: Expirable, now: number): AbortSignal {
    const start = Math.ceil(now / this.#slice) * this.#slice;
    let bucket = this.#current;
    if (bucket === null || bucket.start !== start) {
      const fresh = new Bucket(start);
      this.#clock.setTimer(() => this.#fire(fresh), start + this.timeoutMs - now);
      this.#current = bucket = fresh;
    }
    const head = bucket.head;
    call.next = head;
    if (head !== null) head.prev = call;
    bucket.head = call;
    call.bucket = bucket;
    return bucket.controller.signal;
  }

  #fire(bucket: Bucket): void {
    if (this.#current === bucket) this.#current = null;
    let call = bucket.head;
    if (call === null) return;
    bucket.head = null;
    while (call !== null) {
      const next: Expirable | null = call.next;
      call.bucket = null;
      call.prev = call.next = null;
      call.expire();
      call = next;
    }
    bucket.controller.abort(this.#reason());
  }
}
