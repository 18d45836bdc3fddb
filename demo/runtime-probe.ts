import { getHeapStatistics, GCProfiler } from 'node:v8';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { sendJson } from './http.ts';
import type { Router } from './router.ts';

/** What the service saw of its own runtime since the last reset. Times in ms, sizes in bytes. */
export interface RuntimeSample {
  readonly intervalMs: number;
  readonly gc: { readonly count: number; readonly young: number; readonly totalPauseMs: number; readonly maxPauseMs: number };
  /** Bytes allocated on the JS heap in the interval, and per second. */
  readonly allocatedBytes: number;
  readonly allocationBytesPerSec: number;
  readonly eventLoopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** CPU time of the process (user + system) over wall time: 1.0 = one core busy. */
  readonly cpuCores: number;
}

interface GcStatistic {
  readonly gcType: string;
  readonly cost: number;
  readonly beforeGC: { readonly heapStatistics: { readonly usedHeapSize: number } };
  readonly afterGC: { readonly heapStatistics: { readonly usedHeapSize: number } };
}

/**
 * Measures GC pauses, allocation and event-loop delay from inside the service, for the load
 * benchmark. V8 exposes no "bytes allocated" counter, so allocation is derived from the heap
 * before and after each collection (v8.GCProfiler): what the heap grew by between the end of
 * one collection and the start of the next was allocated, plus the growth since the last one.
 *
 * It measures only once asked: the first `sample()` starts it (and answers an empty interval).
 * Why: the delay monitor's timer wakes the event loop 100 times a second, and the GC profiler
 * keeps an entry per collection until it is read, so a demo left running that nobody
 * benchmarks paid ~1% of a core while idle and grew without bound.
 */
export class RuntimeProbe {
  #profiler = new GCProfiler();
  #delay = monitorEventLoopDelay({ resolution: 10 });
  #measuring = false;
  #startedAt = performance.now();
  #usedAtStart = 0;
  #cpuAtStart = process.cpuUsage();

  /** Starts a new interval now (the first call starts measuring). */
  reset(): void {
    this.#measuring = true;
    this.#profiler.stop();
    this.#profiler = new GCProfiler();
    this.#profiler.start();
    this.#delay.disable();
    this.#delay.reset();
    this.#delay.enable();
    this.#startedAt = performance.now();
    this.#usedAtStart = getHeapStatistics().used_heap_size;
    this.#cpuAtStart = process.cpuUsage();
  }

  /** Reads the interval since the last reset, then starts a new one; the first call only starts one. */
  sample(): RuntimeSample {
    if (!this.#measuring) {
      this.reset();
      return { intervalMs: 0, gc: { count: 0, young: 0, totalPauseMs: 0, maxPauseMs: 0 }, allocatedBytes: 0, allocationBytesPerSec: 0, eventLoopDelayMs: { p50: 0, p99: 0, max: 0 }, cpuCores: 0 };
    }
    const statistics = (this.#profiler.stop()?.statistics ?? []) as unknown as GcStatistic[];
    const usedNow = getHeapStatistics().used_heap_size;
    const intervalMs = performance.now() - this.#startedAt;
    const cpu = process.cpuUsage(this.#cpuAtStart);
    let allocated = 0;
    let used = this.#usedAtStart;
    let young = 0;
    let total = 0;
    let max = 0;
    for (const s of statistics) {
      allocated += Math.max(0, s.beforeGC.heapStatistics.usedHeapSize - used);
      used = s.afterGC.heapStatistics.usedHeapSize;
      if (s.gcType === 'Scavenge' || s.gcType === 'MinorMarkSweep' || s.gcType === 'MinorMarkCompact') young++;
      const pauseMs = s.cost / 1000; // cost is in microseconds
      total += pauseMs;
      if (pauseMs > max) max = pauseMs;
    }
    allocated += Math.max(0, usedNow - used);
    const delay = this.#delay;
    const ms = (ns: number): number => (Number.isFinite(ns) ? ns / 1e6 : 0);
    const sample: RuntimeSample = {
      intervalMs,
      gc: { count: statistics.length, young, totalPauseMs: total, maxPauseMs: max },
      allocatedBytes: allocated,
      allocationBytesPerSec: intervalMs > 0 ? (allocated * 1000) / intervalMs : 0,
      eventLoopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
      cpuCores: intervalMs > 0 ? (cpu.user + cpu.system) / 1000 / intervalMs : 0,
    };
    this.reset();
    return sample;
  }

  stop(): void {
    if (!this.#measuring) return;
    this.#measuring = false;
    this.#profiler.stop();
    this.#delay.disable();
  }
}

/** GET /internal/runtime: the sample since the previous call (each call starts a new interval; the first starts measuring). */
export function installRuntimeProbe(router: Router, onClose: (hook: () => void) => void): RuntimeProbe {
  const probe = new RuntimeProbe();
  router.route('GET', /^\/internal\/runtime$/, (_req, res) => sendJson(res, 200, probe.sample()));
  onClose(() => probe.stop());
  return probe;
}
