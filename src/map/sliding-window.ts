/**
 * Ratios over a sliding time window (the specification's 5-minute miss ratio) at zero cost per
 * operation: the hot path only increments cumulative counters; this keeps a small ring of
 * timestamped copies of those counters, taken whenever someone asks (a scrape, the dashboard),
 * and answers with the difference between now and the copy taken one window ago.
 *
 * Resolution: a copy is kept at most every `windowMs / SLOTS` ms, so the window an answer covers
 * is between `windowMs` and `windowMs + windowMs / SLOTS` (or since the map was created, if it is
 * younger than the window). A ring of SLOTS + 4 copies always holds one at least a window old.
 */
const SLOTS = 60;

export interface CounterSample {
  readonly atMs: number;
  readonly a: number;
  readonly b: number;
}

export class SlidingWindowRatio {
  readonly windowMs: number;
  readonly #granularityMs: number;
  readonly #ring: CounterSample[] = [];
  readonly #capacity = SLOTS + 4;

  constructor(windowMs: number, startMs: number) {
    this.windowMs = windowMs;
    this.#granularityMs = Math.max(1, Math.floor(windowMs / SLOTS));
    this.#ring.push({ atMs: startMs, a: 0, b: 0 });
  }

  /**
   * Records the cumulative counters `a` (numerator, e.g. misses) and `b` (denominator, e.g.
   * loads) at `nowMs`, and returns { a, b } accumulated over the window ending now.
   */
  observe(nowMs: number, a: number, b: number): { a: number; b: number } {
    const last = this.#ring[this.#ring.length - 1]!;
    if (nowMs - last.atMs >= this.#granularityMs) {
      this.#ring.push({ atMs: nowMs, a, b });
      if (this.#ring.length > this.#capacity) this.#ring.shift();
    }
    // The newest copy at least one window old; the oldest we have if the map is younger.
    let base = this.#ring[0]!;
    const cutoff = nowMs - this.windowMs;
    for (const sample of this.#ring) {
      if (sample.atMs <= cutoff) base = sample;
      else break;
    }
    return { a: a - base.a, b: b - base.b };
  }
}
