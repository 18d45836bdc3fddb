import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigurationError, GovernedMap } from '../../src/map/index.ts';
import { closestOption, editDistance, findUnknownOption, optionKeys } from '../../src/map/known-options.ts';
import { InProcessStore, SharedInt64Store, SharedRecordStore } from '../../src/stores/index.ts';
import { NearCache } from '../../src/stores/redis/near-cache.ts';
import { RemoteGovernedMap, connectRedis, int64Codec, openRedisGovernedMap } from '../../src/stores/redis/index.ts';
import { MapMetrics } from '../../src/metrics/index.ts';
import { FileSwitchSource, GovmapSwitchProvider, StateSwitchSource, SwitchBoard, WatchedFile, followPrimary, publishToWorkers } from '../../src/switches/index.ts';
import { SwitchMetrics } from '../../src/switches/metrics.ts';
import {
  AsyncLane,
  Bulkhead,
  FileRouteTableSource,
  Router,
  RoutingMetrics,
  StateRouteTableSource,
  TokenBucket,
  createBizTagMiddleware,
} from '../../src/routing/index.ts';
import { govmapBizTag } from '../../src/routing/fastify.ts';
import { BreakerClusterSync, BreakerGroup, BreakerMetrics, CircuitBreaker, ManualClock } from '../../src/breaker/index.ts';
import { GcMonitor, Sandbox, SiteCapture } from '../../src/sandbox/index.ts';
import { Advisor } from '../../src/advisor/index.ts';
import { EtcdStateStore, FileStateStore, MemoryStateStore, openStateStore } from '../../src/state/index.ts';
import { KafkaForwarder } from '../../src/audit/index.ts';
import { AuditConfigurationError } from '../../src/audit/errors.ts';

// Every public constructor refuses an option key it does not know, with its own typed error: a
// misspelt `maxkeys` must never leave a map unbounded while its owner believes it is capped.

const validate = (): true => true;
const quiet = (): void => undefined;
const store = new MemoryStateStore();
const board = new SwitchBoard({ name: 'unknown_options' });
const router = new Router({ table: { default: { target: 'core' }, routes: [] }, log: quiet });
const directory = await mkdtemp(join(tmpdir(), 'govmap-unknown-options-'));
after(async () => {
  await router.close();
  await store.close();
  await rm(directory, { recursive: true, force: true });
});

/** Loosens the type so a misspelt key compiles, as it would in JavaScript or from a config file. */
function loose(options: Record<string, unknown>): never {
  return options as never;
}

interface Case {
  /** What is constructed (the owner named in the message). */
  readonly owner: string;
  /** The key as misspelt, and the known key it should suggest (null: no suggestion expected). */
  readonly key: string;
  readonly suggestion: string | null;
  /** The configuration error class and code of the part. */
  readonly error?: new (...args: never[]) => Error;
  readonly code?: string;
  /** The option path in the message, when nested (`nearCache.staleReadMS`). */
  readonly option?: string;
  readonly build: () => unknown;
}

const cases: readonly Case[] = [
  { owner: 'GovernedMap', key: 'maxkeys', suggestion: 'maxKeys', build: () => new GovernedMap(loose({ name: 'balances', validate, maxkeys: 10_000 })) },
  { owner: 'GovernedMap', key: 'ttl', suggestion: 'ttlMs', build: () => new GovernedMap(loose({ name: 'balances', validate, ttl: 1_000 })) },
  { owner: 'SharedInt64Store.create', key: 'maxKey', suggestion: 'maxKeys', build: () => SharedInt64Store.create(loose({ maxKey: 100 })) },
  { owner: 'SharedInt64Store.attach', key: 'readCache', suggestion: null, build: () => SharedInt64Store.attach(loose({}), loose({ readCache: 0 })) },
  { owner: 'SharedRecordStore.create', key: 'layouts', suggestion: 'layout', build: () => SharedRecordStore.create(loose({ layouts: { balance: 'int64' } })) },
  { owner: 'SharedRecordStore.attach', key: 'readcachekeys', suggestion: 'readCacheKeys', build: () => SharedRecordStore.attach(loose({}), { balance: 'int64' }, loose({ readcachekeys: 0 })) },
  {
    owner: 'RemoteGovernedMap',
    key: 'keyprefix',
    suggestion: 'keyPrefix',
    build: () => new RemoteGovernedMap(loose({ name: 'balances', validate, codec: int64Codec, keyprefix: 'acct:' })),
  },
  {
    owner: 'nearCache (of RemoteGovernedMap)',
    key: 'staleReadMS',
    option: 'nearCache.staleReadMS',
    suggestion: 'staleReadMs',
    build: () => new RemoteGovernedMap(loose({ name: 'balances', validate, codec: int64Codec, link: fakeLink(), nearCache: { staleReadMS: 100 } })),
  },
  {
    owner: 'bounds (of RemoteGovernedMap)',
    key: 'mx',
    option: 'bounds.mx',
    suggestion: 'max',
    build: () => new RemoteGovernedMap(loose({ name: 'balances', validate, codec: int64Codec, link: fakeLink(), bounds: { min: 0n, mx: 10n } })),
  },
  { owner: 'NearCache', key: 'maxentries', suggestion: 'maxEntries', build: () => new NearCache(loose({ maxentries: 1, staleReadMs: 0, clock: Date.now })) },
  { owner: 'MapMetrics', key: 'prefx', suggestion: 'prefix', build: () => new MapMetrics(loose({ prefx: 'bank_' })) },
  { owner: 'SwitchBoard', key: 'bogus', suggestion: null, build: () => new SwitchBoard(loose({ name: 'b', bogus: 1 })) },
  { owner: 'SwitchBoard', key: 'Replica', suggestion: 'replica', build: () => new SwitchBoard(loose({ Replica: true })) },
  { owner: 'FileSwitchSource', key: 'pollMS', suggestion: 'pollMs', build: () => new FileSwitchSource(loose({ path: join(directory, 'switches.json'), board, pollMS: 10 })) },
  { owner: 'StateSwitchSource', key: 'prefixe', suggestion: 'prefix', build: () => new StateSwitchSource(loose({ store, board, prefixe: '/s/' })) },
  { owner: 'SwitchMetrics', key: 'registy', suggestion: 'registry', build: () => new SwitchMetrics(loose({ registy: null })) },
  { owner: 'WatchedFile', key: 'debounce', suggestion: 'debounceMs', build: () => new WatchedFile(loose({ path: 'x.json', role: 'test', apply: quiet, debounce: 5 })) },
  { owner: 'publishToWorkers', key: 'chanel', suggestion: 'channel', build: () => publishToWorkers(board, loose({ chanel: 'c' })) },
  { owner: 'followPrimary', key: 'logger', suggestion: null, build: () => followPrimary(new SwitchBoard({ name: 'replica', replica: true }), loose({ logger: quiet })) },
  { owner: 'Router', key: 'gaurds', suggestion: 'guards', build: () => new Router(loose({ table: { default: { target: 'core' }, routes: [] }, gaurds: {} })) },
  { owner: 'AsyncLane', key: 'maxQueue', suggestion: 'maxQueued', build: () => new AsyncLane(loose({ name: 'lane', ratePerSec: 1, process: validate, maxQueue: 10 })) },
  { owner: 'Bulkhead', key: 'maxconcurrent', suggestion: 'maxConcurrent', build: () => new Bulkhead(loose({ name: 'b', maxconcurrent: 4, maxQueued: 0 })) },
  { owner: 'TokenBucket', key: 'rate', suggestion: null, build: () => new TokenBucket(loose({ ratePerSec: 1, rate: 5 })) },
  { owner: 'RoutingMetrics', key: 'Prefix', suggestion: 'prefix', build: () => new RoutingMetrics(loose({ Prefix: 'x_' })) },
  { owner: 'FileRouteTableSource', key: 'maxbytes', suggestion: 'maxBytes', build: () => new FileRouteTableSource(loose({ path: join(directory, 'routes.json'), router, maxbytes: 10 })) },
  { owner: 'StateRouteTableSource', key: 'startTimeout', suggestion: 'startTimeoutMs', build: () => new StateRouteTableSource(loose({ store, router, key: '/routes', startTimeout: 10 })) },
  { owner: 'createBizTagMiddleware', key: 'exposeRoutes', suggestion: 'exposeRoute', build: () => createBizTagMiddleware(loose({ router, exposeRoutes: false })) },
  { owner: 'govmapBizTag', key: 'switchs', suggestion: 'switches', build: () => govmapBizTag(loose({ router, switchs: board })) },
  { owner: 'CircuitBreaker', key: 'openDuration', suggestion: 'openDurationMs', build: () => new CircuitBreaker(loose({ name: 'settlement', openDuration: 5_000 })) },
  { owner: 'BreakerGroup', key: 'maxBreaker', suggestion: 'maxBreakers', build: () => new BreakerGroup(loose({ name: 'routes', maxBreaker: 10 })) },
  { owner: 'BreakerGroup', key: 'timoutMs', suggestion: 'timeoutMs', build: () => new BreakerGroup(loose({ name: 'routes', timoutMs: 10 })) },
  { owner: 'BreakerMetrics', key: 'maxKeysSeries', suggestion: 'maxKeySeries', build: () => new BreakerMetrics(loose({ maxKeysSeries: 5 })) },
  { owner: 'BreakerClusterSync', key: 'leaseTtl', suggestion: null, build: () => new BreakerClusterSync(loose({ store, instance: 'a', leaseTtl: 5 })) },
  { owner: 'Sandbox', key: 'idleThreshold', suggestion: 'idleThresholdMs', build: () => new Sandbox(loose({ idleThreshold: 1_000 })) },
  { owner: 'GcMonitor', key: 'windowMS', suggestion: 'windowMs', build: () => new GcMonitor(loose({ windowMS: 60_000 })) },
  { owner: 'SiteCapture', key: 'frame', suggestion: 'frames', build: () => new SiteCapture(loose({ frame: 4 })) },
  { owner: 'Advisor', key: 'minLoadPerWindow', suggestion: 'minLoadsPerWindow', build: () => new Advisor(loose({ minLoadPerWindow: 5 })) },
  { owner: 'FileStateStore', key: 'dir', suggestion: null, build: () => new FileStateStore(loose({ directory, dir: directory })) },
  { owner: 'EtcdStateStore', key: 'endpoint', suggestion: 'endpoints', build: () => new EtcdStateStore(loose({ endpoint: 'http://127.0.0.1:2379' })) },
  { owner: 'FileStateStore', key: 'pollInterval', suggestion: 'pollIntervalMs', build: () => openStateStore(loose({ kind: 'file', directory, pollInterval: 10 })) },
  { owner: 'openStateStore({ kind: "memory" })', key: 'directory', suggestion: null, build: () => openStateStore(loose({ kind: 'memory', directory })) },
  {
    owner: 'the Kafka forwarder',
    key: 'topik',
    option: 'kafka.topik',
    suggestion: 'topic',
    error: AuditConfigurationError,
    code: 'GOVMAP_AUDIT_INVALID_CONFIGURATION',
    build: () => new KafkaForwarder(loose({ dir: directory, brokers: ['localhost:9092'], topik: 'audit' })),
  },
];

/** A RedisLink shape good enough for the constructor's checks (nothing is sent). */
function fakeLink(): unknown {
  return { get: () => Promise.resolve(null), listen: () => () => undefined };
}

describe('every public constructor refuses an unknown option key', () => {
  for (const c of cases) {
    test(`${c.owner}: "${c.key}"${c.suggestion === null ? '' : ` (did you mean "${c.suggestion}"?)`}`, () => {
      const option = c.option ?? c.key;
      assert.throws(c.build, (error: unknown) => {
        assert.ok(error instanceof (c.error ?? ConfigurationError), `expected ${(c.error ?? ConfigurationError).name}, got ${String(error)}`);
        const typed = error as Error & { code: string; details: { option: string } };
        assert.equal(typed.code, c.code ?? 'GOVMAP_INVALID_CONFIGURATION');
        assert.equal(typed.details.option, option);
        assert.match(typed.message, new RegExp(`"${option.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}": is not an option of ${c.owner.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
        if (c.suggestion === null) assert.doesNotMatch(typed.message, /did you mean/);
        else assert.match(typed.message, new RegExp(`did you mean "${c.suggestion}"\\?$`));
        return true;
      });
    });
  }

  test('the message reads as the project documents it', () => {
    assert.throws(
      () => new GovernedMap(loose({ name: 'balances', validate, maxkeys: 10_000 })),
      { message: 'invalid option "maxkeys": is not an option of GovernedMap; did you mean "maxKeys"?' },
    );
  });

  test('async factories refuse before connecting: openRedisGovernedMap, connectRedis', async () => {
    await assert.rejects(
      openRedisGovernedMap(loose({ name: 'balances', validate, codec: int64Codec, redis: { url: 'redis://127.0.0.1:1' }, nearcache: false })),
      (error: unknown) => error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && /"nearcache": is not an option of openRedisGovernedMap; did you mean "nearCache"\?/.test(error.message),
    );
    // `link` is the map's, built by the factory: not an option of the factory.
    await assert.rejects(openRedisGovernedMap(loose({ name: 'balances', validate, codec: int64Codec, redis: { url: 'redis://127.0.0.1:1' }, link: fakeLink() })), /"link": is not an option of openRedisGovernedMap/);
    await assert.rejects(
      connectRedis(loose({ url: 'redis://127.0.0.1:1', commandTimeout: 5 })),
      (error: unknown) => error instanceof ConfigurationError && /"redis\.commandTimeout": is not an option of the Redis connection/.test(error.message) && /did you mean "commandTimeoutMs"\?/.test(error.message),
    );
  });

  test('only own enumerable keys count; a known key set to undefined is fine', () => {
    const inherited = Object.create({ maxkeys: 10 }) as Record<string, unknown>;
    Object.assign(inherited, { name: 'balances', validate });
    new GovernedMap(loose(inherited)).dispose();
    const hidden = { name: 'balances', validate };
    Object.defineProperty(hidden, 'maxkeys', { value: 10, enumerable: false });
    new GovernedMap(loose(hidden)).dispose();
    new GovernedMap({ name: 'balances', validate, maxKeys: undefined, ttlMs: undefined }).dispose();
  });

  test('a key is named safely: control bytes escaped, length bounded', () => {
    const key = `\u0007${'x'.repeat(200)}`;
    assert.throws(() => new MapMetrics(loose({ [key]: 1 })), (error: unknown) => {
      const message = (error as Error).message;
      assert.ok(!message.includes('\u0007'));
      assert.ok(message.length < 200, message);
      return true;
    });
  });
});

describe('a valid full options object is still accepted', () => {
  test('GovernedMap with every option', () => {
    const map = new GovernedMap<string, bigint>({
      name: 'balances',
      validate,
      validateDelete: validate,
      store: new InProcessStore(),
      maxKeys: 10,
      onFull: 'evict-oldest',
      ttlMs: 1_000,
      windowMs: 60_000,
      updateRetries: 2,
      clock: Date.now,
      observers: [],
      freezeValues: false,
    });
    map.store('a', 1n);
    assert.equal(map.load('a'), 1n);
    map.dispose();
  });

  test('MapMetrics, SwitchBoard, Bulkhead, TokenBucket, BreakerGroup, SharedRecordStore', () => {
    new MapMetrics({ prefix: 'bank_', maxReasonSeries: 5 });
    const clock = new ManualClock(0);
    new SwitchBoard({ name: 'full', initial: {}, audit: { record: quiet }, log: quiet, clock: () => 0, replica: false });
    new Bulkhead({ name: 'b', maxConcurrent: 2, maxQueued: 1 });
    new TokenBucket({ ratePerSec: 5, burst: 5, clock: () => 0 });
    const group = new BreakerGroup({ name: 'routes', clock, timeoutMs: 100, windowMs: 1_000, minimumCalls: 5, maxBreakers: 10, idleEvictionMs: 60_000 });
    // The group passes each breaker only the breaker's own options: creating one must not trip the breaker's own check.
    assert.equal(group.get('org-1').state, 'CLOSED');
    group.dispose();
    const records = SharedRecordStore.create({ layout: { balance: 'int64' }, maxKeys: 16, maxThreads: 2 });
    records.set('a', { balance: 1n });
    assert.deepEqual(records.get('a'), { balance: 1n });
    records.close();
  });
});

describe('the suggestion', () => {
  const known = optionKeys<{ maxKeys?: number; ttlMs?: number; windowMs?: number; onFull?: string; name: string }>({
    maxKeys: true, ttlMs: true, windowMs: true, onFull: true, name: true,
  });

  test('case-insensitive equality wins over any distance', () => {
    assert.equal(closestOption('MAXKEYS', known), 'maxKeys');
    assert.equal(closestOption('onfull', known), 'onFull');
  });

  test('within two edits: insertion, deletion, substitution, transposition', () => {
    assert.equal(closestOption('maxKey', known), 'maxKeys');
    assert.equal(closestOption('maxKeyss', known), 'maxKeys');
    assert.equal(closestOption('ttlMz', known), 'ttlMs');
    assert.equal(closestOption('ttl', known), 'ttlMs');
    assert.equal(closestOption('windwoMs', known), 'windowMs');
    assert.equal(closestOption('nmae', known), 'name');
    assert.equal(closestOption('window', known), 'windowMs');
  });

  test('three edits or more, or a key shorter than its distance: no suggestion', () => {
    assert.equal(closestOption('bogus', known), undefined);
    assert.equal(closestOption('maxK', known), undefined);
    assert.equal(closestOption('x', known), undefined);
  });

  test('the edit distance', () => {
    assert.equal(editDistance('', ''), 0);
    assert.equal(editDistance('abc', 'abc'), 0);
    assert.equal(editDistance('abc', 'acb'), 1);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('kitten', 'sitting', 2), 2);
    assert.equal(editDistance('', 'abcd'), 4);
  });

  test('findUnknownOption names the first unknown own key, or nothing', () => {
    assert.equal(findUnknownOption({ name: 'a', maxKeys: 1, ttlMs: undefined }, known, 'X'), undefined);
    assert.deepEqual(findUnknownOption({ name: 'a', maxkeys: 1, other: 2 }, known, 'GovernedMap'), {
      option: 'maxkeys',
      rule: 'is not an option of GovernedMap; did you mean "maxKeys"?',
      suggestion: 'maxKeys',
    });
  });
});

describe('per-call options of a GovernedMap', () => {
  const map = new GovernedMap<string, bigint>({ name: 'per_call', validate: () => true });
  map.store('org-1001:a', 1n);
  map.store('org-2002:b', 2n);

  test('a misspelt range option is refused (a prefx walked every key instead of one org\'s); the right one still walks', () => {
    for (const walk of [() => map.entries({ prefx: 'org-1001:' } as never), () => map.range(() => true, { prefx: 'org-1001:' } as never)]) {
      assert.throws(walk, (e: any) => e.code === 'GOVMAP_INVALID_ARGUMENT' && e.details.argument === 'options.prefx' && /did you mean "prefix"\?/.test(e.message));
    }
    assert.deepEqual(map.entries({ prefix: 'org-1001:' }), [['org-1001:a', 1n]]);
  });

  test('a misspelt updateAsync option is refused before anything runs (a singal could not cancel it); the map is unchanged', async () => {
    let ran = false;
    await assert.rejects(
      map.updateAsync('org-1001:a', (v) => ((ran = true), v! + 1n), { singal: AbortSignal.abort() } as never),
      (e: any) => e.code === 'GOVMAP_INVALID_ARGUMENT' && e.details.argument === 'options.singal' && /did you mean "signal"\?/.test(e.message),
    );
    assert.equal(ran, false);
    assert.equal(map.load('org-1001:a'), 1n);
  });
});

describe('options that are not an object', () => {
  // From plain JavaScript, or a YAML key left empty (null): each reached the constructor's first
  // property read as a bare TypeError.
  const constructors: Array<[string, (options: unknown) => unknown]> = [
    ['MapMetrics', (o) => new MapMetrics(o as never)],
    ['SwitchBoard', (o) => new SwitchBoard(o as never)],
    ['SwitchMetrics', (o) => new SwitchMetrics(o as never)],
    ['FileSwitchSource', (o) => new FileSwitchSource(o as never)],
    ['StateSwitchSource', (o) => new StateSwitchSource(o as never)],
    ['WatchedFile', (o) => new WatchedFile(o as never)],
    ['Router', (o) => new Router(o as never)],
    ['RoutingMetrics', (o) => new RoutingMetrics(o as never)],
    ['AsyncLane', (o) => new AsyncLane(o as never)],
    ['Bulkhead', (o) => new Bulkhead(o as never)],
    ['TokenBucket', (o) => new TokenBucket(o as never)],
    ['FileRouteTableSource', (o) => new FileRouteTableSource(o as never)],
    ['StateRouteTableSource', (o) => new StateRouteTableSource(o as never)],
    ['BreakerGroup', (o) => new BreakerGroup(o as never)],
    ['BreakerMetrics', (o) => new BreakerMetrics(o as never)],
    ['Sandbox', (o) => new Sandbox(o as never)],
    ['Advisor', (o) => new Advisor(o as never)],
    ['FileStateStore', (o) => new FileStateStore(o as never)],
    ['EtcdStateStore', (o) => new EtcdStateStore(o as never)],
    ['SharedInt64Store.create', (o) => SharedInt64Store.create(o as never)],
    ['SharedRecordStore.create', (o) => SharedRecordStore.create(o as never)],
  ];
  for (const [owner, build] of constructors) {
    test(`${owner}(null) and ${owner}(5): ConfigurationError naming the options, not a TypeError`, () => {
      for (const bad of [null, 5]) {
        assert.throws(
          () => build(bad),
          (e: unknown) => e instanceof ConfigurationError && e.code === 'GOVMAP_INVALID_CONFIGURATION' && e.message.includes(`${owner} takes an options object`),
          `${owner}(${String(bad)})`,
        );
      }
    });
  }

  test('GovmapSwitchProvider without a board: ConfigurationError naming the board', () => {
    for (const bad of [null, undefined, {}]) {
      assert.throws(() => new GovmapSwitchProvider(bad as never), (e: unknown) => e instanceof ConfigurationError && e.details.option === 'board');
    }
  });
});
