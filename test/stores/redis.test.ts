import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { RESP_TYPES, createClient } from 'redis';
import { AsyncRangeCallbackError, ConfigurationError, InvalidArgumentError, MapMetrics, ObserverFlushError, UpdateConflictError, ValidationError, reject } from '../../src/index.ts';
import type { MapObserver } from '../../src/index.ts';
import {
  BOUNDED_ADD,
  INT64_MAX,
  INT64_MIN,
  RedisUnavailableError,
  RedisValueCorruptError,
  RemoteGovernedMap,
  Status,
  connectRedis,
  int64Codec,
  stringCodec,
} from '../../src/stores/redis/index.ts';
import type { RedisLink, RemoteGovernedMapOptions } from '../../src/stores/redis/index.ts';
import { freePort, required, service, uniquePrefix } from './redis-env.ts';

const redis = service('GOVMAP_REDIS_URL');

describe('RemoteGovernedMap on a real Redis', { skip: redis.skip }, () => {
  let link: RedisLink;
  let raw: ReturnType<typeof createClient>;
  const prefixes: string[] = [];

  before(async () => {
    const url = required(redis, 'GOVMAP_REDIS_URL');
    link = await connectRedis({ url });
    raw = createClient({ url });
    await raw.connect();
  });

  after(async () => {
    for (const prefix of prefixes) {
      for await (const keys of raw.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) if (keys.length > 0) await raw.del(keys);
    }
    await raw?.close();
    await link?.close();
  });

  function balances(label: string, extra: Partial<RemoteGovernedMapOptions<bigint>> = {}): RemoteGovernedMap<bigint> {
    const keyPrefix = uniquePrefix(label);
    prefixes.push(keyPrefix);
    return new RemoteGovernedMap<bigint>({
      name: 'balances',
      link,
      keyPrefix,
      codec: int64Codec,
      validate: (_id, next) => (next >= 0n ? true : reject('BALANCE_UNDERFLOW', 'a balance is never negative')),
      validateDelete: (_id, previous) => (previous === 0n ? true : 'ACCOUNT_NOT_EMPTY'),
      bounds: { min: 0n, belowReason: 'BALANCE_UNDERFLOW' },
      sizeRefreshMs: 0,
      ...extra,
    });
  }

  async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<number> {
    const started = performance.now();
    while (!condition()) {
      if (performance.now() - started > timeoutMs) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    return performance.now() - started;
  }

  test('one Redis string per entry under the prefix, money as a decimal string', async () => {
    const map = balances('layout');
    await map.store('acct-1', 1050n);
    await map.store('acct-2', 9_223_372_036_854_775_807n);
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '1050');
    assert.equal(await raw.get(`${map.keyPrefix}acct-2`), '9223372036854775807');
    assert.equal(await raw.type(`${map.keyPrefix}acct-1`), 'string');
    assert.equal(await map.load('acct-2'), INT64_MAX);
    assert.equal(await map.refreshSize(), 2);
    assert.equal(map.size, 2);
    assert.equal(map.storeKind, 'redis');
    await map.dispose();
  });

  test('a write the validator refuses changes nothing in Redis and names its reason', async () => {
    const map = balances('refusal');
    await map.store('acct-1', 100n);
    await assert.rejects(map.store('acct-1', -1n), (error: unknown) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.reason, 'BALANCE_UNDERFLOW');
      assert.match(error.message, /acct-1/);
      return true;
    });
    await assert.rejects(map.update('acct-1', (b) => b! - 101n), { code: 'GOVMAP_VALIDATION_REJECTED' });
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '100');
    await assert.rejects(map.store('acct-1', 5 as unknown as bigint), (error: unknown) => error instanceof InvalidArgumentError && /bigint/.test(error.message));
    await assert.rejects(map.store('', 5n), InvalidArgumentError);
    await assert.rejects(map.store('acct-1', INT64_MAX + 1n), /int64|64-bit/);
    assert.equal(map.counters.storesRejected, 2);
    assert.deepEqual(map.stats().rejectionsByReason, { BALANCE_UNDERFLOW: 2 });
    await map.dispose();
  });

  test('update is a compare-and-set: another machine writing between our read and our write is not lost', async () => {
    const map = balances('cas');
    await map.store('acct-1', 100n);
    let calls = 0;
    const result = await map.update('acct-1', async (balance) => {
      calls++;
      // Another machine credits 7 after we read: our compare-and-set must fail and re-run us.
      if (calls === 1) await raw.incrBy(`${map.keyPrefix}acct-1`, 7);
      return balance! + 10n;
    });
    assert.equal(calls, 2);
    assert.equal(result, 117n);
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '117');
    assert.equal(map.counters.casConflicts, 1);
    await map.dispose();
  });

  test('past updateRetries an update gives up with UpdateConflictError and writes nothing', async () => {
    const map = balances('conflict', { updateRetries: 2, retryBackoffMaxMs: 0 });
    await map.store('acct-1', 100n);
    let calls = 0;
    await assert.rejects(
      map.update('acct-1', async (balance) => {
        calls++;
        await raw.incrBy(`${map.keyPrefix}acct-1`, 1);
        return balance! + 1000n;
      }),
      (error: unknown) => {
        assert.ok(error instanceof UpdateConflictError);
        assert.equal(error.details.attempts, 3);
        return true;
      },
    );
    assert.equal(calls, 3, '1 + updateRetries attempts');
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '103', 'only the other machine\'s writes landed');
    await map.dispose();
  });

  test('a write that gives up with UpdateConflictError is audited as a failed attempt (error UPDATE_CONFLICT, with its value) and counted', async () => {
    // Another machine writes the key just before each of our compare-and-set scripts reaches Redis.
    let meddle = false;
    const contended: RedisLink = {
      kind: link.kind,
      get healthy() {
        return link.healthy;
      },
      get: (key) => link.get(key),
      runScript: async (script, key, args) => {
        if (meddle) await raw.incrBy(key, 1);
        return link.runScript(script, key, args);
      },
      scan: (match, batch) => link.scan(match, batch),
      close: async () => undefined,
      listen: (listener) => link.listen(listener),
    };
    const events: string[] = [];
    const observer: MapObserver<string> = { onOperation: (_map, op, key, outcome, reason, _bounds, value) => void (outcome === 'error' && events.push(`${op} ${key ?? '-'} ${outcome} ${reason ?? '-'} ${String(value)}`)) };
    const map = balances('conflict-audit', { link: contended, updateRetries: 1, retryBackoffMaxMs: 0, validateDelete: () => true, observers: [observer] });
    await map.store('acct-1', 100n);
    meddle = true;
    const conflict = (error: unknown): boolean => error instanceof UpdateConflictError && error.code === 'GOVMAP_UPDATE_CONFLICT';
    await assert.rejects(map.store('acct-1', 500n), conflict);
    await assert.rejects(map.update('acct-1', (balance) => balance! - 10n), conflict);
    await assert.rejects(map.delete('acct-1'), conflict);
    meddle = false;
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '106', 'only the other machine\'s writes landed');
    assert.deepEqual(events, [
      'STORE acct-1 error UPDATE_CONFLICT 500',
      'STORE acct-1 error UPDATE_CONFLICT 93',
      'DELETE acct-1 error UPDATE_CONFLICT 105',
    ]);
    const stats = map.stats();
    assert.equal(stats.stores.error, 2);
    assert.equal(stats.deletes.rejected, 1);
    assert.equal(stats.casConflicts, 6);
    assert.deepEqual(stats.rejectionsByReason, { UPDATE_CONFLICT: 3 });
    await map.dispose();
  });

  test('a write of the key from inside its own update (UpdateReentrantError) is audited as a failed attempt (error REENTRANT_WRITE) and counted, as GovernedMap counts it', async () => {
    const events: string[] = [];
    const observer: MapObserver<string> = { onOperation: (_map, op, key, outcome, reason, _bounds, value) => void (outcome === 'error' && events.push(`${op} ${key ?? '-'} ${outcome} ${reason ?? '-'} ${String(value)}`)) };
    const map = balances('reentrant-audit', { validateDelete: () => true, observers: [observer] });
    await map.store('acct-1', 100n);
    const reentrant = { code: 'GOVMAP_UPDATE_REENTRANT' };
    assert.equal(await map.update('acct-1', async (balance) => {
      await assert.rejects(map.update('acct-1', (v) => v! + 1n), reentrant);
      await assert.rejects(map.store('acct-1', 9n), reentrant);
      await assert.rejects(map.compareAndSwap('acct-1', balance, 8n), reentrant);
      await assert.rejects(map.delete('acct-1'), reentrant);
      return balance! + 5n;
    }), 105n);
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '105', 'none of the refused writes landed');
    assert.deepEqual(events, [
      'STORE acct-1 error REENTRANT_WRITE undefined',
      'STORE acct-1 error REENTRANT_WRITE 9',
      'STORE acct-1 error REENTRANT_WRITE 8',
      'DELETE acct-1 error REENTRANT_WRITE undefined',
    ]);
    const stats = map.stats();
    assert.deepEqual(stats.stores, { ok: 2, rejected: 0, error: 3 });
    assert.deepEqual(stats.deletes, { ok: 0, miss: 0, rejected: 1 });
    assert.deepEqual(stats.rejectionsByReason, { REENTRANT_WRITE: 4 });
    await map.dispose();
  });

  test('add never crosses the bound, with 60 debits racing over three connections', async () => {
    const links = [link, await connectRedis({ url: required(redis, 'GOVMAP_REDIS_URL') }), await connectRedis({ url: required(redis, 'GOVMAP_REDIS_URL') })];
    const first = balances('bounded');
    const maps = links.map((l) => new RemoteGovernedMap<bigint>({ name: 'balances', link: l, keyPrefix: first.keyPrefix, codec: int64Codec, validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW'), bounds: { min: 0n, belowReason: 'BALANCE_UNDERFLOW' }, sizeRefreshMs: 0 }));
    await first.store('acct-1', 1000n);
    const outcomes = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => maps[i % 3]!.add('acct-1', -30n)));
    const ok = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o) => o.status === 'rejected');
    assert.equal(ok.length, 33, '1000 / 30 = 33 debits fit');
    for (const r of refused) assert.ok(r.reason instanceof ValidationError && r.reason.reason === 'BALANCE_UNDERFLOW', String(r.reason));
    assert.equal(await raw.get(`${first.keyPrefix}acct-1`), '10');
    const results = ok.map((o) => o.value!).sort((x, y) => (x < y ? -1 : 1));
    assert.deepEqual(results, Array.from({ length: 33 }, (_, i) => 10n + 30n * BigInt(i)), 'each debit saw a distinct balance: none was lost or doubled');
    assert.equal(await first.add('missing', 5n), undefined, 'add of an absent key writes nothing');
    assert.equal(await raw.exists(`${first.keyPrefix}missing`), 0);
    for (const m of [first, ...maps]) await m.dispose();
    await links[1]!.close();
    await links[2]!.close();
  });

  test('the bounded-add Lua script agrees with bigint arithmetic at the int64 edges', async () => {
    const key = `${uniquePrefix('lua')}k`;
    prefixes.push(key);
    const int64 = fc.oneof(fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), fc.constantFrom(INT64_MIN, INT64_MAX, 0n, -1n, 1n, 9_007_199_254_740_993n), fc.bigInt({ min: -1000n, max: 1000n }));
    await fc.assert(
      fc.asyncProperty(int64, int64, int64, int64, async (current, delta, a, b) => {
        const [min, max] = a <= b ? [a, b] : [b, a];
        await raw.set(key, current.toString());
        const reply = (await link.runScript(BOUNDED_ADD, key, [(min - delta).toString(), (max - delta).toString(), delta.toString()])) as [number, string?];
        const next = current + delta;
        const expected = next < min ? Status.BELOW_MIN : next > max ? Status.ABOVE_MAX : Status.APPLIED;
        assert.equal(reply[0], expected, `${current} + ${delta} within [${min}, ${max}]`);
        assert.equal(reply[1], current.toString());
        assert.equal(await raw.get(key), (expected === Status.APPLIED ? next : current).toString());
      }),
      { numRuns: 300 },
    );
    for (const junk of ['007', '-0', '1.5', ' 1', '+1', '9223372036854775808', '-9223372036854775809', 'abc', '']) {
      await raw.set(key, junk);
      const reply = (await link.runScript(BOUNDED_ADD, key, ['-10', '10', '1'])) as [number, string?];
      assert.equal(reply[0], Status.NOT_INT64, `"${junk}" is not a canonical int64`);
      assert.equal(await raw.get(key), junk, 'left untouched');
    }
  });

  test('near cache: the second load stays in process; a write by another client arrives as an invalidation', async (t) => {
    const invalidated: Array<string | null> = [];
    const map = balances('near', { onNearInvalidated: (key) => invalidated.push(key) });
    await raw.set(`${map.keyPrefix}acct-1`, '500');
    assert.equal(map.loadCached('acct-1'), undefined, 'nothing cached before the first load');
    assert.equal(await map.load('acct-1'), 500n);
    assert.equal(map.loadCached('acct-1'), 500n);
    assert.equal(await map.load('acct-1'), 500n);
    assert.deepEqual([map.counters.remoteLoads, map.counters.loads, map.counters.misses, map.stats().near.hits], [1, 3, 1, 2]);

    const written = performance.now();
    await raw.set(`${map.keyPrefix}acct-1`, '480');
    const delay = await until(() => map.loadCached('acct-1') === undefined, 'the invalidation');
    t.diagnostic(`invalidation observed ${(performance.now() - written).toFixed(2)} ms after the other client's SET was sent (${delay.toFixed(2)} ms after its reply)`);
    assert.deepEqual(invalidated, ['acct-1']);
    assert.equal(await map.load('acct-1'), 480n);

    // Absence is cached (and tracked) too: a later insert by someone else invalidates it.
    assert.equal(await map.load('acct-2'), undefined);
    const remote = map.counters.remoteLoads;
    assert.equal(await map.load('acct-2'), undefined);
    assert.equal(map.counters.remoteLoads, remote, 'the absent key was answered from the near cache');
    await raw.set(`${map.keyPrefix}acct-2`, '1');
    await until(() => invalidated.includes('acct-2'), 'the invalidation of the absent key');
    assert.equal(await map.load('acct-2'), 1n);
    await map.dispose();
  });

  test('an onNearInvalidated callback that throws neither kills the shared link nor keeps another map\'s stale entry', async () => {
    // A link of its own: the failure before the fix left the link down for good.
    const own = await connectRedis({ url: required(redis, 'GOVMAP_REDIS_URL') });
    try {
      const keyPrefix = uniquePrefix('throwing-callback');
      prefixes.push(keyPrefix);
      const options = { name: 'balances', link: own, keyPrefix, codec: int64Codec, validate: () => true as const, sizeRefreshMs: 0 };
      const careless = new RemoteGovernedMap<bigint>({ ...options, onNearInvalidated: () => { throw new Error('bug in a metrics hook'); } });
      const other = new RemoteGovernedMap<bigint>(options);
      await raw.set(`${keyPrefix}acct-1`, '500');
      assert.equal(await careless.load('acct-1'), 500n);
      assert.equal(await other.load('acct-1'), 500n);
      await raw.set(`${keyPrefix}acct-1`, '480');
      await until(() => other.loadCached('acct-1') === undefined, 'the invalidation reaching the second map');
      assert.equal(careless.loadCached('acct-1'), undefined);
      assert.equal(own.healthy, true, 'the link stays up');
      assert.equal(await other.load('acct-1'), 480n);
      assert.equal(await careless.load('acct-1'), 480n);
      await careless.dispose();
      await other.dispose();
    } finally {
      await own.close();
    }
  });

  test('two maps named "bal" and "bal:x" do not share keys: a default prefix inside another map\'s is refused', async () => {
    const name = `bal_${process.pid}_${Date.now().toString(36)}`;
    prefixes.push(`govmap:${name}:`);
    const options = { link, codec: int64Codec, validate: () => true as const, sizeRefreshMs: 0 };
    const bal = new RemoteGovernedMap<bigint>({ ...options, name });
    // Before: "bal:x" wrote govmap:bal:x:acct-1, which map "bal" walked (and summed, and could
    // delete) as its own entry "x:acct-1".
    assert.throws(
      () => new RemoteGovernedMap<bigint>({ ...options, name: `${name}:x` }),
      (error: unknown) => error instanceof ConfigurationError && /"keyPrefix"/.test(error.message) && error.message.includes(`map "${name}"`),
    );
    const keyPrefix = uniquePrefix('bal-x');
    prefixes.push(keyPrefix);
    const balX = new RemoteGovernedMap<bigint>({ ...options, name: `${name}:x`, keyPrefix });
    await balX.store('acct-1', 100n);
    assert.deepEqual(await bal.entries(), []);
    await bal.dispose();
    await balX.dispose();
  });

  /** `link` as a machine on a slow path sees it: every invalidation arrives `ms` late. */
  function hearingInvalidationsLate(link: RedisLink, ms: number): RedisLink {
    return {
      kind: link.kind,
      get healthy() {
        return link.healthy;
      },
      get: (key) => link.get(key),
      runScript: (script, key, args) => link.runScript(script, key, args),
      scan: (match, batch) => link.scan(match, batch),
      close: async () => undefined,
      listen: (listener) =>
        link.listen({
          invalidated: (key) => void setTimeout(() => listener.invalidated(key), ms),
          down: (since) => listener.down(since),
          up: () => listener.up(),
        }),
    };
  }

  test('a write that would end on the near cache alone asks Redis: another machine\'s acknowledged write is not missed', async () => {
    // Machine A hears invalidations 300 ms late (a slow path; on loopback it is ~0.4 ms, but the
    // window exists on every network). B's insert is acknowledged before A's delete and add start:
    // they must see it, as a compare-and-delete and a bounded add on the Redis value would.
    const slow = hearingInvalidationsLate(link, 300);
    const a = balances('near-write', { link: slow });
    const b = new RemoteGovernedMap<bigint>({ name: 'balances', link, keyPrefix: a.keyPrefix, codec: int64Codec, validate: () => true, bounds: { min: 0n }, sizeRefreshMs: 0 });
    assert.equal(await a.load('acct-1'), undefined);
    assert.equal(await a.load('acct-2'), undefined);
    await b.store('acct-1', 0n);
    await b.store('acct-2', 10n);
    assert.equal(await a.delete('acct-1'), true, 'the entry B created is deleted, not reported absent');
    assert.equal(await raw.get(`${a.keyPrefix}acct-1`), null);
    assert.equal(await a.add('acct-2', 5n), 15n, 'the add applies to the entry B created');
    assert.equal(await raw.get(`${a.keyPrefix}acct-2`), '15');
    await new Promise((resolve) => setTimeout(resolve, 350)); // let the late invalidations land before dispose
    await a.dispose();
    await b.dispose();
  });

  test('loadOrStore does not answer "loaded" from the near cache alone: an entry another machine deleted is stored again', async () => {
    // As above: A hears invalidations late. B's delete is acknowledged before A's loadOrStore
    // starts; answering { loaded: true } from A's near cache would store nothing and leave the
    // caller sure the key holds a value that is gone (an idempotency key "already claimed").
    const slow = hearingInvalidationsLate(link, 300);
    const a = balances('near-load-or-store', { link: slow });
    const b = new RemoteGovernedMap<bigint>({ name: 'balances', link, keyPrefix: a.keyPrefix, codec: int64Codec, validate: () => true, bounds: { min: 0n }, sizeRefreshMs: 0 });
    await b.store('acct-1', 0n);
    assert.equal(await a.load('acct-1'), 0n); // in A's near cache
    assert.equal(await b.delete('acct-1'), true);
    assert.deepEqual(await a.loadOrStore('acct-1', 5n), { value: 5n, loaded: false });
    assert.equal(await raw.get(`${a.keyPrefix}acct-1`), '5');
    await new Promise((resolve) => setTimeout(resolve, 350)); // let the late invalidations land before dispose
    await a.dispose();
    await b.dispose();
  });

  test('an observer flush failing after the write says the write is applied (ObserverFlushError), as updateAsync does', async () => {
    let failing = false;
    const map = balances('flush', {
      observers: [
        {
          onOperation: () => undefined,
          flush: async () => {
            if (failing) throw new Error('sink unreachable');
          },
        },
      ],
    });
    await map.store('acct-1', 100n);
    failing = true;
    const applied = (error: unknown): boolean => {
      assert.ok(error instanceof ObserverFlushError, `expected ObserverFlushError, got ${String(error)}`);
      assert.equal(error.code, 'GOVMAP_OBSERVER_FLUSH_FAILED');
      assert.equal(error.details.applied, true);
      return true;
    };
    // Each of these is in Redis: a caller reading a bare Error (or AUDIT_STOPPED) as "refused"
    // and retrying would apply the add twice.
    await assert.rejects(map.add('acct-1', 5n), applied);
    await assert.rejects(map.update('acct-1', (v) => v! + 1n), applied);
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '106');
    // The message names the operation the caller made (not GovernedMap's updateAsync).
    await assert.rejects(map.add('acct-1', 1n), (error: unknown) => applied(error) && /^map "balances": add of key "acct-1" was applied/.test((error as Error).message));
    await assert.rejects(map.store('acct-1', 107n), (error: unknown) => applied(error) && /: store of key "acct-1" was applied.*do not retry it/.test((error as Error).message));
    // A refusal stays a refusal: its flush failure is the audit's to report.
    await assert.rejects(map.add('acct-1', -1000n), ValidationError);
    await map.dispose();
  });

  test('an observer removed while the write was out (an audit recorder stopped meanwhile) is still asked to flush: the caller hears the write is not durable', async () => {
    const removedFlushFails = { onOperation: () => undefined, flush: async () => Promise.reject(new Error('recorder stopped')) };
    const map = balances('removed-observer');
    await map.store('acct-1', 100n);
    const detach = map.observe(removedFlushFails);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const pending = map.update('acct-1', async (v) => {
      await gate;
      return v! - 30n;
    });
    // What a recorder's stop() does to its maps while the update awaits.
    detach();
    release();
    await assert.rejects(pending, (error: unknown) => error instanceof ObserverFlushError && error.details.applied === true);
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '70', 'the write was applied');
    await map.dispose();
  });

  test('our own writes are read back at once (read-your-writes), not from a stale near-cache entry', async () => {
    const map = balances('ryw');
    await map.store('acct-1', 10n);
    for (let i = 1n; i <= 20n; i++) {
      assert.equal(await map.load('acct-1'), 10n + (i - 1n) * 5n);
      await map.add('acct-1', 5n);
    }
    assert.equal(await map.load('acct-1'), 110n);
    await map.dispose();
  });

  test('metrics: MapMetrics tracks the remote map unchanged; the miss ratio counts near-cache misses', async () => {
    const map = balances('metrics');
    const metrics = new MapMetrics().track(map);
    await map.store('acct-1', 1n);
    for (let i = 0; i < 9; i++) await map.load('acct-1'); // 1 round trip, then 8 near hits
    const text = await metrics.render();
    assert.match(text, /syncmap_load_total\{map="balances"\} 9/);
    assert.match(text, /syncmap_miss_total\{map="balances"\} 1/);
    assert.match(text, /syncmap_miss_ratio\{map="balances"\} 0\.111/);
    assert.match(text, /syncmap_store_total\{map="balances",outcome="ok"\} 1/);
    await map.dispose();
    assert.doesNotMatch(await metrics.render(), /syncmap_load_total\{map="balances"\}/, 'a disposed map drops out');
  });

  test('observers (audit) see LOAD, STORE, DELETE and RANGE with outcomes and values', async () => {
    const events: string[] = [];
    let flushed = 0;
    const observer: MapObserver<string> = {
      onOperation: (_map, op, key, outcome, reason, bounds, value) => events.push(`${op} ${key ?? '-'} ${outcome} ${reason ?? '-'} ${bounds === null ? '-' : JSON.stringify(bounds)} ${String(value)}`),
      flush: async () => {
        flushed++;
      },
    };
    const map = balances('audit', { observers: [observer] });
    await map.store('acct-1', 5n);
    await map.load('acct-1');
    await assert.rejects(map.add('acct-1', -6n), ValidationError);
    await map.add('acct-1', -5n);
    await map.range(() => undefined, { prefix: 'acct-' });
    await map.delete('acct-1');
    await map.delete('acct-1');
    assert.deepEqual(events, [
      'STORE acct-1 ok - - 5',
      'LOAD acct-1 ok - - undefined',
      'STORE acct-1 rejected BALANCE_UNDERFLOW - -1',
      'STORE acct-1 ok - - 0',
      'RANGE - ok - {"start":null,"end":null,"inclusive":false,"prefix":"acct-"} undefined',
      'DELETE acct-1 ok - - 0',
      'DELETE acct-1 miss - - undefined',
    ]);
    assert.equal(flushed, 5, 'every write (applied or refused) waited for the observers to flush');
    await map.dispose();
  });

  test('observers (audit) see a compare-and-swap that did not match as a STORE miss, and an update that changed nothing as a LOAD', async () => {
    const events: string[] = [];
    const observer: MapObserver<string> = { onOperation: (_map, op, key, outcome, reason, _bounds, value) => events.push(`${op} ${key ?? '-'} ${outcome} ${reason ?? '-'} ${String(value)}`) };
    const map = balances('audit-attempts', { observers: [observer] });
    await map.store('acct-1', 5n);
    assert.equal(await map.compareAndSwap('acct-1', 4n, 9n), false);
    assert.equal(await map.update('acct-1', (v) => v!), 5n);
    assert.equal(await map.add('acct-1', 0n), 5n);
    assert.deepEqual(events, ['STORE acct-1 ok - 5', 'STORE acct-1 miss CAS_MISMATCH 9', 'LOAD acct-1 ok UPDATE_UNCHANGED undefined', 'LOAD acct-1 ok UPDATE_UNCHANGED undefined']);
    await map.dispose();
  });

  test('range visits every entry under the prefix; bounded walks are sorted; callbacks stay synchronous', async () => {
    const map = balances('range');
    const other = balances('range-other');
    await other.store('acct-x', 1n);
    await Promise.all(Array.from({ length: 25 }, (_, i) => map.store(`acct-${String(i).padStart(3, '0')}`, BigInt(i))));
    await map.store('zz*[odd]?', 99n); // glob characters in a key are data
    const all = await map.entries();
    assert.equal(all.length, 26);
    const page = await map.entries({ start: 'acct-005', end: 'acct-010' });
    assert.deepEqual(page.map(([k]) => k), ['acct-005', 'acct-006', 'acct-007', 'acct-008', 'acct-009']);
    assert.deepEqual(await map.entries({ prefix: 'zz*' }), [['zz*[odd]?', 99n]]);
    const result = await map.range((_k, v) => v < 3n, { prefix: 'acct-' });
    assert.deepEqual(result, { visited: 4, stopped: true });
    await assert.rejects(map.range((async () => undefined) as unknown as () => void), AsyncRangeCallbackError);
    assert.equal(map.counters.ranges, 5);
    await map.dispose();
    await other.dispose();
  });

  test('range options of the wrong kind get a typed error, as on GovernedMap, not a TypeError or a silently empty walk', async () => {
    const map = balances('range-options');
    await map.store('acct-1', 1n);
    const refused = (argument: string) => (error: unknown) => error instanceof InvalidArgumentError && error.code === 'GOVMAP_INVALID_ARGUMENT' && error.message.includes(`"${argument}"`);
    await assert.rejects(map.entries(null as unknown as object), refused('options'));
    await assert.rejects(map.entries('acct' as unknown as object), refused('options'));
    await assert.rejects(map.entries({ end: null as unknown as string }), refused('options.end'));
    await assert.rejects(map.entries({ start: Number.NaN as unknown as string }), refused('options.start'));
    await assert.rejects(map.entries({ start: {} as unknown as string }), refused('options.start'));
    assert.deepEqual(await map.entries({ start: 'acct-' }), [['acct-1', 1n]]);
    await map.dispose();
  });

  test('delete passes validateDelete; loadAndDelete returns the removed value; compareAndSwap and loadOrStore', async () => {
    const map = balances('lifecycle');
    await map.store('acct-1', 7n);
    await assert.rejects(map.delete('acct-1'), (error: unknown) => error instanceof ValidationError && error.reason === 'ACCOUNT_NOT_EMPTY');
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '7');
    assert.equal(await map.compareAndSwap('acct-1', 8n, 0n), false);
    assert.equal(await map.compareAndSwap('acct-1', 7n, 0n), true);
    assert.equal(await map.loadAndDelete('acct-1'), 0n);
    assert.equal(await raw.exists(`${map.keyPrefix}acct-1`), 0);
    assert.equal(await map.delete('acct-1'), false);
    assert.deepEqual(await map.loadOrStore('acct-2', 3n), { value: 3n, loaded: false });
    assert.deepEqual(await map.loadOrStore('acct-2', 4n), { value: 3n, loaded: true });
    assert.equal(await map.compareAndSwap('acct-3', undefined, 1n), true);
    assert.equal(await map.compareAndSwap('acct-3', undefined, 2n), false);
    await map.dispose();
  });

  test('a value another program wrote that the codec refuses is reported, never guessed at', async () => {
    const map = balances('corrupt');
    await raw.set(`${map.keyPrefix}acct-1`, '12.50');
    await assert.rejects(map.load('acct-1'), (error: unknown) => error instanceof RedisValueCorruptError && error.code === 'GOVMAP_REDIS_VALUE_CORRUPT' && /12\.50/.test(error.message));
    await assert.rejects(map.add('acct-1', 1n), RedisValueCorruptError);
    await raw.rPush(`${map.keyPrefix}acct-2`, 'x');
    await assert.rejects(map.load('acct-2'), RedisValueCorruptError);
    await assert.rejects(map.update('acct-2', () => 1n), RedisValueCorruptError);
    assert.equal(await raw.get(`${map.keyPrefix}acct-1`), '12.50', 'left untouched');
    await map.dispose();
  });

  test('range over an entry of another Redis type names that key, and the audit says corrupt, not unavailable', async () => {
    const events: Array<[string, string | null]> = [];
    const map = balances('range-wrongtype', { observers: [{ onOperation: (_map, op, _key, outcome, reason) => void (op === 'RANGE' && events.push([outcome, reason])) }] });
    await map.store('acct-1', 5n);
    await raw.hSet(`${map.keyPrefix}acct-hash`, { balance: '7' });
    await assert.rejects(
      map.entries(),
      (error: unknown) =>
        error instanceof RedisValueCorruptError && error.message.includes(`"${map.keyPrefix}acct-hash"`) && error.message.includes('(entry "acct-hash")') && /Redis type other than a string/.test(error.message),
    );
    assert.deepEqual(events, [['error', 'REDIS_VALUE_CORRUPT']]);
    await map.dispose();
  });

  test('strings round-trip with stringCodec; configuration mistakes are named', async () => {
    const keyPrefix = uniquePrefix('strings');
    prefixes.push(keyPrefix);
    const names = new RemoteGovernedMap<string>({ name: 'names', link, keyPrefix, codec: stringCodec, validate: (_k, v) => (v.length > 0 ? true : 'EMPTY'), sizeRefreshMs: 0 });
    await names.store('k', 'Zoë ✓');
    assert.equal(await names.load('k'), 'Zoë ✓');
    await assert.rejects(names.add('k', 1n), (error: unknown) => error instanceof ConfigurationError && /bounds/.test(error.message));
    await names.dispose();
    const base = { name: 'x', link, codec: int64Codec, validate: () => true as const };
    assert.throws(() => new RemoteGovernedMap<bigint>({ ...base, keyPrefix: 'acct:{pinned}:' }), /hash tag/);
    assert.throws(() => new RemoteGovernedMap<string>({ ...base, codec: stringCodec, bounds: { min: 0n } }), /int64Codec/);
    assert.throws(() => new RemoteGovernedMap<bigint>({ ...base, validate: undefined as never }), /validator/);
    assert.throws(() => new RemoteGovernedMap<bigint>({ ...base, nearCache: { staleReadMs: -1 } }), /staleReadMs/);
    await assert.rejects(connectRedis({ url: 'http://x' }), /redis:\/\//);
    await assert.rejects(connectRedis({}), /exactly one/);
  });

  test('a malformed URL or node address (port out of range, database not a number) is refused as a configuration error naming the option, not reported as Redis unavailable', async () => {
    const named = (option: string) => (error: unknown) =>
      error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && error.message.includes(`"${option}"`);
    // `?db=2` (another client's syntax) is not read by node-redis: the map would use database 0.
    for (const url of ['redis://127.0.0.1:99999', 'redis://127.0.0.1:port', 'redis://127.0.0.1:6390/ledger', 'redis://[::1:6390', 'redis://127.0.0.1:6390?db=2']) {
      await assert.rejects(connectRedis({ url, connectTimeoutMs: 2000 }), named('redis.url'), url);
    }
    await assert.rejects(connectRedis({ clusterNodes: ['127.0.0.1:99999'], connectTimeoutMs: 2000 }), named('redis.clusterNodes'));
    await assert.rejects(connectRedis({ clusterNodes: ['127.0.0.1:0'], connectTimeoutMs: 2000 }), named('redis.clusterNodes'));
    // The URL may carry the password: the error must not print it.
    await assert.rejects(connectRedis({ url: 'redis://ops:s3cret@127.0.0.1:99999' }), (error: unknown) => named('redis.url')(error) && !(error as Error).message.includes('s3cret'));
  });

  test('a cluster seed given as a bracketed IPv6 literal ([::1]:7001) is accepted and dialled; an unbracketed one is refused naming the seed and the bracket form', async () => {
    const port = await freePort();
    for (const seed of [`[::1]:${port}`, `redis://[::1]:${port}`, `redis://ops:pw@[0:0:0:0:0:0:0:1]:${port}`]) {
      // Nobody listens there: dialled, it is an outage, not a configuration error.
      await assert.rejects(connectRedis({ clusterNodes: [seed], connectTimeoutMs: 300 }), (error: unknown) => error instanceof RedisUnavailableError, seed);
    }
    for (const seed of ['::1:7001', 'fe80::1:7001', '[::1]', '[::1]:99999', '[not-ip]:7001']) {
      await assert.rejects(
        connectRedis({ clusterNodes: [seed], connectTimeoutMs: 300 }),
        (error: unknown) => error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && error.message.includes('"redis.clusterNodes"') && error.message.includes(seed) && error.message.includes('[::1]:7001'),
        seed,
      );
    }
  });

  test('redis.tls is refused naming the option when its CA file cannot be read, its PEM holds no certificate, or the URL is not rediss://', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'govmap-ca-'));
    try {
      const key = join(dir, 'key.pem');
      writeFileSync(key, '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIMm7m1bYwbwsJcYQ3Ax5kI1DL4UuF5s4u0n3UjQ0m3wG\n-----END PRIVATE KEY-----\n');
      const cases: Array<[string, Record<string, unknown>]> = [
        ['redis.tls.caFile', { url: 'rediss://127.0.0.1:6390', tls: { caFile: join(dir, 'missing.crt') } }],
        ['redis.tls.caFile', { url: 'rediss://127.0.0.1:6390', tls: { caFile: key } }],
        ['redis.tls.ca', { url: 'rediss://127.0.0.1:6390', tls: { ca: 'not a certificate' } }],
        ['redis.tls.ca', { url: 'rediss://127.0.0.1:6390', tls: { ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' } }],
        ['redis.tls', { url: 'redis://127.0.0.1:6390', tls: { caFile: key } }],
        ['redis.tls', { clusterNodes: ['127.0.0.1:7001'], tls: { ca: 'x' } }],
        ['redis.tls', { url: 'rediss://127.0.0.1:6390', tls: {} }],
        ['redis.tls.cafile', { url: 'rediss://127.0.0.1:6390', tls: { cafile: key } }],
      ];
      for (const [option, options] of cases) {
        const started = performance.now();
        await assert.rejects(connectRedis({ ...options, connectTimeoutMs: 3000 }), (error: unknown) => {
          assert.ok(error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `${option}: expected ConfigurationError, got ${String(error)}`);
          assert.match(error.message, new RegExp(`"${option.replace(/\./g, '\\.')}"`), JSON.stringify(options));
          return true;
        });
        assert.ok(performance.now() - started < 1000, `${option}: refused before connecting`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('redis.tls client certificate options are refused naming the option before connecting: an unreadable file, a file with no certificate or no key, an encrypted key, a key that does not match the certificate, a certificate without its key, or both the PEM and the file form', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'govmap-client-cert-'));
    try {
      const cert = join(dir, 'client.crt');
      const key = join(dir, 'client.key');
      const otherKey = join(dir, 'other.key');
      const encryptedKey = join(dir, 'encrypted.key');
      for (const args of [
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=govmap-client'],
        ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', otherKey],
        ['pkcs8', '-topk8', '-in', key, '-out', encryptedKey, '-v2', 'aes-256-cbc', '-passout', 'pass:vault'],
      ]) {
        const run = spawnSync('openssl', args, { encoding: 'utf8' });
        assert.equal(run.status, 0, run.stderr);
      }
      const certPem = readFileSync(cert, 'utf8');
      const url = 'rediss://127.0.0.1:6390';
      const cases: Array<[string, RegExp, Record<string, unknown>]> = [
        ['redis.tls.certFile', /cannot be read/, { certFile: join(dir, 'missing.crt'), keyFile: key }],
        ['redis.tls.keyFile', /cannot be read/, { certFile: cert, keyFile: join(dir, 'missing.key') }],
        ['redis.tls.certFile', /no PEM certificate/, { certFile: key, keyFile: key }],
        ['redis.tls.keyFile', /not a private key/, { certFile: cert, keyFile: cert }],
        ['redis.tls.cert', /not a valid X\.509 certificate/, { cert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', key: readFileSync(key) }],
        ['redis.tls.keyFile', /does not match the certificate/, { certFile: cert, keyFile: otherKey }],
        ['redis.tls.keyFile', /encrypted/, { certFile: cert, keyFile: encryptedKey }],
        ['redis.tls.key', /does not match the certificate/, { cert: certPem, key: readFileSync(otherKey, 'utf8') }],
        ['redis.tls', /together/, { certFile: cert }],
        ['redis.tls', /together/, { keyFile: key }],
        ['redis.tls', /one of cert .* and certFile/, { cert: certPem, certFile: cert, keyFile: key }],
      ];
      for (const [option, rule, tls] of cases) {
        const started = performance.now();
        await assert.rejects(connectRedis({ url, tls, connectTimeoutMs: 3000 }), (error: unknown) => {
          assert.ok(error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `${option}: expected ConfigurationError, got ${String(error)}`);
          assert.match(error.message, new RegExp(`"${option.replace(/\./g, '\\.')}"`), JSON.stringify(tls));
          assert.match(error.message, rule, JSON.stringify(tls));
          assert.ok(!error.message.includes('PRIVATE KEY'), 'the key itself is never echoed');
          return true;
        });
        assert.ok(performance.now() - started < 1000, `${option}: refused before connecting`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('cluster seeds mixing TLS (rediss://) and plain (host:port, redis://) are refused naming redis.clusterNodes and the odd seed, not a bare TypeError', async () => {
    for (const [clusterNodes, odd] of [
      [['rediss://127.0.0.1:7001', '127.0.0.1:7002', 'rediss://127.0.0.1:7003'], '127.0.0.1:7002'],
      [['127.0.0.1:7001', 'redis://127.0.0.1:7002', 'rediss://ops:secret@127.0.0.1:7003'], 'rediss://ops:***@127.0.0.1:7003'],
    ] as const) {
      await assert.rejects(connectRedis({ clusterNodes, connectTimeoutMs: 300 }), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `expected ConfigurationError, got ${String(error)}`);
        assert.match(error.message, /"redis\.clusterNodes"/);
        assert.ok(error.message.includes(odd), error.message);
        assert.match(error.message, /mixes TLS/);
        assert.ok(!error.message.includes('secret'));
        return true;
      });
    }
  });

  test('a timeout or period longer than a timer can hold (about 24.8 days) is refused naming the option, not silently run as 1 ms', async () => {
    // Node turns any timer delay past 2^31 - 1 ms into 1 ms: every command would "time out" at
    // once, and a size refresh would SCAN Redis a thousand times a second.
    await assert.rejects(
      connectRedis({ url: required(redis, 'GOVMAP_REDIS_URL'), commandTimeoutMs: 3_000_000_000 }),
      (error: unknown) => error instanceof ConfigurationError && error.message.includes('"redis.commandTimeoutMs"'),
    );
    await assert.rejects(connectRedis({ url: required(redis, 'GOVMAP_REDIS_URL'), heartbeatMs: 2 ** 31 }), (error: unknown) => error instanceof ConfigurationError && error.message.includes('"redis.heartbeatMs"'));
    const base = { name: 'x', link, codec: int64Codec, validate: () => true as const, keyPrefix: uniquePrefix('timers') };
    assert.throws(() => new RemoteGovernedMap<bigint>({ ...base, sizeRefreshMs: 3_000_000_000 }), (error: unknown) => error instanceof ConfigurationError && error.message.includes('"sizeRefreshMs"'));
    assert.throws(() => new RemoteGovernedMap<bigint>({ ...base, retryBackoffMaxMs: 2 ** 31 }), (error: unknown) => error instanceof ConfigurationError && error.message.includes('"retryBackoffMaxMs"'));
  });

  test('a string entry holding bytes that are not UTF-8 (written by another tool) fails an update as corrupt at once, not as a write conflict after every retry', async () => {
    const keyPrefix = uniquePrefix('binary');
    prefixes.push(keyPrefix);
    const names = new RemoteGovernedMap<string>({ name: 'names', link, keyPrefix, codec: stringCodec, validate: () => true, sizeRefreshMs: 0, retryBackoffMaxMs: 0 });
    await raw.set(`${keyPrefix}blob`, Buffer.from([0xff, 0x41]));
    const corrupt = (error: unknown) => error instanceof RedisValueCorruptError && error.message.includes(`"${keyPrefix}blob"`) && /UTF-8/.test(error.message);
    await assert.rejects(names.update('blob', (v) => `${v}!`), corrupt);
    await assert.rejects(names.store('blob', 'text'), corrupt);
    await assert.rejects(names.delete('blob'), corrupt);
    assert.equal(names.counters.casConflicts, 0, 'no writer raced us: nothing counts as a conflict');
    assert.deepEqual(await raw.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get(`${keyPrefix}blob`), Buffer.from([0xff, 0x41]), 'left untouched');
    await names.dispose();
  });

  test('a key or string value with a lone surrogate is refused, not merged with other keys by UTF-8 encoding', async () => {
    const map = balances('surrogates');
    // '\uD800', '\uDC00' and '\uFFFD' are three keys; UTF-8 would turn the first two into the third.
    await assert.rejects(map.store('acct-\uD800', 1n), (error: unknown) => error instanceof InvalidArgumentError && error.code === 'GOVMAP_INVALID_ARGUMENT' && /surrogate/.test(error.message));
    await assert.rejects(map.load('acct-\uDC00'), InvalidArgumentError);
    assert.equal(await map.load('acct-\uFFFD'), undefined, 'nothing was written under another key');
    assert.deepEqual(await map.entries(), []);
    await map.store('acct-\u{1F600}', 2n); // a surrogate pair is a well-formed character
    assert.deepEqual(await map.entries(), [['acct-\u{1F600}', 2n]]);
    await map.dispose();
    const keyPrefix = uniquePrefix('surrogate-values');
    prefixes.push(keyPrefix);
    const names = new RemoteGovernedMap<string>({ name: 'names', link, keyPrefix, codec: stringCodec, validate: () => true, sizeRefreshMs: 0 });
    await assert.rejects(names.store('k', 'a\uD800b'), (error: unknown) => error instanceof InvalidArgumentError && /surrogate/.test(error.message));
    assert.equal(await raw.get(`${keyPrefix}k`), null);
    await names.dispose();
  });

  test('an expiry another tool put on an entry survives every write of the map (store, update, compareAndSwap, add alike), and the entry then expires', async () => {
    const map = balances('keepttl');
    const ttlAfter = async (write: (key: string) => Promise<unknown>, key: string): Promise<number> => {
      await map.store(key, 100n);
      await raw.pExpire(`${map.keyPrefix}${key}`, 600_000); // an ops job: "reset at midnight"
      await write(key);
      return raw.pTTL(`${map.keyPrefix}${key}`);
    };
    const writes: Record<string, (key: string) => Promise<unknown>> = {
      store: (key) => map.store(key, 150n),
      update: (key) => map.update(key, (used) => used! + 50n),
      compareAndSwap: (key) => map.compareAndSwap(key, 100n, 150n),
      add: (key) => map.add(key, 50n),
    };
    for (const [operation, write] of Object.entries(writes)) {
      const ttl = await ttlAfter(write, `used-${operation}`);
      assert.ok(ttl > 0 && ttl <= 600_000, `${operation} kept the expiry (PTTL ${ttl})`);
      assert.equal(await map.load(`used-${operation}`), 150n);
    }
    // And it does expire: the limit resets, and the near cache hears of it.
    await map.store('used-today', 100n);
    await raw.pExpire(`${map.keyPrefix}used-today`, 300);
    assert.equal(await map.update('used-today', (used) => used! + 1n), 101n);
    assert.equal(await map.load('used-today'), 101n);
    await until(() => map.loadCached('used-today') === undefined, 'the expiry of the entry', 5000);
    assert.equal(await map.load('used-today'), undefined);
    // A map's own writes never add an expiry.
    await map.store('no-ttl', 1n);
    assert.equal(await raw.pTTL(`${map.keyPrefix}no-ttl`), -1);
    await map.dispose();
  });

  test('a string entry holding bytes that are not UTF-8 fails load, has and range as corrupt naming the key; a string that really holds U+FFFD loads as written', async () => {
    const keyPrefix = uniquePrefix('binary-load');
    prefixes.push(keyPrefix);
    const names = new RemoteGovernedMap<string>({ name: 'names', link, keyPrefix, codec: stringCodec, validate: () => true, sizeRefreshMs: 0 });
    await raw.set(`${keyPrefix}blob`, Buffer.from([0x61, 0xff, 0x41]));
    const corrupt = (error: unknown) =>
      error instanceof RedisValueCorruptError && error.code === 'GOVMAP_REDIS_VALUE_CORRUPT' && error.message.includes(`"${keyPrefix}blob"`) && /UTF-8/.test(error.message);
    await assert.rejects(names.load('blob'), corrupt);
    assert.equal(names.loadCached('blob'), undefined, 'nothing mangled was cached');
    await assert.rejects(names.load('blob'), corrupt, 'still refused on the second load');
    await assert.rejects(names.has('blob'), corrupt);
    await assert.rejects(names.entries(), corrupt);
    await names.store('replacement-char', 'a\uFFFDb');
    assert.equal(await names.load('replacement-char'), 'a\uFFFDb');
    await raw.del(`${keyPrefix}blob`);
    assert.deepEqual(await names.entries(), [['replacement-char', 'a\uFFFDb']]);
    await names.dispose();
  });

  test('an onNearInvalidated or clock that is not a function is refused at construction naming the option, not a TypeError later', async () => {
    const base = { name: 'x', link, codec: int64Codec, validate: () => true as const, keyPrefix: uniquePrefix('callbacks'), sizeRefreshMs: 0 };
    for (const option of ['onNearInvalidated', 'clock'] as const) {
      for (const bad of ['log', 42, {}, null]) {
        assert.throws(
          () => new RemoteGovernedMap<bigint>({ ...base, [option]: bad as never }),
          (error: unknown) => error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && error.message.includes(`"${option}"`),
          `${option}: ${JSON.stringify(bad)}`,
        );
      }
    }
  });
});
