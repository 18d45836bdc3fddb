import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * `govmap bench` refuses what it cannot run before measuring anything: a mistyped option or a
 * value out of range is one clear line and exit 2, never a stack trace, a nonsense report, or a
 * benchmark of many minutes that fails at its end.
 */
const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

function bench(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return benchWith(process.env, ...args);
}

function benchWith(env: NodeJS.ProcessEnv, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'bench', ...args], { encoding: 'utf8', timeout: 60_000, env });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('govmap bench usage errors', () => {
  const refused: Array<[string[], RegExp]> = [
    [['load', '--step', '0'], /--step must be a whole number from 1 to 1,000,000 \(req\/s\); got "0"/],
    [['load', '--hold', 'abc'], /--hold must be a number from 0\.1 to 600 \(s\); got "abc"/],
    [['load', '--accounts', '1.5'], /--accounts must be a whole number/],
    // One account: every transfer of the mix would be to its own payer, refused by both services.
    [['load', '--accounts', '1'], /--accounts must be a whole number from 2 to 1,000,000/],
    [['load', '--warmup', '-1'], /--warmup must be a number from 0 to 600/],
    [['load', '--start', '2000', '--max', '1000'], /--start \(2000 req\/s\) is above --max \(1000 req\/s\)/],
    [['load', '--out', '/nonexistent-govmap-dir/curve.svg'], /--out: the folder \/nonexistent-govmap-dir does not exist/],
    [['load', '--out', 'curve.png'], /must end in \.svg/],
    [['load', '--hold'], /--hold needs a value/],
    [['cost', '--rate', '0'], /--rate must be a whole number from 1 to 1,000,000 \(req\/s\); got "0"/],
    [['cost', '--rounds', '101'], /--rounds must be a whole number from 1 to 100/],
    [['cost', '--parts', 'audit,bogus'], /--parts "audit,bogus": "bogus" is not a part; the parts are audit, routing, dashboard, metrics, shared-memory/],
    [['cost', '--parts', 'audit,audit'], /"audit" is named twice/],
    // A step that measures (almost) no request reported p99 0 ms ("met") and a saturation ratio of
    // NaN, null in the JSON line: --hold 0.1 at 200 req/s sends 20 requests a step.
    [['load', '--quick', '--hold', '0.1'], /--hold 0\.1 s at --start 200 req\/s measures 20 requests a step: a p99 needs at least 100; raise --hold or --start/],
    [['cost', '--quick', '--rate', '100', '--parts', 'audit'], /--hold 0\.5 s at --rate 100 req\/s measures 50 requests a step: a p99 needs at least 100; raise --hold or --rate/],
    // A script's defaults followed by an override (`$DEFAULTS --hold 10`) silently ran the first.
    [['load', '--quick', '--hold', '1', '--hold', '5'], /bench load: --hold is given twice \("1", then "5"\): give it once/],
    [['audit', '--bogus'], /unknown option "--bogus"/],
    [['no-such-suite'], /unknown suite "no-such-suite"/],
    // Options before the suite were never checked: `--bogus map` ran map, `--hold 5 load` took "5" for a suite.
    [['--bogus', 'map'], /name the suite first, then its options \(got "--bogus" before any suite\)/],
    [['--hold', '5', 'load'], /name the suite first, then its options \(got "--hold" before any suite\)/],
  ];
  for (const [args, message] of refused) {
    test(`govmap bench ${args.join(' ')}: exit 2, one clear line`, () => {
      const r = bench(...args);
      assert.equal(r.status, 2, `exit status\n${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(r.stdout, '', 'nothing measured, nothing reported');
    });
  }

  // The redis suite needs a real Redis: without one (unset, not a Redis URL, nothing listening)
  // it said so in an uncaught exception's stack trace, exit 1.
  const { GOVMAP_REDIS_URL: _unset, ...noRedis } = process.env;
  const redisRefused: Array<[string, NodeJS.ProcessEnv, RegExp]> = [
    ['GOVMAP_REDIS_URL unset', noRedis, /bench redis: the redis suite needs a real Redis: .*export GOVMAP_REDIS_URL=redis:\/\/127\.0\.0\.1:6390/],
    ['GOVMAP_REDIS_URL not a Redis URL', { ...noRedis, GOVMAP_REDIS_URL: 'not-a-url' }, /bench redis: GOVMAP_REDIS_URL "not-a-url": .*redis:\/\/host:port/],
    ['nothing listening at GOVMAP_REDIS_URL', { ...noRedis, GOVMAP_REDIS_URL: 'redis://127.0.0.1:1' }, /bench redis: GOVMAP_REDIS_URL "redis:\/\/127\.0\.0\.1:1": .*unavailable/],
  ];
  for (const [what, env, message] of redisRefused) {
    test(`govmap bench redis --quick, ${what}: exit 2, one clear line`, () => {
      const r = benchWith(env, 'redis', '--quick');
      assert.equal(r.status, 2, `exit status\n${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(r.stdout, '', 'nothing measured, nothing reported');
    });
  }

  // A suite measured against a devDependency (opossum, pino, typescript-eslint…) died, in a
  // project that installed govmap, in ERR_MODULE_NOT_FOUND's stack trace (or minutes in, for a
  // package loaded late): it names what to install before measuring anything.
  const hook = new URL('./hide-packages.ts', import.meta.url).href;
  const yardsticks: Array<[string, string[]]> = [
    ['breaker', ['cockatiel', 'opossum']],
    ['audit', ['@opentelemetry/context-async-hooks', 'pino']],
    ['scan', ['typescript-eslint']],
  ];
  for (const [suite, hidden] of yardsticks) {
    test(`govmap bench ${suite} --quick without ${hidden.join(', ')} installed: exit 2, names what to install`, () => {
      const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${hook}`, GOVMAP_TEST_HIDE_PACKAGES: hidden.join(',') };
      const r = benchWith(env, suite, '--quick');
      assert.equal(r.status, 2, `exit status\n${r.stderr}`);
      assert.match(r.stderr, new RegExp(`bench ${suite}: the suite needs ${hidden.join(', ')}, not installed here .*: npm install --no-save ${hidden.join(' ')}`));
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(r.stdout, '', 'nothing measured, nothing reported');
    });
  }

  // The chart was written after the whole climb: a --out naming a directory failed there, in
  // EISDIR's stack trace, exit 1, with the table and JSON line of a run of many minutes lost.
  test('govmap bench load --out naming a directory: exit 2 before measuring, one clear line', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'govmap-bench-out-')), 'curve.svg');
    mkdirSync(dir);
    try {
      const r = bench('load', '--quick', '--out', dir);
      assert.equal(r.status, 2, `exit status\n${r.stderr}`);
      assert.match(r.stderr, new RegExp(`--out: ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is a directory; name the chart file`));
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(r.stdout, '', 'nothing measured, nothing reported');
    } finally {
      rmSync(dirname(dir), { recursive: true, force: true });
    }
  });

  test('--help lists the suites and the load options, exit 0', () => {
    const r = bench('load', '--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /--max-steps <n>/);
    assert.match(r.stdout, /--out <file\.svg>/);
  });
});

// A suite that fails in a way no rule names (a bug of ours, a broken install) exited 1, which
// README.md keeps for "ran and found a problem": a CI gate written as `|| test $? -eq 1` passed.
test('govmap bench whose suite fails unexpectedly exits 2, with the stack for the bug report', () => {
  const hook = new URL('./hide-packages.ts', import.meta.url).href;
  const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${hook}`, GOVMAP_TEST_HIDE_PACKAGES: 'hdr-histogram-js' };
  const r = benchWith(env, 'load', '--quick');
  assert.equal(r.status, 2, `exit status\n${r.stderr}`);
  assert.match(r.stderr, /bench load: failed unexpectedly and did not finish: .*hdr-histogram-js/);
  assert.match(r.stderr, /\n\s+at /, 'the stack trace, for the bug report');
  assert.equal(r.stdout, '');
});

// `govmap bench` runs the suite in a child process. A SIGTERM to govmap (a CI job cancelled,
// `timeout`, `kill <pid>`) killed govmap alone: the suite ran on, orphaned, burning CPU on a
// shared machine (and `bench load` keeping its two demo services), with nobody to report to.
test('govmap bench stopped by SIGTERM stops its suite too, and exits 143', { skip: process.platform !== 'linux' && 'finds the child with pgrep' }, async () => {
  const child = spawn(process.execPath, [cli, 'bench', 'map'], { stdio: 'ignore' });
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let runner = 0;
  for (let i = 0; i < 200 && runner === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    runner = Number(spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0] ?? '');
  }
  assert.ok(runner > 0, 'the suite process started');
  child.kill('SIGTERM');
  const code = await closed;
  const alive = (): boolean => {
    try {
      process.kill(runner, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 50));
  const orphaned = alive();
  if (orphaned) process.kill(runner, 'SIGKILL');
  assert.equal(orphaned, false, 'the suite process was left running');
  assert.equal(code, 143);
});

test('a --quick run judges no target: its table says "not judged" and its JSON line says why', () => {
  const r = bench('map', '--quick', '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /: (met|NOT met)\)/, 'a smoke is not a result a CI gate can read as met');
  assert.match(r.stdout, /\(target [^)]*: not judged: --quick\)/);
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { notes?: string[] };
  assert.ok(report.notes?.some((n) => /--quick: a smoke proving the suite runs.*no target is judged/.test(n)), JSON.stringify(report.notes));
});
