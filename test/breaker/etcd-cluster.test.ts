import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { BreakerClusterSync, CircuitBreaker } from '../../src/breaker/index.ts';
import { EtcdStateStore } from '../../src/state/index.ts';
import { TcpProxy, etcdEndpoints } from '../state/tcp-proxy.ts';
import { Instance } from './fixtures/instance-client.ts';

/**
 * Breakers shared by real processes through a real etcd (test/infra/etcd.sh). Each instance is
 * a child process (fixtures/instance.ts) reaching etcd through its own TCP proxy, so an outage
 * can be staged for it alone while etcd itself runs on.
 */
const etcd = etcdEndpoints();
describe('breakers shared through a real etcd', { skip: 'skip' in etcd ? etcd.skip : undefined }, () => {
  const endpoints = 'endpoints' in etcd ? etcd.endpoints.split(',')[0]! : '';

  async function cluster(quorum: string, openMs: number): Promise<{ prefix: string; proxies: TcpProxy[]; spawn: (name: string, proxy: TcpProxy) => Instance; cleanup: () => Promise<void> }> {
    const prefix = `/govmap-test/cluster-${randomBytes(4).toString('hex')}`;
    const proxies = [await new TcpProxy(endpoints).start(), await new TcpProxy(endpoints).start()];
    const spawned: Instance[] = [];
    return {
      prefix,
      proxies,
      spawn: (name, proxy) => {
        const instance = new Instance({ ENDPOINTS: proxy.url, INSTANCE: name, PREFIX: prefix, QUORUM: quorum, OPEN_MS: String(openMs) });
        spawned.push(instance);
        return instance;
      },
      cleanup: async () => {
        for (const i of spawned) await i.kill();
        for (const p of proxies) await p.close();
        const store = new EtcdStateStore({ endpoints });
        const client = await store.client();
        await client.delete().prefix(prefix).exec();
        await store.close();
      },
    };
  }

  test('A trips, B adopts OPEN (quorum 0.5 of two); A crashes and restarts still OPEN for the rest of its wait', async () => {
    const c = await cluster('0.5', 60_000);
    try {
      const a = c.spawn('a', c.proxies[0]!);
      const b = c.spawn('b', c.proxies[1]!);
      await Promise.all([a.ready, b.ready]);
      const tripped = await a.ask('trip');
      assert.equal(tripped.state, 'OPEN');
      const adopted = await b.until('B adopts OPEN', (r) => r.state === 'OPEN');
      assert.equal(adopted.adoptions, 1);
      assert.equal((await b.ask('call')).answer, 'fallback', 'B no longer calls the failing dependency');

      await a.ask('flush');
      await a.kill(); // a crash: no goodbye, the lease stays until its TTL
      const again = c.spawn('a', c.proxies[0]!);
      const resumed = await again.ready;
      assert.equal(resumed.state, 'OPEN', 'the restarted process resumes OPEN');
      assert.ok(Math.abs(resumed.openUntil! - tripped.openUntil!) <= 1, 'for the rest of the same wait');
      assert.equal((await again.ask('call')).answer, 'fallback', 'no surge at the failing dependency after the restart');
    } finally {
      await c.cleanup();
    }
  });

  test('one OPEN of two is no majority: B stays CLOSED under the default quorum', async () => {
    const c = await cluster('majority', 60_000);
    try {
      const a = c.spawn('a', c.proxies[0]!);
      const b = c.spawn('b', c.proxies[1]!);
      await Promise.all([a.ready, b.ready]);
      await a.ask('trip');
      await a.ask('flush');
      await b.until('B has seen A report OPEN', (r) => r.peersOpen === 1);
      const r = await b.ask('call');
      assert.equal(r.state, 'CLOSED');
      assert.equal(r.answer, 'served');
    } finally {
      await c.cleanup();
    }
  });

  test('etcd unreachable: both keep serving on local decisions without blocking, then resync', async () => {
    const c = await cluster('0.5', 60_000);
    try {
      const a = c.spawn('a', c.proxies[0]!);
      const b = c.spawn('b', c.proxies[1]!);
      await Promise.all([a.ready, b.ready]);
      await Promise.all(c.proxies.map((p) => p.cut()));
      // A decides alone: it trips on its own evidence and answers by fallback; B serves.
      const tripped = await a.ask('trip');
      assert.equal(tripped.state, 'OPEN');
      const served = await b.ask('call');
      assert.equal(served.answer, 'served');
      assert.equal(served.settledInTurn, true, `a call must not wait for etcd (it settled only after the event loop turned, ${served.ms!.toFixed(1)} ms)`);
      await a.until('A knows the store is unreachable', (r) => !r.connected);
      assert.equal((await a.ask('call')).answer, 'fallback');
      // Malformed data written meanwhile by someone else must not hurt anyone after the resync.
      const store = new EtcdStateStore({ endpoints });
      await store.compareAndSet(`${c.prefix}/circuit/settlement/broken`, '{"state":"OPEN"', null);
      await store.close();
      await Promise.all(c.proxies.map((p) => p.restore()));
      const resynced = await b.until('B sees A OPEN after the resync and adopts it', (r) => r.state === 'OPEN', 30_000);
      assert.equal(resynced.invalid.malformed_json, 1);
      await a.until('A is connected again', (r) => r.connected);
    } finally {
      await c.cleanup();
    }
  });

  test('a peer that reported OPEN and then wrote an unreadable snapshot to etcd no longer counts in the quorum, and the log names it', async () => {
    const prefix = `/govmap-test/unreadable-${randomBytes(4).toString('hex')}`;
    const store = new EtcdStateStore({ endpoints });
    const logs: Array<{ message: string; details: Record<string, unknown> }> = [];
    const sync = new BreakerClusterSync({ store, instance: 'me', prefix, log: (message, details) => logs.push({ message, details }) });
    const breaker = new CircuitBreaker({ name: 'settlement' });
    const key = (who: string): string => `${prefix}/circuit/settlement/${who}`;
    const open = JSON.stringify({ state: 'OPEN', failures: 4, timeouts: 0, total: 4, breachedWindows: 1, since: new Date().toISOString(), version: 1 });
    const until = async (what: string, check: () => boolean): Promise<void> => {
      const deadline = Date.now() + 5_000;
      while (!check()) {
        if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    try {
      await sync.start();
      sync.attachBreaker(breaker);
      await sync.flush();
      const written = await store.compareAndSet(key('p2'), open, null);
      assert.ok(written.ok);
      await until('me has seen p2 OPEN', () => sync.reports('settlement').get('p2')?.state === 'OPEN');
      await store.compareAndSet(key('p2'), '{"state":"OPEN",', written.revision);
      await until('the damaged value is counted', () => sync.counters.invalidSnapshots.get('malformed_json') === 1);
      assert.equal(sync.reports('settlement').has('p2'), false);
      assert.ok(logs.some((l) => l.details.key === key('p2') && l.details.instance === 'p2'), JSON.stringify(logs));
      await store.compareAndSet(key('p3'), open, null);
      await until('me has seen p3 OPEN', () => sync.reports('settlement').get('p3')?.state === 'OPEN');
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(breaker.state, 'CLOSED', '1 of 2 readable instances OPEN is no majority');
    } finally {
      await sync.close({ revoke: true });
      breaker.dispose();
      await (await store.client()).delete().prefix(prefix).exec();
      await store.close();
    }
  });

  test('a lease etcd ended behind the instance\'s back (revoked by an operator): its snapshot is back under a new lease at once, and the store is never called unreachable', async () => {
    const prefix = `/govmap-test/lease-ended-${randomBytes(4).toString('hex')}`;
    const store = new EtcdStateStore({ endpoints });
    const logs: string[] = [];
    const sync = new BreakerClusterSync({ store, instance: 'a', prefix, leaseTtlSeconds: 60, log: (message) => logs.push(message) });
    try {
      await sync.start();
      sync.attachBreaker(new CircuitBreaker({ name: 'settlement' }));
      await sync.flush();
      const client = await store.client();
      const key = sync.keyOf('settlement');
      const before = (await client.get(key).exec()).kvs[0]!;
      // etcd deletes the key with the lease; the instance's keep-alive is 20 s away.
      await client.leaseClient.leaseRevoke({ ID: before.lease });
      const deadline = Date.now() + 5_000;
      let after = (await client.get(key).exec()).kvs[0];
      while ((after === undefined || after.lease === before.lease) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        after = (await client.get(key).exec()).kvs[0];
      }
      assert.ok(after !== undefined && after.lease !== before.lease, 'the snapshot is written again under a new lease within 5 s');
      assert.equal(sync.counters.leaseLosses, 1);
      assert.deepEqual(logs.filter((m) => /unreachable/.test(m)), [], 'etcd answered all along: no instance should fall back to local decisions');
      assert.equal(sync.connected, true);
    } finally {
      await sync.close({ revoke: true });
      await (await store.client()).delete().prefix(prefix).exec();
      await store.close();
    }
  });
});
