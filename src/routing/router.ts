import { ConfigurationError } from '../map/errors.ts';
import type { SwitchBoard } from '../switches/board.ts';
import { SwitchView } from '../switches/snapshot.ts';
import { AsyncLane, checkCloseDeadline } from './async-lane.ts';
import type { AsyncJob, AsyncJobStatus } from './async-lane.ts';
import { parseBizTag, tryParseBizTag } from './biz-tag.ts';
import type { BizTag } from './biz-tag.ts';
import { Bulkhead } from './bulkhead.ts';
import { currentBizContext, runWithBizContext } from './context.ts';
import { AsyncLaneRefusedError, BulkheadAbortedError, BulkheadFullError } from './errors.ts';
import type { BizTagError } from './errors.ts';
import { noGuard } from './guard.ts';
import type { RouteGuard, RouteGuardFactory } from './guard.ts';
import { ResponseCache } from './response-cache.ts';
import { RouteTable, routeCovers } from './route-table.ts';
import type { CompiledRoute, RouteDecision } from './route-table.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

/** Why a route is serving degraded answers for this request. */
export type DegradeReason = 'BREAKER_OPEN' | 'FORCED_BY_SWITCH' | 'BULKHEAD_FULL';

/** Why a degraded request could not be given a degraded answer either (the client gets 503). */
export type UnavailableDetail = 'NO_STRATEGY' | 'CACHE_MISS' | 'NO_SIGNATURE' | 'NO_PAYLOAD' | 'QUEUE_FULL' | 'LANE_CLOSING';

/** What `execute` answered. Only `live` came from the downstream just now. */
export type RouteOutcome<T> =
  | { readonly kind: 'live'; readonly route: CompiledRoute; readonly value: T }
  | { readonly kind: 'mock'; readonly route: CompiledRoute; readonly reason: DegradeReason; readonly status: number; readonly body: unknown; readonly headers: Readonly<Record<string, string>> }
  | { readonly kind: 'cache'; readonly route: CompiledRoute; readonly reason: DegradeReason; readonly value: T; readonly ageMs: number }
  | { readonly kind: 'queued'; readonly route: CompiledRoute; readonly reason: DegradeReason; readonly token: string }
  | { readonly kind: 'unavailable'; readonly route: CompiledRoute; readonly reason: DegradeReason; readonly detail: UnavailableDetail };

export interface RouteRequest {
  /**
   * Identifies "the same request" for the `cache` strategy, e.g. `GET /fx/EURUSD`. The org and
   * transaction type of the current tag are added by the router. Without it a cache route
   * degrades to 503.
   */
  readonly signature?: string;
  /** The JSON-able work the `async` strategy queues. Without it an async route degrades to 503. */
  readonly payload?: unknown;
  /** The client went away: stop waiting for a bulkhead slot, abort the call. */
  readonly signal?: AbortSignal;
}

/** What an async job holds: the work, and the tag of the request that asked for it. */
export interface RoutedJob {
  readonly tag: string | null;
  readonly route: string;
  readonly payload: unknown;
}

export interface RouterOptions {
  /** The route table: a RouteTable, or a document to compile into one. */
  readonly table: unknown;
  /** One guard (breaker) per route. Default: no breaker (`noGuard`). See `breakerGuards()`. */
  readonly guards?: RouteGuardFactory;
  /** Switches: `forceDegradeSwitch` is read from the request's pinned snapshot. */
  readonly switches?: SwitchBoard;
  /**
   * The switch that forces degradation, evaluated with the request's tag pairs plus `route`
   * (the route id), so it can target one org, one transaction type, or one route.
   * Default `routing.force-degrade`.
   */
  readonly forceDegradeSwitch?: string;
  /**
   * Required when a table has an `async` route (the constructor and replaceTable refuse one without it).
   * Does a queued job's work later (async strategy), against the route's target, under its
   * breaker and bulkhead, inside the job's request context (its tag). `token` is the one the 202
   * answer carried. Processing is at least once: make it idempotent per token.
   */
  readonly processAsync?: (target: string, payload: unknown, signal: AbortSignal, token: string) => Promise<void>;
  /** Called with jobs that failed `maxAttempts` times. Default: logged. */
  readonly onDeadLetter?: (job: AsyncJob<RoutedJob>, error: unknown) => void;
  /** Minimum interval between two unmatched-traffic log lines for one (orgId, txnType), ms; at most 100 lines per interval in all. Default 60,000. */
  readonly unmatchedLogIntervalMs?: number;
  readonly log?: (message: string, error?: unknown) => void;
  /** Epoch milliseconds, for cache ages and TTLs. Default `Date.now`. */
  readonly clock?: () => number;
  /**
   * Called after each table is in place: the first, and every `replaceTable` (a route file
   * reload). A table that changes a cache route builds it a new map and disposes the old one,
   * which MapMetrics then drops: track `runtimes()`' cache maps again here to keep their series.
   */
  readonly onTableApplied?: (router: Router) => void;
}

/** Every key of RouterOptions (the compiler checks the two stay the same): any other is refused. */
const ROUTER_OPTIONS = optionKeys<RouterOptions>({
  table: true, guards: true, switches: true, forceDegradeSwitch: true, processAsync: true, onDeadLetter: true,
  unmatchedLogIntervalMs: true, log: true, clock: true, onTableApplied: true,
});

/** Per-route counters, read at scrape time. */
export class RouteCounters {
  live = 0;
  failed = 0;
  /** The client went away (its request's signal aborted) before an answer: not the downstream failing. */
  aborted = 0;
  mock = 0;
  cache = 0;
  queued = 0;
  unavailable = 0;
  breakerOpen = 0;
  forcedBySwitch = 0;
  bulkheadFull = 0;
}

/** A route's isolated resources: its own breaker, bulkhead, cache and async lane. */
interface RouteRuntime {
  route: CompiledRoute;
  guard: RouteGuard;
  bulkhead: Bulkhead;
  cache: ResponseCache | null;
  lane: AsyncLane<RoutedJob> | null;
  readonly counters: RouteCounters;
}

export interface RouteStatus {
  readonly id: string;
  readonly target: string;
  readonly orgId: string;
  readonly txnType: string;
  readonly degradation: string;
  readonly breaker: string;
  readonly bulkhead: { readonly active: number; readonly queued: number; readonly maxConcurrent: number; readonly maxQueued: number; readonly rejected: number };
  readonly cacheEntries: number | null;
  readonly asyncQueued: number | null;
  readonly counters: RouteCounters;
}

/** Replaced async lanes kept, once idle, only to answer jobStatus() for the jobs they finished. */
const MAX_IDLE_RETIRED_LANES = 16;

/**
 * A job as close() returned it. A persisted copy that lost its shape (a damaged spill file) cannot
 * be run: without a route it threw mid-restore, losing track of the jobs after it; without
 * attempts it was retried forever; with a tag that does not parse, every attempt failed until it
 * was dead-lettered unattempted. It is returned to be kept instead.
 */
export function isRestorableJob(job: unknown): job is AsyncJob<RoutedJob> {
  if (job === null || typeof job !== 'object') return false;
  const { token, payload, attempts } = job as Partial<AsyncJob<Partial<RoutedJob> | null>>;
  if (typeof token !== 'string' || token === '' || !Number.isSafeInteger(attempts) || (attempts as number) < 0) return false;
  if (payload === null || typeof payload !== 'object' || typeof payload.route !== 'string') return false;
  return payload.tag === null || tryParseBizTag(payload.tag).ok;
}

/** Unmatched-traffic alert lines per `unmatchedLogIntervalMs`, whatever the number of distinct tags. */
const MAX_UNMATCHED_LINES_PER_INTERVAL = 100;

/** Marks a deferral of a queued job while its route is forced into degradation. */
class ForcedDegradation extends Error {}

/**
 * A queued job's route left the table (a reload removed it). Not an attempt: the job was never
 * sent anywhere, so it must not use up attempts and be dead-lettered. It is deferred instead:
 * processed if the route comes back, otherwise returned by close() in `remaining`, as
 * restoreJobs() returns a job whose route is gone in `unroutable`.
 */
class RouteLeftTable extends Error {}

/**
 * The router: decides each request's route from its tag, and runs the request's downstream call
 * through that route's own bulkhead and breaker, degrading (mock, cache, async) when the breaker
 * is open, the bulkhead is full, or a switch forces it.
 *
 * Isolation is structural: routes share no breaker, no bulkhead slot, no cache entry and no
 * queue, so one org's failing or slow downstream can exhaust only its own route's resources.
 *
 * A live call that fails while the breaker is closed is not degraded: its error reaches the
 * caller (a degraded answer to a request the downstream refused would hide the refusal).
 */
export class Router {
  readonly #guards: RouteGuardFactory;
  readonly #switches: SwitchBoard | undefined;
  readonly #forceSwitch: string;
  readonly #processAsync: RouterOptions['processAsync'];
  readonly #onDeadLetter: RouterOptions['onDeadLetter'];
  readonly #onTableApplied: RouterOptions['onTableApplied'];
  readonly #log: (message: string, error?: unknown) => void;
  readonly #clock: () => number;
  readonly #unmatchedLogIntervalMs: number;
  readonly #unmatchedLogged = new Map<string, number>();
  /**
   * Alert lines in the current interval, across all (orgId, txnType): the tag is the client's
   * choice, so per-pair limiting alone lets a client write one line per request with a new orgId.
   */
  #unmatchedLinesStart = Number.NEGATIVE_INFINITY;
  #unmatchedLines = 0;
  #unmatchedSuppressed = 0;
  /** Rate-limit keys of tags seen unmatched (weak: a tag no longer used is dropped with it). */
  readonly #alertKeys = new WeakMap<BizTag, string>();
  #table: RouteTable;
  readonly #runtimes = new Map<string, RouteRuntime>();
  /** Lanes of routes that left the table or changed strategy: drained at close(). */
  readonly #retiredLanes: AsyncLane<RoutedJob>[] = [];
  /** Lanes whose jobs the route their id names no longer takes (see heldJobs()). */
  readonly #heldLanes = new Set<AsyncLane<RoutedJob>>();
  /** When each lane last logged that it holds jobs (performance.now()). */
  readonly #heldLogged = new WeakMap<AsyncLane<RoutedJob>, number>();
  #closed = false;
  /** Decisions counted at scrape time. */
  readonly decisions = { matched: 0, noRule: 0, untagged: 0 };
  /** Refused X-Biz-Tag headers by broken rule, counted at scrape time. */
  readonly tagRejections = new Map<string, number>();

  constructor(options: RouterOptions) {
    refuseUnknownOptions(options, ROUTER_OPTIONS, 'Router');
    this.#guards = options.guards ?? noGuard;
    this.#switches = options.switches;
    this.#forceSwitch = options.forceDegradeSwitch ?? 'routing.force-degrade';
    this.#processAsync = options.processAsync;
    this.#onDeadLetter = options.onDeadLetter;
    this.#log = options.log ?? ((message, error) => console.error(message, error ?? ''));
    this.#clock = options.clock ?? Date.now;
    const interval = options.unmatchedLogIntervalMs ?? 60_000;
    // Negative or 0 logged every unmatched request (a client's choice of tags); NaN stopped the
    // alert for good after its first 100 lines.
    if (!(Number.isSafeInteger(interval) && interval >= 1)) throw new ConfigurationError('unmatchedLogIntervalMs', 'a whole number of milliseconds of at least 1', interval);
    this.#unmatchedLogIntervalMs = interval;
    this.#table = options.table instanceof RouteTable ? options.table : new RouteTable(options.table, { origin: 'router options' });
    this.#refuseUnprocessable(this.#table);
    this.#onTableApplied = options.onTableApplied;
    this.#install(this.#table);
    this.#onTableApplied?.(this);
  }

  get table(): RouteTable {
    return this.#table;
  }

  /**
   * Swaps the route table whole. Routes that stay (same id, orgId, txnType and target) keep their
   * breaker, so editing the table never closes an open circuit; an id given another orgId,
   * txnType or target gets a new guard from `guards` (a fresh breaker: it protects another
   * target, or from other traffic). Bulkhead and cache are rebuilt only if their limits or
   * strategy changed. An async route's new rate and limits apply to the lane in place (its
   * backlog drains at the new rate); a lane whose strategy or rule changed is replaced, and keeps
   * draining its queue until close().
   */
  replaceTable(table: RouteTable): void {
    if (this.#closed) throw new ConfigurationError('table', 'the router is closed');
    // A document passed as is (from JavaScript) was installed half-way and left the router
    // unable to decide any request: refused before anything changes.
    if (!(table instanceof RouteTable)) throw new ConfigurationError('table', 'a RouteTable: compile the document first (new RouteTable(document, { version }))', table === null ? null : typeof table);
    this.#refuseUnprocessable(table);
    if (table.version <= this.#table.version && table !== this.#table) {
      this.#log(`govmap routing: route table v${table.version} (${table.origin}) is not newer than v${this.#table.version}; applied anyway`);
    }
    this.#table = table;
    this.#install(table);
    this.#onTableApplied?.(this);
  }

  /** Counts a refused X-Biz-Tag (the middleware calls it; metric govmap_biztag_rejected_total). */
  recordRejectedTag(error: BizTagError): void {
    this.tagRejections.set(error.rule, (this.tagRejections.get(error.rule) ?? 0) + 1);
  }

  /** Where a request with `tag` (null: no X-Biz-Tag) goes; counts it, and logs unmatched tagged traffic. */
  decide(tag: BizTag | null): RouteDecision {
    const decision = this.#table.decideTag(tag);
    if (decision.reason === 'rule') this.decisions.matched++;
    else if (decision.reason === 'untagged') this.decisions.untagged++;
    else {
      this.decisions.noRule++;
      this.#alertUnmatched(tag);
    }
    return decision;
  }

  /**
   * Runs `call` against the decided route's target, through its bulkhead and breaker, or
   * degrades. `decision` defaults to the current request's (set by the middleware).
   * @throws whatever `call` throws while the breaker is closed (the downstream's own failure)
   */
  async execute<T>(request: RouteRequest, call: (target: string, signal: AbortSignal) => Promise<T>, decision?: RouteDecision): Promise<RouteOutcome<T>> {
    const context = currentBizContext();
    const chosen = decision ?? context?.decision ?? this.decide(null);
    const rt = this.#runtime(chosen.route, context?.tag ?? null);
    if (this.#forced(rt.route)) {
      rt.counters.forcedBySwitch++;
      return this.#degrade(rt, 'FORCED_BY_SWITCH', request, context?.tag ?? null);
    }
    try {
      const value = await rt.bulkhead.run(() => rt.guard.execute((signal) => call(rt.route.target, signal), request.signal), request.signal);
      rt.counters.live++;
      if (rt.cache !== null && request.signature !== undefined) {
        rt.cache.remember(ResponseCache.key(context?.tag?.orgId, context?.tag?.txnType, request.signature), value);
      }
      return { kind: 'live', route: rt.route, value };
    } catch (error) {
      if (error instanceof BulkheadFullError) {
        rt.counters.bulkheadFull++;
        return this.#degrade(rt, 'BULKHEAD_FULL', request, context?.tag ?? null);
      }
      if (rt.guard.isRejection(error)) {
        rt.counters.breakerOpen++;
        return this.#degrade(rt, 'BREAKER_OPEN', request, context?.tag ?? null);
      }
      // A client that left while queued for a slot (or while its call ran) is not a failure of
      // the route: counted as failed, client impatience would fire failure alerts.
      if (error instanceof BulkheadAbortedError || request.signal?.aborted === true) rt.counters.aborted++;
      else rt.counters.failed++;
      throw error;
    }
  }

  /** Status of a queued job, by the token its 202 answer carried. */
  jobStatus(token: string): AsyncJobStatus | undefined {
    for (const rt of this.#runtimes.values()) {
      const status = rt.lane?.status(token);
      if (status !== undefined) return status;
    }
    for (const lane of this.#retiredLanes) {
      const status = lane.status(token);
      if (status !== undefined) return status;
    }
    return undefined;
  }

  /**
   * Queued jobs held, by the route id they were queued under: the id left the table or now names
   * another rule (orgId, txnType) that does not take them. They are retried every 500 ms, run if
   * a reload gives the rule back, and are otherwise returned by close(). Exported as
   * `govmap_async_held_jobs`; each lane starting to hold jobs is also logged once.
   */
  heldJobs(): Map<string, number> {
    const held = new Map<string, number>();
    for (const lane of this.#heldLanes) {
      if (lane.depth === 0) this.#heldLanes.delete(lane);
      else held.set(lane.name, (held.get(lane.name) ?? 0) + lane.depth);
    }
    return held;
  }

  /**
   * Re-queues jobs a previous run's close() returned (persisted by the caller). A job whose route
   * is gone, no longer async or no longer matches its tag (the id reused for another org's rule),
   * whose lane is full or closing, or that is malformed (no token, route, attempts or valid tag),
   * is returned in `unroutable`:
   * every job given is either restored or returned, never dropped (keep the returned ones). A job
   * whose token any lane already holds or has finished is not queued again (counted as restored).
   */
  restoreJobs(jobs: readonly AsyncJob<RoutedJob>[]): { restored: number; unroutable: AsyncJob<RoutedJob>[] } {
    const unroutable: AsyncJob<RoutedJob>[] = [];
    let restored = 0;
    // Every lane's tokens, the retired ones' included: a reload that changed a route's strategy
    // or rule gave it a new lane, which knows nothing of the jobs its predecessor still holds or
    // already did, so the same list restored again would run each of those payments a second time.
    const held = new Set<string>();
    for (const rt of this.#runtimes.values()) rt.lane?.collectTokens(held);
    for (const lane of this.#retiredLanes) lane.collectTokens(held);
    for (const job of jobs) {
      if (!isRestorableJob(job)) {
        unroutable.push(job);
        continue;
      }
      if (held.has(job.token)) {
        restored++; // already the router's: kept once, as a lane keeps a token it holds
        continue;
      }
      const rt = this.#runtimes.get(job.payload.route);
      // An id a reload gave to another org's rule: its lane would send the job to that org's target.
      const lane = rt !== undefined && routeCovers(rt.route, job.payload.tag === null ? null : parseBizTag(job.payload.tag)) ? rt.lane : null;
      if (lane === null) {
        unroutable.push(job);
        continue;
      }
      try {
        lane.restore([job]);
        held.add(job.token);
        restored++;
      } catch (error) {
        // A refusal must not abort the loop: the caller would lose this job and every later one,
        // with no way to tell which of the earlier ones were taken back.
        if (!(error instanceof AsyncLaneRefusedError)) throw error;
        unroutable.push(job);
      }
    }
    return { restored, unroutable };
  }

  /** Every route with its live state, in precedence order (the default route last). */
  status(): RouteStatus[] {
    return this.#table.routes.map((route) => {
      const rt = this.#runtimes.get(route.id)!;
      return {
        id: route.id,
        target: route.target,
        orgId: route.orgId,
        txnType: route.txnType,
        degradation: route.degradation.kind,
        breaker: rt.guard.state,
        bulkhead: { active: rt.bulkhead.active, queued: rt.bulkhead.queued, maxConcurrent: rt.bulkhead.maxConcurrent, maxQueued: rt.bulkhead.maxQueued, rejected: rt.bulkhead.rejected },
        cacheEntries: rt.cache?.map.size ?? null,
        asyncQueued: rt.lane?.depth ?? null,
        counters: rt.counters,
      };
    });
  }

  /** Per-route runtime pieces, for metrics (cache maps are GovernedMaps: track them with MapMetrics). */
  runtimes(): Iterable<{ readonly route: CompiledRoute; readonly bulkhead: Bulkhead; readonly cache: ResponseCache | null; readonly lane: AsyncLane<RoutedJob> | null; readonly counters: RouteCounters }> {
    return this.#runtimes.values();
  }

  /**
   * Graceful shutdown: drains every async lane (processing continues, under its rate limit and
   * breaker, until empty or `deadlineMs`), releases guards and caches. Returns the jobs not done:
   * persist them and `restoreJobs()` them at the next start. Jobs no route of the table takes any
   * more (held: see heldJobs()) are returned at once, not retried until the deadline.
   */
  async close(options: { readonly deadlineMs?: number } = {}): Promise<{ processed: number; remaining: AsyncJob<RoutedJob>[] }> {
    if (options.deadlineMs !== undefined) checkCloseDeadline(options.deadlineMs); // before anything closes
    this.#closed = true;
    const lanes = [...[...this.#runtimes.values()].flatMap((rt) => (rt.lane === null ? [] : [rt.lane])), ...this.#retiredLanes];
    // No reload can come once closed: a job its lane's route no longer takes is returned at once.
    const results = await Promise.all(lanes.map((lane) => lane.close({ ...options, setAside: (job) => !this.#runnable(lane, job) })));
    for (const rt of this.#runtimes.values()) {
      rt.cache?.dispose();
      // As for a route a reload removes: a request still running (a server drains its
      // connections after this) must not write its completed call's answer to the disposed map.
      rt.cache = null;
      await rt.guard.dispose?.();
    }
    return { processed: results.reduce((n, r) => n + r.processed, 0), remaining: results.flatMap((r) => r.remaining) };
  }

  #runtime(route: CompiledRoute, tag: BizTag | null): RouteRuntime {
    const rt = this.#runtimes.get(route.id);
    // The decision may come from the table before a swap. The id names the same route if its rule
    // is the same (an edit: new target, limits or strategy); a reload may also have removed the id
    // or given it to another org's rule, whose target must never get this request: the request
    // is decided again, by its tag, on the table in force.
    if (rt !== undefined && (rt.route === route || (rt.route.orgId === route.orgId && rt.route.txnType === route.txnType))) return rt;
    return this.#runtimes.get(this.#table.decideTag(tag).route.id)!;
  }

  /**
   * An async route with nothing to process its jobs: each degraded request would be answered 202
   * ACCEPTED, and its job then fail every attempt and be dead-lettered, never sent anywhere.
   */
  #refuseUnprocessable(table: RouteTable): void {
    if (this.#processAsync !== undefined) return;
    const route = table.routes.find((r) => r.degradation.kind === 'async');
    if (route !== undefined) {
      throw new ConfigurationError('processAsync', `a function (target, payload, signal, token) => Promise<void>: route "${route.id}" of table v${table.version} (${table.origin}) degrades to async, and without it its queued jobs would be accepted (202) and then dead-lettered without ever being sent`);
    }
  }

  #forced(route: CompiledRoute): boolean {
    const board = this.#switches;
    if (board === undefined) return false;
    return board.view({ route: route.id }).isOn(this.#forceSwitch);
  }

  #install(table: RouteTable): void {
    const keep = new Set<string>();
    for (const route of table.routes) {
      keep.add(route.id);
      const existing = this.#runtimes.get(route.id);
      if (existing === undefined) {
        this.#runtimes.set(route.id, {
          route,
          guard: this.#guards(route),
          bulkhead: this.#bulkhead(route),
          cache: this.#cache(route),
          lane: this.#lane(route),
          counters: new RouteCounters(),
        });
        continue;
      }
      const before = existing.route;
      existing.route = route;
      // A breaker protects a target from the traffic sent there: another org's rule or another
      // target under the id must not inherit an open circuit (or the failure counts) of the old
      // one. Calls in flight finish under the old guard; limits and strategy edits keep it.
      if (before.orgId !== route.orgId || before.txnType !== route.txnType || before.target !== route.target) {
        const old = existing.guard;
        existing.guard = this.#guards(route);
        this.#disposeGuard(route.id, old);
      }
      if (before.bulkhead.maxConcurrent !== route.bulkhead.maxConcurrent || before.bulkhead.maxQueued !== route.bulkhead.maxQueued) {
        existing.bulkhead = this.#bulkhead(route); // calls in flight finish on the old one
      }
      const degradationChanged = JSON.stringify(before.degradation) !== JSON.stringify(route.degradation);
      if (degradationChanged) {
        existing.cache?.dispose();
        existing.cache = this.#cache(route);
      }
      const sameRule = before.orgId === route.orgId && before.txnType === route.txnType;
      if (degradationChanged && sameRule && existing.lane !== null && route.degradation.kind === 'async') {
        existing.lane.retune(route.degradation); // its backlog drains at the new rate, still shown as the route's
      } else if (degradationChanged || !sameRule) {
        // An id given to another rule: the jobs queued under the old one are held by #processJob
        // (the route no longer covers their tags), so they move to a retired lane, or the new
        // rule's jobs would wait behind them for good.
        if (existing.lane !== null) this.#retire(existing.lane);
        existing.lane = this.#lane(route);
      }
    }
    for (const [id, rt] of this.#runtimes) {
      if (keep.has(id)) continue;
      this.#runtimes.delete(id);
      rt.cache?.dispose();
      // A request still running on this route holds `rt`: writing its answer to (or reading one
      // from) the disposed map would throw, turning a call the downstream completed into a failure.
      rt.cache = null;
      if (rt.lane !== null) this.#retire(rt.lane);
      this.#disposeGuard(id, rt.guard);
    }
  }

  #disposeGuard(id: string, guard: RouteGuard): void {
    // A throwing dispose (sync or not) must not leave the table half-installed.
    void Promise.resolve()
      .then(() => guard.dispose?.())
      .catch((error: unknown) => this.#log(`govmap routing: disposing the guard of route "${id}" failed`, error));
  }

  #retire(lane: AsyncLane<RoutedJob>): void {
    // Still processing what it holds (close() drains it with the others), or still answering
    // jobStatus() for jobs it finished: a client polling its 202 token must not be told the job
    // is unknown because an operator changed the route or removed it.
    if (lane.depth === 0 && lane.settled === 0) return;
    this.#retiredLanes.push(lane);
    // Bounded: a table reloaded again and again keeps the lanes still holding jobs, and only the
    // most recent idle ones for their statuses.
    let idle = 0;
    for (let i = this.#retiredLanes.length - 1; i >= 0; i--) {
      if (this.#retiredLanes[i]!.depth > 0 || ++idle <= MAX_IDLE_RETIRED_LANES) continue;
      this.#retiredLanes.splice(i, 1);
    }
  }

  #bulkhead(route: CompiledRoute): Bulkhead {
    return new Bulkhead({ name: route.id, maxConcurrent: route.bulkhead.maxConcurrent, maxQueued: route.bulkhead.maxQueued });
  }

  #cache(route: CompiledRoute): ResponseCache | null {
    const d = route.degradation;
    return d.kind === 'cache' ? new ResponseCache(route.id, { ttlMs: d.ttlMs, maxEntries: d.maxEntries, clock: this.#clock }) : null;
  }

  #lane(route: CompiledRoute): AsyncLane<RoutedJob> | null {
    const d = route.degradation;
    if (d.kind !== 'async') return null;
    const routeId = route.id;
    const lane: AsyncLane<RoutedJob> = new AsyncLane<RoutedJob>({
      name: routeId,
      ratePerSec: d.ratePerSec,
      burst: d.burst,
      maxQueued: d.maxQueued,
      maxAttempts: d.maxAttempts,
      log: this.#log,
      onDeadLetter: this.#onDeadLetter,
      isDeferral: (error) => error instanceof ForcedDegradation || error instanceof RouteLeftTable || error instanceof BulkheadFullError || (this.#runtimes.get(routeId)?.guard.isRejection(error) ?? false),
      process: (job, signal) => this.#processJob(lane, job, signal),
    });
    return lane;
  }

  /** Whether the table in force has a route for `job` (its id, covering its tag): held otherwise. */
  #runnable(lane: AsyncLane<RoutedJob>, job: AsyncJob<RoutedJob>): boolean {
    const rt = this.#runtimes.get(lane.name);
    return rt !== undefined && routeCovers(rt.route, job.payload.tag === null ? null : parseBizTag(job.payload.tag));
  }

  /**
   * Marks `lane` as holding its jobs, with one line when it starts to: not one per 500 ms retry,
   * and at most one a minute for a lane whose jobs are only partly held (a narrowed prefix rule).
   */
  #hold(lane: AsyncLane<RoutedJob>, why: string): void {
    if (this.#heldLanes.has(lane)) return;
    for (const other of this.#heldLanes) if (other.depth === 0) this.#heldLanes.delete(other);
    this.#heldLanes.add(lane);
    const now = performance.now();
    const last = this.#heldLogged.get(lane);
    if (last !== undefined && now - last < 60_000) return;
    this.#heldLogged.set(lane, now);
    this.#log(
      `govmap routing: route "${lane.name}" ${why}: ${lane.depth} async job(s) queued for it before are held, not sent anywhere; retried every 500 ms until a reload gives the route its rule back, returned by close() otherwise (metric govmap_async_held_jobs)`,
    );
  }

  /** A queued job runs as its request would have: under the request's tag, the route's bulkhead and breaker. */
  #processJob(lane: AsyncLane<RoutedJob>, job: AsyncJob<RoutedJob>, signal: AbortSignal): Promise<void> {
    const routeId = lane.name;
    const process = this.#processAsync;
    if (process === undefined) return Promise.reject(new ConfigurationError('processAsync', `route "${routeId}" degrades to async but the router has no processAsync`));
    const rt = this.#runtimes.get(routeId);
    if (rt === undefined) {
      this.#hold(lane, 'left the table');
      return Promise.reject(new RouteLeftTable(`route "${routeId}" left the table; its job ${job.token} waits for it or for close()`));
    }
    const tag = job.payload.tag === null ? null : parseBizTag(job.payload.tag);
    // The id now names another org's rule (a reload reused it): that org's target must not get
    // this job. Treated as the route leaving the table: not an attempt, returned by close().
    if (!routeCovers(rt.route, tag)) {
      this.#hold(lane, `now serves orgId ${rt.route.orgId}, txnType ${rt.route.txnType}`);
      return Promise.reject(new RouteLeftTable(`route "${routeId}" now serves orgId ${rt.route.orgId}, txnType ${rt.route.txnType}, not this job's tag; its job ${job.token} waits for the route to come back or for close()`));
    }
    this.#heldLanes.delete(lane);
    const run = (): Promise<void> => {
      if (this.#forced(rt.route)) return Promise.reject(new ForcedDegradation());
      return rt.bulkhead.run(() => rt.guard.execute((s) => process(rt.route.target, job.payload.payload, AbortSignal.any([s, signal]), job.token), signal), signal);
    };
    const decision: RouteDecision = { route: rt.route, reason: tag === null ? 'untagged' : 'rule' };
    const withTag = (): Promise<void> => runWithBizContext({ tag, decision }, run);
    // The current snapshot, pinned afresh for each attempt: not run(), which keeps an outer pin.
    // The lane's timers carry the async context of the request that first queued a job, so its
    // pin (the version forcing degradation) was read by every later attempt, and a job queued
    // while forced was deferred forever after the switch went off.
    return this.#switches === undefined ? withTag() : this.#switches.runWith(new SwitchView(this.#switches.snapshot, { ...(tag?.toRecord() ?? {}) }), withTag);
  }

  #degrade<T>(rt: RouteRuntime, reason: DegradeReason, request: RouteRequest, tag: BizTag | null): RouteOutcome<T> {
    const route = rt.route;
    const d = route.degradation;
    const unavailable = (detail: UnavailableDetail): RouteOutcome<T> => {
      rt.counters.unavailable++;
      return { kind: 'unavailable', route, reason, detail };
    };
    switch (d.kind) {
      case 'mock':
        rt.counters.mock++;
        return { kind: 'mock', route, reason, status: d.status, body: d.body, headers: d.headers };
      case 'cache': {
        if (request.signature === undefined) return unavailable('NO_SIGNATURE');
        if (rt.cache === null) return unavailable('CACHE_MISS'); // its cache went with a reload or close()
        const hit = rt.cache.recall(ResponseCache.key(tag?.orgId, tag?.txnType, request.signature));
        if (hit === undefined) return unavailable('CACHE_MISS');
        rt.counters.cache++;
        return { kind: 'cache', route, reason, value: hit.value as T, ageMs: hit.ageMs };
      }
      case 'async': {
        if (request.payload === undefined || rt.lane === null) return unavailable('NO_PAYLOAD');
        try {
          const job = rt.lane.submit({ tag: tag?.header ?? null, route: route.id, payload: request.payload });
          rt.counters.queued++;
          return { kind: 'queued', route, reason, token: job.token };
        } catch (error) {
          if (error instanceof AsyncLaneRefusedError) return unavailable(rt.lane.closing ? 'LANE_CLOSING' : 'QUEUE_FULL');
          throw error;
        }
      }
      default:
        return unavailable('NO_STRATEGY');
    }
  }

  #alertUnmatched(tag: BizTag | null): void {
    // The key per tag object is built once (the middleware reuses tag objects across requests).
    let key = tag === null ? '-|-' : this.#alertKeys.get(tag);
    if (key === undefined) this.#alertKeys.set(tag!, (key = `${tag!.orgId ?? '-'}|${tag!.txnType ?? '-'}`));
    const now = this.#clock();
    const last = this.#unmatchedLogged.get(key);
    if (last !== undefined && now - last < this.#unmatchedLogIntervalMs) return;
    if (now - this.#unmatchedLinesStart >= this.#unmatchedLogIntervalMs) {
      this.#unmatchedLinesStart = now;
      this.#unmatchedLines = 0;
    }
    if (this.#unmatchedLines >= MAX_UNMATCHED_LINES_PER_INTERVAL) {
      this.#unmatchedSuppressed++;
      return;
    }
    this.#unmatchedLines++;
    // Bounded: a flood of distinct unmatched orgs must not grow this map without end.
    if (this.#unmatchedLogged.size >= 10_000) this.#unmatchedLogged.clear();
    this.#unmatchedLogged.set(key, now);
    const suppressed = this.#unmatchedSuppressed;
    this.#unmatchedSuppressed = 0;
    this.#log(
      `govmap routing: ALERT unmatched traffic: X-Biz-Tag ${JSON.stringify(tag?.header ?? null)} (orgId ${tag?.orgId ?? 'absent'}, txnType ${tag?.txnType ?? 'absent'}) matched no rule of route table v${this.#table.version}; sent to the default target "${this.#table.defaultRoute.target}" (metric govmap_route_unmatched_total)${
        suppressed === 0 ? '' : `; ${suppressed} more unmatched request(s) were not logged in the interval before (at most ${MAX_UNMATCHED_LINES_PER_INTERVAL} lines per interval; all are counted in the metric)`
      }`,
    );
  }
}
