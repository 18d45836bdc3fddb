/**
 * X-Biz-Tag traffic tagging and routing: the strict tag grammar, its propagation (AsyncLocalStorage,
 * OpenTelemetry baggage), the route table, per-route isolation (breaker + bulkhead) and the
 * degradation strategies (mock, cache, async), with node:http and Fastify middleware.
 * See docs/routing.md.
 */
export { BizTag, parseBizTag, tryParseBizTag, formatBizTag, BIZ_TAG_HEADER, BIZ_TAG_MAX_PAIRS, BIZ_TAG_MAX_BYTES, BIZ_TAG_KEY, BIZ_TAG_VALUE } from './biz-tag.ts';
export { runWithBizContext, currentBizContext, currentBizTag, bizTagToBaggage, bizTagFromBaggage, withBizTagBaggage, outgoingBizHeaders, BIZ_TAG_BAGGAGE_KEY } from './context.ts';
export type { BizContext } from './context.ts';
export { RouteTable, DEFAULT_BULKHEAD, ROUTE_ID } from './route-table.ts';
export type { CompiledRoute, RouteDecision, Degradation, RouteTableDocument } from './route-table.ts';
export { Router, RouteCounters } from './router.ts';
export type { RouterOptions, RouteRequest, RouteOutcome, RouteStatus, RoutedJob, DegradeReason, UnavailableDetail } from './router.ts';
export { noGuard } from './guard.ts';
export type { RouteGuard, RouteGuardFactory } from './guard.ts';
export { breakerGuards, routeBreakerKey } from './breaker-guard.ts';
export { Bulkhead } from './bulkhead.ts';
export type { BulkheadOptions } from './bulkhead.ts';
export { TokenBucket } from './token-bucket.ts';
export type { TokenBucketOptions } from './token-bucket.ts';
export { AsyncLane } from './async-lane.ts';
export type { AsyncJob, AsyncJobState, AsyncJobStatus, AsyncLaneOptions, DrainResult } from './async-lane.ts';
export { ResponseCache } from './response-cache.ts';
export type { CachedResponse } from './response-cache.ts';
export { createBizTagMiddleware, sendRouteOutcome, routeDegradedBody, prepareRequest, runPrepared, bizTagErrorBody } from './http.ts';
export { BizTagCache } from './tag-cache.ts';
export type { CachedTag } from './tag-cache.ts';
export type { BizTagMiddleware, BizTagMiddlewareOptions, PreparedRequest, RouteDegradedBody } from './http.ts';
export { govmapBizTag, sendRouteOutcomeReply } from './fastify.ts';
export type { GovmapFastifyPlugin } from './fastify.ts';
export { FileRouteTableSource, StateRouteTableSource } from './table-sources.ts';
export type { FileRouteTableSourceOptions, StateRouteTableSourceOptions, StateRouteTableSourceStatus } from './table-sources.ts';
export { RoutingMetrics } from './metrics.ts';
export type { RoutingMetricsOptions, MeasuredRouteTableSource } from './metrics.ts';
export { BizTagError, RouteTableError, RouteTableSourceError, RouteTableVersionConflictError, BulkheadFullError, BulkheadAbortedError, AsyncLaneRefusedError } from './errors.ts';
export type { BizTagRule } from './errors.ts';
