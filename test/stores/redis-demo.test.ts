import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createClient } from 'redis';
import { demoRedisOptions, openRedisLedger } from '../../demo/redis.ts';
import { describeStartFailure } from '../../src/cli/demo-start-failure.ts';
import { LedgerError } from '../../demo/ledger.ts';
import { startDemo } from '../../demo/server.ts';
import { AuditNotDurableError } from '../../src/audit/index.ts';
import type { DemoService } from '../../demo/server.ts';
import { PrivateRedis, freePort, required, service, uniquePrefix } from './redis-env.ts';

/**
 * `govmap demo --redis`: two instances of the reference clearing service on one real Redis share
 * the balances; Redis going away answers 503, never a made-up success.
 */
const redis = service('GOVMAP_REDIS_URL');

async function call(demo: DemoService, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const init: RequestInit = { method, headers: body === undefined ? {} : { 'content-type': 'application/json' } };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(demo.url + path, init);
  const text = await response.text();
  return { status: response.status, json: text.startsWith('{') ? JSON.parse(text) : text };
}

async function eventually(read: () => Promise<unknown>, expected: unknown, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const actual = await read();
    if (JSON.stringify(actual) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('govmap demo with balances in a real Redis', { skip: redis.skip }, () => {
  let a: DemoService;
  let b: DemoService;
  let keyPrefix: string;

  before(async () => {
    const url = required(redis, 'GOVMAP_REDIS_URL');
    keyPrefix = uniquePrefix('demo');
    a = await startDemo({ port: 0, accounts: 5, openingBalance: 10_000n, redis: { url, keyPrefix } });
    b = await startDemo({ port: 0, accounts: 5, openingBalance: 99n, redis: { url, keyPrefix } });
  });

  after(async () => {
    await a?.close();
    await b?.close();
    const raw = createClient({ url: redis.value! });
    await raw.connect();
    for await (const keys of raw.scanIterator({ MATCH: `${keyPrefix}*`, COUNT: 100 })) if (keys.length > 0) await raw.del(keys);
    await raw.close();
  });

  test('the second instance finds the accounts the first created (it seeds only missing ones)', async () => {
    assert.deepEqual((await call(b, 'GET', '/accounts/acct-000001')).json, { id: 'acct-000001', balance: '10000' });
    assert.ok(a.announcements.some((line) => /5 accounts created/.test(line)));
    assert.ok(b.announcements.some((line) => /0 accounts created, 5 already there/.test(line)));
  });

  test('a debit on one instance is seen by the other; an overdraft is refused on either', async () => {
    assert.equal((await call(b, 'GET', '/accounts/acct-000002')).json.balance, '10000'); // b caches it
    assert.deepEqual((await call(a, 'POST', '/accounts/acct-000002/debit', { amount: '2500' })).json, { id: 'acct-000002', balance: '7500' });
    await eventually(async () => (await call(b, 'GET', '/accounts/acct-000002')).json.balance, '7500', 'b seeing a\'s debit');
    const overdraft = await call(b, 'POST', '/accounts/acct-000002/debit', { amount: '7501' });
    assert.equal(overdraft.status, 422);
    assert.equal(overdraft.json.error.code, 'BALANCE_UNDERFLOW');
    const raw = createClient({ url: redis.value! });
    await raw.connect();
    assert.equal(await raw.get(`${keyPrefix}acct-000002`), '7500', 'Redis holds the balance as a decimal string, unchanged by the refusal');
    await raw.close();
  });

  test('transfers through either instance keep the books balanced', async () => {
    const moves = await Promise.all(
      Array.from({ length: 20 }, (_, i) => call(i % 2 === 0 ? a : b, 'POST', '/transfers', { from: 'acct-000003', to: 'acct-000004', amount: '600' })),
    );
    const ok = moves.filter((m) => m.status === 200).length;
    assert.equal(ok, 16, '10,000 / 600 = 16 transfers fit');
    for (const m of moves) if (m.status !== 200) assert.equal(m.json.error.code, 'BALANCE_UNDERFLOW');
    await eventually(async () => [(await call(a, 'GET', '/accounts/acct-000003')).json.balance, (await call(b, 'GET', '/accounts/acct-000004')).json.balance], ['400', '19600'], 'balances after the transfers');
  });

  test('POST /payments books in Redis like the account routes: the other instance sees the payment', async () => {
    const paid = await call(a, 'POST', '/payments', { from: 'acct-000000', to: 'acct-000001', amount: '250' });
    assert.equal(paid.status, 200, JSON.stringify(paid.json));
    assert.equal(paid.json.status, 'SETTLED');
    assert.deepEqual([paid.json.from.balance, paid.json.to.balance], ['9750', '10250']);
    await eventually(async () => [(await call(b, 'GET', '/accounts/acct-000000')).json.balance, (await call(b, 'GET', '/accounts/acct-000001')).json.balance], ['9750', '10250'], 'balances on the other instance after the payment');
    const overdraft = await call(b, 'POST', '/payments', { from: 'acct-000000', to: 'acct-000001', amount: '9751' });
    assert.equal(overdraft.status, 422, JSON.stringify(overdraft.json));
    assert.equal(overdraft.json.error.code, 'BALANCE_UNDERFLOW', 'refused against the Redis balance, not the in-process one');
  });

  test('metrics export the Redis-backed map as "balances"', async () => {
    const text = await (await fetch(`${a.url}/metrics`)).text();
    assert.match(text, /syncmap_load_total\{map="balances"\} [1-9]/);
    assert.equal(a.book.balances.stats().name, 'balances');
    assert.ok((a.book.balances.stats() as { store?: string }).store === 'redis');
  });
});

describe('govmap demo on a TLS Redis signed by a private CA (--redis-ca-file)', { skip: PrivateRedis.available() || process.env.CI ? false : 'redis-server is not installed' }, () => {
  test('with the CA file it keeps its balances there; without it the start is refused naming the flag, and with no Redis the flag is refused', async () => {
    const server = new PrivateRedis(await freePort(), { tls: true });
    await server.start();
    try {
      const demo = await startDemo({ port: 0, accounts: 2, openingBalance: 700n, redis: demoRedisOptions({ redis: server.url, redisCaFile: server.caFile }) });
      try {
        assert.equal((await call(demo, 'GET', '/accounts/acct-000001')).json.balance, '700');
        assert.equal((await call(demo, 'POST', '/accounts/acct-000001/debit', { amount: '200' })).json.balance, '500');
      } finally {
        await demo.close();
      }
      // The balances really are on the TLS server, not in the demo's memory: a new demo finds them.
      const again = await startDemo({ port: 0, accounts: 2, openingBalance: 700n, redis: demoRedisOptions({ redis: server.url, redisCaFile: server.caFile }) });
      try {
        assert.equal((await call(again, 'GET', '/accounts/acct-000001')).json.balance, '500');
      } finally {
        await again.close();
      }
      await assert.rejects(startDemo({ port: 0, accounts: 2, redis: demoRedisOptions({ redis: server.url }) }), (error: Error & { details?: { option?: unknown } }) => {
        assert.equal(error.details?.option, 'redis.tls', error.message);
        assert.match(describeStartFailure(error, { host: '127.0.0.1', port: 0, auditDir: '.govmap/audit' })!.message, /^invalid option "--redis-ca-file": the server's TLS certificate is not trusted/);
        return true;
      });
    } finally {
      await server.kill();
    }
    assert.throws(() => demoRedisOptions({ redisCaFile: server.caFile }), /--redis-ca-file.*needs --redis/);
  });
});

describe('govmap demo when its Redis goes away', { skip: PrivateRedis.available() || process.env.CI ? false : 'redis-server is not installed' }, () => {
  test('answers 503 REDIS_UNAVAILABLE, then serves again once Redis is back', async () => {
    const server = new PrivateRedis(await freePort());
    await server.start();
    const demo = await startDemo({ port: 0, accounts: 2, openingBalance: 500n, redis: { url: server.url } });
    try {
      assert.equal((await call(demo, 'GET', '/accounts/acct-000001')).json.balance, '500');
      await server.kill();
      const deadline = Date.now() + 5000;
      let refused;
      do {
        refused = await call(demo, 'POST', '/accounts/acct-000001/debit', { amount: '1' });
      } while (refused.status === 200 && Date.now() < deadline);
      assert.equal(refused.status, 503);
      assert.equal(refused.json.error.code, 'REDIS_UNAVAILABLE');
      const read = await call(demo, 'GET', '/accounts/acct-000001');
      assert.equal(read.status, 503, 'the near cache is dropped, not trusted, while Redis is away');
      await server.start();
      let back;
      const again = Date.now() + 10_000;
      do {
        await new Promise((resolve) => setTimeout(resolve, 50));
        back = await call(demo, 'GET', '/accounts/acct-000001');
      } while (back.status === 503 && Date.now() < again);
      assert.equal(back.status, 404, 'Redis came back empty (no persistence) and the service says so, not the old balance of 500');
    } finally {
      await demo.close();
      await server.stop();
    }
  });
});

/**
 * A Redis ledger of two seeded accounts (10,000 each) whose audit fsync fails on the `failOn`th
 * write (1: the debit, 2: the credit), Redis having applied it; `check` gets the ledger and a
 * raw client to read what Redis holds. The keys are removed afterwards.
 */
async function withFlushFailingOn(failOn: number, name: string, check: (ledger: Awaited<ReturnType<typeof openRedisLedger>>, read: (id: string) => Promise<bigint>) => Promise<void>): Promise<void> {
  const url = required(redis, 'GOVMAP_REDIS_URL');
  const keyPrefix = uniquePrefix(name);
  const ledger = await openRedisLedger({ url, keyPrefix });
  const raw = createClient({ url });
  await raw.connect();
  try {
    await ledger.seed(2, 10_000n);
    let flushes = 0;
    ledger.balances.observe({
      onOperation: () => undefined,
      flush: async () => {
        if (++flushes === failOn) throw new AuditNotDurableError('/spool', new Error('ENOSPC'));
      },
    });
    await check(ledger, async (id) => BigInt((await raw.get(`${keyPrefix}${id}`))!));
  } finally {
    await ledger.close();
    for await (const keys of raw.scanIterator({ MATCH: `${keyPrefix}*`, COUNT: 100 })) if (keys.length > 0) await raw.del(keys);
    await raw.close();
  }
}

describe('the demo\'s Redis transfer when the credit fails after it was applied', { skip: redis.skip }, () => {
  test('an error that does not prove the credit failed (audit not durable) is not "reversed": the books stay balanced', async () => {
    // The audit's fsync fails on the second write (the credit): Redis applied it, the awaited
    // add rejects with AuditNotDurableError ("the operation was applied"). Reversing the debit
    // then creates money: the payer is made whole and the payee keeps the credit.
    await withFlushFailingOn(2, 'demo-transfer', async (ledger, read) => {
      await assert.rejects(ledger.transfer('acct-000000', 'acct-000001', 2_500n), (error: unknown) => {
        assert.ok(error instanceof LedgerError, String(error));
        assert.equal(error.code, 'TRANSFER_OUTCOME_UNKNOWN');
        return true;
      });
      const from = await read('acct-000000');
      const to = await read('acct-000001');
      assert.equal(from + to, 20_000n, `money was created: ${from} + ${to}`);
    });
  });

  test('a debit applied but not made durable (audit not durable) is answered as an outcome to reconcile, not as a refusal', async () => {
    // The first write (the debit) is in Redis, but its audit fsync fails: the money has left the
    // payer and nothing is credited. A plain refusal would tell the client nothing moved.
    await withFlushFailingOn(1, 'demo-debit', async (ledger, read) => {
      await assert.rejects(ledger.transfer('acct-000000', 'acct-000001', 2_500n), (error: unknown) => {
        assert.ok(error instanceof LedgerError, String(error));
        assert.equal(error.code, 'TRANSFER_OUTCOME_UNKNOWN');
        assert.match(error.message, /debit of acct-000000 may have been applied/);
        return true;
      });
      assert.equal(await read('acct-000000'), 7_500n, 'the debit is in Redis: the error had to say so');
    });
  });
});
