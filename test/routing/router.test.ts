import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { BreakerGroup, BreakerMetrics, ManualClock } from '../../src/breaker/index.ts';
import { RouteTable, Router, RoutingMetrics, breakerGuards, createBizTagMiddleware, parseBizTag, runWithBizContext, sendRouteOutcome, sendRouteOutcomeReply } from '../../src/routing/index.ts';
import type { RouteGuard, RouteOutcome } from '../../src/routing/index.ts';
import { SwitchBoard } from '../../src/switches/index.ts';
import { ConfigurationError } from '../../src/map/errors.ts';

class Refused extends Error {}

/** A guard we open and close by hand: tests the router's own logic beside the real-breaker tests. */
function manualGuards(): { open: Set<string>; factory: (route: { id: string }) => RouteGuard } {
  const open = new Set<string>();
  return {
    open,
    factory: (route) => ({
      get state() {
        return open.has(route.id) ? 'OPEN' : 'CLOSED';
      },
      execute: (fn, signal) => (open.has(route.id) ? Promise.reject(new Refused(route.id)) : fn(signal ?? new AbortController().signal)),
      isRejection: (e) => e instanceof Refused,
    }),
  };
}

const document = {
  default: { target: 'core', degradation: { kind: 'none' } },
  routes: [
    { id: 'mocked', orgId: '1*', txnType: '*', target: 'a', degradation: { kind: 'mock', status: 202, body: { status: 'PENDING' }, headers: { 'x-why': 'degraded' } } },
    { id: 'cached', orgId: '2*', txnType: '*', target: 'b', degradation: { kind: 'cache', ttlMs: 1000 } },
    { id: 'plain', orgId: '3*', txnType: '*', target: 'c' },
  ],
};

/** Runs `fn` as a request tagged `header` would run behind the middleware. */
function asRequest<T>(router: Router, header: string, fn: () => Promise<T>): Promise<T> {
  const tag = parseBizTag(header);
  return runWithBizContext({ tag, decision: router.decide(tag) }, fn);
}

describe('degradation strategies', () => {
  test('mock answers with the configured response while the breaker is open', async () => {
    const guards = manualGuards();
    const router = new Router({ table: document, guards: guards.factory });
    const live = await asRequest(router, 'orgId:1001', () => router.execute({}, async (target) => `live from ${target}`));
    assert.deepEqual(live.kind === 'live' && live.value, 'live from a');
    guards.open.add('mocked');
    const degraded = await asRequest(router, 'orgId:1001', () => router.execute({}, async () => assert.fail('not called while open')));
    assert.deepEqual({ ...degraded, route: degraded.route.id }, { kind: 'mock', route: 'mocked', reason: 'BREAKER_OPEN', status: 202, body: { status: 'PENDING' }, headers: { 'x-why': 'degraded' } });
  });

  test('cache serves the last good response for the same signature and the same org only', async () => {
    let now = 1_000_000;
    const guards = manualGuards();
    const router = new Router({ table: document, guards: guards.factory, clock: () => now });
    await asRequest(router, 'orgId:2001|txnType:fx', () => router.execute({ signature: 'GET /fx/EURUSD' }, async () => ({ rate: '1.0842' })));
    now += 400;
    guards.open.add('cached');
    const hit = await asRequest(router, 'orgId:2001|txnType:fx', () => router.execute({ signature: 'GET /fx/EURUSD' }, async () => assert.fail('open')));
    assert.equal(hit.kind, 'cache');
    assert.deepEqual(hit.kind === 'cache' && [hit.value, hit.ageMs, hit.reason], [{ rate: '1.0842' }, 400, 'BREAKER_OPEN']);
    const otherSignature = await asRequest(router, 'orgId:2001|txnType:fx', () => router.execute({ signature: 'GET /fx/GBPUSD' }, async () => 0));
    assert.deepEqual([otherSignature.kind, otherSignature.kind === 'unavailable' && otherSignature.detail], ['unavailable', 'CACHE_MISS']);
    const otherOrg = await asRequest(router, 'orgId:2999|txnType:fx', () => router.execute({ signature: 'GET /fx/EURUSD' }, async () => 0));
    assert.equal(otherOrg.kind, 'unavailable', 'org 2001\'s answer is never served to org 2999, though both route through "cached"');
    now += 700;
    const expired = await asRequest(router, 'orgId:2001|txnType:fx', () => router.execute({ signature: 'GET /fx/EURUSD' }, async () => 0));
    assert.equal(expired.kind, 'unavailable', 'past its TTL a cached answer is not served');
    assert.equal(router.status().find((s) => s.id === 'cached')!.cacheEntries, 0);
  });

  test('a handler that adds per-request fields to its answer does not change what later degraded answers serve', async () => {
    const guards = manualGuards();
    const router = new Router({ table: document, guards: guards.factory });
    const live = await asRequest(router, 'orgId:2001|txnType:fx', () => router.execute({ signature: 'GET /fx/EURUSD' }, async () => ({ rate: '1.0842', spread: 12n, legs: [{ ccy: 'EUR' }] })));
    assert.equal(live.kind, 'live');
    // The live caller's object is its own to change (not frozen), as before.
    const answer = live.kind === 'live' ? live.value : assert.fail('live');
    answer.legs[0]!.ccy = 'GBP';
    Object.assign(answer, { requestId: 'req-1', customer: 'acct-000001' });
    guards.open.add('cached');
    const first = await asRequest(router, 'orgId:2001|txnType:fx', () => router.execute({ signature: 'GET /fx/EURUSD' }, async () => assert.fail('open')));
    const served = first.kind === 'cache' ? (first.value as Record<string, unknown>) : assert.fail(`expected a cached answer, got ${first.kind}`);
    assert.deepEqual(served, { rate: '1.0842', spread: 12n, legs: [{ ccy: 'EUR' }] }, 'the answer as the target gave it, bigint kept, without request 1\'s fields');
    // A degraded answer's handler may add its own request's fields too: the next one never sees them.
    Object.assign(served, { requestId: 'req-2' });
    const second = await asRequest(router, 'orgId:2001|txnType:fx', () => router.execute({ signature: 'GET /fx/EURUSD' }, async () => assert.fail('open')));
    assert.deepEqual(second.kind === 'cache' && second.value, { rate: '1.0842', spread: 12n, legs: [{ ccy: 'EUR' }] });
    await router.close();
  });

  test('no strategy: 503-style unavailable; a live failure with the breaker closed is the caller\'s error, not a degradation', async () => {
    const guards = manualGuards();
    const router = new Router({ table: document, guards: guards.factory });
    await assert.rejects(asRequest(router, 'orgId:3001', () => router.execute({}, async () => Promise.reject(new Error('downstream 500')))), /downstream 500/);
    guards.open.add('plain');
    const outcome: RouteOutcome<never> = await asRequest(router, 'orgId:3001', () => router.execute({}, async () => assert.fail('open')));
    assert.deepEqual([outcome.kind, outcome.kind === 'unavailable' && outcome.detail], ['unavailable', 'NO_STRATEGY']);
    const counters = router.status().find((s) => s.id === 'plain')!.counters;
    assert.deepEqual([counters.failed, counters.breakerOpen, counters.unavailable], [1, 1, 1]);
  });

  test('a force-degrade switch targets one route by id', async () => {
    const board = new SwitchBoard({ initial: { 'routing.force-degrade': { enabled: true, allow: [{ orgIds: ['1*'] }] } } });
    const router = new Router({ table: document, switches: board });
    const forced = await asRequest(router, 'orgId:1001', () => board.run(() => router.execute({}, async () => 'live'), { orgId: '1001' }));
    assert.deepEqual([forced.kind, forced.kind === 'mock' && forced.reason], ['mock', 'FORCED_BY_SWITCH']);
    const untouched = await asRequest(router, 'orgId:3001', () => board.run(() => router.execute({}, async () => 'live'), { orgId: '3001' }));
    assert.equal(untouched.kind, 'live');
  });
});

describe('table changes', () => {
  test('a route that stays in the table keeps its (open) breaker; a new table version routes differently', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const group = new BreakerGroup({ name: 'routes', clock, minimumCalls: 2, windowMs: 1000, breachedWindowsToOpen: 1, timeoutMs: Infinity, openDurationMs: 60_000 });
    const router = new Router({ table: document, guards: breakerGuards(group) });
    for (let i = 0; i < 3; i++) await assert.rejects(asRequest(router, 'orgId:1001', () => router.execute({}, () => Promise.reject(new Error('down')))));
    clock.advance(1000);
    const degraded = await asRequest(router, 'orgId:1001', () => router.execute({}, async () => 'live'));
    assert.equal(degraded.kind, 'mock');
    assert.equal(router.status()[0]!.breaker, 'OPEN');

    const edited = { ...document, routes: [...document.routes, { id: 'new', orgId: '1001', txnType: '*', target: 'z' }] };
    router.replaceTable(new RouteTable(edited, { version: 2 }));
    assert.equal(router.table.version, 2);
    assert.equal(router.status().find((s) => s.id === 'mocked')!.breaker, 'OPEN', 'editing the table does not close an open circuit');
    const rerouted = await asRequest(router, 'orgId:1001', () => router.execute({}, async (target) => target));
    assert.deepEqual([rerouted.route.id, rerouted.kind === 'live' && rerouted.value], ['new', 'z']);
    group.dispose();
  });

  test('a call that succeeded on a cache route a reload removed meanwhile answers live, not as a failure (the payment was made)', async () => {
    const router = new Router({ table: document });
    let answer!: (value: unknown) => void;
    const pending = asRequest(router, 'orgId:2001|txnType:pay', () => router.execute({ signature: 'POST /payments/p-1' }, () => new Promise((resolve) => (answer = resolve))));
    await new Promise((resolve) => setImmediate(resolve));
    router.replaceTable(new RouteTable({ ...document, routes: document.routes.filter((r) => r.id !== 'cached') }, { version: 2 }));
    answer({ status: 'SETTLED' });
    const outcome = await pending;
    assert.deepEqual([outcome.kind, outcome.kind === 'live' && outcome.value], ['live', { status: 'SETTLED' }]);
    await router.close();
  });
});

describe('a route id reused for another org by a reload', () => {
  // v1: route "acct" is org 1001's, at bank-a. v2: org 1001 moved to route "acct-a", and the id
  // "acct" now names org 2002's route at bank-b (an operator renumbering the file).
  const v1 = { default: { target: 'core' }, routes: [{ id: 'acct', orgId: '1001', txnType: '*', target: 'bank-a', degradation: { kind: 'async', ratePerSec: 1000 } }] };
  const v2 = {
    default: { target: 'core' },
    routes: [
      { id: 'acct', orgId: '2002', txnType: '*', target: 'bank-b', degradation: { kind: 'async', ratePerSec: 1000 } },
      { id: 'acct-a', orgId: '1001', txnType: '*', target: 'bank-a2' },
    ],
  };

  test('a request of org 1001 decided before the reload is not sent to org 2002\'s target', async () => {
    const router = new Router({ table: v1, processAsync: async () => undefined, log: () => undefined });
    const outcome = await asRequest(router, 'orgId:1001|txnType:pay', async () => {
      // Decided under v1 (the middleware did it when the request arrived); the reload lands while
      // the handler awaits, e.g. reading its body.
      router.replaceTable(new RouteTable(v2, { version: 2 }));
      return router.execute({}, async (target) => target);
    });
    assert.deepEqual([outcome.route.id, outcome.kind === 'live' && outcome.value], ['acct-a', 'bank-a2'], 'org 1001\'s payment ends at org 1001\'s target');
    await router.close();
  });

  test('the answer to a request decided before the reload names the route it ran on in x-govmap-route, not the reused id', async () => {
    const router = new Router({ table: v1, processAsync: async () => undefined, log: () => undefined });
    const tagged = createBizTagMiddleware({ router });
    const server = createServer((req, res) =>
      void tagged(req, res, async () => {
        router.replaceTable(new RouteTable(v2, { version: 2 }));
        const outcome = await router.execute({}, async (target) => target);
        sendRouteOutcome(res, outcome, (value) => res.writeHead(200, { 'content-type': 'text/plain' }).end(value));
      }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { headers: { 'x-biz-tag': 'orgId:1001|txnType:pay' } });
      assert.deepEqual([await response.text(), response.headers.get('x-govmap-route')], ['bank-a2', 'acct-a']);
    } finally {
      server.close();
      await router.close();
    }
  });

  test('a route edited in place (same id, same orgId and txnType, new target) still takes the requests decided before the edit', async () => {
    const router = new Router({ table: v1, processAsync: async () => undefined, log: () => undefined });
    const outcome = await asRequest(router, 'orgId:1001|txnType:pay', async () => {
      router.replaceTable(new RouteTable({ ...v1, routes: [{ ...v1.routes[0]!, target: 'bank-a-dr' }] }, { version: 2 }));
      return router.execute({}, async (target) => target);
    });
    assert.deepEqual([outcome.route.id, outcome.kind === 'live' && outcome.value], ['acct', 'bank-a-dr']);
    await router.close();
  });

  test('a job of org 1001 queued before the reload is never processed against org 2002\'s target: it is returned by close()', async () => {
    const guards = manualGuards();
    guards.open.add('acct');
    const sent: Array<{ target: string; token: string }> = [];
    const router = new Router({ table: v1, guards: guards.factory, processAsync: async (target, _payload, _signal, token) => void sent.push({ target, token }), log: () => undefined });
    const queued = await asRequest(router, 'orgId:1001|txnType:pay', () => router.execute({ payload: { amount: '100.00' } }, async () => 'never'));
    assert.equal(queued.kind, 'queued');
    router.replaceTable(new RouteTable(v2, { version: 2 }));
    guards.open.delete('acct');
    await new Promise((resolve) => setTimeout(resolve, 700)); // past the lane's deferral pause
    const closed = await router.close({ deadlineMs: 100 });
    assert.deepEqual(sent, [], 'nothing reached bank-b for org 1001');
    assert.deepEqual(closed.remaining.map((j) => j.payload.tag), ['orgId:1001|txnType:pay'], 'kept for the operator, not lost');
  });

  test('close() returns the jobs held by a reused id at once, not after its whole deadline (a pod killed meanwhile would lose every queued job)', async () => {
    const guards = manualGuards();
    guards.open.add('acct');
    const router = new Router({ table: v1, guards: guards.factory, processAsync: async () => undefined, log: () => undefined });
    for (let i = 0; i < 2; i++) await asRequest(router, 'orgId:1001|txnType:pay', () => router.execute({ payload: { amount: `1${i}.00` } }, async () => 'never'));
    router.replaceTable(new RouteTable(v2, { version: 2 }));
    guards.open.delete('acct');
    await new Promise((resolve) => setTimeout(resolve, 50)); // the held lane has tried once
    const started = performance.now();
    const closed = await router.close({ deadlineMs: 10_000 });
    const tookMs = performance.now() - started;
    assert.deepEqual(closed.remaining.map((j) => j.payload.payload), [{ amount: '10.00' }, { amount: '11.00' }], 'returned, in order');
    // Half the deadline, not a tight bound: waiting out the deadline takes 10 s, returning at once
    // takes ~50 ms here and up to seconds on a loaded CI box (2 s was within reach there).
    assert.ok(tookMs < 5_000, `close() took ${Math.round(tookMs)} ms: no reload can give these jobs a route once the router closes`);
  });

  test('org 2002\'s jobs on the reused route are processed, not stuck behind org 1001\'s held jobs', async () => {
    const guards = manualGuards();
    guards.open.add('acct');
    const sent: Array<{ target: string; amount: unknown }> = [];
    const router = new Router({ table: v1, guards: guards.factory, processAsync: async (target, payload) => void sent.push({ target, amount: (payload as { amount: string }).amount }), log: () => undefined });
    for (let i = 0; i < 6; i++) await asRequest(router, 'orgId:1001|txnType:pay', () => router.execute({ payload: { amount: `1${i}.00` } }, async () => 'never'));
    router.replaceTable(new RouteTable(v2, { version: 2 }));
    const queued = await asRequest(router, 'orgId:2002|txnType:pay', () => router.execute({ payload: { amount: '20.00' } }, async () => 'never'));
    assert.equal(queued.kind, 'queued');
    guards.open.delete('acct');
    for (let i = 0; i < 300 && sent.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const closed = await router.close({ deadlineMs: 100 });
    assert.deepEqual(sent, [{ target: 'bank-b', amount: '20.00' }]);
    assert.equal(closed.remaining.length, 6, 'org 1001\'s jobs are returned, not lost');
  });

  /** A group whose breakers open after 2 failures within a second, and stay open a minute. */
  function openingGroup(clock: ManualClock): BreakerGroup {
    return new BreakerGroup({ name: 'routes', clock, minimumCalls: 2, windowMs: 1000, breachedWindowsToOpen: 1, timeoutMs: Infinity, openDurationMs: 60_000 });
  }
  const plainV1 = { default: { target: 'core' }, routes: [{ id: 'acct', orgId: '1001', txnType: '*', target: 'bank-a' }, { id: 'fx', orgId: '3001', txnType: '*', target: 'fx-bank' }] };
  const plainV2 = { default: { target: 'core' }, routes: [{ id: 'acct', orgId: '2002', txnType: '*', target: 'bank-b' }, { id: 'acct-a', orgId: '1001', txnType: '*', target: 'bank-a' }, plainV1.routes[1]!] };

  /** A router on plainV1 whose breakers for these tags' routes have opened (3 failures each, then a window). */
  async function withOpenBreakers(...tags: string[]): Promise<{ group: BreakerGroup; router: Router }> {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const group = openingGroup(clock);
    const router = new Router({ table: plainV1, guards: breakerGuards(group), log: () => undefined });
    for (const tag of tags) {
      for (let i = 0; i < 3; i++) await assert.rejects(asRequest(router, tag, () => router.execute({}, () => Promise.reject(new Error('down')))));
    }
    clock.advance(1000);
    return { group, router };
  }

  test('org 2002\'s first calls on the reused id go live: the breaker org 1001\'s failing bank opened does not degrade them', async () => {
    const { group, router } = await withOpenBreakers('orgId:1001|txnType:pay');
    const refused = await asRequest(router, 'orgId:1001|txnType:pay', () => router.execute({}, async () => 'live'));
    assert.deepEqual([refused.kind, router.status().find((s) => s.id === 'acct')!.breaker], ['unavailable', 'OPEN'], 'bank-a\'s breaker is open');
    router.replaceTable(new RouteTable(plainV2, { version: 2 }));
    assert.equal(router.status().find((s) => s.id === 'acct')!.breaker, 'CLOSED', 'org 2002\'s route at bank-b starts with a breaker of its own');
    const first = await asRequest(router, 'orgId:2002|txnType:pay', () => router.execute({}, async (target) => target));
    assert.deepEqual([first.route.id, first.kind, first.kind === 'live' && first.value], ['acct', 'live', 'bank-b']);
    // One failure of bank-b alone does not open it: org 1001's old failures are not counted toward it.
    await assert.rejects(asRequest(router, 'orgId:2002|txnType:pay', () => router.execute({}, () => Promise.reject(new Error('bank-b blip')))));
    assert.equal(router.status().find((s) => s.id === 'acct')!.breaker, 'CLOSED');
    await router.close();
    group.dispose();
  });

  test('a reload reusing an id keeps the open breaker of every route it did not change, under the same breaker key', async () => {
    const { group, router } = await withOpenBreakers('orgId:3001|txnType:fx');
    const fxKey = [...group.breakers()].find((b) => b.state === 'OPEN')!.id;
    router.replaceTable(new RouteTable(plainV2, { version: 2 }));
    assert.equal(router.status().find((s) => s.id === 'fx')!.breaker, 'OPEN', 'an unrelated reload does not close fx-bank\'s circuit');
    const degraded = await asRequest(router, 'orgId:3001|txnType:fx', () => router.execute({}, async () => assert.fail('fx-bank is still down')));
    assert.equal(degraded.kind, 'unavailable');
    assert.deepEqual([...group.breakers()].filter((b) => b.state === 'OPEN').map((b) => b.id), [fxKey], 'same breaker, same key (the etcd key of a cluster sync)');
    await router.close();
    group.dispose();
  });

  test('a route moved in place to another target (failover to a DR bank) gets a fresh breaker: the DR bank is called at once', async () => {
    const { group, router } = await withOpenBreakers('orgId:1001|txnType:pay');
    router.replaceTable(new RouteTable({ ...plainV1, routes: [{ ...plainV1.routes[0]!, target: 'bank-a-dr' }, plainV1.routes[1]!] }, { version: 2 }));
    const outcome = await asRequest(router, 'orgId:1001|txnType:pay', () => router.execute({}, async (target) => target));
    assert.deepEqual([outcome.kind, outcome.kind === 'live' && outcome.value], ['live', 'bank-a-dr']);
    await router.close();
    group.dispose();
  });

  test('the open breaker of a route a reload removed or moved to another target leaves the group and the scrape: no alert firing for ever on a breaker no call reaches', async () => {
    const { group, router } = await withOpenBreakers('orgId:1001|txnType:pay', 'orgId:3001|txnType:fx');
    const metrics = new BreakerMetrics().trackGroup(group);
    const openKeys = (): string[] => [...group.breakers()].filter((b) => b.state === 'OPEN').map((b) => b.key!).sort();
    assert.equal(openKeys().length, 2, 'bank-a\'s and fx-bank\'s breakers are open');
    const openSeries = async (): Promise<number> => (await metrics.registry.metrics()).split('\n').filter((line) => /^govmap_breaker_state\{/.test(line) && /state="OPEN"/.test(line) && / 1$/.test(line)).length;
    assert.equal(await openSeries(), 2);
    // acct moves to its DR bank, fx leaves the table.
    router.replaceTable(new RouteTable({ default: plainV1.default, routes: [{ ...plainV1.routes[0]!, target: 'bank-a-dr' }] }, { version: 2 }));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(openKeys(), [], 'neither stale breaker is kept');
    assert.equal(await openSeries(), 0, 'nor exported as open');
    await router.close();
    group.dispose();
  });

  test('jobs held because their route id now serves another org are logged once with the route and count, and exported as govmap_async_held_jobs', async () => {
    const guards = manualGuards();
    guards.open.add('acct');
    const lines: string[] = [];
    const router = new Router({ table: v1, guards: guards.factory, processAsync: async () => undefined, log: (message) => void lines.push(message) });
    const metrics = new RoutingMetrics().track(router);
    for (let i = 0; i < 3; i++) await asRequest(router, 'orgId:1001|txnType:pay', () => router.execute({ payload: { amount: `1${i}.00` } }, async () => 'never'));
    router.replaceTable(new RouteTable(v2, { version: 2 }));
    guards.open.delete('acct');
    await new Promise((resolve) => setTimeout(resolve, 1300)); // a few 500 ms retries
    const held = lines.filter((line) => /held/.test(line));
    assert.equal(held.length, 1, `one line, not one per retry: ${JSON.stringify(lines)}`);
    assert.match(held[0]!, /route "acct"/);
    assert.match(held[0]!, /3 async job\(s\)/);
    assert.match(held[0]!, /orgId 2002/);
    assert.match(await metrics.registry.metrics(), /govmap_async_held_jobs\{route="acct"\} 3\n/);
    const closed = await router.close({ deadlineMs: 100 });
    assert.equal(closed.remaining.length, 3);
  });

  test('a persisted job of org 1001 restored after the id was reused is returned unroutable, not queued for org 2002\'s target', async () => {
    const sent: string[] = [];
    const router = new Router({ table: v2, processAsync: async (target) => void sent.push(target), log: () => undefined });
    const job = { token: 'spilled-1', lane: 'acct', payload: { tag: 'orgId:1001|txnType:pay', route: 'acct', payload: { amount: '100.00' } }, acceptedAt: new Date(0).toISOString(), attempts: 0 };
    const result = router.restoreJobs([job]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await router.close({ deadlineMs: 100 });
    assert.deepEqual([result.restored, result.unroutable.map((j) => j.token), sent], [0, ['spilled-1'], []]);
  });
});

test('an async route on a router without processAsync is refused at construction and at reload, not answered 202 and then dead-lettered', async () => {
  const asyncTable = { default: { target: 'core' }, routes: [{ id: 'acct', orgId: '1001', txnType: '*', target: 'bank-a', degradation: { kind: 'async', ratePerSec: 10 } }] };
  const refusal = (error: unknown): boolean => error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && /"processAsync"/.test(error.message) && /route "acct"/.test(error.message);
  assert.throws(() => new Router({ table: asyncTable, log: () => undefined }), refusal);
  const router = new Router({ table: document, log: () => undefined });
  assert.throws(() => router.replaceTable(new RouteTable(asyncTable, { version: 2 })), refusal);
  const outcome = await asRequest(router, 'orgId:1001', () => router.execute({}, async (target) => target));
  assert.deepEqual([router.table.version, outcome.route.id], [1, 'mocked'], 'the router keeps routing on its table');
  await router.close();
});

test('replaceTable given a table document instead of a RouteTable (a JavaScript caller) is refused and the router keeps routing on its table', async () => {
  const router = new Router({ table: document, log: () => undefined });
  const edited = { ...document, routes: [{ id: 'moved', orgId: '1*', txnType: '*', target: 'z' }] };
  assert.throws(() => router.replaceTable(edited as unknown as RouteTable), (error: unknown) =>
    error instanceof ConfigurationError && /"table"/.test(error.message) && /RouteTable/.test(error.message));
  const outcome = await asRequest(router, 'orgId:1001', () => router.execute({}, async (target) => target));
  assert.deepEqual([outcome.route.id, outcome.kind === 'live' && outcome.value], ['mocked', 'a']);
  await router.close();
});

test('a call on a cache route that completes while the router shuts down answers live, not as a failure (the payment was made)', async () => {
  const router = new Router({ table: document });
  let answer!: (value: unknown) => void;
  const pending = asRequest(router, 'orgId:2001|txnType:pay', () => router.execute({ signature: 'POST /payments/p-2' }, () => new Promise((resolve) => (answer = resolve))));
  await new Promise((resolve) => setImmediate(resolve));
  await router.close({ deadlineMs: 100 });
  answer({ status: 'SETTLED' });
  const outcome = await pending;
  assert.deepEqual([outcome.kind, outcome.kind === 'live' && outcome.value], ['live', { status: 'SETTLED' }]);
});

test('onTableApplied runs after the first table and every replacement, with the cache maps then in place (to track them for metrics)', async () => {
  const seen: Array<{ version: number; cache: unknown }> = [];
  const router = new Router({
    table: document,
    onTableApplied: (r) => seen.push({ version: r.table.version, cache: [...r.runtimes()].find((rt) => rt.route.id === 'cached')?.cache?.map }),
  });
  const edited = { ...document, routes: document.routes.map((r) => (r.id === 'cached' ? { ...r, degradation: { kind: 'cache', ttlMs: 5000 } } : r)) };
  router.replaceTable(new RouteTable(edited, { version: 2 }));
  assert.equal(seen.length, 2, 'once for the first table, once for the replacement');
  assert.equal(seen[1]!.version, 2);
  assert.ok(seen[0]!.cache !== undefined && seen[1]!.cache !== undefined, 'the cache maps exist when it runs');
  assert.notEqual(seen[0]!.cache, seen[1]!.cache, 'a changed cache route has a new map: the one to track');
  await router.close();
});

describe('unmatched traffic', () => {
  test('an unmatchedLogIntervalMs that is not a positive whole number is refused naming the option, not turned into a log line per request or silence after 100 lines', () => {
    for (const bad of [-1, 0, Number.NaN, 1.5, '60000']) {
      assert.throws(() => new Router({ table: document, unmatchedLogIntervalMs: bad as number, log: () => undefined }), (error: unknown) =>
        error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && /"unmatchedLogIntervalMs"/.test(error.message), String(bad));
    }
  });

  test('goes to the default target, is counted, and is logged at most once per interval per (org, type)', async () => {
    const logged: string[] = [];
    let now = 0;
    const router = new Router({ table: document, log: (m) => logged.push(m), clock: () => now, unmatchedLogIntervalMs: 60_000 });
    const metrics = new RoutingMetrics().track(router);
    for (let i = 0; i < 5; i++) assert.equal(router.decide(parseBizTag('orgId:9001|txnType:pay')).route.target, 'core');
    router.decide(null);
    assert.equal(logged.length, 1);
    assert.match(logged[0]!, /ALERT unmatched traffic: X-Biz-Tag "orgId:9001\|txnType:pay".*default target "core"/);
    now = 60_000;
    router.decide(parseBizTag('orgId:9001|txnType:pay'));
    assert.equal(logged.length, 2);
    const text = await metrics.registry.metrics();
    assert.match(text, /govmap_route_unmatched_total\{reason="no_rule"\} 6/);
    assert.match(text, /govmap_route_unmatched_total\{reason="untagged"\} 1/);
    assert.match(text, /govmap_route_table_version 1/);
    assert.match(text, /govmap_route_breaker_state\{route="mocked",state="NONE"\} 1/);
  });

  test('a flood of tags for orgs nobody configured (attacker-chosen) logs a bounded number of lines per interval, then says how many it left out', () => {
    const logged: string[] = [];
    let now = 0;
    const router = new Router({ table: document, log: (m) => logged.push(m), clock: () => now, unmatchedLogIntervalMs: 60_000 });
    for (let i = 0; i < 5000; i++) router.decide(parseBizTag(`orgId:9${i}|txnType:pay`));
    assert.ok(logged.length <= 100, `${logged.length} log lines in one interval for 5,000 distinct unmatched orgs`);
    assert.equal(router.decisions.noRule, 5000, 'every one is still counted');
    now = 60_000;
    router.decide(parseBizTag('orgId:9|txnType:pay'));
    assert.match(logged.at(-1)!, /orgId 9,.*4900 more unmatched request\(s\) were not logged/);
  });
});

describe('metrics', () => {
  test('tracking a router again (to add its table source) does not count its calls twice', async () => {
    const router = new Router({ table: document, log: () => undefined });
    const metrics = new RoutingMetrics().track(router);
    // What docs/routing.md shows for the sources: track(router, [source]), on a router already tracked.
    const source = { kind: 'file', status: () => ({ errors: 1, healthy: true }) };
    metrics.track(router, [source]);
    await asRequest(router, 'orgId:3001', () => router.execute({}, async () => 'ok'));
    router.decide(parseBizTag('orgId:9001|txnType:pay'));
    const text = await metrics.registry.metrics();
    assert.match(text, /govmap_route_requests_total\{route="plain",outcome="live"\} 1\n/);
    assert.match(text, /govmap_route_unmatched_total\{reason="no_rule"\} 1\n/);
    assert.match(text, /govmap_route_table_source_errors_total\{source="file"\} 1\n/);
    await router.close();
  });

  test('two routers tracked under their names export their default routes apart: one service\'s failing default route is told from the other\'s', async () => {
    const payments = new Router({ table: { default: { target: 'pay-core' }, routes: [] }, log: () => undefined });
    const risk = new Router({ table: { default: { target: 'risk-core' }, routes: [] }, log: () => undefined });
    const riskFile = { kind: 'file', status: () => ({ errors: 2, healthy: false }) };
    const paymentsFile = { kind: 'file', status: () => ({ errors: 0, healthy: true }) };
    const metrics = new RoutingMetrics().track(payments, [paymentsFile], { name: 'payments' }).track(risk, [riskFile], { name: 'risk' });
    await assert.rejects(payments.execute({}, async () => Promise.reject(new Error('pay-core down'))));
    await assert.rejects(payments.execute({}, async () => Promise.reject(new Error('pay-core down'))));
    await risk.execute({}, async () => 'ok');
    payments.decide(null);
    const text = await metrics.registry.metrics();
    assert.match(text, /govmap_route_requests_total\{router="payments",route="default",outcome="failed"\} 2\n/);
    assert.match(text, /govmap_route_requests_total\{router="risk",route="default",outcome="failed"\} 0\n/);
    assert.match(text, /govmap_route_requests_total\{router="risk",route="default",outcome="live"\} 1\n/);
    assert.match(text, /govmap_route_breaker_state\{router="payments",route="default",state="NONE"\} 1\n/);
    assert.match(text, /govmap_route_breaker_state\{router="risk",route="default",state="NONE"\} 1\n/);
    assert.match(text, /govmap_bulkhead_active\{router="risk",route="default"\} 0\n/);
    assert.match(text, /govmap_route_table_version\{router="payments"\} 1\n/);
    assert.match(text, /govmap_route_table_source_healthy\{router="risk",source="file"\} 0\n/, 'the unhealthy source is the risk service\'s');
    assert.match(text, /govmap_route_table_source_healthy\{router="payments",source="file"\} 1\n/);
    assert.match(text, /govmap_route_table_source_errors_total\{router="risk",source="file"\} 2\n/);
    // execute() outside a request decides it untagged: 2 + the decide(null).
    assert.match(text, /govmap_route_unmatched_total\{router="payments",reason="untagged"\} 3\n/);
    assert.match(text, /govmap_route_unmatched_total\{router="risk",reason="untagged"\} 1\n/);
    await payments.close();
    await risk.close();
  });

  test('a second router tracked without a name is refused with an error naming the rule: its default route would merge into the first one\'s series', () => {
    const first = new Router({ table: document, log: () => undefined });
    const second = new Router({ table: document, log: () => undefined });
    const metrics = new RoutingMetrics().track(first);
    assert.throws(() => metrics.track(second), (error: unknown) =>
      error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && /"name"/.test(error.message) && /route id "default"/.test(error.message));
    assert.throws(() => new RoutingMetrics().track(first, [], { name: 'a' }).track(second, [], { name: 'a' }), (error: unknown) =>
      error instanceof ConfigurationError && /"name"/.test(error.message) && /"a"/.test(error.message));
    assert.throws(() => new RoutingMetrics().track(first, [], { name: 'bad name"}' }), (error: unknown) => error instanceof ConfigurationError && /"name"/.test(error.message));
    // Tracked again to add a source: the same router, no name needed, counted once.
    metrics.track(first, [{ kind: 'file', status: () => ({ errors: 0, healthy: true }) }]);
    assert.throws(() => metrics.track(first, [], { name: 'renamed' }), (error: unknown) => error instanceof ConfigurationError && /already tracked/.test(error.message));
  });
});

describe('restoring queued jobs', () => {
  test('jobs a full lane cannot take back are returned, not thrown away with the ones after them', async () => {
    const table = { default: { target: 'core' }, routes: [{ id: 'slow', orgId: '1*', txnType: '*', target: 'a', degradation: { kind: 'async', ratePerSec: 1, burst: 1, maxQueued: 2 } }] };
    const router = new Router({
      table,
      // Holds every job until the router closes: the lane stays full.
      processAsync: (_target, _payload, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })),
      log: () => undefined,
    });
    const job = (n: number) => ({ token: `t${n}`, lane: 'slow', payload: { tag: 'orgId:1001', route: 'slow', payload: { n } }, acceptedAt: new Date(0).toISOString(), attempts: 0 });
    const jobs = [job(1), job(2), job(3), job(4), { ...job(5), payload: { ...job(5).payload, route: 'gone' } }];
    const result = router.restoreJobs(jobs);
    assert.equal(result.restored, 2);
    assert.deepEqual(result.unroutable.map((j) => j.token), ['t3', 't4', 't5']);
    const closed = await router.close({ deadlineMs: 10 });
    assert.deepEqual(closed.remaining.map((j) => j.token).sort(), ['t1', 't2'], 'every job is restored or returned, once');
  });

  test('a damaged persisted job (no payload, no token, a tag that does not parse) is returned, not a TypeError that loses the jobs after it', async () => {
    const processed: unknown[] = [];
    const table = { default: { target: 'core' }, routes: [{ id: 'slow', orgId: '1*', txnType: '*', target: 'a', degradation: { kind: 'async', ratePerSec: 1000 } }] };
    const router = new Router({ table, processAsync: async (_t, payload) => void processed.push(payload), log: () => undefined });
    const job = (n: number) => ({ token: `t${n}`, lane: 'slow', payload: { tag: 'orgId:1001', route: 'slow', payload: { n } }, acceptedAt: new Date(0).toISOString(), attempts: 0 });
    const damaged = [
      { token: 'no-payload', lane: 'slow', acceptedAt: new Date(0).toISOString(), attempts: 0 },
      { ...job(0), token: undefined },
      { ...job(0), token: 'bad-tag', payload: { ...job(0).payload, tag: 'orgId:1001 ' } },
      null,
    ] as unknown as ReturnType<typeof job>[];
    const result = router.restoreJobs([job(1), ...damaged, job(2)]);
    assert.equal(result.restored, 2);
    assert.deepEqual(result.unroutable, damaged, 'returned as given, to be kept');
    const closed = await router.close({ deadlineMs: 1000 });
    assert.deepEqual([processed, closed.remaining], [[{ n: 1 }, { n: 2 }], []]);
  });

  test('a reload that removes an async route keeps its queued jobs: never dead-lettered unattempted, returned by close()', async () => {
    const guards = manualGuards();
    guards.open.add('slow');
    const dead: string[] = [];
    const attempted: string[] = [];
    const table = { default: { target: 'core' }, routes: [{ id: 'slow', orgId: '1*', txnType: '*', target: 'a', degradation: { kind: 'async', ratePerSec: 1000, maxAttempts: 3 } }] };
    const router = new Router({
      table,
      guards: guards.factory,
      processAsync: async (_target, _payload, _signal, token) => void attempted.push(token),
      onDeadLetter: (job) => dead.push(job.token),
      log: () => undefined,
    });
    const queued = await asRequest(router, 'orgId:1001', () => router.execute({ payload: { amount: '100' } }, async () => assert.fail('open')));
    assert.equal(queued.kind, 'queued');
    const token = queued.kind === 'queued' ? queued.token : '';
    router.replaceTable(new RouteTable({ default: { target: 'core' }, routes: [] }, { version: 2 }));
    await new Promise((resolve) => setTimeout(resolve, 100)); // the retired lane keeps running
    assert.deepEqual(dead, [], 'the job was never sent anywhere: it must not be dead-lettered');
    assert.equal(router.jobStatus(token)?.state, 'queued');
    const closed = await router.close({ deadlineMs: 20 });
    assert.deepEqual([closed.remaining.map((j) => j.token), attempted], [[token], []], 'returned to be persisted, as restoreJobs() returns a job whose route is gone');
  });

  test('a processed job\'s status is still answered by its token after a reload retunes or removes its async route', async () => {
    const guards = manualGuards();
    guards.open.add('slow');
    const table = { default: { target: 'core' }, routes: [{ id: 'slow', orgId: '1*', txnType: '*', target: 'a', degradation: { kind: 'async', ratePerSec: 1000 } }] };
    const router = new Router({ table, guards: guards.factory, processAsync: async () => undefined, log: () => undefined });
    const queued = await asRequest(router, 'orgId:1001', () => router.execute({ payload: { amount: '100' } }, async () => assert.fail('open')));
    const token = queued.kind === 'queued' ? queued.token : assert.fail(queued.kind);
    guards.open.delete('slow');
    for (let i = 0; i < 100 && router.jobStatus(token)?.state !== 'done'; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(router.jobStatus(token)?.state, 'done');
    router.replaceTable(new RouteTable({ ...table, routes: [{ ...table.routes[0]!, degradation: { kind: 'async', ratePerSec: 50 } }] }, { version: 2 }));
    assert.equal(router.jobStatus(token)?.state, 'done', 'retuning the rate does not forget a settled job');
    router.replaceTable(new RouteTable({ default: { target: 'core' }, routes: [] }, { version: 3 }));
    assert.equal(router.jobStatus(token)?.state, 'done', 'nor does removing the route');
    await router.close();
  });
});

describe('an async route retuned by a reload', () => {
  const slow = { default: { target: 'core' }, routes: [{ id: 'acct', orgId: '1001', txnType: '*', target: 'bank-a', degradation: { kind: 'async', ratePerSec: 1, burst: 1 } }] };

  test('raising ratePerSec drains the backlog already queued at the new rate, and the route still shows that backlog', async () => {
    const guards = manualGuards();
    guards.open.add('acct');
    const sent: string[] = [];
    const router = new Router({ table: slow, guards: guards.factory, processAsync: async (_target, payload) => void sent.push((payload as { amount: string }).amount), log: () => undefined });
    const metrics = new RoutingMetrics().track(router);
    for (let i = 0; i < 20; i++) await asRequest(router, 'orgId:1001|txnType:pay', () => router.execute({ payload: { amount: `${i}.00` } }, async () => 'never'));
    // The operator sees a backlog of 20 at 1/s and raises the rate to drain it.
    router.replaceTable(new RouteTable({ ...slow, routes: [{ ...slow.routes[0]!, degradation: { kind: 'async', ratePerSec: 1000 } }] }, { version: 2 }));
    assert.equal(router.status()[0]!.asyncQueued, 20, 'the backlog is still the route\'s');
    assert.match(await metrics.registry.metrics(), /govmap_async_queue_depth\{route="acct"\} 20\n/);
    guards.open.delete('acct');
    for (let i = 0; i < 150 && sent.length < 20; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(sent.length, 20, `all 20 sent at 1000/s within 1.5 s, not ${sent.length} at the old 1/s`);
    await router.close({ deadlineMs: 100 });
  });
});

describe('review: what a client, a dashboard and a restore observe', () => {
  test('the 503 ROUTE_DEGRADED body names why in stable codes a gateway can branch on (node:http and Fastify alike)', async () => {
    const table = { default: { target: 'core' }, routes: [{ id: 'tight', orgId: '1*', txnType: '*', target: 'a', bulkhead: { maxConcurrent: 1, maxQueued: 0 } }] };
    const router = new Router({ table, log: () => undefined });
    let release!: () => void;
    const busy = asRequest(router, 'orgId:1001', () => router.execute({}, () => new Promise<string>((resolve) => (release = () => resolve('ok')))));
    const outcome = await asRequest(router, 'orgId:1001', () => router.execute({}, async () => 'never'));
    release();
    await busy;
    assert.equal(outcome.kind, 'unavailable');
    const expected = { code: 'ROUTE_DEGRADED', route: 'tight', degradeReason: 'BULKHEAD_FULL', detail: 'NO_STRATEGY' };
    const server = createServer((_req, res) => sendRouteOutcome(res, outcome, () => undefined));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      assert.equal(response.status, 503);
      const body = (await response.json()) as { error: Record<string, unknown> };
      assert.deepEqual({ ...body.error, reason: undefined }, { ...expected, reason: undefined });
      assert.match(String(body.error.reason), /BULKHEAD_FULL/, 'the human text stays');
    } finally {
      server.close();
    }
    const app = Fastify();
    app.get('/', (_request, reply) => sendRouteOutcomeReply(reply, outcome, (value) => reply.send(value)));
    const answer = await app.inject({ method: 'GET', url: '/' });
    await app.close();
    assert.equal(answer.statusCode, 503);
    assert.equal(answer.headers['x-govmap-degraded'], 'unavailable; reason=BULKHEAD_FULL');
    assert.equal(answer.headers['retry-after'], '5');
    assert.deepEqual({ ...answer.json().error, reason: undefined }, { ...expected, reason: undefined });
  });

  test('a client that gives up while queued for a bulkhead slot is counted aborted, not failed', async () => {
    const table = { default: { target: 'core' }, routes: [{ id: 'tight', orgId: '1*', txnType: '*', target: 'a', bulkhead: { maxConcurrent: 1, maxQueued: 4 } }] };
    const router = new Router({ table, log: () => undefined });
    const metrics = new RoutingMetrics();
    metrics.track(router);
    let release!: () => void;
    const busy = asRequest(router, 'orgId:1001', () => router.execute({}, () => new Promise<string>((resolve) => (release = () => resolve('ok')))));
    const impatient = new AbortController();
    const waiting = asRequest(router, 'orgId:1001', () => router.execute({ signal: impatient.signal }, async () => 'never'));
    impatient.abort(new Error('client closed the connection'));
    await assert.rejects(waiting, { code: 'GOVMAP_BULKHEAD_ABORTED' });
    release();
    await busy;
    const text = await metrics.registry.metrics();
    assert.match(text, /govmap_route_requests_total\{route="tight",outcome="failed"\} 0/);
    assert.match(text, /govmap_route_requests_total\{route="tight",outcome="aborted"\} 1/);
    assert.match(text, /govmap_route_requests_total\{route="tight",outcome="live"\} 1/);
  });

  test('clients that hang up mid-call (any client can send any org\'s tag) do not open that org\'s breaker: its payments stay live', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const group = new BreakerGroup({ name: 'routes', clock, minimumCalls: 2, windowMs: 1000, breachedWindowsToOpen: 1, timeoutMs: Infinity, openDurationMs: 60_000 });
    const router = new Router({ table: document, guards: breakerGuards(group), log: () => undefined });
    // A downstream that stops when its signal aborts, as fetch does.
    const downstream = (_target: string, signal: AbortSignal) =>
      new Promise<string>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
    for (let i = 0; i < 4; i++) {
      const hangUp = new AbortController();
      const call = asRequest(router, 'orgId:3001|txnType:pay', () => router.execute({ signal: hangUp.signal }, downstream));
      await new Promise((resolve) => setImmediate(resolve)); // the call is under way
      hangUp.abort(new Error('client closed the connection'));
      await assert.rejects(call, /client closed the connection/);
    }
    clock.advance(1000);
    const outcome = await asRequest(router, 'orgId:3001|txnType:pay', () => router.execute({}, async () => 'settled'));
    assert.deepEqual([outcome.kind, router.status().find((r) => r.id === 'plain')!.breaker], ['live', 'CLOSED']);
    assert.equal(router.status().find((r) => r.id === 'plain')!.counters.aborted, 4);
    // Real failures open it; once its wait is over, a probe whose client hangs up decides nothing either way.
    const breaker = () => router.status().find((r) => r.id === 'plain')!.breaker;
    for (let i = 0; i < 2; i++) {
      await assert.rejects(asRequest(router, 'orgId:3001|txnType:pay', () => router.execute({}, async () => Promise.reject(new Error('gateway down')))), /gateway down/);
    }
    clock.advance(1000);
    assert.equal(breaker(), 'OPEN');
    clock.advance(60_000);
    const hangUp = new AbortController();
    const probe = asRequest(router, 'orgId:3001|txnType:pay', () => router.execute({ signal: hangUp.signal }, downstream));
    await new Promise((resolve) => setImmediate(resolve));
    hangUp.abort(new Error('client closed the connection'));
    await assert.rejects(probe, /client closed the connection/);
    assert.equal(breaker(), 'HALF_OPEN');
    for (let i = 0; i < 5; i++) assert.equal((await asRequest(router, 'orgId:3001|txnType:pay', () => router.execute({}, async () => 'settled'))).kind, 'live');
    assert.equal(breaker(), 'CLOSED', 'the five probes that answered decided');
    await router.close();
  });

  test('jobs restored again after a reload replaced their lane are held once, not run twice', async () => {
    const guards = manualGuards();
    guards.open.add('slow'); // jobs wait (deferred) in whichever lane holds them
    const processed: string[] = [];
    const table = { default: { target: 'core' }, routes: [{ id: 'slow', orgId: '1*', txnType: '*', target: 'a', degradation: { kind: 'async', ratePerSec: 1000 } }] };
    const router = new Router({ table, guards: guards.factory, processAsync: async (_t, _p, _s, token) => void processed.push(token), log: () => undefined });
    const jobs = [{ token: 'spilled-1', lane: 'slow', payload: { tag: 'orgId:1001', route: 'slow', payload: { amount: '100' } }, acceptedAt: new Date(0).toISOString(), attempts: 0 }];
    assert.equal(router.restoreJobs(jobs).restored, 1);
    router.replaceTable(new RouteTable({ ...table, routes: [{ ...table.routes[0]!, degradation: { kind: 'async', ratePerSec: 500 } }] }, { version: 2 }));
    const again = router.restoreJobs(jobs);
    assert.deepEqual(again.unroutable, []);
    guards.open.delete('slow');
    for (let i = 0; i < 200 && processed.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 700)); // past the lanes' deferral pause
    const closed = await router.close({ deadlineMs: 100 });
    assert.deepEqual([processed, closed.remaining.map((j) => j.token)], [['spilled-1'], []], 'the payment is processed once');
  });
});
