/**
 * Time as the breaker sees it: wall-clock milliseconds (snapshots carry ISO times other
 * processes compare against theirs) and one-shot timers. Injected so that tests drive time by
 * hand (`ManualClock`) and every window boundary, wait and timeout is reproducible.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Calls `callback` once, `delayMs` from now. Timers must not keep a process alive. */
  setTimer(callback: () => void, delayMs: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

/** Opaque: whatever the clock's setTimer returned. */
export type TimerHandle = object | number;

/** Date.now() and unref'd setTimeout. */
export const systemClock: Clock = Object.freeze({
  now: Date.now,
  setTimer(callback: () => void, delayMs: number): TimerHandle {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return timer;
  },
  clearTimer(handle: TimerHandle): void {
    clearTimeout(handle as NodeJS.Timeout);
  },
});

interface ManualTimer {
  readonly at: number;
  readonly seq: number;
  readonly callback: () => void;
  cancelled: boolean;
}

/**
 * A clock that moves only when told. `advance(ms)` fires the timers that fall due, in due-time
 * order (ties in creation order), each with `now()` equal to its due time, as a real event loop
 * would; timers created by a firing timer fire in the same advance if they fall due.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers: ManualTimer[] = [];

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimer(callback: () => void, delayMs: number): TimerHandle {
    const timer: ManualTimer = { at: this.#now + Math.max(0, delayMs), seq: this.#seq++, callback, cancelled: false };
    this.#timers.push(timer);
    return timer;
  }

  clearTimer(handle: TimerHandle): void {
    (handle as ManualTimer).cancelled = true;
  }

  /** Moves time forward by `ms`, firing due timers on the way. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`ManualClock.advance(ms): ms must be a finite number >= 0 (got ${ms})`);
    const target = this.#now + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const timer of this.#timers) {
        if (timer.cancelled || timer.at > target) continue;
        if (next === undefined || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq)) next = timer;
      }
      if (next === undefined) break;
      next.cancelled = true;
      this.#now = Math.max(this.#now, next.at);
      next.callback();
    }
    this.#now = target;
    for (let i = this.#timers.length - 1; i >= 0; i--) if (this.#timers[i]!.cancelled) this.#timers.splice(i, 1);
  }

  /** Timers still waiting to fire. */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
}
