import { Counter, Gauge, Registry } from 'prom-client';
import { BREAKER_STATES } from '../breaker/snapshot.ts';
import { ConfigurationError } from '../map/errors.ts';
import { ROUTE_ID } from './route-table.ts';
import type { Router } from './router.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { REGISTRY_RULE, isRegistry, registerStaged } from '../metrics/scrape-time.ts';

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

export interface TrackRouterOptions {
  /**
   * The `router` label of the router's series. Required for every router after the first one a
   * RoutingMetrics tracks: every table has a route `default` (and tables often share other ids),
   * whose series would otherwise merge. Without it (one router) the series carry no `router` label.
   */
  readonly name?: string;
}

/** A tracked router and its `router` label ({} without a name: the series as before names existed). */
interface TrackedRouter {
  readonly router: Router;
  readonly name: string | undefined;
  readonly labels: { readonly router?: string };
}

/** Every key of RoutingMetricsOptions (the compiler checks the two stay the same): any other is refused. */
const ROUTING_METRICS_OPTIONS = optionKeys<RoutingMetricsOptions>({
  registry: true, prefix: true,
});
const TRACK_ROUTER_OPTIONS = optionKeys<TrackRouterOptions>({ name: true });

/**
 * Prometheus metrics of a router, read at scrape time from its plain counters. Labels are route
 * ids (bounded by the table) and rule names, never org ids (unbounded).
 *
 * Alerts worth having:
 *   increase(govmap_route_unmatched_total{reason="no_rule"}[5m]) > 0   tagged traffic no rule covers
 *   govmap_route_degraded_total rate > 0                                a route is serving degraded answers
 *   govmap_async_queue_depth > 0.8 * capacity                           an async lane is filling up
 *   govmap_async_held_jobs > 0                                          jobs a reload left without their rule: restore or persist them
 *   govmap_route_table_source_healthy == 0                              the newest route table was refused: routing on an older one
 */
export class RoutingMetrics {
  readonly registry: Registry;
  readonly #routers: TrackedRouter[] = [];
  readonly #sources: { readonly source: MeasuredRouteTableSource; readonly labels: { readonly router?: string } }[] = [];

  constructor(options: RoutingMetricsOptions = {}) {
    refuseUnknownOptions(options, ROUTING_METRICS_OPTIONS, 'RoutingMetrics');
    if (options.registry !== undefined && !isRegistry(options.registry)) throw new ConfigurationError('registry', REGISTRY_RULE, options.registry);
    this.registry = options.registry ?? new Registry();
    const p = options.prefix ?? 'govmap_';
    // Created apart, moved in together: a taken name refuses all of them (metrics/scrape-time.ts).
    const staging = new Registry();
    const registers = [staging];
    const routers = this.#routers;
    const sources = this.#sources;
    const runtimes = function* () {
      for (const { router, labels } of routers) for (const rt of router.runtimes()) yield { ...rt, labels };
    };
    new Counter({
      name: `${p}route_requests_total`,
      help: 'Routed calls by outcome: live (downstream answered), failed (downstream error, breaker closed), aborted (the client left before an answer), mock, cache, queued (async 202), unavailable (degraded with no answer: 503).',
      labelNames: ['router', 'route', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const { route, counters: c, labels } of runtimes()) {
          for (const [outcome, value] of [
            ['live', c.live],
            ['failed', c.failed],
            ['aborted', c.aborted],
            ['mock', c.mock],
            ['cache', c.cache],
            ['queued', c.queued],
            ['unavailable', c.unavailable],
          ] as const) {
            this.inc({ ...labels, route: route.id, outcome }, value);
          }
        }
      },
    });
    new Counter({
      name: `${p}route_degraded_total`,
      help: 'Calls degraded, by why: breaker_open, forced_by_switch, bulkhead_full.',
      labelNames: ['router', 'route', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const { route, counters: c, labels } of runtimes()) {
          this.inc({ ...labels, route: route.id, reason: 'breaker_open' }, c.breakerOpen);
          this.inc({ ...labels, route: route.id, reason: 'forced_by_switch' }, c.forcedBySwitch);
          this.inc({ ...labels, route: route.id, reason: 'bulkhead_full' }, c.bulkheadFull);
        }
      },
    });
    new Counter({
      name: `${p}route_unmatched_total`,
      help: 'Requests sent to the default route: no_rule (tagged, no rule matched: alert) or untagged (no X-Biz-Tag).',
      labelNames: ['router', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const { router, labels } of routers) {
          this.inc({ ...labels, reason: 'no_rule' }, router.decisions.noRule);
          this.inc({ ...labels, reason: 'untagged' }, router.decisions.untagged);
        }
      },
    });
    new Counter({
      name: `${p}biztag_rejected_total`,
      help: 'Requests refused with 400 for a malformed X-Biz-Tag, by the rule broken.',
      labelNames: ['router', 'rule'],
      registers,
      collect() {
        this.reset();
        for (const { router, labels } of routers) for (const [rule, count] of router.tagRejections) this.inc({ ...labels, rule }, count);
      },
    });
    const gauge = (name: string, help: string, read: (rt: ReturnType<typeof runtimes> extends Generator<infer R> ? R : never) => number | null): void => {
      new Gauge({
        name: p + name,
        help,
        labelNames: ['router', 'route'],
        registers,
        collect() {
          this.reset();
          for (const rt of runtimes()) {
            const value = read(rt);
            if (value !== null) this.set({ ...rt.labels, route: rt.route.id }, value);
          }
        },
      });
    };
    gauge('bulkhead_active', 'Calls running in the route\'s bulkhead.', (rt) => rt.bulkhead.active);
    gauge('bulkhead_queued', 'Calls waiting for a slot of the route\'s bulkhead.', (rt) => rt.bulkhead.queued);
    gauge('async_queue_depth', 'Jobs held by the route\'s async lane (queued + in flight).', (rt) => rt.lane?.depth ?? null);
    new Gauge({
      name: `${p}async_held_jobs`,
      help: 'Queued jobs held by route id: the id left the table or now names another rule (orgId, txnType) that does not take them. Retried every 500 ms; returned by close() unless a reload gives the rule back.',
      labelNames: ['router', 'route'],
      registers,
      collect() {
        this.reset();
        for (const { router, labels } of routers) {
          // 0 on every async route, so an alert on the series sees it come and go.
          const held = new Map<string, number>();
          for (const rt of router.runtimes()) if (rt.lane !== null) held.set(rt.route.id, 0);
          for (const [route, jobs] of router.heldJobs()) held.set(route, (held.get(route) ?? 0) + jobs);
          for (const [route, jobs] of held) this.set({ ...labels, route }, jobs);
        }
      },
    });
    gauge('route_cache_entries', 'Responses held for the route\'s cache degradation.', (rt) => rt.cache?.map.size ?? null);
    new Gauge({
      name: `${p}route_breaker_state`,
      help: 'State of each route\'s breaker: 1 on the series of the state it is in, 0 on the other states (CLOSED, OPEN, HALF_OPEN; NONE alone without a breaker).',
      labelNames: ['router', 'route', 'state'],
      registers,
      collect() {
        this.reset();
        // Every state, 0 on the others (as govmap_breaker_state): with the current state alone,
        // `{state="OPEN"} * 2 + {state="HALF_OPEN"}` (the board's timeline) never has both sides.
        for (const { router, labels } of routers) {
          for (const status of router.status()) {
            const states = status.breaker === 'NONE' ? ['NONE'] : [...new Set([...BREAKER_STATES, status.breaker])];
            for (const state of states) this.set({ ...labels, route: status.id, state }, state === status.breaker ? 1 : 0);
          }
        }
      },
    });
    new Gauge({
      name: `${p}route_table_version`,
      help: 'Version of the route table in force.',
      labelNames: ['router'],
      registers,
      collect() {
        this.reset();
        for (const { router, labels } of routers) this.set(labels, router.table.version);
      },
    });
    new Counter({
      name: `${p}route_table_source_errors_total`,
      help: 'Route table contents a source rejected (unreadable, empty, unparsable, invalid, or a stale store value), each distinct failure once; the router keeps its last good table.',
      labelNames: ['router', 'source'],
      registers,
      collect() {
        this.reset();
        for (const { source, labels } of sources) this.inc({ ...labels, source: source.kind }, source.status().errors);
      },
    });
    new Gauge({
      name: `${p}route_table_source_healthy`,
      help: '1 when the source\'s newest table is the one routed on (and, for a store, it is connected); 0 when the router routes on an older table.',
      labelNames: ['router', 'source'],
      registers,
      collect() {
        this.reset();
        // Two sources of one kind (and router) share a label: the gauge is 0 if either is unhealthy.
        const healthy = new Map<string, { labels: { router?: string; source: string }; value: number }>();
        for (const { source, labels } of sources) {
          const status = source.status();
          const value = status.healthy === false || status.connected === false ? 0 : 1;
          const key = `${labels.router ?? ''}\u0000${source.kind}`;
          const seen = healthy.get(key);
          if (seen === undefined) healthy.set(key, { labels: { ...labels, source: source.kind }, value });
          else seen.value = Math.min(seen.value, value);
        }
        for (const { labels, value } of healthy.values()) this.set(labels, value);
      },
    });
    registerStaged(staging, this.registry, 'RoutingMetrics', p);
  }

  /**
   * Starts exporting `router` (once, however often tracked), and the sources feeding it its table
   * when given. A second router needs `options.name` (see TrackRouterOptions).
   * @throws ConfigurationError for a missing, malformed or taken name, or a tracked router renamed
   */
  track(router: Router, sources: readonly MeasuredRouteTableSource[] = [], options: TrackRouterOptions = {}): this {
    refuseUnknownOptions(options, TRACK_ROUTER_OPTIONS, 'RoutingMetrics.track');
    const name = options.name;
    const tracked = this.#routers.find((t) => t.router === router);
    if (tracked !== undefined) {
      // Tracked twice (again, to add its source), a router's counters would be summed twice.
      if (name !== undefined && name !== tracked.name) {
        throw new ConfigurationError('name', `the router is already tracked ${tracked.name === undefined ? 'without a name' : `as "${tracked.name}"`}; its series cannot change label`, name);
      }
    } else {
      if (name !== undefined && (typeof name !== 'string' || !ROUTE_ID.test(name))) {
        throw new ConfigurationError('name', 'a router name is a label value [A-Za-z][A-Za-z0-9_.-]{0,47}', name);
      }
      const taken = this.#routers.find((t) => t.name === name);
      if (taken !== undefined) {
        // Both would write the series of route id "default" (and of any id their tables share):
        // counters summed, gauges overwritten, and no way to tell which service is failing.
        throw new ConfigurationError(
          'name',
          name === undefined
            ? 'a second router tracked by one RoutingMetrics needs a name (track(router, sources, { name })): every route table has route id "default", whose series would merge with the first router\'s'
            : `another tracked router is named "${name}": every route table has route id "default", whose series would merge`,
          name,
        );
      }
      this.#routers.push({ router, name, labels: name === undefined ? {} : { router: name } });
    }
    // A named router's sources carry its name: two services' file sources are told apart.
    const labels = this.#routers.find((t) => t.router === router)!.labels;
    for (const source of sources) this.#addSource(source, labels);
    return this;
  }

  /** Starts exporting a route table source (`govmap_route_table_source_errors_total`, `..._healthy`), without a `router` label. */
  trackSource(source: MeasuredRouteTableSource): this {
    this.#addSource(source, {});
    return this;
  }

  #addSource(source: MeasuredRouteTableSource, labels: { readonly router?: string }): void {
    if (!this.#sources.some((s) => s.source === source)) this.#sources.push({ source, labels });
  }
}
