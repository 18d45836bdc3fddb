import { HttpError, assertOnlyFields, readJsonObject, sendJson } from './http.ts';
import type { BalanceBook } from './book.ts';
import { formatAmount, parsePositiveAmount } from './money.ts';
import type { Router } from './router.ts';
import type { TransferSettlement } from './breaker.ts';

/** The clearing API: balances, credits, debits and transfers in integer minor units. */
export function installAccountRoutes(router: Router, ledger: BalanceBook, settlement?: TransferSettlement): void {
  router.route('GET', /^\/accounts\/([^/]+)$/, async (_req, res, [id]) => sendJson(res, 200, { id, balance: formatAmount(await ledger.balance(id!)) }));

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
    sendJson(res, 200, {
      from: { id: body.from, balance: formatAmount(result.from) },
      to: { id: body.to, balance: formatAmount(result.to) },
      amount: formatAmount(amount),
      ...(settled === undefined ? {} : { settlement: settled }),
    });
  });
}
