import assert from 'node:assert/strict';
import { test } from 'node:test';
import { propagationFigures } from '../../bench/breaker.bench.ts';
import { meets } from '../../bench/harness.ts';

/**
 * `govmap bench breaker` with etcd: a snapshot that never reached the other client within its
 * 2 s wait was left out of the delays, so etcd_propagation_p99_ms read "met" over the snapshots
 * that did arrive, and a run where none arrived printed NaN (null in the JSON line).
 */
test('a snapshot that never reached the other client counts against the run: etcd_propagation_lost, target == 0, and a warning', () => {
  const figures = propagationFigures(Array.from({ length: 29 }, () => 5), 30);
  assert.equal(figures.ratios.etcd_propagation_lost, 1);
  assert.equal(figures.ratios.etcd_propagation_p99_ms, 5);
  assert.equal(figures.targets.etcd_propagation_lost, '== 0');
  assert.ok(figures.notes.some((n) => /^warning: 1 of 30 snapshots did not reach the other client within 2 s: p50 and p99 are of the 29 that did/.test(n)), figures.notes.join('\n'));
});

test('no snapshot arrived: no p50/p99 figure, nothing in the JSON line that is not a number', () => {
  const figures = propagationFigures([], 30);
  assert.deepEqual(figures.ratios, { etcd_propagation_lost: 30 });
  assert.doesNotMatch(JSON.stringify(figures), /null|NaN/);
});

test('every snapshot arrived: p50, p99 and no loss, all targets met', () => {
  const figures = propagationFigures([1, 2, 3, 4, 50], 5);
  for (const [name, target] of Object.entries(figures.targets)) assert.ok(meets(figures.ratios[name] ?? Number.NaN, target), name);
  assert.deepEqual(figures.ratios, { etcd_propagation_p50_ms: 3, etcd_propagation_p99_ms: 50, etcd_propagation_lost: 0 });
  assert.ok(!figures.notes.some((n) => n.startsWith('warning:')));
});
