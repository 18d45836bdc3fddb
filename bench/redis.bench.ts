import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { ConfigurationError } from '../src/map/index.ts';
import { RedisUnavailableError, RemoteGovernedMap, connectRedis, int64Codec } from '../src/stores/redis/index.ts';
import type { RedisLink } from '../src/stores/redis/index.ts';
import { BenchUsageError, medianOf, randomOrder, result, round, timeOps } from './harness.ts';
import type { BenchResult, Suite } from './harness.ts';

/**
 * The Redis store against its baselines, each measured in the same run:
 * - near-cache read (`loadCached`, and `await load` of a cached key) vs a plain Map.get;
 * - uncached load (near cache off: one GET round trip) vs a bare node-redis GET;
 * - writes (`add`: validator + bounded INCRBY script) 64 in flight vs one at a time;
 * - invalidation delay: a write in this process until a second process (forked, its own
 *   connection and near cache) has dropped the key, on one clock (performance.timeOrigin + now).
 * Needs a real Redis: GOVMAP_REDIS_URL (bash test/infra/redis.sh start).
 */
const WATCHER_ENV = 'GOVMAP_BENCH_REDIS_WATCHER';
const KEYS = 10_000;

function balances(link: RedisLink, keyPrefix: string, near: boolean, onNearInvalidated?: (key: string | null) => void): RemoteGovernedMap<bigint> {
  return new RemoteGovernedMap<bigint>({
    name: 'bench',
    link,
    keyPrefix,
    codec: int64Codec,
    validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW'),
    bounds: { min: 0n, belowReason: 'BALANCE_UNDERFLOW' },
    nearCache: near ? { maxEntries: KEYS * 2 } : false,
    sizeRefreshMs: 0,
    onNearInvalidated,
  });
}

async function inBatches<T>(items: readonly T[], size: number, each: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(each));
}

async function timeAsync(ops: number, body: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(ops, 1000); i++) await body(i); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) await body(i);
  return Number(process.hrtime.bigint() - start) / ops;
}

/** `inFlight` concurrent loops sharing `ops`: node-redis pipelines what is issued together. */
async function timeConcurrent(ops: number, inFlight: number, body: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const loop = async (): Promise<void> => {
    while (next < ops) await body(next++);
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: inFlight }, loop));
  return Number(process.hrtime.bigint() - start) / ops;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

const suite: Suite = async ({ progress, quick }) => {
  const url = process.env.GOVMAP_REDIS_URL;
  // A missing or unreachable Redis is the caller's setup, not a failure of the suite: one line
  // naming the variable (exit 2, as for a bad option), not an uncaught exception's stack trace.
  if (url === undefined || url === '') throw new BenchUsageError('GOVMAP_REDIS_URL', 'the redis suite needs a real Redis: bash test/infra/redis.sh start; export GOVMAP_REDIS_URL=redis://127.0.0.1:6390');
  const prefix = `govmap-bench:${process.pid}:`;
  const keys = Array.from({ length: KEYS }, (_, i) => `acct-${String(i).padStart(6, '0')}`);
  let link: RedisLink;
  try {
    link = await connectRedis({ url });
  } catch (error) {
    if (!(error instanceof ConfigurationError || error instanceof RedisUnavailableError)) throw error;
    throw new BenchUsageError('GOVMAP_REDIS_URL', `GOVMAP_REDIS_URL ${JSON.stringify(url)}: ${error.message}`);
  }
  const raw = createClient({ url, RESP: 3 });
  await raw.connect();
  const near = balances(link, prefix, true);
  const uncached = balances(link, prefix, false);
  const results: BenchResult[] = [];
  const ratios: Record<string, number> = {};
  try {
    progress(`seeding ${KEYS} keys`);
    await inBatches(keys, 500, (k) => near.store(k, 1_000_000n));
    await inBatches(keys, 500, (k) => near.load(k));
    if (near.stats().near.entries !== KEYS) throw new Error(`near cache holds ${near.stats().near.entries} of ${KEYS} keys after warming`);

    // 1. Near-cache read vs plain Map, same key sequence, alternating rounds.
    const plain = new Map(keys.map((k) => [k, 1_000_000n] as const));
    const order = randomOrder(1 << 16, KEYS, 42);
    let hits = 0;
    const ops = quick ? 300_000 : 3_000_000;
    const rounds = quick ? 3 : 7;
    const p: number[] = [];
    const n: number[] = [];
    for (let r = 0; r < rounds; r++) {
      p.push(timeOps(ops, (count) => {
        for (let i = 0; i < count; i++) if (plain.get(keys[order[i & 0xffff]!]!) !== undefined) hits++;
      }));
      n.push(timeOps(ops, (count) => {
        for (let i = 0; i < count; i++) if (near.loadCached(keys[order[i & 0xffff]!]!) !== undefined) hits++;
      }));
    }
    const plainNs = medianOf(p);
    const nearNs = medianOf(n);
    if (near.counters.remoteLoads !== KEYS) throw new Error('a near-cache read went to Redis during the timing');
    const awaitNs = await timeAsync(quick ? 50_000 : 300_000, (i) => near.load(keys[order[i & 0xffff]!]!));
    results.push(result('plain Map.get', plainNs), result('near cache loadCached', nearNs), result('near cache await load', awaitNs));
    ratios.near_read_vs_map = round(nearNs / plainNs);
    ratios.near_load_await_vs_map = round(awaitNs / plainNs);
    progress(`near read ${nearNs.toFixed(1)} ns vs Map ${plainNs.toFixed(1)} ns; await load ${awaitNs.toFixed(1)} ns`);

    // 2. Uncached read: one round trip per load, vs a bare node-redis GET.
    const rtOps = quick ? 2000 : 10_000;
    const rawNs: number[] = [];
    const loadNs: number[] = [];
    for (let r = 0; r < 3; r++) {
      rawNs.push(await timeAsync(rtOps, (i) => raw.get(prefix + keys[i % KEYS]!)));
      loadNs.push(await timeAsync(rtOps, (i) => uncached.load(keys[i % KEYS]!)));
    }
    results.push(result('node-redis GET (round trip)', medianOf(rawNs)), result('uncached load (round trip)', medianOf(loadNs)));
    ratios.uncached_load_vs_raw_get = round(medianOf(loadNs) / medianOf(rawNs));
    progress(`uncached load ${(medianOf(loadNs) / 1000).toFixed(1)} µs vs raw GET ${(medianOf(rawNs) / 1000).toFixed(1)} µs`);

    // 3. Writes: add (validator + bounded INCRBY script; a GET first when the key is not near).
    const wOps = quick ? 5000 : 30_000;
    const sequentialNs = await timeAsync(quick ? 1000 : 5000, (i) => near.add(keys[i % KEYS]!, 1n));
    const pipelinedNs = await timeConcurrent(wOps, 64, (i) => near.add(keys[i % KEYS]!, 1n));
    const rawIncrNs = await timeConcurrent(wOps, 64, (i) => raw.incrBy(prefix + keys[i % KEYS]!, 1));
    results.push(result('add, one at a time', sequentialNs), result('add, 64 in flight (pipelined)', pipelinedNs), result('node-redis INCRBY, 64 in flight', rawIncrNs));
    ratios.pipelined_write_speedup = round(sequentialNs / pipelinedNs);
    ratios.pipelined_add_vs_raw_incrby = round(pipelinedNs / rawIncrNs);
    progress(`add: ${Math.round(1e9 / pipelinedNs)} ops/s pipelined, ${Math.round(1e9 / sequentialNs)} ops/s one at a time`);

    // 4. Invalidation delay to another process.
    const samples = quick ? 200 : 1000;
    const watched = keys.slice(0, samples);
    const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, [WATCHER_ENV]: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const messages: Array<{ type: string; at?: Record<string, number> }> = [];
    child.on('message', (m: { type: string }) => messages.push(m));
    const waitFor = async (type: string, timeoutMs: number): Promise<{ type: string; at?: Record<string, number> }> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = messages.find((m) => m.type === type);
        if (found) return found;
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`invalidation watcher: no "${type}" (exit ${child.exitCode})`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    child.send({ url, prefix, keys: watched });
    await waitFor('ready', 30_000);
    const sentAt = new Map<string, number>();
    for (const key of watched) {
      sentAt.set(key, performance.timeOrigin + performance.now());
      await near.add(key, 1n);
    }
    child.send({ report: true });
    const { at } = await waitFor('report', 30_000);
    child.kill();
    const delays = watched.map((k) => at![k]! - sentAt.get(k)!).filter((d) => Number.isFinite(d)).sort((a, b) => a - b);
    if (delays.length !== samples) throw new Error(`only ${delays.length} of ${samples} invalidations reached the other process`);
    const p50 = quantile(delays, 0.5);
    const p99 = quantile(delays, 0.99);
    results.push(result('invalidation to another process, p50', p50 * 1e6), result('invalidation to another process, p99', p99 * 1e6, { max_ms: round(delays.at(-1)!) }));
    ratios.invalidation_p50_ms = round(p50);
    ratios.invalidation_p99_ms = round(p99);
    ratios.invalidation_p99_vs_round_trip = round((p99 * 1e6) / medianOf(rawNs));
    progress(`invalidation p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, max ${delays.at(-1)!.toFixed(3)} ms`);
    if (hits === -1) console.log(hits); // keep the reads observable to the optimiser
  } finally {
    await near.dispose();
    await uncached.dispose();
    for await (const batch of raw.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) if (batch.length > 0) await raw.del(batch);
    await raw.close();
    await link.close();
  }
  return {
    suite: 'redis',
    results,
    ratios,
    targets: { near_read_vs_map: '<= 2.0' },
    notes: [
      `Redis ${url}; ${KEYS} keys; near read: median of ${rounds(quick)} alternating rounds`,
      'invalidation_*_ms: from the write being sent here to the other process having dropped the key (absolute ms on this machine, loopback)',
      'add needs the current value for the validator: 1 round trip when the key is in the near cache, else 2 (GET, then the script); an add invalidates its own key',
    ],
  };
};

function rounds(quick: boolean): number {
  return quick ? 3 : 7;
}

/** The forked second process: caches the keys, records when each one's invalidation arrives. */
async function watcher(): Promise<void> {
  const job = await new Promise<{ url: string; prefix: string; keys: string[] }>((resolve) => process.once('message', resolve));
  const at: Record<string, number> = {};
  const link = await connectRedis({ url: job.url });
  const map = balances(link, job.prefix, true, (key) => {
    if (key !== null && at[key] === undefined) at[key] = performance.timeOrigin + performance.now();
  });
  await inBatches(job.keys, 500, (k) => map.load(k));
  process.send!({ type: 'ready' });
  process.on('message', (m: { report?: boolean }) => {
    if (m.report !== true) return;
    const deadline = Date.now() + 5000;
    const reply = (): void => {
      if (Object.keys(at).length < job.keys.length && Date.now() < deadline) setTimeout(reply, 5);
      else process.send!({ type: 'report', at });
    };
    reply();
  });
}

if (process.env[WATCHER_ENV] === '1' && process.send !== undefined) await watcher();

export default suite;
