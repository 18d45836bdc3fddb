import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GovernedMap, ValidationError } from '../../src/index.ts';

/**
 * Model-based test: random sequences of every operation run against a GovernedMap and against
 * a reference model (a plain Map plus the validator's rule); after each step the two agree.
 * The rule: balances are never negative. maxKeys 8 with `reject` keeps capacity in play.
 */
interface Model {
  entries: Map<string, bigint>;
}
type Real = GovernedMap<string, bigint>;
const MAX_KEYS = 8;
const valid = (v: bigint): boolean => v >= 0n;

const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', '__proto__');
const amount = fc.bigInt({ min: -50n, max: 100n });

function check(model: Model, real: Real): void {
  assert.equal(real.size, model.entries.size);
  assert.deepEqual(new Map(real.entries()), model.entries);
}

function expectWrite(model: Model, real: Real, k: string, next: bigint, act: () => void): void {
  const isNew = !model.entries.has(k);
  const refused = !valid(next) || (isNew && model.entries.size >= MAX_KEYS);
  if (refused) {
    assert.throws(act, (e: unknown) => (e as { code?: string }).code === 'GOVMAP_VALIDATION_REJECTED' || (e as { code?: string }).code === 'GOVMAP_CAPACITY_EXCEEDED');
  } else {
    act();
    model.entries.set(k, next);
  }
  check(model, real);
}

class Store implements fc.Command<Model, Real> {
  readonly k: string;
  readonly v: bigint;
  constructor(k: string, v: bigint) {
    this.k = k;
    this.v = v;
  }
  check = (): boolean => true;
  run(model: Model, real: Real): void {
    expectWrite(model, real, this.k, this.v, () => real.store(this.k, this.v));
  }
  toString = (): string => `store(${this.k}, ${this.v})`;
}

class Update implements fc.Command<Model, Real> {
  readonly k: string;
  readonly delta: bigint;
  constructor(k: string, delta: bigint) {
    this.k = k;
    this.delta = delta;
  }
  check = (): boolean => true;
  run(model: Model, real: Real): void {
    const previous = model.entries.get(this.k);
    if (previous === undefined) {
      assert.throws(() =>
        real.update(this.k, (b) => {
          if (b === undefined) throw new Error('ACCOUNT_NOT_FOUND');
          return b + this.delta;
        }),
      );
      check(model, real);
      return;
    }
    if (this.delta === 0n) {
      const before = real.counters.storesOk;
      assert.equal(real.update(this.k, (b) => b! + 0n), previous);
      assert.equal(real.counters.storesOk, before);
      return;
    }
    expectWrite(model, real, this.k, previous + this.delta, () => real.update(this.k, (b) => b! + this.delta));
  }
  toString = (): string => `update(${this.k}, +${this.delta})`;
}

class Delete implements fc.Command<Model, Real> {
  readonly k: string;
  constructor(k: string) {
    this.k = k;
  }
  check = (): boolean => true;
  run(model: Model, real: Real): void {
    assert.equal(real.delete(this.k), model.entries.delete(this.k));
    check(model, real);
  }
  toString = (): string => `delete(${this.k})`;
}

class LoadAndDelete implements fc.Command<Model, Real> {
  readonly k: string;
  constructor(k: string) {
    this.k = k;
  }
  check = (): boolean => true;
  run(model: Model, real: Real): void {
    const expected = model.entries.get(this.k);
    model.entries.delete(this.k);
    assert.equal(real.loadAndDelete(this.k), expected);
    check(model, real);
  }
  toString = (): string => `loadAndDelete(${this.k})`;
}

class Load implements fc.Command<Model, Real> {
  readonly k: string;
  constructor(k: string) {
    this.k = k;
  }
  check = (): boolean => true;
  run(model: Model, real: Real): void {
    assert.equal(real.load(this.k), model.entries.get(this.k));
    assert.equal(real.has(this.k), model.entries.has(this.k));
  }
  toString = (): string => `load(${this.k})`;
}

class LoadOrStore implements fc.Command<Model, Real> {
  readonly k: string;
  readonly v: bigint;
  constructor(k: string, v: bigint) {
    this.k = k;
    this.v = v;
  }
  check = (): boolean => true;
  run(model: Model, real: Real): void {
    const existing = model.entries.get(this.k);
    if (existing !== undefined) {
      assert.deepEqual(real.loadOrStore(this.k, this.v), { value: existing, loaded: true });
      return;
    }
    expectWrite(model, real, this.k, this.v, () => assert.deepEqual(real.loadOrStore(this.k, this.v), { value: this.v, loaded: false }));
  }
  toString = (): string => `loadOrStore(${this.k}, ${this.v})`;
}

class CompareAndSwap implements fc.Command<Model, Real> {
  readonly k: string;
  readonly expectCurrent: boolean;
  readonly v: bigint;
  constructor(k: string, expectCurrent: boolean, v: bigint) {
    this.k = k;
    this.expectCurrent = expectCurrent;
    this.v = v;
  }
  check = (): boolean => true;
  run(model: Model, real: Real): void {
    const current = model.entries.get(this.k);
    const expected = this.expectCurrent ? current : (current ?? 0n) + 1n;
    if (!Object.is(expected, current)) {
      assert.equal(real.compareAndSwap(this.k, expected, this.v), false);
      check(model, real);
      return;
    }
    expectWrite(model, real, this.k, this.v, () => assert.equal(real.compareAndSwap(this.k, expected, this.v), true));
  }
  toString = (): string => `cas(${this.k}, ${this.expectCurrent}, ${this.v})`;
}

class RangeBounded implements fc.Command<Model, Real> {
  readonly start: string;
  readonly end: string;
  readonly inclusive: boolean;
  constructor(start: string, end: string, inclusive: boolean) {
    this.start = start;
    this.end = end;
    this.inclusive = inclusive;
  }
  check = (): boolean => true;
  run(model: Model, real: Real): void {
    if (this.start > this.end) {
      assert.throws(() => real.entries({ start: this.start, end: this.end, inclusive: this.inclusive }), (e: unknown) => (e as { code?: unknown }).code === 'GOVMAP_RANGE_BOUNDS_REVERSED');
      return;
    }
    const expected = [...model.entries.keys()]
      .filter((k) => k >= this.start && (this.inclusive ? k <= this.end : k < this.end))
      .sort();
    assert.deepEqual(real.entries({ start: this.start, end: this.end, inclusive: this.inclusive }).map(([k]) => k), expected);
  }
  toString = (): string => `range(${this.start}, ${this.end}, ${this.inclusive})`;
}

const commands = [
  fc.tuple(key, amount).map(([k, v]) => new Store(k, v)),
  fc.tuple(key, fc.bigInt({ min: -60n, max: 60n })).map(([k, d]) => new Update(k, d)),
  key.map((k) => new Delete(k)),
  key.map((k) => new LoadAndDelete(k)),
  key.map((k) => new Load(k)),
  fc.tuple(key, amount).map(([k, v]) => new LoadOrStore(k, v)),
  fc.tuple(key, fc.boolean(), amount).map(([k, e, v]) => new CompareAndSwap(k, e, v)),
  fc.tuple(key, key, fc.boolean()).map(([s, e, i]) => new RangeBounded(s, e, i)),
];

test('GovernedMap behaves like its reference model under any sequence of operations', () => {
  fc.assert(
    fc.property(fc.commands(commands, { maxCommands: 200 }), (cmds) => {
      const real = new GovernedMap<string, bigint>({ name: 'model', validate: (_k, v) => (valid(v) ? true : 'NEGATIVE'), maxKeys: MAX_KEYS });
      fc.modelRun(() => ({ model: { entries: new Map() }, real }), cmds);
      // The counters agree with what happened: every refusal was counted with its reason.
      let refusals = 0;
      for (const count of real.counters.rejectionsByReason.values()) refusals += count;
      assert.equal(refusals, real.counters.storesRejected);
    }),
    { numRuns: 300 },
  );
});

test('ValidationError is the refusal class (sanity of the model above)', () => {
  const real = new GovernedMap<string, bigint>({ name: 'm', validate: (_k, v) => v >= 0n || 'NEGATIVE' });
  assert.throws(() => real.store('a', -1n), ValidationError);
});
