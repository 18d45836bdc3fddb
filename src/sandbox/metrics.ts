import { Counter, Gauge, Registry } from 'prom-client';
import { REGISTRY_RULE, isRegistry, registerStaged } from '../metrics/scrape-time.ts';
import { ConfigurationError } from '../map/errors.ts';
import { SnapshotHistogram } from '../metrics/snapshot-histogram.ts';
import type { BucketSeries } from '../metrics/snapshot-histogram.ts';
import { GC_KINDS, GC_PAUSE_BUCKETS_SECONDS } from './gc-monitor.ts';
import type { GcMonitor } from './gc-monitor.ts';
import type { Sandbox } from './sandbox.ts';
import type { SuspectKind } from './report.ts';

const SUSPECT_KINDS: readonly SuspectKind[] = ['IDLE', 'SITE_GROWTH', 'KEY_GROWTH'];

/** A site label is the frame of the `new` call only: a whole stack would make a label of kilobytes. */
function siteLabel(site: { frames: readonly string[] } | null): string {
  return site?.frames[0] ?? '';
}

/**
 * A SITE_GROWTH suspect's names as a label: without the "(+N more names)" count, which changes at
 * every sweep of a growing site and would make every scrape a new series in Prometheus.
 */
function namesLabel(maps: readonly string[]): string {
  return maps.map((name) => (name.startsWith('(+') ? '(more names)' : name)).join(',');
}

/**
 * Exports the sandbox to Prometheus (`govmap_sandbox_*`, and `govmap_gc_*` for its GC monitor).
 * Every value is read at scrape time from the latest sweep: a scrape never walks the registry.
 */
export function registerSandboxMetrics(sandbox: Sandbox, registry: Registry, prefix = 'govmap_'): void {
  if (!isRegistry(registry)) throw new ConfigurationError('registry', REGISTRY_RULE, registry);
  // Created apart, moved in together: a taken name refuses all of them (metrics/scrape-time.ts).
  const staging = new Registry();
  const registers = [staging];
  const p = `${prefix}sandbox_`;
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name: p + name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  };
  gauge('live_maps', 'GovernedMap instances alive and not disposed at the last sweep.', () => sandbox.counts.live);
  const counter = (name: string, help: string, read: () => number): void => {
    new Counter({
      name: p + name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  };
  counter('maps_created_total', 'GovernedMap instances the sandbox has tracked.', () => sandbox.counts.created);
  counter('maps_collected_total', 'Tracked maps found garbage-collected.', () => sandbox.counts.collected);
  counter('maps_disposed_total', 'Tracked maps found disposed.', () => sandbox.counts.disposed);
  counter('sweeps_total', 'Sweeps of the registry.', () => sandbox.counts.sweeps);
  counter('sweep_errors_total', 'Sweeps that could not read every map (a map getter threw; the other maps were swept).', () => sandbox.counts.sweepErrors);
  gauge('unreadable_maps', 'Live maps whose getters threw at the last sweep: counted live, but not judged for IDLE or KEY_GROWTH.', () => sandbox.counts.unreadableMaps);
  counter('sites_skipped_total', 'Map creations whose stack was not captured because the per-second capture budget was spent.', () => sandbox.counts.sitesSkipped);
  new Gauge({
    name: `${p}sweep_seconds`,
    help: 'Duration of the last sweep.',
    registers,
    collect() {
      const seconds = sandbox.lastSweepSeconds;
      if (seconds !== null) this.set(seconds);
    },
  });
  new Gauge<'kind'>({
    name: `${p}suspects`,
    help: 'Leak suspects found by the last sweep, by kind (IDLE groups of idle maps, SITE_GROWTH creation sites, KEY_GROWTH maps).',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      const counts = new Map<SuspectKind, number>(SUSPECT_KINDS.map((k) => [k, 0]));
      for (const s of sandbox.suspects) counts.set(s.kind, counts.get(s.kind)! + 1);
      for (const [kind, n] of counts) this.set({ kind }, n);
    },
  });
  new Gauge<'kind' | 'map' | 'site'>({
    name: `${p}suspect_maps`,
    help: 'Map instances involved in each listed leak suspect (1 for KEY_GROWTH: one map whose keys only grow); site = the frame of the creating call.',
    labelNames: ['kind', 'map', 'site'],
    registers,
    collect() {
      this.reset();
      for (const s of sandbox.suspects.slice(0, sandbox.maxSuspectsListed)) {
        if (s.kind === 'IDLE') this.inc({ kind: s.kind, map: s.map, site: siteLabel(s.site) }, s.instances);
        else if (s.kind === 'SITE_GROWTH') this.inc({ kind: s.kind, map: namesLabel(s.maps), site: siteLabel(s.site) }, s.live);
        else this.inc({ kind: s.kind, map: s.map, site: siteLabel(s.site) }, 1);
      }
    },
  });
  if (sandbox.gc !== null) registerGcMetrics(sandbox.gc, staging, prefix);
  registerStaged(staging, registry, 'registerSandboxMetrics', prefix);
}

/** `govmap_gc_pause_seconds{kind}` (histogram) and the pause trend the advisor reads. */
export function registerGcMetrics(gc: GcMonitor, registry: Registry, prefix = 'govmap_'): void {
  if (!isRegistry(registry)) throw new ConfigurationError('registry', REGISTRY_RULE, registry);
  // Created apart, moved in together: a taken name refuses all of them (metrics/scrape-time.ts).
  const staging = new Registry();
  const registers = [staging];
  const p = `${prefix}gc_`;
  // Labelled by the window so that "unknown" renders as no sample (an unlabelled gauge renders 0).
  const windowLabel = { window_seconds: String(gc.windowMs / 1000) };
  new SnapshotHistogram<'kind'>(
    { name: `${p}pause_seconds`, help: 'Garbage-collection pauses by kind (minor, major, incremental, weakcb), from perf_hooks gc entries.', labelNames: ['kind'], buckets: GC_PAUSE_BUCKETS_SECONDS, registers },
    function* (): Generator<BucketSeries> {
      for (const kind of GC_KINDS) {
        const c = gc.kind(kind);
        yield { labels: { kind }, buckets: c.buckets, sum: c.totalSeconds };
      }
    },
  );
  new Gauge<'window_seconds'>({
    name: `${p}pause_fraction`,
    help: 'Share of wall time spent in GC pauses over the latest whole trend window (default 5 minutes).',
    labelNames: ['window_seconds'],
    registers,
    collect() {
      this.set(windowLabel, gc.trend().recentPauseFraction);
    },
  });
  new Gauge<'window_seconds'>({
    name: `${p}pause_trend_ratio`,
    help: 'GC pause time in the latest whole window over the window before it; absent until two windows are covered or when the earlier one had no pause.',
    labelNames: ['window_seconds'],
    registers,
    collect() {
      this.reset();
      const ratio = gc.trend().ratio;
      if (ratio !== null) this.set(windowLabel, ratio);
    },
  });
  new Gauge<'window_seconds'>({
    name: `${p}pause_rising`,
    help: '1 when GC pause time rose by the rising ratio (default 1.2x) window over window above the minimum pause fraction; absent until two windows are covered.',
    labelNames: ['window_seconds'],
    registers,
    collect() {
      this.reset();
      const rising = gc.trend().rising;
      if (rising !== null) this.set(windowLabel, rising ? 1 : 0);
    },
  });
  registerStaged(staging, registry, 'registerGcMetrics', prefix);
}
