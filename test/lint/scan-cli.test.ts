import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

  test('a path outside the current directory is refused (exit 2) naming the path and the rule, never silently dropped', async () => {
    const outside = join(scratch, 'other', 'src');
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, 'stray.ts'), 'export const stray = 1;\n');
    // With a file inside: it used to scan that one and exit 0 ("1 file scanned").
    const mixed = await govmap(['scan', 'src/fees.ts', outside], SAMPLE);
    assert.equal(mixed.code, 2, mixed.stdout);
    assert.match(mixed.stderr, new RegExp(`path "${outside.replaceAll('/', '\\/')}" is outside the scan root .*GOVMAP_SCAN_PATH_OUTSIDE_ROOT`));
    assert.equal(mixed.stderr.trim().split('\n').length, 1, mixed.stderr);
    assert.equal(mixed.stdout, '');
    // Only outside: it used to say GOVMAP_SCAN_NO_FILES although the file exists.
    const only = await govmap(['scan', '../../../../src/advisor'], SAMPLE);
    assert.equal(only.code, 2);
    assert.match(only.stderr, /path "\.\.\/\.\.\/\.\.\/\.\.\/src\/advisor" is outside the scan root/);
    assert.doesNotMatch(only.stderr, /GOVMAP_SCAN_NO_FILES/);
  });

  test('files an ignore skips are counted as not analysed, in every format, and do not fail the scan', async () => {
    const text = await govmap(['scan', '--ignore', 'src/fees.ts', '--ignore', 'src/clean.ts'], SAMPLE);
    assert.equal(text.code, 1, text.stderr);
    assert.match(text.stdout, /govmap scan: 4 files scanned, .*, 2 files ignored \(not analysed\)$/m);
    const json = await govmap(['scan', '--format', 'json', '--ignore', 'src/fees.ts'], SAMPLE);
    assert.equal(json.code, 1);
    assert.match(json.stderr, /govmap scan: 1 file\(s\) skipped by an ignore pattern, not analysed \(first: src\/fees\.ts\)/);
    const sarif = await govmap(['scan', '--format', 'sarif', '--ignore', 'src/fees.ts'], SAMPLE);
    const log = JSON.parse(sarif.stdout) as { runs: Array<{ invocations: Array<{ executionSuccessful: boolean; toolExecutionNotifications: Array<{ level: string; message: { text: string } }> }> }> };
    const invocation = log.runs[0]!.invocations[0]!;
    assert.equal(invocation.executionSuccessful, true);
    assert.deepEqual(
      invocation.toolExecutionNotifications.map((n) => [n.level, n.message.text]),
      [['note', '1 file(s) skipped by an ignore pattern, not analysed: src/fees.ts']],
    );
  });

  test('a named file that is not TypeScript (notes.md beside sources) exits 2 naming it, not a scan that skipped it', async () => {
    const run = await govmap(['scan', 'src/fees.ts', 'package.json', 'src/clean.ts'], SAMPLE);
    assert.equal(run.code, 2);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /path "package\.json" is not a TypeScript source: .*\(GOVMAP_SCAN_PATH_NOT_TYPESCRIPT\)/);
  });

  test('an empty path (an unset $DIR in a script) exits 2 naming the rule, not a scan of the whole project', async () => {
    const run = await govmap(['scan', ''], SAMPLE);
    assert.equal(run.code, 2);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /a path is empty \(""\): name a file or directory.*\(GOVMAP_SCAN_PATH_EMPTY\)/);
  });

  test('a parse error is located (file:line:column) on stderr of a JSON run, which exits 2', async () => {
    const root = join(scratch, 'broken');
    generateProject(root, 1, 0);
    writeFileSync(join(root, 'src/broken.ts'), 'export const a = 1;\n\nexport function fee(amount: bigint) {\n  return amount * ;\n}\n');
    const run = await govmap(['scan', '--format', 'json'], root);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /1 file\(s\) could not be analysed \(first: src\/broken\.ts:4:19: .*Expression expected/);
  });

  test('stale baseline entries are counted in text and named on stderr of a JSON run; they do not fail the scan', async () => {
    const root = join(scratch, 'stale');
    generateProject(root, 10);
    const baseline = join(scratch, 'stale-baseline.json');
    const first = await govmap(['scan', '--format', 'json', '--output', baseline], root);
    assert.equal(first.code, 1);
    const victim = join(root, 'src/service-0009.ts');
    writeFileSync(victim, readFileSync(victim, 'utf8').replace(/accounts9\.store\(id, .*\);/, 'void 0;'));
    const text = await govmap(['scan', '--baseline', baseline], root);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /0 in baseline, 1 stale baseline entry \(no longer found/);
    const json = await govmap(['scan', '--baseline', baseline, '--format', 'json'], root);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), []);
    assert.match(json.stderr, /govmap scan: 1 baseline entry no longer found \(stale\): govmap\/no-rmw-across-await src\/service-0009\.ts:44; .*--format json/);
  });

  test('a path after --ignore is scanned, not taken as one more ignore pattern; --ignore repeats', async () => {
    const one = await govmap(['scan', '--ignore', 'src/fees.ts', 'src/balances.ts'], SAMPLE);
    assert.equal(one.code, 1, one.stderr);
    assert.match(one.stdout, /govmap scan: 1 file scanned, 1 error, 0 warnings$/m);
    const two = await govmap(['scan', '--ignore', 'src/fees.ts', '--ignore', 'src/clean.ts'], SAMPLE);
    assert.match(two.stdout, /govmap scan: 4 files scanned, .*, 2 files ignored \(not analysed\)$/m);
  });

  test('an --output that cannot be written: one line naming it and the reason, exit 2 (not 1, "findings"), before the scan', async () => {
    const target = join(scratch, 'no-such-dir', 'r.txt');
    const run = await govmap(['scan', 'src', '--output', target], SAMPLE);
    assert.equal(run.code, 2, run.stderr);
    assert.equal(run.stderr, `govmap scan: cannot write --output ${target}: directory ${join(scratch, 'no-such-dir')} does not exist\n`);
    assert.equal(run.stdout, '');
    assert.equal(existsSync(target), false);
    const intoFile = await govmap(['scan', 'src', '--output', join(SAMPLE, 'package.json', 'r.txt')], SAMPLE);
    assert.equal(intoFile.code, 2);
    assert.match(intoFile.stderr, /cannot write --output .*package\.json\/r\.txt: .*package\.json is not a directory/);
    const isDirectory = await govmap(['scan', 'src', '--output', scratch], SAMPLE);
    assert.equal(isDirectory.code, 2);
    assert.match(isDirectory.stderr, /is a directory/);
    // The CI recipe of docs/lint.md must not pass without a report.
    const ci = spawnSync('sh', ['-c', `"${process.execPath}" "${MAIN}" scan --format sarif --output "${target}" || test $? -eq 1`], { cwd: SAMPLE });
    assert.notEqual(ci.status, 0);
  });

  test('a scan that fails midway (an I/O error) exits 2, incomplete, never 1 ("findings")', async () => {
    // Simulates a disk or network-filesystem error while ESLint reads a source file.
    const preload = join(scratch, 'eio.mjs');
    writeFileSync(
      preload,
      [
        "import fsp from 'node:fs/promises';",
        "import { syncBuiltinESMExports } from 'node:module';",
        'const readFile = fsp.readFile;',
        "fsp.readFile = async (path, ...rest) => { if (String(path).endsWith('fees.ts')) throw Object.assign(new Error(`EIO: i/o error, read '${path}'`), { code: 'EIO' }); return readFile(path, ...rest); };",
        'syncBuiltinESMExports();',
      ].join('\n'),
    );
    const run = spawnSync(process.execPath, ['--import', preload, MAIN, 'scan', '--format', 'sarif'], { cwd: SAMPLE, encoding: 'utf8' });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /^govmap scan: the scan failed and is incomplete: Error: EIO: i\/o error, read '.*fees\.ts'/);
    assert.equal(run.stdout, '');
  });

  test('a bad rule option shows the whole reason, not only its first line', async () => {
    const config = join(scratch, 'bogus.yaml');
    writeFileSync(config, 'rules:\n  govmap/forbidden-calls: [error, { bogus: 1 }]\n');
    const run = await govmap(['scan', '--config', config], SAMPLE);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /govmap\/forbidden-calls.*\{"bogus":1\}.*Unexpected property "bogus"\. Expected properties: "calls", "additionalCalls"\..*GOVMAP_SCAN_CONFIG_INVALID/);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
  });

  test('a misspelt rule level in the config names the rule, the value and the levels it may be', async () => {
    const config = join(scratch, 'level.yaml');
    writeFileSync(config, 'rules:\n  govmap/require-validator: offf\n');
    const run = await govmap(['scan', '--config', config], SAMPLE);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /rules\.govmap\/require-validator: "offf" is not a rule level: off, warn or error \(or 0, 1, 2\), or \[level, options\.\.\.\]/);
    assert.doesNotMatch(run.stderr, /allowed keys/, 'the keys are not what is wrong');
  });

  test('a config file adds a forbidden call with additionalCalls and keeps the default checks (it cannot spread them)', async () => {
    const config = join(scratch, 'additional.yaml');
    writeFileSync(config, 'rules:\n  govmap/forbidden-calls: [error, { additionalCalls: [{ module: fs, name: writeFileSync, reason: ledger files are written by the ledger job }] }]\n');
    const run = await govmap(['scan', '--config', config, '--format', 'json'], SAMPLE);
    assert.equal(run.code, 1, run.stderr);
    const forbidden = (JSON.parse(run.stdout) as Array<{ ruleId: string; file: string; message: string }>).filter((f) => f.ruleId === 'govmap/forbidden-calls');
    assert.deepEqual(
      forbidden.map((f) => `${f.file} ${f.message.slice(0, f.message.indexOf(' is forbidden'))}`),
      ['src/maintenance.ts fs.rmSync', 'src/sweeper.ts fs.writeFileSync'],
    );
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
