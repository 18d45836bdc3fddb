import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpError, assertOnlyFields, readJsonObject, sendJson } from './http.ts';
import { ACCOUNT_ID, accountId } from './ledger.ts';
import { INT64_MAX, formatAmount, parsePositiveAmount } from './money.ts';
import { installRuntimeProbe } from './runtime-probe.ts';
import { Router } from './router.ts';

/**
 * The baseline the load benchmark compares governance against: the same HTTP API and input
 * checks on a plain Map, with no validator framework, no metrics, no audit, no breaker, no
 * routing. What a team would write without govmap (including its lost-update hazards).
 */
export async function startBareDemo(options: { port?: number; host?: string; accounts?: number } = {}): Promise<{ url: string; close(): Promise<void> }> {
  const balances = new Map<string, bigint>();
  for (let i = 0; i < (options.accounts ?? 1000); i++) balances.set(accountId(i), 1_000_000n);
  const router = new Router();
  const closers: Array<() => void> = [];
  installRuntimeProbe(router, (hook) => closers.push(hook));

  const lookup = (id: string): bigint => {
    if (!ACCOUNT_ID.test(id)) throw new HttpError(400, 'ACCOUNT_ID_INVALID', 'invalid account id');
    const balance = balances.get(id);
    if (balance === undefined) throw new HttpError(404, 'ACCOUNT_NOT_FOUND', `no account ${JSON.stringify(id)}`);
    return balance;
  };
  const apply = (id: string, delta: bigint): bigint => {
    const next = lookup(id) + delta;
    if (next < 0n) throw new HttpError(422, 'BALANCE_UNDERFLOW', 'the balance would go below zero');
    if (next > INT64_MAX) throw new HttpError(422, 'BALANCE_OVERFLOW', 'the balance would exceed int64');
    balances.set(id, next);
    return next;
  };

  router.route('GET', /^\/healthz$/, (_req, res) => sendJson(res, 200, { status: 'ok', mode: 'bare' }));
  router.route('GET', /^\/accounts\/([^/]+)$/, (_req, res, [id]) => sendJson(res, 200, { id, balance: formatAmount(lookup(id!)) }));
  router.route('POST', /^\/accounts\/([^/]+)\/(credit|debit)$/, async (req, res, [id, direction]) => {
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['amount']);
    const amount = parsePositiveAmount(body.amount);
    sendJson(res, 200, { id, balance: formatAmount(apply(id!, direction === 'credit' ? amount : -amount)) });
  });
  router.route('POST', /^\/transfers$/, async (req, res) => {
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['from', 'to', 'amount']);
    if (typeof body.from !== 'string' || typeof body.to !== 'string') throw new HttpError(400, 'TRANSFER_ACCOUNTS_MISSING', '"from" and "to" are required');
    const amount = parsePositiveAmount(body.amount);
    lookup(body.to);
    const from = apply(body.from, -amount);
    const to = apply(body.to, amount);
    sendJson(res, 200, { from: { id: body.from, balance: formatAmount(from) }, to: { id: body.to, balance: formatAmount(to) }, amount: formatAmount(amount) });
  });

  const server = createServer((req, res) => void router.handle(req, res));
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const close of closers) close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
