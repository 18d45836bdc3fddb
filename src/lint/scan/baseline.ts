import { readFile } from 'node:fs/promises';
import { FINGERPRINT_KEY } from './fingerprint.ts';
import { ScanUsageError } from './errors.ts';

/**
 * The findings a team has accepted for now: a multiset of fingerprints. Made from an earlier
 * `govmap scan --format json` (or `--format sarif`) output, so adopting the scanner is
 * "save today's report, fail only on what is new". A finding matches one baseline entry with
 * its fingerprint; two identical findings need two entries.
 */
export class Baseline {
  readonly #remaining: Map<string, number>;
  readonly size: number;

  constructor(fingerprints: Iterable<string>) {
    this.#remaining = new Map();
    let size = 0;
    for (const f of fingerprints) {
      this.#remaining.set(f, (this.#remaining.get(f) ?? 0) + 1);
      size++;
    }
    this.size = size;
  }

  /** Consumes one entry for this fingerprint; true when there was one. */
  take(fingerprint: string): boolean {
    const left = this.#remaining.get(fingerprint) ?? 0;
    if (left === 0) return false;
    this.#remaining.set(fingerprint, left - 1);
    return true;
  }

  static async load(path: string): Promise<Baseline> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (cause) {
      throw new ScanUsageError('GOVMAP_SCAN_BASELINE_INVALID', `baseline "${path}" cannot be read: ${(cause as Error).message}`, { path }, { cause });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new ScanUsageError('GOVMAP_SCAN_BASELINE_INVALID', `baseline "${path}" is not JSON: a baseline is the output of \`govmap scan --format json\` (or sarif)`, { path }, { cause });
    }
    return new Baseline(fingerprintsOf(parsed, path));
  }
}

function fingerprintsOf(report: unknown, path: string): string[] {
  const invalid = (rule: string): ScanUsageError =>
    new ScanUsageError('GOVMAP_SCAN_BASELINE_INVALID', `baseline "${path}" ${rule}; make one with \`govmap scan --format json > ${path}\``, { path });
  if (Array.isArray(report)) {
    return report.map((entry: unknown, index) => {
      const fingerprint = (entry as { fingerprint?: unknown } | null)?.fingerprint;
      if (typeof fingerprint !== 'string' || fingerprint.length === 0) throw invalid(`entry ${index} has no "fingerprint" string`);
      return fingerprint;
    });
  }
  const runs = (report as { runs?: unknown } | null)?.runs;
  if (!Array.isArray(runs)) throw invalid('is neither a JSON findings array nor a SARIF log with "runs"');
  const out: string[] = [];
  for (const run of runs as Array<{ results?: unknown }>) {
    if (!Array.isArray(run.results)) continue;
    for (const [index, result] of (run.results as Array<{ partialFingerprints?: Record<string, unknown>; suppressions?: unknown[] }>).entries()) {
      // Suppressed results are decided in the source, not by the baseline.
      if (Array.isArray(result.suppressions) && result.suppressions.length > 0) continue;
      const fingerprint = result.partialFingerprints?.[FINGERPRINT_KEY];
      if (typeof fingerprint !== 'string') throw invalid(`SARIF result ${index} has no partialFingerprints["${FINGERPRINT_KEY}"]`);
      out.push(fingerprint);
    }
  }
  return out;
}
