/**
 * Static analysis of GovernedMap use: the ESLint plugin (also `govmap/eslint-plugin`) and
 * `scan`, the engine behind `govmap scan` (text / JSON / SARIF, baselines).
 */
export { default as plugin, rules, recommendedRules, strictRules } from './plugin.ts';
export type { GovmapRuleName } from './plugin.ts';
export { DEFAULT_FORBIDDEN_CALLS } from './rules/forbidden-calls.ts';
export type { ForbiddenCall, ForbiddenCallsOptions } from './rules/forbidden-calls.ts';
export type { NoRmwAcrossAwaitOptions, WatchedMapType } from './rules/no-rmw-across-await.ts';
export type { NoAsyncRangeCallbackOptions } from './rules/no-async-range-callback.ts';
export type { NoSharedMutationInRangeOptions } from './rules/no-shared-mutation-in-range.ts';
export type { NoPlainSharedCacheOptions } from './rules/no-plain-shared-cache.ts';
export { DEFAULT_SINGLETON_DECORATORS } from './rules/no-plain-shared-cache.ts';
export type { RequireSuppressionReasonOptions } from './rules/require-suppression-reason.ts';
export type { TypeSpecifier } from './type-match.ts';
export { scan, failingFindings } from './scan/scan.ts';
export type { ScanOptions, ScanReport, ScanProgress, Finding, RuleInfo, Preset, Severity, Unanalysed } from './scan/scan.ts';
export { Baseline, staleNote } from './scan/baseline.ts';
export type { BaselineEntry } from './scan/baseline.ts';
export { loadScanConfig } from './scan/config.ts';
export type { ScanConfig } from './scan/config.ts';
export { formatText } from './scan/format-text.ts';
export { formatJson } from './scan/format-json.ts';
export type { JsonFinding } from './scan/format-json.ts';
export { formatSarif } from './scan/format-sarif.ts';
export { FINGERPRINT_KEY } from './scan/fingerprint.ts';
export { ScanUsageError } from './scan/errors.ts';
