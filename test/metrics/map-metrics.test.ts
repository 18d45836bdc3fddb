import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { GovernedMap, MapMetrics } from '../../src/index.ts';

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('scrape-time metrics reflect what the map did', async () => {
  const map = new GovernedMap<string, bigint>({ name: 'balances', validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW') });
  const metrics = new MapMetrics().track(map);
  map.store('a', 1n);
  map.load('a');
  map.load('a');
  map.load('missing');
  assert.throws(() => map.store('a', -1n));
  map.delete('nope');
  map.range(() => {});

  const text = await metrics.render();
  assert.equal(sample(text, 'syncmap_load_total{map="balances"}'), 3);
  assert.equal(sample(text, 'syncmap_miss_total{map="balances"}'), 1);
  assert.equal(sample(text, 'syncmap_miss_ratio{map="balances"}'), 1 / 3);
  assert.equal(sample(text, 'syncmap_store_total{map="balances",outcome="ok"}'), 1);
  assert.equal(sample(text, 'syncmap_store_total{map="balances",outcome="rejected"}'), 1);
  assert.equal(sample(text, 'syncmap_validation_rejections_total{map="balances",reason="BALANCE_UNDERFLOW"}'), 1);
  assert.equal(sample(text, 'syncmap_delete_total{map="balances",outcome="miss"}'), 1);
  assert.equal(sample(text, 'syncmap_keys{map="balances"}'), 1);
  assert.equal(sample(text, 'syncmap_range_duration_seconds_count{map="balances"}'), 1);
  assert.equal(sample(text, 'syncmap_range_duration_seconds_bucket{le="+Inf",map="balances"}') ?? sample(text, 'syncmap_range_duration_seconds_bucket{map="balances",le="+Inf"}'), 1);

  // Counters keep counting between scrapes (collect() must not double count).
  map.load('a');
  const again = await metrics.render();
  assert.equal(sample(again, 'syncmap_load_total{map="balances"}'), 4);
});

test('prefix and registry are configurable; several maps are labelled apart', async () => {
  const registry = new Registry();
  const metrics = new MapMetrics({ registry, prefix: 'govmap_' });
  const a = new GovernedMap<string, number>({ name: 'a', validate: () => true });
  const b = new GovernedMap<string, number>({ name: 'b', validate: () => true });
  metrics.track(a).track(b);
  a.load('x');
  b.store('x', 1);
  b.load('x');
  const text = await registry.metrics();
  assert.equal(sample(text, 'govmap_load_total{map="a"}'), 1);
  assert.equal(sample(text, 'govmap_miss_total{map="b"}'), 0);
  assert.equal(sample(text, 'govmap_keys{map="b"}'), 1);
});

test('a disposed map drops out of the scrape', async () => {
  const metrics = new MapMetrics();
  const map = new GovernedMap<string, number>({ name: 'temp', validate: () => true });
  metrics.track(map);
  map.dispose();
  assert.doesNotMatch(await metrics.render(), /map="temp"/);
});

test('tracking does not keep a map alive', { skip: typeof globalThis.gc !== 'function' ? 'run with --expose-gc' : false }, async () => {
  const metrics = new MapMetrics();
  let ref: WeakRef<object> | undefined;
  (() => {
    const map = new GovernedMap<string, number>({ name: 'ephemeral', validate: () => true });
    metrics.track(map);
    ref = new WeakRef(map);
  })();
  for (let i = 0; i < 10 && ref.deref() !== undefined; i++) {
    await new Promise((r) => setImmediate(r));
    globalThis.gc!();
  }
  assert.equal(ref.deref(), undefined);
});
