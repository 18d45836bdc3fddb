import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { CLOSE_DRAIN_MS, HttpError, assertOnlyFields, drain, readJsonObject, sendJson, serviceUrl } from './http.ts';
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
  /** The balance `id` would have after `delta`, refused as the governed validator would. */
  const next = (id: string, delta: bigint): bigint => {
    const value = lookup(id) + delta;
    if (value < 0n) throw new HttpError(422, 'BALANCE_UNDERFLOW', 'the balance would go below zero');
    if (value > INT64_MAX) throw new HttpError(422, 'BALANCE_OVERFLOW', 'the balance would exceed int64');
    return value;
  };
  const apply = (id: string, delta: bigint): bigint => {
    const value = next(id, delta);
    balances.set(id, value);
    return value;
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
    // The same refusals, in the same order, as the governed ledger (test/demo/bare.test.ts): the
    // baseline answers the same API, not a laxer one. Both legs are checked before either is set.
    for (const id of [body.from, body.to]) if (!ACCOUNT_ID.test(id)) throw new HttpError(400, 'ACCOUNT_ID_INVALID', 'invalid account id');
    if (body.from === body.to) throw new HttpError(400, 'TRANSFER_SAME_ACCOUNT', 'a transfer needs two different accounts');
    lookup(body.from);
    lookup(body.to);
    const from = next(body.from, -amount);
    const to = next(body.to, amount);
    balances.set(body.from, from);
    balances.set(body.to, to);
    sendJson(res, 200, { from: { id: body.from, balance: formatAmount(from) }, to: { id: body.to, balance: formatAmount(to) }, amount: formatAmount(amount) });
  });

  const server = createServer((req, res) => void router.handle(req, res));
  const connections = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: serviceUrl(host, port),
    // As the governed demo closes (demo/server.ts): the answers underway go out before the rest
    // is cut, so a benchmark's last requests end the same way against both.
    close: async () => {
      for (const close of closers) close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await drain(connections, CLOSE_DRAIN_MS);
      server.closeAllConnections();
      await closed;
    },
  };
}
