import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { SwitchBoard } from '../../src/switches/board.ts';
import { SwitchMetrics } from '../../src/switches/metrics.ts';

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('two sources of one kind on a board: switch_source_healthy is 0 while either is unhealthy', async () => {
  // A FileSwitchSource (kind "file") and a StateSwitchSource over a file state store (kind "file")
  // share the `source` label: an unhealthy one must not be masked by a healthy one set after it.
  const registry = new Registry();
  const board = new SwitchBoard({ name: 'pay' });
  const failing = { kind: 'file', status: () => ({ errors: 2, healthy: false }) };
  const fine = { kind: 'file', status: () => ({ errors: 1, healthy: true, connected: true }) };
  new SwitchMetrics({ registry }).track(board, [failing, fine]);
  const text = await registry.metrics();
  assert.equal(sample(text, 'govmap_switch_source_healthy{board="pay",source="file"}'), 0);
  assert.equal(sample(text, 'govmap_switch_source_errors_total{board="pay",source="file"}'), 3);
});
