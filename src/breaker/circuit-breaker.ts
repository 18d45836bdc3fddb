import { BreakerArgumentError, CallAbandonedError, CallTimeoutError, CircuitOpenError } from './errors.ts';
import { resolveBreakerOptions } from './options.ts';
import type { BreakerSettings, CircuitBreakerOptions } from './options.ts';
import { decodeSnapshot, encodeSnapshot } from './snapshot.ts';
import type { BreakerSnapshot, BreakerState } from './snapshot.ts';
import { Expirable, TimeoutBuckets } from './timeout-buckets.ts';
import type { TimerHandle } from './clock.ts';

/** What answers a call the breaker refuses: a function of the refusal, or a fixed value. Without one, the call rejects with CircuitOpenError. */
export type Fallback<T> = ((rejection: CircuitOpenError) => T | PromiseLike<T>) | { readonly value: T };

export type TransitionReason =
  /** CLOSED -> OPEN: the failure rate breached in enough consecutive windows. */
  | 'failure_rate'
  /** CLOSED -> OPEN: the timeout rate breached in enough consecutive windows. */
  | 'timeout_rate'
  /** CLOSED -> OPEN: both rates breached in one window (at once), or the last window of a streak breached both. */
  | 'both_rates'
  /** OPEN -> HALF_OPEN: the wait is over (and, in a cluster, this instance holds the right to probe). */
  | 'open_elapsed'
  /** HALF_OPEN -> CLOSED: all probes done, both rates under their thresholds. */
  | 'probes_passed'
  /** HALF_OPEN -> OPEN: the probes breach a threshold (decided as soon as the outcome is certain). */
  | 'probes_failed'
  /** CLOSED -> OPEN: enough live instances of the cluster report the breaker OPEN. */
  | 'cluster_quorum'
  /** OPEN -> CLOSED: waiting for the right to probe, this instance saw the probing instance close. */
  | 'cluster_probe_verdict'
  /** CLOSED -> OPEN at start-up: this instance's last snapshot was OPEN (or HALF_OPEN). */
  | 'restored'
  /**
   * HALF_OPEN -> OPEN in a cluster: this instance took the probe right when the wait ended but no
   * call came to probe with for openDurationMs; it gives the right back so that an instance with
   * traffic can probe, and asks again on its next call.
   */
  | 'probe_idle';

/** One state change, as told to listeners (metrics, the cluster sync, an audit recorder). */
export interface BreakerTransition {
  /** The breaker's identity: its name, or `name:key` in a keyed group. */
  readonly breaker: string;
  readonly name: string;
  readonly key: string | null;
  readonly from: BreakerState;
  readonly to: BreakerState;
  readonly reason: TransitionReason;
  /** Epoch milliseconds, from the breaker's clock. */
  readonly at: number;
  /** The snapshot as of right after the transition. */
  readonly snapshot: BreakerSnapshot;
}

/** Called synchronously on the transition; must return fast and must not throw (errors are logged and swallowed). */
export type TransitionListener = (transition: BreakerTransition) => void;

/**
 * Decides whether a breaker whose OPEN wait is over may probe now. A cluster uses it so that
 * only one instance at a time probes a recovering dependency.
 */
export interface ProbeGate {
  /** True: probe now. False: stay OPEN until the gate calls `breaker.probeRightGranted()`. Synchronous: it answers from what it knows. */
  requestProbe(breaker: CircuitBreaker): boolean;
  /** The breaker left HALF_OPEN: the right goes back. */
  releaseProbe(breaker: CircuitBreaker): void;
}

/** Plain counters read at scrape time (metrics/); incrementing one is a single add. */
export class BreakerCounters {
  successes = 0;
  failures = 0;
  timeouts = 0;
  /** Calls not made: OPEN, or HALF_OPEN with every probe taken. */
  rejected = 0;
  /** Errors the isFailure predicate did not count as failures (counted as answered calls). */
  errorsNotCounted = 0;
  /** Calls their caller gave up on (CallAbandonedError): counted neither way. */
  abandoned = 0;
  toOpen = 0;
  toHalfOpen = 0;
  toClosed = 0;
}

/** Internal wiring from a group or a cluster sync. */
export interface BreakerBinding {
  readonly key?: string;
  /** Listeners shared by all breakers of a group (called after the breaker's own). */
  readonly sharedListeners?: readonly TransitionListener[];
  readonly gate?: ProbeGate;
}

const SUCCESS = 0;
const FAILURE = 1;
const TIMEOUT = 2;
const ABANDONED = 3;
type Outcome = typeof SUCCESS | typeof FAILURE | typeof TIMEOUT | typeof ABANDONED;
const BP = 10_000;
const RECORD = Symbol('record');
const NEVER_ABORTED = new AbortController().signal;
/** How far a wall clock may trail the timers' monotonic clock before it counts as stepped back (see #armOpenTimer). */
const WALL_CLOCK_LAG_MS = 100;

/**
 * A call in flight: settles once, by its result, its error or its deadline. Its timeout bucket
 * holds it until the deadline (up to timeoutMs after it settled), so settling drops the
 * references to the caller's promise functions: a settled call retains a few words, not its
 * promise graph, and the young generation is not made to copy it.
 */
class PendingCall<T> extends Expirable {
  settled = false;
  readonly #breaker: CircuitBreaker;
  readonly #epoch: number;
  #resolve: ((value: T) => void) | null;
  #reject: ((error: unknown) => void) | null;

  constructor(breaker: CircuitBreaker, epoch: number, resolve: (value: T) => void, reject: (error: unknown) => void) {
    super();
    this.#breaker = breaker;
    this.#epoch = epoch;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  succeed(value: T): void {
    if (this.settled) return;
    this.settled = true;
    this.leaveBucket();
    this.#breaker[RECORD](SUCCESS, this.#epoch);
    const resolve = this.#resolve!;
    this.#resolve = this.#reject = null;
    resolve(value);
  }

  fail(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.leaveBucket();
    this.#breaker[RECORD](error instanceof CallAbandonedError ? ABANDONED : this.#breaker.countsAsFailure(error) ? FAILURE : SUCCESS, this.#epoch);
    const reject = this.#reject!;
    this.#resolve = this.#reject = null;
    reject(error);
  }

  override expire(): void {
    if (this.settled) return;
    this.settled = true;
    this.#breaker[RECORD](TIMEOUT, this.#epoch);
    const reject = this.#reject!;
    this.#resolve = this.#reject = null;
    reject(new CallTimeoutError(this.#breaker.id, this.#breaker.settings.timeoutMs));
  }
}

/**
 * The two-threshold circuit breaker of the specification, around calls to one dependency.
 *
 * CLOSED: calls go through, each timed (default 200 ms; the call gets an AbortSignal). Outcomes
 * (success, failure, timeout) are counted per sampling window (default 1 s, aligned to the
 * epoch). A window is judged when it has ended and had at least `minimumCalls` calls; it is
 * breached when failures/calls >= 50% or timeouts/calls >= 30%. `breachedWindowsToOpen` (3)
 * consecutive breached windows trip the breaker; a window that is not breached, has too few
 * calls, or is empty ends a streak. Both rates breached in one window (with enough calls)
 * trip it at once, mid-window.
 * OPEN: no call is made; the fallback answers. After `openDurationMs` (30 s) -> HALF_OPEN.
 * HALF_OPEN: up to `halfOpenProbes` (5) calls go through; the others are refused. Judged over
 * all probes: -> CLOSED when every probe is done and both rates are under their thresholds;
 * -> OPEN as soon as the probes breach a threshold whatever the remaining ones do.
 *
 * Invariants:
 * - only outcomes of calls admitted in the current state (same `epoch`) are judged; a slow call
 *   admitted while CLOSED that ends after the trip is counted in metrics, not in judgement.
 * - nothing here awaits anything but the call itself: no I/O, no lock. Listeners (cluster sync,
 *   audit) are told synchronously and do their I/O off the caller's path.
 * - the hot path allocates the caller's promise, one PendingCall and two reaction closures; it
 *   reads the clock twice and does integer arithmetic; timers are per millisecond, or per
 *   thousandth of a budget over 2 s (TimeoutBuckets).
 */
export class CircuitBreaker {
  readonly settings: BreakerSettings;
  readonly name: string;
  readonly key: string | null;
  /** `name`, or `name:key` in a keyed group: the `<service>` of the etcd key. */
  readonly id: string;
  readonly counters = new BreakerCounters();
  /** Calls started and not yet settled. */
  inFlight = 0;
  /** Clock time of the last call (admitted or refused): idle eviction reads it. */
  lastUsedAt: number;

  readonly #timeouts: TimeoutBuckets | null;
  readonly #listeners: TransitionListener[] = [];
  readonly #shared: readonly TransitionListener[];
  #gate: ProbeGate | null;

  #state: BreakerState = 'CLOSED';
  #since: number;
  #version = 0;
  /** Grows at every transition: outcomes of calls admitted under another epoch are not judged. */
  #epoch = 0;
  // CLOSED: the window being sampled and the streak of breached windows before it.
  #windowIndex: number;
  #calls = 0;
  #failures = 0;
  #timeoutCount = 0;
  #breached = 0;
  // OPEN: the evidence that opened it, the end of the wait, and whether the gate said "not yet".
  #evidence: { failures: number; timeouts: number; total: number; breached: number } = { failures: 0, timeouts: 0, total: 0, breached: 0 };
  #openUntil = 0;
  /** When the evidence opened it: the `since` of its OPEN snapshot, kept when the probe right is given back. */
  #openedAt = 0;
  #openTimer: TimerHandle | null = null;
  #awaitingProbeRight = false;
  /** HALF_OPEN holding a cluster's probe right: gives it back if no probe is admitted in time. */
  #probeIdleTimer: TimerHandle | null = null;
  // HALF_OPEN: probes admitted, and outcomes of the probes done.
  #probesAdmitted = 0;
  #probesDone = 0;
  #probeFailures = 0;
  #probeTimeouts = 0;

  constructor(options: CircuitBreakerOptions, binding: BreakerBinding = {}) {
    this.settings = resolveBreakerOptions(options);
    this.name = this.settings.name;
    this.key = binding.key ?? null;
    this.id = this.key === null ? this.name : `${this.name}:${this.key}`;
    this.#shared = binding.sharedListeners ?? [];
    this.#gate = binding.gate ?? null;
    const now = this.settings.clock.now();
    this.#since = now;
    this.lastUsedAt = now;
    this.#windowIndex = Math.floor(now / this.settings.windowMs);
    this.#timeouts = Number.isFinite(this.settings.timeoutMs) ? new TimeoutBuckets(this.settings.timeoutMs, this.settings.clock, () => new CallTimeoutError(this.id, this.settings.timeoutMs)) : null;
  }

  /**
   * Runs `call` if the breaker admits it, giving it an AbortSignal that aborts when its time is
   * up (shared with the calls started in the same millisecond, or the same thousandth of a
   * budget over 2 s: it may abort after this call settled, so the call must be done with it by
   * then). Resolves with its result; rejects with its error, or CallTimeoutError when it took
   * too long. A refused call is not made: `fallback` answers, or the promise rejects with
   * CircuitOpenError. A `call` or `fallback` of the wrong kind rejects with BreakerArgumentError,
   * before admission.
   */
  execute<T>(call: (signal: AbortSignal) => T | PromiseLike<T>, fallback?: Fallback<T>): Promise<T> {
    if (typeof call !== 'function') return Promise.reject(new BreakerArgumentError(this.id, 'execute', 'call', 'a function (signal) => result', call));
    if (fallback !== undefined && typeof fallback !== 'function' && !isStaticFallback(fallback)) {
      return Promise.reject(new BreakerArgumentError(this.id, 'execute', 'fallback', 'a function (refusal) => result, or { value }', fallback));
    }
    const now = this.settings.clock.now();
    this.lastUsedAt = now;
    const epoch = this.#admit(now);
    if (epoch < 0) return this.#refuse(fallback);
    this.inFlight++;
    if (this.#timeouts === null) return this.#untimed(call, epoch);
    return new Promise<T>((resolve, reject) => {
      const pending = new PendingCall<T>(this, epoch, resolve, reject);
      const signal = this.#timeouts!.enlist(pending, now);
      try {
        const result = call(signal);
        if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<T>).then === 'function') {
          // Inside the try: a thenable whose then() throws is the call's failure, settled now,
          // not a call left pending until its deadline and then counted as a timeout.
          (result as PromiseLike<T>).then(
            (value) => pending.succeed(value),
            (error: unknown) => pending.fail(error),
          );
        } else {
          pending.succeed(result as T);
        }
      } catch (error) {
        pending.fail(error);
      }
    });
  }

  /** Without a timeout nothing can settle the call but the call itself: a plain await, the cheapest path. */
  async #untimed<T>(call: (signal: AbortSignal) => T | PromiseLike<T>, epoch: number): Promise<T> {
    let value: T;
    try {
      value = await call(NEVER_ABORTED);
    } catch (error) {
      this[RECORD](error instanceof CallAbandonedError ? ABANDONED : this.countsAsFailure(error) ? FAILURE : SUCCESS, epoch);
      throw error;
    }
    this[RECORD](SUCCESS, epoch);
    return value;
  }

  /** The state as of now (windows that have ended are judged first, which may trip the breaker). */
  get state(): BreakerState {
    this.#refresh(this.settings.clock.now());
    return this.#state;
  }

  /** Epoch ms the current state was entered. */
  get since(): number {
    return this.#since;
  }

  /** Transitions so far (continued from a restored snapshot). */
  get version(): number {
    return this.#version;
  }

  /**
   * Epoch ms an OPEN breaker's wait ends; null in other states, and once the wait is over while
   * another instance holds the probe right (awaitingProbeRight): the end of the wait is then in
   * the past, and a caller retrying at it would only be refused again.
   */
  get openUntil(): number | null {
    return this.#state === 'OPEN' && !this.#awaitingProbeRight ? this.#openUntil : null;
  }

  /** OPEN with its wait over, held back by the probe gate (another instance is probing). */
  get awaitingProbeRight(): boolean {
    return this.#state === 'OPEN' && this.#awaitingProbeRight;
  }

  snapshot(): BreakerSnapshot {
    this.#refresh(this.settings.clock.now());
    return this.#snapshot();
  }

  /** Listens to this breaker's transitions; returns the function that stops listening. */
  onTransition(listener: TransitionListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** Installs (or removes, with null) the probe gate of a cluster. */
  setProbeGate(gate: ProbeGate | null): void {
    this.#gate = gate;
  }

  /** From the probe gate: this instance may now probe. */
  probeRightGranted(): void {
    if (this.#state === 'OPEN' && this.#awaitingProbeRight) this.#tryHalfOpen(this.settings.clock.now());
  }

  /**
   * Resumes from this instance's last snapshot (a restart). OPEN stays OPEN for the rest of its
   * wait; HALF_OPEN's probes died with the old process, so it resumes OPEN with its wait over and
   * probes anew. CLOSED resumes CLOSED. The version continues from the snapshot's. Only a breaker
   * that has made no transition yet can be restored; returns whether the state changed.
   */
  restore(snapshot: BreakerSnapshot): boolean {
    // The same rules as a snapshot read from the store: a NaN or negative version here would be
    // published with every later transition and refused by every reader.
    const checked = snapshot !== null && typeof snapshot === 'object' ? decodeSnapshot(encodeSnapshot(snapshot)) : { ok: false as const, reason: 'invalid_shape' };
    if (!checked.ok) throw new BreakerArgumentError(this.id, 'restore', 'snapshot', `a snapshot as decodeSnapshot accepts it (${checked.reason})`, snapshot);
    if (this.#version !== 0 || this.#state !== 'CLOSED') return false;
    this.#version = snapshot.version;
    if (snapshot.state === 'CLOSED') return false;
    const now = this.settings.clock.now();
    const since = Date.parse(snapshot.since);
    // An OPEN `since` ahead of this clock (the snapshot came from a host whose clock runs ahead,
    // or this one was stepped back) is taken as now: the full wait, not none at all.
    const openedAt = snapshot.state === 'OPEN' && Number.isFinite(since) ? Math.min(since, now) : now - this.settings.openDurationMs;
    this.#evidence = { failures: snapshot.failures, timeouts: snapshot.timeouts, total: snapshot.total, breached: snapshot.breachedWindows };
    this.#enterOpen('restored', now, openedAt);
    return true;
  }

  /** The cluster's quorum reports this breaker OPEN: a CLOSED breaker opens (its wait starts now). */
  adoptOpen(): boolean {
    const now = this.settings.clock.now();
    this.#refresh(now);
    if (this.#state !== 'CLOSED') return false;
    this.#evidence = { failures: 0, timeouts: 0, total: 0, breached: 0 };
    this.#enterOpen('cluster_quorum', now, now);
    return true;
  }

  /**
   * The instance holding the probe right closed after its probes: a breaker waiting for that
   * right closes too, as does one whose wait is over that gave the right back (probe_idle).
   */
  adoptProbeVerdict(): boolean {
    if (!this.awaitingProbeRight && !(this.#state === 'OPEN' && this.settings.clock.now() >= this.#openUntil)) return false;
    this.#transition('CLOSED', 'cluster_probe_verdict', this.settings.clock.now());
    return true;
  }

  /** Stops the breaker's timer (the OPEN wait); in-flight calls still settle. */
  dispose(): void {
    if (this.#openTimer !== null) this.settings.clock.clearTimer(this.#openTimer);
    this.#openTimer = null;
    this.#clearProbeIdleTimer();
  }

  #clearProbeIdleTimer(): void {
    if (this.#probeIdleTimer !== null) this.settings.clock.clearTimer(this.#probeIdleTimer);
    this.#probeIdleTimer = null;
  }

  /**
   * Holding a cluster's probe right, HALF_OPEN with no call to probe with (traffic routed to other
   * instances, a drained pod): every other instance refused every call for as long as this one's
   * lease lived. After openDurationMs without a probe admitted, the right goes back.
   */
  #armProbeIdleTimer(): void {
    this.#clearProbeIdleTimer();
    const epoch = this.#epoch;
    this.#probeIdleTimer = this.settings.clock.setTimer(() => {
      this.#probeIdleTimer = null;
      if (this.#state !== 'HALF_OPEN' || this.#epoch !== epoch || this.#probesAdmitted > 0) return;
      const now = this.settings.clock.now();
      // The wait is over: the next call here asks for the right again (no timer: an idle instance
      // would otherwise take it back at once, and hold it idle again).
      this.#openUntil = now;
      this.#awaitingProbeRight = false;
      this.#transition('OPEN', 'probe_idle', now, this.#openedAt);
    }, this.settings.openDurationMs);
  }

  /** @internal the isFailure predicate, guarded: a predicate that throws counts the error as a failure. */
  countsAsFailure(error: unknown): boolean {
    const isFailure = this.settings.isFailure;
    if (isFailure === null) return true;
    try {
      if (isFailure(error)) return true;
    } catch {
      return true;
    }
    this.counters.errorsNotCounted++;
    return false;
  }

  /** @internal called by PendingCall when a call settles. */
  [RECORD](outcome: Outcome, epoch: number): void {
    this.inFlight--;
    const c = this.counters;
    if (outcome === SUCCESS) c.successes++;
    else if (outcome === FAILURE) c.failures++;
    else if (outcome === TIMEOUT) c.timeouts++;
    else c.abandoned++;
    if (epoch !== this.#epoch) return;
    if (outcome === ABANDONED) {
      // No verdict on the dependency: a probe's place goes to the next call.
      if (this.#state === 'HALF_OPEN') this.#probesAdmitted--;
      return;
    }
    const s = this.settings;
    if (this.#state === 'CLOSED') {
      const now = s.clock.now();
      if (Math.floor(now / s.windowMs) !== this.#windowIndex) {
        this.#roll(now);
        if (this.#state !== 'CLOSED') return;
      }
      const calls = ++this.#calls;
      if (outcome === FAILURE) this.#failures++;
      else if (outcome === TIMEOUT) this.#timeoutCount++;
      // Both rates breached in one window trip at once:
      //   failures / calls >= f  and  timeouts / calls >= t   (integers: x * BP >= t_bp * calls)
      if (calls >= s.minimumCalls && this.#failures * BP >= s.failureRateBp * calls && this.#timeoutCount * BP >= s.timeoutRateBp * calls) {
        this.#evidence = { failures: this.#failures, timeouts: this.#timeoutCount, total: calls, breached: this.#breached + 1 };
        this.#enterOpen('both_rates', now, now);
      }
    } else if (this.#state === 'HALF_OPEN') {
      this.#probesDone++;
      if (outcome === FAILURE) this.#probeFailures++;
      else if (outcome === TIMEOUT) this.#probeTimeouts++;
      // The probes are judged over all N of them. Their failure rate will end at least
      // failures_so_far / N, so once failures_so_far * BP >= f_bp * N the verdict is OPEN
      // whatever the remaining probes do: stop probing the failing dependency now.
      const n = s.halfOpenProbes;
      if (this.#probeFailures * BP >= s.failureRateBp * n || this.#probeTimeouts * BP >= s.timeoutRateBp * n) {
        this.#evidence = { failures: this.#probeFailures, timeouts: this.#probeTimeouts, total: this.#probesDone, breached: 0 };
        this.#enterOpen('probes_failed', s.clock.now(), s.clock.now());
      } else if (this.#probesDone === n) {
        this.#transition('CLOSED', 'probes_passed', s.clock.now());
      }
    }
  }

  /** Admits a call at `now`: returns the epoch it runs under, or -1 if refused. */
  #admit(now: number): number {
    if (this.#state === 'CLOSED') {
      if (Math.floor(now / this.settings.windowMs) !== this.#windowIndex) this.#roll(now);
      // Tripped by the roll, possibly with its wait already over (see #roll): judged as OPEN below.
      if (this.#state === 'CLOSED') return this.#epoch;
    }
    if (this.#state === 'OPEN' && (now < this.#openUntil || !this.#tryHalfOpen(now))) return -1;
    if (this.#state !== 'HALF_OPEN' || this.#probesAdmitted >= this.settings.halfOpenProbes) return -1;
    this.#probesAdmitted++;
    return this.#epoch;
  }

  #refuse<T>(fallback: Fallback<T> | undefined): Promise<T> {
    this.counters.rejected++;
    if (fallback !== undefined && typeof fallback !== 'function') return Promise.resolve(fallback.value);
    const refusal = new CircuitOpenError(this.id, this.#state, this.openUntil);
    if (fallback === undefined) return Promise.reject(refusal);
    try {
      return Promise.resolve(fallback(refusal));
    } catch (error) {
      // The fallback's own error, whatever it threw, is the caller's answer.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      return Promise.reject(error);
    }
  }

  #refresh(now: number): void {
    if (this.#state === 'CLOSED' && Math.floor(now / this.settings.windowMs) !== this.#windowIndex) this.#roll(now);
  }

  /**
   * Judges the window that has ended and starts the one `now` falls in. A window is breached
   * when it had >= minimumCalls calls and failures * BP >= f_bp * calls or timeouts * BP >=
   * t_bp * calls. A streak reaching breachedWindowsToOpen trips the breaker; a window that is
   * not breached ends the streak, and so does any window skipped without a single call.
   */
  #roll(now: number): void {
    const s = this.settings;
    const index = Math.floor(now / s.windowMs);
    const calls = this.#calls;
    const failures = this.#failures;
    const timeouts = this.#timeoutCount;
    const skipped = index !== this.#windowIndex + 1;
    const endedAt = (this.#windowIndex + 1) * s.windowMs;
    this.#windowIndex = index;
    this.#calls = this.#failures = this.#timeoutCount = 0;
    const failureBreach = calls >= s.minimumCalls && failures * BP >= s.failureRateBp * calls;
    const timeoutBreach = calls >= s.minimumCalls && timeouts * BP >= s.timeoutRateBp * calls;
    if (!failureBreach && !timeoutBreach) {
      this.#breached = 0;
      return;
    }
    this.#breached++;
    if (this.#breached >= s.breachedWindowsToOpen) {
      this.#evidence = { failures, timeouts, total: calls, breached: this.#breached };
      // Open as of the end of the window that completed the streak, not as of the call that
      // noticed it: after traffic stopped there, the first call an hour later was refused for
      // another openDurationMs on evidence an hour old (the wait it already served, unobserved).
      this.#enterOpen(failureBreach && timeoutBreach ? 'both_rates' : failureBreach ? 'failure_rate' : 'timeout_rate', now, Math.min(endedAt, now));
    } else if (skipped) {
      this.#breached = 0;
    }
  }

  #enterOpen(reason: TransitionReason, now: number, openedAt: number): void {
    this.#openedAt = openedAt;
    this.#openUntil = openedAt + this.settings.openDurationMs;
    this.#awaitingProbeRight = false;
    this.#transition('OPEN', reason, now, openedAt);
    this.#armOpenTimer(now);
  }

  #armOpenTimer(now: number): void {
    const clock = this.settings.clock;
    if (this.#openTimer !== null) clock.clearTimer(this.#openTimer);
    this.#openTimer = clock.setTimer(() => {
      this.#openTimer = null;
      if (this.#state !== 'OPEN') return;
      const at = clock.now();
      // A wall clock can lag the timer's monotonic clock by a millisecond: wait out the rest.
      // Further behind, the wall clock was stepped back during the wait (NTP, a VM resumed): the
      // timer has measured the full wait, so it ends now on this clock too. Waiting for the wall
      // clock to catch up would keep the breaker OPEN, refusing every call, for as long as the step.
      if (at < this.#openUntil && this.#openUntil - at <= WALL_CLOCK_LAG_MS) {
        this.#armOpenTimer(at);
        return;
      }
      if (at < this.#openUntil) this.#openUntil = at;
      this.#tryHalfOpen(at);
    }, Math.max(0, this.#openUntil - now));
  }

  /** The OPEN wait is over: probe if the gate allows, else wait for probeRightGranted(). */
  #tryHalfOpen(now: number): boolean {
    if (this.#gate !== null && !this.#gate.requestProbe(this)) {
      this.#awaitingProbeRight = true;
      return false;
    }
    this.#awaitingProbeRight = false;
    this.#transition('HALF_OPEN', 'open_elapsed', now);
    return true;
  }

  #transition(to: BreakerState, reason: TransitionReason, now: number, since = now): void {
    const from = this.#state;
    this.#state = to;
    this.#since = since;
    this.#version++;
    this.#epoch++;
    const c = this.counters;
    if (to === 'CLOSED') {
      c.toClosed++;
      this.#windowIndex = Math.floor(now / this.settings.windowMs);
      this.#calls = this.#failures = this.#timeoutCount = this.#breached = 0;
      this.#awaitingProbeRight = false;
      if (this.#openTimer !== null) this.settings.clock.clearTimer(this.#openTimer);
      this.#openTimer = null;
    } else if (to === 'HALF_OPEN') {
      c.toHalfOpen++;
      this.#probesAdmitted = this.#probesDone = this.#probeFailures = this.#probeTimeouts = 0;
    } else {
      c.toOpen++;
    }
    if (from === 'HALF_OPEN') this.#gate?.releaseProbe(this);
    if (to === 'HALF_OPEN' && this.#gate !== null) this.#armProbeIdleTimer();
    else if (from === 'HALF_OPEN') this.#clearProbeIdleTimer();
    if (this.#listeners.length === 0 && this.#shared.length === 0) return;
    const transition: BreakerTransition = { breaker: this.id, name: this.name, key: this.key, from, to, reason, at: now, snapshot: this.#snapshot() };
    for (const listener of this.#listeners) notify(listener, transition);
    for (const listener of this.#shared) notify(listener, transition);
  }

  #snapshot(): BreakerSnapshot {
    const base = { since: new Date(this.#since).toISOString(), version: this.#version };
    switch (this.#state) {
      case 'CLOSED':
        return { state: 'CLOSED', failures: this.#failures, timeouts: this.#timeoutCount, total: this.#calls, breachedWindows: this.#breached, ...base };
      case 'OPEN': {
        const e = this.#evidence;
        return { state: 'OPEN', failures: e.failures, timeouts: e.timeouts, total: e.total, breachedWindows: e.breached, ...base };
      }
      default:
        return { state: 'HALF_OPEN', failures: this.#probeFailures, timeouts: this.#probeTimeouts, total: this.#probesDone, breachedWindows: 0, ...base };
    }
  }
}

function isStaticFallback(fallback: unknown): boolean {
  return fallback !== null && typeof fallback === 'object' && 'value' in fallback;
}

function notify(listener: TransitionListener, transition: BreakerTransition): void {
  try {
    listener(transition);
  } catch (error) {
    // A listener's defect must not break the call path nor the other listeners.
    console.error(`govmap breaker "${transition.breaker}": a transition listener threw`, error);
  }
}
