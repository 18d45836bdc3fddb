import type { Advice, SignalStatus } from './signals.ts';

const MARK: Record<SignalStatus, string> = { firing: 'FIRING', clear: 'ok', 'insufficient-data': 'no data' };
const LABEL: Record<string, string> = {
  MISS_RATIO_WITH_GC_PRESSURE: 'miss ratio + GC',
  RANGE_GROWTH_WEEK_OVER_WEEK: 'range growth',
  KEY_COUNT: 'keys',
  READ_WRITE_RATIO: 'read:write',
};

/** Human-readable advice: one block per map, the recommendation first, then each signal with its figures. */
export function formatAdvice(advice: readonly Advice[]): string {
  if (advice.length === 0) return 'no govmap maps found (no syncmap_* series)';
  const lines: string[] = [];
  for (const a of advice) {
    lines.push(`${a.map}${a.instance === null ? '' : ` @ ${a.instance}`}: ${a.recommendation}`);
    lines.push(`  ${a.reason}`);
    for (const s of a.signals) lines.push(`  ${MARK[s.status].padEnd(8)} ${(LABEL[s.id] ?? s.id).padEnd(16)} ${s.summary}`);
    for (const note of a.evidence.notes) lines.push(`  note: ${note}`);
    lines.push('');
  }
  return lines.join('\n').trimEnd();
}
