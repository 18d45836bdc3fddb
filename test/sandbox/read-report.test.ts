import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SandboxReportFileError, readSandboxReport } from '../../src/sandbox/index.ts';
import { sandboxReportText } from './report-fixture.ts';

/**
 * A CI job that saved `govmap sandbox report --json` (or the service's GET /sandbox/report) to a
 * file reads it back with `readSandboxReport` and gates on it. Anything that is not a report is
 * refused with a stable code naming the file and the field, never returned half-checked.
 */

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'govmap-read-report-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const realReport = (): string => sandboxReportText(2);

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function refusal(path: string): Promise<SandboxReportFileError> {
  try {
    await readSandboxReport(path);
  } catch (error) {
    assert.ok(error instanceof SandboxReportFileError, String(error));
    return error;
  }
  assert.fail(`${path} was read as a report`);
}

describe('readSandboxReport', () => {
  test('reads back a saved report, suspects included, from an absolute or a relative path', async () => {
    const path = file('report.json', realReport());
    const report = await readSandboxReport(path);
    assert.equal(report.suspects.length, 1);
    assert.equal(report.suspects[0]?.kind, 'IDLE');
    const again = await readSandboxReport(relative(process.cwd(), path));
    assert.deepEqual(again, report);
  });

  test('a field missing or of the wrong type (a report of another version): GOVMAP_SANDBOX_REPORT_INVALID naming the file and the fields', async () => {
    const other: Record<string, unknown> = { ...(JSON.parse(realReport()) as Record<string, unknown>), sweeps: 'many' };
    delete other.settings;
    const path = file('other-version.json', JSON.stringify(other));
    const e = await refusal(path);
    assert.equal(e.code, 'GOVMAP_SANDBOX_REPORT_INVALID');
    assert.equal(e.details.file, path);
    assert.match(e.message, new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not a govmap sandbox report: missing settings; sweeps: expected number`));
  });

  test('truncated or garbled JSON, an empty file: GOVMAP_SANDBOX_REPORT_INVALID naming the file', async () => {
    const full = realReport();
    for (const [name, text, rule] of [
      ['truncated.json', full.slice(0, full.length >> 1), /not JSON/],
      ['garbled.json', '{"generatedAt": nope}', /not JSON/],
      ['empty.json', '', /the file is empty/],
    ] as const) {
      const path = file(name, text);
      const e = await refusal(path);
      assert.equal(e.code, 'GOVMAP_SANDBOX_REPORT_INVALID', name);
      assert.ok(e.message.startsWith(`${path}: `), e.message);
      assert.match(e.message, rule);
    }
  });

  test('a missing file or a directory: GOVMAP_SANDBOX_REPORT_UNREADABLE naming the path', async () => {
    const missing = join(dir, 'nope.json');
    const e = await refusal(missing);
    assert.equal(e.code, 'GOVMAP_SANDBOX_REPORT_UNREADABLE');
    assert.match(e.message, new RegExp(`^${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read the report file \\(ENOENT`));
    const directory = join(dir, 'a-directory');
    mkdirSync(directory);
    const d = await refusal(directory);
    assert.equal(d.code, 'GOVMAP_SANDBOX_REPORT_UNREADABLE');
    assert.match(d.message, /: not a regular file \(a directory\)/);
  });

  test('a path that is not a string is refused before any read', async () => {
    const e = await refusal(null as unknown as string);
    assert.equal(e.code, 'GOVMAP_SANDBOX_REPORT_UNREADABLE');
    assert.match(e.message, /path must be a non-empty string/);
  });
});
