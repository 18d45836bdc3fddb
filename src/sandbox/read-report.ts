import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { GovMapError } from '../map/errors.ts';
import type { SandboxReport } from './report.ts';
import { checkSandboxReport } from './report-schema.ts';

/**
 * A saved sandbox report file could not be read (`GOVMAP_SANDBOX_REPORT_UNREADABLE`: missing,
 * not a regular file, too large) or is not a report (`GOVMAP_SANDBOX_REPORT_INVALID`: empty,
 * not JSON, a field missing or of the wrong type). `details.file` is the path as given,
 * `details.rule` what it broke.
 */
export class SandboxReportFileError extends GovMapError {
  constructor(code: 'GOVMAP_SANDBOX_REPORT_UNREADABLE' | 'GOVMAP_SANDBOX_REPORT_INVALID', file: string, rule: string, cause?: unknown) {
    super(code, `${file}: ${rule}`, { file, rule }, cause === undefined ? undefined : { cause });
  }
}

/**
 * The most read from a report file: the cap `govmap sandbox report` puts on a service's answer
 * (src/advisor/sources.ts MAX_ANSWER_BYTES, written out so this part does not load the advisor).
 * A report lists at most `maxSuspectsListed` suspects, so a real one is far smaller.
 */
const MAX_REPORT_BYTES = 64 * 1024 * 1024;

/**
 * Reads a report saved from `GET /sandbox/report` or `govmap sandbox report --json`, checked
 * whole against the report's schema, so a CI gate written in JavaScript never judges a
 * truncated file, a report of another version or some other JSON as "no suspects".
 * A relative path is taken from `process.cwd()`.
 */
export async function readSandboxReport(file: string): Promise<SandboxReport> {
  if (typeof file !== 'string' || file === '') {
    throw new SandboxReportFileError('GOVMAP_SANDBOX_REPORT_UNREADABLE', String(file), 'the report file path must be a non-empty string');
  }
  let text: string;
  try {
    // O_NONBLOCK: a FIFO nobody writes to must be refused below, not wait forever in open().
    const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) {
        throw new SandboxReportFileError('GOVMAP_SANDBOX_REPORT_UNREADABLE', file, `not a regular file (${stat.isDirectory() ? 'a directory' : 'a device, FIFO or socket'}); give the path of a saved report`);
      }
      if (stat.size > MAX_REPORT_BYTES) {
        throw new SandboxReportFileError('GOVMAP_SANDBOX_REPORT_UNREADABLE', file, `${stat.size} bytes, more than the ${MAX_REPORT_BYTES} a report file may have`);
      }
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof SandboxReportFileError) throw error;
    const e = error as NodeJS.ErrnoException;
    throw new SandboxReportFileError('GOVMAP_SANDBOX_REPORT_UNREADABLE', file, `cannot read the report file (${e.code ?? 'error'}: ${e.message})`, error);
  }
  if (text.trim() === '') throw new SandboxReportFileError('GOVMAP_SANDBOX_REPORT_INVALID', file, 'not a govmap sandbox report: the file is empty (was the command that wrote it stopped before it printed?)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // A report cut short (a disk full, a job killed mid-write) ends here: JSON.parse names the position.
    throw new SandboxReportFileError('GOVMAP_SANDBOX_REPORT_INVALID', file, `not a govmap sandbox report: not JSON (${(error as Error).message}); a truncated file reads so`, error);
  }
  const checked = checkSandboxReport(parsed);
  if (!checked.ok) throw new SandboxReportFileError('GOVMAP_SANDBOX_REPORT_INVALID', file, `not a govmap sandbox report: ${checked.problem}`);
  return checked.report;
}
