import { ConfigurationError } from '../map/errors.ts';
import { BulkheadAbortedError, BulkheadFullError } from './errors.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

export interface BulkheadOptions {
  /** Names the bulkhead in errors and metrics (the route id). */
  readonly name: string;
  /** Calls running at once. At least 1. */
  readonly maxConcurrent: number;
  /** Calls waiting for a slot; beyond that a call is refused at once (BulkheadFullError). 0 = no queue. */
  readonly maxQueued: number;
}

/** Every key of BulkheadOptions (the compiler checks the two stay the same): any other is refused. */
const BULKHEAD_OPTIONS = optionKeys<BulkheadOptions>({
  name: true, maxConcurrent: true, maxQueued: true,
});

interface Waiter {
  readonly admit: () => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
  /** Set when the waiter left the queue (admitted or aborted); queue entries are skipped lazily. */
  done: boolean;
}

/**
 * A bulkhead: at most `maxConcurrent` calls in flight and `maxQueued` waiting, per route, so a
 * slow downstream of one org can hold at most its own slots, never another route's.
 *
 * Invariants (checked by the fuzzed interleaving test):
 * - `active` never exceeds `maxConcurrent`; `queued` never exceeds `maxQueued`;
 * - waiting calls start in arrival order (FIFO);
 * - every admitted call releases its slot exactly once, however it ends;
 * - an aborted waiter leaves the queue and never starts.
 */
export class Bulkhead {
  readonly name: string;
  readonly maxConcurrent: number;
  readonly maxQueued: number;
  #active = 0;
  #queued = 0;
  /** FIFO with a moving head: shift() would be O(n) per admission. */
  #queue: Waiter[] = [];
  #head = 0;
  /** Calls refused because the bulkhead was full (read at scrape time). */
  rejected = 0;
  /** Calls admitted (started), queued first or not. */
  admitted = 0;

  constructor(options: BulkheadOptions) {
    refuseUnknownOptions(options, BULKHEAD_OPTIONS, 'Bulkhead');
    if (!(Number.isSafeInteger(options.maxConcurrent) && options.maxConcurrent >= 1)) {
      throw new ConfigurationError('maxConcurrent', 'a positive whole number of calls', options.maxConcurrent);
    }
    if (!(Number.isSafeInteger(options.maxQueued) && options.maxQueued >= 0)) {
      throw new ConfigurationError('maxQueued', 'a non-negative whole number of calls', options.maxQueued);
    }
    this.name = options.name;
    this.maxConcurrent = options.maxConcurrent;
    this.maxQueued = options.maxQueued;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  /**
   * Runs `fn` when a slot is free. Throws BulkheadFullError at once when all slots are busy and
   * the queue is full; BulkheadAbortedError when `signal` aborts while the call waits.
   */
  async run<T>(fn: () => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    await this.#acquire(signal);
    try {
      return await fn();
    } finally {
      this.#release();
    }
  }

  /** Whether a call made now would be refused (full and queue full). */
  get full(): boolean {
    return this.#active >= this.maxConcurrent && this.#queued >= this.maxQueued;
  }

  #acquire(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(new BulkheadAbortedError(this.name, signal.reason));
    if (this.#active < this.maxConcurrent && this.#queued === 0) {
      this.#active++;
      this.admitted++;
      return Promise.resolve();
    }
    if (this.#queued >= this.maxQueued) {
      this.rejected++;
      return Promise.reject(new BulkheadFullError(this.name, this.maxConcurrent, this.maxQueued));
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        admit: resolve,
        signal,
        onAbort: () => {
          if (waiter.done) return;
          waiter.done = true;
          this.#queued--;
          this.#sweepIfMostlyLeft();
          reject(new BulkheadAbortedError(this.name, signal!.reason));
        },
        done: false,
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#queue.push(waiter);
      this.#queued++;
    });
  }

  #release(): void {
    // Hand the slot straight to the next live waiter (active stays the same), or free it.
    while (this.#head < this.#queue.length) {
      const waiter = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as Waiter;
      if (waiter.done) continue;
      waiter.done = true;
      this.#queued--;
      waiter.signal?.removeEventListener('abort', waiter.onAbort);
      this.admitted++;
      this.#compact();
      waiter.admit();
      return;
    }
    this.#compact();
    this.#active--;
  }

  /**
   * Drops waiters that gave up once they outnumber the live ones by far. Entries are otherwise
   * skipped only when a slot frees: while every slot hangs (a downstream that never answers),
   * callers that arrive and give up would pile up for as long as it hangs, each holding its
   * signal and promise. Amortised O(1): a sweep leaves only live waiters, and the next needs
   * another 1024 to leave.
   */
  #sweepIfMostlyLeft(): void {
    if (this.#queue.length - this.#head <= 2 * this.#queued + 1024) return;
    this.#queue = this.#queue.slice(this.#head).filter((w) => !w.done);
    this.#head = 0;
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
