import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ROOT_CONTEXT, context, propagation } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CBaggagePropagator } from '@opentelemetry/core';
import Fastify from 'fastify';
import {
  BIZ_TAG_BAGGAGE_KEY,
  Router,
  RoutingMetrics,
  bizTagFromBaggage,
  createBizTagMiddleware,
  currentBizContext,
  govmapBizTag,
  outgoingBizHeaders,
} from '../../src/routing/index.ts';
import { SwitchBoard } from '../../src/switches/index.ts';

// A real OpenTelemetry setup, as a service with the OTel SDK has: ALS context manager, W3C baggage.
const contextManager = new AsyncLocalStorageContextManager().enable();
before(() => {
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new W3CBaggagePropagator());
});
after(() => {
  context.disable();
  propagation.disable();
});

const table = {
  default: { target: 'core' },
  routes: [{ id: 'org-1001', orgId: '1001*', txnType: '*', target: 'settlement-a' }],
};

/** What a handler observed of its request's context. */
function observe(board: SwitchBoard): Record<string, unknown> {
  const biz = currentBizContext();
  return {
    tag: biz?.tag?.header ?? null,
    route: biz?.decision.route.id ?? null,
    reason: biz?.decision.reason ?? null,
    switchVersion: board.view().version,
    pilot: board.isOn('pilot'),
    outgoing: outgoingBizHeaders(),
  };
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** A node:http request: an array header value is sent as repeated header lines (fetch would join them). */
function rawGet(url: string, headers: Record<string, string | string[]>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'GET', headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('node:http middleware', () => {
  const board = new SwitchBoard({ initial: { pilot: { enabled: true, allow: [{ orgIds: ['1001*'] }] } } });
  const router = new Router({ table, switches: board, log: () => undefined });
  const metrics = new RoutingMetrics().track(router);
  const tagged = createBizTagMiddleware({ router, switches: board });
  let service: { server: Server; url: string };
  before(async () => {
    service = await listen((req, res) => {
      void tagged(req, res, async () => {
        await new Promise((r) => setTimeout(r, 5)); // context must survive an await
        const seen = observe(board);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(seen));
      });
    });
  });
  after(async () => {
    service.server.closeAllConnections();
    await new Promise((r) => service.server.close(r));
  });

  test('a tagged request runs with its tag, its route, its pinned switches and the tag in outgoing headers and baggage', async () => {
    const response = await fetch(service.url, { headers: { 'x-biz-tag': 'orgId:100177|txnType:pay|channel:app' } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-govmap-route'), 'org-1001');
    const seen: any = await response.json();
    assert.equal(seen.tag, 'orgId:100177|txnType:pay|channel:app');
    assert.equal(seen.route, 'org-1001');
    assert.equal(seen.pilot, true, 'targeting used the tag as context');
    assert.equal(seen.outgoing['x-biz-tag'], 'orgId:100177|txnType:pay|channel:app');
    // The W3C baggage header a downstream receives carries the tag, and parses back strictly.
    const baggage = propagation.getBaggage(propagation.extract(ROOT_CONTEXT, { baggage: seen.outgoing.baggage }));
    assert.equal(baggage?.getEntry(BIZ_TAG_BAGGAGE_KEY)?.value, 'orgId:100177|txnType:pay|channel:app');
    assert.equal(bizTagFromBaggage(baggage)?.orgId, '100177');
  });

  test('a request without a tag goes to the default route; with a malformed tag it gets 400 and the handler never runs', async () => {
    const untagged: any = await (await fetch(service.url)).json();
    assert.deepEqual([untagged.route, untagged.reason, untagged.tag, untagged.pilot], ['default', 'untagged', null, false]);
    const response = await fetch(service.url, { headers: { 'x-biz-tag': 'orgId:1001|txnType:pay|orgId:2' } });
    assert.equal(response.status, 400);
    assert.equal(response.headers.get('cache-control'), 'no-store', 'a shared cache must not serve one client\'s refusal to others');
    const body: any = await response.json();
    assert.equal(body.error.code, 'GOVMAP_BIZTAG_INVALID');
    assert.equal(body.error.rule, 'DUPLICATE_KEY');
    assert.match(body.error.reason, /orgId appears twice/);
  });

  test('two X-Biz-Tag headers on one request are refused, not merged', async () => {
    const response = await rawGet(service.url, { 'x-biz-tag': ['orgId:1001', 'orgId:2002'] });
    assert.equal(response.status, 400);
    assert.equal(response.body.error.rule, 'MULTIPLE_HEADERS');
    assert.match(await metrics.registry.metrics(), /govmap_biztag_rejected_total\{rule="MULTIPLE_HEADERS"\} 1/);
  });

  test('a bad tag in baggage is a typed error too', () => {
    const baggage = propagation.createBaggage({ [BIZ_TAG_BAGGAGE_KEY]: { value: 'orgId:1001|' } });
    assert.throws(() => bizTagFromBaggage(baggage), { code: 'GOVMAP_BIZTAG_INVALID', rule: 'EMPTY_PAIR' });
    assert.equal(bizTagFromBaggage(propagation.createBaggage()), null);
  });
});

describe('Fastify plugin', () => {
  const board = new SwitchBoard({ initial: { pilot: { enabled: true, allow: [{ orgIds: ['1001*'] }] } } });
  const router = new Router({ table, switches: board, log: () => undefined });
  const app = Fastify();
  before(async () => {
    await app.register(govmapBizTag({ router, switches: board }));
    app.post('/payments', async (request) => {
      // A change between the request's start and its handler must not split the request.
      board.set('pilot', false, { actor: 'test', reason: 'flip during the request' });
      return { ...observe(board), body: request.body };
    });
    app.get('/plain', async () => observe(board));
    await app.ready();
  });
  after(() => app.close());

  test('the handler (after body parsing) sees the tag, the route and the switch version pinned at onRequest', async () => {
    const version = board.snapshot.version;
    const response = await app.inject({ method: 'POST', url: '/payments', headers: { 'x-biz-tag': 'orgId:1001|txnType:pay', 'content-type': 'application/json' }, payload: { amount: '1250' } });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['x-govmap-route'], 'org-1001');
    const seen = response.json();
    assert.deepEqual([seen.tag, seen.route, seen.switchVersion, seen.pilot], ['orgId:1001|txnType:pay', 'org-1001', version, true]);
    assert.deepEqual(seen.body, { amount: '1250' });
    assert.equal(seen.outgoing['x-biz-tag'], 'orgId:1001|txnType:pay');
    assert.equal(board.snapshot.version, version + 1);
  });

  test('a malformed tag gets 400 before the body is read; no tag goes to the default route', async () => {
    const bad = await app.inject({ method: 'POST', url: '/payments', headers: { 'x-biz-tag': 'orgId=1001', 'content-type': 'application/json' }, payload: { amount: '1' } });
    assert.equal(bad.statusCode, 400);
    // As the node:http middleware answers: a shared cache must not serve one client's refusal to others.
    assert.equal(bad.headers['cache-control'], 'no-store');
    assert.equal(bad.json().error.rule, 'KEY_INVALID');
    const plain = (await app.inject({ method: 'GET', url: '/plain' })).json();
    assert.deepEqual([plain.route, plain.reason], ['default', 'untagged']);
  });
});
