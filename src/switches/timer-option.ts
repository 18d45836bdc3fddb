import { ConfigurationError } from '../map/errors.ts';

/**
 * The longest delay a Node.js timer holds: its delay is a signed 32-bit count of milliseconds
 * (about 24.8 days). A longer delay does not wait longer: Node replaces it by 1 ms with a
 * TimeoutOverflowWarning, so a poll meant to be rare would run a thousand times a second.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Validates an option that becomes a timer's delay: a whole number of milliseconds from `min`
 * to MAX_TIMER_MS. @throws ConfigurationError naming the option and the rule
 */
export function timerOption(option: string, value: unknown, min: number): number {
  if (!(typeof value === 'number' && Number.isSafeInteger(value) && value >= min)) {
    throw new ConfigurationError(option, `must be a whole number of milliseconds of at least ${min}`, value);
  }
  if (value > MAX_TIMER_MS) {
    throw new ConfigurationError(option, `must be at most ${MAX_TIMER_MS} ms (about 24.8 days), the longest delay a Node.js timer holds; a longer one would fire after 1 ms`, value);
  }
  return value;
}
