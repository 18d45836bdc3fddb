/**
 * The demo's admin surface and the switches it sets, as an operator meets them: a payment limit
 * that is not minor units never lifts the limit, an org named like an Object.prototype member is
 * an org like any other, the bearer scheme is case-insensitive, and refusals echo the value.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MAX_FAULTED_ORGS } from '../../demo/breaker.ts';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

const TOKEN = 'admin-test-token-0123456789';
let demo: DemoService;
before(async () => {
  demo = await startDemo({ port: 0, accounts: 10, openingBalance: 100_000_000n, adminToken: TOKEN, routing: { drainMs: 100 } });
});
after(() => demo.close());

async function call(service: DemoService, method: string, path: string, body?: unknown, authorization: string | null = `Bearer ${TOKEN}`): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (authorization !== null) headers.authorization = authorization;
  const response = await fetch(service.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, json: text.startsWith('{') ? JSON.parse(text) : text };
}

/** Rejects as startDemo(options) does, or, when it starts after all, closes it and fails (a running demo would keep the test alive). */
async function startRefused(options: Parameters<typeof startDemo>[0]): Promise<Error & { code?: string }> {
  let started: DemoService;
  try {
    started = await startDemo(options);
  } catch (error) {
    return error as Error & { code?: string };
  }
  await started.close();
  assert.fail('the demo started');
}

const pay = (service: DemoService, amount: string) => call(service, 'POST', '/payments', { from: 'acct-000001', to: 'acct-000002', amount });

describe('payments.limit: a value that is not minor units never lifts the limit', () => {
  const malformed: Array<[string, unknown]> = [
    ['a JSON number', { enabled: true, value: 1000, offValue: 0 }],
    ['digits with a separator', { enabled: true, value: '1,000', offValue: '0' }],
    ['an empty offValue, switched off', { enabled: false, value: '1000', offValue: '' }],
    ['the true/false shorthand', true],
  ];
  for (const [label, definition] of malformed) {
    test(`set by an admin, ${label}: 400 PAYMENT_LIMIT_INVALID naming the switch, and the limit stands`, async () => {
      const before = (await call(demo, 'GET', '/switches')).json.version;
      const answer = await call(demo, 'POST', '/admin/switches', { reason: 'cap', set: { 'payments.limit': definition } });
      assert.deepEqual([answer.status, answer.json.error.code], [400, 'PAYMENT_LIMIT_INVALID']);
      assert.match(answer.json.error.reason, /payments\.limit/);
      assert.equal((await call(demo, 'GET', '/switches')).json.version, before, 'no new version');
      const over = await pay(demo, '50000001');
      assert.deepEqual([over.status, over.json.error.code], [422, 'PAYMENT_LIMIT_EXCEEDED']);
    });
  }

  test('a valid limit is still set, and applies', async () => {
    const set = await call(demo, 'POST', '/admin/switches', { reason: 'cap', set: { 'payments.limit': { enabled: true, value: '1000', offValue: '0' } } });
    assert.equal(set.status, 200);
    assert.equal((await pay(demo, '1001')).json.error.code, 'PAYMENT_LIMIT_EXCEEDED');
    assert.equal((await pay(demo, '1000')).json.status, 'SETTLED');
  });

  test('from a switch file (not checked at the door): every payment is refused, 503 naming the switch, its version and value', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-limit-'));
    const file = join(dir, 'switches.json');
    await writeFile(file, JSON.stringify({ switches: { 'payments.enabled': true, 'payments.limit': { enabled: true, value: 1000, offValue: 0 } } }));
    const filed = await startDemo({ port: 0, accounts: 10, openingBalance: 100_000_000n, adminToken: TOKEN, switches: { file }, routing: { drainMs: 100 } });
    try {
      const before = (await call(filed, 'GET', '/accounts/acct-000001')).json.balance;
      for (const amount of ['500000', '1']) {
        const answer = await pay(filed, amount);
        assert.deepEqual([answer.status, answer.json.error.code], [503, 'PAYMENT_LIMIT_INVALID'], amount);
        assert.match(answer.json.error.reason, /payments\.limit \(v\d+\).*1000/);
      }
      assert.equal((await call(filed, 'GET', '/accounts/acct-000001')).json.balance, before, 'nothing moved');
    } finally {
      await filed.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the bearer scheme is case-insensitive on every admin endpoint; the token is not', () => {
  const endpoints: Array<[string, unknown]> = [
    ['/admin/faults', { latencyMs: 5 }],
    ['/admin/switches', { reason: 'probe', set: { 'routing.force-degrade': false } }],
    ['/admin/routing/faults', { target: 'gw-core', latencyMs: 2 }],
  ];
  for (const [path, body] of endpoints) {
    test(path, async () => {
      for (const scheme of ['bearer', 'BEARER', 'Bearer']) assert.equal((await call(demo, 'POST', path, body, `${scheme} ${TOKEN}`)).status, 200, scheme);
      for (const authorization of [`Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN, 'Bearer', null]) {
        const refused = await call(demo, 'POST', path, body, authorization);
        assert.deepEqual([refused.status, refused.json.error.code], [401, 'ADMIN_TOKEN_REQUIRED'], String(authorization));
      }
    });
  }
});

describe('every 401 carries the challenge RFC 9110 §11.6.1 requires (www-authenticate: Bearer realm="govmap-demo")', () => {
  const refused: Array<[method: string, path: string, body: unknown]> = [
    ['POST', '/admin/faults', { latencyMs: 5 }],
    ['POST', '/admin/switches', { reason: 'probe', set: { 'routing.force-degrade': false } }],
    ['POST', '/admin/routing/faults', { target: 'gw-core', latencyMs: 2 }],
    ['POST', '/sandbox/drill/leak', { maps: 1 }],
    ['DELETE', '/sandbox/drill/leak', undefined],
  ];
  for (const [method, path, body] of refused) {
    test(`${method} ${path}: no bearer token, a challenge without an error code; a wrong one, error="invalid_token"`, async () => {
      const challenges: Array<[authorization: string | null, challenge: string]> = [
        [null, 'Bearer realm="govmap-demo"'],
        ['Bearer', 'Bearer realm="govmap-demo"'],
        [`Basic ${TOKEN}`, 'Bearer realm="govmap-demo"'],
        [`Bearer ${TOKEN}x`, 'Bearer realm="govmap-demo", error="invalid_token"'],
      ];
      for (const [authorization, challenge] of challenges) {
        const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
        if (authorization !== null) headers.authorization = authorization;
        const response = await fetch(demo.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
        const json = (await response.json()) as { error: { code: string } };
        assert.deepEqual([response.status, json.error.code, response.headers.get('www-authenticate')], [401, 'ADMIN_TOKEN_REQUIRED', challenge], String(authorization));
      }
    });
  }

  test('an answer that is not a 401 carries no challenge', async () => {
    const response = await fetch(`${demo.url}/admin/faults`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ failureRate: 2 }) });
    await response.arrayBuffer();
    assert.deepEqual([response.status, response.headers.get('www-authenticate')], [400, null]);
  });
});

describe('the leak drill is an admin endpoint: without the token nobody can plant leak suspects or clear them', () => {
  test('POST and DELETE /sandbox/drill/leak without the right token: 401 ADMIN_TOKEN_REQUIRED, no map created or released', async () => {
    for (const authorization of [null, '', 'Bearer', 'Bearer ', `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN]) {
      const planted = await call(demo, 'POST', '/sandbox/drill/leak', { maps: 5 }, authorization);
      assert.deepEqual([planted.status, planted.json.error?.code], [401, 'ADMIN_TOKEN_REQUIRED'], `POST with ${String(authorization)}`);
    }
    const held = await call(demo, 'POST', '/sandbox/drill/leak', { maps: 3 }, `bearer ${TOKEN}`);
    assert.deepEqual([held.status, held.json], [200, { created: 3, held: 3, idleSuspectsAfterMs: 300_000 }], 'nothing was planted by the refused calls');
    for (const authorization of [null, 'Bearer', `Bearer ${TOKEN}x`]) {
      const cleared = await call(demo, 'DELETE', '/sandbox/drill/leak', undefined, authorization);
      assert.deepEqual([cleared.status, cleared.json.error?.code], [401, 'ADMIN_TOKEN_REQUIRED'], `DELETE with ${String(authorization)}`);
    }
    assert.deepEqual((await call(demo, 'DELETE', '/sandbox/drill/leak')).json, { released: 3 }, 'the refused calls released nothing');
  });

  test('a refused drill call is refused before its body is read: a bad body without a token is still 401', async () => {
    const answer = await call(demo, 'POST', '/sandbox/drill/leak', { maps: 0 }, null);
    assert.deepEqual([answer.status, answer.json.error?.code], [401, 'ADMIN_TOKEN_REQUIRED']);
  });
});

describe('faults: refusals echo the value; org names are only names', () => {
  test('FAULT_*_INVALID and FAULT_TARGET_UNKNOWN say what was sent', async () => {
    const cases: Array<[string, unknown, string, string]> = [
      ['/admin/faults', { failureRate: 2 }, 'FAULT_RATE_INVALID', '(got 2)'],
      ['/admin/faults', { latencyMs: '5' }, 'FAULT_LATENCY_INVALID', '(got "5")'],
      ['/admin/faults', { org: 'a b' }, 'FAULT_ORG_INVALID', '(got "a b")'],
      ['/admin/faults', { org: '2002', reset: 'yes' }, 'FAULT_RESET_INVALID', '(got "yes")'],
      ['/admin/routing/faults', { target: 'gw-nowhere' }, 'FAULT_TARGET_UNKNOWN', '(got "gw-nowhere")'],
      ['/admin/routing/faults', { target: 'gw-core', failureRate: -1 }, 'FAULT_RATE_INVALID', '(got -1)'],
      ['/admin/routing/faults', { target: 'gw-core', latencyMs: 1.5 }, 'FAULT_LATENCY_INVALID', '(got 1.5)'],
    ];
    for (const [path, body, code, echoed] of cases) {
      const { status, json } = await call(demo, 'POST', path, body);
      assert.deepEqual([status, json.error.code], [400, code], JSON.stringify(body));
      assert.ok(json.error.reason.includes(echoed), json.error.reason);
    }
  });

  test('"toString", "constructor", "valueOf" have no fault of their own until given one', async () => {
    for (const org of ['toString', 'constructor', 'valueOf', '__proto__']) {
      const reset = await call(demo, 'POST', '/admin/faults', { org, reset: true });
      assert.deepEqual([reset.status, reset.json.own], [200, false], org);
    }
    const set = await call(demo, 'POST', '/admin/faults', { org: 'constructor', failureRate: 0.5 });
    assert.deepEqual([set.json.own, set.json.failureRate], [true, 0.5]);
    assert.equal((await call(demo, 'POST', '/admin/faults', { org: 'constructor', reset: true })).json.own, false);
  });

  test(`an org named like an Object.prototype member counts against the cap of ${MAX_FAULTED_ORGS} like any other`, async () => {
    for (let batch = 0; batch < MAX_FAULTED_ORGS; batch += 50) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => call(demo, 'POST', '/admin/faults', { org: `cap-${batch + i}`, latencyMs: 0 })));
      assert.ok(answers.every((a) => a.status === 200));
    }
    for (const org of ['constructor', 'valueOf', 'toString', 'hasOwnProperty']) {
      const full = await call(demo, 'POST', '/admin/faults', { org, failureRate: 1 });
      assert.deepEqual([full.status, full.json.error?.code], [409, 'FAULT_ORGS_FULL'], org);
    }
    assert.equal(Object.keys((await call(demo, 'GET', '/breakers')).json.gateway.orgs).length, MAX_FAULTED_ORGS);
  });
});

test('a weak admin token (under 16 characters, or with spaces) is refused before anything starts, and never echoed', async () => {
  for (const weak of ['Qz', 'Zq7secret', 'fifteen-chars!!', 'has a space in it ok']) {
    await assert.rejects(startDemo({ port: 0, accounts: 2, adminToken: weak, sandbox: { stateDirectory: null } }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'GOVMAP_INVALID_CONFIGURATION', String(error));
      assert.match(error.message, /adminToken.*at least 16 characters/);
      assert.ok(!error.message.includes(weak), 'the token is not echoed');
      return true;
    });
  }
  // A part's own (older) option is the same one token: a weak one there guarded its endpoint alone.
  for (const part of ['settlement', 'switches'] as const) {
    const error = await startRefused({ port: 0, accounts: 2, adminToken: TOKEN, [part]: { adminToken: 'x' }, sandbox: { stateDirectory: null } });
    assert.equal(error.code, 'GOVMAP_INVALID_CONFIGURATION', String(error));
    assert.match(error.message, new RegExp(`${part}\\.adminToken.*at least 16 characters`));
  }
  const saved = process.env.GOVMAP_ADMIN_TOKEN;
  process.env.GOVMAP_ADMIN_TOKEN = 'short';
  try {
    await assert.rejects(startDemo({ port: 0, accounts: 2, sandbox: { stateDirectory: null } }), /GOVMAP_ADMIN_TOKEN/);
  } finally {
    if (saved === undefined) delete process.env.GOVMAP_ADMIN_TOKEN;
    else process.env.GOVMAP_ADMIN_TOKEN = saved;
  }
});

test('two different admin tokens (adminToken and a part\'s own) are refused at start: the page has one token field for every knob', async () => {
  const other = 'another-admin-token-98765';
  for (const part of ['settlement', 'switches'] as const) {
    const error = await startRefused({ port: 0, accounts: 2, adminToken: TOKEN, [part]: { adminToken: other }, sandbox: { stateDirectory: null } });
    assert.equal(error.code, 'GOVMAP_INVALID_CONFIGURATION', String(error));
    assert.match(error.message, new RegExp(`${part}\\.adminToken.*the same`));
    assert.ok(!error.message.includes(other) && !error.message.includes(TOKEN), 'no token is echoed');
  }
  const same = await startDemo({ port: 0, accounts: 2, adminToken: TOKEN, settlement: { adminToken: TOKEN }, switches: { adminToken: TOKEN }, sandbox: { stateDirectory: null } });
  try {
    for (const [path, body] of [['/admin/faults', { latencyMs: 0 }], ['/admin/switches', { reason: 'probe', set: { 'routing.force-degrade': false } }], ['/sandbox/drill/leak', { maps: 1 }]] as const) {
      assert.equal((await call(same, 'POST', path, body)).status, 200, path);
    }
  } finally {
    await same.close();
  }
});
