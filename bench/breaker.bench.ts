import { ConsecutiveBreaker, TimeoutStrategy, circuitBreaker, handleAll, timeout, wrap } from 'cockatiel';
import Opossum from 'opossum';
import { BreakerClusterSync, BreakerGroup, CircuitBreaker } from '../src/breaker/index.ts';
import { EtcdStateStore } from '../src/state/index.ts';
import { medianOf, result, round } from './harness.ts';
import type { BenchResult, Suite } from './harness.ts';

/**
 * Per-call overhead of a breaker around an async call that resolves at once, against a direct
 * `await fn()`, with cockatiel and opossum measured in the same run, alternated in rounds so
 * drift hits every contender alike. overhead = ns/op(contender) - ns/op(direct).
 * - ours: CircuitBreaker with its defaults (200 ms timeout, AbortSignal per call), and without timeout.
 * - cockatiel: circuitBreaker(handleAll, ConsecutiveBreaker(5)) (its breaker has no timeout),
 *   and wrap(timeout(200 ms), breaker) for a like-for-like timeout.
 * - opossum: its defaults (10 s timeout), and `timeout: false`.
 * Ratios: overhead_vs_cockatiel = ours(200 ms timeout) / cockatiel(breaker + 200 ms timeout);
 * overhead_vs_opossum = ours(defaults) / opossum(defaults). With GOVMAP_ETCD_ENDPOINTS set, also
 * the propagation delay of a snapshot from one etcd client's breaker to another client's watch.
 */
const fn = (): Promise<number> => Promise.resolve(1);

async function timeAsync(ops: number, call: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(ops, 20_000); i++) await call(); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) await call();
  return Number(process.hrtime.bigint() - start) / ops;
}

const suite: Suite = async ({ progress, quick }) => {
  const ours = new CircuitBreaker({ name: 'bench' });
  const oursNoTimeout = new CircuitBreaker({ name: 'bench_nt', timeoutMs: Infinity });
  const cockatielBreaker = circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) });
  const cockatielTimed = wrap(timeout(200, TimeoutStrategy.Aggressive), cockatielBreaker);
  const opossum = new Opossum(fn, {});
  const opossumNoTimeout = new Opossum(fn, { timeout: false });

  const contenders: Array<[string, () => Promise<unknown>]> = [
    ['direct await fn()', fn],
    ['govmap CircuitBreaker (200 ms timeout)', () => ours.execute(fn)],
    ['govmap CircuitBreaker (no timeout)', () => oursNoTimeout.execute(fn)],
    ['cockatiel breaker (no timeout)', () => cockatielBreaker.execute(fn)],
    ['cockatiel breaker + timeout(200 ms)', () => cockatielTimed.execute(fn)],
    ['opossum defaults (10 s timeout)', () => opossum.fire()],
    ['opossum timeout: false', () => opossumNoTimeout.fire()],
  ];
  const ops = quick ? 20_000 : 200_000;
  const rounds = quick ? 3 : 7;
  const samples = contenders.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < contenders.length; i++) samples[i]!.push(await timeAsync(ops, contenders[i]![1]));
    progress(`round ${r + 1}/${rounds}`);
  }
  const ns = samples.map(medianOf);
  const results: BenchResult[] = contenders.map(([name], i) => result(name, ns[i]!, { overhead_ns: round(ns[i]! - ns[0]!, 1) }));
  const overhead = (i: number): number => Math.max(ns[i]! - ns[0]!, 1e-9);
  const ratios: Record<string, number> = {
    overhead_vs_cockatiel: round(overhead(1) / overhead(4)),
    overhead_vs_cockatiel_no_timeout: round(overhead(2) / overhead(3)),
    overhead_vs_opossum: round(overhead(1) / overhead(5)),
    overhead_vs_opossum_no_timeout: round(overhead(2) / overhead(6)),
  };
  const targets: Record<string, string> = { overhead_vs_cockatiel: '<= 0.5', overhead_vs_opossum: '<= 0.1' };
  const notes = [`${ops.toLocaleString('en-US')} sequential awaited calls per round, median of ${rounds} alternating rounds; the call resolves at once, so the overhead is all breaker`];
  opossum.shutdown();
  opossumNoTimeout.shutdown();
  ours.dispose();
  oursNoTimeout.dispose();

  const endpoints = process.env.GOVMAP_ETCD_ENDPOINTS;
  if (endpoints !== undefined && endpoints !== '') {
    const samples = quick ? 30 : 200;
    const figures = propagationFigures(await propagation(endpoints, samples), samples);
    Object.assign(ratios, figures.ratios);
    Object.assign(targets, figures.targets);
    notes.push(`etcd propagation: ${samples} snapshots, from a breaker's transition on client A to client B's watch event (two gRPC connections to ${endpoints})`, ...figures.notes);
  } else {
    notes.push('etcd propagation not measured: GOVMAP_ETCD_ENDPOINTS is not set (bash test/infra/etcd.sh start)');
  }
  return { suite: 'breaker', results, ratios, targets, notes };
};

/**
 * The propagation figures of `samples` snapshots, `delays` (ms) those that arrived. A snapshot
 * that did not arrive within its wait is a loss, counted and judged (target 0): left out
 * silently, it made the p99 of the others read as the propagation time.
 */
export function propagationFigures(delays: readonly number[], samples: number): { ratios: Record<string, number>; targets: Record<string, string>; notes: string[] } {
  const sorted = [...delays].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  const lost = samples - delays.length;
  const ratios: Record<string, number> = {};
  if (sorted.length > 0) {
    ratios.etcd_propagation_p50_ms = round(at(0.5), 2);
    ratios.etcd_propagation_p99_ms = round(at(0.99), 2);
  }
  ratios.etcd_propagation_lost = lost;
  const notes = lost === 0 ? [] : [`warning: ${lost} of ${samples} snapshots did not reach the other client within 2 s: p50 and p99 are of the ${delays.length} that did, and understate the propagation time`];
  return { ratios, targets: { etcd_propagation_p99_ms: '<= 100', etcd_propagation_lost: '== 0' }, notes };
}

/** Milliseconds from a breaker transition in process-side client A to the put event at client B. */
async function propagation(endpoints: string, samples: number): Promise<number[]> {
  const prefix = `/govmap-bench/${process.pid}-${Date.now()}`;
  const storeA = new EtcdStateStore({ endpoints });
  const storeB = new EtcdStateStore({ endpoints });
  const sync = new BreakerClusterSync({ store: storeA, instance: 'bench-a', prefix, log: () => undefined });
  await sync.start();
  const group = new BreakerGroup({ name: 'prop', maxBreakers: samples + 1 });
  sync.attachGroup(group);
  const started = new Map<string, number>();
  const delays: number[] = [];
  let wake: (() => void) | null = null;
  const watch = storeB.watch(`${prefix}/circuit/`, {
    onReset: () => undefined,
    onEvent: (event) => {
      if (event.type !== 'put') return;
      const t0 = started.get(event.entry.key);
      if (t0 === undefined) return;
      started.delete(event.entry.key);
      delays.push(performance.now() - t0);
      wake?.();
    },
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (let i = 0; i < samples; i++) {
    const key = `k${i}`;
    const arrived = new Promise<void>((resolve) => (wake = resolve));
    started.set(sync.keyOf(`prop:${key}`), performance.now());
    group.get(key); // creation publishes the breaker's first snapshot
    await Promise.race([arrived, new Promise((resolve) => setTimeout(resolve, 2_000))]);
  }
  await watch.close();
  await sync.close({ revoke: true });
  group.dispose();
  const client = await storeA.client();
  await client.delete().prefix(prefix).exec();
  await storeA.close();
  await storeB.close();
  return delays;
}

export default suite;
