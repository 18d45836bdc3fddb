/**
 * Settlements queued while the gateway could not take them are settled later, in batches, once
 * it can: the backlog's own rules with a scripted gateway, then the demo end to end (an org's
 * gateway failing, then healed: its queued settlements settle without anyone asking).
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { SettlementBacklog } from '../../demo/settlement-backlog.ts';
import type { PendingSettlement, RetryResult } from '../../demo/settlement-backlog.ts';
import { startDemo } from '../../demo/server.ts';

const item = (org: string, n: number): PendingSettlement => ({ org, from: 'acct-000001', to: 'acct-000002', amount: BigInt(n), queuedAt: 1_700_000_000_000 + n });

test('a round settles each org oldest first; an org that fails keeps the rest of its backlog, and other orgs go on', async () => {
  const sent: string[] = [];
  const failing = new Set(['b']);
  const backlog = new SettlementBacklog({
    retryEveryMs: 3_600_000, // rounds only when the test asks
    retry: async (s): Promise<RetryResult> => {
      sent.push(`${s.org}${s.amount}`);
      return failing.has(s.org) ? 'failed' : 'settled';
    },
  });
  try {
    for (const s of [item('a', 1), item('b', 2), item('a', 3), item('b', 4), item('c', 5)]) assert.equal(backlog.add(s), true);
    await backlog.retryNow();
    // b's first retry failed: its second was not sent (a failing gateway is not hammered).
    assert.deepEqual(sent, ['a1', 'a3', 'b2', 'c5']);
    assert.deepEqual({ ...backlog.status(), oldestQueuedAt: undefined }, { pending: 2, settledLater: 3, retriesFailed: 1, overflowed: 0, oldestQueuedAt: undefined });
    assert.equal(backlog.status().oldestQueuedAt, new Date(1_700_000_000_002).toISOString());
    failing.clear();
    await backlog.retryNow();
    assert.deepEqual(sent.slice(4), ['b2', 'b4']);
    assert.deepEqual(backlog.status(), { pending: 0, settledLater: 5, retriesFailed: 1, overflowed: 0, oldestQueuedAt: null });
  } finally {
    await backlog.close();
  }
});

test('a refused retry (the breaker still open) keeps the settlement too; a batch is at most batchSize', async () => {
  let answer: RetryResult = 'refused';
  let calls = 0;
  const backlog = new SettlementBacklog({ retryEveryMs: 3_600_000, batchSize: 2, retry: async () => (calls++, answer) });
  try {
    for (let i = 0; i < 5; i++) backlog.add(item('a', i));
    await backlog.retryNow();
    assert.deepEqual([calls, backlog.status().pending], [1, 5]);
    answer = 'settled';
    await backlog.retryNow();
    assert.deepEqual([calls, backlog.status().pending, backlog.status().settledLater], [3, 3, 2]);
  } finally {
    await backlog.close();
  }
});

test('two rounds asked at once are one: no settlement is sent twice', async () => {
  const sent: bigint[] = [];
  const backlog = new SettlementBacklog({
    retryEveryMs: 3_600_000,
    retry: async (s) => {
      sent.push(s.amount);
      await sleep(5);
      return 'settled';
    },
  });
  try {
    for (let i = 0; i < 4; i++) backlog.add(item('a', i));
    await Promise.all([backlog.retryNow(), backlog.retryNow(), backlog.retryNow()]);
    assert.deepEqual(sent, [0n, 1n, 2n, 3n]);
  } finally {
    await backlog.close();
  }
});

test('the backlog holds at most maxPending; more are counted as overflowed, never dropped unseen', async () => {
  const backlog = new SettlementBacklog({ retryEveryMs: 3_600_000, maxPending: 3, retry: async () => 'failed' });
  try {
    const added = [1, 2, 3, 4, 5].map((n) => backlog.add(item('a', n)));
    assert.deepEqual(added, [true, true, true, false, false]);
    assert.deepEqual([backlog.status().pending, backlog.status().overflowed], [3, 2]);
  } finally {
    await backlog.close();
  }
});

test('demo: transfers whose settlement failed are settled by a later batch once the org\'s gateway heals', async () => {
  const token = 'settlement-backlog-test-token';
  const demo = await startDemo({ port: 0, accounts: 4, openingBalance: 10_000n, adminToken: token, settlement: { retryEveryMs: 100, latencyMs: 0 }, sandbox: { stateDirectory: null } });
  try {
    const admin = (body: unknown) =>
      fetch(`${demo.url}/admin/faults`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) }).then((r) => r.status);
    const transfer = async (): Promise<any> => {
      const r = await fetch(`${demo.url}/transfers`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-biz-tag': 'orgId:2002|txnType:transfer' },
        body: JSON.stringify({ from: 'acct-000001', to: 'acct-000002', amount: '10' }),
      });
      assert.equal(r.status, 200);
      return r.json();
    };
    const backlog = async (): Promise<any> => ((await (await fetch(`${demo.url}/breakers`)).json()) as any).backlog;

    assert.equal(await admin({ org: '2002', failureRate: 1 }), 200);
    const queued = [await transfer(), await transfer()];
    assert.deepEqual(queued.map((t) => [t.settlement.status, t.settlement.reason]), [['queued', 'gateway_failed'], ['queued', 'gateway_failed']]);
    // While the gateway still fails, the later batches find it failing and keep both.
    await sleep(300);
    const failing = await backlog();
    assert.equal(failing.pending, 2);
    assert.ok(failing.retriesFailed >= 1, JSON.stringify(failing));

    assert.equal(await admin({ org: '2002', reset: true }), 200);
    const deadline = performance.now() + 5_000;
    let now = await backlog();
    while (now.pending > 0 && performance.now() < deadline) {
      await sleep(50);
      now = await backlog();
    }
    assert.deepEqual([now.pending, now.settledLater, now.oldestQueuedAt], [0, 2, null]);
    // The bookings stood throughout: the money moved once, when the transfers were answered.
    const balance = ((await (await fetch(`${demo.url}/accounts/acct-000001`)).json()) as any).balance;
    assert.equal(balance, '9980');
  } finally {
    await demo.close();
  }
});

test('demo: settlements still pending when the demo stops are listed on stderr for reconciliation, not dropped unseen', async (t) => {
  const token = 'settlement-backlog-test-token';
  const demo = await startDemo({ port: 0, accounts: 4, openingBalance: 10_000n, adminToken: token, settlement: { retryEveryMs: 3_600_000, latencyMs: 0 }, sandbox: { stateDirectory: null } });
  const logged: string[] = [];
  try {
    const faults = await fetch(`${demo.url}/admin/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ org: '2002', failureRate: 1 }),
    });
    assert.equal(faults.status, 200);
    const r = await fetch(`${demo.url}/transfers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-biz-tag': 'orgId:2002|txnType:transfer' },
      body: JSON.stringify({ from: 'acct-000001', to: 'acct-000002', amount: '10' }),
    });
    assert.equal(((await r.json()) as any).settlement.status, 'queued');
  } finally {
    t.mock.method(console, 'error', (...args: unknown[]) => logged.push(args.map(String).join(' ')));
    await demo.close();
    t.mock.restoreAll();
  }
  const header = logged.findIndex((line) => /1 settlement\(s\) of booked transfers not sent to the gateway/.test(line));
  assert.ok(header !== -1, logged.join('\n'));
  const listed = JSON.parse(logged[header + 1]!);
  assert.deepEqual({ ...listed, queuedAt: typeof listed.queuedAt }, { org: '2002', from: 'acct-000001', to: 'acct-000002', amount: '10', queuedAt: 'string' });
});
