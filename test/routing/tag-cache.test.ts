import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { context, propagation } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BIZ_TAG_BAGGAGE_KEY, BizTagCache, Router, createBizTagMiddleware, currentBizContext, parseBizTag } from '../../src/routing/index.ts';
import { SwitchBoard } from '../../src/switches/index.ts';

const table = { default: { target: 'core' }, routes: [{ id: 'org-1001', orgId: '1001', txnType: '*', target: 'settlement-a' }] };

describe('BizTagCache', () => {
  test('the same header gives the same tag and view until the board changes; then a view of the new snapshot', () => {
    const board = new SwitchBoard({ initial: { pilot: { enabled: true, allow: [{ orgIds: ['1001'] }] } } });
    const cache = new BizTagCache();
    const { tag: firstTag, view: firstView } = cache.tagAndView('orgId:1001|txnType:pay', board);
    const again = cache.tagAndView('orgId:1001|txnType:pay', board);
    assert.equal(again.tag, firstTag);
    assert.equal(again.view, firstView);
    assert.equal(firstView!.isOn('pilot'), true, 'the view targets the tag');
    board.set('pilot', false, { actor: 'test', reason: 'switch off' });
    const { tag: laterTag, view: laterView } = cache.tagAndView('orgId:1001|txnType:pay', board);
    assert.equal(laterTag, firstTag, 'the parsed tag is still shared');
    assert.notEqual(laterView, firstView);
    assert.equal(laterView!.version, firstView!.version + 1);
    assert.equal(laterView!.isOn('pilot'), false);
    assert.equal(firstView!.isOn('pilot'), true, 'a request that pinned the old view keeps it');
  });

  test('a malformed header is refused every time and never cached', () => {
    const cache = new BizTagCache();
    for (let i = 0; i < 3; i++) assert.throws(() => cache.tag('orgId:1001|'), { code: 'GOVMAP_BIZTAG_INVALID', rule: 'EMPTY_PAIR' });
    assert.throws(() => cache.tag(''), { rule: 'EMPTY' });
    assert.equal(cache.size, 0);
  });

  test('at most `capacity` tags are kept, however many distinct valid tags arrive', () => {
    const cache = new BizTagCache(16);
    for (let i = 0; i < 1000; i++) {
      assert.equal(cache.tag(`orgId:${i}|txnType:pay`).orgId, String(i));
      assert.ok(cache.size <= 16, `size ${cache.size} after ${i + 1} tags`);
    }
  });

  test('inside a run that already pinned a view, the view merges into that pin and is not shared', () => {
    const board = new SwitchBoard({ initial: { pilot: { enabled: true, allow: [{ orgIds: ['1001'] }] } } });
    const cache = new BizTagCache();
    const outside = cache.tagAndView('orgId:1001', board).view!;
    board.run(() => {
      board.set('pilot', false, { actor: 'test', reason: 'change inside the run' });
      const inside = cache.tagAndView('orgId:1001', board).view!;
      assert.equal(inside.version, outside.version, 'the pinned snapshot answers');
      assert.notEqual(inside, outside);
    }, { orgId: '2002' });
  });

  test('tag keys that are Object.prototype names read as the tag has them', () => {
    const tag = parseBizTag('constructor:x|orgId:1001');
    assert.equal(tag.get('constructor'), 'x');
    assert.equal(tag.get('toString'), undefined);
    assert.equal(Object.getPrototypeOf(tag.targeting), null, 'no inherited names');
    assert.deepEqual(tag.toRecord(), { constructor: 'x', orgId: '1001' });
    assert.ok(Object.isFrozen(tag.targeting));
  });
});

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('node:http middleware with cached tags', () => {
  const board = new SwitchBoard({ initial: { pilot: { enabled: true, allow: [{ orgIds: ['1001'] }] } } });
  const router = new Router({ table, switches: board, log: () => undefined });
  const tagged = createBizTagMiddleware({ router, switches: board });
  let flipDuringRequest = false;
  let service: { server: Server; url: string } | undefined;
  after(async () => {
    service?.server.closeAllConnections();
    await new Promise((r) => service?.server.close(r));
    context.disable();
  });

  const start = async (): Promise<string> => {
    service ??= await listen((req, res) => {
      void tagged(req, res, async () => {
        const before = board.isOn('pilot');
        if (flipDuringRequest) board.set('pilot', !board.snapshot.isOn('pilot', { orgId: '1001' }), { actor: 'test', reason: 'flip mid-request' });
        await new Promise((r) => setTimeout(r, 2));
        const baggage = propagation.getBaggage(context.active())?.getEntry(BIZ_TAG_BAGGAGE_KEY)?.value ?? null;
        const body = { before, after: board.isOn('pilot'), version: board.view().version, route: currentBizContext()?.decision.route.id, baggage };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      });
    });
    return service.url;
  };
  const get = async (url: string, tag: string): Promise<any> => (await fetch(url, { headers: { 'x-biz-tag': tag } })).json();

  test('a switch change between two requests with the same tag is seen by the second; one during a request is not seen by it', async () => {
    const url = await start();
    const first = await get(url, 'orgId:1001|txnType:pay');
    assert.deepEqual([first.before, first.after, first.route], [true, true, 'org-1001']);
    board.set('pilot', false, { actor: 'test', reason: 'between requests' });
    const second = await get(url, 'orgId:1001|txnType:pay');
    assert.deepEqual([second.before, second.after, second.version], [false, false, first.version + 1]);
    flipDuringRequest = true;
    const third = await get(url, 'orgId:1001|txnType:pay');
    flipDuringRequest = false;
    assert.equal(third.before, third.after, 'the request kept the version pinned when it arrived');
    assert.equal(third.version, second.version);
    assert.equal(board.snapshot.version, second.version + 1, 'the change did happen');
  });

  test('OTel baggage: absent while no context manager is registered, set from the next request once one is', async () => {
    const url = await start();
    const without = await get(url, 'orgId:1001|txnType:pay');
    assert.equal(without.baggage, null);
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const withManager = await get(url, 'orgId:1001|txnType:pay');
    assert.equal(withManager.baggage, 'orgId:1001|txnType:pay');
  });
});
