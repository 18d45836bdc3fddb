import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { createClient, createCluster } from 'redis';
import { ConfigurationError, ValidationError } from '../../src/index.ts';
import { RemoteGovernedMap, connectRedis, int64Codec } from '../../src/stores/redis/index.ts';
import type { RedisLink } from '../../src/stores/redis/index.ts';
import { PrivateCluster, PrivateRedis, freePort, required, service, uniquePrefix } from './redis-env.ts';

/** Stores `value` under 30 keys (over every master's slots) and reads them all back through `link`. */
async function writesLandOnEveryMaster(link: RedisLink, keyPrefix: string, value: bigint): Promise<void> {
  const map = new RemoteGovernedMap<bigint>({ name: 'balances', link, keyPrefix, codec: int64Codec, validate: () => true, sizeRefreshMs: 0 });
  const keys = Array.from({ length: 30 }, (_, i) => `acct-${i}`);
  for (const key of keys) await map.store(key, value);
  assert.deepEqual((await map.entries()).map(([, stored]) => stored), keys.map(() => value));
  await map.dispose();
}

/** The same store over a real 3-master Redis Cluster (test/infra/redis.sh: 127.0.0.1:7001-7003). */
const cluster = service('GOVMAP_REDIS_CLUSTER_NODES');

describe('RemoteGovernedMap on a real Redis Cluster', { skip: cluster.skip }, () => {
  let nodes: string[];
  let link: RedisLink;
  let raw: ReturnType<typeof createCluster>;
  const maps: RemoteGovernedMap<bigint>[] = [];

  before(async () => {
    nodes = required(cluster, 'GOVMAP_REDIS_CLUSTER_NODES').split(',');
    link = await connectRedis({ clusterNodes: nodes });
    raw = createCluster({ rootNodes: nodes.map((n) => ({ url: `redis://${n}` })) });
    await raw.connect();
  });

  after(async () => {
    for (const map of maps) {
      for (const [key] of await map.entries()) await map.delete(key);
      await map.dispose();
    }
    await raw?.close();
    await link?.close();
  });

  function balances(label: string, onNearInvalidated?: (key: string | null) => void): RemoteGovernedMap<bigint> {
    const map = new RemoteGovernedMap<bigint>({
      name: 'balances',
      link,
      keyPrefix: uniquePrefix(label),
      codec: int64Codec,
      validate: (_id, next) => (next >= 0n ? true : 'BALANCE_UNDERFLOW'),
      bounds: { min: 0n, belowReason: 'BALANCE_UNDERFLOW' },
      sizeRefreshMs: 0,
      onNearInvalidated,
    });
    maps.push(map);
    return map;
  }

  test('a cluster node given as url (one server) is refused at connect, naming the option, not half the keys failing with MOVED', async () => {
    const started = performance.now();
    await assert.rejects(
      connectRedis({ url: `redis://${nodes[0]}`, connectTimeoutMs: 20_000 }).then(async (wrong) => {
        await wrong.close();
        return wrong;
      }),
      (error: unknown) => error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && /"redis\.url"/.test(error.message) && /clusterNodes/.test(error.message),
    );
    assert.ok(performance.now() - started < 10_000, 'refused at once, not after connectTimeoutMs (20 s)');
  });

  test('a standalone server given as clusterNodes is refused at connect, naming the option, not reported as an outage', async () => {
    const server = new PrivateRedis(await freePort());
    await server.start();
    try {
      await assert.rejects(
        connectRedis({ clusterNodes: [`127.0.0.1:${server.port}`] }).then(async (wrong) => {
          await wrong.close();
          return wrong;
        }),
        (error: unknown) => error instanceof ConfigurationError && /"redis\.clusterNodes"/.test(error.message) && /standalone Redis \(cluster_enabled:0\).*give it as url/.test(error.message),
      );
    } finally {
      await server.stop();
    }
  });

  test('one key per entry: keys spread over many slots and every master, and range finds them all', async () => {
    const map = balances('spread');
    assert.equal(map.storeKind, 'redis-cluster');
    const ids = Array.from({ length: 300 }, (_, i) => `acct-${String(i).padStart(4, '0')}`);
    await Promise.all(ids.map((id, i) => map.store(id, BigInt(i))));

    const slots = new Set<number>();
    const probe = createClient({ url: `redis://${nodes[0]}` });
    await probe.connect();
    for (const id of ids) slots.add(await probe.clusterKeySlot(`${map.keyPrefix}${id}`));
    await probe.close();
    assert.ok(slots.size > 250, `300 entries landed in only ${slots.size} slots`);

    const perMaster: number[] = [];
    for (const master of raw.masters) {
      const client = await raw.nodeClient(master);
      let count = 0;
      for await (const keys of client.scanIterator({ MATCH: `${map.keyPrefix}*`, COUNT: 1000 })) count += keys.length;
      perMaster.push(count);
    }
    assert.equal(perMaster.length, 3);
    assert.equal(perMaster.reduce((a, b) => a + b, 0), 300);
    for (const count of perMaster) assert.ok(count > 50, `a master holds only ${count} of 300 entries: ${perMaster.join('/')}`);

    assert.equal(await map.refreshSize(), 300);
    const all = await map.entries({ prefix: 'acct-' });
    assert.equal(all.length, 300);
    assert.deepEqual(all.map(([id]) => id), ids, 'a bounded walk across masters comes back sorted');
    assert.equal(all[299]![1], 299n);
  });

  test('compare-and-set and bounded add run as single-key scripts on the owning master', async () => {
    const map = balances('scripts');
    await map.store('acct-1', 100n);
    let calls = 0;
    const result = await map.update('acct-1', async (balance) => {
      calls++;
      if (calls === 1) await raw.incrBy(`${map.keyPrefix}acct-1`, 7);
      return balance! + 10n;
    });
    assert.deepEqual([calls, result], [2, 117n]);
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => map.add('acct-1', -10n)));
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 11);
    for (const o of outcomes) if (o.status === 'rejected') assert.ok(o.reason instanceof ValidationError && o.reason.reason === 'BALANCE_UNDERFLOW');
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '7');
  });

  test('the near cache is invalidated by writes on any master', async () => {
    const seen: Array<string | null> = [];
    const map = balances('near', (key) => seen.push(key));
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (const id of ids) await map.store(id, 1n);
    for (const id of ids) assert.equal(await map.load(id), 1n);
    for (const id of ids) assert.equal(map.loadCached(id), 1n);
    for (const id of ids) await raw.set(`${map.keyPrefix}${id}`, '2');
    const deadline = Date.now() + 5000;
    while (ids.some((id) => map.loadCached(id) !== undefined)) {
      if (Date.now() > deadline) assert.fail(`still cached: ${ids.filter((id) => map.loadCached(id) !== undefined).join(',')}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (const id of ids) assert.equal(await map.load(id), 2n);
    assert.deepEqual([...new Set(seen)].sort(), ids, 'every key was invalidated (our own stores invalidate too)');
  });
});

describe('RemoteGovernedMap when a cluster master fails over to its replica', { skip: PrivateRedis.available() || process.env.CI ? false : 'redis-server is not installed' }, () => {
  test('once the replica serves the slots the link is healthy again and the near cache serves, not distrusted for good', async () => {
    const privateCluster = new PrivateCluster();
    let link: RedisLink | undefined;
    try {
      await privateCluster.start();
      link = await connectRedis({ clusterNodes: privateCluster.seeds, heartbeatMs: 200, commandTimeoutMs: 500, reconnectMaxDelayMs: 200 });
      const map = new RemoteGovernedMap<bigint>({ name: 'balances', link, keyPrefix: 'failover:', codec: int64Codec, validate: () => true, sizeRefreshMs: 0 });
      const keys = Array.from({ length: 30 }, (_, i) => `acct-${i}`); // over every master's slots
      for (const key of keys) await map.store(key, 1n);
      await privateCluster.killFirstMaster();

      // The failed master is gone from the topology; it will never report ready again. Before,
      // the link kept it as "down" forever: every load a round trip, the near cache distrusted.
      const deadline = Date.now() + 20_000;
      let served = 0;
      while (Date.now() < deadline) {
        served = 0;
        for (const key of keys) served += await map.load(key).then(() => 1, () => 0);
        if (served === keys.length && map.stats().near.trusted) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.equal(served, keys.length, 'every key is served after the failover');
      assert.equal(map.stats().near.trusted, true, 'the near cache is trusted again after the failover');
      for (const key of keys) await map.load(key);
      const remote = map.counters.remoteLoads;
      for (const key of keys) assert.equal(await map.load(key), 1n);
      assert.equal(map.counters.remoteLoads, remote, 'loads are answered by the near cache again');
      await map.dispose();
    } finally {
      await link?.close();
      await privateCluster.stop();
    }
  });
});

describe('RemoteGovernedMap on a password-protected Redis Cluster', { skip: PrivateRedis.available() || process.env.CI ? false : 'redis-server is not installed' }, () => {
  test('credentials in the clusterNodes URLs reach every node, so a cluster with requirepass is usable; a wrong password is a configuration error that does not print it', async () => {
    const privateCluster = new PrivateCluster({ password: 'cl-pw' });
    let link: RedisLink | undefined;
    try {
      await privateCluster.start();
      const seeds = privateCluster.seeds.map((seed) => `redis://default:cl-pw@${seed}`);
      link = await connectRedis({ clusterNodes: seeds });
      const map = new RemoteGovernedMap<bigint>({ name: 'balances', link, keyPrefix: 'auth:', codec: int64Codec, validate: () => true, sizeRefreshMs: 0, bounds: { min: 0n } });
      const keys = Array.from({ length: 30 }, (_, i) => `acct-${i}`); // over every master's slots
      for (const key of keys) await map.store(key, 10n);
      for (const key of keys) assert.equal(await map.add(key, -3n), 7n);
      assert.equal((await map.entries()).length, keys.length);
      await map.dispose();
      await assert.rejects(
        connectRedis({ clusterNodes: privateCluster.seeds.map((seed) => `redis://default:not-it@${seed}`), connectTimeoutMs: 3000 }),
        (error: unknown) => error instanceof ConfigurationError && /"redis\.clusterNodes"/.test(error.message) && !error.message.includes('not-it'),
      );
    } finally {
      await link?.close();
      await privateCluster.stop();
    }
  });
});

describe('RemoteGovernedMap on a TLS-only Redis Cluster', { skip: PrivateRedis.available() || process.env.CI ? false : 'redis-server is not installed' }, () => {
  test('rediss:// seeds with redis.tls.caFile of the cluster\'s private CA make every node connection TLS trusting that CA, discovered nodes included: writes land on every master; without the CA, a ConfigurationError naming redis.tls', async () => {
    const privateCluster = new PrivateCluster({ tls: true });
    let link: RedisLink | undefined;
    try {
      await privateCluster.start();
      const clusterNodes = privateCluster.seeds.map((seed) => `rediss://${seed}`);
      await assert.rejects(
        connectRedis({ clusterNodes, connectTimeoutMs: 3000 }),
        (error: unknown) => error instanceof ConfigurationError && /"redis\.tls"/.test(error.message) && /certificate/.test(error.message),
      );
      // Only the option trusts the CA: the process-wide trust store (NODE_EXTRA_CA_CERTS) is untouched.
      link = await connectRedis({ clusterNodes, tls: { caFile: privateCluster.caFile }, connectTimeoutMs: 3000 });
      await writesLandOnEveryMaster(link, 'tls:', 5n);
    } finally {
      await link?.close();
      await privateCluster.stop();
    }
  });

  test('a TLS cluster requiring client certificates (tls-auth-clients yes): redis.tls certFile/keyFile are presented to every node, discovered ones included: writes land on every master; without them, a ConfigurationError naming redis.tls saying the cluster requires a client certificate', async () => {
    const privateCluster = new PrivateCluster({ clientAuth: true });
    let link: RedisLink | undefined;
    try {
      await privateCluster.start();
      const clusterNodes = privateCluster.seeds.map((seed) => `rediss://${seed}`);
      await assert.rejects(
        connectRedis({ clusterNodes, tls: { caFile: privateCluster.caFile }, connectTimeoutMs: 3000 }),
        (error: unknown) => error instanceof ConfigurationError && /"redis\.tls"/.test(error.message) && /requires a client certificate/.test(error.message),
      );
      link = await connectRedis({ clusterNodes, tls: { caFile: privateCluster.caFile, certFile: privateCluster.certFile, keyFile: privateCluster.keyFile }, connectTimeoutMs: 3000 });
      await writesLandOnEveryMaster(link, 'mtls:', 5n);
    } finally {
      await link?.close();
      await privateCluster.stop();
    }
  });
});

const ipv6Loopback = spawnSync('ip', ['-6', 'addr', 'show', 'lo'], { encoding: 'utf8' }).stdout?.includes('::1') === true;

describe('RemoteGovernedMap on a Redis Cluster seeded by IPv6 address', { skip: !PrivateRedis.available() && !process.env.CI ? 'redis-server is not installed' : ipv6Loopback ? false : 'the loopback has no IPv6 address (::1)' }, () => {
  test('seeds given as [::1]:port connect, and writes land on every master', async () => {
    const privateCluster = new PrivateCluster({ bind: ['127.0.0.1', '::1'] });
    let link: RedisLink | undefined;
    try {
      await privateCluster.start();
      link = await connectRedis({ clusterNodes: privateCluster.ports.slice(1, 3).map((port) => `[::1]:${port}`), connectTimeoutMs: 3000 });
      await writesLandOnEveryMaster(link, 'v6:', 7n);
    } finally {
      await link?.close();
      await privateCluster.stop();
    }
  });
});
