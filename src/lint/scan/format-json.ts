import type { ScanReport, Severity } from './scan.ts';

/** One element of `govmap scan --format json`. */
export interface JsonFinding {
  readonly ruleId: string;
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly endLine: number;
  readonly endColumn: number;
  readonly severity: Severity;
  readonly message: string;
  /** Stable identity; a saved report is a baseline (`--baseline`). */
  readonly fingerprint: string;
  /** True when the baseline accepted it (it does not fail the scan). */
  readonly baseline: boolean;
}

/**
 * The machine report: a JSON array of the active findings (suppressed ones are decided in the
 * source and left out), `{ruleId, file, line, column, message}` plus what a baseline and a CI
 * gate need. Saved as is, it is a baseline for later scans.
 */
export function formatJson(report: ScanReport): string {
  const out: JsonFinding[] = report.findings
    .filter((f) => f.suppression === null)
    .map((f) => ({
      ruleId: f.ruleId,
      file: f.file,
      line: f.line,
      column: f.column,
      endLine: f.endLine,
      endColumn: f.endColumn,
      severity: f.severity,
      message: f.message,
      fingerprint: f.fingerprint,
      baseline: f.baseline,
    }));
  return JSON.stringify(out, null, 2);
}
