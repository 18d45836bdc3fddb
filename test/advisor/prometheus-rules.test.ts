import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
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
  assert.match(output, /SUCCESS: 11 rules found/);
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
