/**
 * Gray-release switches: immutable versioned snapshots swapped whole, pinned per request,
 * fed by a watched file or a state store (etcd), mirrored to worker threads, exposed to
 * OpenFeature. See docs/switches.md.
 */
export { SwitchBoard, diff } from './board.ts';
export type { SwitchBoardOptions, SwitchChange, SwitchChangeRequest, SwitchAuditEvent, SwitchAuditHook, PublishedSnapshot } from './board.ts';
export { SwitchSnapshot, SwitchView } from './snapshot.ts';
export type { SnapshotMeta } from './snapshot.ts';
export { parseSwitchDocument, parseSwitchSet, parseSwitchDefinition, definitionToJson, SWITCH_NAME, CONTEXT_KEY, MAX_SWITCHES } from './definition.ts';
export type { SwitchDefinition, SwitchAudience, SwitchRollout, SwitchSetInput, JsonValue } from './definition.ts';
export { decide, rolloutBucket, orgMatches, ROLLOUT_BUCKETS } from './targeting.ts';
export type { SwitchContext, SwitchEvaluation, SwitchReason } from './targeting.ts';
export { FileSwitchSource } from './file-source.ts';
export type { FileSwitchSourceOptions } from './file-source.ts';
export { StateSwitchSource } from './state-source.ts';
export type { StateSwitchSourceOptions, StateSwitchSourceStatus, SwitchWriteRequest } from './state-source.ts';
export { WatchedFile } from './watched-file.ts';
export type { WatchedFileOptions, WatchedFileStatus, WatchedFileErrorFactory } from './watched-file.ts';
export { MAX_TIMER_MS } from './timer-option.ts';
export { publishToWorkers, followPrimary } from './threads.ts';
export type { SwitchPublisher, SwitchFollower, ThreadChannelOptions } from './threads.ts';
export { GovmapSwitchProvider, toSwitchContext } from './openfeature.ts';
export { SwitchMetrics } from './metrics.ts';
export type { SwitchMetricsOptions, MeasuredSwitchSource } from './metrics.ts';
export { SwitchConfigError, SwitchSourceError, SwitchVersionConflictError, SwitchNameError, SwitchReplicaReadOnlyError } from './errors.ts';
export type { SwitchIssue } from './errors.ts';
