import { randomUUID } from 'node:crypto';
import { ConfigurationError } from '../map/errors.ts';
import { MAX_TIMER_MS } from '../switches/timer-option.ts';
import { AsyncLaneRefusedError } from './errors.ts';
import { TokenBucket } from './token-bucket.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

/**
 * Checks a shutdown deadline before anything is closed: a deadline above a Node.js timer's
 * limit would expire after 1 ms and abort every running job at once.
 * @throws ConfigurationError
 */
export function checkCloseDeadline(deadlineMs: unknown): void {
  if (!(typeof deadlineMs === 'number' && deadlineMs >= 0 && deadlineMs <= MAX_TIMER_MS)) {
    throw new ConfigurationError('deadlineMs', `must be a number of milliseconds from 0 to ${MAX_TIMER_MS} (the longest delay a Node.js timer holds)`, deadlineMs);
  }
}

/** A unit of deferred work: what the request asked for, to be done later. Plain JSON-able data. */
export interface AsyncJob<P = unknown> {
  /** Handed to the client in the 202 answer; GET it back with `status(token)`. */
  readonly token: string;
  readonly lane: string;
  readonly payload: P;
  /** ISO-8601 time the job was accepted. */
  readonly acceptedAt: string;
  /** Attempts made so far (deferrals while the downstream is known-down do not count). */
  attempts: number;
}

export type AsyncJobState = 'queued' | 'processing' | 'done' | 'dead';

export interface AsyncJobStatus {
  readonly token: string;
  readonly state: AsyncJobState;
  readonly attempts: number;
  /** The last failure's message, for a job that failed at least once. */
  readonly lastError: string | null;
}

export interface AsyncLaneOptions<P> {
  /** Names the lane (the route id) in errors, logs and metrics. */
  readonly name: string;
  /** Sustained processing rate, jobs per second. */
  readonly ratePerSec: number;
  /** Jobs started back to back after a quiet period. Default ceil(ratePerSec). */
  readonly burst?: number;
  /** Jobs held (queued + in flight); beyond, submit() refuses. Default 10,000. */
  readonly maxQueued?: number;
  /** Failed attempts before a job is dead-lettered. Default 5. */
  readonly maxAttempts?: number;
  /** Jobs processed at once. Default 4. */
  readonly maxInFlight?: number;
  /** Pause after a deferral (the downstream is known to be down), ms. Default 500. */
  readonly deferMs?: number;
  /** Does the work. Rejecting is a failed attempt, unless `isDeferral` says the work was not attempted. */
  readonly process: (job: AsyncJob<P>, signal: AbortSignal) => Promise<void>;
  /**
   * Whether an error means "not attempted now, try later" (the route's breaker refused the call):
   * the job goes back to the head of the queue, its attempts unchanged, and the lane pauses.
   */
  readonly isDeferral?: (error: unknown) => boolean;
  /** Called with a job that failed `maxAttempts` times; it is then in state `dead`. Default: logged. */
  readonly onDeadLetter?: (job: AsyncJob<P>, error: unknown) => void;
  readonly log?: (message: string, error?: unknown) => void;
  /** Monotonic milliseconds for the rate limit. Default `performance.now`. */
  readonly clock?: () => number;
}

/** Every key of AsyncLaneOptions (the compiler checks the two stay the same): any other is refused. */
const ASYNC_LANE_OPTIONS = optionKeys<AsyncLaneOptions<unknown>>({
  name: true, ratePerSec: true, burst: true, maxQueued: true, maxAttempts: true, maxInFlight: true, deferMs: true,
  process: true, isDeferral: true, onDeadLetter: true, log: true, clock: true,
});

export interface DrainResult<P> {
  /** Jobs completed while draining. */
  readonly processed: number;
  /**
   * Jobs not done by the deadline, oldest first: persist them (and `restore()` them at the next
   * start). Nothing accepted is dropped: a job is done, dead-lettered, or in this list.
   */
  readonly remaining: AsyncJob<P>[];
}

/** Final statuses kept for `status(token)` lookups after a job leaves the queue. */
const FINISHED_KEPT = 10_000;

/**
 * The `async` degradation: requests are accepted (202 with a token), queued, and processed later
 * under a token-bucket rate limit, so a recovering downstream is not hit by the whole backlog at
 * once. Graceful shutdown drains: `close()` stops intake, keeps processing until the queue is
 * empty or the deadline passes, and returns every job it could not finish.
 *
 * Invariants: every accepted job ends in exactly one of done, dead (after `maxAttempts` failures,
 * handed to `onDeadLetter`), or `close().remaining`; at most `maxInFlight` jobs run at once; jobs
 * start no faster than the bucket allows.
 */
export class AsyncLane<P = unknown> {
  readonly name: string;
  #maxQueued: number;
  #maxAttempts: number;
  readonly #options: AsyncLaneOptions<P>;
  #bucket: TokenBucket;
  readonly #maxInFlight: number;
  readonly #deferMs: number;
  readonly #log: (message: string, error?: unknown) => void;
  #queue: AsyncJob<P>[] = [];
  readonly #inFlight = new Map<string, AbortController>();
  readonly #inFlightJobs = new Map<string, AsyncJob<P>>();
  readonly #lastError = new Map<string, string>();
  readonly #finished = new Map<string, AsyncJobStatus>();
  #timer: NodeJS.Timeout | null = null;
  #pausedUntil = 0;
  #closing = false;
  /** Set once close() has given up processing: nothing starts after it. */
  #stopped = false;
  #drained: (() => void) | null = null;
  /** While closing: which jobs nothing can run any more (close()'s `setAside`), and those set aside. */
  #setAside: ((job: AsyncJob<P>) => boolean) | null = null;
  #parked: AsyncJob<P>[] = [];
  /** Counters read at scrape time. */
  readonly counters = { accepted: 0, refused: 0, done: 0, failedAttempts: 0, deferrals: 0, dead: 0 };

  constructor(options: AsyncLaneOptions<P>) {
    refuseUnknownOptions(options, ASYNC_LANE_OPTIONS, 'AsyncLane');
    if (typeof options.process !== 'function') throw new ConfigurationError('process', 'an async lane needs the function that does its work');
    this.name = options.name;
    this.#options = options;
    this.#bucket = new TokenBucket({ ratePerSec: options.ratePerSec, burst: options.burst, clock: options.clock });
    this.#maxQueued = positiveInt('maxQueued', options.maxQueued ?? 10_000);
    this.#maxAttempts = positiveInt('maxAttempts', options.maxAttempts ?? 5);
    this.#maxInFlight = positiveInt('maxInFlight', options.maxInFlight ?? 4);
    this.#deferMs = positiveInt('deferMs', options.deferMs ?? 500);
    this.#log = options.log ?? ((message, error) => console.error(message, error ?? ''));
  }

  /** Jobs held (queued + in flight) beyond which submit() refuses. */
  get maxQueued(): number {
    return this.#maxQueued;
  }

  /** Failed attempts before a job is dead-lettered. */
  get maxAttempts(): number {
    return this.#maxAttempts;
  }

  /**
   * New limits in place (a route table reload retuning the route): the jobs already held are
   * processed at the new rate, here. A backlog left in a replaced lane kept draining at the old
   * rate, so raising the rate to drain it did nothing for it. A lower `maxQueued` refuses new
   * jobs until the backlog is under it; nothing held is dropped.
   * @throws ConfigurationError for an invalid limit (the lane keeps its limits)
   */
  retune(limits: { readonly ratePerSec: number; readonly burst?: number; readonly maxQueued?: number; readonly maxAttempts?: number }): void {
    const bucket = new TokenBucket({ ratePerSec: limits.ratePerSec, burst: limits.burst, clock: this.#options.clock });
    const maxQueued = positiveInt('maxQueued', limits.maxQueued ?? 10_000);
    const maxAttempts = positiveInt('maxAttempts', limits.maxAttempts ?? 5);
    this.#bucket = bucket;
    this.#maxQueued = maxQueued;
    this.#maxAttempts = maxAttempts;
    // A timer waiting for a token of the old bucket (minutes at a very low rate) would hold the
    // backlog back; one waiting out a deferral pause still has to wait.
    if (this.#timer !== null && !this.#stopped && performance.now() >= this.#pausedUntil) {
      this.#stopTimer();
      this.#pump();
    }
  }

  /** Jobs waiting plus jobs in flight. */
  get depth(): number {
    return this.#queue.length + this.#inFlight.size;
  }

  /** Finished jobs (done or dead) whose status `status(token)` still answers. */
  get settled(): number {
    return this.#finished.size;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Accepts a job. @throws AsyncLaneRefusedError when closing or full (the caller answers 503) */
  submit(payload: P): AsyncJob<P> {
    return this.#accept({ token: randomUUID(), lane: this.name, payload, acceptedAt: new Date().toISOString(), attempts: 0 });
  }

  /**
   * Re-accepts jobs a previous run returned from close() (their tokens and attempts kept). A job
   * whose token the lane already holds (queued or in flight: the same list restored twice, or a
   * token listed twice) is skipped: two copies would run the same payment at once, and the
   * in-flight bookkeeping is keyed by token, so close() would lose one of them.
   */
  restore(jobs: readonly AsyncJob<P>[]): void {
    const held = new Set<string>(this.#inFlightJobs.keys());
    for (const job of this.#queue) held.add(job.token);
    for (const job of jobs) {
      if (held.has(job.token)) continue;
      this.#accept({ ...job, lane: this.name });
      held.add(job.token);
    }
  }

  /** Adds to `into` the token of every job this lane holds (queued, in flight) or has finished. */
  collectTokens(into: Set<string>): void {
    for (const token of this.#inFlightJobs.keys()) into.add(token);
    for (const job of this.#queue) into.add(job.token);
    for (const token of this.#finished.keys()) into.add(token);
  }

  status(token: string): AsyncJobStatus | undefined {
    const finished = this.#finished.get(token);
    if (finished !== undefined) return finished;
    const lastError = this.#lastError.get(token) ?? null;
    const running = this.#inFlightJobs.get(token);
    if (running !== undefined) return { token, state: 'processing', attempts: running.attempts, lastError };
    const queued = this.#queue.find((j) => j.token === token) ?? this.#parked.find((j) => j.token === token);
    return queued === undefined ? undefined : { token, state: 'queued', attempts: queued.attempts, lastError };
  }

  /**
   * Graceful shutdown: refuses new jobs, processes the queue until it is empty or `deadlineMs`
   * passes, then aborts what is still running (those jobs go back to the queue) and returns
   * everything not done. Jobs `setAside` names (nothing can run them any more) are not waited
   * for: taken out of the queue at once, or when an attempt of theirs comes back deferred.
   */
  async close(options: { readonly deadlineMs?: number; readonly abortGraceMs?: number; readonly setAside?: (job: AsyncJob<P>) => boolean } = {}): Promise<DrainResult<P>> {
    const deadlineMs = options.deadlineMs ?? 30_000;
    const abortGraceMs = options.abortGraceMs ?? 5_000;
    checkCloseDeadline(deadlineMs);
    this.#closing = true;
    const doneBefore = this.counters.done;
    // Jobs that can never run now (their route left the table for good): retried until the
    // deadline, they held the whole shutdown for it, and a process killed meanwhile lost them all.
    if (options.setAside !== undefined) {
      this.#setAside = options.setAside;
      const kept: AsyncJob<P>[] = [];
      for (const job of this.#queue) (options.setAside(job) ? this.#parked : kept).push(job);
      this.#queue = kept;
    }
    if (this.depth > 0) {
      const drained = new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
      this.#stopTimer(); // re-arm with a timer that keeps the process alive while draining
      this.#pump();
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<'expired'>((resolve) => {
        timer = setTimeout(() => resolve('expired'), deadlineMs);
      });
      const outcome = await Promise.race([drained.then(() => 'drained' as const), expired]);
      clearTimeout(timer);
      if (outcome === 'expired') {
        this.#stopped = true;
        this.#stopTimer();
        for (const controller of this.#inFlight.values()) controller.abort(new Error(`async lane "${this.name}" closed before the job finished`));
        // Aborted jobs settle and go back to the queue (#run); wait for that, within the grace.
        const graceEnd = performance.now() + abortGraceMs;
        while (this.#inFlight.size > 0 && performance.now() < graceEnd) await new Promise((r) => setTimeout(r, 5));
        if (this.#inFlight.size > 0) {
          // Their process() ignores the abort. Listed as remaining: processing is at least once,
          // so process() must be idempotent per job token.
          this.#log(`govmap routing: async lane "${this.name}": ${this.#inFlight.size} job(s) ignored the abort; returned as remaining`);
          this.#queue.unshift(...this.#inFlightJobs.values());
        }
      }
    }
    this.#stopped = true;
    this.#stopTimer();
    const remaining = this.#parked.length === 0 ? this.#queue : [...this.#parked, ...this.#queue];
    this.#queue = [];
    this.#parked = [];
    return { processed: this.counters.done - doneBefore, remaining };
  }

  #accept(job: AsyncJob<P>): AsyncJob<P> {
    if (this.#closing) {
      this.counters.refused++;
      throw new AsyncLaneRefusedError(this.name, 'closing', this.maxQueued);
    }
    if (this.depth >= this.maxQueued) {
      this.counters.refused++;
      throw new AsyncLaneRefusedError(this.name, 'full', this.maxQueued);
    }
    this.#queue.push(job);
    this.counters.accepted++;
    this.#pump();
    return job;
  }

  /** Starts as many jobs as the bucket, the in-flight bound and any pause allow; re-arms itself. */
  #pump(): void {
    if (this.#timer !== null || this.#stopped) return;
    const now = performance.now();
    if (now < this.#pausedUntil) return this.#arm(this.#pausedUntil - now);
    while (this.#queue.length > 0 && this.#inFlight.size < this.#maxInFlight) {
      if (!this.#bucket.take()) return this.#arm(this.#bucket.waitMs());
      void this.#run(this.#queue.shift()!);
    }
    if (this.depth === 0) this.#drained?.();
  }

  #arm(ms: number): void {
    // A very slow bucket (ratePerSec 1e-9) can ask for a wait beyond a timer's limit, which Node
    // would shorten to 1 ms: a busy loop. Waking early at the limit only re-checks the bucket.
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.#pump();
      },
      Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms))),
    );
    // An idle service must be able to exit; close() keeps the process alive while draining.
    if (!this.#closing) this.#timer.unref();
  }

  #stopTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  async #run(job: AsyncJob<P>): Promise<void> {
    const controller = new AbortController();
    this.#inFlight.set(job.token, controller);
    this.#inFlightJobs.set(job.token, job);
    try {
      await this.#options.process(job, controller.signal);
      this.#finish(job, 'done', null);
      this.counters.done++;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (controller.signal.aborted) {
        this.#queue.unshift(job); // shutdown interrupted it: not an attempt, not lost
      } else if (this.#options.isDeferral?.(error) === true && this.#setAside?.(job) === true) {
        this.#parked.unshift(job); // as a deferral goes back to the head; returned by close() at once
      } else if (this.#options.isDeferral?.(error) === true) {
        this.counters.deferrals++;
        this.#queue.unshift(job);
        this.#pausedUntil = performance.now() + this.#deferMs;
      } else {
        job.attempts++;
        this.counters.failedAttempts++;
        this.#lastError.set(job.token, message);
        if (job.attempts >= this.maxAttempts) {
          this.counters.dead++;
          this.#finish(job, 'dead', message);
          try {
            if (this.#options.onDeadLetter) this.#options.onDeadLetter(job, error);
            else this.#log(`govmap routing: async lane "${this.name}": job ${job.token} dead after ${job.attempts} attempts`, error);
          } catch (hookError) {
            this.#log(`govmap routing: async lane "${this.name}": onDeadLetter threw for job ${job.token}`, hookError);
          }
        } else {
          this.#queue.push(job);
        }
      }
    } finally {
      this.#inFlight.delete(job.token);
      this.#inFlightJobs.delete(job.token);
      this.#pump();
    }
  }

  #finish(job: AsyncJob<P>, state: 'done' | 'dead', lastError: string | null): void {
    this.#lastError.delete(job.token);
    this.#finished.set(job.token, Object.freeze({ token: job.token, state, attempts: job.attempts, lastError }));
    if (this.#finished.size > FINISHED_KEPT) this.#finished.delete(this.#finished.keys().next().value!);
  }
}

function positiveInt(option: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 1)) throw new ConfigurationError(option, 'a positive whole number', value);
  return value;
}
