import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateProject } from './generate-project.ts';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const SAMPLE = fileURLToPath(new URL('../fixtures/scan/clearing-service/', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'govmap-scan-cli-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `govmap scan ...` as a user would, with the same Node that runs the tests. */
function govmap(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { cwd, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('govmap scan (command line)', () => {
  test('text report by default; exit 1 on findings', async () => {
    const run = await govmap(['scan'], SAMPLE);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /govmap scan: 6 files scanned, 7 errors, 1 warning/);
    assert.equal(run.stderr, '', 'no progress lines for a small tree');
  });

  test('--format json is a baseline; with it, the same tree passes (exit 0)', async () => {
    const json = await govmap(['scan', '--format', 'json', 'src'], SAMPLE);
    assert.equal(json.code, 1);
    const findings = JSON.parse(json.stdout) as Array<{ ruleId: string; file: string }>;
    assert.equal(findings.length, 8);
    const baseline = join(scratch, 'baseline.json');
    writeFileSync(baseline, json.stdout);
    const again = await govmap(['scan', '--baseline', baseline, '--format', 'sarif', '--output', join(scratch, 'out.sarif')], SAMPLE);
    assert.equal(again.code, 0, again.stderr);
    const sarif = JSON.parse(readFileSync(join(scratch, 'out.sarif'), 'utf8')) as { runs: Array<{ results: Array<{ baselineState?: string }> }> };
    assert.ok(sarif.runs[0]!.results.some((r) => r.baselineState === 'unchanged'));
  });

  test('usage errors exit 2 with a message naming the input', async () => {
    const badFormat = await govmap(['scan', '--format', 'xml'], SAMPLE);
    assert.equal(badFormat.code, 2);
    assert.match(badFormat.stderr, /xml/);
    const missing = await govmap(['scan', 'nowhere'], SAMPLE);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /path "nowhere" does not exist .*GOVMAP_SCAN_PATH_NOT_FOUND/);
    const config = join(scratch, 'scan.yaml');
    writeFileSync(config, 'preset: paranoid\n');
    const badConfig = await govmap(['scan', '--config', config], SAMPLE);
    assert.equal(badConfig.code, 2);
    assert.match(badConfig.stderr, /preset/);
  });

  test('a config file turns rules off and sets options', async () => {
    const config = join(scratch, 'quiet.yaml');
    writeFileSync(config, ['rules:', '  govmap/forbidden-calls: off', '  govmap/require-suppression-reason: off', '  govmap/no-rmw-across-await: warn', 'ignore: ["src/sweeper.ts", "src/fees.ts"]', ''].join('\n'));
    const run = await govmap(['scan', '--config', config, '--format', 'json'], SAMPLE);
    assert.equal(run.code, 0, run.stderr);
    const findings = JSON.parse(run.stdout) as Array<{ ruleId: string; severity: string }>;
    assert.deepEqual(findings.map((f) => `${f.ruleId} ${f.severity}`), ['govmap/no-rmw-across-await warning', 'govmap/no-plain-shared-cache warning']);
  });

  test('progress on stderr for a large tree; stdout stays a clean report', async () => {
    const project = generateProject(join(scratch, 'large'), 120);
    const run = await govmap(['scan', '--format', 'json'], project.root);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /govmap scan: 120\/120 files \(100%\), 12 findings/);
    assert.equal((JSON.parse(run.stdout) as unknown[]).length, project.planted.length);
    const quiet = await govmap(['scan', '--no-progress', 'src/service-0000.ts'], project.root);
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stderr, '');
  });
});
