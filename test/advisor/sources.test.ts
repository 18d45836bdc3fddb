import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Registry } from 'prom-client';
import { Advisor, AdvisorAuthError, AdvisorSourceError, MetricsParseError, advise, evidenceFromMetricsEndpoint, evidenceFromMetricsText, evidenceFromPrometheus, parsePrometheusText, registerAdvisorMetrics } from '../../src/advisor/index.ts';
import { MAX_ANSWER_BYTES } from '../../src/advisor/sources.ts';
import { ConfigurationError, GovernedMap } from '../../src/index.ts';
import { MapMetrics } from '../../src/metrics/index.ts';

const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

function govmap(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { timeout: 60_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

/** What `/service/metrics` serves: a service's registry, set by a test. */
let serviceRegistry: Registry | null = null;

/** Endpoints that misbehave the ways a real network and real servers do, and one service. */
const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  '/service/metrics': (_req, res) => {
    void serviceRegistry!.metrics().then((text) => res.writeHead(200, { 'content-type': serviceRegistry!.contentType }).end(text));
  },
  // Headers, a first line, then nothing: a server stuck halfway through its answer.
  '/stall/metrics': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.write('# HELP syncmap_keys Entries held now.\n');
  },
  '/stall/api/v1/query': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"status":"success","data":{"resultType":"vector","result":[');
  },
  '/stall/api/v1/query_range': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"status":"success","data":{"resultType":"matrix","result":[');
  },
  // A URL pointing at something huge (a log, a dump): declared, or streamed without a length.
  '/huge-declared/metrics': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(MAX_ANSWER_BYTES + 1) });
    res.write('x');
  },
  '/huge-streamed/metrics': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const chunk = Buffer.alloc(1024 * 1024, '# filler filler filler filler\n');
    let sent = 0;
    const more = (): void => {
      while (sent <= MAX_ANSWER_BYTES && !res.destroyed) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  },
};

let server: Server;
let base: string;
before(async () => {
  server = createServer((req, res) => {
    const route = routes[new URL(req.url ?? '/', 'http://x').pathname];
    if (route === undefined) {
      res.writeHead(404).end();
      return;
    }
    route(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

describe('sources that stall or answer too much', () => {
  test('an answer that stops halfway is a source error naming the URL and the timeout, not a crash', async () => {
    const refused = (what: RegExp) => (error: unknown) => {
      assert.ok(error instanceof AdvisorSourceError, String(error));
      assert.equal(error.code, 'GOVMAP_ADVISOR_SOURCE');
      assert.match(error.message, what);
      return true;
    };
    await assert.rejects(evidenceFromMetricsEndpoint(`${base}/stall/metrics`, { timeoutMs: 500 }), refused(/\/stall\/metrics: the metrics endpoint did not finish its answer: no complete answer within the 500 ms timeout/));
    await assert.rejects(evidenceFromPrometheus(`${base}/stall`, { timeoutMs: 500 }), refused(/\/stall\/api\/v1\/query.*: the Prometheus server did not finish its answer: no complete answer within the 500 ms timeout/));

    for (const args of [['--url', `${base}/stall/metrics`], ['--prometheus', `${base}/stall`]]) {
      const { code, stderr } = await govmap(['advise', ...args, '--timeout', '1']);
      assert.equal(code, 1, stderr);
      assert.match(stderr, /^govmap advise: http:\/\/127\.0\.0\.1:\d+\/stall\/.*did not finish its answer: no complete answer within the 1000 ms timeout\n$/);
    }
  });

  test('an answer past the size limit is refused before it fills memory', async () => {
    for (const path of ['/huge-declared/metrics', '/huge-streamed/metrics']) {
      await assert.rejects(evidenceFromMetricsEndpoint(`${base}${path}`, { timeoutMs: 30_000 }), (error: unknown) => {
        assert.ok(error instanceof AdvisorSourceError, String(error));
        assert.match(error.message, new RegExp(`more than the ${MAX_ANSWER_BYTES} (bytes )?read at most`));
        return true;
      });
    }
  });
});

describe('what real exporters write', () => {
  /** A service whose registry writes OpenMetrics, with a trace exemplar on one of its counters. */
  async function openMetricsService(): Promise<{ text: string; contentType: string }> {
    const registry = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    // MapMetrics is typed for the default format; it writes either, as prom-client does.
    const metrics = new MapMetrics({ registry: registry as unknown as Registry });
    const balances = new GovernedMap<string, number>({ name: 'balances', validate: () => true });
    metrics.track(balances);
    balances.store('account:1001', 1);
    balances.load('account:1001');
    const payments = new Counter({ name: 'payments', help: 'Payments settled.', registers: [registry], enableExemplars: true });
    payments.inc({ value: 2, labels: {}, exemplarLabels: { trace_id: '4bf92f3577b34da6a3ce929d0e0e4736' } } as never);
    return { text: await registry.metrics(), contentType: registry.contentType };
  }

  test('OpenMetrics with exemplars, served as such, is read (seconds timestamps in ms); as text/plain it is refused saying why', async () => {
    const { text, contentType } = await openMetricsService();
    assert.match(text, /payments_total 2 # \{trace_id="4bf92f3577b34da6a3ce929d0e0e4736"\} 2 \d+(?:\.\d+)?/); // a whole second is written without decimals
    const evidence = evidenceFromMetricsText(text, 'om', undefined, 'openmetrics');
    assert.deepEqual(evidence.map((e) => [e.map, e.keys]), [['balances', 1]]);

    const [sample] = parsePrometheusText('m 1 # {trace_id="a}b"} 0.5 1736150400.25\n# EOF\n', 'om', 'openmetrics');
    assert.deepEqual(sample, { name: 'm', labels: {}, value: 1, timestampMs: null });
    assert.equal(parsePrometheusText('m 1 1736150400.25\n# EOF\n', 'om', 'openmetrics')[0]!.timestampMs, 1736150400250);
    assert.throws(() => parsePrometheusText('m 1 # not an exemplar\n', 'om', 'openmetrics'), /an exemplar is "# \{label=<quoted value>/);

    assert.throws(
      () => evidenceFromMetricsText(text, 'http://svc/metrics'),
      (error: unknown) => error instanceof MetricsParseError && /exemplar .* belongs to OpenMetrics text only \(served as Content-Type application\/openmetrics-text\)/.test(error.message),
    );

    // Over HTTP the Content-Type decides, as it does for Prometheus.
    const omServer = createServer((_req, res) => res.writeHead(200, { 'content-type': contentType }).end(text));
    await new Promise<void>((resolve) => omServer.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(omServer.address() as AddressInfo).port}/metrics`;
      const read = await evidenceFromMetricsEndpoint(url, { timeoutMs: 5_000 });
      assert.deepEqual(read.map((e) => [e.map, e.keys]), [['balances', 1]]);
    } finally {
      omServer.close();
    }
  });

  test('a series written twice with different values is refused, not read as its first value', () => {
    const text = [
      'syncmap_keys{map="balances"} 60000',
      'syncmap_keys{map="balances"} 12',
      'syncmap_load_total{map="fx"} 5',
      'syncmap_load_total{map="fx"} 5', // an exact repeat says nothing new: read once
      'syncmap_keys{map="fx"} 3',
    ].join('\n');
    const [balances, fx] = evidenceFromMetricsText(text, 'http://svc/metrics');
    assert.equal(balances!.keys, null);
    assert.ok(balances!.notes.some((n) => n === 'refused syncmap_keys{map="balances"}: written 2 times with different values (60000, 12); a series has one value per scrape'), balances!.notes.join('\n'));
    assert.equal(fx!.keys, 3);
    assert.ok(!fx!.notes.some((n) => n.startsWith('refused')), fx!.notes.join('\n'));
  });

  test('a metric named like an Object.prototype member (constructor, toString, __proto__) is just another series', () => {
    // A foreign exporter on the same endpoint may name a metric anything the format allows.
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const evidence = evidenceFromMetricsText(`${name} 1\n${name}{map="balances"} 2\nsyncmap_keys{map="balances"} 60000\n`, 'http://svc/metrics');
      assert.deepEqual(evidence.map((e) => [e.map, e.keys, advise(e).recommendation]), [['balances', 60000, 'redis-store']], name);
    }
  });

  test('one map on several instances (a /federate endpoint): one row per instance, figures never mixed', () => {
    const text = [
      'syncmap_keys{instance="a:8080",job="clearing",map="balances"} 10',
      'syncmap_keys{instance="b:8080",job="clearing",map="balances"} 70000',
      'syncmap_load_total{instance="a:8080",job="clearing",map="balances"} 5000',
      'syncmap_load_total{instance="b:8080",job="clearing",map="balances"} 50',
      'syncmap_miss_ratio{instance="b:8080",job="clearing",map="balances"} 0.9',
      'govmap_gc_pause_rising{instance="a:8080",job="clearing"} 0',
      'govmap_gc_pause_rising{instance="b:8080",job="clearing"} 1',
    ].join('\n');
    const [a, b] = evidenceFromMetricsText(text, 'http://prometheus:9090/federate').map((e) => advise(e));
    assert.deepEqual([a!.instance, a!.evidence.keys, a!.evidence.gc.rising, a!.recommendation], ['a:8080', 10, false, 'stay']);
    // b's 70,000 keys are b's, and its miss ratio is gated by its own 50 loads, not a's 5,000.
    assert.deepEqual([b!.instance, b!.evidence.keys, b!.evidence.gc.rising, b!.recommendation], ['b:8080', 70000, true, 'redis-store']);
    assert.equal(b!.evidence.missRatio.latest, null);
    assert.ok(b!.evidence.notes.includes('miss ratio not judged: 50 loads since the map started, fewer than the 100 it needs'), b!.evidence.notes.join('\n'));
  });

  test('thousands of maps in one exposition are read in linear time', () => {
    const maps = 10_000;
    const lines: string[] = [];
    for (let i = 0; i < maps; i++) {
      lines.push(`syncmap_keys{map="quote_cache_${i}"} ${i}`, `syncmap_load_total{map="quote_cache_${i}"} ${i}`, `syncmap_miss_ratio{map="quote_cache_${i}"} 0.1`, `syncmap_read_write_ratio{map="quote_cache_${i}"} 30`);
    }
    const started = performance.now();
    const evidence = evidenceFromMetricsText(lines.join('\n'), 'http://svc/metrics');
    const seconds = (performance.now() - started) / 1000;
    assert.equal(evidence.length, maps);
    assert.equal(evidence.find((e) => e.map === 'quote_cache_9999')!.keys, 9999);
    // Quadratic lookups took about 50 s here; linear ones well under 1 s.
    assert.ok(seconds < 10, `${seconds.toFixed(1)} s for ${maps} maps`);
  });
});

describe('a service whose advisor has its own thresholds', () => {
  /**
   * A service advisor that moves maps to Redis above 1,000 keys (not 50,000), following a map of
   * 5,000. The caller keeps `positions`: the advisor and the metrics hold maps weakly, and a map
   * collected meanwhile (seen on CI) leaves both.
   */
  async function serviceWithOwnThresholds(): Promise<{ advisor: Advisor; registry: Registry; positions: GovernedMap<string, bigint> }> {
    const advisor = new Advisor({ thresholds: { maxKeys: 1000 } });
    const positions = new GovernedMap<string, bigint>({ name: 'positions', validate: (_k, v) => v >= 0n || 'NEGATIVE' });
    for (let i = 0; i < 5000; i++) positions.store(`book-${i}`, BigInt(i));
    advisor.track(positions);
    await advisor.sample();
    const registry = new Registry();
    new MapMetrics({ registry }).track(positions);
    registerAdvisorMetrics(advisor, registry);
    return { advisor, registry, positions };
  }

  test('its thresholds are exported, and advice from its /metrics is judged with them, as its own /advisor is', async () => {
    const { advisor, registry, positions } = await serviceWithOwnThresholds();
    const text = await registry.metrics();
    assert.match(text, /govmap_advisor_threshold\{threshold="max_keys"\} 1000/);
    assert.equal(advisor.advise()[0]!.recommendation, 'redis-store');
    const [evidence] = evidenceFromMetricsText(text, 'http://svc/metrics');
    assert.equal(evidence!.thresholds?.maxKeys, 1000);
    // Before, `govmap advise --url` judged 5,000 keys against its own 50,000 and said "stay".
    assert.equal(advise(evidence!, evidence!.thresholds).recommendation, 'redis-store');
    assert.ok(evidence!.notes.includes("judged with the service's own thresholds: max_keys 1000 (default 50000)"), evidence!.notes.join('\n'));
    assert.equal(positions.size, 5000);
  });

  test('govmap advise --url --check agrees with the service (exit 3: move to Redis)', async () => {
    const service = await serviceWithOwnThresholds();
    serviceRegistry = service.registry;
    const { code, stdout, stderr } = await govmap(['advise', '--url', `${base}/service/metrics`, '--json', '--check']);
    assert.equal(service.positions.size, 5000, 'the map was alive while the command read the service');
    assert.equal(code, 3, stderr);
    const report = JSON.parse(stdout) as { advice: Array<{ map: string; recommendation: string }> };
    assert.deepEqual(report.advice.map((a) => [a.map, a.recommendation]), [['positions', 'redis-store']]);
  });

  test('thresholds that do not hold together are refused with a note, and the defaults judge', () => {
    const text = [
      'syncmap_keys{map="positions"} 5000',
      'govmap_advisor_recommendation{map="positions",recommendation="stay"} 1',
      'govmap_advisor_window_seconds 300',
      ...['miss_ratio 1.5', 'miss_ratio_windows 3', 'range_growth 0.5', 'min_baseline_ranges 100', 'max_keys 1000', 'min_read_write_ratio 20'].map((t) => {
        const [name, value] = t.split(' ');
        return `govmap_advisor_threshold{threshold="${name!}"} ${value!}`;
      }),
    ].join('\n');
    const [evidence] = evidenceFromMetricsText(text, 'http://svc/metrics');
    assert.equal(evidence!.thresholds, undefined);
    assert.ok(evidence!.notes.some((n) => /^the service's advisor thresholds are refused \(.*thresholds\.missRatio.*between 0 and 1.*\); judged with the defaults$/.test(n)), evidence!.notes.join('\n'));
  });
});

describe('too little traffic to judge', () => {
  test('1 read and 1 write is not a write-heavy workload, nor 1 miss in 2 loads a 50% miss ratio (one scrape)', () => {
    const text = [
      'syncmap_keys{map="eod_rates"} 1',
      'syncmap_load_total{map="eod_rates"} 2',
      'syncmap_miss_ratio{map="eod_rates"} 0.5',
      'syncmap_read_write_ratio{map="eod_rates"} 1',
      'syncmap_store_total{map="eod_rates",outcome="ok"} 1',
      'syncmap_store_total{map="eod_rates",outcome="rejected"} 0',
      'syncmap_delete_total{map="eod_rates",outcome="ok"} 0',
      // Busy enough: judged as before.
      'syncmap_keys{map="orders"} 10',
      'syncmap_load_total{map="orders"} 500',
      'syncmap_read_write_ratio{map="orders"} 5',
      'syncmap_store_total{map="orders",outcome="ok"} 100',
    ].join('\n');
    const [eod, orders] = evidenceFromMetricsText(text, 'http://svc/metrics').map((e) => advise(e));
    assert.equal(eod!.recommendation, 'stay');
    assert.equal(eod!.evidence.readWrite.ratio, null);
    assert.equal(eod!.evidence.missRatio.latest, null);
    assert.ok(eod!.evidence.notes.includes('read:write ratio not judged: 3 loads and writes since the map started, fewer than the 100 it needs'), eod!.evidence.notes.join('\n'));
    assert.equal(orders!.recommendation, 'not-a-map-workload');
  });

  test('a load count that is missing or refused is unknown traffic: the gauges beside it are not judged (one scrape)', () => {
    const text = [
      // The load total refused (NaN): its note says the figure is unknown...
      'syncmap_keys{map="eod_rates"} 1',
      'syncmap_load_total{map="eod_rates"} NaN',
      'syncmap_read_write_ratio{map="eod_rates"} 1',
      // ...or missing (a partial exposition).
      'syncmap_keys{map="fx_quotes"} 1',
      'syncmap_read_write_ratio{map="fx_quotes"} 1',
    ].join('\n');
    for (const a of evidenceFromMetricsText(text, 'http://svc/metrics').map((e) => advise(e))) {
      // ...so 1 read and 1 write (or fewer) cannot be told from a write-heavy workload.
      assert.equal(a.evidence.readWrite.ratio, null, `${a.map}: ${a.evidence.notes.join('; ')}`);
      assert.equal(a.recommendation, 'stay', `${a.map}: ${a.reason}`);
      assert.equal(a.signals.find((s) => s.id === 'READ_WRITE_RATIO')!.status, 'insufficient-data');
    }
  });

  /** A Prometheus answering `vector` for instant queries and a miss ratio of 0.5 for `series` over range queries. */
  async function missRatioPrometheus(vector: (query: string) => unknown[], series: Record<string, string>, at: number): Promise<Server> {
    const prometheus = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const query = url.searchParams.get('query') ?? '';
      const data = url.pathname.endsWith('/query_range')
        ? { resultType: 'matrix', result: query === 'syncmap_miss_ratio' ? [{ metric: { __name__: 'syncmap_miss_ratio', ...series }, values: [[at, '0.5']] }] : [] }
        : { resultType: 'vector', result: vector(query) };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'success', data }));
    });
    await new Promise<void>((resolve) => prometheus.listen(0, '127.0.0.1', resolve));
    return prometheus;
  }

  test('a load count Prometheus does not hold is unknown traffic: the miss ratio and read:write gauges are not judged', async () => {
    const now = Date.UTC(2025, 0, 15, 12);
    const at = now / 1000;
    const eod = { map: 'eod_rates', instance: 'svc-1:8080' };
    const vector = (query: string): Array<{ metric: Record<string, string>; value: [number, string] }> => {
      if (query === 'syncmap_keys') return [{ metric: { __name__: 'syncmap_keys', ...eod }, value: [at, '1'] }];
      if (query === 'syncmap_read_write_ratio') return [{ metric: { __name__: 'syncmap_read_write_ratio', ...eod }, value: [at, '1'] }];
      return [];
    };
    const prometheus = await missRatioPrometheus(vector, eod, at);
    try {
      const [a] = (await evidenceFromPrometheus(`http://127.0.0.1:${(prometheus.address() as AddressInfo).port}`, { nowMs: now })).map((e) => advise(e));
      assert.equal(a!.evidence.readWrite.ratio, null, a!.evidence.notes.join('; '));
      assert.equal(a!.evidence.missRatio.latest, null);
      assert.equal(a!.recommendation, 'stay', a!.reason);
    } finally {
      prometheus.close();
    }
  });

  test('from a Prometheus server, each instance is judged with the thresholds its advisor exports, as with --url', async () => {
    const now = Date.UTC(2025, 0, 15, 12);
    const at = now / 1000;
    const own = { map: 'positions', instance: 'svc-1:8080' };
    const plain = { map: 'positions', instance: 'svc-2:8080' };
    const exported: Record<string, string> = { miss_ratio: '0.35', miss_ratio_windows: '3', range_growth: '0.5', min_baseline_ranges: '100', max_keys: '1000', min_read_write_ratio: '20' };
    const vector = (query: string): Array<{ metric: Record<string, string>; value: [number, string] }> => {
      if (query === 'syncmap_keys') return [own, plain].map((m) => ({ metric: { __name__: 'syncmap_keys', ...m }, value: [at, '5000'] }));
      if (query === 'syncmap_load_total') return [own, plain].map((m) => ({ metric: { __name__: 'syncmap_load_total', ...m }, value: [at, '100000'] }));
      if (query === 'govmap_advisor_threshold') return Object.entries(exported).map(([threshold, value]) => ({ metric: { __name__: 'govmap_advisor_threshold', instance: own.instance, threshold }, value: [at, value] }));
      return [];
    };
    const prometheus = await missRatioPrometheus(vector, { map: 'none' }, at);
    try {
      const evidence = await evidenceFromPrometheus(`http://127.0.0.1:${(prometheus.address() as AddressInfo).port}`, { nowMs: now });
      const [first, second] = evidence.map((e) => advise(e, e.thresholds));
      assert.equal(first!.evidence.instance, 'svc-1:8080');
      // Before, --prometheus judged 5,000 keys against the default 50,000 ("stay") where --url said "redis-store".
      assert.equal(first!.recommendation, 'redis-store', first!.reason);
      assert.equal(evidence[0]!.thresholds?.maxKeys, 1000);
      assert.ok(evidence[0]!.notes.includes("judged with the service's own thresholds: max_keys 1000 (default 50000)"), evidence[0]!.notes.join('\n'));
      assert.equal(second!.evidence.instance, 'svc-2:8080');
      assert.equal(evidence[1]!.thresholds, undefined);
      assert.equal(second!.recommendation, 'stay', second!.reason);
    } finally {
      prometheus.close();
    }
  });

  test('the same from a Prometheus server: counters since the start gate the gauges', async () => {
    const now = Date.UTC(2025, 0, 15, 12);
    const at = now / 1000;
    const eod = { map: 'eod_rates', instance: 'svc-1:8080' };
    const orders = { map: 'orders', instance: 'svc-1:8080' };
    const vector = (query: string): Array<{ metric: Record<string, string>; value: [number, string] }> => {
      if (query === 'syncmap_keys') return [{ metric: { __name__: 'syncmap_keys', ...eod }, value: [at, '1'] }, { metric: { __name__: 'syncmap_keys', ...orders }, value: [at, '10'] }];
      if (query === 'syncmap_load_total') return [{ metric: { __name__: 'syncmap_load_total', ...eod }, value: [at, '2'] }, { metric: { __name__: 'syncmap_load_total', ...orders }, value: [at, '500'] }];
      if (query === 'syncmap_read_write_ratio') return [{ metric: { __name__: 'syncmap_read_write_ratio', ...eod }, value: [at, '1'] }, { metric: { __name__: 'syncmap_read_write_ratio', ...orders }, value: [at, '5'] }];
      if (query === 'sum by (map, instance) (syncmap_store_total)') return [{ metric: eod, value: [at, '1'] }, { metric: orders, value: [at, '100'] }];
      return [];
    };
    const prometheus = await missRatioPrometheus(vector, eod, at);
    try {
      const evidence = await evidenceFromPrometheus(`http://127.0.0.1:${(prometheus.address() as AddressInfo).port}`, { nowMs: now });
      const [quiet, busy] = evidence.map((e) => advise(e));
      assert.equal(quiet!.evidence.map, 'eod_rates');
      assert.equal(quiet!.evidence.readWrite.ratio, null);
      assert.equal(quiet!.evidence.missRatio.latest, null);
      assert.equal(quiet!.recommendation, 'stay');
      assert.ok(quiet!.evidence.notes.some((n) => n.startsWith('miss ratio not judged: 2 loads since the map started')), quiet!.evidence.notes.join('\n'));
      assert.equal(busy!.recommendation, 'not-a-map-workload');
    } finally {
      prometheus.close();
    }
  });
});

describe('a source behind authentication (a bank\'s Prometheus, a service\'s /metrics)', () => {
  const SECRET = 'tok-7f3a9c-never-print-me';
  const GOOD = `Bearer ${SECRET}`;
  const exposition = ['# TYPE syncmap_keys gauge', 'syncmap_keys{map="positions"} 12', '# TYPE syncmap_load_total counter', 'syncmap_load_total{map="positions"} 500', ''].join('\n');
  let guarded: Server;
  let guardedBase = '';
  /** Authorization headers the server saw, in order. */
  const seen: Array<string | undefined> = [];
  before(async () => {
    guarded = createServer((req, res) => {
      seen.push(req.headers.authorization);
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      // A debug proxy that echoes the request into its error page.
      // A token valid for another tenant: known, and not allowed here.
      if (path === '/forbidden/metrics') return void res.writeHead(403, { 'content-type': 'text/plain' }).end(`forbidden for ${req.headers.authorization ?? ''}`);
      if (path === '/echo/metrics') return void res.writeHead(500, { 'content-type': 'text/plain' }).end(`upstream failed for ${JSON.stringify(req.headers)}`);
      if (req.headers.authorization !== GOOD) return void res.writeHead(401, { 'www-authenticate': 'Bearer realm="prometheus"', 'content-type': 'text/plain' }).end(`bad token ${req.headers.authorization ?? ''}`);
      if (path === '/metrics') return void res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(exposition);
      const data = path.endsWith('/query_range') ? { resultType: 'matrix', result: [] } : { resultType: 'vector', result: [] };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'success', data }));
    });
    await new Promise<void>((resolve) => guarded.listen(0, '127.0.0.1', resolve));
    guardedBase = `http://127.0.0.1:${(guarded.address() as AddressInfo).port}`;
  });
  after(() => guarded.close());

  const refusedAuth = (status: number, sent: boolean) => (error: unknown) => {
    assert.ok(error instanceof AdvisorAuthError, String(error));
    assert.ok(error instanceof AdvisorSourceError, 'a handler written for source errors still catches it');
    assert.equal(error.code, 'GOVMAP_ADVISOR_AUTH_REFUSED');
    assert.equal(error.details.status, status);
    assert.equal(error.details.sent, sent);
    assert.match(error.message, new RegExp(`refused authentication \\(HTTP ${status}\\)`));
    assert.doesNotMatch(`${error.message}${error.stack ?? ''}${JSON.stringify(error)}`, new RegExp(SECRET));
    return true;
  };

  test('the authorization option is sent on every request: the /metrics scrape and every Prometheus query', async () => {
    seen.length = 0;
    const [evidence] = await evidenceFromMetricsEndpoint(`${guardedBase}/metrics`, { authorization: GOOD });
    assert.equal(evidence!.map, 'positions');
    assert.equal(evidence!.keys, 12);
    assert.deepEqual(await evidenceFromPrometheus(guardedBase, { authorization: GOOD }), []);
    assert.ok(seen.length > 10, `${seen.length} requests`);
    assert.deepEqual(new Set(seen), new Set([GOOD]));
  });

  test('a 401 or 403 is an AdvisorAuthError naming the source (not "cannot reach"), without and with wrong credentials; the secret never in it', async () => {
    await assert.rejects(evidenceFromMetricsEndpoint(`${guardedBase}/metrics`), refusedAuth(401, false));
    await assert.rejects(evidenceFromMetricsEndpoint(`${guardedBase}/metrics`, { authorization: `Bearer ${SECRET}-old` }), refusedAuth(401, true));
    await assert.rejects(evidenceFromMetricsEndpoint(`${guardedBase}/forbidden/metrics`, { authorization: GOOD }), (error: unknown) => {
      refusedAuth(403, true)(error);
      assert.match((error as Error).message, /\/forbidden\/metrics: the metrics endpoint refused authentication \(HTTP 403\): the credentials sent do not allow this request$/);
      return true;
    });
    await assert.rejects(evidenceFromMetricsEndpoint(`${guardedBase}/forbidden/metrics`), refusedAuth(403, false));
    await assert.rejects(evidenceFromPrometheus(guardedBase, { authorization: `Bearer ${SECRET}-old` }), (error: unknown) => {
      refusedAuth(401, true)(error);
      assert.match((error as Error).message, /\/api\/v1\/query\?.*: the Prometheus server refused authentication \(HTTP 401\): the credentials sent were not accepted$/);
      return true;
    });
  });

  test('a malformed authorization is a ConfigurationError before any request, naming the rule and not the value', async () => {
    for (const bad of [SECRET, `Token ${SECRET}`, `Bearer  ${SECRET}`, `Bearer ${SECRET}\r\nX-Injected: 1`, `Basic ${SECRET}`]) {
      seen.length = 0;
      for (const read of [() => evidenceFromMetricsEndpoint(`${guardedBase}/metrics`, { authorization: bad }), () => evidenceFromPrometheus(guardedBase, { authorization: bad })]) {
        await assert.rejects(read(), (error: unknown) => {
          assert.ok(error instanceof ConfigurationError, String(error));
          assert.equal(error.code, 'GOVMAP_INVALID_CONFIGURATION');
          assert.match(error.message, /invalid option "authorization": (must be "Bearer <token>" or "Basic <base64 of user:password>"|must be "Basic " and the base64 of user:password)/);
          assert.doesNotMatch(error.message, new RegExp(SECRET));
          return true;
        });
      }
      assert.equal(seen.length, 0, `${JSON.stringify(bad)} was sent`);
    }
  });

  test('govmap advise --auth-env / --auth-file: the source is read; a 401 exits 4 naming the source; the secret is never printed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'govmap-auth-'));
    try {
      const file = join(dir, 'prometheus.auth');
      writeFileSync(file, `${GOOD}\n# rotated 2025-01-06\n`);
      const env = { PROM_AUTH: GOOD, PROM_AUTH_OLD: `Bearer ${SECRET}-old` };
      for (const [args, extra] of [[['--url', `${guardedBase}/metrics`, '--auth-env', 'PROM_AUTH'], env], [['--prometheus', guardedBase, '--auth-file', file], {}], [['--url', `${guardedBase}/metrics`, '--auth-env', 'PROM_AUTH', '--json'], env]] as const) {
        const r = await govmap(['advise', ...args], extra);
        assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
        assert.doesNotMatch(r.stdout + r.stderr, new RegExp(SECRET));
      }
      const none = await govmap(['advise', '--url', `${guardedBase}/metrics`]);
      assert.equal(none.code, 4, none.stderr);
      assert.equal(none.stderr, `govmap advise: ${guardedBase}/metrics: the metrics endpoint refused authentication (HTTP 401): it requires credentials and none were sent (give credentials with --auth-env <name> or --auth-file <file>)\n`);
      for (const args of [['--url', `${guardedBase}/metrics`], ['--prometheus', guardedBase], ['--url', `${guardedBase}/metrics`, '--json']]) {
        const wrong = await govmap(['advise', ...args, '--auth-env', 'PROM_AUTH_OLD'], env);
        assert.equal(wrong.code, 4, wrong.stderr);
        assert.match(wrong.stderr, /refused authentication \(HTTP 401\): the credentials sent were not accepted \(check the credentials given with --auth-env \/ --auth-file\)\n$/);
        assert.equal(wrong.stdout, '');
        assert.doesNotMatch(wrong.stderr, new RegExp(SECRET));
      }
      // Connection refused, and an error page that echoes the request: exit 1, the token masked.
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const closedPort = (closed.address() as AddressInfo).port;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      for (const url of [`http://127.0.0.1:${closedPort}/metrics`, `${guardedBase}/echo/metrics`]) {
        const r = await govmap(['advise', '--url', url, '--auth-env', 'PROM_AUTH'], env);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /cannot reach the metrics endpoint|answered HTTP 500: upstream failed for .*"authorization":"Bearer \*\*\*"/);
        assert.doesNotMatch(r.stdout + r.stderr, new RegExp(SECRET));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
