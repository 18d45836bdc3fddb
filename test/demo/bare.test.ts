import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:net';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { startBareDemo } from '../../demo/bare.ts';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

// The load benchmark compares the governed demo with `govmap demo --bare`. That comparison is
// only fair if the baseline answers the same API: the same statuses, error codes and balances
// for the same requests (a laxer baseline would do less work per request and flatter nothing
// but itself). Both start from the same balances and receive the same requests in order.

let governed: DemoService;
let bare: { url: string; close(): Promise<void> };
before(async () => {
  governed = await startDemo({ port: 0, accounts: 6, openingBalance: 1_000_000n });
  bare = await startBareDemo({ port: 0, accounts: 6 });
});
after(async () => {
  await governed.close();
  await bare.close();
});

interface Call {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly body?: string;
}

interface Answer {
  readonly status: number;
  readonly code: string | null;
  readonly body: unknown;
}

async function send(base: string, call: Call): Promise<Answer> {
  const init: RequestInit = { method: call.method };
  if (call.body !== undefined) init.body = call.body;
  if (call.body !== undefined) init.headers = { 'content-type': 'application/json' };
  const response = await fetch(base + call.path, init);
  const text = await response.text();
  const body: unknown = text.startsWith('{') ? JSON.parse(text) : text;
  const code = response.status >= 400 ? ((body as { error?: { code?: string } }).error?.code ?? null) : null;
  // Refusals are compared by status and code (their reason texts may be worded differently).
  // The governed demo also settles each transfer through its gateway and says so (`settlement`);
  // the baseline has no settlement step (the one documented difference, see README).
  if (response.status >= 400) return { status: response.status, code, body: null };
  const { settlement: _settlement, ...rest } = body as Record<string, unknown>;
  return { status: response.status, code, body: rest };
}

const ids = ['acct-000000', 'acct-000001', 'acct-000005', 'acct-000099', 'acct-1', 'x y', '%zz'];
const amounts = ['1', '250', '999999', '1000001', '0', '-5', '1.5', '1e3', '9223372036854775808', 'abc'];

const callArb: fc.Arbitrary<Call> = fc.oneof(
  fc.constantFrom(...ids).map((id): Call => ({ method: 'GET', path: `/accounts/${id}` })),
  fc.tuple(fc.constantFrom(...ids), fc.constantFrom('credit', 'debit'), fc.constantFrom(...amounts)).map(
    ([id, direction, amount]): Call => ({ method: 'POST', path: `/accounts/${id}/${direction}`, body: JSON.stringify({ amount }) }),
  ),
  fc.tuple(fc.constantFrom(...ids), fc.constantFrom(...ids), fc.constantFrom(...amounts)).map(
    ([from, to, amount]): Call => ({ method: 'POST', path: '/transfers', body: JSON.stringify({ from, to, amount }) }),
  ),
  fc.constantFrom<Call>(
    { method: 'POST', path: '/transfers', body: JSON.stringify({ from: 'acct-000000', amount: '1' }) },
    { method: 'POST', path: '/accounts/acct-000000/credit', body: JSON.stringify({ amount: '1', extra: true }) },
    { method: 'POST', path: '/accounts/acct-000000/credit', body: '{"amount":' },
    { method: 'POST', path: '/accounts/acct-000000/credit', body: JSON.stringify({ amount: 5 }) },
  ),
);

describe('the bare baseline answers the same API as the governed demo', () => {
  test('same statuses, error codes and balances for any sequence of requests', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(callArb, { minLength: 1, maxLength: 12 }), async (calls) => {
        for (const call of calls) {
          const [g, b] = [await send(governed.url, call), await send(bare.url, call)];
          assert.deepEqual(b, g, `${call.method} ${call.path} ${call.body ?? ''}: bare answered differently from governed`);
        }
      }),
      { numRuns: 60 },
    );
  });
});

/**
 * Resolves once this process's HTTP server has parsed the head of a request for `path` (Node's
 * `http.server.request.start` channel: the bare demo does not expose its server); fails after `ms`.
 */
function requestStarted(path: string, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onStart = (message: unknown): void => {
      if ((message as { request: IncomingMessage }).request.url !== path) return;
      settle();
      resolve();
    };
    const timer = setTimeout(() => {
      settle();
      reject(new Error(`the server did not start the request for ${path} within ${ms} ms`));
    }, ms);
    const settle = (): void => {
      clearTimeout(timer);
      unsubscribe('http.server.request.start', onStart);
    };
    subscribe('http.server.request.start', onStart);
  });
}

describe('the bare baseline stops like the governed demo', () => {
  test('close() answers a request already underway (its body still arriving) instead of cutting its connection', async () => {
    const service = await startBareDemo({ port: 0, accounts: 3 });
    const { hostname, port } = new URL(service.url);
    const socket = connect(Number(port), hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    const ended = new Promise((resolve) => socket.once('close', resolve));
    const body = '{"amount":"250"}';
    const underway = requestStarted('/accounts/acct-000001/credit', 10_000);
    socket.write(`POST /accounts/acct-000001/credit HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 5)}`);
    // close() starts once the server has the request's head: a fixed 50 ms pause let a busy machine
    // call close() before the head was read, and an idle connection is rightly cut.
    await underway;
    const closing = service.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.end(body.slice(5));
    await closing;
    await ended;
    assert.match(received, /^HTTP\/1\.1 200 /, `the credit was answered, not cut: ${JSON.stringify(received)}`);
    assert.match(received, /"balance":"1000250"/);
  });
});
