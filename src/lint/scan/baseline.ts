import { readFile } from 'node:fs/promises';
import { FINGERPRINT_KEY } from './fingerprint.ts';
import { ScanUsageError } from './errors.ts';

/** One accepted finding; rule, file and line as the baseline file recorded them (null when it did not). */
export interface BaselineEntry {
  readonly fingerprint: string;
  readonly ruleId: string | null;
  /** Relative to the scan root, `/`-separated. */
  readonly file: string | null;
  readonly line: number | null;
}

/**
 * The findings a team has accepted for now: a multiset of fingerprints. Made from an earlier
 * `govmap scan --format json` (or `--format sarif`) output, so adopting the scanner is
 * "save today's report, fail only on what is new". A finding matches one baseline entry with
 * its fingerprint; two identical findings need two entries.
 */
export class Baseline {
  readonly #remaining: Map<string, BaselineEntry[]>;
  readonly size: number;

  constructor(entries: Iterable<string | BaselineEntry>) {
    this.#remaining = new Map();
    let size = 0;
    for (const e of entries) {
      const entry = typeof e === 'string' ? { fingerprint: e, ruleId: null, file: null, line: null } : e;
      this.#remaining.set(entry.fingerprint, [...(this.#remaining.get(entry.fingerprint) ?? []), entry]);
      size++;
    }
    this.size = size;
  }

  /** Consumes one entry for this fingerprint; true when there was one. */
  take(fingerprint: string): boolean {
    return this.#remaining.get(fingerprint)?.shift() !== undefined;
  }

  /** The entries no `take` has consumed. */
  unmatched(): BaselineEntry[] {
    return [...this.#remaining.values()].flat();
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

/** How many stale entries a one-line note names; the count covers them all. */
const STALE_NAMED = 20;

/**
 * Stale entries as one line, for SARIF's note and the CLI's stderr: the count, the entries
 * (rule file:line, or the fingerprint when the baseline did not record them), and the refresh.
 */
export function staleNote(stale: readonly BaselineEntry[]): string {
  const named = stale
    .slice(0, STALE_NAMED)
    .map((e) => (e.file === null ? `fingerprint ${e.fingerprint}` : `${e.ruleId ?? 'unknown rule'} ${e.file}${e.line === null ? '' : `:${e.line}`}`))
    .join(', ');
  const more = stale.length > STALE_NAMED ? `, and ${stale.length - STALE_NAMED} more` : '';
  return `${stale.length} baseline ${stale.length === 1 ? 'entry' : 'entries'} no longer found (stale): ${named}${more}; they would accept a new finding at the same spot: regenerate the baseline with \`govmap scan --format json > <baseline>\``;
}

function fingerprintsOf(report: unknown, path: string): BaselineEntry[] {
  const invalid = (rule: string): ScanUsageError =>
    new ScanUsageError('GOVMAP_SCAN_BASELINE_INVALID', `baseline "${path}" ${rule}; make one with \`govmap scan --format json > ${path}\``, { path });
  if (Array.isArray(report)) {
    return report.map((entry: unknown, index) => {
      const { fingerprint, ruleId, file, line } = (entry ?? {}) as { fingerprint?: unknown; ruleId?: unknown; file?: unknown; line?: unknown };
      if (typeof fingerprint !== 'string' || fingerprint.length === 0) throw invalid(`entry ${index} has no "fingerprint" string`);
      return { fingerprint, ruleId: stringOrNull(ruleId), file: stringOrNull(file), line: lineOrNull(line) };
    });
  }
  const runs = (report as { runs?: unknown } | null)?.runs;
  if (!Array.isArray(runs)) throw invalid('is neither a JSON findings array nor a SARIF log with "runs"');
  const out: BaselineEntry[] = [];
  for (const run of runs as Array<{ results?: unknown }>) {
    if (!Array.isArray(run.results)) continue;
    for (const [index, result] of (run.results as SarifResult[]).entries()) {
      // Suppressed results are decided in the source, not by the baseline.
      if (Array.isArray(result.suppressions) && result.suppressions.length > 0) continue;
      const fingerprint = result.partialFingerprints?.[FINGERPRINT_KEY];
      if (typeof fingerprint !== 'string') throw invalid(`SARIF result ${index} has no partialFingerprints["${FINGERPRINT_KEY}"]`);
      const location = result.locations?.[0]?.physicalLocation;
      const uri = stringOrNull(location?.artifactLocation?.uri);
      out.push({ fingerprint, ruleId: stringOrNull(result.ruleId), file: uri === null ? null : decodeUri(uri), line: lineOrNull(location?.region?.startLine) });
    }
  }
  return out;
}

interface SarifResult {
  readonly ruleId?: unknown;
  readonly partialFingerprints?: Record<string, unknown>;
  readonly suppressions?: unknown[];
  readonly locations?: Array<{ physicalLocation?: { artifactLocation?: { uri?: unknown }; region?: { startLine?: unknown } } }>;
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function lineOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : null;
}

/** formatSarif percent-encodes each path segment; a URI it did not write is kept as written. */
function decodeUri(uri: string): string {
  try {
    return uri.split('/').map(decodeURIComponent).join('/');
  } catch {
    return uri;
  }
}
