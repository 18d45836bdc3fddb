/**
 * deploy/grafana/govmap-dashboard.json: a board a person can import and see data on. Its layout
 * is sound (24-column grid, no overlap, unique ids, the datasource variable everywhere), every
 * series it queries is one the demo exports (so no panel is empty for a typo), and every query
 * is valid PromQL to the real Prometheus of test/infra (GOVMAP_PROMETHEUS_URL; without it that
 * part skips locally and fails under CI).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { startDemo } from '../../demo/server.ts';

const root = new URL('../../', import.meta.url);
const board = JSON.parse(await readFile(new URL('deploy/grafana/govmap-dashboard.json', root), 'utf8'));
const prometheusUrl = process.env.GOVMAP_PROMETHEUS_URL;
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr: string; refId: string; datasource?: { uid: string } }>;
}
const panels = board.panels as Panel[];
const queries = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
const variables = board.templating.list as Array<{ name: string; type: string; query: string | { query: string } }>;

/** Grafana's variables as a Prometheus query would see them with "All" selected. */
function substitute(expr: string): string {
  return expr.replace(/\$__rate_interval/g, '1m').replace(/\$(job|instance|map)\b/g, '.*');
}

describe('the Grafana board', () => {
  test('layout: 24 columns, no overlapping panels, unique ids, every query on the datasource variable', () => {
    assert.equal(board.uid, 'govmap-overview');
    assert.deepEqual(variables.map((v) => v.name), ['datasource', 'job', 'instance', 'map']);
    const ids = new Set<number>();
    const cells = new Set<string>();
    for (const p of panels) {
      assert.ok(!ids.has(p.id), `panel id ${p.id} is unique`);
      ids.add(p.id);
      const { x, y, w, h } = p.gridPos;
      assert.ok(x >= 0 && w > 0 && x + w <= 24, `${p.title} fits 24 columns`);
      for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
        assert.ok(!cells.has(`${i},${j}`), `${p.title} overlaps another panel at ${i},${j}`);
        cells.add(`${i},${j}`);
      }
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      assert.ok((p.targets ?? []).length > 0, `${p.title} has a query`);
      for (const t of p.targets!) assert.equal(t.datasource?.uid, '${datasource}', `${p.title} ${t.refId}`);
    }
    assert.ok(queries.length >= 25);
  });

  test('every series the board reads is one the demo exports', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-grafana-'));
    const demo = await startDemo({ port: 0, accounts: 20, audit: { dir }, sandbox: { stateDirectory: null } });
    try {
      // A routed payment, a transfer (settlement breaker), a range walk: every family gets its series.
      const post = (path: string, tag: string): Promise<Response> =>
        fetch(demo.url + path, { method: 'POST', headers: { 'content-type': 'application/json', 'x-biz-tag': tag }, body: JSON.stringify({ from: 'acct-000001', to: 'acct-000002', amount: '5' }) });
      await (await post('/payments', 'orgId:2002|txnType:pay')).arrayBuffer();
      await (await post('/transfers', 'orgId:2002|txnType:transfer')).arrayBuffer();
      await (await fetch(`${demo.url}/accounts?prefix=acct-0000&limit=5`)).arrayBuffer();
      // Refusals: labelled counters have a series once something was refused.
      assert.equal((await post('/accounts/acct-000003/debit', 'orgId:2002|txnType:pay')).status, 400, 'no amount');
      const overdraw = await fetch(`${demo.url}/accounts/acct-000003/debit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":"999999999999"}' });
      assert.equal(overdraw.status, 422);
      assert.equal((await fetch(`${demo.url}/healthz`, { headers: { 'x-biz-tag': 'orgId:1|orgId:2' } })).status, 400);
      const exposition = await (await fetch(`${demo.url}/metrics`)).text();
      const exported = new Set(exposition.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]));
      // A family declared with no sample is exported too: its value is unknown here (Kafka lag
      // without Kafka), which renders as no sample rather than a misleading 0.
      for (const [, name] of exposition.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (?:gauge|counter)$/gm)) exported.add(name!);
      const read = new Set(queries.flatMap((q) => [...q.expr.matchAll(/\b((?:syncmap|govmap)_[a-z0-9_]+)/g)].map((m) => m[1]!)));
      const missing = [...read].filter((name) => !exported.has(name));
      assert.deepEqual(missing, [], 'series the board reads but the demo does not export');
      // And the other way round for the families the issue names: each is on the board.
      for (const family of ['syncmap_load_total', 'syncmap_miss_ratio', 'syncmap_range_duration_seconds_bucket', 'syncmap_validation_rejections_total', 'govmap_breaker_state', 'govmap_route_breaker_state', 'govmap_route_requests_total', 'govmap_switch_snapshot_version', 'govmap_audit_records_total', 'govmap_sandbox_suspects', 'govmap_advisor_recommendation']) {
        assert.ok(read.has(family), `the board shows ${family}`);
      }
      // Added since: audit records missing from the Kafka sink, payments held without their rule,
      // a Redis-backed map's outage, breaker snapshots a member cannot read (read lately, and now).
      for (const family of ['govmap_audit_kafka_skipped_total', 'govmap_async_held_jobs', 'syncmap_store_unavailable_total', 'syncmap_cas_conflicts_total', 'syncmap_remote_loads_total', 'govmap_breaker_snapshots_invalid_total', 'govmap_breaker_snapshots_unreadable']) {
        assert.ok(read.has(family), `the board shows ${family}`);
      }
    } finally {
      await demo.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the breaker state timelines show a state for every breaker of the demo (evaluated by promtool)', { skip: spawnSync('promtool', ['--version']).status === 0 ? false : 'promtool not found (apt-get install prometheus)' }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-grafana-'));
    const demo = await startDemo({ port: 0, accounts: 20, audit: { dir }, sandbox: { stateDirectory: null }, traffic: false });
    try {
      await (await fetch(demo.url + '/transfers', { method: 'POST', headers: { 'content-type': 'application/json', 'x-biz-tag': 'orgId:2002|txnType:transfer' }, body: JSON.stringify({ from: 'acct-000001', to: 'acct-000002', amount: '5' }) })).arrayBuffer();
      const exposition = await (await fetch(`${demo.url}/metrics`)).text();
      // The scrape as Prometheus stores it: the target's labels added, held for 10 minutes.
      const inputSeries = exposition.split('\n').filter((l) => /^govmap_(route_)?breaker_state\{/.test(l)).map((l) => {
        const [, name, labels, value] = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(l)!;
        return { series: `${name}{instance="demo:8080",job="govmap",${labels}}`, values: `${value}x10` };
      });
      const routes = ((await (await fetch(`${demo.url}/routes`)).json()) as { routes: Array<{ id: string; breaker: string }> }).routes.filter((r) => r.breaker !== 'NONE');
      const keys = ((await (await fetch(`${demo.url}/breakers`)).json()) as { breakers: Array<{ key: string }> }).breakers.map((b) => b.key);
      assert.ok(routes.length > 0 && keys.length > 0, 'the demo has route breakers and settlement breakers');
      // Every breaker is CLOSED: 0 on the board's scale (0 CLOSED, 1 HALF_OPEN, 2 OPEN), not no data.
      const expected: Record<string, Array<{ labels: string; value: number }>> = {
        'Settlement breakers, per org': keys.map((key) => ({ labels: `{breaker="settlement", key="${key}"}`, value: 0 })),
        'Route breakers': routes.map((r) => ({ labels: `{route="${r.id}"}`, value: 0 })),
      };
      const timelines = panels.filter((p) => p.type === 'state-timeline');
      assert.deepEqual(timelines.map((p) => p.title).sort(), Object.keys(expected).sort());
      const tests = {
        rule_files: [],
        evaluation_interval: '1m',
        tests: [{
          interval: '1m',
          input_series: inputSeries,
          promql_expr_test: timelines.map((p) => ({ expr: substitute(p.targets![0]!.expr), eval_time: '5m', exp_samples: expected[p.title] })),
        }],
      };
      const file = join(dir, 'timelines.test.yml');
      await writeFile(file, JSON.stringify(tests));
      const run = spawnSync('promtool', ['test', 'rules', file], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    } finally {
      await demo.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('routing panels keep two tracked routers apart: route "default" of one is not summed with the other\'s', () => {
    // RoutingMetrics labels a named router's series with `router`; every table has route "default".
    const routing = queries.filter((q) => /\bgovmap_(route|async|bulkhead|biztag)_/.test(q.expr));
    assert.ok(routing.length >= 8);
    for (const { panel, expr } of routing) {
      for (const [, by] of expr.matchAll(/\bby \(([^)]*)\)/g)) {
        assert.ok(by!.split(',').map((l) => l.trim()).includes('router'), `${panel}: ${expr} aggregates by (${by}) without router`);
      }
    }
  });

  test('the provisioning files point at the board and a Prometheus datasource', async () => {
    const dashboards = parseYaml(await readFile(new URL('deploy/grafana/provisioning/dashboards/govmap.yml', root), 'utf8'));
    assert.equal(dashboards.apiVersion, 1);
    assert.match(dashboards.providers[0].options.path, /grafana/);
    const datasources = parseYaml(await readFile(new URL('deploy/grafana/provisioning/datasources/prometheus.yml', root), 'utf8'));
    assert.equal(datasources.datasources[0].type, 'prometheus');
  });

  describe('against the real Prometheus', { skip: prometheusUrl === undefined && !ci ? 'GOVMAP_PROMETHEUS_URL not set (bash test/infra/prometheus.sh start)' : false }, () => {
    test('every panel query and variable selector is valid PromQL that Prometheus evaluates', async () => {
      assert.ok(prometheusUrl !== undefined && prometheusUrl !== '', 'CI must set GOVMAP_PROMETHEUS_URL (test/infra/env.sh)');
      const end = Math.floor(Date.now() / 1000);
      for (const { panel, expr } of queries) {
        const query = substitute(expr);
        const response = await fetch(`${prometheusUrl}/api/v1/query_range?${new URLSearchParams({ query, start: String(end - 300), end: String(end), step: '15' }).toString()}`, { signal: AbortSignal.timeout(10_000) });
        const body = (await response.json()) as { status: string; error?: string };
        assert.equal(body.status, 'success', `${panel}: ${query}: ${body.error ?? ''}`);
      }
      for (const v of variables.filter((x) => x.type === 'query')) {
        const text = typeof v.query === 'string' ? v.query : v.query.query;
        const selector = /^label_values\((.*), [a-z_]+\)$/.exec(text)?.[1];
        assert.ok(selector !== undefined, `variable ${v.name} is label_values(selector, label)`);
        const response = await fetch(`${prometheusUrl}/api/v1/series?${new URLSearchParams({ 'match[]': substitute(selector) }).toString()}`, { signal: AbortSignal.timeout(10_000) });
        const body = (await response.json()) as { status: string; error?: string };
        assert.equal(body.status, 'success', `variable ${v.name}: ${selector}: ${body.error ?? ''}`);
      }
    });
  });
});
