/**
 * When the drain worker, caught up with the reads, should nap (a short timed wait, then tick the
 * coarse clock word) instead of sleeping until its next commit.
 *
 * A nap keeps the clock word fresh, so every read takes its timestamp from the word instead of
 * reading the clock itself (one `performance.now()` saved per read, ~45 ns here). But a nap is a
 * timed futex wait, and what that costs the napping thread depends on the machine far more than
 * its length suggests: measured at ~26 µs of CPU per 0.25 ms nap on a 2-vCPU virtual machine with
 * the kernel's speculative-execution mitigations on, a few µs on bare metal. At a fixed reads
 * threshold the worker napped ~4,000 times a second under a service's ordinary 8,000 requests a
 * second there: ~100 ms of CPU a second spent to save ~0.4 ms on the reading thread.
 *
 * So the worker naps only while reads arrive fast enough that the clock reads saved during one
 * nap outweigh the nap itself: reads per ms >= nap CPU / clock-read cost / nap length. Both costs
 * are measured on this machine when the worker starts (`calibrate`, ~2 ms); on a machine where
 * naps cost more than the reads could save at any rate the drain keeps up with, it never naps.
 */
export class NapPolicy {
  /** Reads per ms from which a nap pays for itself (Infinity: never). */
  readonly minReadsPerMs: number;
  #windowStart: number;
  #windowReads = 0;
  #flowing = false;

  constructor(minReadsPerMs: number, now: number) {
    this.minReadsPerMs = minReadsPerMs;
    this.#windowStart = now;
  }

  /**
   * Measures what a nap of `napMs` and a clock read cost this thread here, and returns the read
   * rate (per ms) from which napping pays. `nap` must be the worker's own timed wait.
   */
  static calibrate(napMs: number, nap: (ms: number) => void): number {
    const CLOCK_READS = 20_000;
    const NAPS = 8;
    let sink = 0;
    let clockNs = Number.POSITIVE_INFINITY;
    // Wall time, the least of three rounds: thread CPU time is accounted in steps too coarse for
    // this short a loop, and the first round runs before the loop is compiled (several times
    // slower than a reading thread's optimised clock read, which is what a nap saves).
    for (let round = 0; round < 3; round++) {
      const start = performance.now();
      for (let i = 0; i < CLOCK_READS; i++) sink += performance.now();
      clockNs = Math.min(clockNs, Math.max(1, ((performance.now() - start) * 1e6) / CLOCK_READS));
    }
    nap(napMs); // the first wait of a thread sets up its futex state: not a typical nap
    const napStart = process.threadCpuUsage();
    const wallStart = performance.now();
    for (let i = 0; i < NAPS; i++) nap(napMs);
    const wallMs = Math.max(napMs, (performance.now() - wallStart) / NAPS);
    const napUsed = process.threadCpuUsage(napStart);
    const napNs = ((napUsed.user + napUsed.system) * 1000) / NAPS;
    if (sink === -1) return Number.POSITIVE_INFINITY; // keeps the clock loop from being optimised away
    return napNs / clockNs / wallMs;
  }

  /**
   * Counts `drained` reads at `now` (ms) and says whether the worker should nap now: true while
   * the reads of the last full window (WINDOW_MS or more) arrived at least at `minReadsPerMs`.
   */
  observe(drained: number, now: number): boolean {
    this.#windowReads += drained;
    const span = now - this.#windowStart;
    if (span >= WINDOW_MS) {
      this.#flowing = this.#windowReads >= this.minReadsPerMs * span;
      this.#windowStart = now;
      this.#windowReads = 0;
    }
    return this.#flowing;
  }
}

/** The read rate is judged over windows of at least this many ms (several naps). */
const WINDOW_MS = 2;
