import { Registry } from 'prom-client';
import { REGISTRY_RULE, isRegistry, registerStaged, scrapeTimeGauge } from '../metrics/scrape-time.ts';
import { ConfigurationError } from '../map/errors.ts';
import type { SeriesSetter } from '../metrics/scrape-time.ts';
import type { Advisor } from './advisor.ts';
import { RECOMMENDATIONS, THRESHOLD_LABELS } from './signals.ts';
import type { Advice } from './signals.ts';

/**
 * Exports the advisor's verdicts and the history behind them (`govmap_advisor_*`), so that an
 * alert can fire on them and `govmap advise --url` can read what one scrape could not know
 * (breaches held over windows, weekly range counts persisted across restarts).
 *
 * One `advise()` per scrape, shared by the gauges below: they are collected one after the
 * other within the same scrape, so a result younger than 1 s is reused.
 */
export function registerAdvisorMetrics(advisor: Advisor, registry: Registry, prefix = 'govmap_'): void {
  if (!isRegistry(registry)) throw new ConfigurationError('registry', REGISTRY_RULE, registry);
  // Created apart, moved in together: a taken name refuses all of them (metrics/scrape-time.ts).
  const staging = new Registry();
  const registers = [staging];
  const p = `${prefix}advisor_`;
  let cached: { atMs: number; advice: Advice[] } | null = null;
  const current = (): Advice[] => {
    const now = Date.now();
    if (cached === null || now - cached.atMs > 1000) cached = { atMs: now, advice: advisor.advise() };
    return cached.advice;
  };
  const gauge = <L extends string>(name: string, help: string, labelNames: L[], fill: (set: SeriesSetter<L>, advice: Advice[]) => void): void => {
    scrapeTimeGauge(registers, p + name, help, labelNames, (set) => fill(set, current()));
  };

  gauge('recommendation', 'The advisor\'s recommendation per map: 1 on the recommended one (stay, shared-memory-store, redis-store, not-a-map-workload).', ['map', 'recommendation'], (set, advice) => {
    for (const a of advice) for (const r of RECOMMENDATIONS) set({ map: a.map, recommendation: r }, a.recommendation === r ? 1 : 0);
  });
  gauge('signal', 'Migration signals per map: 1 firing, 0 clear; absent while there is not enough data.', ['map', 'signal'], (set, advice) => {
    for (const a of advice) for (const s of a.signals) if (s.status !== 'insufficient-data') set({ map: a.map, signal: s.id }, s.status === 'firing' ? 1 : 0);
  });
  gauge('window_seconds', 'Length of one judged advisor window.', [], (set) => set({}, advisor.windowMs / 1000));
  // So that `govmap advise --url` judges with the thresholds the breaches were counted against.
  gauge('threshold', 'The thresholds the advisor judges with (miss_ratio, miss_ratio_windows, range_growth, min_baseline_ranges, max_keys, min_read_write_ratio).', ['threshold'], (set) => {
    for (const [name, label] of Object.entries(THRESHOLD_LABELS)) set({ threshold: label }, advisor.thresholds[name as keyof typeof THRESHOLD_LABELS]);
  });
  gauge('window_miss_ratio', 'Misses / loads in the latest judged window (absent when it had too few loads).', ['map'], (set, advice) => {
    for (const a of advice) if (a.evidence.missRatio.latest !== null) set({ map: a.map }, a.evidence.missRatio.latest);
  });
  gauge('miss_ratio_breached_windows', 'Consecutive judged windows, ending now, with the miss ratio above the threshold (default 0.35).', ['map'], (set, advice) => {
    for (const a of advice) set({ map: a.map }, a.evidence.missRatio.breachedWindows ?? 0);
  });
  gauge('miss_ratio_observed_windows', 'Consecutive windows, ending now, with enough loads to be judged.', ['map'], (set, advice) => {
    for (const a of advice) set({ map: a.map }, a.evidence.missRatio.observedWindows ?? 0);
  });
  gauge('read_write_ratio', 'Reads per write over the advisor\'s read:write windows (absent when unknown or when there were no writes).', ['map'], (set, advice) => {
    for (const a of advice) if (a.evidence.readWrite.ratio !== null) set({ map: a.map }, a.evidence.readWrite.ratio);
  });
  gauge('window_operations', 'Reads and writes over the advisor\'s read:write windows (absent when too few to judge).', ['map', 'kind'], (set, advice) => {
    for (const a of advice) {
      const { reads, writes } = a.evidence.readWrite;
      if (reads !== null) set({ map: a.map, kind: 'read' }, reads);
      if (writes !== null) set({ map: a.map, kind: 'write' }, writes);
    }
  });
  gauge('range_calls', 'Range calls per ISO week (UTC), persisted across restarts: week = current (in progress), previous, before_previous.', ['map', 'week', 'iso_week'], (set, advice) => {
    for (const a of advice) {
      const { current, previous, beforePrevious } = a.evidence.ranges;
      if (current !== null) set({ map: a.map, week: 'current', iso_week: current.week }, current.count);
      if (previous !== null) set({ map: a.map, week: 'previous', iso_week: previous.week }, previous.count);
      if (beforePrevious !== null) set({ map: a.map, week: 'before_previous', iso_week: beforePrevious.week }, beforePrevious.count);
    }
  });
  gauge('state_problem', '1 when a map\'s weekly counts cannot be persisted right now (state store unavailable, or a stored value it will not overwrite).', ['map'], (set) => {
    for (const { map, problem } of advisor.persistenceProblems()) set({ map }, problem === null ? 0 : 1);
  });
  registerStaged(staging, registry, 'registerAdvisorMetrics', prefix);
}
