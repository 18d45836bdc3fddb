import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { LoadHttpClient } from '../../bench/load/http-client.ts';
import { runStep } from '../../bench/load/open-loop.ts';

/**
 * The load generator's HTTP client reads answers itself (node:http's client cost more CPU than
 * the service it measured). These tests hold it to what a real server sends: node:http's own
 * framings (Content-Length, chunked, no body), connections closed by the server, and raw
 * answers split at every byte, garbage and silence, which must fail (status 0), not hang.
 */
function send(client: LoadHttpClient, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => client.send(method, path, headers, body, resolve));
}

async function listen(server: Server | NetServer): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function readBody(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return text;
}

describe('LoadHttpClient against node:http', () => {
  const seen: Array<{ method: string; url: string; body: string; host: string | undefined; tag: string | undefined }> = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void readBody(req).then((body) => {
      seen.push({ method: req.method!, url: req.url!, body, host: req.headers.host, tag: req.headers['x-biz-tag'] as string | undefined });
      if (req.url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('a'.repeat(5000));
        res.write('b');
        res.end('c'.repeat(70_000));
      } else if (req.url === '/empty') {
        res.writeHead(204);
        res.end();
      } else if (req.url === '/close') {
        res.writeHead(503, { connection: 'close', 'content-length': '2' });
        res.end('no');
      } else if (req.url === '/slow') {
        setTimeout(() => res.end('late'), 400);
      } else {
        const text = JSON.stringify({ echo: body });
        res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      }
    });
  });
  let url = '';
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  test('GET and POST get their status; the server sees the method, path, host, headers and body', async () => {
    url = await listen(server);
    const client = new LoadHttpClient(url);
    try {
      assert.equal(await send(client, 'GET', '/accounts/acct-000001', undefined, { 'x-biz-tag': 'orgId:1001|txnType:query' }), 200);
      assert.equal(await send(client, 'POST', '/accounts/acct-000001/credit', '{"amount":"5"}', { 'content-type': 'application/json' }), 200);
      assert.equal(await send(client, 'GET', '/missing'), 404);
      assert.deepEqual(seen.slice(-3).map((s) => [s.method, s.url, s.body]), [
        ['GET', '/accounts/acct-000001', ''],
        ['POST', '/accounts/acct-000001/credit', '{"amount":"5"}'],
        ['GET', '/missing', ''],
      ]);
      assert.equal(seen.at(-3)!.tag, 'orgId:1001|txnType:query');
      assert.equal(seen.at(-1)!.host, url.slice('http://'.length));
      // One keep-alive connection served all three, one after another.
      assert.equal(client.connections, 1);
    } finally {
      client.close();
    }
  });

  test('chunked bodies (75 KB, many reads), 204 without a body, and Connection: close', async () => {
    const client = new LoadHttpClient(url);
    try {
      assert.equal(await send(client, 'GET', '/chunked'), 200);
      assert.equal(await send(client, 'GET', '/empty'), 204);
      assert.equal(await send(client, 'GET', '/close'), 503);
      // The connection the server closed is not reused: the next request opens another.
      assert.equal(await send(client, 'GET', '/chunked'), 200);
      assert.equal(client.connections, 1);
    } finally {
      client.close();
    }
  });

  test('more requests than connections wait their turn; all are answered, none lost', async () => {
    const client = new LoadHttpClient(url, { connections: 3 });
    try {
      const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => send(client, 'POST', `/n/${i}`, `{"i":${i}}`)));
      assert.deepEqual(new Set(statuses), new Set([200]));
      assert.ok(client.connections <= 3, `at most 3 connections, had ${client.connections}`);
      const got = new Set(seen.filter((s) => s.url.startsWith('/n/')).map((s) => s.url));
      assert.equal(got.size, 200);
    } finally {
      client.close();
    }
  });

  test('a request past its deadline fails with 0, and its connection is not reused', async () => {
    const client = new LoadHttpClient(url, { timeoutMs: 100 });
    try {
      const started = performance.now();
      assert.equal(await send(client, 'GET', '/slow'), 0);
      // 0, not the 200 /slow sends at 400 ms, says it gave up at its deadline; the time is only
      // a bound against a hang, loose enough for a starved CI box (1 s was within its reach).
      assert.ok(performance.now() - started < 5_000);
      assert.equal(await send(client, 'GET', '/ok'), 200);
    } finally {
      client.close();
    }
  });

  test('after close(), requests fail at once; requests in flight fail', async () => {
    const client = new LoadHttpClient(url);
    const pending = send(client, 'GET', '/slow');
    client.close();
    assert.equal(await pending, 0);
    assert.equal(await send(client, 'GET', '/ok'), 0);
  });

  test('runStep drives a steady rate: every request answered, rate kept, generator CPU reported', async () => {
    const client = new LoadHttpClient(url);
    try {
      const before = seen.length;
      const result = await runStep({
        rate: 400,
        durationMs: 1000,
        warmupMs: 200,
        client,
        next: () => ({ method: 'GET', path: '/rate', headers: {} }),
      });
      assert.equal(result.completed, result.sent);
      assert.equal(result.ok, result.completed);
      assert.ok(Math.abs(result.sent - 400) <= 2, `sent ${result.sent} in 1 s at 400/s`);
      assert.ok(result.achieved > 360 && result.achieved <= 401, `achieved ${result.achieved}`);
      assert.equal(seen.length - before, result.sent + Math.round(0.2 * 400));
      assert.ok(result.generatorCpuUsPerRequest > 0);
      assert.ok(result.p50Ms > 0 && result.p50Ms <= result.p99Ms);
    } finally {
      client.close();
    }
  });
});

describe('LoadHttpClient against raw answers', () => {
  /** A server that answers each request with `answer` (written in the given pieces), then keeps the connection. */
  function rawServer(answer: (socket: Socket) => void): NetServer {
    return createNetServer((socket) => {
      let buffered = '';
      socket.on('data', (chunk) => {
        buffered += String(chunk);
        while (buffered.includes('\r\n\r\n')) {
          buffered = buffered.slice(buffered.indexOf('\r\n\r\n') + 4);
          answer(socket);
        }
      });
      socket.on('error', () => undefined);
    });
  }

  const framed = [
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
    'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n',
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n',
    'HTTP/1.1 404 Not Found\r\nCONTENT-LENGTH: 3\r\nConnection: keep-alive\r\n\r\nnop',
  ];

  test('every framing, split into pieces at any bytes, gives the right status; the connection is reused', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...framed), fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 12 }), async (text, cuts) => {
        const bytes = Buffer.from(text, 'latin1');
        const server = rawServer((socket) => {
          let at = 0;
          for (const cut of cuts) {
            if (at >= bytes.length) break;
            socket.write(bytes.subarray(at, at + cut));
            at += cut;
          }
          if (at < bytes.length) socket.write(bytes.subarray(at));
        });
        const url = await listen(server);
        const client = new LoadHttpClient(url);
        try {
          const expected = Number(/HTTP\/1\.1 ([2-5]\d\d)/.exec(text)![1]);
          assert.equal(await send(client, 'GET', '/'), expected);
          assert.equal(await send(client, 'GET', '/'), expected);
          assert.equal(client.connections, 1);
        } finally {
          client.close();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        }
      }),
      { numRuns: 60 },
    );
  });

  test('a body that ends with the connection (no length, no chunking) is complete at the close', async () => {
    const server = rawServer((socket) => socket.end('HTTP/1.0 200 OK\r\n\r\nuntil close'));
    const client = new LoadHttpClient(await listen(server));
    try {
      assert.equal(await send(client, 'GET', '/'), 200);
      assert.equal(await send(client, 'GET', '/'), 200);
    } finally {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  for (const [name, reply] of [
    ['not HTTP', 'SSH-2.0-OpenSSH\r\n\r\n'],
    ['a bad status', 'HTTP/1.1 abc Nope\r\n\r\n'],
    ['a bad length', 'HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n'],
    ['a bad chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    ['closed mid-body', 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort'],
  ] as const) {
    test(`${name}: the request fails with 0 and the client keeps working`, async () => {
      let answers = 0;
      const server = rawServer((socket) => {
        if (answers++ === 0) socket.end(reply);
        else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      });
      const client = new LoadHttpClient(await listen(server), { timeoutMs: 2000 });
      try {
        assert.equal(await send(client, 'GET', '/'), 0);
        assert.equal(await send(client, 'GET', '/'), 200);
      } finally {
        client.close();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    });
  }

  test('nothing listening: the request fails with 0', async () => {
    const server = rawServer(() => undefined);
    const url = await listen(server);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const client = new LoadHttpClient(url);
    try {
      assert.equal(await send(client, 'GET', '/'), 0);
    } finally {
      client.close();
    }
  });

  test('an idle connection older than idleMs is replaced rather than reused', async () => {
    let connections = 0;
    const server = rawServer((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    server.on('connection', () => connections++);
    // The second send must come within idleMs of the first to reuse its connection: 50 ms was
    // less than a starved CI box can take between two local round trips.
    const client = new LoadHttpClient(await listen(server), { idleMs: 500 });
    try {
      assert.equal(await send(client, 'GET', '/'), 200);
      assert.equal(await send(client, 'GET', '/'), 200);
      assert.equal(connections, 1);
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.equal(await send(client, 'GET', '/'), 200);
      assert.equal(connections, 2);
      assert.equal(client.connections, 1);
    } finally {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

test("the load generator's Host is one the demo serves (it refuses others against DNS rebinding): its reads get 200, not 403", async () => {
  const { startDemo } = await import('../../demo/server.ts');
  const demo = await startDemo({ port: 0, accounts: 2, adminToken: 'load-client-admin-token', sandbox: { stateDirectory: null } });
  const client = new LoadHttpClient(demo.url);
  try {
    assert.equal(await send(client, 'GET', '/accounts/acct-000001'), 200);
  } finally {
    client.close();
    await demo.close();
  }
});
