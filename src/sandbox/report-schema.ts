import { z } from 'zod';
import type { GcKind } from './gc-monitor.ts';
import type { SandboxReport } from './report.ts';

/**
 * The shape of `GET /sandbox/report` (src/sandbox/report.ts), checked whole before
 * `govmap sandbox report` prints a line of it and before `readSandboxReport` returns a saved one
 * (here, not in src/cli/, so the library does not depend on the CLI): any server can answer on
 * that path, any file can sit at a path, and a
 * report with a field missing would otherwise surface as a TypeError halfway through the
 * printout. Unknown fields are let through (a newer service may add some; `--json` prints the
 * answer as sent).
 */

const count = z.number().int().nonnegative();
/** Durations, thresholds and fractions: finite and not negative. */
const nonNegative = z.number().nonnegative();
const isoTime = z.string();
const site = z.object({ key: z.string(), frames: z.array(z.string()) });

const suspect = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('IDLE'),
    map: z.string(),
    site: site.nullable(),
    instances: count,
    keys: count,
    idleForMs: z.object({ min: nonNegative, max: nonNegative }),
    oldestCreatedAt: isoTime,
    sampleIds: z.array(count),
  }),
  z.object({
    kind: z.literal('SITE_GROWTH'),
    site,
    maps: z.array(z.string()),
    live: count,
    grewFrom: count,
    risingSamples: count,
    since: isoTime,
  }),
  z.object({
    kind: z.literal('KEY_GROWTH'),
    map: z.string(),
    instance: count,
    site: site.nullable(),
    keys: count,
    grewFrom: count,
    risingSweeps: count,
    since: isoTime,
  }),
]);

/** GC_KINDS of src/sandbox/gc-monitor.ts, written out: importing it would load the sandbox into every CLI run. */
const gcKind = z.enum(['minor', 'major', 'incremental', 'weakcb'] as const satisfies readonly GcKind[]);

const gcKindStats = z.object({
  count,
  totalSeconds: nonNegative,
  maxSeconds: nonNegative,
  p50Seconds: nonNegative.nullable(),
  p99Seconds: nonNegative.nullable(),
});

const gcTrend = z.object({
  windowMs: nonNegative,
  recentPauseSeconds: nonNegative,
  previousPauseSeconds: nonNegative,
  recentPauseFraction: nonNegative,
  ratio: nonNegative.nullable(),
  rising: z.boolean().nullable(),
});

export const sandboxReportSchema = z.object({
  generatedAt: isoTime,
  running: z.boolean(),
  settings: z.object({
    idleThresholdMs: nonNegative,
    sweepIntervalMs: nonNegative,
    siteCapturesPerSecond: nonNegative,
    siteGrowthSamples: count,
    minSiteGrowth: count,
    keyGrowthSweeps: count,
    minKeyGrowth: count,
  }),
  sweeps: count,
  lastSweepAt: isoTime.nullable(),
  lastSweepMs: nonNegative.nullable(),
  instances: z.object({ live: count, created: count, collected: count, disposed: count, sitesCaptured: count, sitesSkipped: count }),
  suspects: z.array(suspect),
  suspectsNotListed: count,
  topSites: z.array(z.object({ site, maps: z.array(z.string()), live: count })),
  gc: z.object({
    observing: z.boolean(),
    pauses: z.record(gcKind, gcKindStats).nullable(),
    trend: gcTrend.nullable(),
  }),
});

// Compile-time guard: the schema must describe a SandboxReport; a field added to the report
// type and not here fails the type check instead of the printout.
const _describesTheReport = (r: z.infer<typeof sandboxReportSchema>): SandboxReport => r;
void _describesTheReport;

/** How many fields the refusal names; the first few are enough to see what answered. */
const FIELDS_NAMED = 8;

/**
 * The report, or why `data` is not one: the fields it lacks (`missing generatedAt, settings,
 * instances.live`), then those of the wrong type (`sweeps: expected number`), the first few each.
 */
export function checkSandboxReport(data: unknown): { ok: true; report: SandboxReport } | { ok: false; problem: string } {
  const parsed = sandboxReportSchema.safeParse(data);
  if (parsed.success) return { ok: true, report: data as SandboxReport };
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const issue of parsed.error.issues) {
    const where = issue.path.length === 0 ? '(top level)' : issue.path.join('.');
    if (issue.path.length > 0 && valueAt(data, issue.path) === undefined) missing.push(where);
    else wrong.push(`${where}: ${issue.message.replace(/^Invalid input: /, '')}`);
  }
  const list = (items: string[], separator: string): string => `${items.slice(0, FIELDS_NAMED).join(separator)}${items.length > FIELDS_NAMED ? `${separator}and ${items.length - FIELDS_NAMED} more` : ''}`;
  const parts = [...(missing.length > 0 ? [`missing ${list(missing, ', ')}`] : []), ...(wrong.length > 0 ? [list(wrong, '; ')] : [])];
  return { ok: false, problem: parts.join('; ') };
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let at = data;
  for (const step of path) {
    if (at === null || typeof at !== 'object') return undefined;
    at = (at as Record<PropertyKey, unknown>)[step];
  }
  return at;
}
