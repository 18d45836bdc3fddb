import { ConfigurationError } from '../map/errors.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { systemClock } from './clock.ts';
import type { Clock } from './clock.ts';

/**
 * How a breaker samples and judges. Every field is optional except `name`; the defaults are
 * the specification's (failure rate >= 50%, timeout rate >= 30%, 200 ms timeout, 3 windows).
 */
export interface CircuitBreakerOptions {
  /** The protected dependency, e.g. `settlement`: `[A-Za-z][A-Za-z0-9_-]{0,63}`. Required. */
  readonly name: string;
  /** Per-call time budget, milliseconds; the call's AbortSignal aborts when it runs out. Default 200. `Infinity`: no timeout. */
  readonly timeoutMs?: number;
  /** Length of a sampling window, milliseconds (windows are aligned to the epoch). Default 1,000. */
  readonly windowMs?: number;
  /** A window is breached when failures / calls >= this (0 < x <= 1). Default 0.5. */
  readonly failureRateThreshold?: number;
  /** A window is breached when timeouts / calls >= this (0 < x <= 1). Default 0.3. */
  readonly timeoutRateThreshold?: number;
  /** Calls a window needs before it is judged at all (1 failure of 1 call trips nothing). Default 10. */
  readonly minimumCalls?: number;
  /** Consecutive windows breaching either threshold that trip the breaker. Default 3. */
  readonly breachedWindowsToOpen?: number;
  /** How long an OPEN breaker refuses calls before it probes, milliseconds. Default 30,000. */
  readonly openDurationMs?: number;
  /** Probe calls let through in HALF_OPEN, judged together. Default 5. */
  readonly halfOpenProbes?: number;
  /**
   * Which errors count as failures of the dependency. Default: every error. Return false for
   * errors that are the caller's fault (a refused payment, a 4xx): they count as answered calls.
   */
  readonly isFailure?: (error: unknown) => boolean;
  /** Time source and timers. Default: the system clock. */
  readonly clock?: Clock;
}

/** Options resolved to their defaults, thresholds in basis points. */
export interface BreakerSettings {
  readonly name: string;
  readonly timeoutMs: number;
  readonly windowMs: number;
  readonly failureRateThreshold: number;
  readonly timeoutRateThreshold: number;
  /**
   * Thresholds in basis points (1/10,000): rates are compared in integers,
   * `failures / total >= t  <=>  failures * 10_000 >= t_bp * total`, because in floating point
   * `0.3 * 10` is 3.0000000000000004 and 3 timeouts of 10 calls would not count as 30%.
   */
  readonly failureRateBp: number;
  readonly timeoutRateBp: number;
  readonly minimumCalls: number;
  readonly breachedWindowsToOpen: number;
  readonly openDurationMs: number;
  readonly halfOpenProbes: number;
  readonly isFailure: ((error: unknown) => boolean) | null;
  readonly clock: Clock;
}

export const BREAKER_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const BP = 10_000;
/** Every key of CircuitBreakerOptions (the compiler checks the two stay the same): any other is refused. */
export const BREAKER_OPTIONS = optionKeys<CircuitBreakerOptions>({
  name: true, timeoutMs: true, windowMs: true, failureRateThreshold: true, timeoutRateThreshold: true, minimumCalls: true,
  breachedWindowsToOpen: true, openDurationMs: true, halfOpenProbes: true, isFailure: true, clock: true,
});

export function resolveBreakerOptions(options: CircuitBreakerOptions): BreakerSettings {
  if (options === null || typeof options !== 'object') throw new ConfigurationError('options', 'a breaker needs an options object with at least a name', options);
  // Refused like the audit options: a misspelt `openDuration` or `failureThreshold` would
  // otherwise leave the default in force without a word, on the breaker guarding a payment path.
  refuseUnknownOptions(options, BREAKER_OPTIONS, 'CircuitBreaker');
  if (typeof options.name !== 'string' || !BREAKER_NAME.test(options.name)) {
    throw new ConfigurationError('name', 'a breaker name is a letter then up to 63 letters, digits, "_" or "-"', options.name);
  }
  const timeoutMs = options.timeoutMs ?? 200;
  if (!(timeoutMs === Infinity || (Number.isInteger(timeoutMs) && timeoutMs >= 1 && timeoutMs <= 3_600_000))) {
    throw new ConfigurationError('timeoutMs', 'a whole number of milliseconds from 1 to 3600000, or Infinity for no timeout', timeoutMs);
  }
  const windowMs = integer('windowMs', options.windowMs ?? 1_000, 10, 3_600_000);
  const failureRateThreshold = rate('failureRateThreshold', options.failureRateThreshold ?? 0.5);
  const timeoutRateThreshold = rate('timeoutRateThreshold', options.timeoutRateThreshold ?? 0.3);
  const isFailure = options.isFailure ?? null;
  if (isFailure !== null && typeof isFailure !== 'function') throw new ConfigurationError('isFailure', 'a function (error) => boolean', isFailure);
  const clock = options.clock ?? systemClock;
  if (typeof clock?.now !== 'function' || typeof clock.setTimer !== 'function' || typeof clock.clearTimer !== 'function') {
    throw new ConfigurationError('clock', 'a Clock with now(), setTimer() and clearTimer()');
  }
  return {
    name: options.name,
    timeoutMs,
    windowMs,
    failureRateThreshold,
    timeoutRateThreshold,
    failureRateBp: Math.round(failureRateThreshold * BP),
    timeoutRateBp: Math.round(timeoutRateThreshold * BP),
    minimumCalls: integer('minimumCalls', options.minimumCalls ?? 10, 1, 1_000_000),
    breachedWindowsToOpen: integer('breachedWindowsToOpen', options.breachedWindowsToOpen ?? 3, 1, 1_000),
    openDurationMs: integer('openDurationMs', options.openDurationMs ?? 30_000, 1, 86_400_000),
    halfOpenProbes: integer('halfOpenProbes', options.halfOpenProbes ?? 5, 1, 10_000),
    isFailure,
    clock,
  };
}

function integer(option: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigurationError(option, `a whole number from ${min} to ${max}`, value);
  }
  return value;
}

function rate(option: string, value: unknown): number {
  // Four decimals at most: finer precision would be rounded away by the basis-point comparison.
  if (typeof value !== 'number' || !(value > 0 && value <= 1) || Math.abs(Math.round(value * BP) - value * BP) > 1e-6) {
    throw new ConfigurationError(option, 'a rate above 0 and at most 1, with at most 4 decimal places (e.g. 0.5)', value);
  }
  return value;
}
