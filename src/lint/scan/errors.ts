import { GovMapError } from '../../map/errors.ts';

/**
 * `govmap scan` could not run as asked: a path that does not exist or lies outside the root,
 * nothing to scan, an unreadable baseline or config, ESLint missing. The CLI exits 2 on it (1 is
 * reserved for findings). Codes:
 * - GOVMAP_SCAN_PATH_EMPTY: a path argument is empty (an unset shell variable)
 * - GOVMAP_SCAN_PATH_NOT_FOUND: a path argument does not exist
 * - GOVMAP_SCAN_PATH_OUTSIDE_ROOT: a path argument lies outside the scan root (the current directory)
 * - GOVMAP_SCAN_PATH_NOT_TYPESCRIPT: a file named as a path is not a TypeScript source (*.ts, *.tsx, *.mts, *.cts; not *.d.ts)
 * - GOVMAP_SCAN_PATH_UNREADABLE: a directory under the paths cannot be read (and is not ignored)
 * - GOVMAP_SCAN_NO_FILES: the paths hold no TypeScript file to scan
 * - GOVMAP_SCAN_BASELINE_INVALID: the baseline file is unreadable or not a govmap JSON/SARIF report
 * - GOVMAP_SCAN_CONFIG_INVALID: the scan config file or a rule option in it is invalid
 * - GOVMAP_SCAN_TSCONFIG_NOT_FOUND: --project names no readable tsconfig
 * - GOVMAP_SCAN_ESLINT_MISSING: eslint (>= 9) or typescript is not installed
 */
export class ScanUsageError extends GovMapError {
  constructor(code: string, message: string, details: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(code, message, details, options);
  }
}
