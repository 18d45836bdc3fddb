import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GovMapError } from '../src/map/index.ts';
import { MapMetrics } from '../src/metrics/index.ts';
import { HttpError, assertOnlyFields, readJsonObject, sendError, sendJson } from './http.ts';
import { Ledger, LedgerError } from './ledger.ts';
import { AmountError, formatAmount, parsePositiveAmount } from './money.ts';

export interface DemoOptions {
  /** Default 8080; 0 picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1: the demo is not meant to face a network. */
  readonly host?: string;
  /** Accounts seeded as acct-000000…; default 1,000. */
  readonly accounts?: number;
  /** Opening balance of each seeded account, minor units; default 1,000,000 (10,000.00). */
  readonly openingBalance?: bigint;
}

export interface DemoService {
  readonly server: Server;
  readonly url: string;
  readonly ledger: Ledger;
  readonly metrics: MapMetrics;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, params: string[]) => Promise<void> | void;
interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly handler: Handler;
}

/**
 * The reference clearing service: balances in a GovernedMap, credit/debit/transfer over HTTP,
 * Prometheus metrics. Every refusal is a 4xx JSON `{error:{code, reason}}`; a refused request
 * changes nothing.
 */
export async function startDemo(options: DemoOptions = {}): Promise<DemoService> {
  const ledger = new Ledger();
  ledger.seed(options.accounts ?? 1000, options.openingBalance ?? 1_000_000n);
  const metrics = new MapMetrics().track(ledger.balances);

  const routes: Route[] = [
    { method: 'GET', pattern: /^\/healthz$/, handler: (_req, res) => sendJson(res, 200, { status: 'ok' }) },
    {
      method: 'GET',
      pattern: /^\/metrics$/,
      handler: async (_req, res) => {
        const text = await metrics.render();
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(text);
      },
    },
    {
      method: 'GET',
      pattern: /^\/accounts\/([^/]+)$/,
      handler: (_req, res, [id]) => sendJson(res, 200, { id, balance: formatAmount(ledger.balance(id!)) }),
    },
    {
      method: 'POST',
      pattern: /^\/accounts\/([^/]+)\/(credit|debit)$/,
      handler: async (req, res, [id, direction]) => {
        const body = await readJsonObject(req);
        assertOnlyFields(body, ['amount']);
        const amount = parsePositiveAmount(body.amount);
        const balance = direction === 'credit' ? ledger.credit(id!, amount) : ledger.debit(id!, amount);
        sendJson(res, 200, { id, balance: formatAmount(balance) });
      },
    },
    {
      method: 'POST',
      pattern: /^\/transfers$/,
      handler: async (req, res) => {
        const body = await readJsonObject(req);
        assertOnlyFields(body, ['from', 'to', 'amount']);
        if (typeof body.from !== 'string' || typeof body.to !== 'string') {
          throw new HttpError(400, 'TRANSFER_ACCOUNTS_MISSING', '"from" and "to" must be account id strings');
        }
        const amount = parsePositiveAmount(body.amount);
        const result = ledger.transfer(body.from, body.to, amount);
        sendJson(res, 200, {
          from: { id: body.from, balance: formatAmount(result.from) },
          to: { id: body.to, balance: formatAmount(result.to) },
          amount: formatAmount(amount),
        });
      },
    },
  ];

  const server = createServer((req, res) => {
    void dispatch(routes, req, res);
  });
  // Slow-loris and idle sockets must not pin the service.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${host}:${port}`,
    ledger,
    metrics,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function dispatch(routes: readonly Route[], req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    let pathMatched = false;
    for (const route of routes) {
      const match = route.pattern.exec(path);
      if (match === null) continue;
      pathMatched = true;
      if (route.method !== req.method) continue;
      const params = match.slice(1).map(decodeSegment);
      await route.handler(req, res, params);
      return;
    }
    if (pathMatched) throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method ?? '?'} is not allowed on ${path}`);
    throw new HttpError(404, 'NOT_FOUND', `no route for ${path}`);
  } catch (error) {
    respondWithError(res, error);
  }
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'PATH_MALFORMED', 'the path has an invalid percent-encoding');
  }
}

/** Maps every known refusal to its 4xx; only a genuine defect becomes a 500 (and is logged). */
function respondWithError(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (error instanceof HttpError || error instanceof LedgerError) return sendError(res, error.status, error.code, error.message);
  if (error instanceof AmountError) return sendError(res, 400, error.code, error.message);
  if (error instanceof GovMapError) {
    const reason = typeof error.details.reason === 'string' ? error.details.reason : error.code;
    return sendError(res, error.code === 'GOVMAP_VALIDATION_REJECTED' ? 422 : 409, reason, error.message);
  }
  console.error('govmap demo: unexpected error', error);
  sendError(res, 500, 'INTERNAL', 'unexpected error; see the service log');
}
