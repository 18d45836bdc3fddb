import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BreakerClusterSync, CircuitBreaker, ManualClock } from '../../src/breaker/index.ts';
import { MemoryStateStore } from '../../src/state/index.ts';
import type { StateStore } from '../../src/state/index.ts';

/**
 * "Only one instance at a time probes a recovering dependency", checked over interleavings:
 * fast-check's scheduler decides when each store request is executed and when its answer
 * arrives, for every instance independently, so compare-and-sets race in every order. After
 * the OPEN wait, at no moment may two instances be HALF_OPEN, and once the prober's probe
 * passes every instance must end CLOSED, exactly one probe call must have been made for the whole
 * fleet, and the right must end released (an instance that won it too late must give it back, or
 * the next outage would leave everyone else waiting for it).
 */
function scheduledStore(inner: MemoryStateStore, s: fc.Scheduler): StateStore {
  // The request runs when the scheduler lets it reach the "server", and its answer comes back
  // when the scheduler lets it: two independent delays per operation.
  const via = <T>(label: string, run: () => Promise<T>): Promise<T> =>
    s
      .schedule(Promise.resolve(), `${label} sent`)
      .then(run)
      .then((result) => s.schedule(Promise.resolve(result), `${label} answered`));
  return {
    kind: 'scheduled-memory',
    get: (key) => via(`get ${key}`, () => inner.get(key)),
    list: (prefix) => via(`list ${prefix}`, () => inner.list(prefix)),
    compareAndSet: (key, value, expected, options) => via(`cas ${key}`, () => inner.compareAndSet(key, value, expected, options)),
    delete: (key, expected) => via(`delete ${key}`, () => inner.delete(key, expected)),
    grantLease: (ttl) => via('grant', () => inner.grantLease(ttl)),
    watch: (prefix, handlers) => inner.watch(prefix, handlers),
    close: () => inner.close(),
  };
}

test('whatever order the store answers in, at most one instance is HALF_OPEN, and all close after the probe passes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), fc.integer({ min: 2, max: 4 }), async (s, n) => {
      const memory = new MemoryStateStore();
      const store = scheduledStore(memory, s);
      const clock = new ManualClock();
      let halfOpen = 0;
      let maxHalfOpen = 0;
      let probes = 0;
      const members = Array.from({ length: n }, (_, i) => {
        const sync = new BreakerClusterSync({ store, instance: `i${i}`, openQuorum: 0.5, probeRetryMs: 5, startTimeoutMs: 60_000, log: () => undefined });
        const breaker = new CircuitBreaker({ name: 'settlement', clock, openDurationMs: 1_000, halfOpenProbes: 1, timeoutMs: Infinity });
        breaker.onTransition((t) => {
          if (t.to === 'HALF_OPEN') halfOpen++;
          if (t.from === 'HALF_OPEN') halfOpen--;
          maxHalfOpen = Math.max(maxHalfOpen, halfOpen);
        });
        return { sync, breaker };
      });
      await s.waitFor(Promise.all(members.map((m) => m.sync.start())));
      for (const m of members) m.sync.attachBreaker(m.breaker);
      for (const m of members) m.breaker.adoptOpen();
      clock.advance(1_000); // every wait ends at once: all of them want to probe

      // Drive: run scheduled store traffic (and the syncs' own timers) until every breaker is
      // CLOSED; whoever gets to HALF_OPEN makes one successful probe call.
      for (let step = 0; step < 2_000 && !members.every((m) => m.breaker.state === 'CLOSED'); step++) {
        for (const m of members) {
          if (m.breaker.state !== 'HALF_OPEN') continue;
          probes++;
          void m.breaker.execute(() => 'ok');
        }
        if (s.count() > 0) await s.waitOne();
        else await new Promise((resolve) => setTimeout(resolve, 1));
      }
      assert.ok(maxHalfOpen <= 1, `${maxHalfOpen} instances were HALF_OPEN at once`);
      assert.deepEqual(
        members.map((m) => m.breaker.state),
        members.map(() => 'CLOSED'),
        'every instance closes once the probe passed',
      );
      assert.equal(probes, 1, 'one probe answered for the whole fleet');
      // Let the last store traffic settle: nobody may be left holding the right to probe.
      for (let step = 0; step < 500 && (s.count() > 0 || (await memory.get('/govmap/circuit-probe/settlement')) !== undefined); step++) {
        if (s.count() > 0) await s.waitOne();
        else await new Promise((resolve) => setTimeout(resolve, 1));
      }
      assert.equal(await memory.get('/govmap/circuit-probe/settlement'), undefined, 'the right to probe is released');
      await s.waitFor(Promise.all(members.map((m) => m.sync.close())));
      await memory.close();
    }),
    { numRuns: 60 },
  );
});

/**
 * The late win, pinned: an instance's request for the probe right reaches the store only after
 * another instance probed, closed and gave the right back, and after this instance's own
 * breaker closed on that verdict. The request then succeeds; the instance must give the right
 * back at once, or the next outage leaves every other instance waiting for a prober that never
 * probes (OPEN until the lease of the late winner dies with its process).
 */
test('a probe right won too late (its breaker already closed on the prober\'s verdict) is given back, and the next outage is probed', async () => {
  const memory = new MemoryStateStore();
  const probeKey = '/govmap/circuit-probe/settlement';
  let releaseHeld!: () => void;
  const held = new Promise<void>((resolve) => (releaseHeld = resolve));
  let heldRequests = 0;
  let heldAnswered = false;
  // b's requests for the probe right wait at the "server" until released.
  const slow: StateStore = {
    kind: 'held-memory',
    get: (key) => memory.get(key),
    list: (prefix) => memory.list(prefix),
    compareAndSet: (key, value, expected, options) => {
      if (key !== probeKey) return memory.compareAndSet(key, value, expected, options);
      heldRequests++;
      return held
        .then(() => memory.compareAndSet(key, value, expected, options))
        .finally(() => {
          heldAnswered = true;
        });
    },
    delete: (key, expected) => memory.delete(key, expected),
    grantLease: (ttl) => memory.grantLease(ttl),
    watch: (prefix, handlers) => memory.watch(prefix, handlers),
    close: () => memory.close(),
  };
  const until = async (what: string, check: () => boolean | Promise<boolean>): Promise<void> => {
    for (let i = 0; !(await check()); i++) {
      if (i > 400) assert.fail(`timed out waiting until ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  const clock = new ManualClock();
  const member = async (name: string, store: StateStore): Promise<{ sync: BreakerClusterSync; breaker: CircuitBreaker }> => {
    const sync = new BreakerClusterSync({ store, instance: name, openQuorum: 0.5, probeRetryMs: 5, startTimeoutMs: 60_000, log: () => undefined });
    await sync.start();
    const breaker = new CircuitBreaker({ name: 'settlement', clock, openDurationMs: 1_000, halfOpenProbes: 1, timeoutMs: Infinity });
    sync.attachBreaker(breaker);
    return { sync, breaker };
  };
  const a = await member('a', memory);
  const b = await member('b', slow);
  a.breaker.adoptOpen();
  b.breaker.adoptOpen();
  clock.advance(1_000);
  await until('a probes (b\'s request is held)', () => a.breaker.state === 'HALF_OPEN' && heldRequests > 0);
  assert.equal(b.breaker.state, 'OPEN');
  await a.breaker.execute(() => 'ok');
  await until('b closes on a\'s verdict and a gives the right back', async () => b.breaker.state === 'CLOSED' && (await memory.get(probeKey)) === undefined);

  releaseHeld(); // b's request lands now, on a free key: it wins, too late
  await until('b\'s request is answered', () => heldAnswered);
  await until('b gives the right it won too late back', async () => (await memory.get(probeKey)) === undefined && b.sync.probeHolder('settlement') === null);

  // The next outage: someone probes it.
  a.breaker.adoptOpen();
  b.breaker.adoptOpen();
  clock.advance(1_000);
  await until('an instance probes the next outage', () => a.breaker.state === 'HALF_OPEN' || b.breaker.state === 'HALF_OPEN');
  for (const m of [a, b]) await m.sync.close();
  await memory.close();
});
