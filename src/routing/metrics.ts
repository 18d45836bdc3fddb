import { Counter, Gauge, Registry } from 'prom-client';
import { BREAKER_STATES } from '../breaker/snapshot.ts';
import type { Router } from './router.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { registerStaged } from '../metrics/scrape-time.ts';

/** What metrics read of a route table source: FileRouteTableSource or StateRouteTableSource. */
export interface MeasuredRouteTableSource {
  /** `file`, or the state store's kind (`memory`, `file`, `etcd`): the `source` label. */
  readonly kind: string;
  status(): { readonly errors: number; readonly healthy: boolean; readonly connected?: boolean };
}

export interface RoutingMetricsOptions {
  /** Default: a new Registry. Pass the service's registry to share /metrics. */
  readonly registry?: Registry;
  /** Default `govmap_`. */
  readonly prefix?: string;
}

/** Every key of RoutingMetricsOptions (the compiler checks the two stay the same): any other is refused. */
const ROUTING_METRICS_OPTIONS = optionKeys<RoutingMetricsOptions>({
  registry: true, prefix: true,
});

/**
 * Prometheus metrics of a router, read at scrape time from its plain counters. Labels are route
 * ids (bounded by the table) and rule names, never org ids (unbounded).
 *
 * Alerts worth having:
 *   increase(govmap_route_unmatched_total{reason="no_rule"}[5m]) > 0   tagged traffic no rule covers
 *   govmap_route_degraded_total rate > 0                                a route is serving degraded answers
 *   govmap_async_queue_depth > 0.8 * capacity                           an async lane is filling up
 *   govmap_route_table_source_healthy == 0                              the newest route table was refused: routing on an older one
 */
export class RoutingMetrics {
  readonly registry: Registry;
  readonly #routers: Router[] = [];
  readonly #sources: MeasuredRouteTableSource[] = [];

  constructor(options: RoutingMetricsOptions = {}) {
    refuseUnknownOptions(options, ROUTING_METRICS_OPTIONS, 'RoutingMetrics');
    this.registry = options.registry ?? new Registry();
    const p = options.prefix ?? 'govmap_';
    // Created apart, moved in together: a taken name refuses all of them (metrics/scrape-time.ts).
    const staging = new Registry();
    const registers = [staging];
    const routers = this.#routers;
    const sources = this.#sources;
    const runtimes = function* () {
      for (const router of routers) yield* router.runtimes();
    };
    new Counter({
      name: `${p}route_requests_total`,
      help: 'Routed calls by outcome: live (downstream answered), failed (downstream error, breaker closed), aborted (the client left before an answer), mock, cache, queued (async 202), unavailable (degraded with no answer: 503).',
      labelNames: ['route', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const { route, counters: c } of runtimes()) {
          for (const [outcome, value] of [
            ['live', c.live],
            ['failed', c.failed],
            ['aborted', c.aborted],
            ['mock', c.mock],
            ['cache', c.cache],
            ['queued', c.queued],
            ['unavailable', c.unavailable],
          ] as const) {
            this.inc({ route: route.id, outcome }, value);
          }
        }
      },
    });
    new Counter({
      name: `${p}route_degraded_total`,
      help: 'Calls degraded, by why: breaker_open, forced_by_switch, bulkhead_full.',
      labelNames: ['route', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const { route, counters: c } of runtimes()) {
          this.inc({ route: route.id, reason: 'breaker_open' }, c.breakerOpen);
          this.inc({ route: route.id, reason: 'forced_by_switch' }, c.forcedBySwitch);
          this.inc({ route: route.id, reason: 'bulkhead_full' }, c.bulkheadFull);
        }
      },
    });
    new Counter({
      name: `${p}route_unmatched_total`,
      help: 'Requests sent to the default route: no_rule (tagged, no rule matched: alert) or untagged (no X-Biz-Tag).',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        let noRule = 0;
        let untagged = 0;
        for (const router of routers) {
          noRule += router.decisions.noRule;
          untagged += router.decisions.untagged;
        }
        this.inc({ reason: 'no_rule' }, noRule);
        this.inc({ reason: 'untagged' }, untagged);
      },
    });
    new Counter({
      name: `${p}biztag_rejected_total`,
      help: 'Requests refused with 400 for a malformed X-Biz-Tag, by the rule broken.',
      labelNames: ['rule'],
      registers,
      collect() {
        this.reset();
        for (const router of routers) for (const [rule, count] of router.tagRejections) this.inc({ rule }, count);
      },
    });
    const gauge = (name: string, help: string, read: (rt: ReturnType<typeof runtimes> extends Generator<infer R> ? R : never) => number | null): void => {
      new Gauge({
        name: p + name,
        help,
        labelNames: ['route'],
        registers,
        collect() {
          this.reset();
          for (const rt of runtimes()) {
            const value = read(rt);
            if (value !== null) this.set({ route: rt.route.id }, value);
          }
        },
      });
    };
    gauge('bulkhead_active', 'Calls running in the route\'s bulkhead.', (rt) => rt.bulkhead.active);
    gauge('bulkhead_queued', 'Calls waiting for a slot of the route\'s bulkhead.', (rt) => rt.bulkhead.queued);
    gauge('async_queue_depth', 'Jobs held by the route\'s async lane (queued + in flight).', (rt) => rt.lane?.depth ?? null);
    gauge('route_cache_entries', 'Responses held for the route\'s cache degradation.', (rt) => rt.cache?.map.size ?? null);
    new Gauge({
      name: `${p}route_breaker_state`,
      help: 'State of each route\'s breaker: 1 on the series of the state it is in, 0 on the other states (CLOSED, OPEN, HALF_OPEN; NONE alone without a breaker).',
      labelNames: ['route', 'state'],
      registers,
      collect() {
        this.reset();
        // Every state, 0 on the others (as govmap_breaker_state): with the current state alone,
        // `{state="OPEN"} * 2 + {state="HALF_OPEN"}` (the board's timeline) never has both sides.
        for (const router of routers) {
          for (const status of router.status()) {
            const states = status.breaker === 'NONE' ? ['NONE'] : [...new Set([...BREAKER_STATES, status.breaker])];
            for (const state of states) this.set({ route: status.id, state }, state === status.breaker ? 1 : 0);
          }
        }
      },
    });
    new Gauge({
      name: `${p}route_table_version`,
      help: 'Version of the route table in force.',
      registers,
      collect() {
        this.reset();
        for (const router of routers) this.set(router.table.version);
      },
    });
    new Counter({
      name: `${p}route_table_source_errors_total`,
      help: 'Route table contents a source rejected (unreadable, empty, unparsable, invalid, or a stale store value), each distinct failure once; the router keeps its last good table.',
      labelNames: ['source'],
      registers,
      collect() {
        this.reset();
        for (const source of sources) this.inc({ source: source.kind }, source.status().errors);
      },
    });
    new Gauge({
      name: `${p}route_table_source_healthy`,
      help: '1 when the source\'s newest table is the one routed on (and, for a store, it is connected); 0 when the router routes on an older table.',
      labelNames: ['source'],
      registers,
      collect() {
        this.reset();
        // Two sources of one kind share a label: the gauge is 0 if either is unhealthy.
        const healthy = new Map<string, number>();
        for (const source of sources) {
          const status = source.status();
          const value = status.healthy === false || status.connected === false ? 0 : 1;
          healthy.set(source.kind, Math.min(healthy.get(source.kind) ?? 1, value));
        }
        for (const [source, value] of healthy) this.set({ source }, value);
      },
    });
    registerStaged(staging, this.registry, 'RoutingMetrics', p);
  }

  /** Starts exporting `router` (once, however often tracked), and the sources feeding it its table when given. */
  track(router: Router, sources: readonly MeasuredRouteTableSource[] = []): this {
    // Tracked twice (again, to add its source), a router's counters would be summed twice.
    if (!this.#routers.includes(router)) this.#routers.push(router);
    for (const source of sources) this.trackSource(source);
    return this;
  }

  /** Starts exporting a route table source (`govmap_route_table_source_errors_total`, `..._healthy`). */
  trackSource(source: MeasuredRouteTableSource): this {
    if (!this.#sources.includes(source)) this.#sources.push(source);
    return this;
  }
}
