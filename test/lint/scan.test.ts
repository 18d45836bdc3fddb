import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import fsPromises from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import AjvDraft04 from 'ajv-draft-04';
import addFormats from 'ajv-formats';
import { Baseline, FINGERPRINT_KEY, ScanUsageError, failingFindings, formatJson, formatSarif, formatText, rules, scan } from '../../src/lint/index.ts';
import type { Finding, ScanReport } from '../../src/lint/index.ts';
import { PLANTED_LINE, generateProject } from './generate-project.ts';

const SAMPLE = fileURLToPath(new URL('../fixtures/scan/clearing-service/', import.meta.url));
const SARIF_SCHEMA = JSON.parse(readFileSync(new URL('./sarif-2.1.0-rtm.5.schema.json', import.meta.url), 'utf8')) as object;

const scratch = mkdtempSync(join(tmpdir(), 'govmap-scan-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const brief = (f: Finding): string => `${f.ruleId} ${f.file}:${f.line} ${f.severity}${f.suppression === null ? '' : ` suppressed(${f.suppression})`}`;

/** The sample service's findings, as its files' header comments list them. */
const EXPECTED_SAMPLE = [
  'govmap/no-rmw-across-await src/balances.ts:32 error',
  'govmap/require-validator src/fees.ts:6 error',
  'govmap/no-plain-shared-cache src/fx-cache.ts:2 warning',
  'govmap/forbidden-calls src/maintenance.ts:9 error',
  'govmap/require-suppression-reason src/maintenance.ts:12 error',
  'govmap/forbidden-calls src/maintenance.ts:13 error suppressed()',
  'govmap/forbidden-calls src/maintenance.ts:16 error suppressed(the path is the fixed scratch directory, never user input)',
  'govmap/no-async-range-callback src/sweeper.ts:13 error',
  'govmap/no-shared-mutation-in-range src/sweeper.ts:19 error',
  'govmap/no-async-range-callback src/sweeper.ts:20 error',
];

describe('govmap scan of the sample clearing service', () => {
  let report: ScanReport;
  const progress: number[] = [];

  test('finds exactly the known findings, and nothing in the clean file', async () => {
    report = await scan({ cwd: SAMPLE, batchSize: 2, onProgress: (p) => progress.push(p.done) });
    assert.deepEqual(report.findings.map(brief), EXPECTED_SAMPLE);
    assert.equal(report.filesScanned, 6);
    assert.deepEqual(report.unanalysed, []);
    assert.equal(failingFindings(report).length, 7, 'errors that are neither suppressed nor in a baseline fail the scan');
  });

  test('reports progress after each batch, up to the total', () => {
    assert.deepEqual(progress, [2, 4, 6]);
  });

  test('declares every rule, fired or not', () => {
    assert.deepEqual(report.rules.map((r) => r.id).sort(), Object.keys(rules).map((r) => `govmap/${r}`).sort());
    assert.equal(report.rules.find((r) => r.id === 'govmap/no-plain-shared-cache')?.level, 'warning');
  });

  test('JSON: an array of {ruleId, file, line, column, message} with fingerprints, suppressed findings left out', () => {
    const json = JSON.parse(formatJson(report)) as Array<Record<string, unknown>>;
    assert.equal(json.length, EXPECTED_SAMPLE.filter((e) => !e.includes('suppressed')).length);
    const first = json[0]!;
    assert.deepEqual(Object.keys(first).sort(), ['baseline', 'column', 'endColumn', 'endLine', 'file', 'fingerprint', 'line', 'message', 'ruleId', 'severity']);
    assert.equal(first.ruleId, 'govmap/no-rmw-across-await');
    assert.equal(first.file, 'src/balances.ts');
    assert.equal(first.line, 32);
    assert.equal(first.column, 3);
    assert.match(String(first.message), /updateAsync/);
    assert.match(String(first.fingerprint), /^[0-9a-f]{32}$/);
  });

  test('SARIF: valid against the 2.1.0 schema, every rule declared, fingerprints, suppressions with their justification', () => {
    const sarif = JSON.parse(formatSarif(report)) as SarifLog;
    // unicodeRegExp off: the published schema's `language` pattern is not valid with the u flag.
    const ajv = new AjvDraft04.default({ allErrors: true, strict: false, unicodeRegExp: false });
    addFormats.default(ajv);
    const validate = ajv.compile(SARIF_SCHEMA);
    assert.ok(validate(sarif), JSON.stringify(validate.errors, null, 2));
    // The validator is not a rubber stamp: a result without its required message fails.
    const broken = JSON.parse(formatSarif(report)) as { runs: Array<{ results: Array<Record<string, unknown>> }> };
    delete broken.runs[0]!.results[0]!.message;
    assert.equal(validate(broken), false);

    assert.equal(sarif.version, '2.1.0');
    const run = sarif.runs[0]!;
    assert.equal(run.tool.driver.name, 'govmap');
    assert.equal(run.tool.driver.rules.length, Object.keys(rules).length);
    assert.equal(run.results.length, EXPECTED_SAMPLE.length);
    for (const result of run.results) {
      assert.match(result.partialFingerprints[FINGERPRINT_KEY]!, /^[0-9a-f]{32}$/);
      assert.equal(run.tool.driver.rules[result.ruleIndex]!.id, result.ruleId, 'ruleIndex points at the rule');
      assert.equal(result.locations[0]!.physicalLocation.artifactLocation.uriBaseId, '%SRCROOT%');
    }
    const justified = run.results.filter((r) => r.suppressions !== undefined);
    assert.deepEqual(
      justified.map((r) => r.suppressions![0]),
      [
        { kind: 'inSource', justification: '' },
        { kind: 'inSource', justification: 'the path is the fixed scratch directory, never user input' },
      ],
    );
    assert.ok(run.results.every((r) => r.baselineState === undefined), 'no baselineState without a baseline');
    assert.equal(run.invocations[0]!.executionSuccessful, true);
    assert.ok(run.originalUriBaseIds['%SRCROOT%']!.uri.startsWith('file:///'));
  });

  test('text: grouped by file, with a summary', () => {
    const text = formatText(report);
    assert.match(text, /^src\/balances\.ts\n {2}32:3 +error +balances\.store\(account, \.\.\.\) writes a value computed from balances\.load\(account\)/m);
    assert.match(text, /govmap scan: 6 files scanned, 7 errors, 1 warning, 2 suppressed in the source \(1 without a reason\)$/);
  });
});

describe('baselines and fingerprints', () => {
  test('findings keep their fingerprints when code moves; a baseline fails only new findings', async () => {
    const project = generateProject(join(scratch, 'moving'), 20);
    const first = await scan({ cwd: project.root });
    assert.deepEqual(
      first.findings.map((f) => `${f.file}:${f.line}`),
      project.planted,
    );
    const baselineFile = join(scratch, 'baseline.json');
    writeFileSync(baselineFile, formatJson(first));

    // Move every finding down two lines, and plant one more lost update.
    for (const file of project.files) {
      const path = join(project.root, file);
      writeFileSync(path, `// moved\n// down\n${readFileSync(path, 'utf8')}`);
    }
    const victim = join(project.root, 'src/service-0004.ts');
    writeFileSync(victim, readFileSync(victim, 'utf8').replace(/accounts4\.update\(id, \(current\) => .*\);/, 'accounts4.store(id, { ...account, balance: account.balance - amount });'));

    const second = await scan({ cwd: project.root, baseline: await Baseline.load(baselineFile) });
    assert.deepEqual(
      second.findings.map((f) => `${f.file}:${f.line} ${f.baseline ? 'baseline' : 'new'}`),
      ['src/service-0004.ts', ...project.planted.map((p) => p.split(':')[0]!)].sort().map((file) => `${file}:${PLANTED_LINE + 2} ${file.endsWith('0004.ts') ? 'new' : 'baseline'}`),
    );
    const moved = new Set(first.findings.map((f) => f.fingerprint));
    assert.ok(second.findings.filter((f) => f.baseline).every((f) => moved.has(f.fingerprint)));
    assert.deepEqual(failingFindings(second).map((f) => f.file), ['src/service-0004.ts']);

    const sarif = JSON.parse(formatSarif(second)) as SarifLog;
    assert.deepEqual(sarif.runs[0]!.results.map((r) => r.baselineState).sort(), ['new', 'unchanged', 'unchanged']);
    // A SARIF report is a baseline too.
    const sarifBaseline = join(scratch, 'baseline.sarif');
    writeFileSync(sarifBaseline, formatSarif(second));
    const third = await scan({ cwd: project.root, baseline: await Baseline.load(sarifBaseline) });
    assert.deepEqual(failingFindings(third), []);
  });

  test('baseline entries no longer found are counted and named as stale, within the paths scanned only', async () => {
    const project = generateProject(join(scratch, 'stale'), 20);
    assert.deepEqual(project.planted.map((p) => p.split(':')[0]), ['src/service-0009.ts', 'src/service-0019.ts']);
    const baselineFile = join(scratch, 'stale-baseline.json');
    writeFileSync(baselineFile, formatJson(await scan({ cwd: project.root })));
    // The lost update of service-0009 is fixed: its baseline entry accepts nothing any more.
    const fixed = join(project.root, 'src/service-0009.ts');
    writeFileSync(fixed, readFileSync(fixed, 'utf8').replace(/accounts9\.store\(id, .*\);/, 'accounts9.update(id, (current) => ({ ...(current ?? account), balance: (current ?? account).balance - amount }));'));
    const report = await scan({ cwd: project.root, baseline: await Baseline.load(baselineFile) });
    assert.deepEqual(failingFindings(report), []);
    assert.deepEqual(
      report.staleBaseline.map((e) => `${e.ruleId} ${e.file}:${e.line}`),
      [`govmap/no-rmw-across-await src/service-0009.ts:${PLANTED_LINE}`],
    );
    assert.match(formatText(report), /1 in baseline, 1 stale baseline entry \(no longer found/);
    const sarif = JSON.parse(formatSarif(report)) as SarifLog;
    assert.ok(
      sarif.runs[0]!.invocations[0]!.toolExecutionNotifications.some((n) => n.level === 'note' && /1 baseline entry no longer found \(stale\).*src\/service-0009\.ts:44/.test(n.message.text)),
    );
    // A scan of one file cannot tell that entries for other files are stale.
    const partial = await scan({ cwd: project.root, paths: ['src/service-0019.ts'], baseline: await Baseline.load(baselineFile) });
    assert.deepEqual(partial.staleBaseline, []);
    assert.doesNotMatch(formatText(partial), /stale/);
  });

  test('identical findings on identical lines are told apart, and each needs its own baseline entry', async () => {
    const root = join(scratch, 'twins');
    generateProject(root, 1, 0);
    const twin = [
      `import { GovernedMap } from '${fileURLToPath(new URL('../../src/index.ts', import.meta.url))}';`,
      `const m = new GovernedMap<string, number>({ name: 'm', validate: () => true });`,
      `const n = new GovernedMap<string, number>({ name: 'm', validate: () => true });`,
      'export { m, n };',
    ].join('\n');
    writeFileSync(join(root, 'src/twins.ts'), twin);
    const report = await scan({ cwd: root });
    const fingerprints = report.findings.map((f) => f.fingerprint);
    assert.equal(fingerprints.length, 2);
    assert.notEqual(fingerprints[0], fingerprints[1]);
    const half = await scan({ cwd: root, baseline: new Baseline([fingerprints[0]!]) });
    assert.equal(failingFindings(half).length, 1);
  });

  test('a suppressed twin of a baselined finding, added or fixed above it, does not make it new', async () => {
    const root = join(scratch, 'suppressed-twin');
    generateProject(root, 1, 0);
    const govmap = fileURLToPath(new URL('../../src/index.ts', import.meta.url));
    // Identical lines, so the two findings share rule, file and line text: only their order tells them apart.
    const line = `registry.push(new GovernedMap<string, number>({ name: 'm', validate: () => true }));`;
    const source = (suppressedAbove: boolean): string =>
      [
        `import { GovernedMap } from '${govmap}';`,
        'export const registry: unknown[] = [];',
        ...(suppressedAbove ? ['// eslint-disable-next-line govmap/require-validator -- a test double', line] : []),
        line,
      ].join('\n');
    // Today: only the active finding, accepted into the baseline.
    writeFileSync(join(root, 'src/twin.ts'), source(false));
    const today = await scan({ cwd: root });
    const baseline = (JSON.parse(formatJson(today)) as Array<{ fingerprint: string }>).map((f) => f.fingerprint);
    assert.equal(baseline.length, 1);
    // A suppressed finding on an identical line lands above it: the accepted one is still accepted.
    writeFileSync(join(root, 'src/twin.ts'), source(true));
    const withTwin = await scan({ cwd: root, baseline: new Baseline(baseline) });
    assert.deepEqual(withTwin.findings.map((f) => `${f.line} ${f.suppression === null ? (f.baseline ? 'baseline' : 'new') : 'suppressed'}`), ['4 suppressed', '5 baseline']);
    // And a baseline saved while the suppressed twin was there survives its removal.
    const saved = (JSON.parse(formatJson(withTwin)) as Array<{ fingerprint: string }>).map((f) => f.fingerprint);
    writeFileSync(join(root, 'src/twin.ts'), source(false));
    assert.deepEqual(failingFindings(await scan({ cwd: root, baseline: new Baseline(saved) })), []);
  });

  test('lost updates through a logged re-read, loadAndDelete, an entries() snapshot and an update function passed by name are all reported', async () => {
    const root = join(scratch, 'rmw-shapes');
    generateProject(root, 1, 0);
    const source = [
      `import { GovernedMap } from '${fileURLToPath(new URL('../../src/index.ts', import.meta.url))}';`,
      `const balances = new GovernedMap<string, bigint>({ name: 'balances', validate: (_k, v) => (v >= 0n ? true : 'NEGATIVE') });`,
      'declare function riskCheck(id: string): Promise<void>;',
      'export async function logged(id: string, amount: bigint): Promise<void> {',
      '  const b = balances.load(id) ?? 0n;',
      '  await riskCheck(id);',
      '  console.log(balances.load(id));',
      '  balances.store(id, b + amount);',
      '}',
      'export async function reversed(id: string): Promise<void> {',
      '  const b = balances.loadAndDelete(id) ?? 0n;',
      '  await riskCheck(id);',
      '  balances.store(id, b);',
      '}',
      'export async function accrue(): Promise<void> {',
      '  for (const [id, b] of balances.entries()) {',
      '    await riskCheck(id);',
      '    balances.store(id, b + 1n);',
      '  }',
      '}',
      'export async function fee(id: string): Promise<void> {',
      '  const b = balances.load(id) ?? 0n;',
      '  const applyFee = (): bigint => b - 1n;',
      '  await balances.updateAsync(id, applyFee);',
      '}',
    ].join('\n');
    writeFileSync(join(root, 'src/rmw.ts'), source);
    const report = await scan({ cwd: root, paths: ['src/rmw.ts'] });
    assert.deepEqual(report.findings.map(brief), [
      'govmap/no-rmw-across-await src/rmw.ts:8 error',
      'govmap/no-rmw-across-await src/rmw.ts:13 error',
      'govmap/no-rmw-across-await src/rmw.ts:18 error',
      'govmap/no-rmw-across-await src/rmw.ts:24 error',
    ]);
    assert.match(report.findings[2]!.message, /balances\.entries\(\) snapshot/);
  });

  test('a fingerprint is taken from the finding\'s own line, also below a U+2028 inside a string', async () => {
    const root = join(scratch, 'line-separator');
    generateProject(root, 1, 0);
    const source = (exported: string): string =>
      [
        `import { GovernedMap } from '${fileURLToPath(new URL('../../src/index.ts', import.meta.url))}';`,
        // ESLint counts U+2028 as a line break, so the finding below is on its line 4.
        `export const note = 'settled\u2028reversed';`,
        `const m = new GovernedMap<string, number>({ name: 'm', validate: () => true });`,
        exported,
      ].join('\n');
    writeFileSync(join(root, 'src/separator.ts'), source('export { m };'));
    const before = (await scan({ cwd: root })).findings;
    assert.deepEqual(before.map((f) => `${f.file}:${f.line}`), ['src/separator.ts:4']);
    // Editing the line below the finding must not make it a new finding.
    writeFileSync(join(root, 'src/separator.ts'), source('export { m as ledger };'));
    const after = (await scan({ cwd: root })).findings;
    assert.equal(after[0]!.fingerprint, before[0]!.fingerprint);
  });
});

describe('files the scan cannot vouch for, and usage errors', () => {
  test('a file outside every tsconfig is reported as not analysed, never silently passed', async () => {
    const root = join(scratch, 'stray');
    generateProject(root, 2, 0);
    mkdirSync(join(root, 'scripts'));
    writeFileSync(join(root, 'scripts/migrate.ts'), 'export const step = 1;\n');
    const report = await scan({ cwd: root });
    assert.equal(report.filesScanned, 3);
    assert.equal(report.unanalysed.length, 1);
    assert.equal(report.unanalysed[0]!.file, 'scripts/migrate.ts');
    const sarif = JSON.parse(formatSarif(report)) as SarifLog;
    assert.equal(sarif.runs[0]!.invocations[0]!.executionSuccessful, false);
    assert.match(formatText(report), /1 file NOT analysed/);
    // Ignoring it makes the scan complete again.
    const ignored = await scan({ cwd: root, ignore: ['scripts/**'] });
    assert.equal(ignored.filesScanned, 2);
    assert.deepEqual(ignored.unanalysed, []);
  });

  test('a file that does not parse is reported with its line and column, in text, SARIF and the report', async () => {
    const root = join(scratch, 'broken');
    generateProject(root, 1, 0);
    writeFileSync(join(root, 'src/broken.ts'), 'export const a = 1;\n\nexport function fee(amount: bigint) {\n  return amount * ;\n}\n');
    const report = await scan({ cwd: root });
    assert.equal(report.unanalysed.length, 1);
    const { file, line, column, message } = report.unanalysed[0]!;
    assert.deepEqual([file, line, column], ['src/broken.ts', 4, 19]);
    assert.match(message, /Expression expected/);
    assert.match(formatText(report), /^src\/broken\.ts:4:19\n {2}not analysed: .*Expression expected/m);
    const sarif = JSON.parse(formatSarif(report)) as { runs: Array<{ invocations: Array<{ toolExecutionNotifications: Array<{ locations: Array<{ physicalLocation: { region?: { startLine: number; startColumn: number } } }> }> }> }> };
    assert.deepEqual(sarif.runs[0]!.invocations[0]!.toolExecutionNotifications[0]!.locations[0]!.physicalLocation.region, { startLine: 4, startColumn: 19 });
  });

  test('a file named on the command line that is not a TypeScript source is refused, naming it, never dropped in silence', async () => {
    await assert.rejects(
      scan({ cwd: SAMPLE, paths: ['src/fees.ts', 'package.json', 'src/clean.ts'] }),
      (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_PATH_NOT_TYPESCRIPT' && /"package\.json"/.test(e.message) && /\*\.ts, \*\.tsx, \*\.mts, \*\.cts/.test(e.message),
    );
    const root = join(scratch, 'declarations');
    generateProject(root, 1, 0);
    writeFileSync(join(root, 'src/env.d.ts'), 'declare const FEE: bigint;\n');
    writeFileSync(join(root, 'src/legacy.js'), 'export const a = 1;\n');
    await assert.rejects(
      scan({ cwd: root, paths: ['src/service-0000.ts', 'src/env.d.ts', 'src/legacy.js'] }),
      (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_PATH_NOT_TYPESCRIPT' && /"src\/env\.d\.ts"/.test(e.message) && /"src\/legacy\.js"/.test(e.message),
    );
    // Inside a directory, such files are not sources and are passed over as before.
    assert.equal((await scan({ cwd: root, paths: ['src'] })).filesScanned, 1);
  });

  test('with --project, a file that tsconfig leaves out is not analysed, and the report says why (not only which tsconfig)', async () => {
    const root = join(scratch, 'outside-project');
    generateProject(root, 1, 0);
    mkdirSync(join(root, 'scripts'));
    writeFileSync(join(root, 'scripts/migrate.ts'), 'export const step = 1;\n');
    const report = await scan({ cwd: root, project: 'tsconfig.json' });
    assert.equal(report.unanalysed.length, 1);
    const { file, message } = report.unanalysed[0]!;
    assert.equal(file, 'scripts/migrate.ts');
    // typescript-eslint words it two ways (which depends on the programs it already holds in
    // this process): either way the reason, on its second line, is kept.
    assert.match(message, /tsconfig\.json.*that TSConfig does not include this file, so type information is not available for it|The file was not found in any of the provided project\(s\): scripts\/migrate\.ts/);
    assert.ok(!message.includes('\n'), message);
    assert.doesNotMatch(message, /Either|parserOptions\.project\b.*- /, 'advice about an ESLint config the scan does not use is left out');
  });

  test('a source directory named like build output (src/risk/coverage) is counted as ignored, never skipped in silence, and can be un-ignored', async () => {
    const root = join(scratch, 'coverage-module');
    const project = generateProject(root, 1, 1);
    const source = readFileSync(join(root, project.files[0]!), 'utf8');
    mkdirSync(join(root, 'src/risk/coverage'), { recursive: true });
    writeFileSync(join(root, 'src/risk/coverage/collateral.ts'), source);
    mkdirSync(join(root, 'dist'));
    writeFileSync(join(root, 'dist/service-0000.ts'), source);
    const report = await scan({ cwd: root });
    assert.deepEqual(report.ignored, ['dist/service-0000.ts', 'src/risk/coverage/collateral.ts']);
    assert.match(formatText(report), /2 files ignored \(not analysed\)$/);
    const unignored = await scan({ cwd: root, ignore: ['!src/risk/coverage/'] });
    assert.deepEqual(unignored.ignored, ['dist/service-0000.ts']);
    assert.deepEqual(
      failingFindings(unignored).map((f) => `${f.ruleId} ${f.file}`),
      ['govmap/no-rmw-across-await src/risk/coverage/collateral.ts', 'govmap/no-rmw-across-await src/service-0000.ts'],
    );
  });

  test('a rule switched off inline for a whole file (/* eslint govmap/...: off */) fails the scan, where it hid a lost update', async () => {
    const root = join(scratch, 'inline-config');
    const project = generateProject(root, 1, 1);
    const file = join(root, project.files[0]!);
    const source = readFileSync(file, 'utf8');
    // It also switches off require-suppression-reason, so no rule of the file could report it.
    writeFileSync(file, `/* eslint govmap/require-suppression-reason: off, govmap/no-rmw-across-await: off */\n${source}`);
    writeFileSync(join(root, 'src/other.ts'), '/* eslint-disable-next-line no-console -- a directive of another tool */\n/* eslint no-console: off */\nexport const other = 1;\n');
    const report = await scan({ cwd: root });
    const failing = failingFindings(report);
    assert.deepEqual(failing.map((f) => `${f.ruleId} ${f.file}:${f.line}:${f.column}`), [`govmap/require-suppression-reason ${project.files[0]}:1:1`]);
    assert.match(failing[0]!.message, /Inline configuration of govmap\/require-suppression-reason, govmap\/no-rmw-across-await switches the rule for the whole file/);
  });

  test('typed errors name the input and the broken rule', async () => {
    await assert.rejects(scan({ cwd: SAMPLE, paths: ['no-such-dir'] }), (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_PATH_NOT_FOUND' && /no-such-dir/.test(e.message));
    await assert.rejects(scan({ cwd: SAMPLE, paths: ['package.json'] }), { code: 'GOVMAP_SCAN_PATH_NOT_TYPESCRIPT' });
    await assert.rejects(scan({ cwd: SAMPLE, project: 'missing.json' }), { code: 'GOVMAP_SCAN_TSCONFIG_NOT_FOUND' });
    await assert.rejects(scan({ cwd: SAMPLE, rules: { 'govmap/no-such-rule': 'error' } }), (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_CONFIG_INVALID' && /no-such-rule/.test(e.message));
    await assert.rejects(
      scan({ cwd: SAMPLE, rules: { 'govmap/forbidden-calls': ['error', { calls: [{ module: 'fs' }] }] } }),
      (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_CONFIG_INVALID' && /forbidden-calls/.test(e.message),
    );
    const notABaseline = join(scratch, 'not-a-baseline.json');
    writeFileSync(notABaseline, JSON.stringify([{ ruleId: 'x' }]));
    await assert.rejects(Baseline.load(notABaseline), (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_BASELINE_INVALID' && /entry 0 has no "fingerprint"/.test(e.message));
  });

  test('a path outside the root is refused, not dropped; ignored files are listed in the report, and SARIF stays valid', async () => {
    const outside = join(scratch, 'outside-root');
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, 'stray.ts'), 'export const stray = 1;\n');
    await assert.rejects(
      scan({ cwd: SAMPLE, paths: ['src/fees.ts', outside] }),
      (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_PATH_OUTSIDE_ROOT' && e.message.includes(`path "${outside}" is outside the scan root`),
    );
    const report = await scan({ cwd: SAMPLE, ignore: ['src/fees.ts', 'src/sweeper.ts'] });
    assert.equal(report.filesScanned, 4);
    assert.deepEqual(report.ignored, ['src/fees.ts', 'src/sweeper.ts']);
    assert.deepEqual(report.unanalysed, []);
    assert.match(formatText(report), /2 files ignored \(not analysed\)$/);
    const ajv = new AjvDraft04.default({ allErrors: true, strict: false, unicodeRegExp: false });
    addFormats.default(ajv);
    assert.ok(ajv.validate(SARIF_SCHEMA, JSON.parse(formatSarif(report))), JSON.stringify(ajv.errors));
    const none = await scan({ cwd: SAMPLE, paths: ['src/fees.ts'] }).then((r) => r.ignored);
    assert.deepEqual(none, []);
    await assert.rejects(scan({ cwd: SAMPLE, paths: ['src/fees.ts'], ignore: ['src/**'] }), (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_NO_FILES' && /1 found but ignored, first .*fees\.ts/.test(e.message));
  });

  test('a directory the scan cannot read is refused, not passed over; ignored, it may stay unreadable', async () => {
    const root = join(scratch, 'unreadable');
    generateProject(root, 1, 0);
    mkdirSync(join(root, 'volumes/ledger'), { recursive: true });
    // As a non-root CI user meets a root-owned directory (the tests may run as root, who reads everything).
    const readdir = fsPromises.readdir;
    fsPromises.readdir = (async (path: string, options: never) => {
      if (String(path).endsWith(join('volumes', 'ledger'))) throw Object.assign(new Error(`EACCES: permission denied, scandir '${path}'`), { code: 'EACCES' });
      return readdir(path, options);
    }) as typeof readdir;
    syncBuiltinESMExports();
    try {
      await assert.rejects(
        scan({ cwd: root }),
        (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_PATH_UNREADABLE' && e.message.includes('directory "volumes/ledger" cannot be read (EACCES)'),
      );
      const report = await scan({ cwd: root, ignore: ['volumes/**'] });
      assert.equal(report.filesScanned, 1);
    } finally {
      fsPromises.readdir = readdir;
      syncBuiltinESMExports();
    }
  });

  test('an invalid rule option is reported with its whole reason', async () => {
    await assert.rejects(
      scan({ cwd: SAMPLE, rules: { 'govmap/forbidden-calls': ['error', { bogus: 1 }] } }),
      (e: unknown) => e instanceof ScanUsageError && e.code === 'GOVMAP_SCAN_CONFIG_INVALID' && /Unexpected property "bogus"\. Expected properties: "calls", "additionalCalls"\./.test(e.message) && !e.message.includes('\n'),
    );
  });

  test('rule overrides and the strict preset change what is reported', async () => {
    const strict = await scan({ cwd: SAMPLE, preset: 'strict', rules: { 'govmap/forbidden-calls': 'off' } });
    assert.equal(strict.findings.find((f) => f.ruleId === 'govmap/no-plain-shared-cache')?.severity, 'error');
    assert.equal(strict.findings.filter((f) => f.ruleId === 'govmap/forbidden-calls').length, 0);
    assert.equal(strict.rules.find((r) => r.id === 'govmap/forbidden-calls')?.level, 'off');
  });
});

interface SarifLog {
  version: string;
  runs: Array<{
    tool: { driver: { name: string; rules: Array<{ id: string }> } };
    originalUriBaseIds: Record<string, { uri: string }>;
    invocations: Array<{ executionSuccessful: boolean; toolExecutionNotifications: Array<{ level: string; message: { text: string } }> }>;
    results: Array<{
      ruleId: string;
      ruleIndex: number;
      partialFingerprints: Record<string, string>;
      suppressions?: Array<{ kind: string; justification: string }>;
      baselineState?: string;
      locations: Array<{ physicalLocation: { artifactLocation: { uri: string; uriBaseId: string } } }>;
    }>;
  }>;
}
