import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigurationError } from '../../src/map/index.ts';
import {
  BreakerArgumentError,
  BreakerClusterSync,
  BreakerGroup,
  BreakerGroupDisposedError,
  BreakerKeyError,
  BreakerMetrics,
  CallTimeoutError,
  CircuitBreaker,
  CallAbandonedError,
  CircuitOpenError,
  ManualClock,
  NotABreakerSourceError,
  decodeSnapshot,
  encodeSnapshot,
} from '../../src/breaker/index.ts';
import type { BreakerTransition, CircuitBreakerOptions } from '../../src/breaker/index.ts';
import { MemoryStateStore } from '../../src/state/index.ts';

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const ok = (): Promise<string> => Promise.resolve('ok');
const boom = (): Promise<string> => Promise.reject(new Error('settlement gateway 503'));
const hang = (): Promise<string> => new Promise<string>(() => undefined);

function breaker(extra: Partial<CircuitBreakerOptions> = {}): { clock: ManualClock; b: CircuitBreaker; transitions: BreakerTransition[] } {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const b = new CircuitBreaker({ name: 'settlement', clock, ...extra });
  const transitions: BreakerTransition[] = [];
  b.onTransition((t) => transitions.push(t));
  return { clock, b, transitions };
}

/** Runs `calls` calls in the current window: the first `failures` fail, the next `timeouts` hang until the timeout, the rest succeed. */
async function window(clock: ManualClock, b: CircuitBreaker, calls: number, failures: number, timeouts: number): Promise<void> {
  const results: Promise<unknown>[] = [];
  for (let i = 0; i < calls; i++) {
    const fn = i < failures ? boom : i < failures + timeouts ? hang : ok;
    results.push(b.execute(fn).catch(() => undefined));
  }
  await flush(); // answers arrive first, then the timeouts fire
  clock.advance(Number.isFinite(b.settings.timeoutMs) ? b.settings.timeoutMs : 0);
  await Promise.all(results);
}

describe('construction', () => {
  test('defaults are the specification: 50% failures, 30% timeouts, 200 ms, 3 windows of 1 s', () => {
    const { b } = breaker();
    const s = b.settings;
    assert.deepEqual(
      [s.failureRateThreshold, s.timeoutRateThreshold, s.timeoutMs, s.breachedWindowsToOpen, s.windowMs, s.minimumCalls, s.halfOpenProbes, s.openDurationMs],
      [0.5, 0.3, 200, 3, 1000, 10, 5, 30_000],
    );
    assert.equal(b.state, 'CLOSED');
  });

  test('a bad option is refused with a typed error naming it', () => {
    for (const [option, value] of [
      ['failureRateThreshold', 0],
      ['failureRateThreshold', 1.5],
      ['timeoutRateThreshold', 0.33333],
      ['timeoutMs', 0],
      ['minimumCalls', 0],
      ['halfOpenProbes', 2.5],
      ['name', 'has space'],
    ] as const) {
      assert.throws(
        () => new CircuitBreaker({ name: 'x', [option]: value }),
        (e: unknown) => e instanceof ConfigurationError && e.code === 'GOVMAP_INVALID_CONFIGURATION' && e.message.includes(`"${option}"`),
        `${option}=${value}`,
      );
    }
  });

  test('an unknown (misspelt) option is refused with a typed error naming it, not ignored with the default left in force', () => {
    const refused = (option: string) => (e: unknown) => e instanceof ConfigurationError && e.code === 'GOVMAP_INVALID_CONFIGURATION' && e.message.includes(`"${option}"`);
    assert.throws(() => new CircuitBreaker({ name: 'x', openDuration: 60_000 } as CircuitBreakerOptions), refused('openDuration'));
    assert.throws(() => new CircuitBreaker({ name: 'x', failureThreshold: 0.2 } as CircuitBreakerOptions), refused('failureThreshold'));
    assert.throws(() => new BreakerGroup({ name: 'x', maxBreaker: 10 } as CircuitBreakerOptions), refused('maxBreaker'));
    const group = new BreakerGroup({ name: 'x', maxBreakers: 10, idleEvictionMs: 60_000, openDurationMs: 1_000 });
    assert.equal(group.get('1001').settings.openDurationMs, 1_000, 'a group\'s own options and the breaker options still pass');
    group.dispose();
    assert.throws(() => new BreakerClusterSync({ store: new MemoryStateStore(), instance: 'a', leaseTtl: 60 } as ConstructorParameters<typeof BreakerClusterSync>[0]), refused('leaseTtl'));
  });
});

describe('null options', () => {
  const refusedNull = (option: string) => (e: unknown) => e instanceof ConfigurationError && e.code === 'GOVMAP_INVALID_CONFIGURATION' && e.message.includes(`"${option}"`) && /null/.test(e.message);

  test('an option given as null (a YAML key left empty) is refused naming it, not silently replaced by its default', () => {
    for (const option of ['timeoutMs', 'windowMs', 'failureRateThreshold', 'timeoutRateThreshold', 'minimumCalls', 'breachedWindowsToOpen', 'openDurationMs', 'halfOpenProbes', 'isFailure', 'clock']) {
      assert.throws(() => new CircuitBreaker({ name: 'settlement', [option]: null }), refusedNull(option), `CircuitBreaker ${option}: null`);
      assert.throws(() => new BreakerGroup({ name: 'settlement', [option]: null }), refusedNull(option), `BreakerGroup ${option}: null`);
    }
    for (const option of ['maxBreakers', 'idleEvictionMs']) {
      assert.throws(() => new BreakerGroup({ name: 'settlement', [option]: null }), refusedNull(option), `BreakerGroup ${option}: null`);
    }
    for (const option of ['store', 'prefix', 'openQuorum', 'leaseTtlSeconds', 'startTimeoutMs', 'retryMinMs', 'retryMaxMs', 'probeRetryMs', 'log']) {
      assert.throws(
        () => new BreakerClusterSync({ store: new MemoryStateStore(), instance: 'a', [option]: null }),
        refusedNull(option),
        `BreakerClusterSync ${option}: null`,
      );
    }
    for (const option of ['registry', 'prefix', 'maxKeySeries']) {
      assert.throws(() => new BreakerMetrics({ [option]: null }), refusedNull(option), `BreakerMetrics ${option}: null`);
    }
  });

  test('an option given as undefined still means its default', () => {
    const b = new CircuitBreaker({ name: 'settlement', timeoutMs: undefined, openDurationMs: undefined });
    assert.equal(b.settings.timeoutMs, 200);
    assert.equal(b.settings.openDurationMs, 30_000);
    b.dispose();
  });
});

describe('CLOSED -> OPEN', () => {
  test('a failure rate of 50% held for 3 windows trips the breaker; 2 windows do not', async () => {
    const { clock, b, transitions } = breaker();
    for (let w = 0; w < 2; w++) {
      await window(clock, b, 10, 5, 0);
      clock.advance(1000 - 200);
    }
    assert.equal(b.state, 'CLOSED');
    assert.equal(b.snapshot().breachedWindows, 2);
    await window(clock, b, 10, 5, 0);
    clock.advance(1000 - 200);
    assert.equal(b.state, 'OPEN');
    assert.equal(transitions.length, 1);
    assert.equal(transitions[0]!.reason, 'failure_rate');
    assert.deepEqual({ ...transitions[0]!.snapshot, since: '' }, { state: 'OPEN', failures: 5, timeouts: 0, total: 10, breachedWindows: 3, since: '', version: 1 });
  });

  test('a breach completed just before traffic stopped dates the trip from the end of its last window: the first call an hour later probes, it is not refused for another openDurationMs', async () => {
    const { clock, b, transitions } = breaker();
    for (let w = 0; w < 3; w++) {
      await window(clock, b, 10, 5, 0);
      clock.advance(1000 - 200);
    }
    const thirdWindowEnd = clock.now();
    clock.advance(3_600_000); // nobody calls (a nightly batch ended, an org went quiet)
    assert.equal(await b.execute(ok), 'ok', 'the OPEN wait ran out 59.5 minutes ago: this call is a probe');
    assert.deepEqual(transitions.map((t) => [t.to, t.reason]), [['OPEN', 'failure_rate'], ['HALF_OPEN', 'open_elapsed']]);
    assert.equal(transitions[0]!.snapshot.since, new Date(thirdWindowEnd).toISOString(), 'OPEN since the breach was complete, not since it was noticed');
  });

  test('3 timeouts of 10 calls is exactly 30% (compared in integers, not floats)', async () => {
    const { clock, b } = breaker({ breachedWindowsToOpen: 1 });
    await window(clock, b, 10, 0, 3);
    clock.advance(800);
    assert.equal(b.state, 'OPEN');
    const { b: b2, clock: c2 } = breaker({ breachedWindowsToOpen: 1 });
    await window(c2, b2, 10, 0, 2); // 20%: under the threshold
    c2.advance(800);
    assert.equal(b2.state, 'CLOSED');
  });

  test('both rates breached in one window trip at once, mid-window', async () => {
    const { clock, b, transitions } = breaker();
    await window(clock, b, 10, 5, 3);
    assert.equal(b.state, 'OPEN');
    assert.equal(transitions[0]!.reason, 'both_rates');
    assert.equal(clock.now() % 1000, 200, 'tripped when the 10th outcome arrived, not at the window end');
  });

  test('one failure out of one call trips nothing: a window needs minimumCalls to be judged', async () => {
    const { clock, b } = breaker({ breachedWindowsToOpen: 1 });
    for (let w = 0; w < 5; w++) {
      await window(clock, b, 1, 1, 0);
      clock.advance(800);
    }
    assert.equal(b.state, 'CLOSED');
  });

  test('a healthy window between breached ones ends the streak', async () => {
    const { clock, b } = breaker();
    for (const failures of [5, 5, 0, 5, 5]) {
      await window(clock, b, 10, failures, 0);
      clock.advance(800);
    }
    assert.equal(b.state, 'CLOSED');
    await window(clock, b, 10, 5, 0);
    clock.advance(800);
    assert.equal(b.state, 'OPEN');
  });

  test('errors isFailure does not count are answered calls, not failures', async () => {
    const { clock, b } = breaker({ breachedWindowsToOpen: 1, isFailure: (e) => !(e instanceof RangeError) });
    const refused = Array.from({ length: 10 }, () => b.execute(() => Promise.reject(new RangeError('insufficient funds'))).catch((e: unknown) => e));
    for (const r of await Promise.all(refused)) assert.ok(r instanceof RangeError, 'the caller still gets its error');
    clock.advance(1000);
    assert.equal(b.state, 'CLOSED');
    assert.equal(b.counters.errorsNotCounted, 10);
  });
});

describe('calls', () => {
  test('a call that outlives its timeout rejects with CallTimeoutError and its signal aborts', async () => {
    const { clock, b } = breaker({ timeoutMs: 200 });
    let seen: AbortSignal | undefined;
    const result = b.execute((signal) => {
      seen = signal;
      return hang();
    });
    clock.advance(199);
    await flush();
    assert.equal(seen!.aborted, false);
    clock.advance(1);
    await assert.rejects(result, (e: unknown) => e instanceof CallTimeoutError && e.code === 'GOVMAP_CALL_TIMEOUT' && e.timeoutMs === 200);
    assert.equal(seen!.aborted, true);
    assert.equal(b.counters.timeouts, 1);
  });

  test('a long timeout does not arm a timer per millisecond of traffic, and still never times a call out early', async () => {
    // One bucket (one timer) per start millisecond: with a 60 s budget and a call every
    // millisecond, 60,000 timers were alive at once and the process woke every millisecond.
    const { clock, b } = breaker({ timeoutMs: 60_000 });
    const started = clock.now();
    const settledAt: number[] = [];
    for (let i = 0; i < 1_000; i++) {
      const call = b.execute((signal) => {
        // Aborted as the call times out, inside the timer: the clock still reads the deadline.
        signal.addEventListener('abort', () => (settledAt[i] = clock.now()));
        return hang();
      });
      void call.catch(() => undefined);
      clock.advance(1);
    }
    assert.ok(clock.pendingTimers <= 20, `${clock.pendingTimers} timers for 1,000 ms of calls`);
    clock.advance(60_000 - 1_000 - 1);
    await flush();
    assert.equal(b.counters.timeouts, 0, 'no call times out before its 60 s');
    clock.advance(1_000 + 60);
    await flush();
    assert.equal(b.counters.timeouts, 1_000);
    settledAt.forEach((at, i) => assert.ok(at - (started + i) >= 60_000 && at - (started + i) <= 60_060, `call ${i} timed out after ${at - (started + i)} ms`));
  });

  test('a result that arrives after the timeout is ignored', async () => {
    const { clock, b } = breaker();
    let finish!: (v: string) => void;
    const result = b.execute(() => new Promise<string>((resolve) => (finish = resolve)));
    clock.advance(200);
    await assert.rejects(result, CallTimeoutError);
    finish('late');
    await flush();
    assert.equal(b.counters.successes, 0);
    assert.equal(b.counters.timeouts, 1);
    assert.equal(b.inFlight, 0);
  });

  test('synchronous results and throws are handled like promises', async () => {
    const { b } = breaker();
    assert.equal(await b.execute(() => 42), 42);
    await assert.rejects(
      b.execute(() => {
        throw new Error('sync');
      }),
      /sync/,
    );
    assert.deepEqual([b.counters.successes, b.counters.failures], [1, 1]);
  });

  test('timeoutMs: Infinity makes no timer: outcomes still count and trip the breaker', async () => {
    const { clock, b } = breaker({ timeoutMs: Infinity, breachedWindowsToOpen: 1 });
    let seen: AbortSignal | undefined;
    assert.equal(
      await b.execute((signal) => {
        seen = signal;
        return 'ok';
      }),
      'ok',
    );
    assert.equal(seen!.aborted, false);
    await assert.rejects(
      b.execute(() => {
        throw new Error('sync');
      }),
      /sync/,
    );
    await window(clock, b, 10, 5, 0);
    assert.equal(clock.pendingTimers, 0, 'no per-call timers');
    clock.advance(1000);
    assert.equal(b.state, 'OPEN');
    assert.deepEqual([b.counters.successes, b.counters.failures], [6, 6]);
  });

  test('an OPEN breaker does not make the call; the fallback answers: function, static value, or CircuitOpenError', async () => {
    const { clock, b } = breaker();
    await window(clock, b, 10, 5, 3);
    let made = 0;
    const call = (): Promise<string> => {
      made++;
      return ok();
    };
    await assert.rejects(b.execute(call), (e: unknown) => e instanceof CircuitOpenError && e.code === 'GOVMAP_CIRCUIT_OPEN' && e.state === 'OPEN' && e.retryAt === b.openUntil);
    assert.equal(await b.execute(call, { value: 'queued' }), 'queued');
    assert.equal(await b.execute(call, (refusal) => `degraded:${refusal.state}`), 'degraded:OPEN');
    assert.equal(made, 0);
    assert.equal(b.counters.rejected, 3);
  });

  test('a call that is not a function, or a fallback that is neither a function nor { value }, is refused before admission and never counted as a failure', async () => {
    const { b } = breaker({ minimumCalls: 1, breachedWindowsToOpen: 1 });
    const refused = (argument: string) => (e: unknown) => e instanceof BreakerArgumentError && e.code === 'GOVMAP_BREAKER_ARGUMENT_INVALID' && e.details.argument === argument;
    await assert.rejects(b.execute(undefined as never), refused('call'));
    await assert.rejects(b.execute('settle' as never), refused('call'));
    // Found on the first call, not only when the breaker first opens in an incident.
    await assert.rejects(b.execute(ok, null as never), refused('fallback'));
    await assert.rejects(b.execute(ok, 'queued' as never), refused('fallback'));
    await assert.rejects(b.execute(ok, {} as never), refused('fallback'));
    assert.deepEqual([b.counters.failures, b.counters.successes, b.counters.rejected, b.inFlight], [0, 0, 0, 0]);
    assert.equal(await b.execute(ok, { value: undefined }), 'ok', '{ value: undefined } is a static fallback');
  });

  test('a thenable whose then() throws is the call failing now, not a timeout at the deadline', async () => {
    const { clock, b } = breaker({ timeoutMs: 100 });
    const broken = { then: () => { throw new Error('driver bug'); } } as unknown as PromiseLike<string>;
    await assert.rejects(b.execute(() => broken), /driver bug/);
    assert.deepEqual([b.counters.failures, b.counters.timeouts, b.inFlight], [1, 0, 0]);
    clock.advance(100);
    assert.deepEqual([b.counters.failures, b.counters.timeouts], [1, 0]);
  });
});

describe('OPEN -> HALF_OPEN -> CLOSED | OPEN', () => {
  async function tripped(extra: Partial<CircuitBreakerOptions> = {}): Promise<ReturnType<typeof breaker>> {
    const made = breaker({ openDurationMs: 5_000, halfOpenProbes: 3, ...extra });
    await window(made.clock, made.b, 10, 5, 3);
    assert.equal(made.b.state, 'OPEN');
    return made;
  }

  test('after the wait, up to N probes go through, the others are refused; all passing closes it', async () => {
    const { clock, b, transitions } = await tripped();
    clock.advance(4_999);
    assert.equal(b.state, 'OPEN');
    clock.advance(1);
    assert.equal(b.state, 'HALF_OPEN');
    const release: Array<() => void> = [];
    const probes = Array.from({ length: 3 }, () => b.execute(() => new Promise<string>((resolve) => release.push(() => resolve('ok')))));
    await assert.rejects(b.execute(ok), (e: unknown) => e instanceof CircuitOpenError && e.state === 'HALF_OPEN');
    release.forEach((r) => r());
    await Promise.all(probes);
    assert.equal(b.state, 'CLOSED');
    assert.deepEqual(
      transitions.map((t) => `${t.to}:${t.reason}`),
      ['OPEN:both_rates', 'HALF_OPEN:open_elapsed', 'CLOSED:probes_passed'],
    );
  });

  test('while another instance holds the probe right, a refusal names no retry time in the past', async () => {
    // The wait is over, but the cluster's probe gate says another instance is probing: the
    // refusal used to report the end of the wait as retryAt ("probing again from" a moment
    // already gone), and a caller scheduling its retry there retried at once, to be refused again.
    const { clock, b } = await tripped();
    b.setProbeGate({ requestProbe: () => false, releaseProbe: () => undefined });
    clock.advance(5_000);
    clock.advance(2_000);
    assert.equal(b.awaitingProbeRight, true);
    await assert.rejects(b.execute(ok), (e: unknown) => {
      assert.ok(e instanceof CircuitOpenError && e.state === 'OPEN');
      assert.ok(e.retryAt === null || e.retryAt > clock.now(), `retryAt ${e.retryAt} is not in the past (now ${clock.now()})`);
      assert.doesNotMatch(e.message, /probing again from/);
      assert.match(e.message, /another instance is probing/);
      return true;
    });
    assert.ok(b.openUntil === null || b.openUntil > clock.now(), 'the status shows no end of wait in the past either');
  });

  test('probes that breach a threshold reopen it as soon as the verdict is certain', async () => {
    const { clock, b, transitions } = await tripped({ halfOpenProbes: 4 });
    clock.advance(5_000);
    const first = [b.execute(boom).catch(() => undefined), b.execute(boom).catch(() => undefined)];
    await Promise.all(first); // 2 failures of 4 probes: 50% whatever the other two do
    assert.equal(b.state, 'OPEN');
    assert.equal(transitions.at(-1)!.reason, 'probes_failed');
    assert.equal(b.openUntil, clock.now() + 5_000, 'a fresh wait');
  });

  test('a wall clock stepped back during the OPEN wait (NTP, a resumed VM) does not stretch the wait by the step', async () => {
    // Timers run on the monotonic clock (setTimeout); now() is the wall clock, which can step back.
    const timers = new ManualClock(Date.UTC(2026, 0, 1));
    let step = 0;
    const clock = { now: () => timers.now() + step, setTimer: timers.setTimer.bind(timers), clearTimer: timers.clearTimer.bind(timers) };
    const b = new CircuitBreaker({ name: 'settlement', clock, minimumCalls: 1, breachedWindowsToOpen: 1, openDurationMs: 30_000, timeoutMs: Infinity });
    await b.execute(boom).catch(() => undefined);
    timers.advance(1_000);
    assert.equal(b.state, 'OPEN');
    step = -3_600_000; // the wall clock goes back an hour
    timers.advance(30_000);
    assert.equal(b.state, 'HALF_OPEN', 'the 30 s wait has passed: probing starts, not an hour later');
    assert.equal(await b.execute(ok), 'ok');
  });

  test('a wall clock trailing the timer by a millisecond still waits out the rest of the wait', () => {
    const timers = new ManualClock(Date.UTC(2026, 0, 1));
    let lag = 0;
    const clock = { now: () => timers.now() - lag, setTimer: timers.setTimer.bind(timers), clearTimer: timers.clearTimer.bind(timers) };
    const b = new CircuitBreaker({ name: 'settlement', clock, openDurationMs: 30_000 });
    b.adoptOpen();
    lag = 1;
    timers.advance(30_000);
    assert.equal(b.state, 'OPEN');
    lag = 0;
    timers.advance(1);
    assert.equal(b.state, 'HALF_OPEN');
  });

  test('restore(): an OPEN snapshot stays OPEN for the rest of its wait, then probes', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
    const b = new CircuitBreaker({ name: 'settlement', clock, openDurationMs: 30_000 });
    const since = new Date(clock.now() - 10_000).toISOString();
    assert.equal(b.restore({ state: 'OPEN', failures: 6, timeouts: 0, total: 10, breachedWindows: 3, since, version: 7 }), true);
    assert.equal(b.state, 'OPEN');
    assert.equal(b.openUntil, clock.now() + 20_000);
    assert.equal(b.version, 8);
    clock.advance(19_999);
    assert.equal(b.state, 'OPEN');
    clock.advance(1);
    assert.equal(b.state, 'HALF_OPEN');
  });

  test('restore(): an OPEN snapshot whose since is ahead of this clock waits the full wait, not none', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
    const b = new CircuitBreaker({ name: 'settlement', clock, openDurationMs: 30_000 });
    const since = new Date(clock.now() + 5_000).toISOString(); // written by a host whose clock runs 5 s ahead
    assert.equal(b.restore({ state: 'OPEN', failures: 6, timeouts: 0, total: 10, breachedWindows: 3, since, version: 1 }), true);
    assert.equal(b.state, 'OPEN');
    assert.equal(b.openUntil, clock.now() + 30_000);
  });

  test('restore(): a snapshot decodeSnapshot would refuse is refused with a typed error, not carried into every later publication', () => {
    const b = new CircuitBreaker({ name: 'settlement', clock: new ManualClock() });
    const since = new Date().toISOString();
    for (const bad of [null, { state: 'OPEN', failures: 0, timeouts: 0, total: 0, breachedWindows: 0, since, version: Number.NaN }, { state: 'SMOKING', failures: 0, timeouts: 0, total: 0, breachedWindows: 0, since, version: 1 }]) {
      assert.throws(() => b.restore(bad as never), (e: unknown) => e instanceof BreakerArgumentError && e.details.argument === 'snapshot');
    }
    assert.deepEqual([b.state, b.version], ['CLOSED', 0]);
  });
});

describe('keyed groups', () => {
  test('each key has its own breaker: one failing org does not open another org', async () => {
    const clock = new ManualClock();
    const group = new BreakerGroup({ name: 'settlement', clock, breachedWindowsToOpen: 1 });
    await Promise.all(Array.from({ length: 10 }, () => group.execute('org-1001', boom).catch(() => undefined)));
    clock.advance(1000);
    assert.equal(group.get('org-1001').state, 'OPEN');
    assert.equal(await group.execute('org-2002', ok), 'ok');
    assert.equal(group.get('org-2002').id, 'settlement:org-2002');
    group.dispose();
  });

  test('idle CLOSED breakers are evicted; an idle OPEN one is kept', async () => {
    const clock = new ManualClock();
    const group = new BreakerGroup({ name: 'settlement', clock, breachedWindowsToOpen: 1, idleEvictionMs: 60_000, openDurationMs: 600_000 });
    await group.execute('healthy', ok);
    await Promise.all(Array.from({ length: 10 }, () => group.execute('failing', boom).catch(() => undefined)));
    clock.advance(1000);
    assert.equal(group.get('failing').state, 'OPEN');
    clock.advance(120_000);
    assert.equal(group.peek('healthy'), undefined);
    assert.equal(group.peek('failing')?.state, 'OPEN');
    assert.equal(group.evictions, 1);
    group.dispose();
  });

  test('memory is bounded by maxBreakers: the least recently used goes first', async () => {
    const clock = new ManualClock();
    const group = new BreakerGroup({ name: 'orgs', clock, maxBreakers: 100 });
    for (let i = 0; i < 1000; i++) {
      await group.execute(`org-${i}`, ok);
      clock.advance(1);
    }
    assert.equal(group.size, 100);
    assert.ok(group.peek('org-999') !== undefined && group.peek('org-0') === undefined);
    group.dispose();
  });

  test('at maxBreakers, a flood of new keys (random orgIds in X-Biz-Tag) costs each new key a bounded amount of work, not a scan of every breaker', async () => {
    // Counts clock reads: each breaker looked at to find the least recently used reads the clock.
    // Scanning all 10,000 breakers per new key was about 1 ms of event loop per request.
    const clock = new ManualClock();
    let reads = 0;
    const counting = { now: () => (reads++, clock.now()), setTimer: clock.setTimer.bind(clock), clearTimer: clock.clearTimer.bind(clock) };
    const maxBreakers = 2_000;
    const group = new BreakerGroup({ name: 'orgs', clock: counting, maxBreakers });
    for (let i = 0; i < maxBreakers; i++) {
      await group.execute(`org-${i}`, ok);
      clock.advance(1);
    }
    reads = 0;
    const flood = 2_000;
    for (let i = 0; i < flood; i++) {
      await group.execute(`flood-${i}`, ok);
      clock.advance(1);
    }
    assert.equal(group.size, maxBreakers);
    assert.ok(reads / flood < 50, `${(reads / flood).toFixed(0)} clock reads per new key at maxBreakers ${maxBreakers}`);
    // Still least recently used first: the oldest orgs went, the newest keys stay.
    assert.ok(group.peek('org-0') === undefined && group.peek(`flood-${flood - 1}`) !== undefined);
    group.dispose();
  });

  test('the least recently used goes first even when it was used again after the group last looked', async () => {
    const clock = new ManualClock();
    const group = new BreakerGroup({ name: 'orgs', clock, maxBreakers: 100 });
    for (let i = 0; i < 100; i++) {
      await group.execute(`org-${i}`, ok);
      clock.advance(1);
    }
    await group.execute('new-0', ok); // full: org-0 goes
    clock.advance(1);
    await group.execute('org-1', ok); // org-1, next in line, is used again: now the most recent
    clock.advance(1);
    await group.execute('new-1', ok);
    assert.ok(group.peek('org-0') === undefined && group.peek('org-1') !== undefined && group.peek('org-2') === undefined);
    group.dispose();
  });

  test('a key that cannot name a breaker is refused with a typed error', () => {
    const group = new BreakerGroup({ name: 'orgs', clock: new ManualClock() });
    for (const key of ['', 'a/b', 'x'.repeat(65), 'org 1']) {
      assert.throws(() => group.get(key), (e: unknown) => e instanceof BreakerKeyError && e.code === 'GOVMAP_BREAKER_KEY_INVALID');
    }
    assert.equal(group.size, 0);
    group.dispose();
  });

  test('execute() with a key that cannot name a breaker rejects (as after dispose), never throws past the caller\'s .catch', async () => {
    const group = new BreakerGroup({ name: 'orgs', clock: new ManualClock() });
    for (const key of ['', 'a/b', 'x'.repeat(65), 'org 1', 42 as unknown as string]) {
      let returned: Promise<unknown> | undefined;
      assert.doesNotThrow(() => {
        returned = group.execute(key, ok);
      }, `execute(${JSON.stringify(key)}) threw synchronously`);
      await assert.rejects(returned!, (e: unknown) => e instanceof BreakerKeyError && e.code === 'GOVMAP_BREAKER_KEY_INVALID');
    }
    assert.equal(group.size, 0);
    group.dispose();
  });

  test('a key with no string form (a null-prototype object, a throwing toString) is refused with BreakerKeyError, not a bare TypeError', async () => {
    const group = new BreakerGroup({ name: 'orgs', clock: new ManualClock() });
    const keys = [Object.create(null) as unknown as string, { toString: () => { throw new Error('boom'); } } as unknown as string];
    for (const key of keys) {
      assert.throws(() => group.get(key), (e: unknown) => e instanceof BreakerKeyError && e.code === 'GOVMAP_BREAKER_KEY_INVALID' && e.message.includes('[object Object]'));
      await assert.rejects(group.execute(key, ok), (e: unknown) => e instanceof BreakerKeyError && e.code === 'GOVMAP_BREAKER_KEY_INVALID');
    }
    group.dispose();
    for (const key of keys) await assert.rejects(group.execute(key, ok), (e: unknown) => e instanceof BreakerGroupDisposedError && e.code === 'GOVMAP_BREAKER_GROUP_DISPOSED');
  });

  test('after dispose() a group creates and announces no breaker: get() throws, execute() rejects, both with a code', async () => {
    const group = new BreakerGroup({ name: 'orgs', clock: new ManualClock() });
    const announced: string[] = [];
    group.attach({ added: (b) => announced.push(b.id), removed: () => undefined });
    await group.execute('org-1', ok);
    group.dispose();
    assert.throws(() => group.get('org-2'), (e: unknown) => e instanceof BreakerGroupDisposedError && e.code === 'GOVMAP_BREAKER_GROUP_DISPOSED' && /get\("org-2"\) called after dispose/.test(e.message));
    await assert.rejects(group.execute('org-1', ok), { code: 'GOVMAP_BREAKER_GROUP_DISPOSED' });
    assert.deepEqual(announced, ['orgs:org-1']);
    assert.equal(group.size, 0);
  });
});

describe('snapshots and metrics', () => {
  test('encode/decode round-trips; bad data is refused with a reason, never thrown', () => {
    const s = { state: 'OPEN', failures: 5, timeouts: 3, total: 10, breachedWindows: 1, since: '2026-01-01T00:00:00.000Z', version: 4 } as const;
    assert.deepEqual(decodeSnapshot(encodeSnapshot(s)), { ok: true, snapshot: s });
    assert.equal(encodeSnapshot(s), '{"state":"OPEN","failures":5,"timeouts":3,"total":10,"breachedWindows":1,"since":"2026-01-01T00:00:00.000Z","version":4}');
    const bad: Array<[string, string]> = [
      ['{not json', 'malformed_json'],
      [JSON.stringify({ ...s, state: 'AJAR' }), 'unknown_state'],
      [JSON.stringify({ ...s, failures: '5' }), 'invalid_failures'],
      [JSON.stringify({ ...s, since: 'yesterday' }), 'invalid_since'],
      [JSON.stringify({ ...s, failures: 9, timeouts: 9 }), 'counts_exceed_total'],
      ['null', 'invalid_shape'],
    ];
    for (const [text, reason] of bad) assert.deepEqual(decodeSnapshot(text), { ok: false, reason }, text);
  });

  test('Prometheus sees state, calls by outcome and transitions, read at scrape time', async () => {
    const clock = new ManualClock();
    const group = new BreakerGroup({ name: 'settlement', clock });
    const metrics = new BreakerMetrics().trackGroup(group);
    await window(clock, group.get('org-1'), 10, 5, 3);
    await group.execute('org-1', ok).catch(() => undefined);
    const text = await metrics.render();
    assert.match(text, /govmap_breaker_state\{breaker="settlement",key="org-1",state="OPEN"\} 1/);
    assert.match(text, /govmap_breaker_state\{breaker="settlement",key="org-1",state="CLOSED"\} 0/);
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlement",key="org-1",outcome="failure"\} 5/);
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlement",key="org-1",outcome="timeout"\} 3/);
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlement",key="org-1",outcome="rejected"\} 1/);
    assert.match(text, /govmap_breaker_transitions_total\{breaker="settlement",key="org-1",to="OPEN"\} 1/);
    group.dispose();
  });

  test('calls their caller abandoned are a series of their own, outcome="abandoned": a flood of hang-ups is visible, not counted for or against the dependency', async () => {
    const group = new BreakerGroup({ name: 'settlement', clock: new ManualClock() });
    const metrics = new BreakerMetrics().trackGroup(group);
    for (let i = 0; i < 3; i++) {
      await group.execute('org-1', () => Promise.reject(new CallAbandonedError('settlement:org-1', new Error('client hung up')))).catch(() => undefined);
    }
    const text = await metrics.render();
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlement",key="org-1",outcome="abandoned"\} 3/);
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlement",key="org-1",outcome="failure"\} 0/);
    group.dispose();
  });

  test('two cluster syncs of one member on one kind of store: state_store_connected is 0 while either is disconnected', async () => {
    // One process, two syncs (settlement on the primary etcd, routes on a regional one): the same
    // member name and store kind make one label set; the connected one must not hide the other.
    const sync = (connected: boolean) => ({
      instance: 'clearing-a',
      storeKind: 'etcd',
      connected,
      counters: { writes: 1, writeFailures: 0, conflicts: 0, invalidSnapshots: new Map<string, number>(), leaseLosses: 0, resyncs: 0, adoptions: 0 },
    });
    const metrics = new BreakerMetrics().trackSync(sync(false)).trackSync(sync(true));
    const text = await metrics.render();
    assert.match(text, /govmap_breaker_state_store_connected\{member="clearing-a",store="etcd"\} 0\n/);
    assert.match(text, /govmap_breaker_state_store_events_total\{member="clearing-a",event="write"\} 2\n/);
  });

  test('keys past maxKeySeries (orgs from request headers) share one "(others)" series: the scrape stays bounded, an OPEN one still shows', async () => {
    const clock = new ManualClock();
    const group = new BreakerGroup({ name: 'settlement', clock });
    const metrics = new BreakerMetrics({ maxKeySeries: 3 }).trackGroup(group);
    for (let org = 1; org <= 500; org++) await group.execute(`org-${org}`, ok);
    await window(clock, group.get('org-999'), 10, 5, 3); // a key past the three: its OPEN must still show
    const text = await metrics.render();
    const keys = new Set([...text.matchAll(/govmap_breaker_state\{breaker="settlement",key="([^"]*)"/g)].map((m) => m[1]));
    assert.deepEqual([...keys].sort(), ['(others)', 'org-1', 'org-2', 'org-3']);
    // The state gauge of the rest counts breakers per state; counters sum theirs.
    assert.match(text, /govmap_breaker_state\{breaker="settlement",key="\(others\)",state="OPEN"\} 1/);
    assert.match(text, /govmap_breaker_state\{breaker="settlement",key="\(others\)",state="CLOSED"\} 497/);
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlement",key="\(others\)",outcome="failure"\} 5/);
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlement",key="org-1",outcome="success"\} 1/);
    assert.throws(() => new BreakerMetrics({ maxKeySeries: -1 }), /maxKeySeries/);
    group.dispose();
  });

  test('a prefix that cannot start a Prometheus metric name is refused with ConfigurationError naming "prefix", not a bare Error from prom-client', () => {
    for (const prefix of ['bad prefix', '9x_', 'govmap-breaker_', 5]) {
      assert.throws(
        () => new BreakerMetrics({ prefix } as unknown as ConstructorParameters<typeof BreakerMetrics>[0]),
        (e: unknown) => e instanceof ConfigurationError && e.code === 'GOVMAP_INVALID_CONFIGURATION' && e.message.includes('"prefix"'),
        String(prefix),
      );
    }
    assert.match(new BreakerMetrics({ prefix: 'clearing:breaker_' }).prefix, /^clearing:breaker_$/);
  });

  test('tracking something that is not a group, a breaker or a sync is refused at once with a coded error, and the registry (map metrics on it included) still scrapes', async () => {
    const metrics = new BreakerMetrics();
    const group = new BreakerGroup({ name: 'settlement', clock: new ManualClock() });
    metrics.trackGroup(group);
    await group.execute('org-1', ok);
    const refused = (what: string) => (e: unknown) => e instanceof NotABreakerSourceError && e.code === 'GOVMAP_METRICS_NOT_A_BREAKER' && e.message.includes(what);
    assert.throws(() => metrics.trackGroup({ name: 'routes' } as unknown as BreakerGroup), refused('trackGroup'));
    assert.throws(() => metrics.trackGroup(null as unknown as BreakerGroup), refused('trackGroup'));
    assert.throws(() => metrics.trackBreaker({ name: 'fx' } as unknown as CircuitBreaker), refused('trackBreaker'));
    assert.throws(() => metrics.trackBreaker(group as unknown as CircuitBreaker), refused('trackBreaker'));
    assert.throws(() => metrics.trackSync({ instance: 'a' } as unknown as BreakerClusterSync), refused('trackSync'));
    // unreadableSnapshots is optional (a source written before it), but when given it is read at every scrape.
    const counters = { writes: 0, writeFailures: 0, conflicts: 0, invalidSnapshots: new Map<string, number>(), leaseLosses: 0, resyncs: 0, adoptions: 0 };
    assert.throws(() => metrics.trackSync({ instance: 'a', storeKind: 'etcd', connected: true, counters, unreadableSnapshots: 3 } as unknown as BreakerClusterSync), refused('trackSync'));
    assert.match(await metrics.render(), /govmap_breaker_calls_total\{breaker="settlement",key="org-1",outcome="success"\} 1/);
    group.dispose();
  });

  test('a disposed group leaves the scrape: a group replaced on a config reload exports no stale series of the old one', async () => {
    const metrics = new BreakerMetrics();
    const old = new BreakerGroup({ name: 'settlementV1', clock: new ManualClock() });
    metrics.trackGroup(old);
    await old.execute('org-1', ok);
    assert.match(await metrics.render(), /govmap_breaker_group_breakers\{breaker="settlementV1"\} 1/);
    old.dispose();
    const replacement = new BreakerGroup({ name: 'settlementV2', clock: new ManualClock() });
    metrics.trackGroup(replacement);
    await replacement.execute('org-1', ok);
    const text = await metrics.render();
    assert.doesNotMatch(text, /breaker="settlementV1"/);
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlementV2",key="org-1",outcome="success"\} 1/);
    replacement.dispose();
  });

  test('untrackGroup() and untrackBreaker() take a live group or breaker out of the scrape; untracking a group replaced under its name keeps the new one', async () => {
    const metrics = new BreakerMetrics();
    const first = new BreakerGroup({ name: 'settlement', clock: new ManualClock() });
    const second = new BreakerGroup({ name: 'settlement', clock: new ManualClock() });
    const standalone = new CircuitBreaker({ name: 'fx', clock: new ManualClock() });
    metrics.trackGroup(first).trackGroup(second).trackBreaker(standalone);
    await second.execute('org-2', ok);
    await standalone.execute(ok);
    metrics.untrackGroup(first);
    metrics.untrackBreaker(standalone);
    let text = await metrics.render();
    assert.match(text, /govmap_breaker_calls_total\{breaker="settlement",key="org-2",outcome="success"\} 1/);
    assert.doesNotMatch(text, /breaker="fx"/);
    metrics.untrackGroup(second);
    text = await metrics.render();
    assert.doesNotMatch(text, /breaker="settlement"/);
    first.dispose();
    second.dispose();
  });

  test('the "(others)" counters never fall: a breaker evicted from the sum keeps its counts there, and one in it is not moved out to a freed place', async () => {
    const clock = new ManualClock();
    const group = new BreakerGroup({ name: 'settlement', clock, maxBreakers: 3 });
    const metrics = new BreakerMetrics({ maxKeySeries: 1 }).trackGroup(group);
    const others = async (): Promise<number> => {
      const text = await metrics.render();
      return Number(/govmap_breaker_calls_total\{breaker="settlement",key="\(others\)",outcome="success"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    for (const org of ['org-1', 'org-2', 'org-3']) {
      for (let i = 0; i < 10; i++) await group.execute(org, ok);
      clock.advance(1);
    }
    assert.equal(await others(), 20); // org-1 has its own series; org-2 and org-3 are summed
    // org-4 makes room by evicting the least recently used: org-1, the key with its own series.
    await group.execute('org-4', ok);
    clock.advance(1);
    // A counter that fell (org-3 moved to org-1's freed place) would read to Prometheus as a
    // reset: rate() and increase() would count the whole remaining sum again.
    assert.ok((await others()) >= 20);
    // org-2, in the sum, is evicted next: its 10 calls stay counted there.
    await group.execute('org-5', ok);
    assert.ok((await others()) >= 20);
    group.dispose();
  });
});
