import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AsyncRangeCallbackError,
  CapacityExceededError,
  ConfigurationError,
  GovMapError,
  GovernedMap,
  InvalidArgumentError,
  MapDisposedError,
  UpdateAbortedError,
  UpdateConflictError,
  ValidationError,
  ValidatorFailedError,
  reject,
} from '../../src/index.ts';
import type { GovernedMapOptions } from '../../src/index.ts';

const nonNegative = (_key: string, next: bigint): true | string => (next >= 0n ? true : 'BALANCE_UNDERFLOW');

function balances(extra: Partial<GovernedMapOptions<string, bigint>> = {}): GovernedMap<string, bigint> {
  return new GovernedMap<string, bigint>({ name: 'balances', validate: nonNegative, ...extra });
}

describe('construction', () => {
  test('a map without a validator cannot be built', () => {
    const build = (): unknown => new GovernedMap({ name: 'bare' } as unknown as GovernedMapOptions<string, number>);
    assert.throws(build, (error: unknown) => {
      assert.ok(error instanceof ConfigurationError);
      assert.equal(error.code, 'GOVMAP_INVALID_CONFIGURATION');
      assert.match(error.message, /validate/);
      assert.match(error.message, /bare/);
      return true;
    });
  });

  test('names become metric labels, so they are checked', () => {
    assert.throws(() => balances({ name: 'has space' }), { code: 'GOVMAP_INVALID_CONFIGURATION' });
    assert.throws(() => balances({ name: '' }), ConfigurationError);
  });

  test('bad limits are refused with the option named', () => {
    assert.throws(() => balances({ maxKeys: 0 }), /maxKeys/);
    assert.throws(() => balances({ maxKeys: 1.5 }), /maxKeys/);
    assert.throws(() => balances({ ttlMs: -1 }), /ttlMs/);
    assert.throws(() => balances({ onFull: 'drop' as 'reject' }), /onFull/);
  });
});

describe('validated writes', () => {
  test('store and load', () => {
    const map = balances();
    map.store('acct-1', 100n);
    assert.equal(map.load('acct-1'), 100n);
    assert.equal(map.load('acct-2'), undefined);
    assert.equal(map.has('acct-1'), true);
    assert.equal(map.size, 1);
  });

  test('a rejected write throws ValidationError and leaves the map unchanged', () => {
    const map = balances();
    map.store('acct-1', 100n);
    assert.throws(
      () => map.store('acct-1', -1n),
      (error: unknown) => {
        assert.ok(error instanceof ValidationError);
        assert.ok(error instanceof GovMapError);
        assert.equal(error.code, 'GOVMAP_VALIDATION_REJECTED');
        assert.equal(error.reason, 'BALANCE_UNDERFLOW');
        assert.equal(error.map, 'balances');
        assert.equal(error.key, 'acct-1');
        assert.match(error.message, /acct-1/);
        return true;
      },
    );
    assert.equal(map.load('acct-1'), 100n);
    assert.equal(map.counters.storesRejected, 1);
    assert.equal(map.counters.rejectionsByReason.get('BALANCE_UNDERFLOW'), 1);
  });

  test('the validator sees key, next and previous', () => {
    const seen: Array<[string, number, number | undefined]> = [];
    const map = new GovernedMap<string, number>({
      name: 'seen',
      validate: (key, next, previous) => {
        seen.push([key, next, previous]);
        return true;
      },
    });
    map.store('k', 1);
    map.store('k', 2);
    assert.deepEqual(seen, [
      ['k', 1, undefined],
      ['k', 2, 1],
    ]);
  });

  test('a validator that throws fails closed', () => {
    const map = new GovernedMap<string, number>({
      name: 'throws',
      validate: () => {
        throw new Error('database down');
      },
    });
    assert.throws(() => map.store('k', 1), (error: unknown) => error instanceof ValidatorFailedError && error.code === 'GOVMAP_VALIDATOR_FAILED');
    assert.equal(map.size, 0);
  });

  test('a validator that forgets to return does not silently accept', () => {
    const map = new GovernedMap<string, number>({ name: 'forgetful', validate: (() => undefined) as unknown as () => true });
    assert.throws(() => map.store('k', 1), { reason: 'VALIDATOR_RETURNED_NO_VERDICT' });
  });

  test('false and reject() carry reasons', () => {
    const map = new GovernedMap<string, number>({ name: 'r', validate: (_k, v) => (v === 1 ? false : v === 2 ? reject('TOO_SMALL', 'need more') : true) });
    assert.throws(() => map.store('a', 1), { reason: 'VALIDATION_FAILED' });
    assert.throws(() => map.store('a', 2), (e: unknown) => e instanceof ValidationError && e.reason === 'TOO_SMALL' && /need more/.test(e.message));
  });

  test('undefined is not a storable value', () => {
    const map = new GovernedMap<string, number | undefined>({ name: 'u', validate: () => true });
    assert.throws(() => map.store('a', undefined), InvalidArgumentError);
  });

  test('an update function that forgets to return is named as the culprit, not an argument "value" the caller never passed', async () => {
    const map = balances();
    map.store('a', 10n);
    const forgot = ((b: bigint | undefined) => {
      void (b! - 1n); // the new balance computed, and not returned
    }) as unknown as (b: bigint | undefined) => bigint;
    const named = (operation: string) => (error: unknown): boolean =>
      error instanceof InvalidArgumentError && new RegExp(`map "balances": ${operation}\\(\\): argument "fn" returned undefined`).test(error.message);
    assert.throws(() => map.update('a', forgot), named('update'));
    await assert.rejects(map.updateAsync('a', async (b) => forgot(b)), named('updateAsync'));
    assert.equal(map.load('a'), 10n);
  });

  test('hostile keys are plain keys', () => {
    const map = new GovernedMap<string, number>({ name: 'keys', validate: () => true });
    map.store('__proto__', 1);
    map.store('constructor', 2);
    assert.equal(map.load('__proto__'), 1);
    assert.equal(map.load('constructor'), 2);
    assert.equal(map.load('toString'), undefined);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('update', () => {
  test('read-modify-write is validated and atomic', () => {
    const map = balances();
    map.store('a', 10n);
    assert.equal(map.update('a', (b) => (b ?? 0n) + 5n), 15n);
    assert.throws(() => map.update('a', (b) => (b ?? 0n) - 100n), ValidationError);
    assert.equal(map.load('a'), 15n);
  });

  test('returning the same value writes nothing (zero delta)', () => {
    const map = balances();
    map.store('a', 10n);
    const before = map.counters.storesOk;
    assert.equal(map.update('a', (b) => (b ?? 0n) + 0n), 10n);
    assert.equal(map.counters.storesOk, before);
    assert.equal(map.counters.updatesNoop, 1);
  });

  test('an update function that throws leaves the map unchanged', () => {
    const map = balances();
    map.store('a', 10n);
    assert.throws(() =>
      map.update('a', () => {
        throw new Error('nope');
      }),
    );
    assert.equal(map.load('a'), 10n);
  });

  test('an async function passed to update by mistake is refused, not stored as a Promise balance', async () => {
    const map = balances();
    map.store('a', 10n);
    // From JavaScript (or through `any`) nothing stops the mistake at compile time, and the
    // validator `next < 0n` is false for a Promise, so it would be accepted as the balance.
    const untyped = map as unknown as GovernedMap<string, unknown>;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      assert.throws(() => untyped.update('a', async (b) => (b as bigint) - 1n), (error: unknown) => {
        assert.ok(error instanceof InvalidArgumentError);
        assert.equal(error.code, 'GOVMAP_INVALID_ARGUMENT');
        assert.match(error.message, /map "balances": update\(\): argument "fn" returned a promise .*use updateAsync/);
        return true;
      });
      assert.equal(map.load('a'), 10n, 'the balance is still a bigint, unchanged');
      // An async function that throws: its rejection must not crash the service.
      assert.throws(() => untyped.update('a', async () => {
        throw new Error('account not found');
      }), InvalidArgumentError);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    assert.equal(map.counters.storesOk, 1);
  });

  test('a write to the same key from inside the update function is a conflict, not a lost write', () => {
    const map = balances();
    map.store('a', 10n);
    assert.throws(
      () =>
        map.update('a', (b) => {
          map.store('a', 99n);
          return (b ?? 0n) + 1n;
        }),
      UpdateConflictError,
    );
    assert.equal(map.load('a'), 99n);
  });
});

describe('updateAsync', () => {
  test('serialises updates of one key across await, in call order', async () => {
    const map = balances();
    map.store('a', 0n);
    const order: number[] = [];
    const tasks = [1, 2, 3].map((i) =>
      map.updateAsync('a', async (b) => {
        await new Promise((r) => setTimeout(r, 5 - i));
        order.push(i);
        return (b ?? 0n) + BigInt(i);
      }),
    );
    assert.deepEqual(await Promise.all(tasks), [1n, 3n, 6n]);
    assert.deepEqual(order, [1, 2, 3]);
  });

  test('other keys are not held up', async () => {
    const map = balances();
    let releaseA!: () => void;
    const a = map.updateAsync('a', async () => {
      await new Promise<void>((r) => (releaseA = r));
      return 1n;
    });
    assert.equal(await map.updateAsync('b', () => 2n), 2n);
    releaseA();
    assert.equal(await a, 1n);
  });

  test('re-runs on the fresh value when a plain write changed the key during the await', async () => {
    const map = balances();
    map.store('a', 10n);
    let calls = 0;
    let awaiting!: () => void;
    const started = new Promise<void>((resolve) => (awaiting = resolve));
    let resume!: () => void;
    const downstream = new Promise<void>((resolve) => (resume = resolve));
    const result = map.updateAsync('a', async (b) => {
      calls++;
      if (calls === 1) {
        awaiting();
        await downstream;
      }
      return (b ?? 0n) + 1n;
    });
    await started;
    map.store('a', 20n); // another request's plain write, while the update awaits
    resume();
    assert.equal(await result, 21n);
    assert.equal(calls, 2);
  });

  test('gives up with UpdateConflictError past its retry bound', async () => {
    const map = balances({ updateRetries: 2 });
    map.store('a', 0n);
    let n = 0n;
    await assert.rejects(
      map.updateAsync('a', async (b) => {
        await Promise.resolve();
        map.store('a', ++n);
        return (b ?? 0n) + 100n;
      }),
      (e: unknown) => e instanceof UpdateConflictError && e.code === 'GOVMAP_UPDATE_CONFLICT',
    );
  });

  test('validation happens at commit; a rejection rejects the promise and changes nothing', async () => {
    const map = balances();
    map.store('a', 5n);
    await assert.rejects(map.updateAsync('a', async (b) => (b ?? 0n) - 10n), ValidationError);
    assert.equal(map.load('a'), 5n);
  });

  test('an aborted update changes nothing', async () => {
    const map = balances();
    map.store('a', 5n);
    const controller = new AbortController();
    const pending = map.updateAsync(
      'a',
      async (b) => {
        controller.abort(new Error('client went away'));
        await Promise.resolve();
        return (b ?? 0n) + 1n;
      },
      { signal: controller.signal },
    );
    await assert.rejects(pending, UpdateAbortedError);
    assert.equal(map.load('a'), 5n);
  });
});

describe('other operations', () => {
  test('loadOrStore', () => {
    const map = balances();
    assert.deepEqual(map.loadOrStore('a', 1n), { value: 1n, loaded: false });
    assert.deepEqual(map.loadOrStore('a', 2n), { value: 1n, loaded: true });
    assert.throws(() => map.loadOrStore('b', -1n), ValidationError);
    assert.equal(map.has('b'), false);
  });

  test('compareAndSwap', () => {
    const map = balances();
    assert.equal(map.compareAndSwap('a', undefined, 1n), true);
    assert.equal(map.compareAndSwap('a', 2n, 3n), false);
    assert.equal(map.compareAndSwap('a', 1n, 3n), true);
    assert.throws(() => map.compareAndSwap('a', 3n, -1n), ValidationError);
    assert.equal(map.load('a'), 3n);
  });

  test('delete, loadAndDelete and the delete validator', () => {
    const map = balances({ validateDelete: (_k, previous) => (previous === 0n ? true : 'ACCOUNT_NOT_EMPTY') });
    map.store('empty', 0n);
    map.store('full', 5n);
    assert.equal(map.delete('empty'), true);
    assert.equal(map.delete('empty'), false);
    assert.throws(() => map.delete('full'), { reason: 'ACCOUNT_NOT_EMPTY' });
    assert.equal(map.load('full'), 5n);
    map.store('full', 0n);
    assert.equal(map.loadAndDelete('full'), 0n);
    assert.equal(map.loadAndDelete('full'), undefined);
  });
});

describe('range', () => {
  const filled = (): GovernedMap<string, number> => {
    const map = new GovernedMap<string, number>({ name: 'r', validate: () => true });
    for (const key of ['b', 'a', 'c', 'ab', 'd']) map.store(key, key.length);
    return map;
  };

  test('visits a consistent snapshot even when the callback writes', () => {
    const map = filled();
    const seen: Array<[string, number]> = [];
    map.range((key, value) => {
      seen.push([key, value]);
      map.store(`new-${key}`, 1);
      map.store('ab', 100); // a key not visited yet changes: the walk still hands out its snapshot value
      map.delete('d');
    });
    assert.deepEqual(seen, [['b', 1], ['a', 1], ['c', 1], ['ab', 2], ['d', 1]]);
    assert.equal(map.has('d'), false);
    assert.equal(map.load('ab'), 100);
  });

  test('bounds: start inclusive, end exclusive unless inclusive, sorted', () => {
    const map = filled();
    assert.deepEqual(map.entries({ start: 'ab', end: 'c' }).map(([k]) => k), ['ab', 'b']);
    assert.deepEqual(map.entries({ start: 'ab', end: 'c', inclusive: true }).map(([k]) => k), ['ab', 'b', 'c']);
    assert.deepEqual(map.entries({ prefix: 'a' }).map(([k]) => k), ['a', 'ab']);
  });

  test('returning false stops the walk', () => {
    const map = filled();
    let n = 0;
    const result = map.range(() => ++n < 2);
    assert.deepEqual(result, { visited: 2, stopped: true });
  });

  test('an async callback is refused with a clear error', () => {
    const map = filled();
    assert.throws(
      () => map.range((async () => {}) as unknown as () => void),
      (e: unknown) => e instanceof AsyncRangeCallbackError && e.code === 'GOVMAP_ASYNC_RANGE_CALLBACK',
    );
  });

  test('durations are recorded', () => {
    const map = filled();
    map.range(() => {});
    assert.equal(map.counters.ranges, 1);
    assert.ok(map.stats().rangeP99Seconds !== null);
  });
});

describe('key lifecycle', () => {
  test('maxKeys with reject', () => {
    const map = balances({ maxKeys: 2 });
    map.store('a', 1n);
    map.store('b', 1n);
    assert.throws(() => map.store('c', 1n), CapacityExceededError);
    map.store('a', 2n); // existing keys can still be written
    assert.equal(map.size, 2);
  });

  test('maxKeys with evict-oldest', () => {
    const map = balances({ maxKeys: 2, onFull: 'evict-oldest' });
    map.store('a', 1n);
    map.store('b', 1n);
    map.store('c', 1n);
    assert.deepEqual(map.entries().map(([k]) => k), ['b', 'c']);
    assert.equal(map.counters.evictions, 1);
  });

  test('ttl expires entries on a controllable clock', () => {
    let now = 1_000_000;
    const map = balances({ ttlMs: 100, clock: () => now });
    map.store('a', 1n);
    now += 99;
    assert.equal(map.load('a'), 1n);
    now += 1;
    assert.equal(map.load('a'), undefined);
    assert.equal(map.size, 0);
    assert.equal(map.counters.expirations, 1);
    map.store('b', 1n);
    map.store('c', 1n);
    now += 100;
    assert.equal(map.purgeExpired(), 2);
  });

  test('a disposed map refuses every operation', () => {
    const map = balances();
    map.store('a', 1n);
    map.dispose();
    assert.throws(() => map.load('a'), MapDisposedError);
    assert.throws(() => map.store('a', 1n), { code: 'GOVMAP_MAP_DISPOSED' });
  });
});

describe('stats', () => {
  test('miss ratio and read:write ratio over the window', () => {
    let now = 0;
    const map = balances({ clock: () => now, windowMs: 60_000 });
    map.store('a', 1n);
    for (let i = 0; i < 20; i++) map.load(i % 2 === 0 ? 'a' : 'zz');
    let stats = map.stats();
    assert.equal(stats.missRatio, 0.5);
    assert.equal(stats.readWriteRatio, 20);
    // Two minutes later only hits happen: the old misses leave the window.
    now = 120_000;
    map.stats();
    now = 180_000 + 2000;
    for (let i = 0; i < 10; i++) map.load('a');
    stats = map.stats();
    assert.equal(stats.missRatio, 0);
  });
});
