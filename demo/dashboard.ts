import { existsSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Advisor } from '../src/advisor/index.ts';
import type { AuditRecorderStats } from '../src/audit/index.ts';
import { parseSpoolLine } from '../src/audit/event.ts';
import { listSegments } from '../src/audit/spool.ts';
import type { BreakerGroup, BreakerTransition } from '../src/breaker/index.ts';
import { RANGE_BUCKETS_SECONDS, bucketQuantile } from '../src/map/index.ts';
import { boundedReasons } from '../src/metrics/index.ts';
import { currentBizContext, routeBreakerKey } from '../src/routing/index.ts';
import type { BizContext } from '../src/routing/index.ts';
import type { Sandbox } from '../src/sandbox/index.ts';
import type { SharedInt64Store } from '../src/stores/index.ts';
import type { SwitchBoard } from '../src/switches/index.ts';
import type { BalanceBook } from './book.ts';
import type { DemoSettlement } from './breaker.ts';
import { SpoolVerifier } from './spool-verifier.ts';
import type { VerifySummary } from './spool-verifier.ts';
import { HttpError, openEndedAnswers } from './http.ts';
import type { DemoRouting } from './routing.ts';
import type { DemoContext } from './server.ts';

export interface DashboardOptions {
  /** How often the state is pushed to open pages (and the charts sampled), ms. Default 1,000. */
  readonly intervalMs?: number;
  /** Chart samples kept and sent to a page when it connects. Default 300 (5 minutes at 1 s). */
  readonly historySamples?: number;
  /** The audit spool the audit panel tails and verifies. Absent: the panel says "audit not configured". */
  readonly audit?: DashboardAuditSource;
  /** How often the audit chain is verified (in a worker thread), ms. Default 15,000. */
  readonly verifyIntervalMs?: number;
  /** Pages connected at once at most; more get 503. Default 32. */
  readonly maxClients?: number;
  /**
   * A page whose stream stays backed up (its socket buffer full: `writableNeedDrain`) for longer
   * than this is disconnected, freeing its place, ms. Default 5,000.
   */
  readonly stalledClientMs?: number;
  /** Whether each request is observed for the traffic panels. Default true; false only to measure what it costs (demo/parts.ts). */
  readonly observeRequests?: boolean;
}

/** What the audit panel reads: the spool directory (what `govmap audit verify <dir>` checks). */
export interface DashboardAuditSource {
  readonly dir: string;
  /** The spool's HMAC key, when it is written with one. */
  readonly key?: Uint8Array | null;
  /** The recorder's live figures, when it runs in this process. */
  readonly stats?: () => AuditRecorderStats;
}

/** The demo's parts the dashboard shows; server.ts hands them over. */
export interface DashboardSources {
  readonly settlement: DemoSettlement;
  readonly routing: DemoRouting;
  readonly switches: SwitchBoard;
  readonly sandbox: Sandbox;
  readonly advisor: Advisor;
  /** The balances the account routes use (in process or Redis). */
  readonly book: BalanceBook;
  /** The shared-memory store under the in-process balances; null when they live in Redis or in process (`--without shared-memory`). */
  readonly balanceStore: SharedInt64Store | null;
}

/** One point of the live charts (the balances map, and the service's requests). */
export interface ChartSample {
  /** Epoch milliseconds. */
  readonly t: number;
  readonly loadsPerSec: number;
  readonly writesPerSec: number;
  /** Misses / loads over the map's sliding window (5 minutes); null before the first load. */
  readonly missRatio: number | null;
  /** range() p99 over the last minute, ms (the upper bound of the histogram bucket); null without ranges. */
  readonly rangeP99Ms: number | null;
  /** Writes refused per second, by the validator's reason code (the first 20 codes; others as `_other`). */
  readonly rejectionsPerSec: Readonly<Record<string, number>>;
  readonly requestsPerSec: number;
  /** Answers that were degraded (mock, cache, async, unavailable, settlement queued) per second. */
  readonly degradedPerSec: number;
  /** Answers that were 5xx per second, tagged or not (a degraded 503 counts in both). */
  readonly failedPerSec: number;
}

/** Static files of the page: URL path -> file and media type. Nothing else is served from disk. */
const ASSETS: Readonly<Record<string, { readonly file: string; readonly type: string; readonly vendor?: true }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/dashboard/vendor/uPlot.iife.min.js': { file: 'uplot/dist/uPlot.iife.min.js', type: 'text/javascript; charset=utf-8', vendor: true },
  '/dashboard/vendor/uPlot.min.css': { file: 'uplot/dist/uPlot.min.css', type: 'text/css; charset=utf-8', vendor: true },
};

/**
 * Everything the page loads comes from this server: no CDN, no web font, no third-party call.
 * The policy makes the browser refuse anything else, so a stray external reference fails loudly.
 */
const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Paths of the dashboard itself: not counted as the service's traffic. */
const OWN_PATH = /^\/(?:$|events$|dashboard\/)/;
/** How far back "what each org is getting" looks, ms. */
const RECENT_MS = 10_000;
/** Range walks are judged over this long, ms (the chart's "p99 over the last minute"). */
const RANGE_WINDOW_MS = 60_000;
const TRANSITIONS_KEPT = 40;
const SWITCH_CHANGES_KEPT = 20;
const AUDIT_TAIL_EVENTS = 12;
/** Bytes read from the end of the newest audit segment for the tail. */
const AUDIT_TAIL_BYTES = 64 * 1024;
/** Verification waits at least this many times its last duration: at most 1/20 of a core on it. */
const VERIFY_DUTY = 20;
/** Sandbox and advisor change slowly; they are recomputed this often, ms. */
const SLOW_PANELS_MS = 5_000;

/**
 * One (orgId, txnType) pair's last outcomes in fixed rings (time, status, degradation), so
 * recording an answer writes three slots instead of allocating an object per request.
 */
class OrgPair {
  readonly org: string;
  readonly txnType: string;
  route: string | null = null;
  lastSeen = 0;
  /** When it last got a degraded or failed answer (0: never). */
  lastOffAt = 0;
  readonly #at: Float64Array;
  readonly #status: Uint16Array;
  /** The `x-govmap-degraded` value of each answer, null when it was not degraded. */
  readonly #degraded: Array<string | null>;
  /** Next slot to write; `#count` slots (up to capacity) hold outcomes, oldest at `#next - #count`. */
  #next = 0;
  #count = 0;

  constructor(org: string, txnType: string, capacity: number) {
    this.org = org;
    this.txnType = txnType;
    this.#at = new Float64Array(capacity);
    this.#status = new Uint16Array(capacity);
    this.#degraded = new Array<string | null>(capacity).fill(null);
  }

  push(at: number, status: number, degraded: string | null): void {
    const i = this.#next;
    this.#at[i] = at;
    this.#status[i] = status;
    this.#degraded[i] = degraded;
    if (degraded !== null || status >= 500) this.lastOffAt = at;
    this.#next = i + 1 === this.#at.length ? 0 : i + 1;
    if (this.#count < this.#at.length) this.#count++;
  }

  /** The outcomes kept, oldest first (built when the dashboard asks, once a second). */
  outcomes(): Array<{ at: number; kind: string; status: number }> {
    const capacity = this.#at.length;
    const out: Array<{ at: number; kind: string; status: number }> = [];
    for (let k = this.#count; k > 0; k--) {
      const i = (this.#next - k + capacity) % capacity;
      const status = this.#status[i]!;
      const degraded = this.#degraded[i];
      out.push({ at: this.#at[i]!, kind: degraded !== null && degraded !== undefined ? `degraded:${degraded}` : status >= 500 ? 'failed' : 'normal', status });
    }
    return out;
  }
}

/**
 * What each (orgId, txnType) pair got recently, as observed on the answers themselves: the
 * route that served it and whether the answer was live, degraded (`x-govmap-degraded`), failed
 * (5xx) or refused (4xx, the caller's fault: still normal service).
 *
 * Invariants: at most `maxPairs` pairs (for a new one, the least recently seen of those served
 * normally over RECENT_MS is dropped, or of all when none was), at
 * most `outcomesKept` outcomes per pair, oldest first; only tagged requests are counted.
 */
class OrgOutcomes {
  /** org → txnType → pair: two lookups and no key string built per request. */
  readonly #byOrg = new Map<string, Map<string, OrgPair>>();
  #pairCount = 0;
  /** Pairs dropped for new ones, per second of the last RECENT_MS (second, count), so the page can say how many it does not list. */
  readonly #droppedSecond = new Float64Array(Math.ceil(RECENT_MS / 1000) + 1);
  readonly #droppedCount = new Uint32Array(Math.ceil(RECENT_MS / 1000) + 1);
  readonly #maxPairs: number;
  readonly #outcomesKept: number;

  constructor(maxPairs = 64, outcomesKept = 50) {
    this.#maxPairs = maxPairs;
    this.#outcomesKept = outcomesKept;
  }

  /** Runs once per answered request: allocates nothing for a pair already seen. */
  record(org: string, txnType: string, route: string | null, status: number, degraded: string | null, at: number): void {
    let pairs = this.#byOrg.get(org);
    let pair = pairs?.get(txnType);
    if (pair === undefined) {
      if (this.#pairCount >= this.#maxPairs) this.#dropLeastRecent(at);
      pair = new OrgPair(org, txnType, this.#outcomesKept);
      if (pairs === undefined) this.#byOrg.set(org, (pairs = new Map<string, OrgPair>()));
      pairs.set(txnType, pair);
      this.#pairCount++;
    }
    pair.route = route;
    pair.lastSeen = at;
    pair.push(at, status, degraded);
  }

  /**
   * Drops the least recently seen pair that got only normal answers lately; only when every pair
   * kept was degraded or failing lately, the least recently seen of all. Plain LRU let a flood of
   * healthy orgs push the one failing org off the table (and off the fault knob's list).
   */
  #dropLeastRecent(now: number): void {
    let oldest: OrgPair | null = null;
    let oldestNormal: OrgPair | null = null;
    for (const pairs of this.#byOrg.values()) {
      for (const p of pairs.values()) {
        if (oldest === null || p.lastSeen < oldest.lastSeen) oldest = p;
        if (now - p.lastOffAt > RECENT_MS && (oldestNormal === null || p.lastSeen < oldestNormal.lastSeen)) oldestNormal = p;
      }
    }
    oldest = oldestNormal ?? oldest;
    if (oldest === null) return;
    const second = Math.floor(now / 1000);
    const slot = second % this.#droppedSecond.length;
    if (this.#droppedSecond[slot] !== second) {
      this.#droppedSecond[slot] = second;
      this.#droppedCount[slot] = 0;
    }
    this.#droppedCount[slot]!++;
    const pairs = this.#byOrg.get(oldest.org)!;
    pairs.delete(oldest.txnType);
    if (pairs.size === 0) this.#byOrg.delete(oldest.org);
    this.#pairCount--;
  }

  /** Pairs dropped from the table (for newer ones) over about the last RECENT_MS. */
  droppedRecently(now: number): number {
    const second = Math.floor(now / 1000);
    let dropped = 0;
    for (let i = 0; i < this.#droppedSecond.length; i++) if (second - this.#droppedSecond[i]! < this.#droppedSecond.length - 1) dropped += this.#droppedCount[i]!;
    return dropped;
  }

  /** Each pair with what it got over the last `recentMs`: "normal", the degradation, or "failing". */
  view(now: number, recentMs: number): Array<Record<string, unknown>> {
    const rows = [];
    for (const pairs of this.#byOrg.values()) for (const p of pairs.values()) {
      const outcomes = p.outcomes();
      const recent = outcomes.filter((o) => now - o.at <= recentMs);
      const degraded = recent.filter((o) => o.kind.startsWith('degraded:'));
      const failed = recent.filter((o) => o.kind === 'failed');
      const last = outcomes.at(-1)!;
      let getting: string;
      let detail: string | null = null;
      if (recent.length === 0) getting = 'idle';
      else if (degraded.length > 0) {
        // `x-govmap-degraded: <kind>; reason=<why>`
        const [kind, reason] = degraded.at(-1)!.kind.slice('degraded:'.length).split('; reason=');
        getting = kind ?? 'degraded';
        detail = reason ?? null;
      } else if (failed.length > 0) {
        getting = 'failing';
        detail = `HTTP ${failed.at(-1)!.status}`;
      } else getting = 'normal';
      rows.push({
        org: p.org,
        txnType: p.txnType,
        route: p.route,
        getting,
        detail,
        recent: { total: recent.length, degraded: degraded.length, failed: failed.length },
        lastStatus: last.status,
        lastSeen: new Date(p.lastSeen).toISOString(),
      });
    }
    return rows.sort((a, b) => (a.org === b.org ? String(a.txnType).localeCompare(String(b.txnType)) : String(a.org).localeCompare(String(b.org))));
  }
}

/**
 * The live governance dashboard, served by the demo on its own port:
 * - `GET /` the page (static HTML, CSS and JS from demo/dashboard/, uPlot served from
 *   node_modules; no build step, no external request: a Content-Security-Policy forbids them);
 * - `GET /events` a Server-Sent Events stream: `history` (the chart samples kept) once, then
 *   `state` (the whole dashboard state, see docs/dashboard.md) every `intervalMs`.
 * Knobs in the page call the demo's own admin endpoints with the token typed into the page.
 */
export function installDashboard(context: DemoContext, sources: DashboardSources, options: DashboardOptions = {}): void {
  const intervalMs = options.intervalMs ?? 1000;
  const historySamples = options.historySamples ?? 300;
  const maxClients = options.maxClients ?? 32;
  const stalledClientMs = options.stalledClientMs ?? 5_000;
  const startedAt = Date.now();
  const files = loadAssets();

  // ------------------------------------------------------------- observed traffic
  const orgs = new OrgOutcomes();
  let requests = 0;
  let degradedAnswers = 0;
  let failedAnswers = 0;
  const observe = (req: IncomingMessage, res: ServerResponse, biz: BizContext | undefined): void => {
    const url = req.url ?? '/';
    // The page's own requests are not traffic; only "/", "/events" and "/dashboard/..." can be.
    const second = url.charCodeAt(1);
    if (url.length === 1 || second === 0x65 /* e */ || second === 0x64 /* d */) {
      const query = url.indexOf('?');
      if (OWN_PATH.test(query < 0 ? url : url.slice(0, query))) return;
    }
    requests++;
    const degraded = res.getHeader('x-govmap-degraded');
    if (typeof degraded === 'string') degradedAnswers++;
    // Untagged answers have no org row: a Redis outage (every balance read 503) showed nowhere.
    if (res.statusCode >= 500) failedAnswers++;
    const tag = biz?.tag ?? null;
    const org = tag?.orgId;
    if (org === undefined) return;
    orgs.record(org, tag!.txnType ?? '*', biz!.decision.route.id, res.statusCode, typeof degraded === 'string' ? degraded : null, Date.now());
  };
  // Not an async function: `then` on the handler's own promise allocates less per request than
  // an async wrapper awaiting it. A handler that throws (a 502 from a failing gateway, a 503 of
  // a kill switch, a 4xx refusal) is answered by the router after this layer: its answer is
  // observed once sent, so an org whose calls fail shows "failing", not "normal" with its
  // failures missing from every count. Only that path pays for the listener.
  if (options.observeRequests !== false) context.router.use((req, res, next) => {
    const biz = currentBizContext();
    return next().then(
      () => observe(req, res, biz),
      (error: unknown) => {
        res.once('close', () => observe(req, res, biz));
        throw error;
      },
    );
  });

  // ------------------------------------------------------------- breaker transitions, switch changes
  const transitions: Array<Record<string, unknown>> = [];
  // A route's breaker key carries a digest of its rule and target (routeBreakerKey): shown by the
  // route id it serves now; a breaker no route of the table names (a rule a reload replaced) keeps its key.
  const routeKeyShown = (key: string | null): string | null => sources.routing.router.table.routes.find((r) => routeBreakerKey(r) === key)?.id ?? key;
  const keepTransition = (t: BreakerTransition): void => {
    const key = t.name === sources.routing.breakers.name ? routeKeyShown(t.key) : t.key;
    transitions.push({ at: new Date(t.at).toISOString(), breaker: key === null ? t.name : `${t.name}:${key}`, group: t.name, key, from: t.from, to: t.to, reason: t.reason });
    if (transitions.length > TRANSITIONS_KEPT) transitions.shift();
  };
  const groups: BreakerGroup[] = [sources.settlement.breakers, sources.routing.breakers];
  const unsubscribe = groups.map((g) => g.onTransition(keepTransition));
  const switchChanges: Array<Record<string, unknown>> = [];
  const changedAt = new Map<string, number>();
  for (const name of sources.switches.snapshot.names()) changedAt.set(name, sources.switches.snapshot.version);
  const unsubscribeSwitches = sources.switches.subscribe((change) => {
    for (const name of change.changed) changedAt.set(name, change.next.version);
    switchChanges.push({ at: change.next.updatedAt, version: change.next.version, changed: change.changed, actor: change.next.actor, reason: change.next.reason });
    if (switchChanges.length > SWITCH_CHANGES_KEPT) switchChanges.shift();
  });

  // ------------------------------------------------------------- chart samples
  const map = sources.book.balances;
  const history: ChartSample[] = [];
  // Starts with the histogram as of now: a range walked before the first sample still counts.
  // Timed, not counted: at another intervalMs (or after skipped ticks) a count of samples is not a minute.
  const rangeBuckets: Array<{ at: number; buckets: Float64Array }> = [{ at: Date.now(), buckets: Float64Array.from(map.counters.rangeBuckets) }];
  // Refusals by reason as /metrics exports them: the first reason codes, the rest as `_other`.
  // A validator that puts a key in its reason would otherwise add a chart series per key to
  // every sample, every page and the history sent on connect.
  const rejectionTotals = (): Map<string, number> => {
    const totals = new Map<string, number>();
    boundedReasons(map.counters.rejectionsByReason, (reason, count) => totals.set(reason, count));
    return totals;
  };
  // Requests answered: those observed above, and those the X-Biz-Tag middleware refused (400)
  // before this dashboard's layer runs, counted by the router; a flood of malformed tags showed
  // as 0 requests/s.
  const answered = (): number => {
    if (options.observeRequests === false) return requests;
    let refused = 0;
    for (const count of sources.routing.router.tagRejections.values()) refused += count;
    return requests + refused;
  };
  let previous = { at: Date.now(), loads: map.counters.loads, writes: map.counters.writes, rejections: rejectionTotals(), requests: answered(), degraded: degradedAnswers, failed: failedAnswers };
  const sample = (): ChartSample => {
    const now = Date.now();
    const c = map.counters;
    const seconds = Math.max(0.001, (now - previous.at) / 1000);
    const rejectionsPerSec: Record<string, number> = {};
    const rejections = rejectionTotals();
    const answeredNow = answered();
    for (const [reason, count] of rejections) {
      const delta = count - (previous.rejections.get(reason) ?? 0);
      rejectionsPerSec[reason] = round(delta / seconds, 2);
    }
    // range p99 over the last minute: the histogram now minus the newest one at least a minute old.
    rangeBuckets.push({ at: now, buckets: Float64Array.from(c.rangeBuckets) });
    while (rangeBuckets.length > 2 && rangeBuckets[1]!.at <= now - RANGE_WINDOW_MS) rangeBuckets.shift();
    const base = rangeBuckets[0]!.buckets;
    const windowBuckets = rangeBuckets.at(-1)!.buckets.map((n, i) => n - base[i]!);
    const p99 = bucketQuantile(windowBuckets, RANGE_BUCKETS_SECONDS, 0.99);
    const point: ChartSample = {
      t: now,
      loadsPerSec: round((c.loads - previous.loads) / seconds, 1),
      writesPerSec: round((c.writes - previous.writes) / seconds, 1),
      missRatio: map.stats().missRatio,
      rangeP99Ms: p99 === null || !Number.isFinite(p99) ? null : p99 * 1000,
      rejectionsPerSec,
      requestsPerSec: round((answeredNow - previous.requests) / seconds, 1),
      degradedPerSec: round((degradedAnswers - previous.degraded) / seconds, 1),
      failedPerSec: round((failedAnswers - previous.failed) / seconds, 1),
    };
    previous = { at: now, loads: c.loads, writes: c.writes, rejections, requests: answeredNow, degraded: degradedAnswers, failed: failedAnswers };
    history.push(point);
    if (history.length > historySamples) history.shift();
    return point;
  };

  // ------------------------------------------------------------- audit panel
  const audit = options.audit === undefined ? null : new AuditPanel(options.audit, options.verifyIntervalMs ?? 15_000);
  if (audit !== null) context.onClose(() => audit.close());

  // ------------------------------------------------------------- slow panels
  let slow: { at: number; sandbox: Record<string, unknown>; advisor: unknown[] } | null = null;
  const slowPanels = (now: number): NonNullable<typeof slow> => {
    if (slow !== null && now - slow.at < SLOW_PANELS_MS) return slow;
    const report = sources.sandbox.report();
    slow = {
      at: now,
      sandbox: {
        lastSweepAt: report.lastSweepAt,
        sweepIntervalMs: report.settings.sweepIntervalMs,
        idleThresholdMs: report.settings.idleThresholdMs,
        instances: report.instances,
        suspects: report.suspects.map((s) => ({ ...s, where: s.site?.frames[0] ?? null })),
        suspectsNotListed: report.suspectsNotListed,
        gcTrend: report.gc.trend,
      },
      advisor: sources.advisor.advise().map((a) => ({ map: a.map, recommendation: a.recommendation, reason: a.reason, signals: a.signals })),
    };
    return slow;
  };

  const state = async (latest: ChartSample): Promise<Record<string, unknown>> => {
    const now = Date.now();
    const settlement = sources.settlement.status();
    const routeBreakers = [...sources.routing.breakers.breakers()].map((b) => breakerRow('routes', routeKeyShown(b.key), b.snapshot(), b.openUntil));
    const settlementBreakers = [...sources.settlement.breakers.breakers()].map((b) => breakerRow('settlement', b.key, b.snapshot(), b.openUntil));
    const snapshot = sources.switches.snapshot;
    const { sandbox, advisor } = slowPanels(now);
    return {
      t: now,
      service: {
        startedAt: new Date(startedAt).toISOString(),
        uptimeSec: Math.round((now - startedAt) / 1000),
        pid: process.pid,
        instance: settlement.instance,
        breakerStateStore: settlement.store,
        balances: {
          map: map.name,
          store: sources.balanceStore !== null ? sources.balanceStore.kind : context.options.redis !== undefined ? 'redis' : 'in-process',
          keys: map.size,
          ...(sources.balanceStore === null ? {} : { storeStats: sources.balanceStore.stats() }),
          readWriteRatio: finiteOrNull(map.stats().readWriteRatio),
          // The ratio's sliding window (syncmap_read_write_ratio's): the page says over what it is
          // taken, since the opening balances count as writes until they age out of it.
          readWriteWindowSec: Math.round(map.stats().windowMs / 1000),
        },
      },
      sample: latest,
      breakers: [...settlementBreakers, ...routeBreakers],
      transitions: [...transitions].reverse(),
      gateway: settlement.gateway,
      settlementsQueued: settlement.settlementsQueued,
      settlementBacklog: settlement.backlog,
      routes: sources.routing.router.status().map((r) => ({
        id: r.id,
        target: r.target,
        orgId: r.orgId,
        txnType: r.txnType,
        degradation: r.degradation,
        breaker: r.breaker,
        bulkhead: r.bulkhead,
        asyncQueued: r.asyncQueued,
        cacheEntries: r.cacheEntries,
        counters: r.counters,
      })),
      targets: sources.routing.targets(),
      routing: { decisions: { ...sources.routing.router.decisions }, tagRejections: Object.fromEntries(sources.routing.router.tagRejections) },
      orgs: orgs.view(now, RECENT_MS),
      orgsNotListed: orgs.droppedRecently(now),
      switches: {
        version: snapshot.version,
        updatedAt: snapshot.updatedAt,
        actor: snapshot.actor,
        reason: snapshot.reason,
        list: Object.entries(snapshot.toJSON().switches).map(([name, definition]) => ({ name, changedAtVersion: changedAt.get(name) ?? null, definition })),
        changes: [...switchChanges].reverse(),
      },
      audit: audit === null ? { configured: false } : await audit.view(),
      sandbox,
      advisor,
    };
  };

  // ------------------------------------------------------------- the event stream
  const clients = new Set<ServerResponse>();
  /** When each page's stream last became backed up (absent: it is keeping up). */
  const backedUpSince = new Map<ServerResponse, number>();
  let ticking = false;
  const tick = async (): Promise<void> => {
    if (ticking) return; // a slow tick (audit tail read) is never overlapped by the next one
    ticking = true;
    try {
      const latest = sample();
      if (clients.size === 0) return;
      const frame = `event: state\ndata: ${JSON.stringify(await state(latest), jsonSafe)}\n\n`;
      const now = Date.now();
      for (const client of clients) {
        // A page that does not keep up misses frames rather than growing our buffers.
        if (client.writableNeedDrain) {
          const since = backedUpSince.get(client);
          if (since === undefined) backedUpSince.set(client, now);
          else if (now - since > stalledClientMs) {
            // Skipping frames alone kept its place until it disconnected: maxClients such
            // clients (a hung tab, a proxy that stopped reading) locked every operator out.
            clients.delete(client);
            backedUpSince.delete(client);
            client.destroy();
          }
          continue;
        }
        backedUpSince.delete(client);
        client.write(frame);
      }
    } catch (error) {
      console.error('govmap demo: dashboard state failed', error);
    } finally {
      ticking = false;
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  context.onClose(() => {
    clearInterval(timer);
    for (const u of unsubscribe) u();
    unsubscribeSwitches();
    for (const client of clients) client.end();
    clients.clear();
  });

  context.router.route('GET', /^\/events$/, async (req, res) => {
    if (clients.size >= maxClients) throw new HttpError(503, 'DASHBOARD_BUSY', `at most ${maxClients} dashboard pages at once`);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    // HEAD (served by this GET route): the headers, then the end. A stream has no end of its own,
    // and Node sends a HEAD answer's headers only when it ends: the client waited forever, on a
    // page's place that no page could then take.
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    openEndedAnswers.add(res);
    res.write(`retry: 2000\nevent: history\ndata: ${JSON.stringify({ intervalMs, samples: history })}\n\n`);
    clients.add(res);
    audit?.watch(true);
    req.once('close', () => {
      clients.delete(res);
      backedUpSince.delete(res);
      if (clients.size === 0) audit?.watch(false);
    });
    const latest = history.at(-1) ?? sample();
    res.write(`event: state\ndata: ${JSON.stringify(await state(latest), jsonSafe)}\n\n`);
  });

  for (const [path, asset] of Object.entries(ASSETS)) {
    const body = files.get(path)!;
    context.router.route('GET', new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`), (_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, {
        'content-type': asset.type,
        'content-length': body.length,
        'cache-control': 'no-cache',
        'content-security-policy': CONTENT_SECURITY_POLICY,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(body);
    });
  }
  context.announce('dashboard: open <url>/ (live charts, breakers, switches, routes, audit, sandbox, fault knobs); state stream: GET /events');
}

/**
 * The audit panel: the tail of the spool and the chain's last verification. Verification runs
 * in a worker thread (it reads the whole spool), one at a time, every `verifyIntervalMs` or
 * VERIFY_DUTY times its last duration, whichever is longer: a spool that has grown to take
 * seconds to verify is not re-read back to back.
 */
class AuditPanel {
  readonly #source: DashboardAuditSource;
  readonly #intervalMs: number;
  readonly #verifier = new SpoolVerifier();
  #verifying = false;
  #closed = false;
  #lastVerify: (VerifySummary & { checkedAt: string }) | null = null;
  #timer: NodeJS.Timeout | null = null;

  #watched = false;
  #cycling = false;

  constructor(source: DashboardAuditSource, intervalMs: number) {
    this.#source = source;
    this.#intervalMs = intervalMs;
    // Once at start (the spool is small then), so the first page shows a result at once.
    void this.#cycle();
  }

  /**
   * Verification runs only while a dashboard page is open: it re-reads and re-hashes the whole
   * spool (up to the retention limit), which on a busy service is a burst of a core every cycle,
   * and nobody needs the answer when nobody looks. It runs once at start; after that, a page
   * opening starts a cycle at once, and the last result stays shown (with its time) after the
   * last page closes.
   */
  watch(watched: boolean): void {
    this.#watched = watched;
    if (watched && !this.#cycling && !this.#closed) void this.#cycle();
    if (!watched && this.#timer !== null) {
      // Waiting for the next cycle: cancel it (a verification under way finishes and stops).
      clearTimeout(this.#timer);
      this.#timer = null;
      this.#cycling = false;
    }
  }

  async #cycle(): Promise<void> {
    this.#cycling = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.verify();
    if (this.#closed || !this.#watched) {
      this.#cycling = false;
      return;
    }
    // The worker's own time: its start-up (loading the modules) is paid once, not per verify.
    const took = this.#lastVerify?.ms ?? 0;
    this.#timer = setTimeout(() => void this.#cycle(), Math.max(this.#intervalMs, VERIFY_DUTY * took));
    this.#timer.unref();
  }

  /** Verifies now (unless a verification is running); resolves when it is done. */
  async verify(): Promise<void> {
    if (this.#verifying || this.#closed) return;
    this.#verifying = true;
    try {
      const summary = await this.#verifier.verify(this.#source.dir, this.#source.key ?? null);
      this.#lastVerify = { ...summary, checkedAt: new Date().toISOString() };
    } catch (error) {
      this.#lastVerify = { ...emptyVerify(), error: (error as Error).message, checkedAt: new Date().toISOString() };
    } finally {
      this.#verifying = false;
    }
  }

  async view(): Promise<Record<string, unknown>> {
    // The tail is read from files retention and rotation change under it: a read that fails
    // (a segment deleted between listing and opening it) empties this panel for one push, and
    // never costs every other panel its update.
    let tail: Array<Record<string, unknown>> = [];
    let tailError: string | null = null;
    try {
      tail = await this.#tail();
    } catch (error) {
      tailError = (error as Error).message;
    }
    return {
      configured: true,
      dir: this.#source.dir,
      verifyIntervalMs: this.#intervalMs,
      verify: this.#lastVerify,
      recorder: this.#source.stats?.() ?? null,
      tail,
      tailError,
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#verifier.close();
  }

  /** The last events of the newest segment (records, not seals or headers), newest first. */
  async #tail(): Promise<Array<Record<string, unknown>>> {
    const newest = listSegments(this.#source.dir).at(-1);
    if (newest === undefined) return [];
    const file = await open(newest.path, 'r');
    try {
      const { size } = await file.stat();
      const from = Math.max(0, size - AUDIT_TAIL_BYTES);
      const buffer = Buffer.alloc(size - from);
      await file.read(buffer, 0, buffer.length, from);
      const lines = buffer.toString('utf8').split('\n');
      if (from > 0) lines.shift(); // cut mid-line
      const events = [];
      for (const line of lines.reverse()) {
        if (line === '') continue;
        const parsed = parseSpoolLine(line);
        if (parsed.kind !== 'event') continue;
        const e = parsed.event;
        events.push({ seq: e.seq, op: e.op_type, map: e.map, resource: e.resource_id, outcome: e.outcome, reason: e.reason, traceId: e.trace_id, at: nsToIso(e.timestamp) });
        if (events.length >= AUDIT_TAIL_EVENTS) break;
      }
      return events;
    } finally {
      await file.close();
    }
  }
}

function emptyVerify(): VerifySummary {
  return { ok: false, records: 0, seals: 0, files: 0, lastSeq: null, gaps: 0, unsealedRecords: 0, firstBad: null, problems: 0, ms: 0, error: null };
}

function breakerRow(group: string, key: string | null, snapshot: { state: string; failures: number; timeouts: number; total: number; breachedWindows: number; since: string }, openUntil: number | null): Record<string, unknown> {
  return { group, key, state: snapshot.state, since: snapshot.since, window: { failures: snapshot.failures, timeouts: snapshot.timeouts, total: snapshot.total, breachedWindows: snapshot.breachedWindows }, openUntil: openUntil === null ? null : new Date(openUntil).toISOString() };
}

/** The page's files: demo/dashboard/ next to this module (or the source tree's, for dist/demo/), uPlot from node_modules. */
function loadAssets(): Map<string, Buffer> {
  const here = new URL('./dashboard/', import.meta.url);
  const candidates = [here, new URL('../../demo/dashboard/', import.meta.url)];
  const directory = candidates.find((c) => existsSync(fileURLToPath(new URL('index.html', c))));
  if (directory === undefined) throw new Error(`govmap demo: the dashboard's files are missing (looked in ${candidates.map((c) => fileURLToPath(c)).join(', ')})`);
  const require = createRequire(import.meta.url);
  const files = new Map<string, Buffer>();
  for (const [path, asset] of Object.entries(ASSETS)) {
    files.set(path, readFileSync(asset.vendor === true ? require.resolve(asset.file) : fileURLToPath(new URL(asset.file, directory))));
  }
  return files;
}

function nsToIso(ns: string): string | null {
  if (!/^[0-9]{1,30}$/.test(ns)) return null;
  return new Date(Number(BigInt(ns) / 1_000_000n)).toISOString();
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function finiteOrNull(value: number | null): number | null {
  return value === null || !Number.isFinite(value) ? null : round(value, 1);
}

/** bigints (money) as decimal strings, like every amount on the wire. */
function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
