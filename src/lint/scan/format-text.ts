import type { Finding, ScanReport } from './scan.ts';
import { failingFindings } from './scan.ts';

/**
 * The human report, ESLint's "stylish" shape: findings grouped by file, `line:column  level
 * message  rule`, then a summary. Suppressed findings are counted, not listed (their
 * justification is in the source and in SARIF); baseline findings are listed, marked.
 */
export function formatText(report: ScanReport): string {
  const active = report.findings.filter((f) => f.suppression === null);
  const out: string[] = [];
  const byFile = new Map<string, Finding[]>();
  for (const f of active) byFile.set(f.file, [...(byFile.get(f.file) ?? []), f]);
  for (const [file, findings] of byFile) {
    out.push(file);
    const positions = findings.map((f) => `${f.line}:${f.column}`);
    const width = Math.max(...positions.map((p) => p.length));
    findings.forEach((f, i) => {
      const level = f.baseline ? 'baseline' : f.severity;
      out.push(`  ${positions[i]!.padEnd(width)}  ${level.padEnd(8)}  ${f.message}  ${f.ruleId}`);
    });
    out.push('');
  }
  for (const u of report.unanalysed) out.push(`${u.file}${u.line === null ? '' : `:${u.line}:${u.column}`}\n  not analysed: ${u.message}\n`);

  const failing = failingFindings(report).length;
  const warnings = active.filter((f) => f.severity === 'warning' && !f.baseline).length;
  const inBaseline = active.filter((f) => f.baseline).length;
  const suppressed = report.findings.length - active.length;
  const parts = [`${report.filesScanned} file${report.filesScanned === 1 ? '' : 's'} scanned`, `${failing} error${failing === 1 ? '' : 's'}`, `${warnings} warning${warnings === 1 ? '' : 's'}`];
  if (report.baselineUsed) parts.push(`${inBaseline} in baseline`);
  const stale = report.staleBaseline.length;
  if (stale > 0) parts.push(`${stale} stale baseline ${stale === 1 ? 'entry' : 'entries'} (no longer found; regenerate the baseline with --format json)`);
  if (suppressed > 0) {
    const withoutReason = report.findings.filter((f) => f.suppression === '').length;
    parts.push(`${suppressed} suppressed in the source${withoutReason > 0 ? ` (${withoutReason} without a reason)` : ''}`);
  }
  if (report.unanalysed.length > 0) parts.push(`${report.unanalysed.length} file${report.unanalysed.length === 1 ? '' : 's'} NOT analysed`);
  // Skipped on purpose, so the scan still passes; but counted, never passed over in silence.
  if (report.ignored.length > 0) parts.push(`${report.ignored.length} file${report.ignored.length === 1 ? '' : 's'} ignored (not analysed)`);
  out.push(`govmap scan: ${parts.join(', ')}`);
  return out.join('\n');
}
