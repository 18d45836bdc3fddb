/**
 * End to end: a real HTTP service behind the X-Biz-Tag middleware, calling a real HTTP
 * downstream through per-route breakers (govmap's two-threshold CircuitBreaker) and bulkheads.
 * One org's downstream fails or is slow; its route's breaker opens and its degradation starts,
 * while another org's traffic is served live throughout.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BreakerGroup } from '../../src/breaker/index.ts';
import { Router, breakerGuards, createBizTagMiddleware, routeBreakerKey, currentBizTag, outgoingBizHeaders, parseBizTag, sendRouteOutcome } from '../../src/routing/index.ts';
import { SwitchBoard } from '../../src/switches/index.ts';

type Behaviour = 'ok' | 'fail' | 'slow';

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

/** The settlement gateway: behaves per org, read from the X-Biz-Tag the service propagated. */
class Gateway {
  readonly behaviour = new Map<string, Behaviour>();
  readonly seen = new Map<string, number>();
  server!: Server;
  url!: string;

  async start(): Promise<void> {
    ({ server: this.server, url: this.url } = await listen((req, res) => {
      const org = parseBizTag(req.headers['x-biz-tag']).orgId ?? '-';
      this.seen.set(org, (this.seen.get(org) ?? 0) + 1);
      // Configured per org prefix: '1001' covers 100177.
      const behaviour = [...this.behaviour].find(([prefix]) => org.startsWith(prefix))?.[1] ?? 'ok';
      if (behaviour === 'fail') {
        res.writeHead(500).end('settlement engine down');
        return;
      }
      // Slow: three times the call budget (timeoutMs below), so a slow call is always a timeout.
      const delay = behaviour === 'slow' ? 3000 : 0;
      const timer = setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ settled: true, org })), delay);
      res.on('close', () => clearTimeout(timer));
    }));
  }
}

interface Service {
  server: Server;
  url: string;
  router: Router;
  group: BreakerGroup;
  processed: string[];
  /** Request ids in the order they reached the router (a batch's parallel requests may overtake each other). */
  admitted: string[];
}

async function startService(gateway: Gateway, options: { bulkhead?: { maxConcurrent: number; maxQueued: number }; timeoutMs?: number } = {}): Promise<Service> {
  // The budget of one call to the gateway: a healthy one must always fit. 250 ms did not on a
  // loaded CI box (org 2002's healthy calls timed out: CallTimeoutError, 502, in 3 of 6 runs).
  const group = new BreakerGroup({ name: 'routes', timeoutMs: options.timeoutMs ?? 1_000, windowMs: 200, minimumCalls: 4, breachedWindowsToOpen: 1, openDurationMs: 60_000 });
  const processed: string[] = [];
  const admitted: string[] = [];
  const settle = async (target: string, body: unknown, signal: AbortSignal): Promise<unknown> => {
    const response = await fetch(`${gateway.url}/settle?target=${target}`, { method: 'POST', headers: { ...outgoingBizHeaders(), 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
    if (!response.ok) throw new Error(`gateway answered ${response.status}`);
    return response.json();
  };
  const router = new Router({
    table: {
      default: { target: 'settlement-default' },
      routes: [
        { id: 'org-1001', orgId: '1001*', txnType: '*', target: 'settlement-a', degradation: { kind: 'async', ratePerSec: 50 }, bulkhead: options.bulkhead },
        { id: 'org-2002', orgId: '2002', txnType: '*', target: 'settlement-b', degradation: { kind: 'mock', status: 200, body: { settled: false, status: 'PENDING' } }, bulkhead: options.bulkhead },
      ],
    },
    guards: breakerGuards(group),
    switches: new SwitchBoard(),
    processAsync: async (target, payload, signal) => {
      await settle(target, payload, signal);
      processed.push(`${currentBizTag()?.orgId}:${(payload as { id: string }).id}`);
    },
    log: () => undefined,
  });
  const tagged = createBizTagMiddleware({ router });
  const { server, url } = await listen((req, res) => {
    void tagged(req, res, async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: string };
      try {
        admitted.push(body.id);
        const outcome = await router.execute({ payload: body, signature: `settle:${body.id}` }, (target, signal) => settle(target, body, signal));
        sendRouteOutcome(res, outcome, (value) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value)));
      } catch (error) {
        res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'DOWNSTREAM_FAILED', reason: String(error) } }));
      }
    });
  });
  return { server, url, router, group, processed, admitted };
}

async function pay(service: Service, org: string, id: string): Promise<{ id: string; status: number; degraded: string | null; route: string | null; body: any }> {
  const response = await fetch(`${service.url}/payments`, {
    method: 'POST',
    headers: { 'x-biz-tag': `orgId:${org}|txnType:pay`, 'content-type': 'application/json' },
    body: JSON.stringify({ id }),
  });
  return { id, status: response.status, degraded: response.headers.get('x-govmap-degraded'), route: response.headers.get('x-govmap-route'), body: await response.json() };
}

describe('isolation between orgs', () => {
  const gateway = new Gateway();
  before(() => gateway.start());
  after(() => close(gateway.server));

  for (const fault of ['fail', 'slow'] as const) {
    test(`org 1001's downstream ${fault === 'fail' ? 'fails' : 'is slow'}: its breaker opens and it degrades to async; org 2002 stays live`, async () => {
      gateway.behaviour.clear();
      gateway.behaviour.set('1001', fault);
      const service = await startService(gateway);
      try {
        const results1001: Awaited<ReturnType<typeof pay>>[] = [];
        const results2002: Awaited<ReturnType<typeof pay>>[] = [];
        // Interleaved traffic over several breaker windows.
        for (let round = 0; round < 8; round++) {
          const batch = await Promise.all([
            ...Array.from({ length: 4 }, (_, i) => pay(service, '100177', `a-${round}-${i}`)),
            ...Array.from({ length: 4 }, (_, i) => pay(service, '2002', `b-${round}-${i}`)),
          ]);
          results1001.push(...batch.slice(0, 4));
          results2002.push(...batch.slice(4));
          await new Promise((r) => setTimeout(r, 60));
        }

        // Org 2002: every request answered live by its downstream, its breaker untouched.
        for (const r of results2002) {
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.equal(r.degraded, null);
          assert.equal(r.route, 'org-2002');
          assert.deepEqual(r.body, { settled: true, org: '2002' });
        }
        assert.equal(service.group.peek(routeBreakerKey(service.router.table.route('org-2002')!))?.state, 'CLOSED');

        // Org 1001: failures (502) while its breaker judged, then 202 ACCEPTED once it opened.
        assert.equal(service.group.peek(routeBreakerKey(service.router.table.route('org-1001')!))?.state, 'OPEN');
        // In the order the router saw them: the 4 parallel requests of a batch may overtake each
        // other, and the breaker may open between two of them.
        const order = new Map(service.admitted.map((id, i) => [id, i]));
        const statuses = [...results1001].sort((a, b) => order.get(a.id)! - order.get(b.id)!).map((r) => r.status);
        const firstQueued = statuses.indexOf(202);
        assert.ok(firstQueued > 0, `1001 was degraded at some point: ${statuses.join(',')}`);
        assert.ok(statuses.slice(0, firstQueued).every((s) => s === 502), 'before the breaker opened: the downstream failure reached the client');
        assert.ok(statuses.slice(firstQueued).every((s) => s === 202), 'after: queued, not sent at the failing downstream');
        const queued = results1001.filter((r) => r.status === 202);
        assert.ok(queued.every((r) => r.degraded === 'async; reason=BREAKER_OPEN' && typeof r.body.token === 'string'));

        // The open breaker keeps the failing downstream from being hammered: no call after it opened.
        const callsWhenOpen = gateway.seen.get('100177') ?? 0;
        await pay(service, '100177', 'late');
        assert.equal(gateway.seen.get('100177') ?? 0, callsWhenOpen);

        // Graceful shutdown: the queued jobs cannot be processed (breaker open) and come back, none lost.
        const { remaining } = await service.router.close({ deadlineMs: 150 });
        assert.equal(remaining.length, queued.length + 1);
        const left = new Set(remaining.map((j) => j.token));
        for (const r of queued) assert.ok(left.has(r.body.token as string), `job ${r.body.token} was returned by close()`);
        assert.ok(remaining.every((j) => j.payload.tag === 'orgId:100177|txnType:pay' && j.payload.route === 'org-1001'));
      } finally {
        service.group.dispose();
        await close(service.server);
      }
    });
  }

  test('a slow org fills only its own bulkhead; the other org is admitted at once', async () => {
    gateway.behaviour.clear();
    gateway.behaviour.set('1001', 'slow');
    // Every slow request must reach the router before the first two time out and free their
    // slots: 2.5 s (still under the slow gateway's 3 s) leaves a loaded machine room for that.
    const service = await startService(gateway, { bulkhead: { maxConcurrent: 2, maxQueued: 1 }, timeoutMs: 2_500 });
    try {
      const slow = Array.from({ length: 6 }, (_, i) => pay(service, '1001', `s-${i}`));
      await new Promise((r) => setTimeout(r, 20));
      const fast = await Promise.all(Array.from({ length: 2 }, (_, i) => pay(service, '2002', `f-${i}`)));
      for (const r of fast) assert.deepEqual([r.status, r.degraded], [200, null]);
      const slowResults = await Promise.all(slow);
      const degraded = slowResults.filter((r) => r.degraded === 'async; reason=BULKHEAD_FULL');
      assert.equal(degraded.length, 3, `2 running + 1 queued, the other 3 degraded: ${slowResults.map((r) => `${r.status}/${r.degraded}`).join(' ')}`);
      assert.equal(service.router.status().find((s) => s.id === 'org-2002')!.bulkhead.rejected, 0);
    } finally {
      await service.router.close({ deadlineMs: 50 });
      service.group.dispose();
      await close(service.server);
    }
  });

  test('a switch forces one org into degradation; when it is lifted, the queued jobs are processed under their own tag', async () => {
    gateway.behaviour.clear();
    const service = await startService(gateway);
    try {
      // Force degradation by switch (no breaker needed), queue two payments, then lift it.
      const board = new SwitchBoard({ initial: { 'routing.force-degrade': { enabled: true, allow: [{ orgIds: ['1001*'] }] } } });
      const router = new Router({
        table: service.router.table,
        switches: board,
        processAsync: async (_target, payload) => void service.processed.push(`${currentBizTag()?.orgId}:${(payload as { id: string }).id}`),
        log: () => undefined,
      });
      const tag = parseBizTag('orgId:100123|txnType:pay');
      const decision = router.decide(tag);
      const { runWithBizContext } = await import('../../src/routing/index.ts');
      const outcomes = await Promise.all(
        ['p1', 'p2'].map((id) => runWithBizContext({ tag, decision }, () => board.run(() => router.execute({ payload: { id } }, () => Promise.resolve('live')), tag.toRecord()))),
      );
      assert.deepEqual(
        outcomes.map((o) => [o.kind, o.kind === 'queued' ? o.reason : null]),
        [
          ['queued', 'FORCED_BY_SWITCH'],
          ['queued', 'FORCED_BY_SWITCH'],
        ],
      );
      const other = await runWithBizContext({ tag: parseBizTag('orgId:2002'), decision: router.decide(parseBizTag('orgId:2002')) }, () =>
        board.run(() => router.execute({}, () => Promise.resolve('live')), { orgId: '2002' }),
      );
      assert.equal(other.kind, 'live', 'the switch targets org 1001* only');
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(service.processed, [], 'still forced: jobs wait');
      board.set('routing.force-degrade', false, { actor: 'ops', reason: 'recovered' });
      const { remaining } = await router.close({ deadlineMs: 2000 });
      assert.deepEqual(remaining, []);
      assert.deepEqual(service.processed.sort(), ['100123:p1', '100123:p2']);
    } finally {
      await service.router.close({ deadlineMs: 10 });
      service.group.dispose();
      await close(service.server);
    }
  });
});
