import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Gauge, Registry } from 'prom-client';
import { MetricsParseError, advise, evidenceFromMetricsText, isoWeek, parsePrometheusText } from '../../src/advisor/index.ts';
import { GovMapError } from '../../src/index.ts';

describe('Prometheus text format', () => {
  test('samples, labels with escapes, special values, timestamps, comments', () => {
    const text = [
      '# HELP syncmap_keys Entries held now.',
      '# TYPE syncmap_keys gauge',
      'syncmap_keys{map="balances"} 1000',
      'syncmap_miss_ratio{map="a\\"b\\\\c\\nd",} 0.25 1736150400000',
      'up 1',
      'x{a="1", b = "2"}\t+Inf',
      'y -Inf',
      'z NaN',
      'w 1.5e-3',
      '',
      '# EOF',
    ].join('\r\n');
    const samples = parsePrometheusText(text);
    assert.equal(samples.length, 7);
    assert.deepEqual(samples[0], { name: 'syncmap_keys', labels: { map: 'balances' }, value: 1000, timestampMs: null });
    assert.deepEqual(samples[1], { name: 'syncmap_miss_ratio', labels: { map: 'a"b\\c\nd' }, value: 0.25, timestampMs: 1736150400000 });
    assert.deepEqual(samples[3]!.labels, { a: '1', b: '2' });
    assert.equal(samples[3]!.value, Infinity);
    assert.equal(samples[4]!.value, -Infinity);
    assert.ok(Number.isNaN(samples[5]!.value));
    assert.equal(samples[6]!.value, 0.0015);
  });

  test('malformed lines are refused with the line number and the rule, never skipped', () => {
    const cases: Array<[string, RegExp]> = [
      ['9metric 1', /starts with a metric name/],
      ['m{map=balances} 1', /must be a double-quoted string/],
      ['m{map="open} 1', /not closed/],
      ['m{map="a",map="b"} 1', /appears twice/],
      ['m{map="a\\t"} 1', /not an escape/],
      ['m 1,5', /is not a float/],
      ['m 0x1F', /is not a float/],
      ['m 1 2 3', /a value and an optional timestamp/],
      ['m 1 1.5', /whole milliseconds/],
      ['m', /followed by whitespace and a value/],
      ['m{map="a"}1', /followed by whitespace/],
    ];
    for (const [line, rule] of cases) {
      assert.throws(
        () => parsePrometheusText(`ok 1\n${line}\n`, 'http://svc/metrics'),
        (error: unknown) => {
          assert.ok(error instanceof MetricsParseError, line);
          assert.ok(error instanceof GovMapError);
          assert.equal(error.code, 'GOVMAP_METRICS_PARSE');
          assert.match(error.message, /^http:\/\/svc\/metrics: line 2 /);
          assert.match(error.message, rule, line);
          return true;
        },
      );
    }
  });

  test('reads back exactly what prom-client writes, for any label value', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.string({ unit: 'binary', maxLength: 20 }), fc.double({ noNaN: true })), { minLength: 1, maxLength: 5 }), async (series) => {
        const registry = new Registry();
        const gauge = new Gauge({ name: 'g', help: 'h', labelNames: ['map', 'i'], registers: [registry] });
        series.forEach(([map, value], i) => gauge.set({ map, i: String(i) }, value));
        const parsed = parsePrometheusText(await registry.metrics());
        assert.equal(parsed.length, series.length);
        for (const sample of parsed) {
          const [map, value] = series[Number(sample.labels.i)]!;
          assert.equal(sample.labels.map, map);
          // prom-client prints numbers with JavaScript's own shortest round-trip form.
          assert.ok(Object.is(sample.value, value) || (sample.value === 0 && value === 0), `${sample.value} vs ${value}`);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('evidence from one scrape', () => {
  test('without the in-process advisor: one window only, and it says so', () => {
    const text = [
      'syncmap_keys{map="balances"} 1000',
      'syncmap_keys{map="positions"} 60000',
      'syncmap_load_total{map="balances"} 5000',
      'syncmap_miss_ratio{map="balances"} 0.5',
      'syncmap_read_write_ratio{map="balances"} 30',
      'syncmap_read_write_ratio{map="positions"} 25',
    ].join('\n');
    const [balances, positions] = evidenceFromMetricsText(text, 'svc').map((e) => advise(e));
    assert.equal(balances!.map, 'balances');
    assert.equal(balances!.recommendation, 'stay');
    assert.equal(balances!.signals[0]!.status, 'insufficient-data');
    assert.match(balances!.signals[0]!.summary, /in all 1 5-minute window\(s\) observed so far; 3 are needed/);
    assert.ok(balances!.evidence.notes.some((n) => /does not export the in-process advisor/.test(n)));
    assert.equal(positions!.recommendation, 'redis-store');
  });

  test('with the in-process advisor exported: its held windows and its weeks', () => {
    const week = isoWeek(Date.UTC(2025, 0, 15));
    const text = [
      'syncmap_keys{map="quotes"} 1000',
      'govmap_advisor_window_seconds 300',
      'govmap_advisor_recommendation{map="quotes",recommendation="stay"} 1',
      'govmap_advisor_window_miss_ratio{map="quotes"} 0.6',
      'govmap_advisor_miss_ratio_breached_windows{map="quotes"} 4',
      'govmap_advisor_miss_ratio_observed_windows{map="quotes"} 4',
      'govmap_advisor_read_write_ratio{map="quotes"} 40',
      'govmap_advisor_window_operations{map="quotes",kind="read"} 1200',
      'govmap_advisor_window_operations{map="quotes",kind="write"} 30',
      `govmap_advisor_range_calls{map="quotes",week="current",iso_week="${week}"} 10`,
      'govmap_advisor_range_calls{map="quotes",week="previous",iso_week="2025-W02"} 300',
      'govmap_advisor_range_calls{map="quotes",week="before_previous",iso_week="2025-W01"} 150',
      'govmap_gc_pause_rising{window_seconds="300"} 1',
      'govmap_gc_pause_trend_ratio{window_seconds="300"} 1.4',
      'govmap_gc_pause_fraction{window_seconds="300"} 0.004',
    ].join('\n');
    const [quotes] = evidenceFromMetricsText(text, 'svc').map((e) => advise(e));
    assert.equal(quotes!.signals.find((s) => s.id === 'MISS_RATIO_WITH_GC_PRESSURE')!.status, 'firing');
    assert.equal(quotes!.signals.find((s) => s.id === 'RANGE_GROWTH_WEEK_OVER_WEEK')!.status, 'firing');
    assert.match(quotes!.signals.find((s) => s.id === 'RANGE_GROWTH_WEEK_OVER_WEEK')!.summary, /2025-W02: 300 range calls vs 150 in 2025-W01 \(\+100\.0%\)/);
    assert.equal(quotes!.recommendation, 'shared-memory-store');
    assert.deepEqual(quotes!.evidence.notes, []);
  });

  test('a map the service\'s advisor does not follow is said to be not followed, not that the service exports no advisor', () => {
    // The demo's own shape: the advisor follows balances, the map metrics also export a route cache.
    const text = [
      'syncmap_keys{map="balances"} 1000',
      'syncmap_keys{map="route_cache:eu"} 200',
      'syncmap_load_total{map="route_cache:eu"} 5000',
      'syncmap_miss_ratio{map="route_cache:eu"} 0.1',
      'govmap_advisor_window_seconds 300',
      'govmap_advisor_recommendation{map="balances",recommendation="stay"} 1',
    ].join('\n');
    const [balances, routeCache] = evidenceFromMetricsText(text, 'svc');
    assert.equal(balances!.map, 'balances');
    assert.ok(!balances!.notes.some((n) => /govmap_advisor_/.test(n)), balances!.notes.join('\n'));
    assert.equal(routeCache!.map, 'route_cache:eu');
    assert.ok(!routeCache!.notes.some((n) => /does not export the in-process advisor/.test(n)), routeCache!.notes.join('\n'));
    assert.ok(routeCache!.notes.some((n) => /^the service's advisor does not follow map "route_cache:eu" \(advisor\.track\(map\)\): one scrape shows one miss-ratio window and no weekly range history/.test(n)), routeCache!.notes.join('\n'));
  });
});

describe('ISO weeks (UTC)', () => {
  test('year boundaries', () => {
    assert.equal(isoWeek(Date.UTC(2021, 0, 3, 23, 59)), '2020-W53'); // a Sunday
    assert.equal(isoWeek(Date.UTC(2021, 0, 4)), '2021-W01');
    assert.equal(isoWeek(Date.UTC(2024, 11, 30)), '2025-W01'); // a Monday
    assert.equal(isoWeek(Date.UTC(2025, 0, 6, 9)), '2025-W02');
    assert.equal(isoWeek(Date.UTC(2026, 11, 31)), '2026-W53');
  });

  test('every instant of a week maps to one label, and consecutive weeks to consecutive labels', () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(2000, 0, 3), max: Date.UTC(2099, 0, 1) }), (ms) => {
        const monday = ms - (((new Date(ms).getUTCDay() + 6) % 7) * 86_400_000 + (ms % 86_400_000));
        assert.equal(isoWeek(ms), isoWeek(monday));
        assert.equal(isoWeek(monday + 7 * 86_400_000 - 1), isoWeek(monday));
        const [y1, w1] = isoWeek(monday).split('-W').map(Number);
        const [y2, w2] = isoWeek(monday + 7 * 86_400_000).split('-W').map(Number);
        assert.ok((y2 === y1 && w2 === w1! + 1) || (y2 === y1! + 1 && w2 === 1 && (w1 === 52 || w1 === 53)), `${isoWeek(monday)} -> ${isoWeek(monday + 7 * 86_400_000)}`);
      }),
      { numRuns: 300 },
    );
  });
});
