import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { Advisor, RangeWeekCounts, isoWeek, isoWeekStart, registerAdvisorMetrics } from '../../src/advisor/index.ts';
import type { Advice, AdvisorStateStore, SignalId } from '../../src/advisor/index.ts';
import { ConfigurationError, GovernedMap } from '../../src/index.ts';
import { GcMonitor } from '../../src/sandbox/index.ts';
import { FileStateStore } from '../../src/state/file-store.ts';
import { MemoryStateStore } from '../../src/state/memory-store.ts';

const MINUTE = 60_000;
const WINDOW = 5 * MINUTE;
const anyValue = (): true => true;

class FakeClock {
  now: number;
  constructor(start = Date.UTC(2025, 0, 6, 9, 0, 0)) {
    this.now = start;
  }
  readonly read = (): number => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}

const signal = (advice: Advice, id: SignalId): string => advice.signals.find((s) => s.id === id)!.status;
const only = (advisor: Advisor): Advice => {
  const all = advisor.advise();
  assert.equal(all.length, 1);
  return all[0]!;
};

/** Drives one 5-minute window of traffic: `loads` loads (a `missRate` share of absent keys) and `writes` stores. */
function traffic(map: GovernedMap<string, number>, loads: number, missRate: number, writes: number): void {
  const misses = Math.round(loads * missRate);
  for (let i = 0; i < loads; i++) map.load(i < misses ? `absent-${i}` : 'EURUSD');
  for (let i = 0; i < writes; i++) map.store('EURUSD', 10842 + i);
}

describe('miss ratio held while GC pauses rise', () => {
  test('fires only after 3 breached windows and with a rising GC trend, then recommends the shared-memory store', async () => {
    const clock = new FakeClock();
    const gc = new GcMonitor({ clock: clock.read, windowMs: WINDOW });
    const advisor = new Advisor({ clock: clock.read, gc });
    const quotes = new GovernedMap<string, number>({ name: 'fx_quotes', validate: anyValue });
    quotes.store('EURUSD', 10842);
    advisor.track(quotes);

    const statuses: string[] = [];
    for (let window = 0; window < 4; window++) {
      // GC: one pause a minute, 30% longer each window (200 ms -> 260 -> 338 -> 439): 0.33% of
      // the time and up, above the 0.1% floor under which GC is never called rising.
      for (let minute = 0; minute < 5; minute++) {
        gc.record('major', 200 * 1.3 ** window, clock.now + minute * MINUTE);
      }
      traffic(quotes, 400, 0.5, 10);
      clock.advance(WINDOW);
      await advisor.sample();
      statuses.push(signal(only(advisor), 'MISS_RATIO_WITH_GC_PRESSURE'));
    }
    // Windows 1-2: breached but not yet held; window 3: held, but the GC trend needs two whole
    // windows of GC history (it has them from window 2 on) -> fires at 3.
    assert.deepEqual(statuses, ['insufficient-data', 'insufficient-data', 'firing', 'firing']);
    const advice = only(advisor);
    assert.equal(advice.recommendation, 'shared-memory-store');
    assert.match(advice.reason, /miss ratio 50\.0% > 35\.0% for 4 consecutive 5-minute windows while GC pause time 1\.3x the window before/);
    assert.equal(signal(advice, 'READ_WRITE_RATIO'), 'clear');
    assert.equal(advice.evidence.readWrite.ratio, 40);
  });

  test('a held miss ratio with flat GC does not fire; a quiet window resets the run', async () => {
    const clock = new FakeClock();
    const gc = new GcMonitor({ clock: clock.read, windowMs: WINDOW });
    const advisor = new Advisor({ clock: clock.read, gc });
    const quotes = new GovernedMap<string, number>({ name: 'fx_quotes', validate: anyValue });
    advisor.track(quotes);
    for (let window = 0; window < 4; window++) {
      for (let minute = 0; minute < 5; minute++) gc.record('major', 20, clock.now + minute * MINUTE);
      traffic(quotes, 400, 0.6, 10);
      clock.advance(WINDOW);
      await advisor.sample();
    }
    assert.equal(signal(only(advisor), 'MISS_RATIO_WITH_GC_PRESSURE'), 'clear');
    assert.match(only(advisor).signals[0]!.summary, /GC pauses are not rising/);
    // 50 loads is too few to judge: the run of breached windows starts over.
    traffic(quotes, 50, 1, 0);
    clock.advance(WINDOW);
    await advisor.sample();
    assert.equal(only(advisor).evidence.missRatio.breachedWindows, null);
    assert.equal(signal(only(advisor), 'MISS_RATIO_WITH_GC_PRESSURE'), 'insufficient-data');
  });

  test('without a GC monitor a held miss ratio is reported as lacking data, never as clear', async () => {
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read });
    const quotes = new GovernedMap<string, number>({ name: 'fx_quotes', validate: anyValue });
    advisor.track(quotes);
    for (let window = 0; window < 3; window++) {
      traffic(quotes, 400, 0.9, 10);
      clock.advance(WINDOW);
      await advisor.sample();
    }
    const advice = only(advisor);
    assert.equal(signal(advice, 'MISS_RATIO_WITH_GC_PRESSURE'), 'insufficient-data');
    assert.match(advice.signals[0]!.summary, /GC pause trend is unknown/);
    assert.equal(advice.recommendation, 'stay');
  });
});

describe('size and shape of the workload', () => {
  test('more than 50,000 keys in one instance: move to the Redis store', async () => {
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read });
    const positions = new GovernedMap<string, number>({ name: 'positions', validate: anyValue });
    for (let i = 0; i <= 50_000; i++) positions.store(`pos-${i}`, i);
    advisor.track(positions);
    clock.advance(WINDOW);
    await advisor.sample();
    const advice = only(advisor);
    assert.equal(signal(advice, 'KEY_COUNT'), 'firing');
    assert.equal(advice.recommendation, 'redis-store');
    assert.match(advice.reason, /50,001 keys in one instance > 50,000/);
  });

  test('under 20 reads per write: not a map workload, whatever else fires', async () => {
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read });
    const orders = new GovernedMap<string, number>({ name: 'open_orders', validate: anyValue });
    for (let i = 0; i <= 50_000; i++) orders.store(`ord-${i}`, i);
    advisor.track(orders);
    for (let window = 0; window < 3; window++) {
      traffic(orders, 150, 0, 10); // 15:1
      clock.advance(WINDOW);
      await advisor.sample();
    }
    const advice = only(advisor);
    assert.equal(signal(advice, 'READ_WRITE_RATIO'), 'firing');
    assert.equal(signal(advice, 'KEY_COUNT'), 'firing');
    assert.equal(advice.recommendation, 'not-a-map-workload');
    assert.equal(advice.evidence.readWrite.reads, 450);
    assert.equal(advice.evidence.readWrite.writes, 30);
  });

  test('a read-only map is read-mostly by definition; a healthy map stays', async () => {
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read });
    const holidays = new GovernedMap<string, number>({ name: 'holidays', validate: anyValue });
    holidays.store('EURUSD', 1);
    advisor.track(holidays);
    clock.advance(WINDOW);
    await advisor.sample(); // the seeding store falls in this window
    traffic(holidays, 500, 0, 0);
    clock.advance(WINDOW);
    await advisor.sample();
    const advice = only(advisor);
    assert.equal(signal(advice, 'READ_WRITE_RATIO'), 'clear');
    assert.equal(advice.recommendation, 'stay');
    assert.match(advice.reason, /not enough data yet for .*RANGE_GROWTH_WEEK_OVER_WEEK/);
  });

  test('bad options are refused with the option named', () => {
    assert.throws(() => new Advisor({ windowMs: 10 }), (e: unknown) => e instanceof ConfigurationError && /windowMs/.test(e.message));
    // Beyond a Node.js timer's limit the window would close every millisecond.
    assert.throws(() => new Advisor({ windowMs: 3e9 }), (e: unknown) => e instanceof ConfigurationError && /"windowMs": must be at most 2147483647 ms/.test(e.message));
    assert.equal(new Advisor({ windowMs: 2_147_483_647 }).windowMs, 2_147_483_647);
    assert.throws(() => new Advisor({ thresholds: { missRatio: 35 } }), /thresholds\.missRatio.*between 0 and 1/);
    assert.throws(() => new Advisor({ instance: 'pod/7' }), /"instance"/);
    assert.throws(() => new Advisor({ keyPrefix: 'govmap' }), /keyPrefix/);
  });

  test('a misspelt threshold is refused with the one it may mean, not ignored with the default left in force', () => {
    // `maxkeys: 10_000` silently left maxKeys at 50,000: the map the team gated at 10k keys was never flagged.
    assert.throws(
      () => new Advisor({ thresholds: { maxkeys: 10_000 } as never }),
      (e: unknown) => e instanceof ConfigurationError && e.code === 'GOVMAP_INVALID_CONFIGURATION' && /"thresholds\.maxkeys"/.test(e.message) && /did you mean "maxKeys"/.test(e.message),
    );
    assert.throws(() => new Advisor({ thresholds: null as never }), (e: unknown) => e instanceof ConfigurationError && /thresholds/.test(e.message));
    // A known threshold left undefined means its default, as for every other option.
    assert.equal(new Advisor({ thresholds: { maxKeys: undefined, missRatio: 0.5 } }).thresholds.maxKeys, 50_000);
    assert.deepEqual(Object.keys(new Advisor({ thresholds: { missRatio: 0.5 } }).thresholds).sort(), ['maxKeys', 'minBaselineRanges', 'minReadWriteRatio', 'missRatio', 'missRatioWindows', 'rangeGrowth']);
  });
});

describe('range calls per ISO week survive restarts through the state store', () => {
  const routeTable = (): GovernedMap<string, string> => {
    const map = new GovernedMap<string, string>({ name: 'route_table', validate: anyValue });
    map.store('org:1001|pay', 'clearing-a');
    return map;
  };
  const ranges = (map: GovernedMap<string, string>, n: number): void => {
    for (let i = 0; i < n; i++) map.range(() => undefined);
  };

  async function restartAcrossWeeks(store: AdvisorStateStore): Promise<Advice> {
    const clock = new FakeClock(); // Monday 2025-01-06, ISO week 2025-W02
    // Process 1 runs in W02 and stops (its last partial window is persisted on stop).
    const first = await new Advisor({ clock: clock.read, stateStore: store, instance: 'clearing-1' }).start();
    const before = routeTable();
    first.track(before);
    ranges(before, 120);
    clock.advance(WINDOW);
    await first.sample();
    ranges(before, 30);
    await first.stop();
    // Process 2 starts the next week with fresh counters (a new map instance).
    clock.advance(7 * 24 * 60 * MINUTE);
    const second = new Advisor({ clock: clock.read, stateStore: store, instance: 'clearing-1' });
    const after = routeTable();
    second.track(after);
    await second.start();
    ranges(after, 240);
    clock.advance(WINDOW);
    await second.sample();
    await second.stop();
    return only(second);
  }

  test('in a memory state store: W03 so far (240) > 1.5 x all of W02 (150)', async () => {
    const advice = await restartAcrossWeeks(new MemoryStateStore());
    assert.deepEqual(advice.evidence.ranges.previous, { week: '2025-W02', count: 150 });
    assert.deepEqual(advice.evidence.ranges.current, { week: '2025-W03', count: 240 });
    assert.equal(signal(advice, 'RANGE_GROWTH_WEEK_OVER_WEEK'), 'firing');
    assert.equal(advice.recommendation, 'shared-memory-store');
  });

  test('in a file state store (a real directory, read back by a new store instance)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-advisor-'));
    try {
      const advice = await restartAcrossWeeks(new FileStateStore({ directory: dir }));
      assert.equal(signal(advice, 'RANGE_GROWTH_WEEK_OVER_WEEK'), 'firing');
      const reread = new FileStateStore({ directory: dir });
      const entry = await reread.get('/govmap/advisor/govmap/clearing-1/range-weeks/route_table');
      assert.ok(entry !== undefined);
      const value = JSON.parse(entry.value);
      assert.deepEqual(value.weeks, { '2025-W02': 150, '2025-W03': 240 });
      assert.equal(value.map, 'route_table');
      await reread.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('completed weeks: W03 (200) vs W02 (100) is +100%, judged all through W04', () => {
    const e = new RangeWeekCounts('/govmap/advisor/t/i/range-weeks/m', 'm');
    e.add('2025-W02', 100);
    e.add('2025-W03', 200);
    assert.equal(e.count('2025-W03'), 200);
    assert.equal(isoWeek(isoWeekStart(Date.UTC(2025, 0, 22))), '2025-W04');
  });

  test('a stored value it did not write is left untouched; counting goes on in memory; a repair is adopted', async () => {
    const store = new MemoryStateStore();
    const key = '/govmap/advisor/govmap/clearing-1/range-weeks/route_table';
    await store.compareAndSet(key, '{"v":1,"map":"route_table","weeks":{"2025-W02":"lots"}}', null);
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read, stateStore: store, instance: 'clearing-1' });
    const map = routeTable();
    advisor.track(map);
    await advisor.start();
    ranges(map, 10);
    clock.advance(WINDOW);
    await advisor.sample();
    const advice = only(advisor);
    assert.ok(advice.evidence.notes.some((n) => /GOVMAP|left untouched/.test(n) && /count of 2025-W02 must be a non-negative whole number/.test(n)), advice.evidence.notes.join('\n'));
    assert.equal(advice.evidence.ranges.current!.count, 10, 'counted in memory');
    assert.equal((await store.get(key))!.value, '{"v":1,"map":"route_table","weeks":{"2025-W02":"lots"}}', 'not overwritten');
    const registry = new Registry();
    registerAdvisorMetrics(advisor, registry);
    assert.match(await registry.metrics(), /govmap_advisor_state_problem\{map="route_table"\} 1/);

    // An operator repairs the value: the next window adopts it and adds what was counted meanwhile.
    const stored = (await store.get(key))!;
    await store.compareAndSet(key, '{"v":1,"map":"route_table","weeks":{"2025-W02":7}}', stored.revision);
    ranges(map, 5);
    clock.advance(WINDOW);
    await advisor.sample();
    assert.deepEqual(JSON.parse((await store.get(key))!.value).weeks, { '2025-W02': 22 });
    assert.deepEqual(advisor.persistenceProblems(), [{ map: 'route_table', problem: null }]);
  });

  test('a stored value without a schema version is named as such, not as "unknown schema version undefined"', async () => {
    const store = new MemoryStateStore();
    const key = '/govmap/advisor/govmap/clearing-1/range-weeks/route_table';
    await store.compareAndSet(key, '{"map":"route_table","weeks":{}}', null);
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read, stateStore: store, instance: 'clearing-1' });
    const map = routeTable();
    advisor.track(map);
    await advisor.start();
    ranges(map, 1);
    clock.advance(WINDOW);
    await advisor.sample();
    const notes = only(advisor).evidence.notes.join('\n');
    assert.match(notes, /has no schema version \(field "v"; this version writes 1\)/, notes);
    assert.doesNotMatch(notes, /undefined/);
  });

  /** A memory state store that refuses every call, as an unreachable etcd does, while `down`. */
  function unreachableWhile(state: { down: boolean }): { inner: MemoryStateStore; flaky: AdvisorStateStore } {
    const inner = new MemoryStateStore();
    const refused = (): Promise<never> => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:2389'));
    const flaky: AdvisorStateStore = {
      kind: 'flaky',
      get: (key) => (state.down ? refused() : inner.get(key)),
      compareAndSet: (key, value, expected) => (state.down ? refused() : inner.compareAndSet(key, value, expected)),
    };
    return { inner, flaky };
  }

  test('an unreachable store loses nothing: increments wait for it', async () => {
    const state = { down: true };
    const { inner, flaky } = unreachableWhile(state);
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read, stateStore: flaky, instance: 'clearing-1' });
    const map = routeTable();
    advisor.track(map);
    await advisor.start();
    for (let window = 0; window < 3; window++) {
      ranges(map, 10);
      clock.advance(WINDOW);
      await advisor.sample();
    }
    assert.match(advisor.persistenceProblems()[0]!.problem!, /unavailable \(connect ECONNREFUSED/);
    state.down = false;
    clock.advance(WINDOW);
    await advisor.sample();
    const stored = await inner.get('/govmap/advisor/govmap/clearing-1/range-weeks/route_table');
    assert.deepEqual(JSON.parse(stored!.value).weeks, { '2025-W02': 30 });
    assert.equal(advisor.persistenceProblems()[0]!.problem, null);
  });

  /** A started advisor on a fake clock, following a fresh route_table, counting its weeks in `store`. */
  async function trackedRouteTable(store: AdvisorStateStore): Promise<{ clock: FakeClock; advisor: Advisor; map: GovernedMap<string, string> }> {
    const clock = new FakeClock();
    const advisor = await new Advisor({ clock: clock.read, stateStore: store, instance: 'clearing-1' }).start();
    const map = routeTable();
    advisor.track(map);
    return { clock, advisor, map };
  }

  test('a disposed map leaves the advice; its last range calls are persisted at the next window, and one created again under its name goes on from them', async () => {
    const store = new MemoryStateStore();
    const { clock, advisor, map } = await trackedRouteTable(store);
    ranges(map, 40);
    clock.advance(WINDOW);
    await advisor.sample();
    ranges(map, 7); // after the last window, before dispose: still counted
    map.dispose();
    clock.advance(WINDOW);
    await advisor.sample();
    // Before, its advice stayed frozen at its last windows for as long as the process ran.
    assert.deepEqual(advisor.advise(), []);
    const stored = await store.get('/govmap/advisor/govmap/clearing-1/range-weeks/route_table');
    assert.deepEqual(JSON.parse(stored!.value).weeks, { '2025-W02': 47 });
    const again = routeTable();
    advisor.track(again);
    await advisor.sample();
    assert.deepEqual(only(advisor).evidence.ranges.current, { week: '2025-W02', count: 47 });
    await advisor.stop();
  });

  test('a disposed map whose counts cannot be persisted yet leaves the advice at once; its counts are persisted once the store is back', async () => {
    const state = { down: false };
    const { inner, flaky } = unreachableWhile(state);
    const { clock, advisor, map } = await trackedRouteTable(flaky);
    ranges(map, 12);
    state.down = true;
    map.dispose();
    clock.advance(WINDOW);
    await advisor.sample();
    // Not advised on (its frozen last windows would be advice about a map that no longer
    // exists), but still followed: its unpersisted counts are named as a persistence problem.
    assert.deepEqual(advisor.advise(), []);
    assert.match(advisor.persistenceProblems()[0]!.problem!, /unavailable \(connect ECONNREFUSED/);
    state.down = false;
    clock.advance(WINDOW);
    await advisor.sample();
    assert.deepEqual(advisor.advise(), []);
    assert.deepEqual(JSON.parse((await inner.get('/govmap/advisor/govmap/clearing-1/range-weeks/route_table'))!.value).weeks, { '2025-W02': 12 });
  });

  test('a map created again under a disposed map\'s name before the next window: the disposed one\'s last range calls still count', async () => {
    const store = new MemoryStateStore();
    const { clock, advisor, map } = await trackedRouteTable(store);
    ranges(map, 40);
    clock.advance(WINDOW);
    await advisor.sample();
    ranges(map, 7); // after the last window, before dispose
    map.dispose();
    const again = routeTable(); // a rebuilt cache, tracked at once (before the next window)
    advisor.track(again);
    ranges(again, 3);
    clock.advance(WINDOW);
    await advisor.sample();
    // Before, the 7 were dropped: the new map replaced the old one before any window counted them.
    assert.deepEqual(only(advisor).evidence.ranges.current, { week: '2025-W02', count: 50 });
    assert.deepEqual(JSON.parse((await store.get('/govmap/advisor/govmap/clearing-1/range-weeks/route_table'))!.value).weeks, { '2025-W02': 50 });
    await advisor.stop();
  });

  test('without a state store, a map created again under a retired map\'s name goes on from its weekly counts', async () => {
    const clock = new FakeClock();
    const advisor = await new Advisor({ clock: clock.read }).start();
    const map = routeTable();
    advisor.track(map);
    ranges(map, 40);
    clock.advance(WINDOW);
    await advisor.sample();
    map.dispose();
    clock.advance(WINDOW);
    await advisor.sample();
    assert.deepEqual(advisor.advise(), []);
    const again = routeTable();
    advisor.track(again);
    ranges(again, 2);
    clock.advance(WINDOW);
    await advisor.sample();
    // Before, the 40 were gone with the retired map: a rebuilt map started its weeks from zero.
    assert.deepEqual(only(advisor).evidence.ranges.current, { week: '2025-W02', count: 42 });
    await advisor.stop();
  });

  test('untrack() then track() of a map rebuilt under the same name: the new map stays followed', async () => {
    const store = new MemoryStateStore();
    const { clock, advisor, map } = await trackedRouteTable(store);
    ranges(map, 5);
    map.dispose();
    const untracked = advisor.untrack('route_table'); // settles later: it waits its turn after samples
    const again = routeTable();
    advisor.track(again);
    assert.equal(await untracked, true);
    ranges(again, 2);
    clock.advance(WINDOW);
    await advisor.sample();
    // Before, the untrack removed whatever was followed under the name when its turn came: the new map.
    assert.deepEqual(only(advisor).evidence.ranges.current, { week: '2025-W02', count: 7 });
    await advisor.stop();
  });

  test('untrack() persists the map\'s last range calls and stops advising on it; an unknown name answers false', async () => {
    const store = new MemoryStateStore();
    const { advisor, map } = await trackedRouteTable(store);
    ranges(map, 5);
    assert.equal(await advisor.untrack('route_table'), true);
    assert.deepEqual(advisor.advise(), []);
    assert.deepEqual(JSON.parse((await store.get('/govmap/advisor/govmap/clearing-1/range-weeks/route_table'))!.value).weeks, { '2025-W02': 5 });
    assert.equal(await advisor.untrack('route_table'), false);
    await advisor.stop();
  });
});

describe('concurrent writers of one key (fast-check scheduler)', () => {
  test('two processes adding to the same weekly counts never lose or double an increment', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 50 })), { minLength: 1, maxLength: 8 }),
        async (s, increments) => {
          const inner = new MemoryStateStore();
          // Every call is delayed to a point the scheduler picks, and so is its reply.
          const scheduled: AdvisorStateStore = {
            kind: 'scheduled',
            get: async (key) => {
              await s.schedule(Promise.resolve(), 'get');
              return s.schedule(inner.get(key), 'get reply');
            },
            compareAndSet: async (key, value, expected) => {
              await s.schedule(Promise.resolve(), 'cas');
              return s.schedule(inner.compareAndSet(key, value, expected), 'cas reply');
            },
          };
          const key = '/govmap/advisor/svc/shared/range-weeks/m';
          const a = new RangeWeekCounts(key, 'm');
          const b = new RangeWeekCounts(key, 'm');
          const now = Date.UTC(2025, 0, 8);
          const week = isoWeek(now);
          let total = 0;
          const syncs: Promise<void>[] = [];
          for (const [toA, n] of increments) {
            (toA ? a : b).add(week, n);
            total += n;
            syncs.push((toA ? a : b).sync(scheduled, now));
          }
          await s.waitFor(Promise.all(syncs));
          // Whatever lost its compare-and-set races is still pending: flush both, one at a time.
          for (let round = 0; round < 3; round++) {
            const flush = Promise.all([a.sync(scheduled, now)]);
            await s.waitFor(flush);
            const flushB = Promise.all([b.sync(scheduled, now)]);
            await s.waitFor(flushB);
          }
          const stored = await inner.get(key);
          assert.equal(JSON.parse(stored!.value).weeks[week], total);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('a map that cannot be read', () => {
  /** A map whose store's getters throw while `down` (a custom store whose backend went away). */
  function brokenStoreMap(name: string): { map: GovernedMap<string, number>; down: { counters: boolean; size: boolean } } {
    const inner = new GovernedMap<string, number>({ name, validate: anyValue });
    const down = { counters: false, size: false };
    const map = new Proxy(inner, {
      get(target, property) {
        if (property === 'counters' && down.counters) throw new Error('store backend down');
        if (property === 'size' && down.size) throw new Error('store backend down');
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    return { map, down };
  }

  test('does not stop the windows of the others, nor advise(), nor the /metrics scrape; it is named in its notes', async () => {
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read });
    const registry = new Registry();
    registerAdvisorMetrics(advisor, registry);
    const broken = brokenStoreMap('custom_ledger');
    const quotes = new GovernedMap<string, number>({ name: 'fx_quotes', validate: anyValue });
    advisor.track(broken.map).track(quotes);
    broken.down.counters = true;
    broken.down.size = true;
    for (let window = 0; window < 3; window++) {
      traffic(quotes, 400, 0, 50); // 8 reads per write: not a map workload
      clock.advance(WINDOW);
      await advisor.sample();
    }
    assert.equal(advisor.samples, 3);
    const advice = advisor.advise();
    const fx = advice.find((a) => a.map === 'fx_quotes')!;
    assert.equal(fx.recommendation, 'not-a-map-workload');
    const custom = advice.find((a) => a.map === 'custom_ledger')!;
    assert.equal(custom.recommendation, 'stay');
    assert.ok(custom.evidence.notes.some((n) => /cannot read map "custom_ledger".*store backend down/.test(n)), custom.evidence.notes.join('\n'));
    const scrape = await registry.metrics();
    assert.match(scrape, /govmap_advisor_recommendation\{map="fx_quotes",recommendation="not-a-map-workload"\} 1/);

    // Back: its windows are judged again, and the note is gone.
    broken.down.counters = false;
    broken.down.size = false;
    clock.advance(WINDOW);
    await advisor.sample();
    assert.deepEqual(advisor.advise().find((a) => a.map === 'custom_ledger')!.evidence.notes.filter((n) => n.includes('cannot read')), []);
  });

  test('a key count that cannot be read keeps the last one and the window is still judged', async () => {
    const clock = new FakeClock();
    const advisor = new Advisor({ clock: clock.read });
    const broken = brokenStoreMap('custom_ledger');
    broken.map.store('EURUSD', 1);
    advisor.track(broken.map);
    broken.down.size = true;
    traffic(broken.map, 400, 0.5, 10);
    clock.advance(WINDOW);
    await advisor.sample();
    const advice = only(advisor);
    assert.equal(advice.evidence.keys, 1);
    assert.equal(advice.evidence.missRatio.latest, 0.5);
    assert.ok(advice.evidence.notes.some((n) => /key count of map "custom_ledger".*store backend down/.test(n)), advice.evidence.notes.join('\n'));
  });
});

describe('range calls at the ISO week boundary (Monday 00:00 UTC)', () => {
  /**
   * Range calls were counted when a window closed, into the week of the closing time: calls
   * made on Sunday evening in a window that closes after midnight (every window that straddles
   * it: up to windowMs of them, a whole day with daily windows) went to the next week, and
   * "previous week" / "week in progress" compared the wrong calls.
   */
  test('calls made on Sunday before midnight count in that week, though their window closes on Monday', async (t) => {
    // Sunday 2025-01-12 23:57:30 UTC, the last minutes of 2025-W02; real timers, mocked.
    t.mock.timers.enable({ apis: ['setInterval', 'setTimeout', 'Date'], now: Date.UTC(2025, 0, 12, 23, 57, 30) });
    const advisor = new Advisor({ windowMs: WINDOW, instance: 'clearing-1' });
    const ledger = new GovernedMap<string, string>({ name: 'ledger', validate: anyValue });
    ledger.store('acct-1', 'open');
    advisor.track(ledger);
    await advisor.start();
    try {
      t.mock.timers.tick(30_000); // 23:58: the end-of-week reconciliation ranges over the ledger
      for (let i = 0; i < 200; i++) ledger.range(() => undefined);
      for (let minute = 0; minute < 3; minute++) t.mock.timers.tick(MINUTE); // 00:01 Monday, W03
      for (let i = 0; i < 7; i++) ledger.range(() => undefined);
      t.mock.timers.tick(MINUTE + 30_000); // 00:02:30: the window closes
      await advisor.sample();
      assert.equal(advisor.samples, 2, 'the timer closed the window at 00:02:30, then the explicit sample');
      const { ranges } = only(advisor).evidence;
      assert.deepEqual(ranges.previous, { week: '2025-W02', count: 200 });
      assert.deepEqual(ranges.current, { week: '2025-W03', count: 7 });
    } finally {
      await advisor.stop();
    }
  });
});
