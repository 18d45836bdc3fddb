import type { CreationSite } from './creation-site.ts';
import type { GcKind, GcKindStats, GcTrend } from './gc-monitor.ts';

/**
 * What the sandbox reports: plain JSON-ready objects (times as ISO strings, durations in ms),
 * served by `GET /sandbox/report` and printed by `govmap sandbox report`.
 */

/** Live maps nobody has touched for at least the idle threshold, grouped by name and site. */
export interface IdleSuspect {
  readonly kind: 'IDLE';
  readonly map: string;
  /** null when the creation site was not captured (budget spent, or tracked after creation). */
  readonly site: CreationSite | null;
  readonly instances: number;
  /** Entries held by these instances together. */
  readonly keys: number;
  /** Lower bounds: the last access happened at least this long ago (sweep-granular clock). */
  readonly idleForMs: { readonly min: number; readonly max: number };
  readonly oldestCreatedAt: string;
  /** Sandbox ids of the first few instances, for cross-reference with KEY_GROWTH suspects. */
  readonly sampleIds: readonly number[];
}

/** A creation site whose live-instance count rose at several post-GC samples, never fell, and is still rising. */
export interface SiteGrowthSuspect {
  readonly kind: 'SITE_GROWTH';
  readonly site: CreationSite;
  readonly maps: readonly string[];
  /** Live instances with a captured site now, and when the rise began. */
  readonly live: number;
  readonly grewFrom: number;
  readonly risingSamples: number;
  readonly since: string;
}

/** One map instance whose key count rose at several sweeps, never fell, and is still rising. */
export interface KeyGrowthSuspect {
  readonly kind: 'KEY_GROWTH';
  readonly map: string;
  readonly instance: number;
  readonly site: CreationSite | null;
  readonly keys: number;
  readonly grewFrom: number;
  readonly risingSweeps: number;
  readonly since: string;
}

export type LeakSuspect = IdleSuspect | SiteGrowthSuspect | KeyGrowthSuspect;
export type SuspectKind = LeakSuspect['kind'];

export interface SiteSummary {
  readonly site: CreationSite;
  readonly maps: readonly string[];
  readonly live: number;
}

export interface SandboxReport {
  readonly generatedAt: string;
  readonly running: boolean;
  readonly settings: {
    readonly idleThresholdMs: number;
    readonly sweepIntervalMs: number;
    readonly siteCapturesPerSecond: number;
    readonly siteGrowthSamples: number;
    readonly minSiteGrowth: number;
    readonly keyGrowthSweeps: number;
    readonly minKeyGrowth: number;
  };
  readonly sweeps: number;
  readonly lastSweepAt: string | null;
  readonly lastSweepMs: number | null;
  readonly instances: {
    /** Alive and not disposed at the last sweep. */
    readonly live: number;
    readonly created: number;
    readonly collected: number;
    readonly disposed: number;
    readonly sitesCaptured: number;
    readonly sitesSkipped: number;
  };
  readonly suspects: readonly LeakSuspect[];
  /** Suspects beyond `maxSuspectsListed`, counted but not listed. */
  readonly suspectsNotListed: number;
  /** Creation sites with the most live instances, largest first. */
  readonly topSites: readonly SiteSummary[];
  readonly gc: {
    readonly observing: boolean;
    readonly pauses: Readonly<Record<GcKind, GcKindStats>> | null;
    readonly trend: GcTrend | null;
  };
}
