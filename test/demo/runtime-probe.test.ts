import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RuntimeProbe } from '../../demo/runtime-probe.ts';

/** Busy-waits `ms` on this thread: the event loop is held that long. */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

/**
 * Busy-waits until this thread has used `ms` of CPU: the loop is held at least that long, and
 * the CPU is really spent however little of a core a loaded box gives the process (a wall-clock
 * busy-wait got 0.18 of a core on CI, and a probe that measured right looked as if it did not).
 * This thread's CPU, not the process's: GC threads working meanwhile must not cut the stall short.
 */
function burnCpu(ms: number): void {
  const start = process.threadCpuUsage();
  for (;;) {
    const used = process.threadCpuUsage(start);
    if ((used.user + used.system) / 1000 >= ms) return;
  }
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
  burnCpu(60); // the loop is held: the delay monitor sees it on its next turn
  await new Promise((resolve) => setTimeout(resolve, 30));
  const second = probe.sample();
  assert.ok(second.intervalMs > 60, `interval ${second.intervalMs} ms`);
  assert.ok(second.gc.count >= 1, 'the allocation above caused at least one collection');
  assert.ok(second.gc.young >= 1, 'young collections are counted as such');
  assert.ok(second.allocatedBytes > 10_000_000, `~2 million small objects were allocated (counted ${second.allocatedBytes} bytes)`);
  assert.ok(second.eventLoopDelayMs.max >= 40, `the 60 ms stall shows as loop delay (max ${second.eventLoopDelayMs.max} ms)`);
  // Cores over the interval: at least the 60 ms of CPU burned above, whatever share of a core the process got.
  assert.ok(second.cpuCores * second.intervalMs >= 60, `the busy interval used CPU (${second.cpuCores} cores over ${second.intervalMs} ms)`);

  // Each sample starts the next interval: a quiet one shows none of the above.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const third = probe.sample();
  assert.ok(third.allocatedBytes < second.allocatedBytes / 10, 'the next interval starts from zero');
  // Started from zero: the 60 ms stall of the last interval is not in it (a fixed bound of 40 ms
  // would also judge how long a busy machine deschedules the process).
  assert.ok(third.eventLoopDelayMs.max < second.eventLoopDelayMs.max, `no stall carried into the quiet interval (max ${third.eventLoopDelayMs.max} ms, against ${second.eventLoopDelayMs.max} before)`);
});
