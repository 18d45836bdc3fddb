import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CircuitBreaker, CircuitOpenError, ManualClock } from '../../src/breaker/index.ts';
import type { BreakerSnapshot, BreakerState } from '../../src/breaker/index.ts';

/**
 * Model-based test of the breaker's state machine. Random sequences of calls (held open until a
 * command settles them), settlements (success or failure), and clock advances (which fire the
 * per-call timeouts and the OPEN wait) run against a real CircuitBreaker on a ManualClock and
 * against a reference model written from the specification's words: windows kept as a map of
 * window index -> counts and judged in order, rates compared as exact fractions. After every
 * command the breaker's state and snapshot must equal the model's.
 */
interface Params {
  readonly windowMs: number;
  readonly minimumCalls: number;
  readonly breachedWindowsToOpen: number;
  readonly openDurationMs: number;
  readonly halfOpenProbes: number;
  readonly timeoutMs: number;
  readonly failureRate: number;
  readonly timeoutRate: number;
}

type Outcome = 'success' | 'failure' | 'timeout';
interface ModelCall {
  readonly start: number;
  readonly epoch: number;
  done: boolean;
}
interface Counts {
  calls: number;
  failures: number;
  timeouts: number;
}

/** rate a/b >= threshold, as exact rational arithmetic (threshold has at most 4 decimals). */
const atLeast = (a: number, b: number, threshold: number): boolean => a * 10_000 >= Math.round(threshold * 10_000) * b;

class Model {
  readonly p: Params;
  state: BreakerState = 'CLOSED';
  since: number;
  version = 0;
  epoch = 0;
  windows = new Map<number, Counts>();
  current: number;
  streak = 0;
  evidence: Counts & { breached: number } = { calls: 0, failures: 0, timeouts: 0, breached: 0 };
  openUntil = 0;
  probesAdmitted = 0;
  probes: Counts = { calls: 0, failures: 0, timeouts: 0 };
  calls: ModelCall[] = [];
  counts = { success: 0, failure: 0, timeout: 0, rejected: 0 };

  constructor(p: Params, now: number) {
    this.p = p;
    this.since = now;
    this.current = Math.floor(now / p.windowMs);
  }

  window(index: number): Counts {
    let w = this.windows.get(index);
    if (w === undefined) this.windows.set(index, (w = { calls: 0, failures: 0, timeouts: 0 }));
    return w;
  }

  enter(state: BreakerState, now: number): void {
    this.state = state;
    this.since = now;
    this.version++;
    this.epoch++;
    if (state === 'CLOSED') {
      this.windows.clear();
      this.current = Math.floor(now / this.p.windowMs);
      this.streak = 0;
    }
    if (state === 'OPEN') this.openUntil = now + this.p.openDurationMs;
    if (state === 'HALF_OPEN') {
      this.probesAdmitted = 0;
      this.probes = { calls: 0, failures: 0, timeouts: 0 };
    }
  }

  /** Judges, in order, every window that ended before `now` (an empty window ends a streak). */
  observe(now: number): void {
    const index = Math.floor(now / this.p.windowMs);
    while (this.state === 'CLOSED' && this.current < index) {
      const w = this.window(this.current);
      const judged = w.calls >= this.p.minimumCalls;
      const failureBreach = judged && atLeast(w.failures, w.calls, this.p.failureRate);
      const timeoutBreach = judged && atLeast(w.timeouts, w.calls, this.p.timeoutRate);
      this.current++;
      if (failureBreach || timeoutBreach) {
        this.streak++;
        if (this.streak >= this.p.breachedWindowsToOpen) {
          this.evidence = { ...w, breached: this.streak };
          // OPEN from the end of the window that completed the streak, however late it is noticed.
          this.enter('OPEN', Math.min(this.current * this.p.windowMs, now));
        }
      } else {
        this.streak = 0;
      }
    }
  }

  /** A call starts at `now`: its epoch, or -1 if refused. */
  admit(now: number): number {
    this.observe(now);
    if (this.state === 'CLOSED') return this.epoch;
    if (this.state === 'OPEN' && now >= this.openUntil) this.enter('HALF_OPEN', now);
    if (this.state === 'HALF_OPEN' && this.probesAdmitted < this.p.halfOpenProbes) {
      this.probesAdmitted++;
      return this.epoch;
    }
    this.counts.rejected++;
    return -1;
  }

  record(call: ModelCall, outcome: Outcome, now: number): void {
    call.done = true;
    this.counts[outcome]++;
    if (call.epoch !== this.epoch) return;
    if (this.state === 'CLOSED') {
      this.observe(now);
      if (this.state !== 'CLOSED') return;
      const w = this.window(this.current);
      w.calls++;
      if (outcome === 'failure') w.failures++;
      if (outcome === 'timeout') w.timeouts++;
      if (w.calls >= this.p.minimumCalls && atLeast(w.failures, w.calls, this.p.failureRate) && atLeast(w.timeouts, w.calls, this.p.timeoutRate)) {
        this.evidence = { ...w, breached: this.streak + 1 };
        this.enter('OPEN', now);
      }
    } else if (this.state === 'HALF_OPEN') {
      this.probes.calls++;
      if (outcome === 'failure') this.probes.failures++;
      if (outcome === 'timeout') this.probes.timeouts++;
      const n = this.p.halfOpenProbes;
      // Final rates are over all n probes: open as soon as the counts so far already breach.
      if (atLeast(this.probes.failures, n, this.p.failureRate) || atLeast(this.probes.timeouts, n, this.p.timeoutRate)) {
        this.evidence = { ...this.probes, breached: 0 };
        this.enter('OPEN', now);
      } else if (this.probes.calls === n) {
        this.enter('CLOSED', now);
      }
    }
  }

  /** Time passes to `target`: calls time out and the OPEN wait ends, in time order. */
  advance(from: number, target: number): void {
    for (;;) {
      let next: { at: number; call?: ModelCall } | undefined;
      for (const call of this.calls) {
        const at = call.start + this.p.timeoutMs;
        if (!call.done && at <= target && (next === undefined || at < next.at)) next = { at, call };
      }
      if (this.state === 'OPEN' && this.openUntil <= target && (next === undefined || this.openUntil < next.at)) next = { at: Math.max(from, this.openUntil) };
      if (next === undefined) return;
      if (next.call !== undefined) this.record(next.call, 'timeout', next.at);
      else this.enter('HALF_OPEN', next.at);
    }
  }

  snapshot(): Omit<BreakerSnapshot, 'since'> & { since: number } {
    const base = { since: this.since, version: this.version };
    if (this.state === 'CLOSED') {
      const w = this.window(this.current);
      return { state: 'CLOSED', failures: w.failures, timeouts: w.timeouts, total: w.calls, breachedWindows: this.streak, ...base };
    }
    if (this.state === 'OPEN') {
      const e = this.evidence;
      return { state: 'OPEN', failures: e.failures, timeouts: e.timeouts, total: e.calls, breachedWindows: e.breached, ...base };
    }
    return { state: 'HALF_OPEN', failures: this.probes.failures, timeouts: this.probes.timeouts, total: this.probes.calls, breachedWindows: 0, ...base };
  }
}

interface RealCall {
  settle: (outcome: 'success' | 'failure') => void;
  result: Promise<string>;
}
interface Real {
  readonly clock: ManualClock;
  readonly breaker: CircuitBreaker;
  readonly calls: RealCall[];
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function agree(model: Model, real: Real): Promise<void> {
  await flush();
  const now = real.clock.now();
  model.observe(now);
  assert.equal(real.breaker.state, model.state);
  const expected = model.snapshot();
  assert.deepEqual(real.breaker.snapshot(), { ...expected, since: new Date(expected.since).toISOString() });
  const c = real.breaker.counters;
  assert.deepEqual({ success: c.successes, failure: c.failures, timeout: c.timeouts, rejected: c.rejected }, model.counts);
}

class Call implements fc.AsyncCommand<Model, Real> {
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    const now = real.clock.now();
    const epoch = model.admit(now);
    let settle!: (outcome: 'success' | 'failure') => void;
    const result = real.breaker.execute(
      () =>
        new Promise<string>((resolve, reject) => {
          settle = (outcome) => (outcome === 'success' ? resolve('ok') : reject(new Error('downstream failed')));
        }),
    );
    if (epoch < 0) {
      await assert.rejects(result, CircuitOpenError);
    } else {
      result.catch(() => undefined);
      model.calls.push({ start: now, epoch, done: false });
      real.calls.push({ settle, result });
    }
    await agree(model, real);
  }
  toString = (): string => 'call';
}

class Settle implements fc.AsyncCommand<Model, Real> {
  readonly pick: number;
  readonly outcome: 'success' | 'failure';
  constructor(pick: number, outcome: 'success' | 'failure') {
    this.pick = pick;
    this.outcome = outcome;
  }
  check = (model: Readonly<Model>): boolean => model.calls.some((c) => !c.done);
  async run(model: Model, real: Real): Promise<void> {
    const open = model.calls.flatMap((c, i) => (c.done ? [] : [i]));
    const i = open[this.pick % open.length]!;
    model.record(model.calls[i]!, this.outcome, real.clock.now());
    real.calls[i]!.settle(this.outcome);
    await agree(model, real);
  }
  toString = (): string => `settle(#${this.pick}, ${this.outcome})`;
}

class Advance implements fc.AsyncCommand<Model, Real> {
  readonly ms: number;
  constructor(ms: number) {
    this.ms = ms;
  }
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    const from = real.clock.now();
    model.advance(from, from + this.ms);
    real.clock.advance(this.ms);
    await agree(model, real);
  }
  toString = (): string => `advance(${this.ms})`;
}

const params: fc.Arbitrary<Params> = fc.record({
  windowMs: fc.constantFrom(50, 100),
  minimumCalls: fc.integer({ min: 1, max: 4 }),
  breachedWindowsToOpen: fc.integer({ min: 1, max: 3 }),
  openDurationMs: fc.constantFrom(120, 300),
  halfOpenProbes: fc.integer({ min: 1, max: 4 }),
  timeoutMs: fc.constantFrom(30, 70),
  failureRate: fc.constantFrom(0.5, 0.3, 1),
  timeoutRate: fc.constantFrom(0.3, 0.5, 0.25),
});

const settle = fc.tuple(fc.nat(), fc.constantFrom<'success' | 'failure'>('success', 'failure')).map(([pick, outcome]) => new Settle(pick, outcome));
const commands = fc.commands(
  [
    fc.constant(new Call()),
    fc.constant(new Call()),
    fc.constant(new Call()),
    settle,
    settle,
    settle,
    fc.integer({ min: 1, max: 15 }).map((ms) => new Advance(ms)),
    fc.integer({ min: 1, max: 15 }).map((ms) => new Advance(ms)),
    fc.integer({ min: 40, max: 320 }).map((ms) => new Advance(ms)),
  ],
  { maxCommands: 250, size: '+1' },
);

test('the breaker agrees with the reference model on every random sequence of calls, outcomes and time', async () => {
  await fc.assert(
    fc.asyncProperty(params, fc.integer({ min: 0, max: 99 }), commands, async (p, offset, cmds) => {
      const clock = new ManualClock(Date.UTC(2026, 0, 1) + offset);
      const breaker = new CircuitBreaker({
        name: 'model',
        clock,
        windowMs: p.windowMs,
        minimumCalls: p.minimumCalls,
        breachedWindowsToOpen: p.breachedWindowsToOpen,
        openDurationMs: p.openDurationMs,
        halfOpenProbes: p.halfOpenProbes,
        timeoutMs: p.timeoutMs,
        failureRateThreshold: p.failureRate,
        timeoutRateThreshold: p.timeoutRate,
      });
      await fc.asyncModelRun(() => ({ model: new Model(p, clock.now()), real: { clock, breaker, calls: [] } }), cmds);
      breaker.dispose();
    }),
    { numRuns: 150 },
  );
});

test('the model run reaches every state and transition it is meant to check', async () => {
  // Guards the test above against passing vacuously: the same generators must visit OPEN,
  // HALF_OPEN and a recovery to CLOSED in a fair share of runs.
  const seen = new Set<string>();
  await fc.assert(
    fc.asyncProperty(params, commands, async (p, cmds) => {
      const clock = new ManualClock();
      const breaker = new CircuitBreaker({ name: 'coverage', clock, ...{ windowMs: p.windowMs, minimumCalls: p.minimumCalls, breachedWindowsToOpen: p.breachedWindowsToOpen, openDurationMs: p.openDurationMs, halfOpenProbes: p.halfOpenProbes, timeoutMs: p.timeoutMs, failureRateThreshold: p.failureRate, timeoutRateThreshold: p.timeoutRate } });
      breaker.onTransition((t) => seen.add(`${t.from}->${t.to}:${t.reason}`));
      await fc.asyncModelRun(() => ({ model: new Model(p, clock.now()), real: { clock, breaker, calls: [] } }), cmds);
      breaker.dispose();
    }),
    { numRuns: 100 },
  );
  for (const expected of ['CLOSED->OPEN:failure_rate', 'CLOSED->OPEN:timeout_rate', 'CLOSED->OPEN:both_rates', 'OPEN->HALF_OPEN:open_elapsed', 'HALF_OPEN->CLOSED:probes_passed', 'HALF_OPEN->OPEN:probes_failed']) {
    assert.ok(seen.has(expected), `no run reached ${expected}; seen: ${[...seen].join(', ')}`);
  }
});
