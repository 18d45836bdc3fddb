import { PerformanceObserver, constants } from 'node:perf_hooks';
import { GovernedMap } from '../src/map/index.ts';
import { MapMetrics } from '../src/metrics/index.ts';
import { medianOf, randomOrder, result, round, timeOps } from './harness.ts';
import type { BenchResult, Suite } from './harness.ts';

/**
 * GovernedMap (validator, counters, metrics registered) against a plain Map, same keys, same
 * operation sequence, alternated in rounds so drift affects both alike. 100,000 keys
 * acct-000000…; a write is `store` (validated) vs `set`.
 */
const KEYS = 100_000;

const suite: Suite = async ({ progress, quick }) => {
  const keys = Array.from({ length: KEYS }, (_, i) => `acct-${String(i).padStart(6, '0')}`);
  const values = Array.from({ length: 1024 }, (_, i) => BigInt(1_000_000 + i));
  const sequenceLength = 1 << 20;
  const order = randomOrder(sequenceLength, KEYS, 42);

  const plain = new Map<string, bigint>();
  const governed = new GovernedMap<string, bigint>({ name: 'bench', validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW') });
  const metrics = new MapMetrics().track(governed);
  for (let i = 0; i < KEYS; i++) {
    plain.set(keys[i]!, values[i & 1023]!);
    governed.store(keys[i]!, values[i & 1023]!);
  }

  let sink = 0n;
  const mixPlain = (readsPerWrite: number) => (ops: number) => {
    const period = readsPerWrite + 1;
    for (let i = 0; i < ops; i++) {
      const key = keys[order[i & (sequenceLength - 1)]!]!;
      if (i % period === 0) plain.set(key, values[i & 1023]!);
      else sink += plain.get(key)!;
    }
  };
  const mixGoverned = (readsPerWrite: number) => (ops: number) => {
    const period = readsPerWrite + 1;
    for (let i = 0; i < ops; i++) {
      const key = keys[order[i & (sequenceLength - 1)]!]!;
      if (i % period === 0) governed.store(key, values[i & 1023]!);
      else sink += governed.load(key)!;
    }
  };

  const ops = quick ? 300_000 : 3_000_000;
  const rounds = quick ? 3 : 7;
  const results: BenchResult[] = [];
  const ratios: Record<string, number> = {};
  for (const [label, readsPerWrite] of [
    ['20:1', 20],
    ['100:1', 100],
    ['1:1', 1],
  ] as const) {
    const p: number[] = [];
    const g: number[] = [];
    for (let r = 0; r < rounds; r++) {
      p.push(timeOps(ops, mixPlain(readsPerWrite)));
      g.push(timeOps(ops, mixGoverned(readsPerWrite)));
    }
    const plainNs = medianOf(p);
    const governedNs = medianOf(g);
    progress(`${label}: plain ${plainNs.toFixed(1)} ns/op, governed ${governedNs.toFixed(1)} ns/op`);
    results.push(result(`plain Map ${label}`, plainNs), result(`GovernedMap ${label}`, governedNs));
    ratios[`governed_vs_plain${readsPerWrite === 20 ? '' : `_${readsPerWrite}to1`}`] = round(governedNs / plainNs);
  }

  // Young-generation collections while 10M loads run: the load path must allocate nothing.
  const loads = quick ? 1_000_000 : 10_000_000;
  let minor = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if ((entry as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
    }
  });
  globalThis.gc?.();
  observer.observe({ entryTypes: ['gc'] });
  let hits = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < loads; i++) {
    if (governed.load(keys[order[i & (sequenceLength - 1)]!]!) !== undefined) hits++;
  }
  const loadNs = Number(process.hrtime.bigint() - start) / loads;
  await new Promise((resolve) => setTimeout(resolve, 50)); // let GC entries be delivered
  observer.disconnect();
  results.push(result(`GovernedMap load x${loads.toLocaleString('en-US')}`, loadNs, { young_gcs: minor, hits }));

  const scrape = await metrics.render();
  if (!scrape.includes('syncmap_load_total{map="bench"}')) throw new Error('metrics were not exported during the benchmark');
  if (sink === -1n) console.log(sink); // keep the reads observable to the optimiser

  return {
    suite: 'map',
    results,
    ratios: { ...ratios, young_gcs_during_loads: minor },
    targets: { governed_vs_plain: '<= 1.5', young_gcs_during_loads: '== 0' },
    notes: [`${KEYS} keys, ${ops.toLocaleString('en-US')} ops per round, median of ${rounds} alternating rounds; GovernedMap has its validator and MapMetrics registered`],
  };
};

export default suite;
