/**
 * Requests a client or an attacker can send the demo that its happy paths never do: dot segments
 * spelled to slip past a proxy, a key given twice, a body cut off mid-way, methods other than
 * the route's, requests Node's HTTP parser refuses, bodies in the wrong charset. Each one gets a
 * 4xx `{error:{code, reason}}` naming what was wrong, or (a client gone) nothing at all.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { duplicateKey } from '../../demo/http.ts';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

const TOKEN = 'hostile-requests-admin-token';
let demo: DemoService;
let port: number;
before(async () => {
  demo = await startDemo({ port: 0, accounts: 10, openingBalance: 10_000n, adminToken: TOKEN });
  port = Number(new URL(demo.url).port);
});
after(() => demo.close());

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** A request with the target sent exactly as given: fetch would resolve dot segments before sending. */
function send(method: string, path: string, options: { body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { ...(options.body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers };
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: text.startsWith('{') ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Bytes written straight to a socket (what no HTTP client would send), and everything read back until the server closes. */
function raw(bytes: string): Promise<{ status: number; head: string; json: any }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', body = ''] = text.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), head: head.toLowerCase(), json: body.startsWith('{') ? JSON.parse(body) : null });
    });
  });
}

const balanceOf = async (id: string): Promise<string> => (await send('GET', `/accounts/${id}`)).json.balance as string;

describe('dot segments are refused, never resolved (a proxy exposing /accounts/* is not bypassed)', () => {
  for (const [method, path] of [
    ['GET', '/accounts/%2e%2e/metrics'],
    ['GET', '/accounts/%2E%2E/metrics'],
    ['GET', '/accounts/.%2e/sandbox/report'],
    ['GET', '/accounts/..\\metrics'],
    ['GET', '/accounts/../metrics'],
    ['GET', '/accounts/./acct-000001'],
    ['POST', '/accounts/%2e%2e/admin/faults'],
  ] as const) {
    test(`${method} ${path}: 400 PATH_DOT_SEGMENT naming the target`, async () => {
      const answer = await send(method, path, method === 'POST' ? { body: '{"failureRate":1}', headers: { authorization: `Bearer ${TOKEN}` } } : {});
      assert.equal(answer.status, 400);
      assert.equal(answer.json.error.code, 'PATH_DOT_SEGMENT');
      assert.ok(answer.json.error.reason.includes(JSON.stringify(path)), answer.json.error.reason);
    });
  }

  test('the admin endpoint behind a dot segment was not reached: the gateway fault is unchanged', async () => {
    assert.equal((await send('GET', '/breakers')).json.gateway.failureRate, 0);
  });

  test('dots that are not whole segments still route: /accounts/acct-000001?x=../.. and a "..." id', async () => {
    assert.equal((await send('GET', '/accounts/acct-000001?x=../..')).status, 200);
    assert.equal((await send('GET', '/accounts/...')).json.error.code, 'ACCOUNT_ID_INVALID');
  });
});

describe('a key given twice is refused: JSON.parse would keep the last one', () => {
  test('credit {"amount":"1","amount":"100000000"}: 400 BODY_DUPLICATE_KEY naming "amount", and nothing is credited', async () => {
    const before = await balanceOf('acct-000001');
    const answer = await send('POST', '/accounts/acct-000001/credit', { body: '{"amount":"1","amount":"100000000"}' });
    assert.equal(answer.status, 400);
    assert.equal(answer.json.error.code, 'BODY_DUPLICATE_KEY');
    assert.match(answer.json.error.reason, /"amount"/);
    assert.equal(await balanceOf('acct-000001'), before);
  });

  test('a key spelled with an escape is the same key: {"amount":"1","\\u0061mount":"9"}', async () => {
    const answer = await send('POST', '/accounts/acct-000001/credit', { body: '{"amount":"1","\\u0061mount":"9"}' });
    assert.deepEqual([answer.status, answer.json.error.code], [400, 'BODY_DUPLICATE_KEY']);
  });

  test('transfers and payments: a second "from" or "to" is refused and nothing moves', async () => {
    const [from, to] = [await balanceOf('acct-000002'), await balanceOf('acct-000003')];
    const transfer = await send('POST', '/transfers', { body: '{"from":"acct-000002","to":"acct-000003","amount":"5","from":"acct-000004"}' });
    assert.deepEqual([transfer.status, transfer.json.error.code], [400, 'BODY_DUPLICATE_KEY']);
    assert.match(transfer.json.error.reason, /"from"/);
    const payment = await send('POST', '/payments', { body: '{"from":"acct-000002","to":"acct-000003","to":"acct-000005","amount":"5"}' });
    assert.deepEqual([payment.status, payment.json.error.code], [400, 'BODY_DUPLICATE_KEY']);
    assert.match(payment.json.error.reason, /"to"/);
    assert.deepEqual([await balanceOf('acct-000002'), await balanceOf('acct-000003')], [from, to]);
  });

  test('nested objects too: a switch definition with "enabled" twice names the key and where it is', async () => {
    const body = '{"reason":"drill","set":{"routing.force-degrade":{"enabled":false,"enabled":true}}}';
    const answer = await send('POST', '/admin/switches', { body, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.deepEqual([answer.status, answer.json.error.code], [400, 'BODY_DUPLICATE_KEY']);
    assert.match(answer.json.error.reason, /"enabled".*\$\["set"\]\["routing\.force-degrade"\]/);
  });

  test('duplicateKey: keys per object, strings that only look like keys, arrays by index', () => {
    assert.equal(duplicateKey('{"a":1,"b":2}'), null);
    assert.equal(duplicateKey('{"a":{"a":1},"b":{"a":2}}'), null, 'the same key in different objects');
    assert.equal(duplicateKey('{"a":"a","b":["a","a"],"c":"\\"a\\":"}'), null, 'values are not keys, even with quotes and colons inside');
    assert.equal(duplicateKey('{"a" : 1 , "b":[{"x":1},{"x":2}]}'), null);
    assert.deepEqual(duplicateKey('{"a":1, "a" :2}'), { key: 'a', path: '$' });
    assert.deepEqual(duplicateKey('{"a":{"b":[0,{"c":1,"c":2}]}}'), { key: 'c', path: '$["a"]["b"][1]' });
    assert.deepEqual(duplicateKey('{"\\u00e9":1,"é":2}'), { key: 'é', path: '$' });
    assert.deepEqual(duplicateKey('{"x":"}{[","k":1,"k":1}'), { key: 'k', path: '$' });
  });
});

describe('bodies: the media type, charset and syntax errors say what was received', () => {
  test('a charset other than UTF-8 is refused with 415 naming it; utf-8 in any spelling is accepted', async () => {
    const latin1 = await send('POST', '/accounts/acct-000006/credit', { body: '{"amount":"1"}', headers: { 'content-type': 'application/json; charset=latin1' } });
    assert.deepEqual([latin1.status, latin1.json.error.code], [415, 'UNSUPPORTED_CHARSET']);
    assert.match(latin1.json.error.reason, /"latin1"/);
    for (const type of ['application/json; charset=utf-8', 'application/json;charset="UTF-8"', 'Application/JSON']) {
      assert.equal((await send('POST', '/accounts/acct-000006/credit', { body: '{"amount":"1"}', headers: { 'content-type': type } })).status, 200, type);
    }
  });

  test('UNSUPPORTED_MEDIA_TYPE names the content type received (or its absence)', async () => {
    const form = await send('POST', '/accounts/acct-000006/credit', { body: 'amount=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.deepEqual([form.status, form.json.error.code], [415, 'UNSUPPORTED_MEDIA_TYPE']);
    assert.match(form.json.error.reason, /"application\/x-www-form-urlencoded"/);
    const none = await send('POST', '/accounts/acct-000006/credit', {});
    assert.match(none.json.error.reason, /no content-type/);
  });

  test('BODY_MALFORMED says where the JSON broke', async () => {
    const answer = await send('POST', '/accounts/acct-000006/credit', { body: '{"amount":"1",}' });
    assert.deepEqual([answer.status, answer.json.error.code], [400, 'BODY_MALFORMED']);
    assert.match(answer.json.error.reason, /position 14/);
  });

  test('AMOUNT_NOT_STRING names the JSON type received; only a number is told about precision', async () => {
    for (const [amount, type] of [[true, 'boolean'], [['1'], 'array'], [{ v: '1' }, 'object'], [10, 'number']] as const) {
      const { json } = await send('POST', '/accounts/acct-000006/credit', { body: JSON.stringify({ amount }) });
      assert.equal(json.error.code, 'AMOUNT_NOT_STRING');
      assert.ok(json.error.reason.includes(`not a JSON ${type} (got ${JSON.stringify(amount)})`), json.error.reason);
      assert.equal(/precision|cents/.test(json.error.reason), type === 'number', json.error.reason);
    }
  });

  test('ACCOUNT_ID_INVALID echoes the id, escaped and cut at 80 characters', async () => {
    const answer = await send('GET', '/accounts/_bad%22id');
    assert.deepEqual([answer.status, answer.json.error.code], [400, 'ACCOUNT_ID_INVALID']);
    assert.ok(answer.json.error.reason.includes('"_bad\\"id"'), answer.json.error.reason);
    const long = await send('GET', `/accounts/${'x'.repeat(200)}`);
    assert.ok(long.json.error.reason.includes(`"${'x'.repeat(80)}"…`), long.json.error.reason);
  });
});

describe('a client that disconnects mid-body', () => {
  test('is not logged as an unexpected error, and the service keeps serving', async () => {
    const logged: unknown[][] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void logged.push(args);
    try {
      await new Promise<void>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write('POST /accounts/acct-000007/credit HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"amount":');
          setTimeout(() => socket.destroy(), 50);
        });
        socket.on('close', () => resolve());
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal((await send('GET', '/healthz')).status, 200);
    } finally {
      console.error = original;
    }
    assert.deepEqual(logged, []);
  });
});

describe('methods (RFC 9110)', () => {
  test('HEAD is answered as GET, without a body', async () => {
    const head = await send('HEAD', '/accounts/acct-000008');
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(JSON.stringify({ id: 'acct-000008', balance: await balanceOf('acct-000008') }))));
  });

  test('a 405 says in Allow which methods the path has', async () => {
    const answer = await send('DELETE', '/accounts/acct-000001');
    assert.deepEqual([answer.status, answer.json.error.code], [405, 'METHOD_NOT_ALLOWED']);
    assert.equal(answer.headers.allow, 'GET, HEAD, OPTIONS');
    assert.equal((await send('GET', '/transfers')).headers.allow, 'POST, OPTIONS');
  });

  test('OPTIONS is 204 with Allow; on an unknown path 404', async () => {
    const answer = await send('OPTIONS', '/accounts/acct-000001/credit');
    assert.equal(answer.status, 204);
    assert.equal(answer.headers.allow, 'POST, OPTIONS');
    assert.equal((await send('OPTIONS', '/nope')).status, 404);
  });
});

describe("requests Node's HTTP parser refuses get a JSON error too, and the connection closes", () => {
  const cases: Array<[string, string, number, string]> = [
    ['a lowercase method', 'get /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 400, 'REQUEST_MALFORMED'],
    ['two Content-Lengths', 'POST /transfers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 400, 'REQUEST_MALFORMED'],
    ['Content-Length: abc', 'POST /transfers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n', 400, 'REQUEST_MALFORMED'],
    ['no Host in HTTP/1.1', 'GET /healthz HTTP/1.1\r\n\r\n', 400, 'REQUEST_MALFORMED'],
    ['a 20 KB URL', `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
  ];
  for (const [label, bytes, status, code] of cases) {
    test(`${label}: ${status} ${code}`, async () => {
      const answer = await raw(bytes);
      assert.equal(answer.status, status);
      assert.equal(answer.json?.error.code, code, answer.head);
      assert.equal(typeof answer.json.error.reason, 'string');
      assert.match(answer.head, /\r\nconnection: close(\r\n|$)/);
      assert.match(answer.head, /\r\ncontent-type: application\/json/);
    });
  }

  test('on a keep-alive connection that was already answered, a malformed request still gets its JSON 400', async () => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    const closed = new Promise<void>((resolve, reject) => {
      socket.on('close', () => resolve());
      socket.on('error', reject);
    });
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (!text.includes('{"status":"ok"}') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.match(text, /^HTTP\/1\.1 200 /, 'the first request is answered');
    const first = text.length;
    socket.write('get /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await closed;
    const second = text.slice(first);
    assert.match(second, /^HTTP\/1\.1 400 /, `the malformed request after it gets a status line of its own, not a silent close: ${JSON.stringify(second)}`);
    const body = JSON.parse(second.split('\r\n\r\n')[1]!) as { error: { code: string; reason: string } };
    assert.equal(body.error.code, 'REQUEST_MALFORMED');
  });

  test('a malformed request pipelined behind one still being handled is answered after it, not in its place', async () => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    // The connection may be cut (ECONNRESET): what was read before that is what is checked.
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (!text.includes('{"status":"ok"}') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.match(text, /^HTTP\/1\.1 200 /, 'the first request is answered');
    const first = text.length;
    const before = demo.ledger.balance('acct-000000');
    // The transfer is booked, then awaits settlement: its answer is not started when the
    // malformed request behind it is parsed.
    const body = JSON.stringify({ from: 'acct-000000', to: 'acct-000001', amount: '5' });
    socket.write(`POST /transfers HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}get /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    await closed;
    const next = text.slice(first);
    assert.doesNotMatch(next, /^HTTP\/1\.1 4/, `the transfer (booked: ${before} -> ${demo.ledger.balance('acct-000000')}) must not be answered with the malformed request's refusal: ${JSON.stringify(next.slice(0, 80))}`);
    // Each gets its own answer, in order: the transfer's 200, then the malformed request's 400.
    assert.match(next, /^HTTP\/1\.1 200 /, `the transfer is answered first: ${JSON.stringify(next.slice(0, 80))}`);
    const refusal = next.indexOf('HTTP/1.1 400 ');
    assert.ok(refusal > 0, `then the malformed request gets its 400: ${JSON.stringify(next)}`);
    assert.equal(JSON.parse(next.slice(refusal).split('\r\n\r\n')[1]!).error.code, 'REQUEST_MALFORMED');
  });

  test('two transfers and a malformed request pipelined: 200, 200, then 400, in that order', async () => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    const body = JSON.stringify({ from: 'acct-000002', to: 'acct-000003', amount: '5' });
    const transfer = `POST /transfers HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
    socket.write(`${transfer}${transfer}get /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    await closed;
    const statuses = [...text.matchAll(/HTTP\/1\.1 ([0-9]{3}) /g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '200', '400'], JSON.stringify(text.slice(0, 200)));
  });

  test('HTTP/1.0 without Host is still served', async () => {
    assert.equal((await raw('GET /healthz HTTP/1.0\r\n\r\n')).status, 200);
  });
});

describe('DNS rebinding: only requests naming this machine in Host are served', () => {
  /** The status of a GET with this Host (fetch always sends the URL's own). */
  const statusWithHost = (url: string, path: string, host: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: Number(new URL(url).port), path, headers: { host } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
  // A page on evil.example whose name is rebound to 127.0.0.1 reaches the demo with its own name in Host.
  test('Host evil.example is refused with 403 HOST_NOT_ALLOWED naming the host and how to allow it; no balance is shown', async () => {
    for (const path of ['/accounts/acct-000001', '/', '/events', '/metrics', '/healthz']) {
      const answer = await send('GET', path, { headers: { host: `evil.example:${port}` } });
      assert.equal(answer.status, 403, path);
      assert.equal(answer.json.error.code, 'HOST_NOT_ALLOWED', path);
      assert.match(answer.json.error.reason, /"evil\.example:[0-9]+"/);
      assert.match(answer.json.error.reason, /GOVMAP_DEMO_ALLOWED_HOSTS/);
      assert.match(answer.json.error.reason, /--allowed-hosts/);
      assert.doesNotMatch(answer.text, /balance/);
    }
  });

  test('names that only contain a loopback name are refused: localhost.evil.example, 127.0.0.1.evil.example, evil-localhost', async () => {
    for (const host of ['localhost.evil.example', '127.0.0.1.evil.example', 'evil-localhost', '127.0.0.1evil', '[::1].evil']) {
      assert.equal((await send('GET', '/accounts/acct-000001', { headers: { host } })).status, 403, host);
    }
  });

  test('loopback names and addresses are served: 127.0.0.1:PORT, localhost:PORT, [::1]:PORT, app.localhost, 127.0.0.2, any case', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'app.localhost', '127.0.0.2', `LocalHost:${port}`, 'localhost.', '127.0.0.1']) {
      const answer = await send('GET', '/accounts/acct-000001', { headers: { host } });
      assert.equal(answer.status, 200, `${host}: ${answer.text}`);
      assert.equal(typeof answer.json.balance, 'string');
    }
  });

  test('HTTP/1.0 without Host is served: no browser sends one, so no rebound page can', async () => {
    const answer = await raw('GET /accounts/acct-000001 HTTP/1.0\r\n\r\n');
    assert.equal(answer.status, 200);
  });

  test('a name configured with allowedHosts is served, in any case and with any port; others still refused', async () => {
    const named = await startDemo({ port: 0, accounts: 2, adminToken: TOKEN, allowedHosts: ['demo.bank.internal', '10.1.2.3'], sandbox: { stateDirectory: null } });
    try {
      const at = (host: string): Promise<number> => statusWithHost(named.url, '/accounts/acct-000001', host);
      const namedPort = new URL(named.url).port;
      assert.equal(await at(`demo.bank.internal:${namedPort}`), 200);
      assert.equal(await at('DEMO.bank.internal'), 200);
      assert.equal(await at('10.1.2.3:80'), 200);
      assert.equal(await at('other.bank.internal'), 403);
      assert.equal(await at('sub.demo.bank.internal'), 403);
    } finally {
      await named.close();
    }
  });

  test('GOVMAP_DEMO_ALLOWED_HOSTS adds names, comma-separated, when allowedHosts is not given', async () => {
    process.env.GOVMAP_DEMO_ALLOWED_HOSTS = 'a.bank.internal, b.bank.internal';
    let named: DemoService;
    try {
      named = await startDemo({ port: 0, accounts: 2, adminToken: TOKEN, sandbox: { stateDirectory: null } });
    } finally {
      delete process.env.GOVMAP_DEMO_ALLOWED_HOSTS;
    }
    try {
      const at = (host: string): Promise<number> => statusWithHost(named.url, '/healthz', host);
      assert.equal(await at('a.bank.internal'), 200);
      assert.equal(await at('b.bank.internal'), 200);
      assert.equal(await at('c.bank.internal'), 403);
    } finally {
      await named.close();
    }
  });

  test('an allowed host that cannot be a Host name is refused at start, naming it and the rule', async () => {
    for (const bad of ['http://demo.bank.internal', 'demo.bank.internal:8080', 'a b', '', '*']) {
      await assert.rejects(startDemo({ port: 0, accounts: 2, adminToken: TOKEN, allowedHosts: [bad], sandbox: { stateDirectory: null } }), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'GOVMAP_INVALID_CONFIGURATION', bad);
        assert.match(error.message, /allowedHosts/);
        assert.ok(error.message.includes(JSON.stringify(bad)), error.message);
        return true;
      });
    }
    process.env.GOVMAP_DEMO_ALLOWED_HOSTS = '';
    try {
      await assert.rejects(startDemo({ port: 0, accounts: 2, adminToken: TOKEN, sandbox: { stateDirectory: null } }), { code: 'GOVMAP_DEMO_ENVIRONMENT_INVALID', message: /GOVMAP_DEMO_ALLOWED_HOSTS is set but empty/ });
    } finally {
      delete process.env.GOVMAP_DEMO_ALLOWED_HOSTS;
    }
  });

  test('the address the demo listens on (0.0.0.0 here) and any IP address (a pod IP, as Prometheus and Kubernetes probes send it) are served as Host, a LAN name is not until allowed', async () => {
    const wide = await startDemo({ port: 0, host: '0.0.0.0', accounts: 2, adminToken: TOKEN, sandbox: { stateDirectory: null } });
    try {
      const widePort = new URL(wide.url).port;
      const at = (host: string): Promise<number> => statusWithHost(wide.url, '/healthz', host);
      assert.equal(await at(`0.0.0.0:${widePort}`), 200);
      assert.equal(await at(`10.20.30.40:${widePort}`), 200);
      assert.equal(await at(`[fd00::1a]:${widePort}`), 200);
      assert.equal(await at('workstation.lan'), 403);
    } finally {
      await wide.close();
    }
  });
});
