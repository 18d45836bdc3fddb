import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigurationError, GovernedMap, reject } from '../../src/index.ts';
import type { OpType, Outcome } from '../../src/index.ts';
import { SharedRecordStore } from '../../src/stores/index.ts';

interface Account {
  balance: bigint;
  limits: { daily: bigint };
  holds: Array<{ id: string; amount: bigint }>;
}

const account = (balance: bigint): Account => ({ balance, limits: { daily: 1_000n }, holds: [{ id: 'h-1', amount: 5n }] });

function accounts(options: { freezeValues?: boolean } = {}): { map: GovernedMap<string, Account>; validated: bigint[]; ops: Array<`${OpType}:${Outcome}`> } {
  const validated: bigint[] = [];
  const ops: Array<`${OpType}:${Outcome}`> = [];
  const map = new GovernedMap<string, Account>({
    name: 'accounts',
    validate: (_k, next) => {
      validated.push(next.balance);
      return next.balance < 0n ? reject('BALANCE_UNDERFLOW') : true;
    },
    observers: [{ onOperation: (_map, op, _key, outcome) => void ops.push(`${op}:${outcome}`) }],
    ...options,
  });
  return { map, validated, ops };
}

describe('object values cannot change behind the map (freezeValues, default true)', () => {
  test('an update that changes the stored object in place throws where it does so, and the map, its validator and its observers saw no write', () => {
    const { map, validated, ops } = accounts();
    map.store('acct-1', account(100n));
    assert.throws(
      () =>
        map.update('acct-1', (a) => {
          a!.balance -= 500n; // would go negative without the validator ever seeing it
          return a!;
        }),
      TypeError,
    );
    assert.equal(map.load('acct-1')!.balance, 100n);
    assert.deepEqual(validated, [100n], 'the validator saw only the first store');
    assert.deepEqual(ops.filter((o) => o.startsWith('STORE')), ['STORE:ok']);
    // The way that works: a new value, validated like any write.
    assert.throws(() => map.update('acct-1', (a) => ({ ...a!, balance: a!.balance - 500n })), { code: 'GOVMAP_VALIDATION_REJECTED' });
    assert.equal(map.update('acct-1', (a) => ({ ...a!, balance: a!.balance - 40n })).balance, 60n);
  });

  test('nested plain objects and arrays are frozen too; the caller\'s object, once stored, can no longer change the map', () => {
    const { map } = accounts();
    const a = account(100n);
    map.store('acct-1', a);
    assert.throws(() => {
      a.balance = -1n;
    }, TypeError);
    assert.throws(() => {
      a.limits.daily = 0n;
    }, TypeError);
    assert.throws(() => a.holds.push({ id: 'h-2', amount: 1n }), TypeError);
    assert.throws(() => {
      a.holds[0]!.amount = 0n;
    }, TypeError);
    assert.deepEqual(map.load('acct-1'), account(100n));
  });

  test('an object the caller froze at its own level only is frozen through: what it holds cannot change the map either', () => {
    const { map, validated } = accounts();
    // Object.freeze is shallow: the limits and holds inside stay writable unless the map freezes them.
    map.store('acct-1', Object.freeze(account(100n)));
    assert.throws(() => {
      map.load('acct-1')!.limits.daily = -1n;
    }, TypeError);
    assert.throws(() => map.load('acct-1')!.holds.push({ id: 'h-2', amount: 1n }), TypeError);
    // Deeper: a shallow-frozen object nested in an unfrozen one.
    const limits = Object.freeze({ daily: 1_000n, nested: { weekly: 5_000n } });
    map.store('acct-2', { ...account(10n), limits });
    assert.throws(() => {
      limits.nested.weekly = 0n;
    }, TypeError);
    assert.deepEqual(map.load('acct-1'), account(100n));
    assert.deepEqual(validated, [100n, 10n]);
  });

  test('a refused write leaves the caller\'s object as it was (not frozen)', () => {
    const { map } = accounts();
    const bad = account(-5n);
    assert.throws(() => map.store('acct-1', bad), { code: 'GOVMAP_VALIDATION_REJECTED' });
    assert.equal(Object.isFrozen(bad), false);
    bad.balance = 5n;
    map.store('acct-1', bad);
    assert.equal(Object.isFrozen(bad), true);
  });

  test('values freezing cannot hold are stored as they are: typed arrays, class instances (own fields frozen), cycles', () => {
    const bytes = new GovernedMap<string, Uint8Array>({ name: 'bytes', validate: () => true });
    bytes.store('k', new Uint8Array([1, 2, 3]));
    assert.deepEqual([...bytes.load('k')!], [1, 2, 3]);

    class Position {
      qty = 1n;
    }
    const positions = new GovernedMap<string, Position>({ name: 'positions', validate: () => true });
    const p = new Position();
    positions.store('p', p);
    assert.throws(() => {
      p.qty = 2n;
    }, TypeError);

    const cyclic: { self?: unknown; n: number } = { n: 1 };
    cyclic.self = cyclic;
    const graph = new GovernedMap<string, typeof cyclic>({ name: 'graph', validate: () => true });
    graph.store('c', cyclic);
    assert.equal(Object.isFrozen(cyclic), true);
  });

  test('freezeValues: false keeps the caller\'s objects mutable (a map whose values only it touches)', () => {
    const { map } = accounts({ freezeValues: false });
    const a = account(100n);
    map.store('acct-1', a);
    a.balance = 7n;
    assert.equal(map.load('acct-1')!.balance, 7n, 'unfrozen: the change is in the map, unvalidated, as documented');
  });

  test('a store that keeps copies (shared memory) does not freeze the caller\'s object: reusing it cannot change the map', () => {
    const store = SharedRecordStore.create({ layout: { balance: 'int64' }, initialCapacity: 16 });
    const map = new GovernedMap<string, { balance: bigint }>({ name: 'shared_accounts', store, validate: (_k, v) => v.balance >= 0n || 'BALANCE_UNDERFLOW' });
    const scratch = { balance: 10n };
    map.store('a', scratch);
    assert.equal(Object.isFrozen(scratch), false);
    scratch.balance = 20n;
    map.store('b', scratch);
    assert.equal(map.load('a')!.balance, 10n);
    assert.equal(map.load('b')!.balance, 20n);
  });

  test('freezeValues that is not a boolean is refused, naming the option', () => {
    assert.throws(
      () => new GovernedMap<string, Account>({ name: 'accounts', validate: () => true, freezeValues: 'yes' as unknown as boolean }),
      (error: unknown) => error instanceof ConfigurationError && /freezeValues/.test(error.message),
    );
  });
});
