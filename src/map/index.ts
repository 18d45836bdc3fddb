export { GovernedMap } from './governed-map.ts';
export type { GovernedMapOptions, UpdateAsyncOptions, CapacityPolicy } from './governed-map.ts';
export { reject, allOf, toRejection, GENERIC_REJECTION_REASON } from './validator.ts';
export type { Validator, DeleteValidator, Verdict, Rejection } from './validator.ts';
export type { RangeOptions, RangeCallback, RangeResult, RangeBounds } from './range.ts';
export type { MapObserver, OpType, Outcome } from './observer.ts';
export { onMapCreated } from './creation-hooks.ts';
export { MapCounters, RANGE_BUCKETS_SECONDS, bucketQuantile } from './stats.ts';
export type { MapStatsSnapshot } from './stats.ts';
export { SlidingWindowRatio } from './sliding-window.ts';
export {
  GovMapError,
  ValidationError,
  ValidatorFailedError,
  ConfigurationError,
  InvalidArgumentError,
  RangeBoundsError,
  CapacityExceededError,
  AsyncRangeCallbackError,
  UpdateConflictError,
  UpdateAbortedError,
  MapDisposedError,
  StoreRefusedError,
  ObserverFlushError,
  UpdateReentrantError,
} from './errors.ts';
