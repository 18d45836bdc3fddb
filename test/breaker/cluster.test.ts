import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BreakerClusterSync, BreakerGroup, BreakerMetrics, BreakerSyncClosedError, CircuitBreaker, ManualClock, decodeSnapshot, encodeSnapshot } from '../../src/breaker/index.ts';
import { ConfigurationError } from '../../src/map/index.ts';
import type { CircuitBreakerOptions } from '../../src/breaker/index.ts';
import { mkdir, mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStateStore, MemoryStateStore } from '../../src/state/index.ts';
import type { StateStore } from '../../src/state/index.ts';

/**
 * The cluster policy on the in-process store: several "instances" (a sync and a breaker each)
 * share one MemoryStateStore exactly as processes share etcd. The same scenarios run against a
 * real etcd across real processes in etcd-cluster.test.ts; these pin the policy itself.
 */
const quiet = (): void => undefined;

/** Generous by default: it only ever waits for something that must happen, and a loaded CI box is slow. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const WINDOW_MS = 50;
/**
 * The OPEN wait outlasts every test that needs a breaker to stay OPEN (a restart resuming it, a
 * quorum of OPEN reports, the OPEN snapshot): with 400 ms, a CI box that starved this process
 * for that long after a trip saw the wait end mid-test (HALF_OPEN where OPEN was asserted, a
 * quorum never reached). Tests that need the wait to end set SHORT_OPEN_MS, or move a ManualClock.
 */
const options: CircuitBreakerOptions = { name: 'settlement', breachedWindowsToOpen: 1, minimumCalls: 4, windowMs: WINDOW_MS, openDurationMs: 60_000, halfOpenProbes: 2, timeoutMs: 1_000 };
const SHORT_OPEN_MS = 400;

async function instance(store: StateStore, name: string, extra: Partial<ConstructorParameters<typeof BreakerClusterSync>[0]> = {}, breakerOptions: Partial<CircuitBreakerOptions> = {}): Promise<{ sync: BreakerClusterSync; breaker: CircuitBreaker }> {
  const sync = new BreakerClusterSync({ store, instance: name, log: quiet, ...extra });
  await sync.start();
  const breaker = new CircuitBreaker({ ...options, ...breakerOptions });
  sync.attachBreaker(breaker);
  await sync.flush();
  return { sync, breaker };
}

/**
 * Both thresholds breached in one window: trips at once. Windows are aligned to the epoch, so a
 * burst begun just before a boundary could be split 2 + 2 across two windows, neither reaching
 * minimumCalls: the burst starts just after a boundary, and is repeated if it was split anyway
 * (a long GC pause mid-burst).
 */
async function trip(breaker: CircuitBreaker): Promise<void> {
  for (let attempt = 0; attempt < 3 && breaker.state !== 'OPEN'; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS - (Date.now() % WINDOW_MS) + 1));
    await Promise.all(Array.from({ length: 4 }, () => breaker.execute(() => Promise.reject(new Error('gateway down'))).catch(() => undefined)));
  }
  assert.equal(breaker.state, 'OPEN');
}

describe('cluster sync on the memory store', () => {
  test('its metrics name the member, not `instance` (Prometheus\'s own label for the scrape target)', async () => {
    const store = new MemoryStateStore();
    const a = await instance(store, 'clearing-a');
    const metrics = new BreakerMetrics().trackSync(a.sync);
    const text = await metrics.render();
    assert.match(text, /govmap_breaker_state_store_connected\{member="clearing-a",store="memory"\} 1/);
    assert.match(text, /govmap_breaker_state_store_events_total\{member="clearing-a",event="write"\} [1-9]/);
    assert.doesNotMatch(text, /\binstance="/);
    await a.sync.close();
    a.breaker.dispose();
  });

  test('a transition is published as the DESIGN.md snapshot under /govmap/circuit/<service>/<instance>', async () => {
    const store = new MemoryStateStore();
    const a = await instance(store, 'clearing-a');
    const initial = await store.get('/govmap/circuit/settlement/clearing-a');
    assert.equal(decodeSnapshot(initial!.value).ok && JSON.parse(initial!.value).state, 'CLOSED');
    await trip(a.breaker);
    await a.sync.flush();
    const entry = await store.get('/govmap/circuit/settlement/clearing-a');
    const published = JSON.parse(entry!.value) as Record<string, unknown>;
    assert.deepEqual(Object.keys(published), ['state', 'failures', 'timeouts', 'total', 'breachedWindows', 'since', 'version']);
    assert.equal(published.state, 'OPEN');
    assert.equal(published.failures, 4);
    assert.equal(a.sync.counters.writes, 2, 'written on transitions only: creation and the trip, never per call');
    await a.sync.close();
  });

  test('one misbehaving instance does not open everyone: OPEN is adopted at a majority', async () => {
    const store = new MemoryStateStore();
    const [a, b, c] = [await instance(store, 'a'), await instance(store, 'b'), await instance(store, 'c')];
    await trip(a.breaker);
    await a.sync.flush();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual([b.breaker.state, c.breaker.state], ['CLOSED', 'CLOSED'], '1 of 3 is no majority');
    await trip(b.breaker);
    await b.sync.flush();
    await until('c adopts OPEN (2 of 3 report OPEN)', () => c.breaker.state === 'OPEN');
    assert.equal(c.sync.counters.adoptions, 1);
    for (const x of [a, b, c]) await x.sync.close();
  });

  test('openQuorum 0.5: with two instances, one OPEN is enough', async () => {
    const store = new MemoryStateStore();
    const a = await instance(store, 'a', { openQuorum: 0.5 });
    const b = await instance(store, 'b', { openQuorum: 0.5 });
    await trip(a.breaker);
    await until('b adopts OPEN', () => b.breaker.state === 'OPEN');
    for (const x of [a, b]) await x.sync.close();
  });

  test('openQuorum 1 is refused, naming the option: the deciding instance is CLOSED and counts among the live, so it could never be reached', () => {
    const store = new MemoryStateStore();
    assert.throws(() => new BreakerClusterSync({ store, instance: 'a', openQuorum: 1, log: quiet }), (error: unknown) => {
      assert.ok(error instanceof ConfigurationError);
      assert.match(error.message, /openQuorum.*never be reached/s);
      return true;
    });
    assert.doesNotThrow(() => new BreakerClusterSync({ store, instance: 'a', openQuorum: 0.75, log: quiet }));
  });

  test('openQuorum 2/3: two of three instances OPEN is two thirds, and the third adopts OPEN', async () => {
    const store = new MemoryStateStore();
    const open = encodeSnapshot({ state: 'OPEN', failures: 4, timeouts: 0, total: 4, breachedWindows: 1, since: new Date().toISOString(), version: 1 });
    const c = await instance(store, 'c', { openQuorum: 2 / 3 });
    await store.compareAndSet('/govmap/circuit/settlement/a', open, null);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(c.breaker.state, 'CLOSED', '1 of 3 is under two thirds');
    await store.compareAndSet('/govmap/circuit/settlement/b', open, null);
    await until('c adopts OPEN (2 of 3 report OPEN: exactly two thirds)', () => c.breaker.state === 'OPEN');
    await c.sync.close();
  });

  test('a restart resumes OPEN for the rest of the wait (no surge at the failing dependency)', async () => {
    const store = new MemoryStateStore();
    const a = await instance(store, 'a');
    await trip(a.breaker);
    const until1 = a.breaker.openUntil!;
    await a.sync.close(); // the process stops; its lease is not revoked
    a.breaker.dispose();
    const again = await instance(store, 'a');
    assert.equal(again.breaker.state, 'OPEN');
    assert.ok(Math.abs(again.breaker.openUntil! - until1) <= 1, 'same end of wait as before the restart');
    let made = 0;
    await again.breaker.execute(() => made++).catch(() => undefined);
    assert.equal(made, 0);
    await again.sync.close();
  });

  test('a restart whose breaker exists before start() has read the store (start not awaited, a slow etcd) resumes OPEN too, and never writes CLOSED over it', async () => {
    const store = new MemoryStateStore();
    const a = await instance(store, 'a');
    await trip(a.breaker);
    const until1 = a.breaker.openUntil!;
    await a.sync.close();
    a.breaker.dispose();
    for (const order of ['attach, then start', 'start, attach, then await'] as const) {
      const sync = new BreakerClusterSync({ store, instance: 'a', log: quiet });
      const breaker = new CircuitBreaker(options);
      let started: Promise<void>;
      if (order === 'attach, then start') {
        sync.attachBreaker(breaker);
        started = sync.start();
      } else {
        started = sync.start();
        sync.attachBreaker(breaker);
      }
      await started;
      await sync.flush();
      assert.equal(breaker.state, 'OPEN', order);
      assert.ok(Math.abs(breaker.openUntil! - until1) <= 1, `${order}: same end of wait as before the restart`);
      assert.equal(JSON.parse((await store.get('/govmap/circuit/settlement/a'))!.value).state, 'OPEN', `${order}: the stored OPEN is kept`);
      await sync.close();
      breaker.dispose();
    }
  });

  test('a HALF_OPEN breaker evicted to make room while it probes gives the probe right back, so another instance can probe', async () => {
    const store = new MemoryStateStore();
    const sync = new BreakerClusterSync({ store, instance: 'a', log: quiet });
    await sync.start();
    // A call timeout far off: a probe that timed out would release the right by itself.
    const group = new BreakerGroup({ ...options, openDurationMs: SHORT_OPEN_MS, name: 'routes', maxBreakers: 1, timeoutMs: 30_000 });
    sync.attachGroup(group);
    try {
      const x = group.get('x');
      await trip(x);
      // HALF_OPEN, not only the wait's end by the wall clock: a call made once the wait is over
      // but before the breaker's timer has asked for the cluster's probe right (a late timer on a
      // busy box) is refused while the right is requested, and would never be the probe.
      await until('the wait to end and the probe right to be granted', () => x.state === 'HALF_OPEN');
      // The probe hangs: x is HALF_OPEN, holding the cluster's probe right for routes:x.
      let answer: (() => void) | undefined;
      const probe = x.execute(() => new Promise<void>((resolve) => (answer = resolve))).catch(() => undefined);
      await until('the probe right to be taken', () => sync.probeHolder('routes:x') === 'a');
      // The right is granted, then the call starts: evict only once it is running.
      await until('the probe call to run', () => answer !== undefined);
      assert.equal(x.state, 'HALF_OPEN');
      // Another key at maxBreakers 1: nothing CLOSED to evict, so x goes (a forced eviction).
      group.get('y');
      assert.equal(group.forcedEvictions, 1);
      await sync.flush();
      await until('the probe key to be released', () => sync.probeHolder('routes:x') === null);
      assert.equal(await store.get('/govmap/circuit-probe/routes:x'), undefined, 'no probe right left held by an evicted breaker');
      answer!();
      await probe;
    } finally {
      group.dispose();
      await sync.close();
    }
  });

  test('a breaker evicted while it probed, whose probe answers after its key came back, does not give away the new breaker\'s probe right', async () => {
    const store = new MemoryStateStore();
    const sync = new BreakerClusterSync({ store, instance: 'a', log: quiet });
    await sync.start();
    const group = new BreakerGroup({ ...options, openDurationMs: SHORT_OPEN_MS, name: 'routes', maxBreakers: 1, timeoutMs: 30_000, halfOpenProbes: 1 });
    sync.attachGroup(group);
    try {
      const old = group.get('x');
      await trip(old);
      await until('the old breaker probes', () => old.state === 'HALF_OPEN');
      let answer: (() => void) | undefined;
      const probe = old.execute(() => new Promise<void>((resolve) => (answer = resolve))).catch(() => undefined);
      await until('the old probe call to run', () => answer !== undefined && sync.probeHolder('routes:x') === 'a');
      group.get('y'); // forced eviction of the probing breaker
      await sync.flush();
      await until('the evicted breaker\'s right to be given back', () => sync.probeHolder('routes:x') === null);
      group.get('x'); // the key comes back: a new breaker resumes the HALF_OPEN snapshot and probes anew
      const renewed = group.peek('x')!;
      await until('the new breaker holds the right and probes', () => renewed.state === 'HALF_OPEN' && sync.probeHolder('routes:x') === 'a');
      answer!(); // the evicted breaker's probe answers now
      await probe;
      await sync.flush();
      assert.equal(renewed.state, 'HALF_OPEN');
      assert.equal(sync.probeHolder('routes:x'), 'a', 'the new breaker still holds the right it probes under');
      assert.notEqual(await store.get('/govmap/circuit-probe/routes:x'), undefined, 'no other instance may probe while the new breaker does');
    } finally {
      group.dispose();
      await sync.close();
    }
  });

  test('a breaker whose key the store refuses (too long for a file name) is said so once, by name, and kept local: the store is not called unreachable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-breaker-'));
    const store = new FileStateStore({ directory: dir, pollIntervalMs: 20 });
    const logged: string[] = [];
    // 37 + 64 + 128 characters, and each "/" of the key takes 3 in a file name: past its 229.
    const sync = new BreakerClusterSync({ store, prefix: '/govmap/clearing-production-eu-west-1', instance: 'i'.repeat(128), log: (message) => logged.push(message), retryMinMs: 10, retryMaxMs: 20 });
    try {
      await sync.start();
      // The breaker's time moves only when told: its OPEN wait cannot end during the 200 ms
      // below however slowly this process runs, and then ends exactly when the test says.
      const clock = new ManualClock(Date.now());
      const breaker = new CircuitBreaker({ ...options, name: 'n'.repeat(64), clock });
      sync.attachBreaker(breaker);
      await Promise.all(Array.from({ length: 4 }, () => breaker.execute(() => Promise.reject(new Error('gateway down'))).catch(() => undefined)));
      clock.advance(WINDOW_MS); // the window ends: it is judged at the next look, and trips
      assert.equal(breaker.state, 'OPEN');
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(sync.connected, true, 'the store answers: it is not unreachable');
      assert.ok(!logged.some((line) => /unreachable|not reachable/.test(line)), logged.join('\n'));
      const refused = logged.filter((line) => line.includes('GOVMAP_STATE_KEY_INVALID') || /cannot be shared/.test(line));
      assert.equal(refused.length, 1, JSON.stringify(logged));
      assert.match(refused[0]!, /nnnn/, 'names the breaker');
      assert.equal(breaker.state, 'OPEN', 'it still decides, locally');
      // Its probe right cannot be shared either: once the wait ends it probes alone, and closes.
      clock.advance(options.openDurationMs!);
      // Read through a function: the assertion above narrowed `breaker.state` to 'OPEN' for the compiler.
      const state = (): string => breaker.state;
      for (let i = 0; i < options.halfOpenProbes! && state() !== 'CLOSED'; i++) await breaker.execute(() => 'ok');
      assert.equal(state(), 'CLOSED');
      breaker.dispose();
    } finally {
      await sync.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('with the file store, a restarted process (a new store on the same directory) resumes OPEN', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-breaker-'));
    try {
      const first = new FileStateStore({ directory: dir, pollIntervalMs: 20 });
      const a = await instance(first, 'a');
      await trip(a.breaker);
      await a.sync.close();
      await first.close();
      a.breaker.dispose();
      const second = new FileStateStore({ directory: dir, pollIntervalMs: 20 });
      const again = await instance(second, 'a');
      assert.equal(again.breaker.state, 'OPEN');
      assert.equal(await again.breaker.execute(() => 'made', { value: 'fallback' }), 'fallback');
      await again.sync.close();
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('only one instance probes; when its probes pass the others close too', async () => {
    const store = new MemoryStateStore();
    // The breakers' time moves only when told. On the wall clock the prober gives the right back
    // (probe_idle) openDurationMs after taking it with no call: a process starved that long between
    // the grant and the probe calls (a loaded CI box) saw its probes refused and the waiter never
    // waiting. Here the OPEN wait ends, and the idle timer can fire, only when the test advances.
    const clock = new ManualClock(Date.now());
    const a = await instance(store, 'a', { openQuorum: 0.5 }, { clock });
    const b = await instance(store, 'b', { openQuorum: 0.5 }, { clock });
    await Promise.all(Array.from({ length: 4 }, () => a.breaker.execute(() => Promise.reject(new Error('gateway down'))).catch(() => undefined)));
    clock.advance(WINDOW_MS); // the window ends: it is judged at the next look, and trips
    // Read through a function: asserting `a.breaker.state` would narrow it to 'OPEN' for the compiler.
    const state = (x: typeof a): string => x.breaker.state;
    assert.equal(state(a), 'OPEN');
    await until('b adopts OPEN', () => b.breaker.state === 'OPEN');
    clock.advance(options.openDurationMs!); // the wait is over for both: each asks for the right
    await until('one of them probes', () => a.breaker.state === 'HALF_OPEN' || b.breaker.state === 'HALF_OPEN');
    const [prober, waiter] = a.breaker.state === 'HALF_OPEN' ? [a, b] : [b, a];
    await until('the other waits for the right', () => waiter.breaker.awaitingProbeRight);
    assert.equal(waiter.breaker.state, 'OPEN');
    assert.equal(prober.sync.probeHolder('settlement'), prober.sync.instance);
    await Promise.all([prober.breaker.execute(() => 'ok'), prober.breaker.execute(() => 'ok')]);
    assert.equal(prober.breaker.state, 'CLOSED');
    await until('the waiting instance adopts the probe verdict', () => waiter.breaker.state === 'CLOSED');
    await until('the probe right is released', () => prober.sync.probeHolder('settlement') === null);
    for (const x of [a, b]) {
      await x.sync.close();
      x.breaker.dispose();
    }
  });

  test('an instance that took the probe right but gets no calls to probe with gives it back: an instance with traffic probes, and the fleet recovers', async () => {
    // Traffic routed by org to other instances, or a drained pod: the holder's timer took the
    // right when the wait ended, then no call came. Every other instance refused every call for
    // as long as the holder's lease lived.
    const store = new MemoryStateStore();
    const a = await instance(store, 'a', { openQuorum: 0.5 }, { openDurationMs: SHORT_OPEN_MS });
    const b = await instance(store, 'b', { openQuorum: 0.5 }, { openDurationMs: SHORT_OPEN_MS });
    // Who took the right is read from its transition, not polled from its state: the holder gives
    // the right back SHORT_OPEN_MS after taking it, and a poller starved that long (a loaded CI
    // box) saw neither instance HALF_OPEN, ever.
    const probing: Array<typeof a> = [];
    for (const x of [a, b]) {
      x.breaker.onTransition((t) => {
        if (t.to === 'HALF_OPEN') probing.push(x);
      });
    }
    await trip(a.breaker);
    await until('b adopts OPEN', () => b.breaker.state === 'OPEN');
    await until('one of them holds the probe right', () => probing.length > 0);
    const idle = probing[0]!;
    const busy = idle === a ? b : a;
    // Only the other instance gets calls, one every 50 ms. Bounded well below the holder's lease
    // (leaseTtlSeconds, 30 s): had the idle holder kept the right, its expiry would not rescue this.
    let answered = 0;
    const deadline = Date.now() + 10_000;
    while (answered === 0 && Date.now() < deadline) {
      answered += await busy.breaker.execute(() => 'ok').then(() => 1, () => 0);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(answered, 1, `the instance with traffic was refused throughout; holder ${idle.sync.instance} ${idle.breaker.state}`);
    await busy.breaker.execute(() => 'ok');
    assert.equal(busy.breaker.state, 'CLOSED', 'its probes passed');
    await until('the idle instance adopts the verdict', () => idle.breaker.state === 'CLOSED');
    for (const x of [a, b]) await x.sync.close();
  });

  test('a probe-right key holding garbage (another tool wrote it, no lease) does not keep the breaker OPEN for good: it is taken over, probed, and released', async () => {
    const store = new MemoryStateStore();
    const logged: string[] = [];
    const a = await instance(store, 'a', { probeRetryMs: 20, log: (message, details) => logged.push(`${message} ${JSON.stringify(details)}`) }, { openDurationMs: SHORT_OPEN_MS });
    await store.compareAndSet('/govmap/circuit-probe/settlement', 'not json', null);
    await trip(a.breaker);
    await until('the wait is over and the breaker probes', () => a.breaker.state === 'HALF_OPEN');
    await Promise.all([a.breaker.execute(() => 'ok'), a.breaker.execute(() => 'ok')]);
    assert.equal(a.breaker.state, 'CLOSED');
    await until('the right is released: the garbage is gone with it', () => a.sync.probeHolder('settlement') === null);
    await a.sync.flush();
    assert.equal(await store.get('/govmap/circuit-probe/settlement'), undefined);
    assert.ok(logged.some((line) => line.includes('invalid_probe_holder') && line.includes('/govmap/circuit-probe/settlement')), 'the bad key is logged by name');
    await a.sync.close();
  });

  test('a lost lease is granted anew and the snapshot rewritten', async () => {
    const store = new MemoryStateStore();
    const a = await instance(store, 'a');
    await trip(a.breaker);
    await a.sync.flush();
    const before = await store.get('/govmap/circuit/settlement/a');
    // Leases are numbered from 1; the sync holds the only one.
    store.expire('1');
    await until('the snapshot is back', () => a.sync.counters.leaseLosses === 1 && a.sync.counters.writes >= 3);
    const after = await store.get('/govmap/circuit/settlement/a');
    assert.ok(after !== undefined && after.revision > before!.revision);
    assert.equal(JSON.parse(after.value).state, 'OPEN');
    await a.sync.close();
  });

  test('malformed snapshots from another writer are ignored and counted, never a crash', async () => {
    const store = new MemoryStateStore();
    const a = await instance(store, 'a', { openQuorum: 0.5 });
    const bad: Array<[string, string]> = [
      ['x1', '{"state":"OPEN",'],
      ['x2', JSON.stringify({ state: 'SMOKING', failures: 1, timeouts: 0, total: 1, breachedWindows: 1, since: new Date().toISOString(), version: 1 })],
      ['x3', JSON.stringify({ state: 'OPEN', failures: 'many', timeouts: 0, total: 1, breachedWindows: 1, since: new Date().toISOString(), version: 1 })],
    ];
    for (const [who, text] of bad) await store.compareAndSet(`/govmap/circuit/settlement/${who}`, text, null);
    await until('all three are counted', () => [...a.sync.counters.invalidSnapshots.values()].reduce((x, y) => x + y, 0) === 3);
    assert.deepEqual(Object.fromEntries(a.sync.counters.invalidSnapshots), { malformed_json: 1, unknown_state: 1, invalid_failures: 1 });
    assert.equal(a.breaker.state, 'CLOSED', 'garbage reports are not OPEN votes');
    assert.equal(await a.breaker.execute(() => 'served'), 'served');
    await a.sync.close();
  });

  for (const kind of ['memory', 'file'] as const) {
    test(`${kind} store: a peer that reported OPEN and then wrote an unreadable snapshot no longer counts in the quorum, and the log names it and its key`, async () => {
      const dir = kind === 'file' ? await mkdtemp(join(tmpdir(), 'govmap-breaker-')) : null;
      const store: StateStore = dir === null ? new MemoryStateStore() : new FileStateStore({ directory: dir, pollIntervalMs: 20 });
      try {
        const logged: Array<{ message: string; details: Record<string, unknown> }> = [];
        const me = await instance(store, 'me', { log: (message, details) => logged.push({ message, details }) });
        const key = (who: string): string => `/govmap/circuit/settlement/${who}`;
        const open = JSON.stringify({ state: 'OPEN', failures: 4, timeouts: 0, total: 4, breachedWindows: 1, since: new Date().toISOString(), version: 1 });
        // p2 reports OPEN: 1 of 2 live instances is no majority.
        const written = await store.compareAndSet(key('p2'), open, null);
        assert.ok(written.ok);
        await until('me has seen p2 OPEN', () => me.sync.reports('settlement').get('p2')?.state === 'OPEN');
        // p2's value is then damaged (a half-written edit, another tool): nobody knows its state now.
        await store.compareAndSet(key('p2'), '{"state":"OPEN",', written.revision);
        await until('the damaged value is counted', () => me.sync.counters.invalidSnapshots.get('malformed_json') === 1);
        assert.equal(me.sync.reports('settlement').has('p2'), false, 'p2 has no readable snapshot: it has no report');
        const line = logged.find((l) => l.details.key === key('p2'));
        assert.ok(line !== undefined && line.details.instance === 'p2' && /p2/.test(line.message), JSON.stringify(logged));
        // p3 reports OPEN: with p2's old OPEN still counted that was 2 of 3, a majority.
        await store.compareAndSet(key('p3'), open, null);
        await until('me has seen p3 OPEN', () => me.sync.reports('settlement').get('p3')?.state === 'OPEN');
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(me.breaker.state, 'CLOSED', '1 of 2 readable instances OPEN is no majority');
        await me.sync.close();
        me.breaker.dispose();
      } finally {
        await store.close();
        if (dir !== null) await rm(dir, { recursive: true, force: true });
      }
    });
  }

  for (const kind of ['memory', 'file'] as const) {
    test(`${kind} store: govmap_breaker_snapshots_unreadable counts the peer keys unreadable now, and falls when a key is fixed or deleted (the invalid counter does not)`, async () => {
      const dir = kind === 'file' ? await mkdtemp(join(tmpdir(), 'govmap-breaker-')) : null;
      const store: StateStore = dir === null ? new MemoryStateStore() : new FileStateStore({ directory: dir, pollIntervalMs: 20 });
      try {
        const me = await instance(store, 'me');
        const metrics = new BreakerMetrics().trackSync(me.sync);
        const series = async (name: string, reason: string): Promise<number | undefined> => {
          const found = new RegExp(`^govmap_breaker_${name}\\{member="me",reason="${reason}"\\} (\\d+)$`, 'm').exec(await metrics.render());
          return found === null ? undefined : Number(found[1]);
        };
        const untilSeries = async (what: string, name: string, reason: string, value: number): Promise<void> => {
          const deadline = Date.now() + 3_000;
          while ((await series(name, reason)) !== value) {
            if (Date.now() > deadline) assert.fail(`timed out waiting until ${what} (${name}{reason="${reason}"} is ${await series(name, reason)})`);
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        };
        const key = (who: string): string => `/govmap/circuit/settlement/${who}`;
        const valid = JSON.stringify({ state: 'CLOSED', failures: 0, timeouts: 0, total: 0, breachedWindows: 0, since: new Date().toISOString(), version: 1 });
        const broken = await store.compareAndSet(key('p2'), '{"state":"OPEN",', null);
        assert.ok(broken.ok);
        await store.compareAndSet(key('p3'), JSON.stringify({ state: 'SMOKING', failures: 0, timeouts: 0, total: 0, breachedWindows: 0, since: new Date().toISOString(), version: 1 }), null);
        await untilSeries('p2 is unreadable now', 'snapshots_unreadable', 'malformed_json', 1);
        await untilSeries('p3 is unreadable now', 'snapshots_unreadable', 'unknown_state', 1);
        // p2 is written valid again (its member upgraded, the tool fixed): nothing is unreadable for that reason now.
        await store.compareAndSet(key('p2'), valid, broken.revision);
        await untilSeries('p2 is readable again', 'snapshots_unreadable', 'malformed_json', 0);
        assert.equal(me.sync.reports('settlement').get('p2')?.state, 'CLOSED');
        // p3 is deleted by hand.
        await store.delete(key('p3'));
        await untilSeries('p3 is gone', 'snapshots_unreadable', 'unknown_state', 0);
        // The counter keeps what was read: one bad write each.
        assert.equal(await series('snapshots_invalid_total', 'malformed_json'), 1);
        assert.equal(await series('snapshots_invalid_total', 'unknown_state'), 1);
        // A sync closed (replaced on a reload) reads nothing more: it must not hold the alert for the life of the process.
        await store.compareAndSet(key('p4'), '{"state":', null);
        await untilSeries('p4 is unreadable now', 'snapshots_unreadable', 'malformed_json', 1);
        await me.sync.close();
        assert.equal(await series('snapshots_unreadable', 'malformed_json'), 0);
        me.breaker.dispose();
      } finally {
        await store.close();
        if (dir !== null) await rm(dir, { recursive: true, force: true });
      }
    });
  }

  test('a key whose name has no instance, written while the sync runs, is counted and shown unreadable as when it is listed at start, until it is deleted', async () => {
    const store = new MemoryStateStore();
    const me = await instance(store, 'me');
    await store.compareAndSet('/govmap/circuit/settlement', '{}', null);
    await until('the bad key is counted', () => me.sync.counters.invalidSnapshots.get('invalid_key') === 1);
    assert.equal(me.sync.unreadableSnapshots.get('invalid_key'), 1);
    await store.delete('/govmap/circuit/settlement');
    await until('the deleted key is no longer unreadable', () => me.sync.unreadableSnapshots.get('invalid_key') === undefined);
    await me.sync.close();
    me.breaker.dispose();
  });

  test('file store: an unchanged unreadable key is counted once however many scans read it; a new bad write of it is counted again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-breaker-'));
    const store = new FileStateStore({ directory: dir, pollIntervalMs: 20 });
    try {
      const me = await instance(store, 'me');
      const key = '/govmap/circuit/settlement/p2';
      const first = await store.compareAndSet(key, '{"state":', null);
      assert.ok(first.ok);
      await until('the bad snapshot is counted', () => me.sync.counters.invalidSnapshots.get('malformed_json') === 1);
      for (let i = 0; i < 5; i++) await store.poll();
      assert.equal(me.sync.counters.invalidSnapshots.get('malformed_json'), 1, 'counted per bad write, not per scan');
      await store.compareAndSet(key, '{"state":"', first.revision);
      await until('the second bad write is counted', () => me.sync.counters.invalidSnapshots.get('malformed_json') === 2);
      await me.sync.close();
      me.breaker.dispose();
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('an instance whose own snapshot is overwritten with an unreadable value writes its own again, without waiting for its next transition', async () => {
    const store = new MemoryStateStore();
    const me = await instance(store, 'me');
    const own = await store.get('/govmap/circuit/settlement/me');
    await store.compareAndSet('/govmap/circuit/settlement/me', 'garbage', own!.revision);
    const deadline = Date.now() + 3_000;
    let value = (await store.get('/govmap/circuit/settlement/me'))?.value;
    while (value !== undefined && !decodeSnapshot(value).ok && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      value = (await store.get('/govmap/circuit/settlement/me'))?.value;
    }
    assert.equal(value !== undefined && decodeSnapshot(value).ok, true, `own key still holds ${value}`);
    await me.sync.close();
    me.breaker.dispose();
  });

  test('a peer whose clock runs ahead cannot make every later OPEN report stale: the quorum still opens the breaker', async () => {
    const store = new MemoryStateStore();
    const me = await instance(store, 'me');
    const key = (who: string): string => `/govmap/circuit/settlement/${who}`;
    const report = (state: string, since: string): string => JSON.stringify({ state, failures: 0, timeouts: 0, total: 0, breachedWindows: 0, since, version: 1 });
    // The skewed peer recovers: OPEN, then CLOSED "since" a time years ahead (its clock, or a hand edit).
    const opened = await store.compareAndSet(key('skewed'), report('OPEN', new Date().toISOString()), null);
    assert.ok(opened.ok);
    await store.compareAndSet(key('skewed'), report('CLOSED', '9999-01-01T00:00:00.000Z'), opened.revision);
    await new Promise((resolve) => setTimeout(resolve, 10));
    // Later, three healthy peers see the dependency fail: 3 of 5 report OPEN.
    for (const who of ['p1', 'p2', 'p3']) await store.compareAndSet(key(who), report('OPEN', new Date().toISOString()), null);
    await until('the majority is adopted', () => me.breaker.state === 'OPEN');
    await me.sync.close();
  });

  test('a closed sync refuses start() and attaching breakers with a coded error, instead of a service that believes its breakers shared while nothing is watched or written', async () => {
    const store = new MemoryStateStore();
    const sync = new BreakerClusterSync({ store, instance: 'a', log: quiet });
    await sync.close();
    const closed = (operation: string) => (e: unknown) => e instanceof BreakerSyncClosedError && e.code === 'GOVMAP_BREAKER_SYNC_CLOSED' && e.message.includes(`${operation}()`) && e.message.includes('"a"');
    await assert.rejects(sync.start(), closed('start'));
    const breaker = new CircuitBreaker(options);
    assert.throws(() => sync.attachBreaker(breaker), closed('attachBreaker'));
    const group = new BreakerGroup({ ...options, name: 'routes' });
    assert.throws(() => sync.attachGroup(group), closed('attachGroup'));
    assert.deepEqual(await store.list('/govmap/'), [], 'nothing was written');
    group.dispose();
    breaker.dispose();
    await store.close();
  });

  test('after close(), a group it was attached to creates breakers that decide on their own: the closed sync\'s last view (peers OPEN since recovered) neither opens nor restores them', async () => {
    const store = new MemoryStateStore();
    const key = (who: string): string => `/govmap/circuit/routes:org-1/${who}`;
    const open = JSON.stringify({ state: 'OPEN', failures: 4, timeouts: 0, total: 4, breachedWindows: 1, since: new Date().toISOString(), version: 1 });
    for (const who of ['p1', 'p2']) await store.compareAndSet(key(who), open, null);
    const sync = new BreakerClusterSync({ store, instance: 'me', log: quiet });
    await sync.start();
    const group = new BreakerGroup({ ...options, name: 'routes' });
    sync.attachGroup(group);
    await sync.close();
    // p1 and p2 recover: the closed sync no longer watches, so its view still says OPEN.
    const breaker = group.get('org-1');
    assert.equal(breaker.state, 'CLOSED', 'no adoption from a view nobody updates any more');
    assert.equal(await group.execute('org-1', () => 'served'), 'served');
    group.dispose();
    await store.close();
  });

  test('start() twice starts once: no second watch, no wait for the start timeout, no false "unreachable" warning', async () => {
    const store = new MemoryStateStore();
    const logged: string[] = [];
    // A start timeout far beyond any stall of a busy box: a start that waited for it cannot pass
    // for one that did not (with 2 s against a 1 s bound, a starved second was enough to fail).
    const sync = new BreakerClusterSync({ store, instance: 'a', startTimeoutMs: 30_000, log: (message) => logged.push(message) });
    const started = Date.now();
    await Promise.all([sync.start(), sync.start()]);
    assert.ok(Date.now() - started < 15_000, `started in ${Date.now() - started} ms`);
    assert.deepEqual(logged, []);
    const breaker = new CircuitBreaker(options);
    sync.attachBreaker(breaker);
    await sync.flush();
    await store.compareAndSet('/govmap/circuit/settlement/x', '{"state":', null);
    await until('the bad snapshot is counted', () => sync.counters.invalidSnapshots.get('malformed_json') !== undefined);
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(sync.counters.invalidSnapshots.get('malformed_json'), 1, 'seen by one watch, not two');
    await sync.close();
  });

  test('close() with the store left open stops renewing the lease: the snapshots vanish after its TTL, as after a crash', async () => {
    const store = new MemoryStateStore();
    const a = await instance(store, 'a', { leaseTtlSeconds: 2 });
    await trip(a.breaker);
    await a.sync.close(); // the store stays open: switches still use it
    a.breaker.dispose();
    assert.notEqual(await store.get('/govmap/circuit/settlement/a'), undefined, 'a restart within the TTL finds it');
    const gone = Date.now() + 4_000;
    while ((await store.get('/govmap/circuit/settlement/a')) !== undefined && Date.now() < gone) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(await store.get('/govmap/circuit/settlement/a'), undefined, 'a stale OPEN snapshot must not count in the quorum for ever');
    await store.close();
  });

  test('a logger that throws does not break the watch; bad logging and retry options are refused', async () => {
    const store = new MemoryStateStore();
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => void uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    const originalError = console.error;
    console.error = () => undefined;
    try {
      const a = await instance(store, 'a', {
        log: () => {
          throw new Error('log sink down');
        },
      });
      await store.compareAndSet('/govmap/circuit/settlement/x', '{"state":', null);
      await until('the bad snapshot is counted', () => a.sync.counters.invalidSnapshots.get('malformed_json') === 1);
      await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(uncaught, []);
      await a.sync.close();
    } finally {
      process.off('uncaughtException', onUncaught);
      console.error = originalError;
    }
    assert.throws(() => new BreakerClusterSync({ store, instance: 'a', log: 'console' as never }), (e: unknown) => e instanceof ConfigurationError && e.details.option === 'log');
    assert.throws(() => new BreakerClusterSync({ store, instance: 'a', retryMinMs: 5_000, retryMaxMs: 100 }), (e: unknown) => e instanceof ConfigurationError && e.details.option === 'retryMinMs');
  });

  test('with the file store, a failed scan reports the store unreachable once, and a good one reports it back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-breaker-'));
    const store = new FileStateStore({ directory: dir, pollIntervalMs: 20 });
    const logged: string[] = [];
    try {
      const a = await instance(store, 'a', { log: (message) => logged.push(message) });
      assert.equal(a.sync.connected, true);
      // A file the scan cannot read (here: a directory where a key file belongs).
      const unreadable = join(dir, `${encodeURIComponent('/govmap/circuit/settlement/x')}.json`);
      await mkdir(unreadable);
      await until('the sync knows', () => !a.sync.connected);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(logged.filter((m) => m.includes('unreachable')).length, 1, 'told once, not at every poll');
      await rmdir(unreadable);
      await until('the sync is connected again, with nothing written meanwhile', () => a.sync.connected);
      await a.sync.close();
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
