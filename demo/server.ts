import { randomBytes } from 'node:crypto';
import { STATUS_CODES, createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { ConfigurationError } from '../src/map/index.ts';
import { MapMetrics } from '../src/metrics/index.ts';
import { installAccountRoutes } from './accounts.ts';
import { CLOSE_DRAIN_MS, allowedHostProblem, drain, hostCheck, refuseHost, sendError, sendJson, serviceUrl, whenAnswered } from './http.ts';
import { Ledger } from './ledger.ts';
import { auditGovernance, auditSummary, installAudit, startDemoAudit, switchAudit } from './audit.ts';
import type { DemoAuditOptions } from './audit.ts';
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
import { installDashboard } from './dashboard.ts';
import { DemoEnvironmentError, withEnvironmentFile } from './environment.ts';
import type { DashboardOptions } from './dashboard.ts';
import { startTraffic } from './traffic.ts';
import type { OptionalPart } from './parts.ts';
import type { DemoTrafficOptions } from './traffic.ts';

export interface DemoOptions {
  /** Default 8080; 0 picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1: the demo is not meant to face a network. */
  readonly host?: string;
  /**
   * Names the service answers to in Host besides localhost, *.localhost, IP addresses and `host`:
   * a request naming any other is refused (403 HOST_NOT_ALLOWED), against DNS rebinding. Default: env GOVMAP_DEMO_ALLOWED_HOSTS (comma-separated), else none.
   */
  readonly allowedHosts?: readonly string[];
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
  /** Audit of the balances into a spool, optionally forwarded to Kafka (demo/audit.ts). Default off; `govmap demo` turns it on (./.govmap/audit). */
  readonly audit?: DemoAuditOptions | false;
  /**
   * The one bearer token of every admin endpoint (/admin/faults, /admin/switches,
   * /admin/routing/faults, the leak drill /sandbox/drill/leak) and of the dashboard's knobs.
   * Default: env GOVMAP_ADMIN_TOKEN, else a random one announced at start. A part's own
   * `adminToken` (settlement, switches), when given too, must be the same one.
   */
  readonly adminToken?: string;
  /** Background traffic through the service's own HTTP handlers (demo/traffic.ts). Default off; `govmap demo` turns it on. */
  readonly traffic?: boolean | DemoTrafficOptions;
  /** The live dashboard at `/` (demo/dashboard.ts): push interval, audit spool to show. */
  readonly dashboard?: DashboardOptions;
  /**
   * Parts of governance left out, to measure what each costs (demo/parts.ts, `govmap bench
   * cost`). Default none: the reference service runs with every part.
   */
  readonly without?: readonly OptionalPart[];
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
  /** The admin token every admin endpoint checks, and how announcements show it. */
  readonly admin: DemoAdmin;
  /**
   * The next settlement reference (`stl-<n>`), one sequence for the whole service: settled
   * transfers and routed payments each kept a counter of their own and handed out the same ones.
   */
  readonly nextReference: () => string;
}

export interface DemoAdmin {
  readonly token: string;
  /** The token itself when it was generated; `$GOVMAP_ADMIN_TOKEN` when it was given (never echoed). */
  readonly shown: string;
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
  /** What the audit did so far (records, losses, Kafka), for closing lines; [] without audit. */
  auditSummary(): string[];
  close(): Promise<void>;
}

/**
 * The reference clearing service: balances in a GovernedMap, credit/debit/transfer over HTTP,
 * Prometheus metrics, and every governance part plugged in. Every refusal is a 4xx JSON
 * `{error:{code, reason}}`; a refused request changes nothing.
 */
export async function startDemo(options: DemoOptions = {}): Promise<DemoService> {
  // One token for every admin endpoint; the parts' own adminToken options (older) fold into it.
  // Checked before anything starts: a refused start leaves nothing running.
  const givenToken = oneAdminToken(options);
  const allowedHosts = checkAllowedHosts(options.allowedHosts);
  // Before the ledger, so that the sandbox records where its map is created.
  const sandbox = startDemoSandbox(options.sandbox);
  const without = new Set(options.without ?? []);
  // Balances in shared memory, so worker threads can read them (GET /shared-memory/exposure).
  // Not with Redis: the books are there, and a scan of this copy reported the opening balances
  // (no account below the floor after any debit).
  const sharedBalances = without.has('shared-memory') || options.redis !== undefined ? null : createSharedBalanceStore(options.accounts ?? 1000);
  // The audit before the ledger: the balances map is recorded from its creation, openings included.
  const audit = options.audit === undefined || options.audit === false || without.has('audit') ? null : await startDemoAudit(options.audit);
  // With Redis the books are there: this map stays empty and unaudited, or the trail recorded
  // its openings (every account set to the opening balance at each start) as writes of the books.
  const inProcessBooks = options.redis === undefined;
  const ledger = new Ledger({ store: sharedBalances ?? undefined, observers: audit === null || !inProcessBooks ? [] : [audit.recorder] });
  if (inProcessBooks) ledger.seed(options.accounts ?? 1000, options.openingBalance ?? 1_000_000n);
  const metrics = without.has('metrics') ? new MapMetrics() : new MapMetrics().track(ledger.balances);
  const router = new Router();
  const closeHooks: Array<() => Promise<void> | void> = [];
  const announcements: string[] = [];
  const generated = randomBytes(16).toString('hex');
  const admin: DemoAdmin = givenToken === undefined ? { token: generated, shown: generated } : { token: givenToken, shown: '$GOVMAP_ADMIN_TOKEN' };
  let references = 0;
  const context: DemoContext = {
    options,
    router,
    ledger,
    metrics,
    onClose: (hook) => closeHooks.push(hook),
    announce: (line) => announcements.push(line),
    admin,
    nextReference: () => `stl-${++references}`,
  };
  context.announce(
    givenToken === undefined
      ? `admin token (all /admin/* endpoints, the leak drill and the dashboard's knobs): ${admin.token} (set GOVMAP_ADMIN_TOKEN to choose it)`
      : 'admin token: the one given (GOVMAP_ADMIN_TOKEN or adminToken), for all /admin/* endpoints, the leak drill and the dashboard\'s knobs',
  );

  router.route('GET', /^\/healthz$/, (_req, res) => sendJson(res, 200, { status: 'ok' }));
  router.route('GET', /^\/metrics$/, async (_req, res) => {
    const text = await metrics.render();
    res.writeHead(200, { 'content-type': metrics.contentType });
    res.end(text);
  });
  let book: BalanceBook;
  try {
    // The Redis map is audited before its seeding, so the accounts it creates are recorded.
    book =
      options.redis === undefined
        ? ledger
        : await installRedisLedger(context, options.redis, { accounts: options.accounts ?? 1000, openingBalance: options.openingBalance ?? 1_000_000n }, (redisBook) => {
            if (audit !== null) installAudit(context, audit, redisBook);
          });
    if (audit !== null && inProcessBooks) installAudit(context, audit, book);
    const settlement = await installSettlement(context, options.settlement);
    installAccountRoutes(router, book, settlement);
    installRuntimeProbe(router, context.onClose);
    if (sharedBalances !== null) installSharedMemory(context, sharedBalances);
    // Parts plug in here: installX(context).
    const advisor = await installSandboxAndAdvisor(context, sandbox, options.sandbox, book.balances);
    // GET /lint/report: govmap scan of the demo's own source, run on first request.
    installStaticAnalysis(context);
    // X-Biz-Tag middleware (every handler runs behind it), GET /switches, /admin/switches, GET /routes, /payments.
    const switches = await withEnvironmentFile('GOVMAP_SWITCH_FILE', options.switches?.file, 'the built-in switches', () =>
      installSwitches(context, { file: process.env.GOVMAP_SWITCH_FILE, audit: switchAudit(audit), ...options.switches }),
    );
    if (audit !== null) auditGovernance(context, audit, { breakers: settlement.breakers, sandbox });
    const routing = await withEnvironmentFile('GOVMAP_ROUTE_FILE', options.routing?.routeFile, 'the built-in route table', () =>
      installRouting(context, switches.board, switches.token, {
        routeFile: process.env.GOVMAP_ROUTE_FILE,
        spillFile: process.env.GOVMAP_ASYNC_SPILL,
        orgFaults: (org, signal) => settlement.gateway.disturb(org, signal),
        book,
        ...options.routing,
        middleware: !without.has('routing'),
      }),
    );
    // Last: the dashboard's middleware sits inside the X-Biz-Tag one and sees every answer but the
    // 400s of refused tags (the dashboard counts those from the route router).
    const shown = audit === null ? options.dashboard : { ...options.dashboard, audit: { dir: audit.dir, stats: () => audit.recorder.stats() } };
    const dashboard = without.has('dashboard') ? { ...shown, observeRequests: false } : shown;
    installDashboard(context, { settlement, routing, switches: switches.board, sandbox, advisor, book, balanceStore: options.redis === undefined ? sharedBalances : null }, dashboard);
    if (without.size > 0) announcements.push(`without: ${[...without].join(', ')} (left out to measure what they cost: this is not the whole reference service)`);
  } catch (error) {
    // A start refused part way (a bad --etcd or --redis, a switch file that does not parse) left
    // the audit spool open, so the next start recorded a CRASH gap for a usage error, and the
    // sandbox sweeping. Stop what was started, audit last (the hooks may still record).
    // The refusal is what the user must see: a failure while stopping is only logged.
    await runCloseHooks(closeHooks);
    try {
      sandbox.stop();
      await audit?.recorder.stop();
    } catch (stopError) {
      console.error('govmap demo: stopping after a refused start failed', stopError);
    }
    throw error;
  }

  const host = options.host ?? '127.0.0.1';
  const hostAllowed = hostCheck(host, allowedHosts);
  // requireHostHeader off: Node's own refusal of a Host-less request is a bare 400; ours says why.
  // An HTTP/1.0 request without Host is served: browsers always send one, so a rebound page cannot
  // leave it out, and only a script or a probe does.
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    const given = hostOf(req.rawHeaders);
    if (given === undefined) {
      if (isHttp11(req)) return refuseHostless(res);
    } else if (!hostAllowed(given)) {
      return refuseHost(res, given, host);
    }
    void router.handle(req, res);
  });
  server.on('clientError', answerClientError);
  // Per connection, not per request: close() looks at each one's answer in progress (see drain).
  const connections = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  // Slow-loris and idle sockets must not pin the service.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
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
  const url = serviceUrl(host, port);
  const traffic = options.traffic === undefined || options.traffic === false ? null : startTraffic({ url, accounts: options.accounts ?? 1000, ...(options.traffic === true ? {} : options.traffic) });
  if (traffic !== null) announcements.push(`traffic: ${traffic.describe()} (off: --no-traffic)`);
  return {
    server,
    url,
    ledger,
    book,
    metrics,
    router,
    announcements,
    auditSummary: () => (audit === null ? [] : auditSummary(audit)),
    close: async () => {
      // Our own traffic first: none of its requests may be cut mid-flight by the closing server.
      await traffic?.stop();
      // No new connections; then the answers already underway go out before the rest is cut: a
      // transfer is booked before its settlement is awaited, and a client whose connection was
      // cut then cannot tell whether it was (and may send it again).
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await drain(connections, CLOSE_DRAIN_MS);
      server.closeAllConnections();
      await closed;
      await runCloseHooks(closeHooks);
    },
  };
}

/**
 * The request's (first) Host header, read from rawHeaders: `req.headers` is built lazily on first
 * access, and a GET of a balance never needs it otherwise (an object per request).
 */
function hostOf(raw: readonly string[]): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && (name === 'host' || name === 'Host' || name.toLowerCase() === 'host')) return raw[i + 1];
  }
  return undefined;
}

function isHttp11(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 1 && req.httpVersionMinor === 1;
}

/** RFC 9112 §3.2: a server answers 400 to an HTTP/1.1 request without Host. */
function refuseHostless(res: ServerResponse): void {
  res.setHeader('connection', 'close');
  sendError(res, 400, 'REQUEST_MALFORMED', 'an HTTP/1.1 request has a Host header (RFC 9112 §3.2); this one has none');
}

/** How long a connection answered with a parse error may stay open for the client to read it, ms. */
const CLIENT_ERROR_LINGER_MS = 1000;
/**
 * How long a parse error's answer waits for the answers owed before it (pipelined requests still
 * being handled), ms: past it the connection is cut, as the server's own request timeout would.
 */
const CLIENT_ERROR_WAIT_MS = 10_000;

/**
 * A request Node's HTTP parser refused (a lowercase method, two Content-Lengths, `Content-Length:
 * abc`, headers past the limit) or a connection that timed out before its request was whole:
 * answered as every other refusal is, `{error:{code, reason}}`, where Node alone sends a bare
 * 400 or 431. The statuses are Node's own choice (its socketOnError). Written only once no
 * answer is underway (see responseUnderway): while an earlier request's answer is owed, another
 * status line would be read as (or inside) that answer, so it waits for those answers to go out
 * first (at most CLIENT_ERROR_WAIT_MS, then the connection is cut). The connection closes (the
 * parser cannot continue after an error); a client that does not close its side is cut after
 * CLIENT_ERROR_LINGER_MS.
 */
function answerClientError(error: Error & { code?: string; reason?: string }, socket: Socket): void {
  if (!socket.writable || error.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  if (responseUnderway(socket)) {
    const cut = setTimeout(() => socket.destroy(), CLIENT_ERROR_WAIT_MS).unref();
    socket.once('close', () => clearTimeout(cut));
    whenAnswered(socket, () => {
      clearTimeout(cut);
      if (socket.writable) answerClientError(error, socket);
    });
    return;
  }
  const [status, code] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'HEADERS_TOO_LARGE']
      : error.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
        ? [413, 'CHUNK_EXTENSIONS_TOO_LARGE']
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'REQUEST_TIMEOUT']
          : [400, 'REQUEST_MALFORMED'];
  // llhttp's reason names the rule ("Invalid method encountered", "Duplicate Content-Length").
  const rule = typeof error.reason === 'string' ? error.reason : error.message;
  const body = JSON.stringify({ error: { code, reason: `the request could not be parsed as HTTP: ${rule.slice(0, 120)} (${error.code ?? 'no code'})` } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
  );
  const linger = setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS).unref();
  socket.once('close', () => clearTimeout(linger));
}

/**
 * Whether an answer to an earlier request on `socket` is still owed: one attached to it
 * (`_httpMessage`) that has not finished, whether or not its head is on the wire yet. Either way
 * a status line written now would be read as that answer: mid-response it lands inside it, and
 * before it (a pipelined request still being handled, e.g. a transfer awaiting settlement) the
 * client takes our 400 for the earlier request's answer although that request was carried out.
 * Node detaches a response once it has finished, so a keep-alive connection whose previous
 * answer is complete is not underway (not `bytesWritten > 0`, which cut every request after
 * the first without a word). Node's own socketOnError also asks `_headerSent`, and so answers a
 * pipelined request's parse error in place of the answer still being prepared: not followed.
 */
function responseUnderway(socket: Socket): boolean {
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  return inFlight !== undefined && inFlight !== null;
}

/** The shortest admin token taken: it guards breaker, switch, routing-fault and settlement endpoints. */
const MIN_ADMIN_TOKEN_LENGTH = 16;

/**
 * The one admin token: `adminToken`, else a part's own (older) option, else GOVMAP_ADMIN_TOKEN.
 * Every one given is checked, and they must agree: a part's own token was used by its endpoint
 * alone, unchecked (a 1-character token guarded /admin/faults), and two tokens left the page's
 * one token field unable to drive every knob.
 */
function oneAdminToken(options: DemoOptions): string | undefined {
  const given: Array<[option: string, token: string | undefined]> = [
    ['adminToken (GOVMAP_ADMIN_TOKEN)', options.adminToken],
    ['switches.adminToken', options.switches?.adminToken],
    ['settlement.adminToken', options.settlement?.adminToken],
  ];
  let first: [option: string, token: string] | undefined;
  for (const [option, token] of given) {
    if (token === undefined) continue;
    checkAdminToken(token, option);
    if (first === undefined) first = [option, token];
    else if (token !== first[1]) throw new ConfigurationError(option, `must be the same as ${first[0]}: one admin token guards every admin endpoint and the dashboard's knobs (give only adminToken)`);
  }
  return first?.[1] ?? checkAdminToken(nonEmpty(process.env.GOVMAP_ADMIN_TOKEN), 'adminToken (GOVMAP_ADMIN_TOKEN)');
}

function checkAdminToken(token: string | undefined, option: string): string | undefined {
  if (token === undefined) return undefined;
  if (typeof token !== 'string' || token.length < MIN_ADMIN_TOKEN_LENGTH || /\s/.test(token)) {
    // Never echoed: it is a secret, however weak.
    throw new ConfigurationError(option, `must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters without spaces: it guards the breaker, switch, routing-fault and settlement endpoints (unset, a random one is made and printed)`);
  }
  return token;
}

/** `allowedHosts`, else GOVMAP_DEMO_ALLOWED_HOSTS, checked before anything starts. */
function checkAllowedHosts(given: readonly string[] | undefined): readonly string[] {
  const variable = 'GOVMAP_DEMO_ALLOWED_HOSTS';
  if (given !== undefined) {
    // From JavaScript, or a config object typed loosely: a lone string must not pass as a list of characters.
    const list: unknown = given;
    if (!Array.isArray(list)) throw new ConfigurationError('allowedHosts', 'must be an array of host names', given);
    for (const name of given) {
      const problem = typeof name === 'string' ? allowedHostProblem(name) : 'each must be a string';
      if (problem !== null) throw new ConfigurationError('allowedHosts', problem, name);
    }
    return given;
  }
  const value = process.env[variable];
  if (value === undefined) return [];
  // Empty is most often an unset shell variable in a deploy script: refused, as the demo's other variables are.
  const names = value.split(',').map((name) => name.trim()).filter((name) => name !== '');
  if (names.length === 0) throw new DemoEnvironmentError(variable, value, 'give host names, comma-separated, or unset it to serve loopback names and the listen address only');
  for (const name of names) {
    const problem = allowedHostProblem(name);
    if (problem !== null) throw new DemoEnvironmentError(variable, value, `${JSON.stringify(name)}: ${problem}`);
  }
  return names;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
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
