import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { advise, evidenceFromMetricsText, evidenceFromPrometheus, isoWeek } from '../../src/advisor/index.ts';
import { formatFloatValue, formatSeries, parseFloatValue } from '../../src/advisor/prom-text.ts';

/**
 * A value no govmap exporter can produce (a negative key count, a miss ratio of 7, NaN, +Inf)
 * is refused like every other evidence problem: the figure is unknown (its signal says
 * `insufficient-data`) and a note names the sample, the value and the rule. It is never judged.
 */

const notesOf = (text: string): string[] => evidenceFromMetricsText(text, 'svc').flatMap((e) => e.notes.filter((n) => n.startsWith('refused')));

describe('values out of range, one scrape', () => {
  test('map part metrics: each refused with its rule; in-range samples beside them still count', () => {
    const text = [
      'syncmap_keys{map="balances"} -5',
      'syncmap_keys{map="positions"} 60000',
      'syncmap_load_total{map="balances"} NaN',
      'syncmap_miss_ratio{map="balances"} 7',
      'syncmap_read_write_ratio{map="balances"} +Inf',
      'syncmap_read_write_ratio{map="positions"} 2.5',
      // Its traffic, without which its gauges are not judged.
      'syncmap_load_total{map="positions"} 500',
    ].join('\n');
    const [balances, positions] = evidenceFromMetricsText(text, 'svc').map((e) => advise(e));
    assert.equal(balances!.evidence.keys, null);
    assert.equal(balances!.evidence.missRatio.latest, null);
    assert.equal(balances!.evidence.readWrite.ratio, null);
    assert.deepEqual(
      balances!.signals.map((s) => `${s.id} ${s.status}`),
      ['MISS_RATIO_WITH_GC_PRESSURE insufficient-data', 'RANGE_GROWTH_WEEK_OVER_WEEK insufficient-data', 'KEY_COUNT insufficient-data', 'READ_WRITE_RATIO insufficient-data'],
    );
    assert.deepEqual(balances!.evidence.notes.filter((n) => n.startsWith('refused')), [
      'refused syncmap_keys{map="balances"} = -5: a key count is a whole number >= 0',
      'refused syncmap_load_total{map="balances"} = NaN: a counter is a finite number >= 0',
      'refused syncmap_miss_ratio{map="balances"} = 7: a miss ratio is misses / loads, from 0 to 1',
      'refused syncmap_read_write_ratio{map="balances"} = +Inf: reads per write is a finite number >= 0 (left out when there were no writes)',
    ]);
    // The other map is judged on its own, good figures.
    assert.equal(positions!.recommendation, 'not-a-map-workload');
    assert.deepEqual(positions!.evidence.notes.filter((n) => n.startsWith('refused')), []);
  });

  test('a map whose only figure is refused is still listed, with its note', () => {
    const evidence = evidenceFromMetricsText('syncmap_keys{map="ghost"} 1.5', 'svc');
    assert.deepEqual(evidence.map((e) => [e.map, e.keys, e.notes[0]]), [['ghost', null, 'refused syncmap_keys{map="ghost"} = 1.5: a key count is a whole number >= 0']]);
  });

  test('advisor and GC metrics: refused per map, or on every map when they carry no map label', () => {
    const week = isoWeek(Date.UTC(2025, 0, 15));
    const text = [
      'syncmap_keys{map="quotes"} 1000',
      'syncmap_keys{map="rates"} 10',
      'govmap_advisor_window_seconds 300',
      'govmap_advisor_recommendation{map="quotes",recommendation="stay"} 1',
      'govmap_advisor_window_miss_ratio{map="quotes"} 1.5',
      'govmap_advisor_miss_ratio_breached_windows{map="quotes"} -1',
      'govmap_advisor_miss_ratio_observed_windows{map="quotes"} 4',
      'govmap_advisor_read_write_ratio{map="quotes"} -40',
      'govmap_advisor_window_operations{map="quotes",kind="read"} 12.5',
      `govmap_advisor_range_calls{map="quotes",week="current",iso_week="${week}"} 10`,
      'govmap_advisor_range_calls{map="quotes",week="previous",iso_week="2025-W02"} -300',
      'govmap_advisor_state_problem{map="quotes"} 2',
      'govmap_gc_pause_rising{window_seconds="300"} 2',
      'govmap_gc_pause_trend_ratio{window_seconds="300"} -Inf',
      'govmap_gc_pause_fraction{window_seconds="300"} 3',
    ].join('\n');
    const [quotes, rates] = evidenceFromMetricsText(text, 'svc');
    assert.deepEqual(quotes!.notes.filter((n) => n.startsWith('refused')), [
      'refused govmap_advisor_window_miss_ratio{map="quotes"} = 1.5: a miss ratio is misses / loads, from 0 to 1',
      'refused govmap_advisor_miss_ratio_breached_windows{map="quotes"} = -1: a number of windows is a whole number >= 0',
      'refused govmap_advisor_read_write_ratio{map="quotes"} = -40: reads per write is a finite number >= 0 (left out when there were no writes)',
      'refused govmap_advisor_window_operations{map="quotes",kind="read"} = 12.5: a number of operations is a whole number >= 0',
      'refused govmap_advisor_range_calls{map="quotes",week="previous",iso_week="2025-W02"} = -300: a number of range calls is a whole number >= 0',
      'refused govmap_advisor_state_problem{map="quotes"} = 2: a flag is 0 or 1',
      'refused govmap_gc_pause_rising{window_seconds="300"} = 2: a flag is 0 or 1',
      'refused govmap_gc_pause_trend_ratio{window_seconds="300"} = -Inf: a ratio of pause times is a finite number >= 0',
      'refused govmap_gc_pause_fraction{window_seconds="300"} = 3: a share of time is from 0 to 1',
    ]);
    assert.equal(quotes!.missRatio.latest, null);
    assert.equal(quotes!.ranges.previous, null);
    assert.deepEqual(quotes!.gc, { rising: null, ratio: null, recentPauseFraction: null });
    // The refusal explains the missing trend; "not exported" would be wrong.
    assert.ok(!quotes!.notes.some((n) => /no GC pause trend exported/.test(n)), quotes!.notes.join('\n'));
    // GC figures belong to the process, so every map carries their refusal.
    assert.equal(rates!.notes.filter((n) => n.startsWith('refused govmap_gc_pause')).length, 3);
  });

  test('values in range are never refused, edges included', () => {
    const text = [
      'syncmap_keys{map="a"} 0',
      'syncmap_load_total{map="a"} 0',
      'syncmap_miss_ratio{map="a"} 1',
      'syncmap_read_write_ratio{map="a"} 0',
      'govmap_gc_pause_rising 0',
      'govmap_gc_pause_trend_ratio 0',
      'govmap_gc_pause_fraction 0',
      'some_other_metric -1',
    ].join('\n');
    assert.deepEqual(notesOf(text), []);
  });
});

describe('values out of range, from a Prometheus server', () => {
  test('refused per series, "+Inf" and "NaN" of the HTTP API read as such', async () => {
    const now = Date.UTC(2025, 0, 15, 12);
    const series = { map: 'balances', instance: 'svc-1:8080' };
    const vector = (query: string): Array<{ metric: Record<string, string>; value: [number, string] }> => {
      const at = now / 1000;
      if (query === 'syncmap_keys') return [{ metric: { __name__: 'syncmap_keys', ...series }, value: [at, '-5'] }];
      if (query === 'syncmap_load_total') return [{ metric: { __name__: 'syncmap_load_total', ...series }, value: [at, 'NaN'] }];
      if (query === 'syncmap_read_write_ratio') return [{ metric: { __name__: 'syncmap_read_write_ratio', ...series }, value: [at, '+Inf'] }];
      if (query.startsWith('sum by (instance) (rate(govmap_gc_pause_seconds_sum[300s]))')) return [{ metric: { instance: series.instance }, value: [at, '-0.5'] }];
      return [];
    };
    const server = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const query = url.searchParams.get('query') ?? '';
      const data = url.pathname.endsWith('/query_range')
        ? { resultType: 'matrix', result: query === 'syncmap_miss_ratio' ? [{ metric: { __name__: 'syncmap_miss_ratio', ...series }, values: [[now / 1000, '7']] }] : [] }
        : { resultType: 'vector', result: vector(query) };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'success', data }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const [evidence] = await evidenceFromPrometheus(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { nowMs: now });
      assert.equal(evidence!.keys, null);
      assert.equal(evidence!.readWrite.ratio, null);
      assert.equal(evidence!.missRatio.latest, null);
      assert.equal(evidence!.gc.recentPauseFraction, null);
      assert.deepEqual(evidence!.notes.filter((n) => n.startsWith('refused')), [
        'refused syncmap_keys{map="balances",instance="svc-1:8080"} = -5: a key count is a whole number >= 0',
        'refused syncmap_load_total{map="balances",instance="svc-1:8080"} = NaN: a counter is a finite number >= 0',
        'refused syncmap_read_write_ratio{map="balances",instance="svc-1:8080"} = +Inf: reads per write is a finite number >= 0 (left out when there were no writes)',
        'refused syncmap_miss_ratio{map="balances",instance="svc-1:8080"} = 7: a miss ratio is misses / loads, from 0 to 1 (at 2025-01-15T12:00:00.000Z)',
        'refused rate(govmap_gc_pause_seconds_sum[300s]){instance="svc-1:8080"} = -0.5: a rate or an increase of a counter is a finite number >= 0',
      ]);
    } finally {
      server.close();
    }
  });
});

describe('the float helpers of the text format', () => {
  test('read and write +Inf, -Inf and NaN as the format spells them', () => {
    assert.equal(parseFloatValue('+Inf'), Infinity);
    assert.equal(parseFloatValue('-Inf'), -Infinity);
    assert.ok(Number.isNaN(parseFloatValue('NaN')));
    assert.equal(parseFloatValue('1.5e3'), 1500);
    assert.equal(parseFloatValue('seven'), null);
    assert.deepEqual([Infinity, -Infinity, NaN, -5, 0.25].map(formatFloatValue), ['+Inf', '-Inf', 'NaN', '-5', '0.25']);
    assert.equal(formatSeries('syncmap_keys', { map: 'a"b' }), 'syncmap_keys{map="a\\"b"}');
    assert.equal(formatSeries('govmap_advisor_window_seconds', {}), 'govmap_advisor_window_seconds');
  });
});
