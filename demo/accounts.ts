import { HttpError, assertOnlyFields, readJsonObject, sendJson } from './http.ts';
import type { BalanceBook } from './book.ts';
import { formatAmount, parsePositiveAmount } from './money.ts';
import type { Router } from './router.ts';
import type { TransferSettlement } from './breaker.ts';

/** Lines one statement answers at most. */
const MAX_STATEMENT_LINES = 1000;
const STATEMENT_PREFIX = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** The clearing API: balances, credits, debits and transfers in integer minor units. */
export function installAccountRoutes(router: Router, ledger: BalanceBook, settlement?: TransferSettlement): void {
  // GET /accounts?prefix=acct-0001&limit=100: a statement of the accounts under a prefix, one range walk.
  router.route('GET', /^\/accounts$/, (req, res) => {
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const prefix = query.get('prefix') ?? '';
    const limitText = query.get('limit') ?? '100';
    if (!STATEMENT_PREFIX.test(prefix)) throw new HttpError(400, 'STATEMENT_PREFIX_INVALID', '"prefix" is 1 to 64 of letters, digits, "_" and "-" (an account id\'s start)');
    if (!/^[0-9]{1,4}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > MAX_STATEMENT_LINES) {
      throw new HttpError(400, 'STATEMENT_LIMIT_INVALID', `"limit" is a whole number from 1 to ${MAX_STATEMENT_LINES}`);
    }
    if (ledger.statement === undefined) throw new HttpError(501, 'STATEMENT_NOT_AVAILABLE', 'statements walk the balances map; this balance store cannot walk its keys');
    const lines = ledger.statement(prefix, Number(limitText));
    sendJson(res, 200, { prefix, accounts: lines.map((l) => ({ id: l.id, balance: formatAmount(l.balance) })) });
  });

  // Answered in the same tick when the balance is in process (an `await` of a plain value
  // would still cost a microtask and a promise per read); Redis answers asynchronously.
  router.route('GET', /^\/accounts\/([^/]+)$/, (_req, res, [id]) => {
    const balance = ledger.balance(id!);
    if (typeof balance === 'bigint') return sendJson(res, 200, { id, balance: formatAmount(balance) });
    return balance.then((value) => sendJson(res, 200, { id, balance: formatAmount(value) }));
  });

  router.route('POST', /^\/accounts\/([^/]+)\/(credit|debit)$/, async (req, res, [id, direction]) => {
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['amount']);
    const amount = parsePositiveAmount(body.amount);
    const balance = await (direction === 'credit' ? ledger.credit(id!, amount) : ledger.debit(id!, amount));
    sendJson(res, 200, { id, balance: formatAmount(balance) });
  });

  router.route('POST', /^\/transfers$/, async (req, res) => {
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['from', 'to', 'amount']);
    if (typeof body.from !== 'string' || typeof body.to !== 'string') {
      throw new HttpError(400, 'TRANSFER_ACCOUNTS_MISSING', '"from" and "to" must be account id strings');
    }
    const amount = parsePositiveAmount(body.amount);
    const result = await ledger.transfer(body.from, body.to, amount);
    // Booked first; settlement then goes through the org's circuit breaker (demo/breaker.ts).
    const settled = await settlement?.settle(req, { from: body.from, to: body.to, amount });
    // Same header as a degraded routed answer: a client (and the dashboard) tells it from a settled one.
    if (settled?.status === 'queued') res.setHeader('x-govmap-degraded', `settlement-queued; reason=${settled.reason}`);
    sendJson(res, 200, {
      from: { id: body.from, balance: formatAmount(result.from) },
      to: { id: body.to, balance: formatAmount(result.to) },
      amount: formatAmount(amount),
      ...(settled === undefined ? {} : { settlement: settled }),
    });
  });
}
