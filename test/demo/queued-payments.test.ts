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

test('a queued payment whose booking outlasts the route\'s call timeout is booked once, not again on every retry', async () => {
  // The booking runs inside the route's guarded call (timeout 200 ms): a gateway answering in
  // 150 ms and a book taking 100 ms (Redis under load) time the attempt out mid-booking. The
  // retry must not book the payment a second time: money moved once, the payer sees SETTLED.
  let ledger: DemoService['ledger'] | null = null;
  const slowBook = {
    get balances() {
      return ledger!.balances;
    },
    balance: (id: string) => ledger!.balance(id),
    credit: (id: string, amount: bigint) => ledger!.credit(id, amount),
    debit: (id: string, amount: bigint) => ledger!.debit(id, amount),
    transfer: async (from: string, to: string, amount: bigint) => {
      await sleep(100);
      return ledger!.transfer(from, to, amount);
    },
  };
  const slow = await startDemo({ port: 0, accounts: 10, openingBalance: 10_000n, adminToken: TOKEN, routing: { drainMs: 100, book: slowBook }, sandbox: { stateDirectory: null } });
  ledger = slow.ledger;
  const at = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> => {
    const response = await fetch(slow.url + path, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), authorization: `Bearer ${TOKEN}`, ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, json: await response.json() };
  };
  const force = (enabled: boolean) =>
    at('POST', '/admin/switches', { set: { 'routing.force-degrade': enabled ? { enabled: true, allow: [{ orgIds: ['1001*'] }] } : { enabled: false } }, reason: 'slow booking test' });
  try {
    assert.equal((await at('POST', '/admin/routing/faults', { target: 'gw-north', latencyMs: 150 })).status, 200);
    assert.equal((await force(true)).status, 200);
    const queued = await at('POST', '/payments', { from: 'acct-000005', to: 'acct-000006', amount: '100' }, { 'x-biz-tag': 'orgId:100101|txnType:pay' });
    assert.equal(queued.status, 202, JSON.stringify(queued.json));
    assert.equal((await force(false)).status, 200);
    let status: any;
    const deadline = performance.now() + 10_000;
    do {
      status = (await at('GET', `/payments/${queued.json.token}`)).json;
      if (status.state === 'done' || status.state === 'dead') break;
      await sleep(50);
    } while (performance.now() < deadline);
    await sleep(300); // a booking still in flight from a timed-out attempt lands
    assert.equal((await at('GET', '/accounts/acct-000005')).json.balance, '9900', `booked more than once: ${JSON.stringify(status)}`);
    assert.equal((await at('GET', '/accounts/acct-000006')).json.balance, '10100');
    assert.equal(status.state, 'done', JSON.stringify(status));
    assert.equal(status.result?.status, 'SETTLED');
  } finally {
    await slow.close();
  }
});

test('a payment to its own payer is refused 400 TRANSFER_SAME_ACCOUNT on every route, before its gateway is asked, never accepted to fail later', async () => {
  const self = { from: 'acct-000007', to: 'acct-000007', amount: '5' };
  const gatewayCalls = async (target: string): Promise<number> => (await call('GET', '/routes')).json.targets[target]?.calls ?? 0;
  const coreCalls = await gatewayCalls('gw-core');
  // A live route: the gateway authorised it, and only then did the ledger refuse it.
  const live = await call('POST', '/payments', self, { 'x-biz-tag': 'orgId:3003|txnType:pay' });
  assert.equal(live.status, 400, JSON.stringify(live.json));
  assert.equal(live.json.error.code, 'TRANSFER_SAME_ACCOUNT');
  assert.equal(await gatewayCalls('gw-core'), coreCalls, 'the gateway was asked to authorise a payment that cannot be booked');
  // Degraded routes: without the check, accepted (202 queued) or refused as retryable (503 send it again) for a payment that can never be booked.
  const force = (enabled: boolean) =>
    call('POST', '/admin/switches', { set: { 'routing.force-degrade': enabled ? { enabled: true, allow: [{ orgIds: ['1001*', '2002'] }] } : { enabled: false } }, reason: 'self payment test' });
  assert.equal((await force(true)).status, 200);
  try {
    for (const tag of ['orgId:100101|txnType:pay', 'orgId:2002|txnType:pay']) {
      const answer = await call('POST', '/payments', self, { 'x-biz-tag': tag });
      assert.equal(answer.status, 400, `${tag}: ${JSON.stringify(answer.json)}`);
      assert.equal(answer.json.error.code, 'TRANSFER_SAME_ACCOUNT', tag);
    }
  } finally {
    assert.equal((await force(false)).status, 200);
  }
});

test('results of queued payments are kept for the newest resultsKept only: a long degraded spell does not grow memory without end', async () => {
  // A demo of its own, keeping two results; its own helpers since `call` above talks to `demo`.
  const small = await startDemo({ port: 0, accounts: 4, openingBalance: 10_000n, adminToken: TOKEN, routing: { drainMs: 100, resultsKept: 2 }, sandbox: { stateDirectory: null } });
  try {
    const on = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
      fetch(small.url + path, { method, headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, ...headers }, body: body === undefined ? undefined : JSON.stringify(body) }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }));
    const degrade = (enabled: boolean) => on('POST', '/admin/switches', { set: { 'routing.force-degrade': enabled ? { enabled: true, allow: [{ orgIds: ['1001*'] }] } : { enabled: false } }, reason: 'results bound test' });
    const tokens: string[] = [];
    assert.equal((await degrade(true)).status, 200);
    for (let i = 0; i < 3; i++) {
      const queued = await on('POST', '/payments', { from: 'acct-000001', to: 'acct-000002', amount: '100' }, { 'x-biz-tag': 'orgId:100101|txnType:pay' });
      assert.equal(queued.status, 202, JSON.stringify(queued.json));
      tokens.push(queued.json.token as string);
    }
    assert.equal((await degrade(false)).status, 200);
    const statuses: any[] = [];
    for (const token of tokens) {
      const deadline = performance.now() + 5_000;
      let status: any;
      do {
        status = (await on('GET', `/payments/${token}`)).json;
        if (status.state === 'done') break;
        await sleep(50);
      } while (performance.now() < deadline);
      assert.equal(status.state, 'done', JSON.stringify(status));
      statuses.push(status);
    }
    // Every payment was booked once, whatever is still remembered of it.
    assert.equal((await on('GET', '/accounts/acct-000001')).json.balance, '9700');
    // The lane processes in queue order: the oldest result is the one forgotten.
    assert.equal((await on('GET', `/payments/${tokens[0]}`)).json.result, null);
    assert.equal((await on('GET', `/payments/${tokens[1]}`)).json.result?.status, 'SETTLED');
    assert.equal((await on('GET', `/payments/${tokens[2]}`)).json.result?.status, 'SETTLED');
  } finally {
    await small.close();
  }
});
