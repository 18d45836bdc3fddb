/**
 * The reference clearing service with routing and switches plugged in, over real HTTP: what an
 * operator and a client of `govmap demo` see.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

const TOKEN = 'test-admin-token-0123456789';
let demo: DemoService;
before(async () => {
  demo = await startDemo({ port: 0, accounts: 20, openingBalance: 1_000_000n, switches: { adminToken: TOKEN }, routing: { drainMs: 200 } });
});
after(() => demo.close());

interface Answer {
  status: number;
  route: string | null;
  degraded: string | null;
  retryAfter: string | null;
  json: any;
}

async function call(method: string, path: string, options: { tag?: string; body?: unknown; token?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (options.tag !== undefined) headers['x-biz-tag'] = options.tag;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const response = await fetch(demo.url + path, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const text = await response.text();
  return { status: response.status, route: response.headers.get('x-govmap-route'), degraded: response.headers.get('x-govmap-degraded'), retryAfter: response.headers.get('retry-after'), json: text.startsWith('{') ? JSON.parse(text) : text };
}

const pay = (org: string, amount = '100') => call('POST', '/payments', { tag: `orgId:${org}|txnType:pay`, body: { from: 'acct-000001', to: 'acct-000002', amount } });

test('settlement references are unique across settled transfers and routed payments', async () => {
  const references: string[] = [];
  for (let i = 0; i < 3; i++) {
    const transfer = await call('POST', '/transfers', { tag: 'orgId:3003|txnType:transfer', body: { from: 'acct-000005', to: 'acct-000006', amount: '10' } });
    assert.equal(transfer.status, 200, JSON.stringify(transfer.json));
    if (transfer.json.settlement?.status === 'settled') references.push(transfer.json.settlement.reference);
    const payment = await pay('3003');
    assert.equal(payment.status, 200, JSON.stringify(payment.json));
    references.push(payment.json.reference);
  }
  assert.ok(references.length >= 4, JSON.stringify(references));
  assert.equal(new Set(references).size, references.length, `a reference given twice: ${references.join(', ')}`);
});

describe('tagging', () => {
  test('every handler runs behind the middleware: untagged -> default route; malformed -> 400 and nothing runs', async () => {
    assert.equal((await call('GET', '/healthz')).route, 'default');
    const before = (await call('GET', '/accounts/acct-000003')).json.balance;
    const bad = await call('POST', '/accounts/acct-000003/credit', { tag: 'orgId:1001|orgId:1002', body: { amount: '5' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'GOVMAP_BIZTAG_INVALID');
    assert.equal(bad.json.error.rule, 'DUPLICATE_KEY');
    assert.equal((await call('GET', '/accounts/acct-000003')).json.balance, before, 'the refused request changed nothing');
  });

  test('GET /routes shows the table in precedence order, each route\'s breaker and bulkhead, and unmatched counts', async () => {
    await call('GET', '/healthz', { tag: 'orgId:9999|txnType:pay' });
    const routes = await call('GET', '/routes', { tag: 'orgId:100101|txnType:pay' });
    assert.equal(routes.status, 200);
    assert.deepEqual(
      routes.json.routes.map((r: any) => r.id),
      ['org-2002-pay', 'org-3003-pay', 'org-1001', 'fx-quotes', 'transfers', 'default'],
    );
    assert.equal(routes.json.routes[1].breaker, 'CLOSED');
    assert.ok(routes.json.decisions.noRule >= 1);
    assert.deepEqual(routes.json.yourRequest, { tag: { orgId: '100101', txnType: 'pay' }, route: 'org-1001' });
  });
});

describe('switches', () => {
  test('GET /switches shows the snapshot and how each switch evaluates for the caller', async () => {
    const answer = await call('GET', '/switches', { tag: 'orgId:1001' });
    assert.equal(answer.status, 200);
    assert.ok(answer.json.version >= 1);
    assert.equal(answer.json.evaluated['payments.enabled'].on, true);
    assert.deepEqual(answer.json.context, { orgId: '1001' });
    assert.match(answer.json.evaluated['payments.instant-confirm'].reason, /^ROLLOUT_(INCLUDED|EXCLUDED)$/);
  });

  test('POST /admin/switches needs the token, validates, is conditional, and is audited', async () => {
    const body = { set: { 'payments.limit': { enabled: true, value: '1000', offValue: '0' } }, reason: 'tighten limit', actor: 'ops-1' };
    assert.equal((await call('POST', '/admin/switches', { body })).status, 401);
    assert.equal((await call('POST', '/admin/switches', { body, token: 'wrong' })).status, 401);
    const invalid = await call('POST', '/admin/switches', { body: { set: { 'payments.limit': { enabled: 'yes' } }, reason: 'typo' }, token: TOKEN });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.json.error.issues[0].path, 'switches["payments.limit"].enabled');
    const version = (await call('GET', '/switches')).json.version;
    const changed = await call('POST', '/admin/switches', { body: { ...body, expectedVersion: version }, token: TOKEN });
    assert.deepEqual([changed.status, changed.json.version, changed.json.changes], [200, version + 1, ['payments.limit']]);
    const stale = await call('POST', '/admin/switches', { body: { ...body, set: { 'payments.limit': { enabled: true, value: '2000', offValue: '0' } }, expectedVersion: version }, token: TOKEN });
    assert.equal(stale.status, 409);
    const over = await pay('3003', '1001');
    assert.deepEqual([over.status, over.json.error.code], [422, 'PAYMENT_LIMIT_EXCEEDED']);
    const audit = (await call('GET', '/switches')).json.audit[0];
    assert.deepEqual([audit.actor, audit.reason, audit.oldVersion, audit.newVersion], ['admin:ops-1', 'tighten limit', version, version + 1]);
    await call('POST', '/admin/switches', { body: { set: { 'payments.limit': { enabled: true, value: '50000000', offValue: '0' } }, reason: 'restore' }, token: TOKEN });
  });
});

describe('isolation in the demo', () => {
  test('org 1001\'s gateway fails: its breaker opens and its payments queue (202); org 2002 keeps settling live', async () => {
    const broken = await call('POST', '/admin/routing/faults', { body: { target: 'gw-north', failureRate: 1 }, token: TOKEN });
    assert.equal(broken.status, 200);
    const deadline = Date.now() + 10_000;
    let degraded: Answer | null = null;
    const before1001 = (await call('GET', '/accounts/acct-000001')).json.balance;
    let settled2002 = 0;
    while (degraded === null && Date.now() < deadline) {
      const [a, b] = await Promise.all([pay('100101'), pay('2002')]);
      if (a.status === 202) degraded = a;
      else assert.equal(a.status, 502, 'before the breaker opens, the failure reaches the client and nothing is booked');
      assert.deepEqual([b.status, b.json.status, b.degraded], [200, 'SETTLED', null]);
      settled2002++;
      await new Promise((r) => setTimeout(r, 40));
    }
    assert.ok(degraded !== null, 'org 1001 was degraded within 10 s');
    assert.equal(degraded.degraded, 'async; reason=BREAKER_OPEN');
    assert.equal(degraded.json.status, 'ACCEPTED');
    // Only org 2002's payments moved money from acct-000001 (1001's failed or are queued).
    assert.equal(BigInt((await call('GET', '/accounts/acct-000001')).json.balance), BigInt(before1001) - 100n * BigInt(settled2002));
    const status = await call('GET', `/payments/${degraded.json.token}`);
    assert.deepEqual([status.status, status.json.state], [200, 'queued']);
    const routes = (await call('GET', '/routes')).json.routes;
    assert.equal(routes.find((r: any) => r.id === 'org-1001').breaker, 'OPEN');
    assert.equal(routes.find((r: any) => r.id === 'org-2002-pay').breaker, 'CLOSED');
    await call('POST', '/admin/routing/faults', { body: { target: 'gw-north', failureRate: 0 }, token: TOKEN });
  });

  test('org 2002\'s degraded payment is answered as not taken: nothing booked, queued or held, send it again later; no money moves', async () => {
    const force = (enabled: boolean) => call('POST', '/admin/switches', { body: { set: { 'routing.force-degrade': { enabled, allow: [{ orgIds: ['2002'] }] } }, reason: 'demo test: degrade org 2002' }, token: TOKEN });
    assert.equal((await force(true)).status, 200);
    try {
      const before = (await call('GET', '/accounts/acct-000001')).json.balance;
      const answer = await pay('2002');
      assert.deepEqual([answer.status, answer.degraded, answer.route, answer.retryAfter], [503, 'mock; reason=FORCED_BY_SWITCH', 'org-2002-pay', '10']);
      assert.equal(answer.json.error.code, 'SETTLEMENT_GATEWAY_DEGRADED');
      assert.match(answer.json.error.reason, /not booked, queued or held/);
      assert.match(answer.json.error.reason, /send it again after retry-after/);
      assert.doesNotMatch(JSON.stringify(answer.json), /PENDING|manual release/, 'nothing is held: the client must not wait for it');
      assert.equal(answer.json.token, undefined, 'no token: there is nothing to follow');
      assert.equal((await call('GET', '/accounts/acct-000001')).json.balance, before, 'no money moved');
    } finally {
      await force(false);
    }
  });

  test('fx quotes are served from cache (with their age) while the FX gateway\'s breaker is open', async () => {
    const live = await call('GET', '/fx/EURUSD', { tag: 'orgId:5005|txnType:fx' });
    assert.deepEqual([live.status, live.route, live.json.rate], [200, 'fx-quotes', '1.0842']);
    await call('POST', '/admin/routing/faults', { body: { target: 'gw-fx', failureRate: 1 }, token: TOKEN });
    const deadline = Date.now() + 10_000;
    let cached: Answer | null = null;
    while (cached === null && Date.now() < deadline) {
      const a = await call('GET', '/fx/EURUSD', { tag: 'orgId:5005|txnType:fx' });
      if (a.degraded !== null) cached = a;
      else await call('GET', '/fx/GBPUSD', { tag: 'orgId:6006|txnType:fx' });
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(cached !== null);
    assert.deepEqual([cached.status, cached.degraded, cached.json.rate], [200, 'cache; reason=BREAKER_OPEN', '1.0842']);
    const otherOrg = await call('GET', '/fx/EURUSD', { tag: 'orgId:7007|txnType:fx' });
    assert.deepEqual([otherOrg.status, otherOrg.json.error?.code], [503, 'ROUTE_DEGRADED'], 'another org never gets org 5005\'s cached answer');
    await call('POST', '/admin/routing/faults', { body: { target: 'gw-fx', failureRate: 0 }, token: TOKEN });
  });
});
