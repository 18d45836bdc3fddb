import { Counter, Gauge, Registry } from 'prom-client';
import type { BreakerGroup } from './breaker-group.ts';
import type { CircuitBreaker } from './circuit-breaker.ts';
import { BREAKER_STATES } from './snapshot.ts';

export interface BreakerMetricsOptions {
  /** Registry to register into. Default: a new Registry. Pass MapMetrics' registry to serve both on one /metrics. */
  readonly registry?: Registry;
  /** Metric name prefix. Default `govmap_breaker_`. */
  readonly prefix?: string;
}

/** Anything that reports sync health: the cluster sync. */
export interface SyncHealth {
  readonly instance: string;
  readonly storeKind: string;
  readonly connected: boolean;
  readonly counters: { readonly writes: number; readonly writeFailures: number; readonly conflicts: number; readonly invalidSnapshots: ReadonlyMap<string, number>; readonly leaseLosses: number; readonly resyncs: number; readonly adoptions: number };
}

type Source = { readonly kind: 'group'; readonly group: BreakerGroup } | { readonly kind: 'breaker'; readonly breaker: CircuitBreaker };

/**
 * Prometheus metrics of breakers, read at scrape time from the plain counters each breaker
 * keeps: no prom-client call on the call path (see metrics/map-metrics.ts for why).
 * Series are labelled `breaker` (the name) and `key` (empty for a standalone breaker); a
 * group's series are bounded by its maxBreakers. Counters of an evicted breaker leave the
 * scrape with it (Prometheus treats the series' return as a counter reset).
 */
export class BreakerMetrics {
  readonly registry: Registry;
  readonly prefix: string;
  readonly #sources = new Map<string, Source>();
  readonly #syncs = new Set<SyncHealth>();

  constructor(options: BreakerMetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    this.prefix = options.prefix ?? 'govmap_breaker_';
    const registers = [this.registry];
    const p = this.prefix;
    const each = (fn: (b: CircuitBreaker) => void): void => {
      for (const source of this.#sources.values()) {
        if (source.kind === 'breaker') fn(source.breaker);
        else for (const b of source.group.breakers()) fn(b);
      }
    };
    const labels = (b: CircuitBreaker): { breaker: string; key: string } => ({ breaker: b.name, key: b.key ?? '' });

    new Gauge({
      name: `${p}state`,
      help: 'Breaker state: 1 on the series of the current state (CLOSED, OPEN, HALF_OPEN), 0 on the others.',
      labelNames: ['breaker', 'key', 'state'],
      registers,
      collect() {
        this.reset();
        each((b) => {
          const current = b.state;
          for (const state of BREAKER_STATES) this.set({ ...labels(b), state }, state === current ? 1 : 0);
        });
      },
    });
    new Counter({
      name: `${p}calls_total`,
      help: 'Calls by outcome: success (answered, including errors isFailure did not count), failure, timeout, rejected (not made: OPEN, or HALF_OPEN with every probe taken).',
      labelNames: ['breaker', 'key', 'outcome'],
      registers,
      collect() {
        this.reset();
        each((b) => {
          const c = b.counters;
          const l = labels(b);
          this.inc({ ...l, outcome: 'success' }, c.successes);
          this.inc({ ...l, outcome: 'failure' }, c.failures);
          this.inc({ ...l, outcome: 'timeout' }, c.timeouts);
          this.inc({ ...l, outcome: 'rejected' }, c.rejected);
        });
      },
    });
    new Counter({
      name: `${p}transitions_total`,
      help: 'State transitions by the state entered.',
      labelNames: ['breaker', 'key', 'to'],
      registers,
      collect() {
        this.reset();
        each((b) => {
          const c = b.counters;
          const l = labels(b);
          this.inc({ ...l, to: 'OPEN' }, c.toOpen);
          this.inc({ ...l, to: 'HALF_OPEN' }, c.toHalfOpen);
          this.inc({ ...l, to: 'CLOSED' }, c.toClosed);
        });
      },
    });
    const groups = (): BreakerGroup[] => [...this.#sources.values()].flatMap((s) => (s.kind === 'group' ? [s.group] : []));
    new Gauge({
      name: `${p}group_breakers`,
      help: 'Breakers held by a keyed group now (bounded by its maxBreakers).',
      labelNames: ['breaker'],
      registers,
      collect() {
        this.reset();
        for (const g of groups()) this.set({ breaker: g.name }, g.size);
      },
    });
    new Counter({
      name: `${p}group_evictions_total`,
      help: 'Breakers evicted from a keyed group (idle, or to make room); forced = evicted while not CLOSED.',
      labelNames: ['breaker', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const g of groups()) {
          this.inc({ breaker: g.name, kind: 'idle_or_lru' }, g.evictions - g.forcedEvictions);
          this.inc({ breaker: g.name, kind: 'forced' }, g.forcedEvictions);
        }
      },
    });
    const syncs = (): SyncHealth[] => [...this.#syncs];
    new Gauge({
      name: `${p}state_store_connected`,
      help: '1 while the cluster sync reaches its state store (etcd), 0 while it decides on the last snapshots it saw.',
      labelNames: ['instance', 'store'],
      registers,
      collect() {
        this.reset();
        for (const s of syncs()) this.set({ instance: s.instance, store: s.storeKind }, s.connected ? 1 : 0);
      },
    });
    new Counter({
      name: `${p}state_store_events_total`,
      help: 'Cluster sync events: snapshot writes, failed writes (retried), CAS conflicts, lease losses, resyncs, cluster adoptions.',
      labelNames: ['instance', 'event'],
      registers,
      collect() {
        this.reset();
        for (const s of syncs()) {
          const c = s.counters;
          for (const [event, value] of [
            ['write', c.writes],
            ['write_failure', c.writeFailures],
            ['conflict', c.conflicts],
            ['lease_lost', c.leaseLosses],
            ['resync', c.resyncs],
            ['adoption', c.adoptions],
          ] as const) {
            this.inc({ instance: s.instance, event }, value);
          }
        }
      },
    });
    new Counter({
      name: `${p}snapshots_invalid_total`,
      help: 'Snapshots read from the state store and ignored as invalid, by reason (malformed_json, unknown_state, invalid_<field>...).',
      labelNames: ['instance', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const s of syncs()) for (const [reason, value] of s.counters.invalidSnapshots) this.inc({ instance: s.instance, reason }, value);
      },
    });
  }

  /** Exports a keyed group's breakers (present and future). */
  trackGroup(group: BreakerGroup): this {
    this.#sources.set(`group:${group.name}`, { kind: 'group', group });
    return this;
  }

  /** Exports a standalone breaker. */
  trackBreaker(breaker: CircuitBreaker): this {
    this.#sources.set(`breaker:${breaker.id}`, { kind: 'breaker', breaker });
    return this;
  }

  /** Exports a cluster sync's health. */
  trackSync(sync: SyncHealth): this {
    this.#syncs.add(sync);
    return this;
  }

  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
