import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CapacityExceededError,
  ConfigurationError,
  GovernedMap,
  InProcessStore,
  InvalidArgumentError,
  MapDisposedError,
  RangeBoundsError,
  ObserverFlushError,
  UpdateAbortedError,
  UpdateConflictError,
  UpdateReentrantError,
  ValidationError,
  ValidatorFailedError,
  allOf,
  reject,
} from '../../src/index.ts';
import type { MapObserver, OpType, Outcome, Validator } from '../../src/index.ts';
import { SharedInt64Store } from '../../src/stores/index.ts';

/** Every operation the map reports, as `OP:key:outcome[:reason]`. */
function recorder(): { events: string[]; lifecycle: string[]; observer: MapObserver<unknown> } {
  const events: string[] = [];
  const lifecycle: string[] = [];
  return {
    events,
    lifecycle,
    observer: {
      onOperation: (_map: string, op: OpType, key: unknown, outcome: Outcome, reason: string | null) => {
        events.push(`${op}:${String(key)}:${outcome}${reason === null ? '' : `:${reason}`}`);
      },
      onLifecycle: (map, event) => lifecycle.push(`${map}:${event}`),
    },
  };
}

const accept: Validator<string, number> = () => true;

describe('dispose and shared stores', () => {
  test('disposing a map over a store it was given leaves the entries to the other maps on that store', () => {
    const shared = SharedInt64Store.create({ initialCapacity: 16 });
    const validate = (): true => true;
    const here = new GovernedMap<string, bigint>({ name: 'here', store: shared, validate });
    here.store('acct-1', 8000n);
    // Another thread's view of the same memory, as a worker would attach it.
    const there = new GovernedMap<string, bigint>({ name: 'there', store: SharedInt64Store.attach(shared.handle), validate });
    here.dispose();
    assert.equal(there.load('acct-1'), 8000n);
    assert.equal(there.size, 1);
    assert.throws(() => here.load('acct-1'), MapDisposedError);
  });

  test('disposing a map over its own store drops the entries', () => {
    const map = new GovernedMap<string, number>({ name: 'own', validate: accept });
    map.store('a', 1);
    map.dispose();
    assert.equal(map.stats().keys, 0);
  });

  test('every observer hears DISPOSED even when one of them throws', () => {
    const a = recorder();
    const b = recorder();
    const thrower: MapObserver<unknown> = { onOperation: () => undefined, onLifecycle: () => { throw new Error('observer down'); } };
    const map = new GovernedMap<string, number>({ name: 'm', validate: accept, observers: [a.observer, thrower, b.observer] });
    map.dispose();
    assert.deepEqual(a.lifecycle, ['m:CREATED', 'm:DISPOSED']);
    assert.deepEqual(b.lifecycle, ['m:CREATED', 'm:DISPOSED']);
  });

  test('a write cannot land in a map disposed from inside its own update function or validator', () => {
    const map = new GovernedMap<string, number>({ name: 'd', validate: accept });
    assert.throws(() => map.update('new', () => (map.dispose(), 1)), { name: 'MapDisposedError', message: /disposed while update\(\) was running; nothing was written/ });
    assert.equal(map.stats().keys, 0);
    let disposeNow = false;
    const store = new InProcessStore<string, number>(); // given, so dispose leaves it: what is in it is what was written
    const other = new GovernedMap<string, number>({
      name: 'v',
      store,
      validate: () => {
        if (disposeNow) other.dispose();
        return true;
      },
    });
    other.store('a', 1);
    disposeNow = true;
    assert.throws(() => other.store('z', 1), MapDisposedError);
    assert.deepEqual(store.snapshot(), [['a', 1]]);
  });

  test('a map cannot be observed after dispose, nor by something that is not an observer', () => {
    const map = new GovernedMap<string, number>({ name: 'o', validate: accept });
    assert.throws(() => map.observe('x' as unknown as MapObserver<string>), ConfigurationError);
    assert.throws(() => new GovernedMap<string, number>({ name: 'o2', validate: accept, observers: 'x' as unknown as [] }), { code: 'GOVMAP_INVALID_CONFIGURATION' });
    map.dispose();
    assert.throws(() => map.observe(recorder().observer), MapDisposedError);
  });

  test('the same observer twice in observers is refused, naming the entry: it would audit every write twice', () => {
    const { events, observer } = recorder();
    assert.throws(() => new GovernedMap<string, number>({ name: 'twice', validate: accept, observers: [observer, observer] }), {
      code: 'GOVMAP_INVALID_CONFIGURATION',
      message: /"observers\[1\]": is observers\[0\] again \(each observer once/,
    });
    assert.deepEqual(events, []);
  });
});

describe('time to live and capacity', () => {
  test('expired entries do not hold capacity: a new key is accepted once the old ones are dead', () => {
    let now = 0;
    const map = new GovernedMap<string, number>({ name: 'c', validate: accept, maxKeys: 2, ttlMs: 10, clock: () => now });
    map.store('a', 1);
    map.store('b', 2);
    assert.throws(() => map.store('c', 3), CapacityExceededError);
    now = 100;
    map.store('c', 3);
    assert.deepEqual(map.entries(), [['c', 3]]);
    assert.equal(map.stats().expirations, 2);
  });

  test('evict-oldest takes an expired entry before a live one', () => {
    let now = 0;
    const map = new GovernedMap<string, number>({ name: 'e', validate: accept, maxKeys: 2, ttlMs: 10, onFull: 'evict-oldest', clock: () => now });
    map.store('a', 1);
    now = 1;
    map.store('b', 2);
    now = 8;
    map.store('a', 10); // a lives until 18, b only until 11
    now = 12;
    map.store('c', 3);
    assert.deepEqual(
      map.entries().sort(([x], [y]) => x.localeCompare(y)),
      [['a', 10], ['c', 3]],
    );
    const stats = map.stats();
    assert.equal(stats.evictions, 0);
    assert.equal(stats.expirations, 1);
  });

  test('size does not count expired entries', () => {
    let now = 0;
    const map = new GovernedMap<string, number>({ name: 's', validate: accept, ttlMs: 10, clock: () => now });
    map.store('a', 1);
    now = 5;
    map.store('b', 1);
    now = 12;
    assert.equal(map.size, 1);
    assert.equal(map.stats().keys, 1);
  });

  test("an entry that expires while update's function runs is not mistaken for a write by that function", () => {
    let now = 0;
    const map = new GovernedMap<string, number>({ name: 't', validate: accept, ttlMs: 10, clock: () => now });
    map.store('k', 1);
    now = 9;
    const after = map.update('k', (v) => {
      now = 11;
      return (v ?? 0) + 1;
    });
    assert.equal(after, 2);
    assert.equal(map.load('k'), 2);
  });
});

describe('validators that misbehave', () => {
  test('an async validator is refused with a clear error, and its rejection does not crash the process', async () => {
    const { events, observer } = recorder();
    const map = new GovernedMap<string, number>({
      name: 'a',
      validate: (async (_k: string, n: number) => {
        if (n < 0) throw new Error('negative');
        return true;
      }) as unknown as Validator<string, number>,
      observers: [observer],
    });
    for (const value of [1, -1]) {
      assert.throws(() => map.store('k', value), (error: unknown) => {
        assert.ok(error instanceof ValidatorFailedError);
        assert.equal(error.code, 'GOVMAP_VALIDATOR_FAILED');
        assert.equal(error.details.rule, 'VALIDATOR_ASYNC');
        assert.match(error.message, /returned a promise/);
        assert.match(error.message, /must be synchronous/);
        return true;
      });
    }
    // Had the -1 promise's rejection gone unhandled, node:test would fail this file.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(map.stats().keys, 0);
    assert.deepEqual(events, ['STORE:k:error:VALIDATOR_FAILED', 'STORE:k:error:VALIDATOR_FAILED']);
    assert.deepEqual(map.stats().stores, { ok: 0, rejected: 0, error: 2 });
  });

  test("a validator that throws is named with its cause; a delete validator's refusal says delete", () => {
    const map = new GovernedMap<string, number>({
      name: 'c',
      validate: (_k, n) => {
        if (n === 13) throw new Error('ledger service down');
        return true;
      },
      validateDelete: () => 'NONZERO',
    });
    assert.throws(() => map.store('k', 13), /threw while checking key "k" \(Error: ledger service down\)/);
    map.store('k', 1);
    assert.throws(() => map.delete('k'), (error: unknown) => {
      assert.ok(error instanceof ValidationError);
      assert.match(error.message, /delete of key "k" rejected by its validateDelete \(NONZERO\)/);
      return true;
    });
  });

  test('a validator that writes the key it is validating gets a conflict, not a silently lost write', () => {
    let nested = false;
    const map = new GovernedMap<string, number>({
      name: 'r',
      validate: () => {
        if (nested) {
          nested = false;
          map.store('acct', 999);
        }
        return true;
      },
    });
    map.store('acct', 1);
    nested = true;
    assert.throws(() => map.update('acct', (v) => (v ?? 0) + 10), UpdateConflictError);
    assert.equal(map.load('acct'), 999);
  });

  test('verdicts that name no reason become the generic one; allOf() of nothing is refused', () => {
    const map = new GovernedMap<string, number>({ name: 'v', validate: () => ({ reason: '' }) });
    assert.throws(() => map.store('k', 1), { reason: 'VALIDATION_FAILED' });
    assert.throws(() => allOf(), ConfigurationError);
    assert.throws(() => allOf(accept, 'x' as unknown as Validator<string, number>), /allOf\[1\]/);
  });

  test('a NaN key (a failed Number() parse of an account id) is refused, so bad ids do not all share one entry', async () => {
    const map = new GovernedMap<number, bigint>({ name: 'accounts', validate: () => true });
    const badId = Number('acct-17');
    for (const write of [() => map.store(badId, 500n), () => map.update(badId, () => 1n), () => map.loadOrStore(badId, 1n), () => map.compareAndSwap(badId, undefined, 1n)]) {
      assert.throws(write, (error: unknown) => error instanceof InvalidArgumentError && error.code === 'GOVMAP_INVALID_ARGUMENT' && /argument "key" must be a key, not NaN/.test(error.message));
    }
    await assert.rejects(map.updateAsync(badId, () => 1n), InvalidArgumentError);
    assert.equal(map.size, 0);
    assert.equal(map.stats().stores.ok, 0);
  });

  test('a NaN key given to update or updateAsync is refused before its function runs, naming the operation called', async () => {
    const map = new GovernedMap<number, bigint>({ name: 'accounts', validate: () => true });
    const badId = Number('acct-17');
    let calls = 0;
    const debit = (b: bigint | undefined): bigint => {
      calls++; // stands for a downstream call (a risk check, a reservation) made for nothing
      return (b ?? 0n) + 1n;
    };
    const named = (operation: string) => (error: unknown): boolean =>
      error instanceof InvalidArgumentError && new RegExp(`map "accounts": ${operation}\\(\\): argument "key" must be a key, not NaN`).test(error.message);
    assert.throws(() => map.update(badId, debit), named('update'));
    await assert.rejects(map.updateAsync(badId, async (b) => debit(b)), named('updateAsync'));
    assert.throws(() => map.loadOrStore(badId, 1n), named('loadOrStore'));
    assert.throws(() => map.compareAndSwap(badId, undefined, 1n), named('compareAndSwap'));
    assert.equal(calls, 0);
  });

  test('a key without a string form still gets a typed error', () => {
    const map = new GovernedMap<object, number>({ name: 'o', validate: () => 'NOPE' });
    assert.throws(() => map.store(Object.create(null) as object, 1), (error: unknown) => {
      assert.ok(error instanceof ValidationError);
      assert.match(error.message, /\[object Object\]/);
      return true;
    });
  });

  test('a huge key is cut in the error details as in the message', () => {
    const map = new GovernedMap<string, number>({ name: 'h', validate: () => 'NOPE' });
    const key = 'k'.repeat(1_000_000);
    assert.throws(() => map.store(key, 1), (error: unknown) => {
      assert.ok(error instanceof ValidationError);
      assert.ok(String(error.details.key).length < 400);
      assert.match(String(error.details.key), /1000000 characters/);
      return true;
    });
  });
});

describe('stores that refuse', () => {
  test("a shared store's refusal is counted and audited as a failed write", () => {
    const { events, observer } = recorder();
    const store = SharedInt64Store.create({ maxKeyLength: 4, maxKeys: 1, initialCapacity: 1 });
    const map = new GovernedMap<string, bigint>({ name: 's', store, validate: () => true, observers: [observer] });
    assert.throws(() => map.store('toolong', 1n), { code: 'GOVMAP_SHARED_KEY_INVALID' });
    map.store('a', 1n);
    assert.throws(() => map.store('b', 1n), { code: 'GOVMAP_SHARED_MAP_FULL' });
    assert.throws(() => map.store('a', 2n ** 64n), { code: 'GOVMAP_SHARED_VALUE_INVALID' });
    assert.deepEqual(events, ['STORE:toolong:error:SHARED_KEY_INVALID', 'STORE:a:ok', 'STORE:b:error:SHARED_MAP_FULL', 'STORE:a:error:SHARED_VALUE_INVALID']);
    assert.deepEqual(map.stats().stores, { ok: 1, rejected: 0, error: 3 });
    assert.equal(map.load('a'), 1n);
  });

  test('a write the store refuses does not evict the oldest entry to make room for itself', () => {
    const { events, observer } = recorder();
    const store = SharedInt64Store.create({ maxKeyLength: 8 });
    const map = new GovernedMap<string, bigint>({ name: 's', store, maxKeys: 2, onFull: 'evict-oldest', validate: (_k, v) => v >= 0n || 'NEGATIVE', observers: [observer] });
    map.store('acct-1', 1n);
    map.store('acct-2', 2n);
    assert.throws(() => map.store('acct-3', 2n ** 64n), { code: 'GOVMAP_SHARED_VALUE_INVALID' });
    assert.throws(() => map.store('acct-4-too-long', 4n), { code: 'GOVMAP_SHARED_KEY_INVALID' });
    assert.deepEqual(map.entries({ start: '' }), [['acct-1', 1n], ['acct-2', 2n]], 'the map is unchanged');
    assert.equal(map.stats().evictions, 0);
    assert.deepEqual(events.slice(2, 4), ['STORE:acct-3:error:SHARED_VALUE_INVALID', 'STORE:acct-4-too-long:error:SHARED_KEY_INVALID']);
    // A write the store takes still evicts as before.
    map.store('acct-5', 5n);
    assert.deepEqual(map.entries({ start: '' }), [['acct-2', 2n], ['acct-5', 5n]]);
    assert.equal(map.stats().evictions, 1);
  });

  test('evict-oldest without maxKeys is refused at construction: it would be an unbounded map', () => {
    assert.throws(() => new GovernedMap<string, bigint>({ name: 'quotes', validate: () => true, onFull: 'evict-oldest' }), (error: unknown) => {
      assert.equal((error as { code?: string }).code, 'GOVMAP_INVALID_CONFIGURATION');
      assert.match((error as Error).message, /onFull.*needs maxKeys/s);
      return true;
    });
  });

  test('a value that cannot be frozen does not evict the oldest entry to make room for itself', () => {
    const map = new GovernedMap<string, object>({ name: 'limits', maxKeys: 1, onFull: 'evict-oldest', validate: () => true });
    map.store('desk-1', { daily: 1n });
    // A proxy that refuses to be made non-extensible: Object.freeze throws on it.
    const unfreezable = new Proxy({ daily: 2n }, { preventExtensions: () => false });
    assert.throws(() => map.store('desk-2', unfreezable));
    assert.deepEqual(map.entries({ start: '' }).map(([key]) => key), ['desk-1'], 'the live entry is still there');
    assert.equal(map.stats().evictions, 0);
  });
});

/** `settles`, or a failure naming `what` after `ms` (instead of the test runner's 10 minutes). */
async function within(ms: number, settles: Promise<unknown>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms: ${what}`)), ms)));
  try {
    await Promise.race([settles, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('updateAsync', () => {
  test('an update aborted while it waits its turn leaves at once, and the queue still runs in order', async () => {
    const map = new GovernedMap<string, number>({ name: 'q', validate: accept });
    map.store('k', 0);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const first = map.updateAsync('k', async (v) => {
      await gate;
      return (v ?? 0) + 1;
    });
    const controller = new AbortController();
    const second = map.updateAsync('k', (v) => (v ?? 0) + 100, { signal: controller.signal });
    const third = map.updateAsync('k', (v) => (v ?? 0) + 10);
    setTimeout(() => controller.abort(new Error('client went away')), 20);
    // The update ahead of it is held until release() below: settling at all shows the abort did
    // not wait for it (a time bound instead failed on a starved machine, not on the code).
    await within(10_000, assert.rejects(second, UpdateAbortedError), 'the abort did not wait for the update ahead of it');
    release();
    assert.equal(await first, 1);
    assert.equal(await third, 11); // ran after the first, not before it
  });

  test('an update aborted while it waits last in line does not let the next update of the key run beside the one still running', async () => {
    // updateRetries 0: the second update of the key must not start before the first has committed.
    const map = new GovernedMap<string, bigint>({ name: 'q', validate: accept as unknown as Validator<string, bigint>, updateRetries: 0 });
    map.store('acct', 0n);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const running: string[] = [];
    const first = map.updateAsync('acct', async (v) => {
      running.push('first');
      await gate;
      running.splice(running.indexOf('first'), 1);
      return v! + 1n;
    });
    const controller = new AbortController();
    const second = map.updateAsync('acct', (v) => v! + 100n, { signal: controller.signal });
    controller.abort(new Error('client went away'));
    await assert.rejects(second, UpdateAbortedError);
    let alongside: string[] | undefined;
    const third = map.updateAsync('acct', (v) => {
      alongside = [...running];
      return v! + 10n;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(alongside, undefined, 'the third update started while the first was still running');
    release();
    assert.equal(await first, 1n);
    assert.equal(await third, 11n);
    assert.deepEqual(alongside, []);
    assert.equal(map.load('acct'), 11n);
  });

  test('an update queued behind one running when the map is disposed is refused without its function being called', async () => {
    const map = new GovernedMap<string, bigint>({ name: 'q', validate: accept as unknown as Validator<string, bigint> });
    map.store('acct', 500n);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const first = map.updateAsync('acct', async (v) => {
      await gate;
      return v! - 1n;
    });
    const calls: Array<bigint | undefined> = [];
    const second = map.updateAsync('acct', (v) => {
      calls.push(v); // a debit that would call the settlement gateway for an account that looks absent
      return (v ?? 0n) - 1n;
    });
    map.dispose();
    release();
    await assert.rejects(first, MapDisposedError);
    await assert.rejects(second, (error: unknown) => error instanceof MapDisposedError && /nothing was written/.test(error.message));
    assert.deepEqual(calls, [], 'the queued function ran against the disposed map');
  });

  test('an update aborted while its function is still running settles at once and frees the key', async () => {
    const map = new GovernedMap<string, number>({ name: 'q', validate: accept });
    map.store('k', 0);
    let finish!: (value: number) => void;
    // A risk check that ignores the signal (or a downstream call without a timeout).
    const stuck = map.updateAsync('k', () => new Promise<number>((resolve) => (finish = resolve)), { signal: AbortSignal.timeout(20) });
    // The function never finishes before finish() below: settling at all shows the abort did not wait for it.
    await within(10_000, assert.rejects(stuck, UpdateAbortedError), 'the abort did not wait for the function');
    assert.equal(await map.updateAsync('k', (v) => (v ?? 0) + 1), 1, 'the next update of the key is not held up');
    finish(100); // the abandoned function's late answer is never written
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(map.load('k'), 1);
  });

  test('an updateAsync of a key from inside its own update is refused instead of waiting for itself forever', async () => {
    const map = new GovernedMap<string, number>({ name: 'n', validate: accept });
    map.store('k', 1);
    let inner: Promise<number> | undefined;
    const outer = map.updateAsync('k', async (v) => {
      inner = map.updateAsync('k', () => 5);
      await inner.catch(() => undefined);
      return (v ?? 0) + 1;
    });
    assert.equal(await outer, 2);
    await assert.rejects(inner!, (error: unknown) => {
      assert.ok(error instanceof UpdateReentrantError);
      assert.equal(error.code, 'GOVMAP_UPDATE_REENTRANT');
      assert.match(error.message, /map "n": updateAsync of key "k" was called from inside an update of the same key/);
      return true;
    });
    // Another key from inside is fine, and so is the same key from a callback that runs after
    // the outer update finished (it still carries the outer async context).
    let later!: Promise<number>;
    let scheduled!: Promise<void>;
    await map.updateAsync('k', async (v) => {
      assert.equal(await map.updateAsync('other', () => 7), 7);
      scheduled = new Promise((resolve) => setTimeout(() => {
        later = map.updateAsync('k', (x) => (x ?? 0) * 10);
        resolve();
      }, 10));
      return (v ?? 0) + 1;
    });
    await scheduled;
    assert.equal(await later, 30);
  });

  test('0 and -0 are one key for updateAsync too: a nested update or write of -0 inside an update of 0 is refused, not a wait forever', async () => {
    // -0 comes out of ordinary arithmetic (Math.round(-0.2), -1 * 0); the map holds it as key 0.
    const map = new GovernedMap<number, bigint>({ name: 'ledger', validate: () => true });
    map.store(0, 100n);
    let inner: Promise<bigint> | undefined;
    const outer = map.updateAsync(0, async (v) => {
      inner = map.updateAsync(-0, (x) => x! + 1n);
      await inner.catch(() => undefined);
      return v! + 10n;
    });
    await within(2_000, outer, 'the outer update waited for its own nested update of -0');
    assert.equal(await outer, 110n);
    await assert.rejects(inner!, UpdateReentrantError);
    await assert.rejects(map.updateAsync(0, async (v) => {
      map.store(-0, 1n);
      return v! + 1n;
    }), (error: unknown) => error instanceof UpdateConflictError && /inside the function of an updateAsync of the same key/.test(error.message));
    assert.equal(map.load(0), 110n);
  });

  test('dispose settles every pending updateAsync of the map at once, even those queued behind a function that never returns', async () => {
    const map = new GovernedMap<string, bigint>({ name: 'shutdown', validate: () => true });
    map.store('acct', 100n);
    // A downstream call without a timeout, and no signal: only dispose can end the wait.
    const stuck = map.updateAsync('acct', () => new Promise<bigint>(() => undefined));
    let called = false;
    const queued = map.updateAsync('acct', (v) => {
      called = true;
      return v! + 1n;
    });
    await new Promise((resolve) => setImmediate(resolve));
    map.dispose();
    const disposed = (error: unknown): boolean => error instanceof MapDisposedError && error.code === 'GOVMAP_MAP_DISPOSED' && /nothing was written/.test(error.message);
    await within(10_000, assert.rejects(stuck, disposed), 'the running update outlived dispose');
    await within(10_000, assert.rejects(queued, disposed), 'the queued update outlived dispose');
    assert.equal(called, false);
  });

  test('a write to the key from inside its own updateAsync function is refused at once, not applied again on every retry', async () => {
    const map = new GovernedMap<string, bigint>({ name: 'fees', validate: (_k, next) => next >= 0n || 'BALANCE_UNDERFLOW' });
    map.store('acct', 100n);
    let calls = 0;
    const debit = map.updateAsync('acct', async (balance) => {
      calls++;
      map.update('acct', (b) => b! - 1n); // a helper that charges a fee on the same account
      await new Promise((resolve) => setImmediate(resolve));
      return balance! - 10n;
    });
    await assert.rejects(debit, (error: unknown) => {
      assert.ok(error instanceof UpdateConflictError);
      assert.equal(error.code, 'GOVMAP_UPDATE_CONFLICT');
      assert.match(error.message, /map "fees": update of key "acct" gave up after 1 attempt\(s\): .*inside the function of an updateAsync of the same key/);
      return true;
    });
    assert.equal(calls, 1, 'the function was not run again');
    assert.equal(map.load('acct'), 100n, 'no fee was charged by a debit that failed');
    // Outside the function (another caller, or a timer it left behind) the key is writable as ever.
    let later!: Promise<void>;
    assert.equal(await map.updateAsync('acct', async (balance) => {
      await map.updateAsync('other', () => 1n);
      map.store('other', 2n);
      later = new Promise((resolve) => setTimeout(() => resolve(void map.store('acct', 7n)), 5));
      return balance! - 10n;
    }), 90n);
    await later;
    assert.equal(map.load('acct'), 7n);
  });

  test('a failing observer flush after the commit says the write was applied', async () => {
    const map = new GovernedMap<string, number>({ name: 'f', validate: accept });
    map.store('acct', 100);
    map.observe({ onOperation: () => undefined, flush: () => Promise.reject(new Error('fsync EIO')) });
    await assert.rejects(map.updateAsync('acct', (b) => (b ?? 0) - 30), (error: unknown) => {
      assert.ok(error instanceof ObserverFlushError);
      assert.equal(error.code, 'GOVMAP_OBSERVER_FLUSH_FAILED');
      assert.equal(error.details.applied, true);
      assert.match(error.message, /do not retry/);
      return true;
    });
    assert.equal(map.load('acct'), 70);
  });

  test('arguments of the wrong kind get a typed error', async () => {
    const map = new GovernedMap<string, number>({ name: 'args', validate: accept });
    // No entry under no key: its audit record would name no resource.
    for (const key of [undefined, null]) {
      assert.throws(() => map.store(key as unknown as string, 1), (error: unknown) => error instanceof InvalidArgumentError && /key/.test(error.message));
      assert.throws(() => map.loadOrStore(key as unknown as string, 1), InvalidArgumentError);
      await assert.rejects(map.updateAsync(key as unknown as string, () => 1), InvalidArgumentError);
    }
    assert.equal(map.size, 0);
    assert.throws(() => map.update('k', 5 as unknown as () => number), InvalidArgumentError);
    await assert.rejects(map.updateAsync('k', 5 as unknown as () => number), InvalidArgumentError);
    await assert.rejects(map.updateAsync('k', () => 1, null as unknown as object), InvalidArgumentError);
    await assert.rejects(map.updateAsync('k', () => 1, { signal: 'x' as unknown as AbortSignal }), /options\.signal/);
  });
  test('an AbortSignal passed in place of { signal } is refused, not taken as an update nothing can cancel', async () => {
    const map = new GovernedMap<string, bigint>({ name: 'payments', validate: () => true });
    map.store('acct', 100n);
    const controller = new AbortController();
    let called = false;
    await assert.rejects(
      map.updateAsync('acct', (b) => {
        called = true;
        return b! - 1n;
      }, controller.signal as unknown as { signal?: AbortSignal }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgumentError);
        assert.equal(error.code, 'GOVMAP_INVALID_ARGUMENT');
        assert.match(error.message, /map "payments": updateAsync\(\): argument "options" is an AbortSignal; pass it as \{ signal \}/);
        return true;
      },
    );
    assert.equal(called, false);
    assert.equal(map.load('acct'), 100n);
  });
});

describe('configuration and range arguments', () => {
  test('a clock or store of the wrong kind is refused when the map is built', () => {
    assert.throws(() => new GovernedMap({ name: 'c', validate: accept, clock: 5 as unknown as () => number }), /invalid option "clock"/);
    assert.throws(() => new GovernedMap({ name: 's', validate: accept, store: {} as never }), /invalid option "store": must be a MapStore \(missing get\(\)/);
  });

  test('range bounds must be keys', () => {
    const map = new GovernedMap<string, number>({ name: 'r', validate: accept });
    map.store('a', 1);
    assert.throws(() => map.entries({ start: null as unknown as string }), /options\.start/);
    assert.throws(() => map.entries({ end: Number.NaN as unknown as string }), /options\.end/);
    assert.throws(() => map.entries({ end: {} as unknown as string }), InvalidArgumentError);
    assert.throws(() => map.entries('a' as unknown as object), /argument "options"/);
    assert.deepEqual(map.entries({ start: 'a' }), [['a', 1]]);
  });

  test('reversed bounds are refused with RangeBoundsError naming both bounds, not walked as an empty range', () => {
    for (const store of [undefined, SharedInt64Store.create({ initialCapacity: 16 })]) {
      const map = new GovernedMap<string, bigint>({ name: 'ledger', validate: () => true, ...(store === undefined ? {} : { store }) });
      for (const key of ['acct-1', 'acct-2', 'acct-3']) map.store(key, 1n);
      const visits: string[] = [];
      assert.throws(
        () => map.range((key) => void visits.push(key), { start: 'acct-3', end: 'acct-1' }),
        (error: unknown) =>
          error instanceof RangeBoundsError &&
          error instanceof InvalidArgumentError &&
          error.code === 'GOVMAP_RANGE_BOUNDS_REVERSED' &&
          error.message.includes('"acct-3"') &&
          error.message.includes('"acct-1"') &&
          error.details.start === 'acct-3' &&
          error.details.end === 'acct-1',
      );
      assert.deepEqual(visits, []);
      // An empty page [b, b) is not a mistake (the last page of a walk); [b, b] is one key.
      assert.deepEqual(map.entries({ start: 'acct-2', end: 'acct-2' }), []);
      assert.deepEqual(map.entries({ start: 'acct-2', end: 'acct-2', inclusive: true }), [['acct-2', 1n]]);
      assert.deepEqual(map.entries({ start: 'acct-2', end: 'acct-3' }), [['acct-2', 1n]], 'the map keeps serving');
      map.dispose();
    }
  });

  test('a start and an end of different types are refused, naming both', () => {
    const map = new GovernedMap<string, number>({ name: 'r', validate: () => true });
    map.store('a', 1);
    assert.throws(
      () => map.entries({ start: 'a', end: 5 as unknown as string }),
      (error: unknown) => error instanceof RangeBoundsError && error.code === 'GOVMAP_RANGE_BOUNDS_MISMATCHED' && /"a"/.test(error.message) && /5/.test(error.message) && /number/.test(error.message),
    );
    // Numbers and bigints compare exactly with each other: a mixed pair is a valid range.
    const ids = new GovernedMap<number, number>({ name: 'ids', validate: () => true });
    for (const id of [1, 2, 3]) ids.store(id, id);
    assert.deepEqual(ids.entries({ start: 2n as unknown as number, end: 3 }).map(([k]) => k), [2]);
    assert.throws(() => ids.entries({ start: 3n as unknown as number, end: 1 }), RangeBoundsError);
  });

  test('a bound of another type than the keys (a number from a query string over string keys) is refused, not a walk of every key', () => {
    const map = new GovernedMap<string, number>({ name: 'accounts', validate: () => true });
    for (const key of ['acct-1', 'acct-2', 'zz']) map.store(key, 1);
    const visits: string[] = [];
    assert.throws(
      () => map.range((key) => void visits.push(key), { start: 5 as unknown as string }),
      (error: unknown) => error instanceof RangeBoundsError && error.code === 'GOVMAP_RANGE_BOUNDS_MISMATCHED' && /options\.start/.test(error.message) && /string key/.test(error.message),
    );
    assert.deepEqual(visits, [], 'no entry reached the callback');
    const ids = new GovernedMap<number, number>({ name: 'ids', validate: () => true });
    ids.store(7, 1);
    assert.throws(() => ids.entries({ end: '9' as unknown as number }), RangeBoundsError);
    // A prefix alone compares no key with a bound: a map of mixed keys can still be walked by it.
    const mixed = new GovernedMap<string | number, number>({ name: 'mixed', validate: () => true });
    mixed.store('acct-1', 1);
    mixed.store(3, 1);
    assert.deepEqual(mixed.entries({ prefix: 'acct-' }), [['acct-1', 1]]);
  });

  test('inclusive must be true or false: a "true" string from a query string is refused, not read as exclusive', () => {
    const map = new GovernedMap<string, number>({ name: 'r', validate: accept });
    for (const key of ['a', 'b', 'c']) map.store(key, 1);
    assert.throws(
      () => map.entries({ start: 'a', end: 'c', inclusive: 'true' as unknown as boolean }),
      (error: unknown) => error instanceof InvalidArgumentError && error.code === 'GOVMAP_INVALID_ARGUMENT' && /argument "options\.inclusive" must be true or false/.test(error.message),
    );
    assert.throws(() => map.entries({ end: 'c', inclusive: 1 as unknown as boolean }), /options\.inclusive/);
    assert.deepEqual(map.entries({ start: 'a', end: 'c', inclusive: true }).map(([key]) => key), ['a', 'b', 'c']);
    assert.deepEqual(map.entries({ start: 'a', end: 'c', inclusive: undefined }).map(([key]) => key), ['a', 'b']);
  });
});

describe('rejection reasons', () => {
  test('a validator that puts the key in its reason does not grow the counters by one entry per key', () => {
    const map = new GovernedMap<string, number>({ name: 'ledger', validate: (key) => reject(`no account ${key}`) });
    for (let i = 0; i < 150; i++) assert.throws(() => map.store(`acct-${i}`, 1), ValidationError);
    const byReason = map.stats().rejectionsByReason;
    assert.equal(Object.keys(byReason).length, 101, 'the first 100 reasons, then one entry for the rest');
    assert.equal(byReason['no account acct-0'], 1);
    assert.equal(byReason._other, 50);
    assert.equal(map.stats().stores.rejected, 150, 'every refusal is still counted');
    map.dispose();
  });
});

describe('what the audit sees of writes not made', () => {
  test('a compare-and-swap that did not match is a STORE miss with CAS_MISMATCH; an update that changed nothing is a LOAD with UPDATE_UNCHANGED', async () => {
    const r = recorder();
    const values: unknown[] = [];
    const map = new GovernedMap<string, number>({ name: 'attempts', validate: accept });
    map.observe(r.observer);
    map.observe({ onOperation: (_m, op, _k, _o, reason, _b, value) => void (op === 'STORE' && reason === 'CAS_MISMATCH' && values.push(value)) });
    map.store('a', 1);
    assert.equal(map.compareAndSwap('a', 2, 3), false);
    assert.equal(map.compareAndSwap('absent', 2, 3), false);
    assert.equal(map.update('a', (v) => v!), 1);
    assert.equal(map.update('absent', () => undefined as unknown as number), undefined);
    assert.equal(await map.updateAsync('a', async (v) => v!), 1);
    assert.equal(map.compareAndSwap('a', 1, 4), true);
    assert.deepEqual(r.events, [
      'STORE:a:ok',
      'STORE:a:miss:CAS_MISMATCH',
      'STORE:absent:miss:CAS_MISMATCH',
      'LOAD:a:ok:UPDATE_UNCHANGED',
      'LOAD:absent:miss:UPDATE_UNCHANGED',
      'LOAD:a:ok:UPDATE_UNCHANGED',
      'STORE:a:ok',
    ]);
    assert.deepEqual(values, [3, 3], 'the value offered is recorded with the attempt');
  });
});
