import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

let demo: DemoService;
before(async () => {
  demo = await startDemo({ port: 0, accounts: 10, openingBalance: 10_000n });
});
after(async () => {
  await demo.close();
});

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const init: RequestInit = { method, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers } };
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const response = await fetch(demo.url + path, init);
  const text = await response.text();
  return { status: response.status, json: text.startsWith('{') ? JSON.parse(text) : text };
}

/** A GET with the path sent exactly as given (fetch resolves dot segments itself). */
function rawGet(path: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request(demo.url + '/', { path }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text.startsWith('{') ? JSON.parse(text) : text }));
    });
    req.on('error', reject);
    req.end();
  });
}

const balanceOf = async (id: string): Promise<string> => (await call('GET', `/accounts/${id}`)).json.balance as string;

describe('happy paths', () => {
  test('read a balance', async () => {
    const { status, json } = await call('GET', '/accounts/acct-000001');
    assert.equal(status, 200);
    assert.deepEqual(json, { id: 'acct-000001', balance: '10000' });
  });

  test('credit and debit in integer minor units, as decimal strings', async () => {
    assert.deepEqual((await call('POST', '/accounts/acct-000002/credit', { amount: '250' })).json, { id: 'acct-000002', balance: '10250' });
    assert.deepEqual((await call('POST', '/accounts/acct-000002/debit', { amount: '10250' })).json, { id: 'acct-000002', balance: '0' });
  });

  test('transfer moves money between two accounts', async () => {
    const { status, json } = await call('POST', '/transfers', { from: 'acct-000003', to: 'acct-000004', amount: '1000' });
    assert.equal(status, 200);
    assert.equal(json.from.balance, '9000');
    assert.equal(json.to.balance, '11000');
  });

  test('metrics are exposed with the specification names', async () => {
    const response = await fetch(`${demo.url}/metrics`);
    const text = await response.text();
    assert.match(response.headers.get('content-type') ?? '', /text\/plain/);
    assert.match(text, /syncmap_load_total\{map="balances"\} \d+/);
    assert.match(text, /syncmap_miss_ratio\{map="balances"\}/);
    assert.match(text, /syncmap_range_duration_seconds_bucket/);
  });
});

describe('bad input: a 4xx with a code and a reason, and nothing changes', () => {
  const badAmounts: Array<[string, unknown, string]> = [
    ['float', '10.5', 'AMOUNT_MALFORMED'],
    ['JSON number', 10, 'AMOUNT_NOT_STRING'],
    ['JSON float', 10.5, 'AMOUNT_NOT_STRING'],
    ['exponent', '1e3', 'AMOUNT_MALFORMED'],
    ['negative', '-5', 'AMOUNT_MALFORMED'],
    ['zero', '0', 'AMOUNT_NOT_POSITIVE'],
    ['leading zeros', '007', 'AMOUNT_MALFORMED'],
    ['beyond int64', '9223372036854775808', 'AMOUNT_TOO_LARGE'],
    ['far beyond int64', '99999999999999999999999', 'AMOUNT_TOO_LARGE'],
    ['spaces', ' 5', 'AMOUNT_MALFORMED'],
    ['hex', '0x10', 'AMOUNT_MALFORMED'],
    ['missing', undefined, 'AMOUNT_MISSING'],
    ['null', null, 'AMOUNT_MISSING'],
    ['object', { value: '5' }, 'AMOUNT_NOT_STRING'],
  ];
  for (const [label, amount, code] of badAmounts) {
    test(`amount: ${label}`, async () => {
      const before = await balanceOf('acct-000005');
      const { status, json } = await call('POST', '/accounts/acct-000005/credit', amount === undefined ? {} : { amount });
      assert.equal(status, 400);
      assert.equal(json.error.code, code);
      assert.equal(typeof json.error.reason, 'string');
      assert.equal(await balanceOf('acct-000005'), before);
    });
  }

  test('a debit beyond the balance is refused by the validator (422) and changes nothing', async () => {
    const { status, json } = await call('POST', '/accounts/acct-000006/debit', { amount: '10001' });
    assert.equal(status, 422);
    assert.equal(json.error.code, 'BALANCE_UNDERFLOW');
    assert.equal(await balanceOf('acct-000006'), '10000');
  });

  test('a credit that would leave int64 is refused', async () => {
    const { status, json } = await call('POST', '/accounts/acct-000006/credit', { amount: '9223372036854775807' });
    assert.equal(status, 422);
    assert.equal(json.error.code, 'BALANCE_OVERFLOW');
    assert.equal(await balanceOf('acct-000006'), '10000');
  });

  test('a transfer whose credit leg is refused leaves both accounts as they were', async () => {
    await call('POST', '/accounts/acct-000007/credit', { amount: String(9223372036854775807n - 10000n) });
    const { status } = await call('POST', '/transfers', { from: 'acct-000008', to: 'acct-000007', amount: '1' });
    assert.equal(status, 422);
    assert.equal(await balanceOf('acct-000008'), '10000');
    assert.equal(await balanceOf('acct-000007'), '9223372036854775807');
  });

  test('unknown accounts are 404 with a code', async () => {
    const { status, json } = await call('GET', '/accounts/acct-999999');
    assert.equal(status, 404);
    assert.equal(json.error.code, 'ACCOUNT_NOT_FOUND');
    assert.equal((await call('POST', '/transfers', { from: 'acct-000001', to: 'nobody', amount: '1' })).status, 404);
  });

  test('hostile keys are refused, never a 500', async () => {
    for (const id of ['__proto__', 'constructor', 'a%00b', 'x'.repeat(65)]) {
      const { status } = await call('GET', `/accounts/${id}`);
      assert.ok(status === 400 || status === 404, `${id} -> ${status}`);
    }
    // Dot segments are refused, not resolved (fetch would resolve them before sending: raw requests).
    for (const id of ['%2e%2e', '..']) {
      const { status, json } = await rawGet(`/accounts/${id}`);
      assert.equal(status, 400, `${id} -> ${status}`);
      assert.equal(json.error.code, 'PATH_DOT_SEGMENT');
    }
    assert.equal((await call('POST', '/accounts/__proto__/credit', { amount: '1' })).status, 400);
    assert.equal((await call('POST', '/accounts/%E0%A4%A/credit', { amount: '1' })).json.error.code, 'PATH_MALFORMED');
  });

  test('malformed, non-object, oversized bodies and wrong media types', async () => {
    assert.equal((await call('POST', '/accounts/acct-000001/credit', '{"amount":')).json.error.code, 'BODY_MALFORMED');
    assert.equal((await call('POST', '/accounts/acct-000001/credit', '[1]')).json.error.code, 'BODY_NOT_OBJECT');
    const big = await call('POST', '/accounts/acct-000001/credit', JSON.stringify({ amount: '1', pad: 'x'.repeat(10_000) }));
    assert.equal(big.status, 413);
    assert.equal(big.json.error.code, 'BODY_TOO_LARGE');
    const form = await call('POST', '/accounts/acct-000001/credit', 'amount=1', { 'content-type': 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 415);
    assert.equal((await call('POST', '/accounts/acct-000001/credit', { amount: '1', amout: '2' })).json.error.code, 'BODY_UNKNOWN_FIELD');
    assert.equal((await call('POST', '/accounts/acct-000001/credit', '{"__proto__":{"amount":"1"}}')).status, 400);
  });

  test('unknown routes and methods', async () => {
    assert.equal((await call('GET', '/nope')).status, 404);
    assert.equal((await call('DELETE', '/accounts/acct-000001')).status, 405);
  });

  test('the service keeps serving after all of the above', async () => {
    assert.equal((await call('GET', '/healthz')).status, 200);
  });
});

describe('concurrency over HTTP', () => {
  test('200 concurrent debits of 1 from one account: exactly the money there was, no lost update', async () => {
    await call('POST', '/accounts/acct-000009/debit', { amount: '9900' }); // leaves 100
    const results = await Promise.all(Array.from({ length: 200 }, () => call('POST', '/accounts/acct-000009/debit', { amount: '1' })));
    assert.equal(results.filter((r) => r.status === 200).length, 100);
    assert.equal(results.filter((r) => r.status === 422).length, 100);
    assert.equal(await balanceOf('acct-000009'), '0');
  });
});

describe('shutdown', () => {
  test('close() answers a transfer already in flight (it was booked) instead of cutting its connection, with a dashboard stream open', async () => {
    // Settlement takes 150 ms, so the transfer is booked and still owed its answer when close() starts.
    const service = await startDemo({ port: 0, accounts: 3, openingBalance: 10_000n, settlement: { latencyMs: 150 } });
    const stream = await fetch(`${service.url}/events`);
    assert.equal(stream.status, 200);
    const reading = stream.text().catch(() => 'cut');
    // The stream's own request was served above: the next request the server starts is the transfer.
    const received = once(service.server, 'request', { signal: AbortSignal.timeout(10_000) });
    const answer = fetch(`${service.url}/transfers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ from: 'acct-000001', to: 'acct-000002', amount: '700' }),
    }).then(
      async (response) => ({ status: response.status, json: JSON.parse(await response.text()) }),
      (error: unknown) => ({ status: 0, json: { error: String((error as { cause?: unknown }).cause ?? error) } }),
    );
    // close() starts once the server has the transfer: after a fixed 50 ms pause a busy machine
    // could call close() before the request had even connected, and it was refused (status 0).
    const [transfer] = (await received) as [IncomingMessage];
    assert.equal(`${transfer.method} ${transfer.url}`, 'POST /transfers');
    const closing = Date.now();
    await service.close();
    assert.ok(Date.now() - closing < 5_000, 'the dashboard stream (which never ends by itself) does not hold the close');
    const { status, json } = await answer;
    assert.equal(status, 200, JSON.stringify(json));
    assert.equal(json.from.balance, '9300');
    assert.equal(json.settlement.status, 'settled');
    await reading;
  });
});
