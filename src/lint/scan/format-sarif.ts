import { pathToFileURL } from 'node:url';
import { GOVMAP_VERSION } from '../package-info.ts';
import { staleNote } from './baseline.ts';
import { FINGERPRINT_KEY } from './fingerprint.ts';
import type { Finding, RuleInfo, ScanReport } from './scan.ts';

const SARIF_SCHEMA = 'https://json.schemastore.org/sarif-2.1.0.json';
/** Where artifact URIs are relative to; consumers (GitHub code scanning) map it to the checkout. */
const SRCROOT = '%SRCROOT%';

/**
 * SARIF 2.1.0 for code scanning (GitHub, Azure DevOps...). What ESLint's SARIF formatter does
 * not give, and this does:
 * - every govmap rule is declared in `tool.driver.rules`, fired or not, so a consumer can tell
 *   "rule ran, found nothing" from "rule did not run";
 * - `partialFingerprints["govmap/v1"]` on every result, stable across line moves, so an alert
 *   keeps its identity from commit to commit;
 * - findings silenced in the source carry `suppressions: [{kind: "inSource", justification}]`;
 * - with a baseline, `baselineState` is `unchanged` (accepted) or `new`;
 * - files that could not be analysed are `toolExecutionNotifications`, and the invocation is
 *   then not `executionSuccessful`; files an ignore pattern skipped are counted in one `note`
 *   (skipped on purpose, so the run still succeeded); so are stale baseline entries, in another.
 */
export function formatSarif(report: ScanReport): string {
  const ruleIndex = new Map(report.rules.map((r, i) => [r.id, i]));
  const log = {
    $schema: SARIF_SCHEMA,
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'govmap',
            version: GOVMAP_VERSION,
            semanticVersion: GOVMAP_VERSION,
            rules: report.rules.map(describeRule),
          },
        },
        originalUriBaseIds: { [SRCROOT]: { uri: directoryUri(report.root) } },
        invocations: [
          {
            executionSuccessful: report.unanalysed.length === 0,
            startTimeUtc: report.startedAt.toISOString(),
            endTimeUtc: report.finishedAt.toISOString(),
            toolExecutionNotifications: [
              ...report.unanalysed.map((u) => ({
                level: 'error',
                message: { text: `not analysed: ${u.message}` },
                locations: [
                  {
                    physicalLocation: {
                      artifactLocation: { uri: encodePath(u.file), uriBaseId: SRCROOT },
                      ...(u.line === null ? {} : { region: { startLine: u.line, startColumn: u.column } }),
                    },
                  },
                ],
              })),
              ...(report.ignored.length === 0 ? [] : [{ level: 'note', message: { text: ignoredNote(report.ignored) } }]),
              ...(report.staleBaseline.length === 0 ? [] : [{ level: 'note', message: { text: staleNote(report.staleBaseline) } }]),
            ],
          },
        ],
        columnKind: 'utf16CodeUnits',
        results: report.findings.map((f) => toResult(f, ruleIndex, report.baselineUsed)),
      },
    ],
  };
  return JSON.stringify(log, null, 2);
}

/** How many ignored files the note names; the count covers them all. */
const IGNORED_NAMED = 20;

function ignoredNote(ignored: readonly string[]): string {
  const named = ignored.slice(0, IGNORED_NAMED).join(', ');
  return `${ignored.length} file(s) skipped by an ignore pattern, not analysed: ${named}${ignored.length > IGNORED_NAMED ? `, and ${ignored.length - IGNORED_NAMED} more` : ''}`;
}

function describeRule(rule: RuleInfo): object {
  const name = rule.id.slice(rule.id.indexOf('/') + 1);
  return {
    id: rule.id,
    name: name.replace(/(^|-)([a-z])/g, (_m, _dash: string, c: string) => c.toUpperCase()),
    shortDescription: { text: rule.description },
    fullDescription: { text: rule.description },
    help: { text: `${rule.description}. See ${rule.docs} in the govmap package.`, markdown: `${rule.description}. See \`${rule.docs}\` in the govmap package.` },
    defaultConfiguration: { level: rule.level === 'off' ? 'none' : rule.level, enabled: rule.level !== 'off' },
    properties: { tags: ['govmap', 'correctness'], precision: 'high' },
  };
}

function toResult(f: Finding, ruleIndex: ReadonlyMap<string, number>, baselineUsed: boolean): object {
  const result: Record<string, unknown> = {
    ruleId: f.ruleId,
    level: f.severity,
    message: { text: f.message },
    locations: [
      {
        physicalLocation: {
          artifactLocation: { uri: encodePath(f.file), uriBaseId: SRCROOT },
          region: { startLine: f.line, startColumn: f.column, endLine: f.endLine, endColumn: f.endColumn },
        },
      },
    ],
    partialFingerprints: { [FINGERPRINT_KEY]: f.fingerprint },
  };
  const index = ruleIndex.get(f.ruleId);
  if (index !== undefined) result.ruleIndex = index;
  if (f.suppression !== null) result.suppressions = [{ kind: 'inSource', justification: f.suppression }];
  else if (baselineUsed) result.baselineState = f.baseline ? 'unchanged' : 'new';
  return result;
}

/** A root-relative path as a relative URI reference (each segment percent-encoded). */
function encodePath(file: string): string {
  return file.split('/').map(encodeURIComponent).join('/');
}

function directoryUri(directory: string): string {
  const uri = pathToFileURL(directory).href;
  return uri.endsWith('/') ? uri : `${uri}/`;
}
