import { Counter, Gauge, Registry } from 'prom-client';
import type { Router } from './router.ts';

export interface RoutingMetricsOptions {
  /** Default: a new Registry. Pass the service's registry to share /metrics. */
  readonly registry?: Registry;
  /** Default `govmap_`. */
  readonly prefix?: string;
}

/**
 * Prometheus metrics of a router, read at scrape time from its plain counters. Labels are route
 * ids (bounded by the table) and rule names, never org ids (unbounded).
 *
 * Alerts worth having:
 *   increase(govmap_route_unmatched_total{reason="no_rule"}[5m]) > 0   tagged traffic no rule covers
 *   govmap_route_degraded_total rate > 0                                a route is serving degraded answers
 *   govmap_async_queue_depth > 0.8 * capacity                           an async lane is filling up
 */
export class RoutingMetrics {
  readonly registry: Registry;
  readonly #routers: Router[] = [];

  constructor(options: RoutingMetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    const p = options.prefix ?? 'govmap_';
    const registers = [this.registry];
    const routers = this.#routers;
    const runtimes = function* () {
      for (const router of routers) yield* router.runtimes();
    };
    new Counter({
      name: `${p}route_requests_total`,
      help: 'Routed calls by outcome: live (downstream answered), failed (downstream error, breaker closed), mock, cache, queued (async 202), unavailable (degraded with no answer: 503).',
      labelNames: ['route', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const { route, counters: c } of runtimes()) {
          for (const [outcome, value] of [
            ['live', c.live],
            ['failed', c.failed],
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
      help: 'State of each route\'s breaker: 1 for the state it is in (CLOSED, OPEN, HALF_OPEN; NONE without a breaker).',
      labelNames: ['route', 'state'],
      registers,
      collect() {
        this.reset();
        for (const router of routers) for (const status of router.status()) this.set({ route: status.id, state: status.breaker }, 1);
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
  }

  track(router: Router): this {
    this.#routers.push(router);
    return this;
  }
}
