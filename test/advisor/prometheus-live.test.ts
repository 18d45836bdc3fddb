import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { GovernedMap } from '../../src/index.ts';
import { MapMetrics } from '../../src/metrics/index.ts';
import { Sandbox, registerSandboxMetrics } from '../../src/sandbox/index.ts';

/**
 * Against the real Prometheus of test/infra/prometheus.sh (GOVMAP_PROMETHEUS_URL), which loads
 * deploy/prometheus/govmap-rules.yml and scrapes 127.0.0.1:8080 every second: this test serves
 * maps with known shapes on that target, then runs `govmap advise --prometheus` and reads the
 * alerts of the loaded rules.
 */
const url = process.env.GOVMAP_PROMETHEUS_URL;
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

let skip: string | false = false;
let server: Server | null = null;
let sandbox: Sandbox | null = null;
let target = '127.0.0.1:8080';
const maps: Array<GovernedMap<string, number>> = [];

async function prometheus(path: string): Promise<any> {
  const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(5000) });
  return response.json();
}

/** Unusable environment: a reason to skip locally, a failure under CI (which starts Prometheus). */
function unavailable(reason: string): string {
  if (ci) throw new Error(`real Prometheus test cannot run under CI: ${reason}`);
  return reason;
}

before(async () => {
  if (url === undefined || url === '') {
    skip = unavailable('GOVMAP_PROMETHEUS_URL not set (bash test/infra/prometheus.sh start)');
    return;
  }
  try {
    const targets = await prometheus('/api/v1/targets?state=active');
    const scrapeUrl: string | undefined = targets.data.activeTargets.map((t: any) => t.scrapeUrl).find((u: string) => /^http:\/\/127\.0\.0\.1:\d+\/metrics$/.test(u));
    if (scrapeUrl === undefined) {
      skip = unavailable(`Prometheus at ${url} scrapes no 127.0.0.1 target (test/infra/prometheus.sh scrapes 127.0.0.1:8080)`);
      return;
    }
    target = new URL(scrapeUrl).host;
  } catch (error) {
    skip = unavailable(`Prometheus at ${url} is not reachable (${(error as Error).message}); start it: bash test/infra/prometheus.sh start`);
    return;
  }

  const registry = new Registry();
  const metrics = new MapMetrics({ registry });
  sandbox = new Sandbox().start(); // exports govmap_gc_pause_seconds as a service would
  registerSandboxMetrics(sandbox, registry);
  const positions = new GovernedMap<string, number>({ name: 'promtest_positions', validate: () => true });
  for (let i = 0; i <= 50_000; i++) positions.store(`pos-${i}`, i);
  // Read-mostly (21 reads per write), or the read:write signal would rightly take precedence.
  for (let r = 0; r < 21; r++) for (let i = 0; i <= 50_000; i++) positions.load(`pos-${i}`);
  const orders = new GovernedMap<string, number>({ name: 'promtest_open_orders', validate: () => true });
  for (let i = 0; i < 100; i++) {
    orders.store(`ord-${i % 10}`, i);
    for (let r = 0; r < 5; r++) orders.load(`ord-${i % 10}`);
  }
  const quotes = new GovernedMap<string, number>({ name: 'promtest_fx_quotes', validate: () => true });
  quotes.store('EURUSD', 10842);
  for (let i = 0; i < 1000; i++) quotes.load(i % 5 === 0 ? 'EURUSD' : `absent-${i}`);
  for (const m of [positions, orders, quotes]) {
    metrics.track(m);
    maps.push(m);
  }
  const listening = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    void metrics.render().then((text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text));
  });
  const [host, port] = target.split(':');
  try {
    await new Promise<void>((resolve, reject) => {
      listening.once('error', reject);
      listening.listen(Number(port), host, () => resolve());
    });
    server = listening;
  } catch (error) {
    skip = unavailable(`cannot serve the scrape target ${target}: ${(error as Error).message} (is a demo running there?)`);
    return;
  }
  // Wait until Prometheus has scraped the maps (every 1 s).
  const deadline = Date.now() + 30_000;
  for (;;) {
    const body = await prometheus(`/api/v1/query?query=${encodeURIComponent('syncmap_keys{map="promtest_positions"}')}`);
    if (body.data.result.length > 0) break;
    if (Date.now() > deadline) throw new Error(`Prometheus at ${url} did not scrape ${target} within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
});

after(async () => {
  sandbox?.stop();
  if (server !== null) await new Promise<void>((resolve) => server!.close(() => resolve()));
});

function govmap(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

test('govmap advise --prometheus reads the figures through the HTTP query API', async (t) => {
  if (skip !== false) return t.skip(skip);
  const { code, stdout, stderr } = await govmap(['advise', '--prometheus', url!, '--json', '--map', 'promtest_positions', 'promtest_open_orders', 'promtest_fx_quotes']);
  assert.equal(code, 0, stderr);
  const { advice } = JSON.parse(stdout);
  const byMap = new Map<string, any>(advice.map((a: any) => [a.map, a]));
  const signal = (map: string, id: string): any => byMap.get(map).signals.find((s: any) => s.id === id);

  const positions = byMap.get('promtest_positions');
  assert.equal(positions.instance, target);
  assert.equal(positions.source, 'prometheus');
  assert.equal(positions.evidence.keys, 50_001);
  assert.equal(signal('promtest_positions', 'KEY_COUNT').status, 'firing');
  assert.equal(positions.recommendation, 'redis-store');

  const orders = byMap.get('promtest_open_orders');
  assert.ok(Math.abs(orders.evidence.readWrite.ratio - 5) < 0.01, JSON.stringify(orders.evidence.readWrite));
  assert.equal(orders.recommendation, 'not-a-map-workload');

  // 80% misses, but a series seconds old cannot show a breach held over three 5-minute windows,
  // nor two weeks of range calls: both say so instead of guessing.
  const quotes = byMap.get('promtest_fx_quotes');
  assert.equal(quotes.evidence.missRatio.latest, 0.8);
  assert.equal(signal('promtest_fx_quotes', 'MISS_RATIO_WITH_GC_PRESSURE').status, 'insufficient-data');
  assert.equal(signal('promtest_fx_quotes', 'RANGE_GROWTH_WEEK_OVER_WEEK').status, 'insufficient-data');
  assert.ok(quotes.evidence.notes.some((n: string) => /less than two weeks/.test(n)));
  assert.equal(quotes.recommendation, 'stay');
});

test('the rules in deploy/prometheus are loaded and evaluate on the scraped maps', async (t) => {
  if (skip !== false) return t.skip(skip);
  const rules = await prometheus('/api/v1/rules');
  const names = rules.data.groups.flatMap((g: any) => g.rules.map((r: any) => r.name));
  for (const alert of ['SyncMapMissRatioHigh', 'SyncMapTooManyKeys', 'SyncMapNotReadMostly', 'SyncMapMissRatioWithGcPressure', 'SyncMapRangeGrowthWeekOverWeek', 'GovmapLeakSuspects']) {
    assert.ok(names.includes(alert), `${alert} not loaded (rules: ${names.join(', ')})`);
  }
  // Each fires only after its `for:` (10 minutes and more): within seconds it is pending.
  const deadline = Date.now() + 20_000;
  let pending: string[] = [];
  for (;;) {
    const alerts = await prometheus('/api/v1/alerts');
    pending = alerts.data.alerts.filter((a: any) => a.labels.map?.startsWith('promtest_') && a.state === 'pending').map((a: any) => `${a.labels.alertname}:${a.labels.map}`);
    if (['SyncMapTooManyKeys:promtest_positions', 'SyncMapNotReadMostly:promtest_open_orders', 'SyncMapMissRatioHigh:promtest_fx_quotes'].every((p) => pending.includes(p))) break;
    if (Date.now() > deadline) assert.fail(`alerts pending after 20 s: ${pending.join(', ') || 'none'}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.ok(!pending.includes('SyncMapTooManyKeys:promtest_fx_quotes'), 'no alert on a map that does not match');
});
