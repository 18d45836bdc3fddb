export { Sandbox, totalOperations } from './sandbox.ts';
export type { SandboxOptions, SandboxedMap } from './sandbox.ts';
export { GcMonitor, GC_KINDS, GC_PAUSE_BUCKETS_SECONDS } from './gc-monitor.ts';
export type { GcMonitorOptions, GcTrend, GcKind, GcKindStats } from './gc-monitor.ts';
export { SiteCapture, formatSite, SITE_NOT_CAPTURED } from './creation-site.ts';
export type { CreationSite, SiteCaptureOptions } from './creation-site.ts';
export { registerSandboxMetrics, registerGcMetrics } from './metrics.ts';
export type { SandboxReport, LeakSuspect, IdleSuspect, SiteGrowthSuspect, KeyGrowthSuspect, SuspectKind, SiteSummary } from './report.ts';
export { readSandboxReport, SandboxReportFileError } from './read-report.ts';
