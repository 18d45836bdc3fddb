import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EtcdStateStore, MemoryStateStore } from '../../src/state/index.ts';
import type { StateStore } from '../../src/state/index.ts';
import { FileRouteTableSource, Router, StateRouteTableSource } from '../../src/routing/index.ts';

async function eventually(what: string, predicate: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const initial = { default: { target: 'core' }, routes: [] };
const withRule = (target: string) => ({ default: { target: 'core' }, routes: [{ id: 'org-1001', orgId: '1001*', txnType: 'pay', target }] });

describe('file route table source', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'govmap-routes-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('follows the file; an invalid table is rejected and the router keeps routing on the last good one', async () => {
    const path = join(dir, 'routes.yaml');
    await writeFile(path, 'default: { target: core }\nroutes:\n  - { id: org-1001, orgId: "1001*", txnType: pay, target: gw-a }\n');
    const logged: string[] = [];
    const router = new Router({ table: initial, log: () => undefined });
    const source = new FileRouteTableSource({ path, router, debounceMs: 10, pollMs: 0, log: (m) => logged.push(m) });
    await source.start();
    try {
      assert.equal(router.decide(null).route.target, 'core');
      assert.equal(router.table.decide('1001', 'pay').route.target, 'gw-a');
      assert.equal(router.table.version, 2);

      const tmp = `${path}.tmp`;
      await writeFile(tmp, 'default: { target: core }\nroutes:\n  - { id: a, orgId: "1001*", txnType: pay, target: gw-b }\n  - { id: b, orgId: "1001*", txnType: pay, target: gw-c }\n');
      await rename(tmp, path);
      await eventually('the rejection', () => source.status().errors === 1);
      assert.equal(router.table.decide('1001', 'pay').route.target, 'gw-a', 'still the last good table');
      assert.match(logged.join('\n'), /same orgId "1001\*" and txnType "pay"/);

      await writeFile(tmp, JSON.stringify(withRule('gw-d')));
      await rename(tmp, path);
      await eventually('the fixed table', () => router.table.decide('1001', 'pay').route.target === 'gw-d');
      assert.equal(source.status().healthy, true);
    } finally {
      source.close();
    }
  });
});

function suite(kind: string, open: () => StateStore | null, skip: string | false): void {
  describe(`state route table source (${kind})`, { skip }, () => {
    test('a table written by one process is routed on by every process; bad values are rejected', async () => {
      const store = open()!;
      const key = `/govmap-test/${randomUUID()}/routes/default`;
      const routerA = new Router({ table: initial, log: () => undefined });
      const routerB = new Router({ table: initial, log: () => undefined });
      const a = new StateRouteTableSource({ store, router: routerA, key, log: () => undefined });
      const b = new StateRouteTableSource({ store, router: routerB, key, log: () => undefined });
      try {
        await a.start();
        await b.start();
        assert.equal(await a.put(withRule('gw-a'), { actor: 'ops', reason: 'onboard 1001' }), 1);
        await eventually('process B to route 1001 to gw-a', () => routerB.table.decide('1001', 'pay').route.target === 'gw-a');
        await assert.rejects(a.put({ default: {}, routes: [] }, { actor: 'ops', reason: 'bad' }), { code: 'GOVMAP_ROUTE_TABLE_INVALID' });
        await assert.rejects(b.put(withRule('gw-x'), { actor: 'ops', reason: 'stale', expectedVersion: 0 }), { code: 'GOVMAP_SWITCH_VERSION_CONFLICT' });

        // Someone writes garbage straight into the store: rejected, last good table kept.
        const current = await store.get(key);
        await store.compareAndSet(key, JSON.stringify({ value: { routes: 'x' }, version: 2, updatedAt: new Date().toISOString(), reason: 'oops' }), current!.revision);
        await eventually('the rejection', () => b.status().errors === 1);
        assert.equal(routerB.table.decide('1001', 'pay').route.target, 'gw-a');
        assert.equal(b.status().healthy, false);
      } finally {
        await a.close();
        await b.close();
        await store.close();
      }
    });
  });
}

suite('memory', () => new MemoryStateStore(), false);
const endpoints = process.env.GOVMAP_ETCD_ENDPOINTS;
if (endpoints === undefined && process.env.CI) {
  test('etcd route table source', () => assert.fail('GOVMAP_ETCD_ENDPOINTS is not set under CI: start etcd with test/infra/etcd.sh'));
}
suite('etcd', () => (endpoints === undefined ? null : new EtcdStateStore({ endpoints })), endpoints === undefined ? 'GOVMAP_ETCD_ENDPOINTS not set (bash test/infra/etcd.sh start)' : false);
