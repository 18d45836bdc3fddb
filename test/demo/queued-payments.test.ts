/**
 * Payments the demo queues (org 1001's route degrades to async) as their payer follows them on
 * GET /payments/<token>: queued while the route is forced into degradation, processed once it no
 * longer is, and a payment the ledger refuses by then ends REJECTED with the ledger's reason,
 * once, instead of being retried as if the gateway had failed and dying without a result.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { bookingResult } from '../../demo/routing.ts';
import { LedgerError } from '../../demo/ledger.ts';
import { startDemo } from '../../demo/server.ts';
import { ValidationError } from '../../src/map/index.ts';
import { RedisUnavailableError } from '../../src/stores/redis/errors.ts';
import type { DemoService } from '../../demo/server.ts';

const TOKEN = 'queued-payments-admin-token';
let demo: DemoService;
before(async () => {
  demo = await startDemo({ port: 0, accounts: 10, openingBalance: 10_000n, adminToken: TOKEN, routing: { drainMs: 100 }, sandbox: { stateDirectory: null } });
});
after(() => demo.close());

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const response = await fetch(demo.url + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), authorization: `Bearer ${TOKEN}`, ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

const forceDegrade = (enabled: boolean) =>
  call('POST', '/admin/switches', { set: { 'routing.force-degrade': enabled ? { enabled: true, allow: [{ orgIds: ['1001*'] }] } : { enabled: false } }, reason: 'queued payments test' });

/** Queues a payment of org 100101 while its route is forced to degrade; the switch is off again on return. */
async function queuePayment(from: string, to: string, amount: string): Promise<string> {
  assert.equal((await forceDegrade(true)).status, 200);
  try {
    const queued = await call('POST', '/payments', { from, to, amount }, { 'x-biz-tag': 'orgId:100101|txnType:pay' });
    assert.equal(queued.status, 202, JSON.stringify(queued.json));
    assert.equal(queued.json.status, 'ACCEPTED');
    return queued.json.token as string;
  } finally {
    assert.equal((await forceDegrade(false)).status, 200);
  }
}

/** The payment's status once it has left the queue, or the last one seen after `ms`. */
async function settled(token: string, ms = 5_000): Promise<any> {
  const deadline = performance.now() + ms;
  let status: any;
  do {
    status = (await call('GET', `/payments/${token}`)).json;
    if (status.state === 'done' || status.state === 'dead') return status;
    await sleep(50);
  } while (performance.now() < deadline);
  return status;
}

test('a payment queued while its route was forced to degrade is processed once the switch is off', async () => {
  const token = await queuePayment('acct-000001', 'acct-000002', '2500');
  const status = await settled(token);
  assert.equal(status.state, 'done', `still ${status.state} after the switch went off: ${JSON.stringify(status)}`);
  assert.equal(status.result?.status, 'SETTLED');
  assert.equal((await call('GET', '/accounts/acct-000001')).json.balance, '7500');
  assert.equal((await call('GET', '/accounts/acct-000002')).json.balance, '12500');
});

test('a queued payment the ledger refuses (funds gone) ends REJECTED with its reason, after one attempt', async () => {
  const token = await queuePayment('acct-000003', 'acct-000004', '20000');
  const status = await settled(token);
  assert.deepEqual(
    { state: status.state, attempts: status.attempts, result: status.result },
    { state: 'done', attempts: 0, result: { status: 'REJECTED', reason: 'BALANCE_UNDERFLOW' } },
  );
  assert.equal((await call('GET', '/accounts/acct-000003')).json.balance, '10000', 'nothing moved');
  assert.equal((await call('GET', '/accounts/acct-000004')).json.balance, '10000');
});

test('what a booking error means for a queued payment: refusals are REJECTED, a booking that may have moved money needs reconciliation, anything else is retried', () => {
  const underflow = new ValidationError('balances', 'acct-000001', 'BALANCE_UNDERFLOW', 'acct-000001 would go negative');
  assert.deepEqual(bookingResult(underflow), { status: 'REJECTED', reason: 'BALANCE_UNDERFLOW' });
  assert.deepEqual(bookingResult(new LedgerError(404, 'ACCOUNT_NOT_FOUND', 'no account "x"')), { status: 'REJECTED', reason: 'ACCOUNT_NOT_FOUND' });
  // The payer was debited and the credit is not confirmed: not "rejected" (nothing moved would be
  // false), and not retried (a second debit).
  const unknown = new LedgerError(503, 'TRANSFER_OUTCOME_UNKNOWN', 'acct-1 was debited; the credit of acct-2 may or may not have been applied (Redis unreachable): reconcile before retrying');
  assert.deepEqual(bookingResult(unknown), { status: 'NEEDS_RECONCILIATION', reason: 'TRANSFER_OUTCOME_UNKNOWN', detail: unknown.message });
  assert.equal(bookingResult(new LedgerError(503, 'TRANSFER_REVERSAL_FAILED', 'reversal failed'))?.status, 'NEEDS_RECONCILIATION');
  assert.equal(bookingResult(new Error('ECONNRESET')), null, 'not the ledger\'s answer: the lane retries it');
});

test('a queued payment whose debit Redis may or may not have applied (outcome unknown) needs reconciliation, and is not retried (a second debit)', () => {
  // RedisLedger.transfer: the debit itself timed out or lost its connection in flight. Nothing
  // says whether the payer was debited; retrying the booking could debit them twice.
  const debitUnknown = new RedisUnavailableError('balances', 'add', 'acct-000001', 'TIMEOUT', 'unknown');
  const result = bookingResult(debitUnknown);
  assert.equal(result?.status, 'NEEDS_RECONCILIATION', `got ${JSON.stringify(result)}: the lane would retry it`);
  assert.equal(result?.reason, 'GOVMAP_REDIS_UNAVAILABLE');
  // Refused before anything was sent: nothing moved, so retrying is safe.
  assert.equal(bookingResult(new RedisUnavailableError('balances', 'add', 'acct-000001', 'OFFLINE', 'not-applied')), null);
});
