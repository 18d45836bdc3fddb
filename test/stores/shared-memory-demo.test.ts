/**
 * The demo's balances live in shared memory: a payment made through the HTTP API (main thread,
 * GovernedMap, validated) is what the risk-scan workers read directly from shared memory.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDemo } from '../../demo/server.ts';

test('demo: worker threads scan the balances the HTTP API writes, straight from shared memory', async () => {
  const demo = await startDemo({ port: 0, accounts: 3000, sandbox: { stateDirectory: null } });
  try {
    const exposure = async (floor: string): Promise<{ status: number; body: Record<string, unknown> }> => {
      const response = await fetch(`${demo.url}/shared-memory/exposure?floor=${floor}`);
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const before = await exposure('1000000');
    assert.equal(before.status, 200);
    assert.equal(before.body.total, String(3000n * 1_000_000n));
    assert.equal(before.body.belowFloor, 0);

    const debit = await fetch(`${demo.url}/accounts/acct-002999/debit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":"2500"}' });
    assert.equal(debit.status, 200);
    const refused = await fetch(`${demo.url}/accounts/acct-000001/debit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":"99999999"}' });
    assert.equal(refused.status, 422, 'the validator still guards the shared balances');

    const after = await exposure('1000000');
    assert.equal(after.body.total, String(3000n * 1_000_000n - 2500n));
    assert.deepEqual(after.body.listed, ['acct-002999']);
    const workers = after.body.workers as Array<{ thread: number; reads: number }>;
    assert.equal(workers.length, 2);
    assert.ok(workers.every((w) => w.thread > 0 && w.reads === 1500), 'each worker thread read its half');

    assert.equal((await exposure('ten')).status, 400);
    const stats = (await (await fetch(`${demo.url}/shared-memory`)).json()) as { kind: string; keys: number };
    assert.deepEqual([stats.kind, stats.keys], ['shared-memory', 3000]);
  } finally {
    await demo.close();
  }
});

test('demo: concurrent exposure scans each get their own floor\'s answer, not another scan\'s reply', async () => {
  const demo = await startDemo({ port: 0, accounts: 100, openingBalance: 1_000n, sandbox: { stateDirectory: null } });
  try {
    // Every balance is 1,000: a floor of 1 lists none, a floor of 1,000,000 lists all 100.
    const floors = ['1', '1000000', '1', '1000000', '1', '1000000'];
    const answers = await Promise.all(floors.map(async (floor) => (await fetch(`${demo.url}/shared-memory/exposure?floor=${floor}`)).json() as Promise<{ floor: string; belowFloor: number }>));
    assert.deepEqual(
      answers.map((a) => [a.floor, a.belowFloor]),
      floors.map((floor) => [floor, floor === '1' ? 0 : 100]),
    );
  } finally {
    await demo.close();
  }
});
