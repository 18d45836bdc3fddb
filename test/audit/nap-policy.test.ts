import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { NapPolicy } from '../../src/audit/nap-policy.ts';

/**
 * The drain worker naps (keeping the clock word fresh) only while reads arrive at least at the
 * rate from which a nap pays for itself on this machine; otherwise it sleeps until its commit.
 */
describe('when the drain worker naps', () => {
  test('calibration measures a positive threshold, using the given wait', () => {
    const cell = new Int32Array(new SharedArrayBuffer(4));
    let waits = 0;
    const threshold = NapPolicy.calibrate(0.25, (ms) => {
      waits++;
      Atomics.wait(cell, 0, 0, ms);
    });
    assert.ok(threshold > 0, `threshold ${threshold} reads/ms`);
    assert.ok(!Number.isNaN(threshold));
    assert.ok(waits >= 5, `the naps timed were the worker's own waits (${waits} calls)`);
  });

  test('it naps while the last full window ran at or above the threshold, and only then', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5_000 }),
        fc.array(fc.record({ drained: fc.integer({ min: 0, max: 20_000 }), elapsed: fc.double({ min: 0.01, max: 15, noNaN: true }) }), { maxLength: 60 }),
        (threshold, turns) => {
          const policy = new NapPolicy(threshold, 0);
          let now = 0;
          let windowStart = 0;
          let windowReads = 0;
          let expected = false;
          for (const turn of turns) {
            now += turn.elapsed;
            windowReads += turn.drained;
            if (now - windowStart >= 2) {
              expected = windowReads >= threshold * (now - windowStart);
              windowStart = now;
              windowReads = 0;
            }
            assert.equal(policy.observe(turn.drained, now), expected);
          }
        },
      ),
    );
  });

  test('a service reading a few thousand times a second never makes it nap at a threshold above that', () => {
    const policy = new NapPolicy(100, 0); // 100 reads per ms = 100,000 a second
    let napped = 0;
    // 8,000 reads a second, drained in the worker's 10 ms commit cycles.
    for (let ms = 10; ms <= 10_000; ms += 10) if (policy.observe(80, ms)) napped++;
    assert.equal(napped, 0);
  });

  test('a burst well above the threshold makes it nap, and it stops once the burst ends', () => {
    const policy = new NapPolicy(100, 0);
    let now = 0;
    const observe = (drained: number, ms: number): boolean => policy.observe(drained, (now += ms));
    for (let i = 0; i < 8; i++) observe(200, 0.5); // 400 reads per ms
    assert.equal(observe(200, 0.5), true);
    for (let i = 0; i < 8; i++) observe(0, 0.5);
    assert.equal(observe(0, 0.5), false);
  });

  test('an infinite threshold (naps never pay here) never naps', () => {
    const policy = new NapPolicy(Number.POSITIVE_INFINITY, 0);
    for (let ms = 1; ms < 100; ms++) assert.equal(policy.observe(1_000_000, ms), false);
  });
});
