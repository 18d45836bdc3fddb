import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { fullGc, nextTurn } from '../sandbox/gc.ts';
import { AsyncLane, AsyncLaneRefusedError, Bulkhead, BulkheadAbortedError, BulkheadFullError, Router, TokenBucket } from '../../src/routing/index.ts';

describe('bulkhead', () => {
  test('fuzzed interleavings: never more than maxConcurrent running nor maxQueued waiting; FIFO; every admitted call releases', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 3 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }),
        async (s, maxConcurrent, maxQueued, aborts) => {
          const bulkhead = new Bulkhead({ name: 'r', maxConcurrent, maxQueued });
          let running = 0;
          let peak = 0;
          const started: number[] = [];
          const outcomes: string[] = [];
          const calls = aborts.map((abort, i) => {
            const controller = new AbortController();
            const queuedAtSubmit = bulkhead.active >= maxConcurrent;
            const call = bulkhead
              .run(async () => {
                running++;
                peak = Math.max(peak, running);
                assert.ok(bulkhead.queued <= maxQueued);
                started.push(i);
                await s.schedule(Promise.resolve(), `work ${i}`);
                running--;
              }, controller.signal)
              .then(
                () => outcomes.push(`${i}:ok`),
                (error: unknown) => outcomes.push(`${i}:${error instanceof BulkheadFullError ? 'full' : error instanceof BulkheadAbortedError ? 'aborted' : 'other'}`),
              );
            if (abort && queuedAtSubmit) void s.schedule(Promise.resolve(), `abort ${i}`).then(() => controller.abort());
            return call;
          });
          // waitFor releases scheduled tasks as they appear, until every call has settled.
          await s.waitFor(Promise.all(calls));
          assert.ok(peak <= maxConcurrent, `peak ${peak} > ${maxConcurrent}`);
          assert.equal(bulkhead.active, 0, 'every slot released');
          assert.equal(bulkhead.queued, 0);
          assert.ok(!outcomes.some((o) => o.endsWith('other')));
          // Admission is FIFO: calls start in submission order.
          assert.deepEqual(started, [...started].sort((a, b) => a - b));
          assert.equal(outcomes.filter((o) => o.endsWith(':ok')).length, started.length);
          assert.equal(bulkhead.rejected, outcomes.filter((o) => o.endsWith('full')).length);
        },
      ),
      { numRuns: 150 },
    );
  });

  test('waiters that give up while every slot hangs are let go, not kept until a slot frees', async () => {
    // A downstream that never answers holds the only slot; callers keep arriving and giving up
    // (their request timed out). Each left waiter must be collectable: kept, they grow without bound.
    const bulkhead = new Bulkhead({ name: 'r', maxConcurrent: 1, maxQueued: 4 });
    let hang!: () => void;
    const hung = bulkhead.run(() => new Promise<void>((resolve) => (hang = resolve)));
    const signals: Array<WeakRef<AbortSignal>> = [];
    for (let round = 0; round < 1500; round++) {
      const controller = new AbortController();
      signals.push(new WeakRef(controller.signal));
      const call = bulkhead.run(() => undefined, controller.signal);
      controller.abort();
      await assert.rejects(call, BulkheadAbortedError);
    }
    assert.equal(bulkhead.queued, 0);
    await nextTurn();
    fullGc();
    const held = signals.filter((s) => s.deref() !== undefined).length;
    assert.ok(held < 1100, `${held} of 1500 given-up waiters are still held`);
    hang();
    await hung;
    assert.equal(bulkhead.active, 0);
    assert.equal(await bulkhead.run(() => 7), 7);
  });

  test('a failing call releases its slot too', async () => {
    const bulkhead = new Bulkhead({ name: 'r', maxConcurrent: 1, maxQueued: 0 });
    await assert.rejects(bulkhead.run(() => Promise.reject(new Error('downstream 500'))), /downstream 500/);
    assert.equal(await bulkhead.run(() => Promise.resolve(7)), 7);
  });
});

describe('token bucket', () => {
  test('starts full, refills at the rate, never beyond the burst', () => {
    let now = 0;
    const bucket = new TokenBucket({ ratePerSec: 10, burst: 3, clock: () => now });
    assert.deepEqual([bucket.take(), bucket.take(), bucket.take(), bucket.take()], [true, true, true, false]);
    assert.equal(bucket.waitMs(), 100);
    now = 99;
    assert.equal(bucket.take(), false);
    now = 100;
    assert.equal(bucket.take(), true);
    now = 100_000;
    assert.equal(bucket.tokens, 3);
  });

  test('a caller exactly 1/rate apart gets every token, whatever the rate (no floating-point loss)', () => {
    for (const ratePerSec of [3, 7, 11, 0.3]) {
      let now = 0;
      const bucket = new TokenBucket({ ratePerSec, burst: 1, clock: () => now });
      assert.equal(bucket.take(), true);
      let granted = 0;
      for (let i = 1; i <= 1000; i++) {
        now = (i * 1000) / ratePerSec;
        if (bucket.take()) granted++;
        else assert.equal(bucket.waitMs() < 1e-3, true, 'refused only by rounding');
      }
      assert.equal(granted, 1000, `rate ${ratePerSec}/s: one token per 1/rate seconds`);
    }
  });
});

/** A lane on a manual clock for its rate limit (its timers stay real). */
function lane<P>(options: Partial<ConstructorParameters<typeof AsyncLane<P>>[0]> & Pick<ConstructorParameters<typeof AsyncLane<P>>[0], 'process'>) {
  return new AsyncLane<P>({ name: 'r', ratePerSec: 1000, log: () => undefined, ...options });
}

describe('async lane', () => {
  test('jobs start no faster than the bucket allows', async () => {
    let now = 0;
    const started: number[] = [];
    const l = lane<number>({ ratePerSec: 1, burst: 2, clock: () => now, process: async (job) => void started.push(job.payload) });
    for (let i = 0; i < 5; i++) l.submit(i);
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(started, [0, 1], 'only the burst before the clock moves');
    now = 1000;
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual(started, [0, 1, 2], 'one more per second');
    now = 3000;
    const { remaining } = await l.close({ deadlineMs: 1500 });
    assert.deepEqual(started, [0, 1, 2, 3, 4]);
    assert.deepEqual(remaining, []);
  });

  test('close() drains everything queued, refuses new jobs, and reports what it processed', async () => {
    const done: number[] = [];
    const l = lane<number>({ ratePerSec: 200, process: async (job) => void done.push(job.payload) });
    for (let i = 0; i < 50; i++) l.submit(i);
    const closing = l.close({ deadlineMs: 5000 });
    assert.throws(() => l.submit(99), AsyncLaneRefusedError);
    const result = await closing;
    assert.equal(result.processed, 50);
    assert.deepEqual([...done].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
    assert.deepEqual(result.remaining, []);
  });

  test('at the deadline, every job not done is returned: nothing accepted is lost', async () => {
    const done = new Set<number>();
    const l = lane<number>({
      ratePerSec: 20,
      burst: 1,
      process: (job, signal) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            done.add(job.payload);
            resolve();
          }, 30);
          signal.addEventListener('abort', () => {
            clearTimeout(timer);
            reject(signal.reason as Error);
          });
        }),
    });
    const accepted = Array.from({ length: 40 }, (_, i) => l.submit(i));
    const { processed, remaining } = await l.close({ deadlineMs: 200 });
    assert.ok(processed > 0 && processed < 40, `processed ${processed}`);
    const left = new Set(remaining.map((j) => j.payload));
    for (const job of accepted) assert.ok(done.has(job.payload) !== left.has(job.payload), `job ${job.payload} is done xor remaining`);
    // A restart restores them with their tokens.
    const again = lane<number>({ process: async (job) => void done.add(job.payload) });
    again.restore(remaining);
    assert.equal((await again.close({ deadlineMs: 2000 })).processed, remaining.length);
    assert.equal(done.size, 40);
    assert.equal(again.status(remaining[0]!.token)?.state, 'done');
  });

  test('deferrals (breaker open) do not use up attempts; failures do, up to the dead letter', async () => {
    let open = true;
    const dead: number[] = [];
    let calls = 0;
    const l = lane<number>({
      deferMs: 10,
      maxAttempts: 3,
      isDeferral: (e) => (e as Error).message === 'open',
      onDeadLetter: (job) => dead.push(job.payload),
      process: async (job) => {
        calls++;
        if (open) throw new Error('open');
        if (job.payload === 13) throw new Error('downstream refuses 13');
      },
    });
    const ok = l.submit(1);
    const bad = l.submit(13);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(l.status(ok.token)?.state, 'queued');
    assert.equal(l.status(ok.token)?.attempts, 0, 'deferred, not attempted');
    assert.ok(calls >= 2);
    open = false;
    await l.close({ deadlineMs: 3000 });
    assert.equal(l.status(ok.token)?.state, 'done');
    assert.deepEqual(l.status(bad.token), { token: bad.token, state: 'dead', attempts: 3, lastError: 'downstream refuses 13' });
    assert.deepEqual(dead, [13]);
  });

  test('a close deadline beyond a timer\'s limit is refused before anything closes (Node would expire it after 1 ms)', async () => {
    const done: number[] = [];
    const l = lane<number>({ ratePerSec: 1000, process: (job) => new Promise<void>((resolve) => setTimeout(() => resolve(void done.push(job.payload)), 20)) });
    l.submit(1);
    await assert.rejects(l.close({ deadlineMs: 3e9 }), { code: 'GOVMAP_INVALID_CONFIGURATION', message: /"deadlineMs".*2147483647/ });
    l.submit(2); // still open: the refused close changed nothing
    const { processed, remaining } = await l.close({ deadlineMs: 2000 });
    assert.deepEqual([processed, remaining.length, done.sort()], [2, 0, [1, 2]]);
    const router = new Router({ table: { default: { target: 'core' }, routes: [] }, log: () => undefined });
    await assert.rejects(router.close({ deadlineMs: 2 ** 31 }), /"deadlineMs"/);
    assert.equal((await router.execute({ payload: null }, async () => 'live')).kind, 'live', 'the router still serves');
    await router.close();
  });

  test('a full lane refuses, with the capacity in the error', () => {
    const l = lane<number>({ ratePerSec: 0.001, burst: 1, maxQueued: 2, process: () => new Promise(() => undefined) });
    l.submit(1);
    l.submit(2);
    assert.throws(() => l.submit(3), /holds its maximum of 2/);
  });
});

test('async lane: restoring a token it already holds (the list restored twice, a token listed twice) keeps one copy', async () => {
  let calls = 0;
  const l = lane<number>({ maxInFlight: 4, process: () => { calls++; return new Promise<void>(() => undefined); } });
  const job = { token: 'pay-1', lane: 'r', payload: 1, acceptedAt: new Date(0).toISOString(), attempts: 0 };
  l.restore([job, job]);
  l.restore([job]);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual([calls, l.depth, l.counters.accepted], [1, 1, 1], 'one payment, run once at a time');
  const closed = await l.close({ deadlineMs: 10, abortGraceMs: 20 });
  assert.deepEqual(closed.remaining.map((j) => j.token), ['pay-1'], 'every accepted job accounted for');
});
