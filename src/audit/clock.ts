/**
 * Event timestamps: nanoseconds since the Unix epoch, from the monotonic clock anchored once to
 * the wall clock. `performance.now()` is read on the hot path (a double, no allocation) and
 * turned into epoch nanoseconds off it, by the drain worker, with the anchor of the thread that
 * read it. Consequences: timestamps of one recorder never go backwards; writes carry the clock
 * read when they were recorded, reads the coarse clock word the drain worker keeps fresh (at most
 * CLOCK_MAX_LAG_MS behind, see `RingProducer.stamp`); their absolute accuracy is the wall clock's
 * at the anchor (milliseconds), and a later NTP step is not followed until the recorder restarts.
 */
export interface ClockAnchor {
  /** Wall-clock seconds since the epoch at the anchor. */
  readonly epochSec: number;
  /** Nanoseconds within that second, 0 ..< 1e9. */
  readonly epochNanos: number;
  /** `performance.now()` of the anchoring thread at the anchor, ms. */
  readonly perfMs: number;
}

/**
 * Pairs a wall-clock reading with a monotonic one. The thread can be descheduled between the
 * two reads; the pair read with the least time between them (of a few tries) is kept, and the
 * monotonic side is the midpoint, so the anchor is off by at most half that window.
 */
export function takeAnchor(): ClockAnchor {
  let best = { window: Number.POSITIVE_INFINITY, perfMs: 0, wallMs: 0 };
  for (let attempt = 0; attempt < 5 && best.window > 0.05; attempt++) {
    const before = performance.now();
    const wallMs = Date.now();
    const after = performance.now();
    if (after - before < best.window) best = { window: after - before, perfMs: (before + after) / 2, wallMs };
  }
  const epochSec = Math.floor(best.wallMs / 1000);
  return { epochSec, epochNanos: (best.wallMs - epochSec * 1000) * 1e6, perfMs: best.perfMs };
}

/**
 * Splits the instant `perfMs` (same thread as the anchor) into whole epoch seconds and
 * nanoseconds, with number arithmetic only: a BigInt would allocate on every event.
 * Writes into `out[0]` (seconds) and `out[1]` (nanoseconds).
 */
export function toEpoch(anchor: ClockAnchor, perfMs: number, out: Float64Array): void {
  const deltaMs = perfMs - anchor.perfMs;
  const wholeMs = Math.floor(deltaMs);
  const msInSecond = wholeMs % 1000;
  let sec = anchor.epochSec + (wholeMs - msInSecond) / 1000;
  let nanos = anchor.epochNanos + msInSecond * 1e6 + Math.round((deltaMs - wholeMs) * 1e6);
  if (nanos >= 1e9) {
    const carry = Math.floor(nanos / 1e9);
    sec += carry;
    nanos -= carry * 1e9;
  } else if (nanos < 0) {
    const borrow = Math.ceil(-nanos / 1e9);
    sec -= borrow;
    nanos += borrow * 1e9;
  }
  out[0] = sec;
  out[1] = nanos;
}

/** The same instant as a decimal string (cold paths and tests). */
export function epochNanosString(anchor: ClockAnchor, perfMs: number): string {
  const parts = new Float64Array(2);
  toEpoch(anchor, perfMs, parts);
  return `${parts[0]}${String(parts[1]).padStart(9, '0')}`;
}

/**
 * `performance.now()` counts from each thread's own start, so the drain worker cannot write the
 * recording thread's time directly. Both read `process.hrtime` (one monotonic clock for the whole
 * process) beside their `performance.now()`; this returns `hrtime - performance.now()` in ms for
 * the calling thread, from the pair read closest together (of a few tries). A time of thread A
 * on thread B's scale is then `perfA + offsetA - offsetB`, off by at most the two read windows
 * (well under a microsecond).
 */
export function hrtimeOffsetMs(): number {
  let window = Number.POSITIVE_INFINITY;
  let offset = 0;
  for (let attempt = 0; attempt < 7; attempt++) {
    const before = performance.now();
    const hr = Number(process.hrtime.bigint()) / 1e6;
    const after = performance.now();
    if (after - before < window) {
      window = after - before;
      offset = hr - (before + after) / 2;
    }
  }
  return offset;
}
