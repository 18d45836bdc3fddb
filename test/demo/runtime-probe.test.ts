import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RuntimeProbe } from '../../demo/runtime-probe.ts';

/** Busy-waits `ms` on this thread: the event loop is held that long. */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test('the runtime probe measures only once asked: the first sample is empty and starts an interval; the next one sees GC, allocation, loop delay and CPU', async (t) => {
  const probe = new RuntimeProbe();
  t.after(() => probe.stop());
  // Before the first sample nothing is measured: this garbage and this stall are not counted.
  let keep: unknown[] = [];
  for (let i = 0; i < 200_000; i++) keep.push({ i });
  block(40);
  const first = probe.sample();
  assert.equal(first.intervalMs, 0);
  assert.equal(first.gc.count, 0);
  assert.equal(first.allocatedBytes, 0);
  assert.equal(first.eventLoopDelayMs.max, 0);

  keep = [];
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 100_000; i++) keep.push({ i, s: `x${i}` });
    keep = [];
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  block(60); // the loop is held: the delay monitor sees it on its next turn
  await new Promise((resolve) => setTimeout(resolve, 30));
  const second = probe.sample();
  assert.ok(second.intervalMs > 60, `interval ${second.intervalMs} ms`);
  assert.ok(second.gc.count >= 1, 'the allocation above caused at least one collection');
  assert.ok(second.gc.young >= 1, 'young collections are counted as such');
  assert.ok(second.allocatedBytes > 10_000_000, `~2 million small objects were allocated (counted ${second.allocatedBytes} bytes)`);
  assert.ok(second.eventLoopDelayMs.max >= 40, `the 60 ms stall shows as loop delay (max ${second.eventLoopDelayMs.max} ms)`);
  assert.ok(second.cpuCores > 0.2, `the busy interval used CPU (${second.cpuCores} cores)`);

  // Each sample starts the next interval: a quiet one shows none of the above.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const third = probe.sample();
  assert.ok(third.allocatedBytes < second.allocatedBytes / 10, 'the next interval starts from zero');
  assert.ok(third.eventLoopDelayMs.max < 40, `no stall in the quiet interval (max ${third.eventLoopDelayMs.max} ms)`);
});
