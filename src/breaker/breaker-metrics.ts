import { Counter, Gauge, Registry } from 'prom-client';
import type { BreakerGroup } from './breaker-group.ts';
import type { CircuitBreaker } from './circuit-breaker.ts';
import { ConfigurationError } from '../map/errors.ts';
import { BREAKER_STATES } from './snapshot.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { REGISTRY_RULE, isRegistry, registerStaged } from '../metrics/scrape-time.ts';
import { NotABreakerSourceError } from './errors.ts';

export interface BreakerMetricsOptions {
  /** Registry to register into. Default: a new Registry. Pass MapMetrics' registry to serve both on one /metrics. */
  readonly registry?: Registry;
  /** Metric name prefix. Default `govmap_breaker_`. */
  readonly prefix?: string;
  /**
   * Keys of one group with series of their own; the breakers of further keys are summed under
   * `key="(others)"`. Default 100. A group's keys often come from requests (an orgId in a
   * header): at maxBreakers 10,000 that was 100,000 series, and a scrape near a second.
   */
  readonly maxKeySeries?: number;
}

/** Every key of BreakerMetricsOptions (the compiler checks the two stay the same): any other is refused. */
const BREAKER_METRICS_OPTIONS = optionKeys<BreakerMetricsOptions>({
  registry: true, prefix: true, maxKeySeries: true,
});

/** The `key` label of a group's breakers past maxKeySeries: no breaker key can be it (parentheses). */
export const OTHER_KEYS = '(others)';

/** The breaker counters exported as Prometheus counters. */
const COUNTER_FIELDS = ['successes', 'failures', 'timeouts', 'rejected', 'abandoned', 'toOpen', 'toHalfOpen', 'toClosed'] as const;
type CounterField = (typeof COUNTER_FIELDS)[number];

function zeroCounts(): Record<CounterField, number> {
  return { successes: 0, failures: 0, timeouts: 0, rejected: 0, abandoned: 0, toOpen: 0, toHalfOpen: 0, toClosed: 0 };
}

/** Anything that reports sync health: the cluster sync. */
export interface SyncHealth {
  readonly instance: string;
  readonly storeKind: string;
  readonly connected: boolean;
  readonly counters: { readonly writes: number; readonly writeFailures: number; readonly conflicts: number; readonly invalidSnapshots: ReadonlyMap<string, number>; readonly leaseLosses: number; readonly resyncs: number; readonly adoptions: number };
  /** Keys unreadable now, by reason (falls when they are fixed). Optional: a source written before it is still tracked, without that gauge. */
  readonly unreadableSnapshots?: ReadonlyMap<string, number>;
}

type Source = { readonly kind: 'group'; readonly group: BreakerGroup } | { readonly kind: 'breaker'; readonly breaker: CircuitBreaker };

/**
 * Prometheus metrics of breakers, read at scrape time from the plain counters each breaker
 * keeps: no prom-client call on the call path (see metrics/map-metrics.ts for why).
 * Series are labelled `breaker` (the name) and `key` (empty for a standalone breaker); a
 * group's keys past `maxKeySeries` share one `key="(others)"` series (its state gauge counts
 * breakers per state, its counters sum theirs), so the scrape stays bounded whatever keys
 * requests bring. Counters of an evicted breaker leave the
 * scrape with it (Prometheus treats the series' return as a counter reset).
 */
export class BreakerMetrics {
  readonly registry: Registry;
  readonly prefix: string;
  readonly #sources = new Map<string, Source>();
  readonly #syncs = new Set<SyncHealth>();
  /**
   * Per group: the keys that have series of their own (at most maxKeySeries), the breakers
   * summed under "(others)", and the counts of those that left it (evicted).
   */
  readonly #keySeries = new WeakMap<BreakerGroup, { placed: Set<string>; pooled: Set<CircuitBreaker>; retired: Record<CounterField, number> }>();

  constructor(options: BreakerMetricsOptions = {}) {
    refuseUnknownOptions(options, BREAKER_METRICS_OPTIONS, 'BreakerMetrics');
    if (options.registry !== undefined && !isRegistry(options.registry)) throw new ConfigurationError('registry', REGISTRY_RULE, options.registry);
    this.registry = options.registry ?? new Registry();
    this.prefix = options.prefix ?? 'govmap_breaker_';
    // prom-client would refuse it with a bare Error ("Invalid metric name") naming no option.
    if (typeof this.prefix !== 'string' || !/^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/.test(this.prefix)) {
      throw new ConfigurationError('prefix', 'must be empty or match [a-zA-Z_:][a-zA-Z0-9_:]* (the start of a Prometheus metric name)', this.prefix);
    }
    // Created apart, moved in together: a taken name refuses all of them (metrics/scrape-time.ts).
    const staging = new Registry();
    const registers = [staging];
    const p = this.prefix;
    const maxKeySeries = options.maxKeySeries ?? 100;
    if (!Number.isSafeInteger(maxKeySeries) || maxKeySeries < 0) throw new ConfigurationError('maxKeySeries', 'a whole number of keys, 0 or more', maxKeySeries);
    const labels = (b: CircuitBreaker): { breaker: string; key: string } => ({ breaker: b.name, key: b.key ?? '' });
    /**
     * The series to export: one per breaker with a key of its own, and per group one summing the
     * rest. A key keeps its place while its breaker lives (a series does not move to the sum and
     * back, nor out of it); the place of an evicted key goes to the next new breaker.
     */
    type Row = { labels: { breaker: string; key: string }; breakers: CircuitBreaker[]; retired?: Record<CounterField, number> };
    const rows = (): Row[] => {
      const out: Row[] = [];
      for (const source of this.#live()) {
        if (source.kind === 'breaker') {
          out.push({ labels: labels(source.breaker), breakers: [source.breaker] });
          continue;
        }
        const group = source.group;
        const all = [...group.breakers()];
        let series = this.#keySeries.get(group);
        if (series === undefined) this.#keySeries.set(group, (series = { placed: new Set(), pooled: new Set(), retired: zeroCounts() }));
        const { placed, pooled, retired } = series;
        const present = new Set(all.map((b) => b.key ?? ''));
        for (const key of placed) if (!present.has(key)) placed.delete(key);
        // "(others)" is a counter: a breaker leaving the sum (evicted) must not take its counts
        // with it, or the sum falls and Prometheus reads a reset (rate() spikes by the whole sum).
        // Its counts stay in `retired`; and a breaker in the sum stays there while it lives (moved
        // to a freed place of its own, its counts would leave the sum just the same).
        const alive = new Set(all);
        for (const b of pooled) {
          if (alive.has(b)) continue;
          for (const field of COUNTER_FIELDS) retired[field] += b.counters[field];
          pooled.delete(b);
        }
        const others: CircuitBreaker[] = [];
        for (const b of all) {
          const key = b.key ?? '';
          if (!pooled.has(b) && (placed.has(key) || (placed.size < maxKeySeries && placed.add(key)))) {
            out.push({ labels: labels(b), breakers: [b] });
          } else {
            pooled.add(b);
            others.push(b);
          }
        }
        if (others.length > 0 || COUNTER_FIELDS.some((field) => retired[field] > 0)) {
          out.push({ labels: { breaker: group.name, key: OTHER_KEYS }, breakers: others, retired });
        }
      }
      return out;
    };
    const sum = (row: Row, field: CounterField): number => {
      let total = row.retired?.[field] ?? 0;
      for (const b of row.breakers) total += b.counters[field];
      return total;
    };

    new Gauge({
      name: `${p}state`,
      help: `Breaker state: 1 on the series of the current state (CLOSED, OPEN, HALF_OPEN), 0 on the others; for key="${OTHER_KEYS}", how many of the group's other breakers are in each state.`,
      labelNames: ['breaker', 'key', 'state'],
      registers,
      collect() {
        this.reset();
        for (const row of rows()) {
          for (const state of BREAKER_STATES) this.set({ ...row.labels, state }, row.breakers.filter((b) => b.state === state).length);
        }
      },
    });
    new Counter({
      name: `${p}calls_total`,
      help: 'Calls by outcome: success (answered, including errors isFailure did not count), failure, timeout, rejected (not made: OPEN, or HALF_OPEN with every probe taken), abandoned (its caller gave up, e.g. a client hung up: counted neither way).',
      labelNames: ['breaker', 'key', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const row of rows()) {
          this.inc({ ...row.labels, outcome: 'success' }, sum(row, 'successes'));
          this.inc({ ...row.labels, outcome: 'failure' }, sum(row, 'failures'));
          this.inc({ ...row.labels, outcome: 'timeout' }, sum(row, 'timeouts'));
          this.inc({ ...row.labels, outcome: 'rejected' }, sum(row, 'rejected'));
          this.inc({ ...row.labels, outcome: 'abandoned' }, sum(row, 'abandoned'));
        }
      },
    });
    new Counter({
      name: `${p}transitions_total`,
      help: 'State transitions by the state entered.',
      labelNames: ['breaker', 'key', 'to'],
      registers,
      collect() {
        this.reset();
        for (const row of rows()) {
          this.inc({ ...row.labels, to: 'OPEN' }, sum(row, 'toOpen'));
          this.inc({ ...row.labels, to: 'HALF_OPEN' }, sum(row, 'toHalfOpen'));
          this.inc({ ...row.labels, to: 'CLOSED' }, sum(row, 'toClosed'));
        }
      },
    });
    const groups = (): BreakerGroup[] => [...this.#live()].flatMap((s) => (s.kind === 'group' ? [s.group] : []));
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
      labelNames: ['member', 'store'],
      registers,
      collect() {
        this.reset();
        // Two syncs of one member on one kind of store share a label set: set one after the
        // other, a connected one hid a disconnected one. 0 if either is disconnected.
        const connected = new Map<string, { member: string; store: string; value: number }>();
        for (const s of syncs()) {
          const id = JSON.stringify([s.instance, s.storeKind]);
          const value = Math.min(connected.get(id)?.value ?? 1, s.connected ? 1 : 0);
          connected.set(id, { member: s.instance, store: s.storeKind, value });
        }
        for (const { member, store, value } of connected.values()) this.set({ member, store }, value);
      },
    });
    new Counter({
      name: `${p}state_store_events_total`,
      help: 'Cluster sync events: snapshot writes, failed writes (retried), CAS conflicts, lease losses, resyncs, cluster adoptions.',
      labelNames: ['member', 'event'],
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
            this.inc({ member: s.instance, event }, value);
          }
        }
      },
    });
    new Counter({
      name: `${p}snapshots_invalid_total`,
      help: 'Snapshots read from the state store and ignored as invalid, by reason (malformed_json, unknown_state, invalid_<field>...).',
      labelNames: ['member', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const s of syncs()) for (const [reason, value] of s.counters.invalidSnapshots) this.inc({ member: s.instance, reason }, value);
      },
    });
    new Gauge({
      name: `${p}snapshots_unreadable`,
      help: 'Keys in the state store this instance cannot read now, by reason: each leaves its member out of the open quorum until it is fixed, rewritten valid or deleted (snapshots_invalid_total counts the bad writes; this falls when they are gone).',
      labelNames: ['member', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const s of syncs()) {
          // 0 for every reason ever counted: the series stays after the fix, and a graph shows it fall.
          for (const reason of s.counters.invalidSnapshots.keys()) this.inc({ member: s.instance, reason }, 0);
          // Summed: two syncs of one member share a label set, and each key they cannot read counts.
          for (const [reason, value] of s.unreadableSnapshots ?? []) this.inc({ member: s.instance, reason }, value);
        }
      },
    });
    registerStaged(staging, this.registry, 'BreakerMetrics', p);
  }

  /**
   * Exports a keyed group's breakers (present and future), until the group is disposed or
   * untracked. A second group with the same name replaces the first.
   */
  trackGroup(group: BreakerGroup): this {
    const g = group as Partial<Record<keyof BreakerGroup, unknown>> | null;
    if (typeof g !== 'object' || g === null || typeof g.name !== 'string' || typeof g.breakers !== 'function' || typeof g.size !== 'number') {
      throw new NotABreakerSourceError('trackGroup', 'a BreakerGroup (a name, breakers() and size)', group);
    }
    this.#sources.set(`group:${group.name}`, { kind: 'group', group });
    return this;
  }

  /** Stops exporting `group`. A group that has replaced it under its name since stays tracked. */
  untrackGroup(group: BreakerGroup): void {
    const source = this.#sources.get(`group:${group.name}`);
    if (source?.kind === 'group' && source.group === group) this.#sources.delete(`group:${group.name}`);
  }

  /** Exports a standalone breaker, until it is untracked. */
  trackBreaker(breaker: CircuitBreaker): this {
    const b = breaker as Partial<Record<keyof CircuitBreaker, unknown>> | null;
    if (typeof b !== 'object' || b === null || typeof b.id !== 'string' || typeof b.name !== 'string' || typeof b.counters !== 'object' || b.counters === null || typeof b.state !== 'string') {
      throw new NotABreakerSourceError('trackBreaker', 'a CircuitBreaker (an id, a name, counters and a state)', breaker);
    }
    this.#sources.set(`breaker:${breaker.id}`, { kind: 'breaker', breaker });
    return this;
  }

  /** Stops exporting `breaker`. A breaker that has replaced it under its name since stays tracked. */
  untrackBreaker(breaker: CircuitBreaker): void {
    const source = this.#sources.get(`breaker:${breaker.id}`);
    if (source?.kind === 'breaker' && source.breaker === breaker) this.#sources.delete(`breaker:${breaker.id}`);
  }

  /**
   * The sources to scrape. A disposed group is dropped here: replaced on a config reload, it
   * would otherwise export its last series (and be held in memory) for the life of the process.
   */
  *#live(): Generator<Source> {
    for (const [id, source] of this.#sources) {
      if (source.kind === 'group' && source.group.disposed) this.#sources.delete(id);
      else yield source;
    }
  }

  /**
   * Exports a cluster sync's health, labelled `member` (the sync's instance name in the cluster).
   * Not `instance`: Prometheus sets that label to the scrape target, and renames ours to
   * `exported_instance` (or, with honor_labels, lets ours replace the target's).
   */
  trackSync(sync: SyncHealth): this {
    const s = sync as Partial<Record<keyof SyncHealth, unknown>> | null;
    const counters = typeof s === 'object' && s !== null && typeof s.counters === 'object' && s.counters !== null ? (s.counters as { invalidSnapshots?: unknown }) : null;
    if (counters === null || typeof s!.instance !== 'string' || typeof s!.storeKind !== 'string' || !(counters.invalidSnapshots instanceof Map) || (s!.unreadableSnapshots !== undefined && !(s!.unreadableSnapshots instanceof Map))) {
      throw new NotABreakerSourceError('trackSync', 'a BreakerClusterSync (an instance, a storeKind and counters)', sync);
    }
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
