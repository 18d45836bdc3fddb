import { constants, existsSync, readFileSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { access, appendFile, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BreakerGroup } from '../src/breaker/index.ts';
import { ValidationError } from '../src/map/index.ts';
import { RedisUnavailableError } from '../src/stores/redis/errors.ts';
import { FileRouteTableSource, Router as RouteRouter, RoutingMetrics, breakerGuards, createBizTagMiddleware, currentBizContext, currentBizTag, sendRouteOutcome } from '../src/routing/index.ts';
import type { AsyncJob, RoutedJob } from '../src/routing/index.ts';
import { isRestorableJob } from '../src/routing/router.ts';
import type { SwitchBoard } from '../src/switches/index.ts';
import { HttpError, adminCheck, assertOnlyFields, readJsonObject, sendJson, shown } from './http.ts';
import type { BalanceBook } from './book.ts';
import { DemoEnvironmentError } from './environment.ts';
import { LedgerError } from './ledger.ts';
import { formatAmount, isMinorUnits, parsePositiveAmount } from './money.ts';
import type { DemoContext } from './server.ts';

export interface DemoRoutingOptions {
  /** A JSON/YAML route table to load and watch (env GOVMAP_ROUTE_FILE). Default: DEMO_ROUTES. */
  readonly routeFile?: string;
  /** Where queued payments not processed at shutdown are written, and restored from at start (env GOVMAP_ASYNC_SPILL). */
  readonly spillFile?: string;
  /** How long shutdown keeps processing queued payments, ms. Default 5000. */
  readonly drainMs?: number;
  /**
   * The settlement gateway's per-org faults (demo/breaker.ts `SettlementGateway.disturb`), applied
   * before a routed call made for that org: a fault set for one org fails or slows exactly that
   * org's payments, so its route's breaker opens and its degradation starts. Default: none.
   */
  readonly orgFaults?: (org: string | undefined, signal: AbortSignal) => Promise<void>;
  /** Where payments are booked: the account routes' book (the Redis one with --redis). Default: the in-process ledger. */
  readonly book?: BalanceBook;
  /**
   * Results of queued payments kept for GET /payments/<token>, newest first. Default 10,000, as
   * many as the async lane keeps final statuses of: a service degraded for a day queues millions.
   */
  readonly resultsKept?: number;
  /** Whether every request goes through the X-Biz-Tag middleware. Default true; false only to measure what it costs (demo/parts.ts). */
  readonly middleware?: boolean;
}

/** What GET /payments/<token> reports once a queued payment has been dealt with. */
export type QueuedPaymentResult =
  | { readonly status: 'SETTLED'; readonly reference: string }
  | { readonly status: 'REJECTED'; readonly reason: string }
  | { readonly status: 'NEEDS_RECONCILIATION'; readonly reason: string; readonly detail: string };

/**
 * What the ledger's answer to a queued payment's booking means for its payer; null when it is no
 * answer of the ledger's (a failure the lane retries). Every answer here is final, never retried:
 * - a refusal (insufficient funds: the balances validator's ValidationError; an account gone:
 *   a 4xx LedgerError) moved nothing: REJECTED, with the reason;
 * - a booking whose outcome is unknown or half done (the payer debited, the credit or its
 *   reversal not confirmed: a 5xx LedgerError) may have moved money, so it is neither REJECTED
 *   (the payer would think nothing moved) nor retried (a second debit): NEEDS_RECONCILIATION.
 *   So is a debit Redis may or may not have applied (RedisUnavailableError, outcome `unknown`):
 *   the Redis ledger lets it through as it is, and retried it could debit the payer twice.
 */
export function bookingResult(error: unknown): QueuedPaymentResult | null {
  if (error instanceof ValidationError) return { status: 'REJECTED', reason: error.reason };
  if (error instanceof RedisUnavailableError && error.outcome === 'unknown') return { status: 'NEEDS_RECONCILIATION', reason: error.code, detail: error.message };
  if (!(error instanceof LedgerError)) return null;
  if (error.status < 500) return { status: 'REJECTED', reason: error.code };
  return { status: 'NEEDS_RECONCILIATION', reason: error.code, detail: error.message };
}

/** Routing as the rest of the demo sees it (the dashboard reads its state). */
export interface DemoRouting {
  readonly router: RouteRouter;
  /** One breaker per route ("routes:<route id>"). */
  readonly breakers: BreakerGroup;
  /** Fault knobs of each routed target (POST /admin/routing/faults). */
  targets(): Record<string, { failureRate: number; latencyMs: number; calls: number; failures: number }>;
}

/**
 * The demo's route table: org 1001 and its sub-orgs queue payments (async, 20/s) while their
 * gateway is down; org 2002's payments are refused with a fixed answer (mock: 503, not taken,
 * send again later); FX quotes of any org are served from cache (60 s); org 3003's payments and
 * other orgs' transfers go to the core gateway, as does any tag no rule matches (counted and
 * alerted as unmatched), with no degradation.
 */
export const DEMO_ROUTES = {
  default: { target: 'gw-core' },
  routes: [
    {
      id: 'org-1001',
      orgId: '1001*',
      txnType: '*',
      target: 'gw-north',
      degradation: { kind: 'async', ratePerSec: 20, maxQueued: 1000, maxAttempts: 5 },
      bulkhead: { maxConcurrent: 16, maxQueued: 32 },
      description: 'northern clearing: payments queue while the gateway is down',
    },
    {
      id: 'org-2002-pay',
      orgId: '2002',
      txnType: 'pay',
      target: 'gw-south',
      // Nothing keeps the payment (no token, no record): the answer must say it was not taken,
      // or a client would wait for a payment that never comes. Nothing of it was kept either, so
      // sending it again cannot book it twice.
      degradation: {
        kind: 'mock',
        status: 503,
        body: {
          error: {
            code: 'SETTLEMENT_GATEWAY_DEGRADED',
            reason: 'the settlement gateway is degraded for this org: the payment was not booked, queued or held and no money moved; send it again after retry-after seconds',
          },
        },
        headers: { 'retry-after': '10' },
      },
      bulkhead: { maxConcurrent: 16, maxQueued: 32 },
    },
    // The rest of the demo's own traffic has rules too, so the unmatched-traffic alert fires
    // only for tags nobody configured (try orgId:9999).
    { id: 'org-3003-pay', orgId: '3003', txnType: 'pay', target: 'gw-core', description: 'eastern clearing: payments on the core gateway, a breaker of their own' },
    { id: 'transfers', orgId: '*', txnType: 'transfer', target: 'gw-core', description: 'transfers of orgs without a rule of their own: the core gateway' },
    { id: 'fx-quotes', orgId: '*', txnType: 'fx', target: 'gw-fx', degradation: { kind: 'cache', ttlMs: 60_000 } },
  ],
};

/**
 * The routed downstreams, simulated: one per target, each with its own fault knobs, failing an
 * exact share of calls (an accumulator, not randomness: a demo run shows the same rates every time).
 */
class DemoTargets {
  readonly #faults = new Map<string, { failureRate: number; latencyMs: number; calls: number; failures: number; accumulator: number }>();

  #of(target: string) {
    let faults = this.#faults.get(target);
    if (faults === undefined) this.#faults.set(target, (faults = { failureRate: 0, latencyMs: 2, calls: 0, failures: 0, accumulator: 0 }));
    return faults;
  }

  set(target: string, failureRate: number | undefined, latencyMs: number | undefined): void {
    const faults = this.#of(target);
    if (failureRate !== undefined) faults.failureRate = failureRate;
    if (latencyMs !== undefined) faults.latencyMs = latencyMs;
  }

  async call(target: string, signal: AbortSignal): Promise<void> {
    const faults = this.#of(target);
    faults.calls++;
    if (faults.latencyMs > 0) await sleep(faults.latencyMs, undefined, { signal });
    faults.accumulator += faults.failureRate;
    if (faults.accumulator >= 1 - 1e-9) {
      faults.accumulator -= 1;
      faults.failures++;
      throw new Error(`${target}: 503 service unavailable`);
    }
  }

  toJSON(): Record<string, { failureRate: number; latencyMs: number; calls: number; failures: number }> {
    return Object.fromEntries([...this.#faults].map(([t, f]) => [t, { failureRate: f.failureRate, latencyMs: f.latencyMs, calls: f.calls, failures: f.failures }]));
  }
}

/** A payment as queued: amounts as decimal strings (money never travels as a float). */
interface PaymentJob {
  readonly from: string;
  readonly to: string;
  readonly amount: string;
  /** The paying org (X-Biz-Tag orgId), so a queued payment meets its org's gateway fault later too. */
  readonly org?: string;
}

/** Indicative FX rates, decimal strings. */
const FX_RATES: Record<string, string> = { EURUSD: '1.0842', GBPUSD: '1.2710', USDJPY: '151.37', USDCNY: '7.2384' };

/**
 * X-Biz-Tag routing in the demo. Every request passes the tag middleware (malformed tag: 400;
 * none: the default route). POST /payments and GET /fx/<pair> call their route's downstream
 * through the route's own breaker and bulkhead, and degrade per the table. GET /routes shows
 * the table and each route's state; POST /admin/routing/faults (admin token) breaks a target.
 */
export async function installRouting(context: DemoContext, switches: SwitchBoard, adminToken: string, options: DemoRoutingOptions = {}): Promise<DemoRouting> {
  const book: BalanceBook = options.book ?? context.ledger;
  const targets = new DemoTargets();
  const orgFaults = options.orgFaults ?? (async () => {});
  // The org's gateway fault first, then the target's own knobs.
  const callTarget = async (target: string, org: string | undefined, signal: AbortSignal): Promise<void> => {
    await orgFaults(org, signal);
    await targets.call(target, signal);
  };
  const results = new Map<string, QueuedPaymentResult>();
  const resultsKept = options.resultsKept ?? 10_000;
  const keepResult = (token: string, result: QueuedPaymentResult): void => {
    results.set(token, result);
    // Oldest first out (a Map iterates in insertion order): bounded like the lane's statuses.
    if (results.size > resultsKept) results.delete(results.keys().next().value!);
  };
  /**
   * Bookings of queued payments in flight, by job token. The booking runs inside the route's
   * guarded call, whose timeout (200 ms) cannot stop it (a book takes no signal): an attempt that
   * times out mid-booking is retried by the lane, and booked the payment again on every retry.
   * A retry awaits the booking already started instead.
   */
  const bookings = new Map<string, Promise<void>>();
  const bookQueued = async (job: PaymentJob, token: string): Promise<void> => {
    try {
      await book.transfer(job.from, job.to, BigInt(job.amount));
      keepResult(token, { status: 'SETTLED', reference: context.nextReference() });
    } catch (error) {
      const result = bookingResult(error);
      // Not the ledger's answer: a failure the lane retries.
      if (result === null) throw error;
      keepResult(token, result);
    }
  };
  // minimumCalls 1: the demo's background traffic sends each org's route about one payment a
  // second; three consecutive breached windows still decide (one failure never trips a route).
  const group = new BreakerGroup({ name: 'routes', timeoutMs: 200, windowMs: 1000, minimumCalls: 1, openDurationMs: 10_000 });
  // The cache degradation's maps are GovernedMaps like any other: syncmap_* metrics for them too.
  // A table that changes a cache route (a route file reload) builds it a new map and disposes the
  // old one, which MapMetrics then drops: track the caches again after every table applied.
  const trackCaches = (r: RouteRouter): void => {
    for (const runtime of r.runtimes()) if (runtime.cache !== null) context.metrics.track(runtime.cache.map);
  };
  const router = new RouteRouter({
    table: DEMO_ROUTES,
    onTableApplied: trackCaches,
    guards: breakerGuards(group),
    switches,
    // A queued payment, later: the gateway first, then the booking (which may be refused by then).
    processAsync: async (target, payload, signal, token) => {
      const job = payload as PaymentJob;
      let booking = bookings.get(token);
      if (booking === undefined) {
        // Booked by an earlier attempt that timed out after its booking finished: done, once.
        if (results.has(token)) return;
        await callTarget(target, job.org, signal);
        // Kept until it settles: a retryable failure (no answer of the ledger's) is booked afresh.
        booking = bookQueued(job, token).finally(() => bookings.delete(token));
        bookings.set(token, booking);
      }
      await booking;
    },
  });
  const routingMetrics = new RoutingMetrics({ registry: context.metrics.registry }).track(router);
  const source = options.routeFile === undefined ? null : new FileRouteTableSource({ path: options.routeFile, router });
  if (source !== null) {
    // A route file that stops loading must show on /metrics, not only in a log line.
    routingMetrics.trackSource(source);
    await source.start();
  }
  if (options.spillFile !== undefined) await checkSpillFile(options.spillFile);
  await restoreSpill(router, options.spillFile);

  // exposeRoute off: sendJson writes x-govmap-route in its own writeHead (see demo/http.ts).
  if (options.middleware !== false) context.router.use(createBizTagMiddleware({ router, switches, exposeRoute: false }));
  context.onClose(async () => {
    source?.close();
    const { processed, remaining } = await router.close({ deadlineMs: options.drainMs ?? 5000 });
    group.dispose();
    if (remaining.length === 0) {
      if (processed > 0) console.log(`govmap demo: ${processed} queued payment(s) processed during shutdown`);
      return;
    }
    // Nothing accepted is dropped silently: without a spill file, or when it cannot be written
    // now (checked at start, but a disk fills and a path can be replaced), they go to the log, whole.
    const listOnStderr = (why: string): void => {
      console.error(`govmap demo: ${remaining.length} queued payment(s) not processed (${why}):`);
      for (const job of remaining) console.error(JSON.stringify(job));
    };
    if (options.spillFile === undefined) {
      listOnStderr('set GOVMAP_ASYNC_SPILL to keep them across restarts');
      return;
    }
    try {
      // Appended: the file may hold payments kept at start (not restorable, waiting for an
      // operator); rewriting it with these alone lost them.
      await appendFile(options.spillFile, spillSeparator(options.spillFile) + remaining.map((job) => JSON.stringify(job)).join('\n') + '\n');
      console.log(`govmap demo: ${remaining.length} queued payment(s) not processed; written to ${options.spillFile}, restored at the next start`);
    } catch (error) {
      listOnStderr(`${options.spillFile} could not be written: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  });
  context.announce(`routing: X-Biz-Tag routes (table v${router.table.version} from ${source === null ? 'the built-in table' : source.status().path}); GET /routes`);
  context.announce(`try: curl -X POST <url>/payments -H 'x-biz-tag: orgId:100101|txnType:pay' -H 'content-type: application/json' -d '{"from":"acct-000001","to":"acct-000002","amount":"2500"}'`);

  const authorise = adminCheck(adminToken);

  context.router.route('GET', /^\/routes$/, (_req, res) => {
    sendJson(res, 200, {
      table: router.table.toJSON(),
      routes: router.status(),
      decisions: router.decisions,
      tagRejections: Object.fromEntries(router.tagRejections),
      feed: source === null ? { kind: 'built-in' } : { kind: 'file', ...source.status() },
      targets: targets.toJSON(),
      yourRequest: { tag: currentBizTag()?.toRecord() ?? null, route: currentBizContext()?.decision.route.id ?? null },
    });
  });

  context.router.route('POST', /^\/admin\/routing\/faults$/, async (req, res) => {
    authorise(req);
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['target', 'failureRate', 'latencyMs']);
    const { target, failureRate, latencyMs } = body;
    if (typeof target !== 'string' || !router.table.routes.some((r) => r.target === target)) {
      throw new HttpError(400, 'FAULT_TARGET_UNKNOWN', `"target" is one of: ${[...new Set(router.table.routes.map((r) => r.target))].join(', ')} (got ${shown(target)})`);
    }
    if (failureRate !== undefined && (typeof failureRate !== 'number' || !(failureRate >= 0 && failureRate <= 1))) {
      throw new HttpError(400, 'FAULT_RATE_INVALID', `"failureRate" is a number from 0 to 1 (got ${shown(failureRate)})`);
    }
    if (latencyMs !== undefined && (typeof latencyMs !== 'number' || !Number.isInteger(latencyMs) || latencyMs < 0 || latencyMs > 60_000)) {
      throw new HttpError(400, 'FAULT_LATENCY_INVALID', `"latencyMs" is a whole number of milliseconds from 0 to 60000 (got ${shown(latencyMs)})`);
    }
    targets.set(target, failureRate, latencyMs);
    sendJson(res, 200, { target, ...targets.toJSON()[target] });
  });

  context.router.route('POST', /^\/payments$/, async (req, res) => {
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['from', 'to', 'amount']);
    if (typeof body.from !== 'string' || typeof body.to !== 'string') throw new HttpError(400, 'PAYMENT_ACCOUNTS_MISSING', '"from" and "to" must be account id strings');
    const amount = parsePositiveAmount(body.amount);
    const view = switches.view();
    const enabled = view.evaluate('payments.enabled');
    if (!enabled.on) throw new HttpError(503, 'PAYMENTS_DISABLED', `payments are switched off for this request (switch payments.enabled: ${enabled.reason}, v${enabled.version})`);
    // Fail closed: a limit that is not minor units (a JSON number, "1,000", "" from a switch
    // file) refuses every payment rather than lifting the limit; no switch at all means limit 0.
    const limit = view.value('payments.limit', '0');
    if (!isMinorUnits(limit)) {
      throw new HttpError(
        503,
        'PAYMENT_LIMIT_INVALID',
        `payments are refused until switch payments.limit (v${view.version}) serves a decimal string of minor units; it serves ${shown(limit, 40)}`,
      );
    }
    if (amount > BigInt(limit)) {
      throw new HttpError(422, 'PAYMENT_LIMIT_EXCEEDED', `${formatAmount(amount)} is above the limit of ${limit} minor units (switch payments.limit, v${view.version})`);
    }
    await book.balance(body.from); // 404 now for an unknown account, before anything is routed
    await book.balance(body.to);
    // Refused here, as the ledger would: left to the booking, a degraded route accepted it (202
    // queued) to fail later, and a live one had the gateway authorise it first.
    if (body.from === body.to) throw new LedgerError(400, 'TRANSFER_SAME_ACCOUNT', 'a transfer needs two different accounts');
    const org = currentBizTag()?.orgId;
    const job: PaymentJob = { from: body.from, to: body.to, amount: amount.toString(), ...(org === undefined ? {} : { org }) };
    const outcome = await routedOrBadGateway(() => router.execute({ payload: job, signature: `payment:${job.from}:${job.to}:${job.amount}` }, (target, signal) => callTarget(target, org, signal)));
    if (outcome === null) {
      throw new HttpError(502, 'SETTLEMENT_GATEWAY_FAILED', 'the settlement gateway failed the payment; nothing was booked, retry later');
    }
    // Authorised by the gateway: book it before answering (the book may still refuse: 4xx, nothing
    // moved). The book may be remote (Redis), so the booking is awaited here, not in the writer.
    const moved = outcome.kind === 'live' || outcome.kind === 'cache' ? await book.transfer(job.from, job.to, amount) : null;
    sendRouteOutcome(
      res,
      outcome,
      () => {
        if (moved === null) throw new Error('unreachable: a live outcome was booked above');
        sendJson(res, 200, {
          status: 'SETTLED',
          reference: context.nextReference(),
          instantConfirm: view.isOn('payments.instant-confirm'),
          route: outcome.route.id,
          from: { id: job.from, balance: formatAmount(moved.from) },
          to: { id: job.to, balance: formatAmount(moved.to) },
          amount: formatAmount(amount),
        });
      },
      { statusPath: (token) => `/payments/${token}` },
    );
  });

  context.router.route('GET', /^\/payments\/([0-9a-f-]{36})$/, (_req, res, [token]) => {
    const status = router.jobStatus(token!);
    if (status === undefined) throw new HttpError(404, 'PAYMENT_UNKNOWN', `no queued payment with token ${token}`);
    sendJson(res, 200, { ...status, result: results.get(token!) ?? null });
  });

  context.router.route('GET', /^\/fx\/([A-Z]{6})$/, async (_req, res, [pair]) => {
    const rate = FX_RATES[pair!];
    if (rate === undefined) throw new HttpError(404, 'FX_PAIR_UNKNOWN', `no rate for ${pair}; known: ${Object.keys(FX_RATES).join(', ')}`);
    const outcome = await routedOrBadGateway(() =>
      router.execute({ signature: `fx:${pair}` }, async (target, signal) => {
        await targets.call(target, signal);
        return { pair, rate, quotedAt: new Date().toISOString() };
      }),
    );
    if (outcome === null) throw new HttpError(502, 'FX_GATEWAY_FAILED', 'the FX gateway failed; retry later');
    sendRouteOutcome(res, outcome, (quote) => sendJson(res, 200, quote));
  });

  return { router, breakers: group, targets: () => targets.toJSON() };
}

/** The routed call, or null when its downstream failed with the breaker closed (the caller answers 502). */
async function routedOrBadGateway<T>(run: () => Promise<T>): Promise<T | null> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof HttpError || error instanceof LedgerError) throw error;
    return null;
  }
}

const SPILL_VARIABLE = 'GOVMAP_ASYNC_SPILL';

/**
 * Refuses, at start, a spill file the shutdown could not write: the payments still queued then
 * would have had nowhere to go, found out only when they are already being lost.
 */
async function checkSpillFile(spillFile: string): Promise<void> {
  if (spillFile.trim() === '') throw new DemoEnvironmentError(SPILL_VARIABLE, spillFile, 'give a file path, or unset it to have queued payments listed on stderr at shutdown');
  let existing: Stats | undefined;
  try {
    existing = await stat(spillFile);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new DemoEnvironmentError(SPILL_VARIABLE, spillFile, `cannot be checked (${code})`, code, error);
  }
  if (existing?.isDirectory() === true) throw new DemoEnvironmentError(SPILL_VARIABLE, spillFile, 'is a directory: name the file queued payments are written to at shutdown', 'EISDIR');
  const writable = existing === undefined ? dirname(resolve(spillFile)) : spillFile;
  try {
    await access(writable, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EACCES';
    throw new DemoEnvironmentError(SPILL_VARIABLE, spillFile, `${writable} cannot be written (${code}): payments still queued at shutdown would be lost`, code, error);
  }
}

/** A newline first when the spill file's last line lacks one (an operator's edit), so no two lines join. */
function spillSeparator(spillFile: string): string {
  try {
    const text = readFileSync(spillFile, 'utf8');
    return text === '' || text.endsWith('\n') ? '' : '\n';
  } catch {
    return '';
  }
}

async function restoreSpill(router: RouteRouter, spillFile: string | undefined): Promise<void> {
  if (spillFile === undefined || !existsSync(spillFile)) return;
  const lines = (await readFile(spillFile, 'utf8')).split('\n').filter((line) => line.trim() !== '');
  // A damaged file is refused whole and kept: restoring the lines that parse would lose the
  // others for good at the next shutdown, which rewrites the file.
  const jobs = lines.map((line, index) => {
    try {
      const job = JSON.parse(line) as unknown;
      if (job === null || typeof job !== 'object' || Array.isArray(job)) throw new Error('not a JSON object');
      return job as AsyncJob<RoutedJob>;
    } catch (error) {
      throw new DemoEnvironmentError(SPILL_VARIABLE, spillFile, `line ${index + 1} is not a queued payment this demo wrote (${(error as Error).message}); the file is kept: repair or move it, then start again`);
    }
  });
  const { restored, unroutable } = router.restoreJobs(jobs);
  if (unroutable.length > 0) {
    await writeFile(spillFile, unroutable.map((job) => JSON.stringify(job)).join('\n') + '\n');
    // The router returns damaged jobs with the ones it has no lane for: each gets its own reason,
    // with its line in the file as it was and as rewritten, so the one to repair can be found.
    console.error(`govmap demo: ${unroutable.length} spilled payment(s) not restored, kept in ${spillFile}:`);
    unroutable.forEach((job, kept) => {
      const where = `${spillFile} line ${jobs.indexOf(job) + 1} (now line ${kept + 1})`;
      if (!isRestorableJob(job)) {
        console.error(`  ${where}: damaged: not a queued payment this demo wrote (it needs a token, attempts, a route and a valid X-Biz-Tag): repair it, then start again`);
        return;
      }
      const route = router.table.route(job.payload.route);
      console.error(
        route === undefined || route.degradation.kind !== 'async'
          ? `  ${where}: its route "${job.payload.route}" has no async lane any more: restore the route, then start again`
          : `  ${where}: the queue of route "${job.payload.route}" is full (maxQueued ${route.degradation.maxQueued}): start again once it has room`,
      );
    });
  } else {
    await rm(spillFile);
  }
  if (restored > 0) console.log(`govmap demo: ${restored} queued payment(s) restored from ${spillFile}`);
}
