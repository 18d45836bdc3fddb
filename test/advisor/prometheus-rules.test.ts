import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { startDemo } from '../../demo/server.ts';
import { DEFAULT_THRESHOLDS } from '../../src/advisor/index.ts';

const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const missing = promtool.error !== undefined || promtool.status !== 0;
// CI installs Debian's `prometheus` package (test/infra/prometheus.sh install); locally it may be absent.
const skip = missing && !ci ? 'promtool not found (apt-get install prometheus, or bash test/infra/prometheus.sh install)' : false;

function run(args: string[]): { status: number | null; output: string } {
  const out = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  if (out.error !== undefined) throw out.error;
  return { status: out.status, output: `${out.stdout}${out.stderr}` };
}

test('the alerting rules are valid Prometheus rules', { skip }, () => {
  const { status, output } = run(['check', 'rules', 'govmap-rules.yml']);
  assert.equal(status, 0, output);
  assert.match(output, /SUCCESS: 18 rules found/);
});

test('promtool test rules: each alert fires on its shape and not on its near miss', { skip }, () => {
  const { status, output } = run(['test', 'rules', 'govmap-rules.test.yml', 'govmap-rules.weekly.test.yml']);
  assert.equal(status, 0, output);
  assert.equal(output.match(/SUCCESS/g)?.length, 2, output);
});

test('the rules use the advisor\'s default thresholds', () => {
  const rules = (parse(readFileSync(`${dir}govmap-rules.yml`, 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string; expr: string }> }> }).groups.flatMap((g) => g.rules);
  const expr = (alert: string): string => rules.find((r) => r.alert === alert)!.expr;
  assert.match(expr('SyncMapMissRatioHigh'), new RegExp(`> ${DEFAULT_THRESHOLDS.missRatio}$`));
  assert.match(expr('SyncMapMissRatioWithGcPressure'), new RegExp(`\\[${DEFAULT_THRESHOLDS.missRatioWindows * 5}m\\]\\) > ${DEFAULT_THRESHOLDS.missRatio}`));
  assert.match(expr('SyncMapRangeGrowthWeekOverWeek'), new RegExp(`> ${1 + DEFAULT_THRESHOLDS.rangeGrowth} \\* increase`));
  assert.match(expr('SyncMapRangeGrowthWeekOverWeek'), new RegExp(`>= ${DEFAULT_THRESHOLDS.minBaselineRanges}`));
  assert.match(expr('SyncMapTooManyKeys'), new RegExp(`> ${DEFAULT_THRESHOLDS.maxKeys}$`));
  assert.match(expr('SyncMapNotReadMostly'), new RegExp(`< ${DEFAULT_THRESHOLDS.minReadWriteRatio}$`));
});

test('every series an alert reads is one govmap exports: a renamed metric would leave its alert silent for ever', async () => {
  const rules = (parse(readFileSync(`${dir}govmap-rules.yml`, 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string; expr: string }> }> }).groups.flatMap((g) => g.rules);
  const dirAudit = await mkdtemp(join(tmpdir(), 'govmap-rules-'));
  const demo = await startDemo({ port: 0, accounts: 20, audit: { dir: dirAudit }, sandbox: { stateDirectory: null }, traffic: false });
  try {
    const exposition = await (await fetch(`${demo.url}/metrics`)).text();
    // Declared families count even without a sample (a Redis map's counters in a demo without
    // Redis); a histogram is read through its _bucket, _sum and _count series.
    const exported = new Set<string>();
    for (const [, name, type] of exposition.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/gm)) {
      exported.add(name!);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(name! + suffix);
    }
    const missing = rules.flatMap((r) => [...r.expr.matchAll(/\b((?:syncmap|govmap)_[a-z0-9_]+)/g)].map((m) => m[1]!).filter((name) => !exported.has(name)).map((name) => `${r.alert}: ${name}`));
    assert.deepEqual(missing, [], 'series the rules read that govmap does not export');
  } finally {
    await demo.close();
    await rm(dirAudit, { recursive: true, force: true });
  }
});
