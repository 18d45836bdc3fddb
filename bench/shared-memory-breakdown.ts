/**
 * Where the 2-worker 20:1 time of the shared-memory suite goes (not part of `npm run bench`;
 * run it alone under the bench lock):
 *
 *   flock /tmp/govmap-bench.lock npx node --expose-gc bench/shared-memory-breakdown.ts [ops] [rounds]
 *
 * Same keys, values, key order and mix as bench/shared-memory.bench.ts (100,000 keys, uniform
 * order, one write in 21 operations). For one worker alone and for two at once (released by a
 * barrier) it times the mixed loop, the same loop with its writes skipped (reads only) and with
 * its reads skipped (writes only), each worker's read-cache hits / rereads / misses, and the
 * plain Map doing the same. The difference "mixed - reads only" is what the writes cost in place.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SharedInt64Store } from '../src/stores/index.ts';
import type { SharedMapHandle } from '../src/stores/index.ts';
import { randomOrder } from './harness.ts';

const KEYS = 100_000;
const ORDER_LENGTH = 1 << 20;
const PERIOD = 21;

type Phase = 'map-mixed' | 'map-reads' | 'map-writes' | 'mixed' | 'mixed-other' | 'reads' | 'writes' | 'idle';
interface Job {
  readonly phase: Phase;
  readonly ops: number;
  readonly offset: number;
  readonly parties: number;
}
interface Done {
  readonly ns: number;
  readonly cpuNs: number;
  readonly reads: number;
  readonly writes: number;
  readonly hits: number;
  readonly rereads: number;
  readonly misses: number;
  readonly gcs: number;
  readonly gcMs: number;
}

if (isMainThread) {
  const ops = Number(process.argv[2] ?? 2_000_000);
  const order = randomOrder(ORDER_LENGTH, KEYS, 42, new SharedArrayBuffer(ORDER_LENGTH * 4));
  const store = SharedInt64Store.create({ initialCapacity: KEYS, maxKeyLength: 16 });
  const otherStore = SharedInt64Store.create({ initialCapacity: KEYS, maxKeyLength: 16 });
  for (let i = 0; i < KEYS; i++) store.set(`acct-${String(i).padStart(6, '0')}`, BigInt(1_000_000 + (i & 1023)));
  for (let i = 0; i < KEYS; i++) otherStore.set(`acct-${String(i).padStart(6, '0')}`, BigInt(1_000_000 + (i & 1023)));
  const sync = new SharedArrayBuffer(16);
  const start = (): Promise<Worker> =>
    new Promise((resolve, reject) => {
      const worker = new Worker(new URL(import.meta.url), { workerData: { order, handle: store.handle, otherHandle: otherStore.handle, sync } });
      store.supervise(worker);
      worker.once('message', () => resolve(worker));
      worker.once('error', reject);
    });
  const workers = [await start(), await start()];
  const ask = (worker: Worker, job: Job): Promise<Done> =>
    new Promise((resolve) => {
      worker.once('message', resolve);
      worker.postMessage(job);
    });
  const runPair = async (a: Phase, b: Phase | null): Promise<[Done, Done | null]> => {
    const parties = b === null ? 1 : 2;
    const [da, db] = await Promise.all([ask(workers[0]!, { phase: a, ops, offset: 0, parties }), b === null ? null : ask(workers[1]!, { phase: b, ops, offset: ORDER_LENGTH >> 1, parties })]);
    return [da, db];
  };
  const show = (label: string, d: Done): string => {
    const perOp = d.ns / (d.reads + d.writes);
    const rw = d.reads + d.writes;
    return `${label.padEnd(34)} ${perOp.toFixed(1).padStart(7)} ns/op  cpu ${(d.cpuNs / rw).toFixed(1).padStart(7)}  reads ${d.reads}  writes ${d.writes}  hit ${pct(d.hits, d.reads)} reread ${pct(d.rereads, d.reads)} miss ${pct(d.misses, d.reads)}  gc ${d.gcs} (${d.gcMs.toFixed(1)} ms)`;
  };
  const rounds = Number(process.argv[3] ?? 3);
  const lines = new Map<string, string[]>();
  const note = (label: string, d: Done | null): void => {
    if (d === null) return;
    const list = lines.get(label) ?? [];
    list.push(show(label, d));
    lines.set(label, list);
  };
  await runPair('mixed', null); // warm-up, fills the caches
  await runPair('mixed', 'mixed');
  for (let r = 0; r < rounds; r++) {
    note('1w Map mixed', (await runPair('map-mixed', null))[0]);
    note('1w Map reads only', (await runPair('map-reads', null))[0]);
    note('1w Map writes only', (await runPair('map-writes', null))[0]);
    note('1w store mixed', (await runPair('mixed', null))[0]);
    note('1w store mixed, writes to another map', (await runPair('mixed-other', null))[0]);
    note('1w store reads only', (await runPair('reads', null))[0]);
    note('1w store writes only', (await runPair('writes', null))[0]);
    const both = await runPair('mixed', 'mixed');
    note('2w store mixed (A)', both[0]);
    note('2w store mixed (B)', both[1]);
    const aReads = await runPair('reads', 'mixed');
    note('2w A reads only, B mixed: A', aReads[0]);
    note('2w A reads only, B mixed: B', aReads[1]);
    const aWrites = await runPair('writes', 'mixed');
    note('2w A writes only, B mixed: A', aWrites[0]);
    const bothWrites = await runPair('writes', 'writes');
    note('2w both writes only: A', bothWrites[0]);
    const bothReads = await runPair('reads', 'reads');
    note('2w both reads only: A', bothReads[0]);
  }
  for (const [, list] of lines) for (const line of list) console.log(line);
  await Promise.all(workers.map((w) => w.terminate()));
  store.close();
  otherStore.close();
} else {
  const data = workerData as { order: Int32Array; handle: SharedMapHandle; otherHandle: SharedMapHandle; sync: SharedArrayBuffer };
  const keys = Array.from({ length: KEYS }, (_, i) => `acct-${String(i).padStart(6, '0')}`);
  const values = Array.from({ length: 1024 }, (_, i) => BigInt(1_000_000 + i));
  const order = data.order;
  const mask = order.length - 1;
  const map = new Map<string, bigint>();
  for (let i = 0; i < keys.length; i++) map.set(keys[i]!, values[i & 1023]!);
  const store = SharedInt64Store.attach(data.handle);
  const other = SharedInt64Store.attach(data.otherHandle);
  let gcs = 0;
  let gcMs = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcs++;
      gcMs += entry.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  const sync = new Int32Array(data.sync);
  let sink: bigint | undefined;

  const loop = (phase: Phase, ops: number, offset: number): [number, number] => {
    let reads = 0;
    let writes = 0;
    switch (phase) {
      case 'map-mixed':
      case 'map-reads':
      case 'map-writes':
        for (let i = 0; i < ops; i++) {
          const key = keys[order[(i + offset) & mask]!]!;
          if (i % PERIOD === 0) {
            if (phase === 'map-reads') continue;
            map.set(key, values[i & 1023]!);
            writes++;
          } else {
            if (phase === 'map-writes') continue;
            sink = map.get(key);
            reads++;
          }
        }
        break;
      case 'mixed-other':
        // The same loop, its writes going to a second map: nothing this thread reads goes stale.
        for (let i = 0; i < ops; i++) {
          const key = keys[order[(i + offset) & mask]!]!;
          if (i % PERIOD === 0) {
            other.set(key, values[i & 1023]!);
            writes++;
          } else {
            sink = store.get(key);
            reads++;
          }
        }
        break;
      case 'mixed':
      case 'reads':
      case 'writes':
        for (let i = 0; i < ops; i++) {
          const key = keys[order[(i + offset) & mask]!]!;
          if (i % PERIOD === 0) {
            if (phase === 'reads') continue;
            store.set(key, values[i & 1023]!);
            writes++;
          } else {
            if (phase === 'writes') continue;
            sink = store.get(key);
            reads++;
          }
        }
        break;
      case 'idle':
        break;
    }
    return [reads, writes];
  };
  const barrier = (parties: number): void => {
    if (parties === 1) return;
    const generation = Atomics.load(sync, 1);
    if (Atomics.add(sync, 0, 1) === parties - 1) {
      Atomics.store(sync, 0, 0);
      Atomics.add(sync, 1, 1);
      Atomics.notify(sync, 1);
      return;
    }
    while (Atomics.load(sync, 1) === generation) Atomics.wait(sync, 1, generation, 1);
  };
  const onJob = async (job: Job): Promise<void> => {
    loop(job.phase, Math.min(job.ops, 100_000), job.offset);
    await new Promise((resolve) => setImmediate(resolve));
    (globalThis as { gc?: () => void }).gc?.(); // a settled heap, as the suite does
    await new Promise((resolve) => setImmediate(resolve));
    const gcsBefore = gcs;
    const gcMsBefore = gcMs;
    barrier(job.parties);
    const before = store.stats().readCache;
    const cpu = process.threadCpuUsage();
    const t0 = process.hrtime.bigint();
    const [reads, writes] = loop(job.phase, job.ops, job.offset);
    const ns = Number(process.hrtime.bigint() - t0);
    const used = process.threadCpuUsage(cpu);
    const after = store.stats().readCache;
    if (sink === null) throw new Error('unreachable');
    await new Promise((resolve) => setTimeout(resolve, 5));
    parentPort!.postMessage({
      ns,
      cpuNs: (used.user + used.system) * 1000,
      reads,
      writes,
      hits: after.hits - before.hits,
      rereads: after.rereads - before.rereads,
      misses: after.misses - before.misses,
      gcs: gcs - gcsBefore,
      gcMs: gcMs - gcMsBefore,
    } satisfies Done);
  };
  parentPort!.on('message', (job: Job) => void onJob(job));
  parentPort!.postMessage('ready');
}

function pct(part: number, whole: number): string {
  return whole === 0 ? '-' : `${((100 * part) / whole).toFixed(1)}%`;
}
