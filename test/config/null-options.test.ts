import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CapacityExceededError, ConfigurationError, GovernedMap } from '../../src/map/index.ts';
import { NearCache } from '../../src/stores/redis/near-cache.ts';
import { RemoteGovernedMap, connectRedis, int64Codec } from '../../src/stores/redis/index.ts';
import { MapMetrics } from '../../src/metrics/index.ts';
import { FileSwitchSource, StateSwitchSource, SwitchBoard, WatchedFile } from '../../src/switches/index.ts';
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
import { GcMonitor, Sandbox, SiteCapture } from '../../src/sandbox/index.ts';
import { Advisor } from '../../src/advisor/index.ts';
import { EtcdStateStore, FileStateStore, MemoryStateStore, openStateStore } from '../../src/state/index.ts';
import { KafkaForwarder } from '../../src/audit/index.ts';
import { AuditConfigurationError } from '../../src/audit/errors.ts';

// Only `undefined` means "use the default". An option given as null (a YAML or JSON key left
// empty, a caller's `config.maxKeys ?? null`) is refused naming it: it must never quietly become
// the default, e.g. an unbounded map its owner believes is capped.

const validate = (): true => true;
const quiet = (): void => undefined;
const store = new MemoryStateStore();
const board = new SwitchBoard({ name: 'null_options' });
const router = new Router({ table: { default: { target: 'core' }, routes: [] }, log: quiet });
const directory = await mkdtemp(join(tmpdir(), 'govmap-null-options-'));
const closers: Array<() => unknown> = [];
after(async () => {
  for (const close of closers) await close();
  await router.close();
  await store.close();
  await rm(directory, { recursive: true, force: true });
});

/** Loosens the type so a null compiles, as it would in JavaScript or from a config file. */
function loose(options: Record<string, unknown>): never {
  return options as never;
}

/** Whatever was built is closed after the file: timers and watchers must not keep the test alive. */
function keep(built: unknown): void {
  const b = built as { dispose?: () => unknown; close?: () => unknown; stop?: () => unknown } | undefined;
  const close = b?.dispose ?? b?.close ?? b?.stop;
  if (typeof close === 'function') closers.push(() => close.call(b));
}

/** A RedisLink shape good enough for the constructor's checks (nothing is sent). */
function fakeLink(): unknown {
  return { get: () => Promise.resolve(null), listen: () => () => undefined };
}

interface Case {
  /** What is constructed. */
  readonly owner: string;
  /** The option as the error names it (`nearCache.maxEntries`, `kafka.topic`). */
  readonly option: string;
  readonly error?: new (...args: never[]) => Error;
  readonly code?: string;
  /** Builds with the option set to `value`: null must be refused, undefined must build. */
  readonly build: (value: null | undefined) => unknown;
}

const cases: readonly Case[] = [
  { owner: 'GovernedMap', option: 'maxKeys', build: (v) => new GovernedMap(loose({ name: 'balances', validate, maxKeys: v })) },
  { owner: 'GovernedMap', option: 'ttlMs', build: (v) => new GovernedMap(loose({ name: 'balances', validate, ttlMs: v })) },
  { owner: 'GovernedMap', option: 'observers', build: (v) => new GovernedMap(loose({ name: 'balances', validate, observers: v })) },
  { owner: 'RemoteGovernedMap', option: 'updateRetries', build: (v) => new RemoteGovernedMap(loose({ name: 'balances', validate, codec: int64Codec, link: fakeLink(), updateRetries: v })) },
  {
    owner: 'RemoteGovernedMap',
    option: 'nearCache.maxEntries',
    build: (v) => new RemoteGovernedMap(loose({ name: 'balances', validate, codec: int64Codec, link: fakeLink(), nearCache: { maxEntries: v } })),
  },
  {
    owner: 'RemoteGovernedMap',
    option: 'bounds.belowReason',
    build: (v) => new RemoteGovernedMap(loose({ name: 'balances', validate, codec: int64Codec, link: fakeLink(), bounds: { min: 0n, belowReason: v } })),
  },
  { owner: 'NearCache', option: 'staleReadMs', build: (v) => new NearCache(loose({ maxEntries: 1, staleReadMs: v, clock: Date.now })) },
  { owner: 'MapMetrics', option: 'prefix', build: (v) => new MapMetrics(loose({ prefix: v })) },
  { owner: 'SwitchBoard', option: 'replica', build: (v) => new SwitchBoard(loose({ name: 'b', replica: v })) },
  { owner: 'FileSwitchSource', option: 'pollMs', build: (v) => new FileSwitchSource(loose({ path: join(directory, 'switches.json'), board, pollMs: v })) },
  { owner: 'StateSwitchSource', option: 'prefix', build: (v) => new StateSwitchSource(loose({ store, board, prefix: v })) },
  { owner: 'SwitchMetrics', option: 'prefix', build: (v) => new SwitchMetrics(loose({ prefix: v })) },
  { owner: 'WatchedFile', option: 'debounceMs', build: (v) => new WatchedFile(loose({ path: 'x.json', role: 'test', apply: quiet, debounceMs: v })) },
  { owner: 'Router', option: 'unmatchedLogIntervalMs', build: (v) => new Router(loose({ table: { default: { target: 'core' }, routes: [] }, log: quiet, unmatchedLogIntervalMs: v })) },
  { owner: 'AsyncLane', option: 'maxQueued', build: (v) => new AsyncLane(loose({ name: 'lane', ratePerSec: 1, process: validate, maxQueued: v })) },
  // A required option: null was taken as the name; undefined here stands for a name given.
  { owner: 'Bulkhead', option: 'name', build: (v) => new Bulkhead(loose({ name: v === null ? null : 'b', maxConcurrent: 4, maxQueued: 0 })) },
  { owner: 'TokenBucket', option: 'burst', build: (v) => new TokenBucket(loose({ ratePerSec: 1, burst: v })) },
  { owner: 'RoutingMetrics', option: 'prefix', build: (v) => new RoutingMetrics(loose({ prefix: v })) },
  { owner: 'FileRouteTableSource', option: 'maxBytes', build: (v) => new FileRouteTableSource(loose({ path: join(directory, 'routes.json'), router, maxBytes: v })) },
  { owner: 'StateRouteTableSource', option: 'startTimeoutMs', build: (v) => new StateRouteTableSource(loose({ store, router, key: '/routes', startTimeoutMs: v })) },
  { owner: 'createBizTagMiddleware', option: 'exposeRoute', build: (v) => createBizTagMiddleware(loose({ router, exposeRoute: v })) },
  { owner: 'govmapBizTag', option: 'exposeRoute', build: (v) => govmapBizTag(loose({ router, exposeRoute: v })) },
  { owner: 'Sandbox', option: 'idleThresholdMs', build: (v) => new Sandbox(loose({ idleThresholdMs: v })) },
  { owner: 'GcMonitor', option: 'windowMs', build: (v) => new GcMonitor(loose({ windowMs: v })) },
  { owner: 'SiteCapture', option: 'frames', build: (v) => new SiteCapture(loose({ frames: v })) },
  { owner: 'Advisor', option: 'windowMs', build: (v) => new Advisor(loose({ windowMs: v })) },
  { owner: 'FileStateStore', option: 'pollIntervalMs', build: (v) => new FileStateStore(loose({ directory, pollIntervalMs: v })) },
  { owner: 'openStateStore({ kind: "file" })', option: 'pollIntervalMs', build: (v) => openStateStore(loose({ kind: 'file', directory, pollIntervalMs: v })) },
  { owner: 'EtcdStateStore', option: 'client', build: (v) => new EtcdStateStore(loose({ endpoints: ['http://127.0.0.1:1'], client: v })) },
  {
    owner: 'KafkaForwarder',
    option: 'kafka.topic',
    error: AuditConfigurationError,
    code: 'GOVMAP_AUDIT_INVALID_CONFIGURATION',
    build: (v) => new KafkaForwarder(loose({ dir: directory, brokers: ['localhost:9092'], topic: v })),
  },
];

describe('every public constructor refuses an option given as null, naming it; undefined still means the default', () => {
  for (const c of cases) {
    test(`${c.owner}: ${c.option}: null is refused, undefined takes the default`, () => {
      assert.throws(() => keep(c.build(null)), (error: unknown) => {
        assert.ok(error instanceof (c.error ?? ConfigurationError), `expected ${(c.error ?? ConfigurationError).name}, got ${String(error)}`);
        const typed = error as Error & { code: string; details: { option: string } };
        assert.equal(typed.code, c.code ?? 'GOVMAP_INVALID_CONFIGURATION');
        assert.equal(typed.details.option, c.option);
        assert.match(typed.message, /: null is not a value of this option; leave it out \(or undefined\) for its default \(received null\)$/);
        return true;
      });
      keep(c.build(undefined));
    });
  }

  test('the message reads as the project documents it', () => {
    assert.throws(
      () => new GovernedMap(loose({ name: 'balances', validate, maxKeys: null })),
      { message: 'invalid option "maxKeys": null is not a value of this option; leave it out (or undefined) for its default (received null)' },
    );
  });

  test('a GovernedMap configured `maxKeys: config.maxKeys ?? null` is refused, not unbounded; with the bound given it is capped', () => {
    const config: { maxKeys?: number } = {};
    assert.throws(() => new GovernedMap(loose({ name: 'limits', validate, maxKeys: config.maxKeys ?? null })), (e: unknown) => e instanceof ConfigurationError && e.details.option === 'maxKeys');
    const capped = new GovernedMap<string, bigint>({ name: 'limits', validate, maxKeys: 1 });
    capped.store('org-1', 1n);
    assert.throws(() => capped.store('org-2', 1n), CapacityExceededError);
    capped.dispose();
  });

  test('connectRedis refuses a null connection option before connecting', async () => {
    await assert.rejects(
      connectRedis(loose({ url: 'redis://127.0.0.1:1', commandTimeoutMs: null })),
      (e: unknown) => e instanceof ConfigurationError && e.details.option === 'redis.commandTimeoutMs' && /null is not a value of this option/.test(e.message),
    );
  });

  test('options whose type includes null keep it: the Advisor\'s gc and stateStore (none), the Kafka forwarder\'s key (no HMAC)', () => {
    const advisor = new Advisor({ gc: null, stateStore: null });
    assert.equal(advisor.gc, null);
    assert.equal(advisor.stateStore, null);
    assert.doesNotThrow(() => new KafkaForwarder({ dir: directory, brokers: ['localhost:9092'], key: null }));
  });
});
