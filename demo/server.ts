import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MapMetrics } from '../src/metrics/index.ts';
import { installAccountRoutes } from './accounts.ts';
import { sendJson } from './http.ts';
import { Ledger } from './ledger.ts';
import type { BalanceBook } from './book.ts';
import { installRedisLedger } from './redis.ts';
import type { DemoRedisOptions } from './redis.ts';
import { Router } from './router.ts';
import { installSandboxAndAdvisor, startDemoSandbox } from './sandbox.ts';
import type { DemoSandboxOptions } from './sandbox.ts';
import { installStaticAnalysis } from './lint.ts';
import { installSwitches } from './switches.ts';
import type { DemoSwitchOptions } from './switches.ts';
import { installRouting } from './routing.ts';
import type { DemoRoutingOptions } from './routing.ts';
import { installRuntimeProbe } from './runtime-probe.ts';
import { createSharedBalanceStore, installSharedMemory } from './shared-memory.ts';
import { installSettlement } from './breaker.ts';
import type { DemoSettlementOptions } from './breaker.ts';

export interface DemoOptions {
  /** Default 8080; 0 picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1: the demo is not meant to face a network. */
  readonly host?: string;
  /** Accounts seeded as acct-000000…; default 1,000. */
  readonly accounts?: number;
  /** Opening balance of each seeded account, minor units; default 1,000,000 (10,000.00). */
  readonly openingBalance?: bigint;
  /** Balances in Redis (one server or a cluster), shared by every demo process on it; default in process. */
  readonly redis?: DemoRedisOptions;
  /** Runtime audit sandbox and migration advisor settings (thresholds, state directory). */
  readonly sandbox?: DemoSandboxOptions;
  /** Switch file and admin token (default: env GOVMAP_SWITCH_FILE, GOVMAP_ADMIN_TOKEN). */
  readonly switches?: DemoSwitchOptions;
  /** Route table file and async spill file (default: env GOVMAP_ROUTE_FILE, GOVMAP_ASYNC_SPILL). */
  readonly routing?: DemoRoutingOptions;
  /** Settlement gateway faults and breaker state sharing (etcd endpoints, instance name, admin token). */
  readonly settlement?: DemoSettlementOptions;
}

/**
 * What each part of govmap gets to plug itself into the demo: the router (routes, middleware,
 * error mapping), the ledger, the metrics registry, and shutdown hooks. A part lives in
 * `demo/<part>.ts` and exports an `install…(context)` function called below.
 */
export interface DemoContext {
  readonly options: DemoOptions;
  readonly router: Router;
  readonly ledger: Ledger;
  readonly metrics: MapMetrics;
  /** Runs on close, in reverse order of registration. */
  readonly onClose: (hook: () => Promise<void> | void) => void;
  /** A line the CLI prints at start (where to look, which token to use). */
  readonly announce: (line: string) => void;
}

export interface DemoService {
  readonly server: Server;
  readonly url: string;
  readonly ledger: Ledger;
  /** The balances the account routes use: `ledger`, or the Redis-backed one with `redis`. */
  readonly book: BalanceBook;
  readonly metrics: MapMetrics;
  readonly router: Router;
  /** Lines the parts asked to show at start. */
  readonly announcements: readonly string[];
  close(): Promise<void>;
}

/**
 * The reference clearing service: balances in a GovernedMap, credit/debit/transfer over HTTP,
 * Prometheus metrics, and every governance part plugged in. Every refusal is a 4xx JSON
 * `{error:{code, reason}}`; a refused request changes nothing.
 */
export async function startDemo(options: DemoOptions = {}): Promise<DemoService> {
  // Before the ledger, so that the sandbox records where its map is created.
  const sandbox = startDemoSandbox(options.sandbox);
  // Balances in shared memory, so worker threads can read them (GET /shared-memory/exposure).
  const sharedBalances = createSharedBalanceStore(options.accounts ?? 1000);
  const ledger = new Ledger({ store: sharedBalances });
  ledger.seed(options.accounts ?? 1000, options.openingBalance ?? 1_000_000n);
  const metrics = new MapMetrics().track(ledger.balances);
  const router = new Router();
  const closeHooks: Array<() => Promise<void> | void> = [];
  const announcements: string[] = [];
  const context: DemoContext = {
    options,
    router,
    ledger,
    metrics,
    onClose: (hook) => closeHooks.push(hook),
    announce: (line) => announcements.push(line),
  };

  router.route('GET', /^\/healthz$/, (_req, res) => sendJson(res, 200, { status: 'ok' }));
  router.route('GET', /^\/metrics$/, async (_req, res) => {
    const text = await metrics.render();
    res.writeHead(200, { 'content-type': metrics.contentType });
    res.end(text);
  });
  const book: BalanceBook =
    options.redis === undefined ? ledger : await installRedisLedger(context, options.redis, { accounts: options.accounts ?? 1000, openingBalance: options.openingBalance ?? 1_000_000n });
  installAccountRoutes(router, book, await installSettlement(context, options.settlement));
  installRuntimeProbe(router, context.onClose);
  installSharedMemory(context, sharedBalances);
  // Parts plug in here: installX(context).
  await installSandboxAndAdvisor(context, sandbox, options.sandbox);
  // GET /lint/report: govmap scan of the demo's own source, run on first request.
  installStaticAnalysis(context);
  // X-Biz-Tag middleware (every handler runs behind it), GET /switches, /admin/switches, GET /routes, /payments.
  const switches = await installSwitches(context, { file: process.env.GOVMAP_SWITCH_FILE, adminToken: process.env.GOVMAP_ADMIN_TOKEN, ...options.switches });
  await installRouting(context, switches.board, switches.token, { routeFile: process.env.GOVMAP_ROUTE_FILE, spillFile: process.env.GOVMAP_ASYNC_SPILL, ...options.routing });

  const server = createServer((req, res) => {
    void router.handle(req, res);
  });
  // Slow-loris and idle sockets must not pin the service.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  const host = options.host ?? '127.0.0.1';
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 8080, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await runCloseHooks(closeHooks);
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${host}:${port}`,
    ledger,
    book,
    metrics,
    router,
    announcements,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      await runCloseHooks(closeHooks);
    },
  };
}

async function runCloseHooks(hooks: Array<() => Promise<void> | void>): Promise<void> {
  for (const hook of hooks.reverse()) {
    try {
      await hook();
    } catch (error) {
      console.error('govmap demo: a shutdown step failed', error);
    }
  }
}
