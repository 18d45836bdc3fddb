/**
 * Milliseconds since the epoch read from the monotonic clock: the wall clock when the process
 * started plus the time elapsed since. The sandbox measures durations (how long a map has been
 * idle, pauses per window, captures per second), and Date.now follows the host's clock steps: an
 * NTP correction ten minutes forward made every map used in the last ten minutes an IDLE suspect.
 * The timestamps it shows (createdAt, generatedAt) differ from the wall clock only by the steps
 * the host's clock has taken since the process started.
 */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}
