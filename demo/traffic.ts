import { Agent, request } from 'node:http';
import { accountId } from './ledger.ts';

/**
 * Gentle background traffic for `govmap demo`, so the dashboard shows the governance at work
 * as soon as the service starts: payments and transfers from several orgs, balance reads,
 * FX quotes, a statement (a range walk), a few lookups of unknown accounts (misses) and a
 * debit now and then that the validator refuses. Every request goes through the service's own
 * HTTP handlers (loopback), like a client's would.
 *
 * Shape, per second:
 * - each org sends one payment (`txnType:pay`) and one transfer (`txnType:transfer`), sent
 *   together half-way through the second. The breakers judge epoch-aligned one-second windows
 *   and a window without a call ends a breach streak, so each org's breakers see exactly one
 *   call in every window: a fault set for one org opens its breakers in about three seconds;
 * - balance reads keep the balances map read-mostly: `readsPerWrite` reads per write (a payment
 *   or transfer writes two balances), the specification's floor being 20. With three orgs that
 *   is about 250 requests a second, some 5% of one core;
 * - one read in 50 asks for an account that does not exist (a miss), about one debit in 10 s
 *   asks for more than any account holds (refused: BALANCE_UNDERFLOW), a statement every 2 s,
 *   an FX quote every second from one org in turn.
 */
export interface DemoTrafficOptions {
  /** Orgs the traffic comes from. Default 100101, 2002, 3003: in the demo's route table, routes org-1001 (async), org-2002-pay (mock) and org-3003-pay, and transfers for the transfers of 2002 and 3003. */
  readonly orgs?: readonly string[];
  /** Balance reads per balance write. Default 22 (the specification's floor is 20). */
  readonly readsPerWrite?: number;
  /** Requests of ours in flight at most; beyond it a tick's requests are skipped, not queued. Default 64. */
  readonly maxInFlight?: number;
}

export interface TrafficOptions extends DemoTrafficOptions {
  /** Base URL of the service, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  /** Accounts seeded (acct-000000…). */
  readonly accounts: number;
}

export interface Traffic {
  /** Stops sending and waits for the requests in flight (at most 2 s). */
  stop(): Promise<void>;
  /** One line for the start-up banner. */
  describe(): string;
  /** Requests sent by answer status ("200", "404", "error"…), and skipped for too many in flight. */
  stats(): { readonly sent: number; readonly skipped: number; readonly byStatus: Readonly<Record<string, number>> };
}

export const DEFAULT_TRAFFIC_ORGS: readonly string[] = Object.freeze(['100101', '2002', '3003']);
/** Where in each second the orgs' payments and transfers go out: mid-window, far from both edges. */
const PHASE_MS = 500;
/** Read batches per second: reads are spread, not sent in one burst. */
const READ_SLICES = 10;
/** One request in this many reads an account that does not exist. */
const MISS_EVERY = 50;
const STOP_WAIT_MS = 2000;

export function startTraffic(options: TrafficOptions): Traffic {
  const orgs = options.orgs ?? DEFAULT_TRAFFIC_ORGS;
  const readsPerWrite = options.readsPerWrite ?? 22;
  const maxInFlight = options.maxInFlight ?? 64;
  const base = new URL(options.url);
  // An IPv6 URL's hostname keeps its brackets ("[::1]"), which http.request looks up as a name,
  // failing every request: the dashboard of a demo on --host ::1 stayed silently empty.
  const host = base.hostname.replace(/^\[(.*)\]$/, '$1');
  // Keep-alive sockets: a new connection per request would cost more than the request.
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const byStatus: Record<string, number> = {};
  let sent = 0;
  let skipped = 0;
  let inFlight = 0;
  let stopped = false;
  let tick = 0;
  let seed = 0x9e3779b9;
  const random = (n: number): number => {
    // xorshift32: a repeatable mix, no crypto needed.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const account = (): string => accountId(random(options.accounts));
  const idle: Array<() => void> = [];

  const send = (method: 'GET' | 'POST', path: string, tag: string | null, body?: unknown): void => {
    if (stopped) return;
    if (inFlight >= maxInFlight) {
      skipped++;
      return;
    }
    inFlight++;
    sent++;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (tag !== null) headers['x-biz-tag'] = tag;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    let settled = false;
    const done = (status: string): void => {
      // A request can end twice (an error after its answer began): count it once.
      if (settled) return;
      settled = true;
      byStatus[status] = (byStatus[status] ?? 0) + 1;
      inFlight--;
      if (inFlight === 0) for (const wake of idle.splice(0)) wake();
    };
    const req = request({ host, port: base.port, path, method, headers, agent, timeout: 5000 }, (res) => {
      res.resume();
      res.once('end', () => done(String(res.statusCode)));
      res.once('error', () => done('error'));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', () => done('error'));
    req.end(payload);
  };

  const orgTick = (): void => {
    tick++;
    // Payments and transfers need two accounts.
    for (const org of options.accounts >= 2 ? orgs : []) {
      const amount = String(100 + random(4900));
      const [payer, payee] = twoAccounts();
      send('POST', '/payments', `orgId:${org}|txnType:pay`, { from: payer, to: payee, amount });
      const [from, to] = twoAccounts();
      send('POST', '/transfers', `orgId:${org}|txnType:transfer`, { from, to, amount });
    }
    const org = orgs[tick % orgs.length]!;
    send('GET', `/fx/${tick % 2 === 0 ? 'EURUSD' : 'GBPUSD'}`, `orgId:${org}|txnType:fx`);
    if (tick % 2 === 0) send('GET', `/accounts?prefix=acct-00${random(10)}&limit=50`, null);
  };
  const twoAccounts = (): [string, string] => {
    // Two different accounts (a transfer to itself is refused): the second drawn from the others.
    const a = random(options.accounts);
    let b = random(options.accounts - 1);
    if (b >= a) b++;
    return [accountId(a), accountId(b)];
  };

  // Writes per second: a payment and a transfer per org, two balances each. Payments and
  // transfers read too (balance checks: 4 and 2 lookups); the rest comes from GET /accounts.
  const writesPerSecond = orgs.length * 4;
  const readsPerSecond = Math.max(0, readsPerWrite * writesPerSecond - orgs.length * 6);
  let readCarry = 0;
  let slice = 0;
  const readSlice = (): void => {
    slice++;
    readCarry += readsPerSecond / READ_SLICES;
    const n = Math.floor(readCarry);
    readCarry -= n;
    for (let i = 0; i < n; i++) {
      const miss = random(MISS_EVERY) === 0;
      send('GET', `/accounts/${miss ? `acct-9${String(random(100_000)).padStart(5, '0')}` : account()}`, null);
    }
    if (slice % (READ_SLICES * 2) === 0 && random(5) === 0) {
      // About one debit in 10 seconds asks for more than any account holds: the validator refuses it.
      send('POST', `/accounts/${account()}/debit`, null, { amount: '900000000000' });
    }
  };

  // Org ticks aligned to the epoch second (the breakers' windows are), half-way through it.
  let orgTimer: NodeJS.Timeout | null = null;
  const scheduleOrgTick = (): void => {
    if (stopped) return;
    const now = Date.now();
    const next = Math.floor(now / 1000) * 1000 + PHASE_MS;
    orgTimer = setTimeout(() => {
      orgTick();
      scheduleOrgTick();
    }, (next > now ? next : next + 1000) - now);
    orgTimer.unref();
  };
  scheduleOrgTick();
  const readTimer = setInterval(readSlice, 1000 / READ_SLICES);
  readTimer.unref();

  return {
    async stop(): Promise<void> {
      stopped = true;
      if (orgTimer !== null) clearTimeout(orgTimer);
      clearInterval(readTimer);
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, STOP_WAIT_MS);
          idle.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      agent.destroy();
    },
    describe: () =>
      `background traffic from orgs ${orgs.join(', ')}: a payment and a transfer per org a second, ${readsPerSecond} balance reads a second (${readsPerWrite} reads per write), FX quotes, statements`,
    stats: () => ({ sent, skipped, byStatus: { ...byStatus } }),
  };
}
