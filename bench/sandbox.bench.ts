import { Advisor } from '../src/advisor/index.ts';
import { GovernedMap } from '../src/map/index.ts';
import { Sandbox } from '../src/sandbox/index.ts';
import { medianOf, randomOrder, result, round, timeOps } from './harness.ts';
import type { BenchResult, Suite } from './harness.ts';

/**
 * What the runtime audit sandbox costs.
 *
 * - Per operation: the same 20:1 read/write mix on a GovernedMap with the sandbox stopped, then
 *   started (tracking this map and 10,000 others, sweeping every 100 ms worth of operations:
 *   300x more often than the default 30 s; GC observed). Paired rounds, order swapped each
 *   round, so drift hits both alike. Target: under 5 ns added per operation.
 * - Per map created: `new GovernedMap` with the sandbox off, on within the creation-site
 *   capture budget (a stack is captured), and on past the budget (no stack).
 * - Per sweep: ns per tracked map; per tracked map: heap bytes the registry adds.
 * - Per advisor window: ns per followed map.
 */
const KEYS = 10_000;
const EXTRA_TRACKED = 10_000;
const validate = (_key: string, value: bigint): true | string => (value >= 0n ? true : 'BALANCE_UNDERFLOW');

const suite: Suite = async ({ progress, quick }) => {
  const keys = Array.from({ length: KEYS }, (_, i) => `acct-${String(i).padStart(6, '0')}`);
  const values = Array.from({ length: 1024 }, (_, i) => BigInt(1_000_000 + i));
  const sequenceLength = 1 << 18;
  const order = randomOrder(sequenceLength, KEYS, 7);
  const results: BenchResult[] = [];

  // ---------------------------------------------------------------- per operation
  // The timer is set far out: sweeps run inside the timed loop (see mix), every 100 ms worth of operations.
  const sandbox = new Sandbox({ sweepIntervalMs: 3_600_000, siteCapturesPerSecond: 1_000_000 });
  // One map for all contenders: the only difference between "off" and "on" is the sandbox.
  sandbox.start();
  const measured = new GovernedMap<string, bigint>({ name: 'bench_measured', validate });
  const others = Array.from({ length: EXTRA_TRACKED }, (_, i) => {
    const m = new GovernedMap<string, bigint>({ name: 'bench_other', validate });
    m.store(`k${i}`, 1n);
    return m;
  });
  sandbox.stop();
  for (let i = 0; i < KEYS; i++) measured.store(keys[i]!, values[i & 1023]!);
  let sink = 0n;
  let sweepEvery = 1 << 30;
  const noSweep = (): void => undefined;
  const sweepNow = (): void => void sandbox.sweep();
  /**
   * A timed loop is synchronous, so the sweep timer cannot fire inside it: the "on" loop runs
   * the sweep itself every `sweepEvery` operations (100 ms worth at the calibrated rate), and
   * the "off" loop makes the same check and calls a no-op.
   */
  const mix = (map: GovernedMap<string, bigint>, tick: () => void) => (ops: number) => {
    for (let i = 0; i < ops; i++) {
      const key = keys[order[i & (sequenceLength - 1)]!]!;
      if (i % 21 === 0) map.store(key, values[i & 1023]!);
      else sink += map.load(key)!;
      if (i % sweepEvery === sweepEvery - 1) tick();
    }
  };
  // Rounds last a fixed time, not a fixed count, so that "on" rounds span sweeps (every
  // 100 ms) on a fast machine as on a slow one: calibrate ops per round from a trial run.
  const roundMs = quick ? 250 : 400;
  const trialNs = timeOps(200_000, mix(measured, noSweep));
  const ops = Math.max(200_000, Math.min(50_000_000, Math.round((roundMs * 1e6) / trialNs)));
  sweepEvery = Math.max(1, Math.round(100e6 / trialNs));
  const rounds = quick ? 12 : 30; // multiples of 3: each contender runs first, second and third equally often
  const off: number[] = [];
  const on: number[] = [];
  const onSweeping: number[] = [];
  const added: number[] = [];
  const addedSweeping: number[] = [];
  const sweepsBefore = sandbox.counts.sweeps;
  const variants = [
    (): number => {
      sandbox.stop();
      return timeOps(ops, mix(measured, noSweep));
    },
    (): number => {
      sandbox.start();
      return timeOps(ops, mix(measured, noSweep));
    },
    (): number => {
      sandbox.start();
      return timeOps(ops, mix(measured, sweepNow));
    },
  ];
  for (let r = 0; r < rounds; r++) {
    // The three contenders back to back, their order rotated every round: a drift of the
    // machine (these are shared and busy) then shows up as noise, not as a bias.
    const ns = [0, 0, 0];
    for (let k = 0; k < 3; k++) {
      const v = (r + k) % 3;
      ns[v] = variants[v]!();
    }
    off.push(ns[0]!);
    on.push(ns[1]!);
    onSweeping.push(ns[2]!);
    added.push(ns[1]! - ns[0]!);
    addedSweeping.push(ns[2]! - ns[0]!);
    // Let the GC observer's callbacks run between rounds, as they would in a service.
    await new Promise((resolve) => setImmediate(resolve));
  }
  sandbox.stop();
  const offNs = medianOf(off);
  const onNs = medianOf(on);
  const hotPathNs = medianOf(added);
  const sweepingNs = medianOf(addedSweeping);
  const sweepsDuring = sandbox.counts.sweeps - sweepsBefore;
  progress(`ops 20:1: sandbox off ${offNs.toFixed(1)} ns/op, on ${onNs.toFixed(1)}, on sweeping every 100 ms ${medianOf(onSweeping).toFixed(1)}; paired differences ${hotPathNs.toFixed(2)} and ${sweepingNs.toFixed(2)} ns (${sweepsDuring} sweeps of ${sandbox.tracked} maps)`);
  results.push(
    result('GovernedMap 20:1, sandbox off', offNs),
    result('GovernedMap 20:1, sandbox on', onNs, { tracked_maps: sandbox.tracked }),
    result('GovernedMap 20:1, sandbox on, sweeping every 100 ms', medianOf(onSweeping), { tracked_maps: sandbox.tracked, sweeps: sweepsDuring }),
  );

  // ---------------------------------------------------------------- per sweep
  sandbox.sweep();
  const sweepRuns: number[] = [];
  for (let r = 0; r < 15; r++) {
    const start = process.hrtime.bigint();
    sandbox.sweep();
    sweepRuns.push(Number(process.hrtime.bigint() - start) / sandbox.tracked);
  }
  const sweepNs = medianOf(sweepRuns);
  // The sweep at the default interval (30 s), spread over the operations of those 30 s at the
  // "off" rate: CPU a sweep takes / operations in between.
  const DEFAULT_SWEEP_INTERVAL_MS = 30_000;
  const sweepAmortisedNs = (sweepNs * sandbox.tracked) / ((DEFAULT_SWEEP_INTERVAL_MS * 1e6) / offNs);
  results.push(result('sweep, per tracked map', sweepNs, { tracked_maps: sandbox.tracked }));

  // ---------------------------------------------------------------- per map created
  const creations = quick ? 5_000 : 20_000;
  const create = (n: number): GovernedMap<string, bigint>[] => {
    const out = new Array<GovernedMap<string, bigint>>(n);
    for (let i = 0; i < n; i++) out[i] = new GovernedMap<string, bigint>({ name: 'created', validate });
    return out;
  };
  /**
   * Creations as a service makes them: a few per request, each request its own job. Batches of
   * 10, an event-loop turn between them (a WeakRef holds its target until the job ends, so one
   * synchronous burst of thousands would cost more per map than a service ever pays); only the
   * synchronous creations are timed.
   */
  const BATCH = 10;
  const timeCreate = async (n: number): Promise<number> => {
    globalThis.gc?.();
    const kept: GovernedMap<string, bigint>[][] = [];
    let ns = 0;
    for (let made = 0; made < n; made += BATCH) {
      const start = process.hrtime.bigint();
      kept.push(create(BATCH));
      ns += Number(process.hrtime.bigint() - start);
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (kept.length * BATCH < n) throw new Error('unreachable');
    return ns / n;
  };
  create(2_000); // warm-up
  const createOff: number[] = [];
  const createCaptured: number[] = [];
  const createOverBudget: number[] = [];
  const capturedAdded: number[] = [];
  const overBudgetAdded: number[] = [];
  const capturing = new Sandbox({ gc: false, siteCapturesPerSecond: 1_000_000, sweepIntervalMs: 3_600_000 });
  const budgeted = new Sandbox({ gc: false, siteCapturesPerSecond: 1, sweepIntervalMs: 3_600_000 });
  const creationRounds = quick ? 5 : 11;
  for (let r = 0; r < creationRounds; r++) {
    const base = await timeCreate(creations);
    capturing.start();
    const captured = await timeCreate(creations);
    capturing.stop();
    budgeted.start();
    const over = await timeCreate(creations);
    budgeted.stop();
    capturing.sweep(); // drops the collected maps, as the timer would
    budgeted.sweep();
    createOff.push(base);
    createCaptured.push(captured);
    createOverBudget.push(over);
    capturedAdded.push(captured - base);
    overBudgetAdded.push(over - base);
  }
  const cOff = medianOf(createOff);
  const cCaptured = medianOf(createCaptured);
  const cOver = medianOf(createOverBudget);
  results.push(
    result('new GovernedMap, sandbox off', cOff),
    result('new GovernedMap, sandbox on, stack captured', cCaptured),
    result('new GovernedMap, sandbox on, capture budget spent', cOver),
  );

  // ---------------------------------------------------------------- heap per tracked map
  const heapPerMap = (sb: Sandbox | null): number => {
    const n = quick ? 5_000 : 20_000;
    globalThis.gc?.();
    const before = process.memoryUsage().heapUsed;
    sb?.start();
    const made = create(n);
    sb?.sweep(); // formats the captured sites, as the first sweep after creation does
    sb?.stop();
    globalThis.gc?.();
    const bytes = (process.memoryUsage().heapUsed - before) / n;
    if (made.length !== n) throw new Error('unreachable');
    return bytes;
  };
  const bytesOff = medianOf([heapPerMap(null), heapPerMap(null), heapPerMap(null)]);
  const bytesOn = medianOf([0, 1, 2].map(() => heapPerMap(new Sandbox({ gc: false, siteCapturesPerSecond: 1_000_000, sweepIntervalMs: 3_600_000 }))));

  // ---------------------------------------------------------------- advisor window
  const advisor = new Advisor();
  for (const m of others.slice(0, 1000)) advisor.track(m);
  await advisor.sample();
  const start = process.hrtime.bigint();
  for (let r = 0; r < 10; r++) await advisor.sample();
  const advisorNs = Number(process.hrtime.bigint() - start) / 10 / 1000;
  results.push(result('advisor window, per followed map', advisorNs));

  if (sink === -1n) console.log(sink);
  if (others.length !== EXTRA_TRACKED) throw new Error('unreachable');
  return {
    suite: 'sandbox',
    results,
    ratios: {
      added_ns_per_op: round(hotPathNs + sweepAmortisedNs, 2),
      added_ns_per_op_hot_path: round(hotPathNs, 2),
      added_ns_per_op_sweep_default_interval: round(sweepAmortisedNs, 4),
      added_ns_per_op_sweeping_every_100ms: round(sweepingNs, 2),
      sandbox_on_vs_off: round(onNs / offNs),
      creation_added_ns_captured: round(medianOf(capturedAdded), 0),
      creation_added_ns_over_budget: round(medianOf(overBudgetAdded), 0),
      sweep_ns_per_tracked_map: round(sweepNs, 1),
      heap_bytes_per_tracked_map: round(bytesOn - bytesOff, 0),
    },
    targets: { added_ns_per_op: '< 5' },
    notes: [
      `per-op: ${ops.toLocaleString('en-US')} ops per round (~${roundMs} ms), medians of ${rounds} rounds of paired differences against "off" (order rotated each round); sandbox on = ${sandbox.tracked} maps tracked, GC observed`,
      'added_ns_per_op = hot path (sandbox on, no sweep in the loop) + one sweep of all tracked maps per 30 s (the default interval) spread over the operations of those 30 s',
      `added_ns_per_op_sweeping_every_100ms: the loop itself sweeps every ${sweepEvery.toLocaleString('en-US')} ops (100 ms worth, 300x the default rate): a worst case, no target`,
      'the sandbox adds nothing to GovernedMap operations: it reads the counters maps keep anyway',
      `creation: ${creations.toLocaleString('en-US')} maps per round in batches of ${BATCH}, one event-loop turn apart (as requests create them), medians of ${creationRounds} paired rounds; the default capture budget (100/s) bounds the captured case to 100 creations a second`,
    ],
  };
};

export default suite;
