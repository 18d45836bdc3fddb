import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { int64Codec, openRedisGovernedMap } from '../../src/stores/redis/index.ts';
import type { RedisConnectionOptions, RemoteGovernedMap } from '../../src/stores/redis/index.ts';
import { required, service, uniquePrefix } from './redis-env.ts';

/**
 * Separate processes, each with its own connection and near cache, on the same real Redis (and
 * the same real cluster): the "two machines" claims.
 */
const WORKER = fileURLToPath(new URL('./redis-worker.ts', import.meta.url));
const standalone = service('GOVMAP_REDIS_URL');
const cluster = service('GOVMAP_REDIS_CLUSTER_NODES');

interface Message {
  type: string;
  [field: string]: unknown;
}

function worker(): { child: ChildProcess; next: (type: string, timeoutMs?: number) => Promise<Message> } {
  const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox: Message[] = [];
  const waiting: Array<() => void> = [];
  child.on('message', (message: Message) => {
    inbox.push(message);
    for (const wake of waiting.splice(0)) wake();
  });
  child.on('exit', () => {
    for (const wake of waiting.splice(0)) wake();
  });
  const next = async (type: string, timeoutMs = 60_000): Promise<Message> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = inbox.findIndex((m) => m.type === type || m.type === 'error');
      if (index >= 0) {
        const [message] = inbox.splice(index, 1);
        if (message!.type === 'error') assert.fail(`worker failed: ${String(message!.message)}`);
        return message!;
      }
      if (child.exitCode !== null) assert.fail(`worker exited (${child.exitCode}) before sending "${type}"`);
      if (Date.now() > deadline) assert.fail(`no "${type}" from the worker within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  };
  return { child, next };
}

function balances(redis: RedisConnectionOptions, keyPrefix: string): Promise<RemoteGovernedMap<bigint>> {
  return openRedisGovernedMap<bigint>({
    name: 'balances',
    redis,
    keyPrefix,
    codec: int64Codec,
    validate: (_id, next) => (next >= 0n ? true : 'BALANCE_UNDERFLOW'),
    bounds: { min: 0n, belowReason: 'BALANCE_UNDERFLOW' },
    sizeRefreshMs: 0,
  });
}

function suite(label: string, s: typeof standalone, variable: string, options: () => RedisConnectionOptions): void {
  describe(`two processes on a real ${label}`, { skip: s.skip }, () => {
    const cleanups: Array<() => Promise<void>> = [];
    after(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
    });

    test('updating the same accounts concurrently: no update lost, no balance below zero', async (t) => {
      required(s, variable);
      const prefix = uniquePrefix(`procs-${label.replace(/\W/g, '')}`);
      const map = await balances(options(), prefix);
      cleanups.push(async () => {
        for (const [key] of await map.entries()) await map.delete(key);
        await map.dispose();
      });
      const accounts = ['acct-1', 'acct-2', 'acct-3'];
      const opening = 2000n;
      for (const account of accounts) await map.store(account, opening);

      const workers = [worker(), worker()];
      workers.forEach(({ child }, i) => child.send({ mode: 'accounts', redis: options(), prefix, accounts, ops: 400, concurrency: 8, seed: 7 + i * 1000 }));
      const reports = await Promise.all(workers.map(({ next }) => next('done')));

      let refused = 0;
      for (const account of accounts) {
        const moved = reports.reduce((sum, r) => sum + BigInt((r.applied as Record<string, string>)[account]!), 0n);
        const balance = await map.load(account);
        assert.equal(balance, opening + moved, `${account}: the balance is the opening plus every acknowledged movement of both processes`);
        assert.ok(balance >= 0n);
      }
      for (const r of reports) {
        refused += r.refused as number;
        assert.ok(BigInt(r.lowest as string) >= 0n, 'no acknowledged balance was negative');
      }
      t.diagnostic(`refused (would go below zero): ${refused}; update conflicts given up: ${reports.map((r) => r.conflicts).join('+')}; CAS retries: ${reports.map((r) => r.casConflicts).join('+')}`);
      assert.ok(refused > 0, 'the workload drove balances against the zero bound');
    });

    test('a write in this process reaches the other process as an invalidation', async (t) => {
      required(s, variable);
      const prefix = uniquePrefix(`inval-${label.replace(/\W/g, '')}`);
      const map = await balances(options(), prefix);
      cleanups.push(async () => {
        await map.delete('acct-9').catch(() => undefined);
        await map.dispose();
      });
      await map.store('acct-9', 100n);
      const delays: number[] = [];
      for (let round = 0; round < 5; round++) {
        const { child, next } = worker();
        child.send({ mode: 'watch', redis: options(), prefix, key: 'acct-9' });
        await next('ready');
        const sent = performance.timeOrigin + performance.now();
        const after = await map.add('acct-9', 1n);
        const { at } = await next('invalidated', 5000);
        const { value } = await next('value', 5000);
        assert.equal(value, String(after), 'after the invalidation the other process reads the new balance');
        delays.push((at as number) - sent);
        child.send({ stop: true });
        await new Promise((resolve) => child.once('exit', resolve));
      }
      t.diagnostic(`invalidation delay, write sent -> other process notified: ${delays.map((d) => d.toFixed(2)).join(', ')} ms`);
      for (const d of delays) assert.ok(d < 5000);
    });
  });
}

suite('Redis', standalone, 'GOVMAP_REDIS_URL', () => ({ url: standalone.value! }));
suite('Redis Cluster', cluster, 'GOVMAP_REDIS_CLUSTER_NODES', () => ({ clusterNodes: cluster.value!.split(',') }));
