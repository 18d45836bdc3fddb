import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { GovernedMap, MapMetrics } from '../../src/index.ts';
import { InProcessStore } from '../../src/stores/index.ts';
import { MAP_METRIC_NAMES, MetricAlreadyRegisteredError, NotAMeasuredMapError } from '../../src/metrics/index.ts';

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

test('a second MapMetrics on the same registry and prefix is refused with a code, and registers nothing', async () => {
  const registry = new Registry();
  new MapMetrics({ registry });
  const before = registry.getMetricsAsArray().length;
  assert.throws(() => new MapMetrics({ registry }), (error: any) => {
    assert.ok(error instanceof MetricAlreadyRegisteredError);
    assert.equal(error.code, 'GOVMAP_METRIC_ALREADY_REGISTERED');
    assert.match(error.message, /"syncmap_load_total" is already registered/);
    return true;
  });
  // A name taken by someone else's metric, not the first one: still nothing half-registered.
  const other = new Registry();
  new Counter({ name: 'govmap_range_total', help: 'mine', registers: [other] });
  assert.throws(() => new MapMetrics({ registry: other, prefix: 'govmap_' }), /"govmap_range_total" is already registered/);
  assert.deepEqual(other.getMetricsAsArray().map((m) => m.name), ['govmap_range_total']);
  // Another prefix on the same registry is fine.
  new MapMetrics({ registry, prefix: 'other_' });
  assert.equal(registry.getMetricsAsArray().length, before * 2);
});

test('MAP_METRIC_NAMES lists exactly what MapMetrics registers', () => {
  const metrics = new MapMetrics({ prefix: 'x_' });
  assert.deepEqual(metrics.registry.getMetricsAsArray().map((m) => m.name).sort(), MAP_METRIC_NAMES.map((n) => `x_${n}`).sort());
});

test('a prefix that cannot start a metric name is refused with the rule', () => {
  for (const prefix of ['my-app_', '1st_', 'a b']) {
    assert.throws(() => new MapMetrics({ prefix }), (error: any) => error.code === 'GOVMAP_INVALID_CONFIGURATION' && error.details.option === 'prefix' && error.message.includes(JSON.stringify(prefix)), prefix);
  }
  assert.equal(new MapMetrics({ prefix: '' }).prefix, '');
});

test('untracking a map replaced under its name leaves the new one exported', async () => {
  const metrics = new MapMetrics();
  const old = new GovernedMap<string, number>({ name: 'cache', validate: () => true });
  const replacement = new GovernedMap<string, number>({ name: 'cache', validate: () => true });
  replacement.store('k', 1);
  metrics.track(old).track(replacement);
  metrics.untrack(old);
  assert.equal(sample(await metrics.render(), 'syncmap_keys{map="cache"}'), 1);
  metrics.untrack(replacement);
  assert.doesNotMatch(await metrics.render(), /map="cache"/);
  // By bare name: whichever map is tracked under it.
  metrics.track(old);
  metrics.untrack({ name: 'cache' });
  assert.doesNotMatch(await metrics.render(), /map="cache"/);
});

test('the reason label stays bounded when a validator puts the key in its reason', async () => {
  const metrics = new MapMetrics({ maxReasonSeries: 3 });
  const map = new GovernedMap<string, number>({ name: 'accounts', validate: (key, v) => (v < 0 ? 'NEGATIVE' : `no account ${key}`) });
  metrics.track(map);
  assert.throws(() => map.store('a', -1));
  for (let i = 0; i < 500; i++) assert.throws(() => map.store(`acct-${i}`, 1));
  const text = await metrics.render();
  const series = text.split('\n').filter((l) => l.startsWith('syncmap_validation_rejections_total{'));
  assert.deepEqual(series, ['syncmap_validation_rejections_total{map="accounts",reason="NEGATIVE"} 1', 'syncmap_validation_rejections_total{map="accounts",reason="_other"} 500']);
  // Reason codes keep their own series up to the limit, in the order first seen; _other keeps counting.
  const coded = new GovernedMap<string, number>({ name: 'coded', validate: (_k, v) => `CODE_${v}` });
  metrics.track(coded);
  for (const v of [1, 2, 3, 4, 5, 1]) assert.throws(() => coded.store('k', v));
  const again = await metrics.render();
  assert.equal(sample(again, 'syncmap_validation_rejections_total{map="coded",reason="CODE_1"}'), 2);
  assert.equal(sample(again, 'syncmap_validation_rejections_total{map="coded",reason="CODE_3"}'), 1);
  assert.equal(sample(again, 'syncmap_validation_rejections_total{map="coded",reason="CODE_4"}'), undefined);
  assert.equal(sample(again, 'syncmap_validation_rejections_total{map="coded",reason="_other"}'), 2);
});

test('a reason code seen only after many reasons that are not codes still gets its own series', async () => {
  const metrics = new MapMetrics();
  const map = new GovernedMap<string, number>({ name: 'late', validate: (key, v) => (v < 0 ? 'NEGATIVE' : `no account ${key}`) });
  metrics.track(map);
  for (let i = 0; i < 150; i++) assert.throws(() => map.store(`acct-${i}`, 1));
  assert.throws(() => map.store('acct-0', -1));
  const text = await metrics.render();
  assert.equal(sample(text, 'syncmap_validation_rejections_total{map="late",reason="NEGATIVE"}'), 1);
  assert.equal(sample(text, 'syncmap_validation_rejections_total{map="late",reason="_other"}'), 150);
});

test('tracking something that is not a map is refused with a code and the rule; the maps already tracked keep being scraped', async () => {
  const metrics = new MapMetrics();
  const balances = new GovernedMap<string, number>({ name: 'balances', validate: () => true });
  balances.load('a');
  metrics.track(balances);
  // The usual slips: the wrapper instead of its map (a ledger, a ResponseCache), nothing at all.
  for (const notAMap of [{ name: 'ledger', balances }, { map: balances }, undefined, null, 'balances']) {
    assert.throws(() => metrics.track(notAMap as never), (error: any) => {
      assert.ok(error instanceof NotAMeasuredMapError);
      assert.equal(error.code, 'GOVMAP_METRICS_NOT_A_MAP');
      assert.match(error.message, /track\(\): .*GovernedMap/);
      return true;
    }, JSON.stringify(notAMap));
  }
  assert.equal(sample(await metrics.render(), 'syncmap_load_total{map="balances"}'), 1);
});

test('a map rebuilt under its name (the old one disposed, the new one tracked) continues its series: no counter goes down, nothing counted is lost', async () => {
  const metrics = new MapMetrics();
  const validate = (_k: string, v: number) => (v >= 0 ? true : 'NEGATIVE');
  const old = new GovernedMap<string, number>({ name: 'route_cache:fx', validate });
  metrics.track(old);
  old.store('a', 1);
  old.load('a');
  old.load('b');
  assert.throws(() => old.store('a', -1));
  old.range(() => {});
  const before = await metrics.render();
  assert.equal(sample(before, 'syncmap_load_total{map="route_cache:fx"}'), 2);
  // Work done after that scrape, then the rebuild (what a route file reload does to a cache).
  old.load('a');
  old.dispose();
  const rebuilt = new GovernedMap<string, number>({ name: 'route_cache:fx', validate });
  metrics.track(rebuilt);
  rebuilt.load('x');
  assert.throws(() => rebuilt.store('x', -2));
  const after = await metrics.render();
  assert.equal(sample(after, 'syncmap_load_total{map="route_cache:fx"}'), 4);
  assert.equal(sample(after, 'syncmap_miss_total{map="route_cache:fx"}'), 2);
  assert.equal(sample(after, 'syncmap_store_total{map="route_cache:fx",outcome="ok"}'), 1);
  assert.equal(sample(after, 'syncmap_store_total{map="route_cache:fx",outcome="rejected"}'), 2);
  assert.equal(sample(after, 'syncmap_validation_rejections_total{map="route_cache:fx",reason="NEGATIVE"}'), 2);
  assert.equal(sample(after, 'syncmap_range_duration_seconds_count{map="route_cache:fx"}'), 1);
  // The gauges are the map's own now: the rebuilt one holds nothing yet.
  assert.equal(sample(after, 'syncmap_keys{map="route_cache:fx"}'), 0);
  for (const line of before.split('\n')) {
    const series = /^(\S+_(?:total|bucket|count|sum)\{[^}]*\}) (\S+)$/.exec(line);
    if (series === null) continue;
    assert.ok((sample(after, series[1]!) ?? -1) >= Number(series[2]), `${series[1]} went from ${series[2]} to ${sample(after, series[1]!)}`);
  }
  // Untracked, the series goes, carried counts and all; tracked afresh, it starts again.
  metrics.untrack(rebuilt);
  metrics.track(rebuilt);
  assert.equal(sample(await metrics.render(), 'syncmap_load_total{map="route_cache:fx"}'), 1);
  // Two live maps under one name, tracked in turn: each is exported alone, never counted twice.
  const twin = new GovernedMap<string, number>({ name: 'route_cache:fx', validate });
  twin.load('t');
  twin.load('t');
  metrics.track(twin).track(rebuilt);
  assert.equal(sample(await metrics.render(), 'syncmap_load_total{map="route_cache:fx"}'), 1);
});

test('every part refuses a second registration on one registry with GOVMAP_METRIC_ALREADY_REGISTERED, naming the metric and the part, and registers nothing', async () => {
  const { BreakerMetrics } = await import('../../src/breaker/index.ts');
  const { SwitchMetrics } = await import('../../src/switches/metrics.ts');
  const { RoutingMetrics } = await import('../../src/routing/metrics.ts');
  const { registerAuditMetrics } = await import('../../src/audit/metrics.ts');
  const { registerSandboxMetrics } = await import('../../src/sandbox/metrics.ts');
  const { registerAdvisorMetrics } = await import('../../src/advisor/metrics.ts');
  // Registration reads nothing of the recorder, sandbox or advisor (every value is read at scrape
  // time, and no scrape happens here): stand-ins are enough.
  const parts: Array<[string, (registry: Registry) => unknown]> = [
    ['BreakerMetrics', (registry) => new BreakerMetrics({ registry })],
    ['SwitchMetrics', (registry) => new SwitchMetrics({ registry })],
    ['RoutingMetrics', (registry) => new RoutingMetrics({ registry })],
    ['registerAuditMetrics', (registry) => registerAuditMetrics(registry, {} as never)],
    ['registerSandboxMetrics', (registry) => registerSandboxMetrics({ gc: null } as never, registry)],
    ['registerAdvisorMetrics', (registry) => registerAdvisorMetrics({} as never, registry)],
  ];
  for (const [part, register] of parts) {
    const registry = new Registry();
    register(registry);
    const names = registry.getMetricsAsArray().map((m) => m.name);
    assert.throws(() => register(registry), (error: any) => {
      assert.ok(error instanceof MetricAlreadyRegisteredError, `${part}: ${error}`);
      assert.equal(error.code, 'GOVMAP_METRIC_ALREADY_REGISTERED');
      assert.ok(error.message.includes(`"${names[0]}"`) && error.message.includes(part), error.message);
      return true;
    }, part);
    assert.deepEqual(registry.getMetricsAsArray().map((m) => m.name), names, part);
    // A name taken by the service's own metric, not the part's first one: nothing half-registered.
    const own = new Registry();
    new Counter({ name: names.at(-1)!, help: 'the service\'s own', registers: [own] });
    assert.throws(() => register(own), MetricAlreadyRegisteredError, part);
    assert.deepEqual(own.getMetricsAsArray().map((m) => m.name), [names.at(-1)], part);
  }
});

test('a registry that is not a prom-client Registry (a plain object, the prom-client module itself) is refused where it is given, naming "registry" and what it must be, not a bare TypeError at the first track()', async () => {
  const promClient = await import('prom-client');
  const { BreakerMetrics } = await import('../../src/breaker/index.ts');
  const { SwitchMetrics } = await import('../../src/switches/metrics.ts');
  const { RoutingMetrics } = await import('../../src/routing/metrics.ts');
  const { registerAuditMetrics } = await import('../../src/audit/metrics.ts');
  const { AuditConfigurationError } = await import('../../src/audit/errors.ts');
  const { registerSandboxMetrics, registerGcMetrics } = await import('../../src/sandbox/metrics.ts');
  const { registerAdvisorMetrics } = await import('../../src/advisor/metrics.ts');
  const { ConfigurationError } = await import('../../src/map/errors.ts');
  const parts: Array<[string, (registry: Registry) => unknown, string]> = [
    ['MapMetrics', (registry) => new MapMetrics({ registry }), 'GOVMAP_INVALID_CONFIGURATION'],
    ['BreakerMetrics', (registry) => new BreakerMetrics({ registry }), 'GOVMAP_INVALID_CONFIGURATION'],
    ['SwitchMetrics', (registry) => new SwitchMetrics({ registry }), 'GOVMAP_INVALID_CONFIGURATION'],
    ['RoutingMetrics', (registry) => new RoutingMetrics({ registry }), 'GOVMAP_INVALID_CONFIGURATION'],
    ['registerAuditMetrics', (registry) => registerAuditMetrics(registry, {} as never), 'GOVMAP_AUDIT_INVALID_CONFIGURATION'],
    ['registerSandboxMetrics', (registry) => registerSandboxMetrics({ gc: null } as never, registry), 'GOVMAP_INVALID_CONFIGURATION'],
    ['registerGcMetrics', (registry) => registerGcMetrics({ windowMs: 60_000 } as never, registry), 'GOVMAP_INVALID_CONFIGURATION'],
    ['registerAdvisorMetrics', (registry) => registerAdvisorMetrics({} as never, registry), 'GOVMAP_INVALID_CONFIGURATION'],
  ];
  for (const [part, register, code] of parts) {
    for (const bad of [{}, promClient, 'registry']) {
      assert.throws(() => register(bad as never), (error: any) => {
        assert.ok(error instanceof ConfigurationError || error instanceof AuditConfigurationError, `${part}: ${error}`);
        assert.equal(error.code, code, part);
        assert.equal(error.details.option, 'registry', part);
        assert.match(error.message, /"registry": must be a prom-client Registry/, part);
        return true;
      }, part);
    }
    // A real Registry (and the default one, `register`) is still taken.
    const registry = new Registry();
    register(registry);
    assert.ok(registry.getMetricsAsArray().length > 0, part);
  }
  // The module's default registry is a Registry: a MapMetrics on it serves the global /metrics.
  const metrics = new MapMetrics({ registry: promClient.register, prefix: 'registry_check_' });
  assert.equal(metrics.registry, promClient.register);
});

test('a map whose store cannot be read (its backend down) does not fail the scrape: its counters go on, its gauges have no sample, the other maps and parts are scraped', async () => {
  const registry = new Registry();
  const metrics = new MapMetrics({ registry });
  let down = false;
  class LedgerStore<K, V> extends InProcessStore<K, V> {
    override get size(): number {
      if (down) throw new Error('ledger backend down');
      return super.size;
    }
  }
  const ledger = new GovernedMap<string, number>({ name: 'remote_ledger', validate: () => true, store: new LedgerStore() });
  const balances = new GovernedMap<string, number>({ name: 'balances', validate: () => true });
  metrics.track(ledger).track(balances);
  const other = new Counter({ name: 'service_requests_total', help: 'the service\'s own', registers: [registry] });
  other.inc();
  ledger.store('a', 1);
  ledger.load('a');
  balances.load('x');
  down = true;
  const text = await metrics.render();
  assert.equal(sample(text, 'syncmap_load_total{map="remote_ledger"}'), 1);
  assert.equal(sample(text, 'syncmap_store_total{map="remote_ledger",outcome="ok"}'), 1);
  assert.equal(sample(text, 'syncmap_keys{map="remote_ledger"}'), undefined, 'unknown, not 0');
  assert.equal(sample(text, 'syncmap_keys{map="balances"}'), 0);
  assert.equal(sample(text, 'syncmap_miss_ratio{map="balances"}'), 1);
  assert.equal(sample(text, 'service_requests_total'), 1);
  down = false;
  assert.equal(sample(await metrics.render(), 'syncmap_keys{map="remote_ledger"}'), 1);
});

test('a write the store fails (not the validator) is counted outcome="error", and the HELP an on-call engineer reads says the store can be why', async () => {
  class FullStore<K, V> extends InProcessStore<K, V> {
    override set(): void {
      throw Object.assign(new Error('table full'), { code: 'GOVMAP_SHARED_TABLE_FULL' });
    }
  }
  const metrics = new MapMetrics();
  const map = new GovernedMap<string, number>({ name: 'positions', validate: () => true, store: new FullStore() });
  metrics.track(map);
  assert.throws(() => map.store('a', 1), /table full/);
  const text = await metrics.render();
  assert.equal(sample(text, 'syncmap_store_total{map="positions",outcome="error"}'), 1);
  assert.equal(sample(text, 'syncmap_validation_rejections_total{map="positions",reason="SHARED_TABLE_FULL"}'), 1);
  const help = text.split('\n').find((l) => l.startsWith('# HELP syncmap_store_total '))!;
  assert.match(help, /error[^;.]*store/, help);
  const reasons = text.split('\n').find((l) => l.startsWith('# HELP syncmap_validation_rejections_total '))!;
  assert.match(reasons, /store/, reasons);
});

test('a delete the store could not make is a refused delete (syncmap_delete_total{outcome="rejected"}), never a failed store: as a map over Redis counts one that failed while Redis was down', async () => {
  let down = false;
  class FailingStore<K, V> extends InProcessStore<K, V> {
    override delete(key: K): boolean {
      if (down) throw Object.assign(new Error('backend unreachable'), { code: 'BACKEND_DOWN' });
      return super.delete(key);
    }
  }
  const events: string[] = [];
  const map = new GovernedMap<string, bigint>({
    name: 'balances',
    validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW'),
    store: new FailingStore<string, bigint>(),
    observers: [{ onOperation: (_m, op, key, outcome, reason, _b, value) => void (outcome === 'error' && events.push(`${op} ${String(key)} ${outcome} ${reason ?? '-'} ${String(value)}`)) }],
  });
  const metrics = new MapMetrics().track(map);
  map.store('acct-1', 100n);
  down = true;
  assert.throws(() => map.delete('acct-1'), { code: 'GOVMAP_STORE_REFUSED' });
  down = false;
  assert.equal(map.load('acct-1'), 100n);
  assert.deepEqual(events, ['DELETE acct-1 error BACKEND_DOWN 100']);
  assert.deepEqual(map.stats().stores, { ok: 1, rejected: 0, error: 0 });
  assert.deepEqual(map.stats().deletes, { ok: 0, miss: 0, rejected: 1 });
  const text = await metrics.render();
  assert.equal(sample(text, 'syncmap_store_total{map="balances",outcome="error"}'), 0);
  assert.equal(sample(text, 'syncmap_delete_total{map="balances",outcome="rejected"}'), 1);
});
