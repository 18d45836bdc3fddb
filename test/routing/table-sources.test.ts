import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigurationError } from '../../src/map/errors.ts';
import { EtcdStateStore, MemoryStateStore } from '../../src/state/index.ts';
import type { StateEntry, StateStore, StateWatchHandlers } from '../../src/state/index.ts';
import { FileRouteTableSource, Router, RoutingMetrics, StateRouteTableSource } from '../../src/routing/index.ts';

async function eventually(what: string, predicate: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Writes like a config tool does: a temporary file renamed over the old one. Written in place,
 * the directory watch can read the file truncated or half written: a failure of its own, counted.
 */
async function replaceFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${randomUUID()}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
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

  test('a file that cannot be read or parsed fails with the route table code and wording, not the switch ones', async () => {
    const router = new Router({ table: initial, log: () => undefined });
    const missing = join(dir, 'absent-routes.yaml');
    await assert.rejects(new FileRouteTableSource({ path: missing, router, pollMs: 0 }).start(), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'GOVMAP_ROUTE_TABLE_SOURCE_FAILED');
      assert.match(error.message, /^route table file .*absent-routes\.yaml: cannot open/);
      assert.doesNotMatch(error.message, /switch/);
      return true;
    });
    const broken = join(dir, 'broken-routes.json');
    await writeFile(broken, '{"default": {"target": "core"}, "routes": [');
    await assert.rejects(new FileRouteTableSource({ path: broken, router, pollMs: 0 }).start(), { code: 'GOVMAP_ROUTE_TABLE_SOURCE_FAILED', message: /^route table file .*: not valid JSON/ });

    // After a good start, a broken edit is recorded under the route table code too.
    const path = join(dir, 'later-broken.json');
    await writeFile(path, JSON.stringify(withRule('gw-a')));
    const source = new FileRouteTableSource({ path, router, debounceMs: 10, pollMs: 0, log: () => undefined });
    await source.start();
    try {
      await writeFile(path, '{"default": ');
      await source.reload();
      assert.equal(source.status().lastError?.code, 'GOVMAP_ROUTE_TABLE_SOURCE_FAILED');
      assert.equal(router.table.decide('1001', 'pay').route.target, 'gw-a');
    } finally {
      source.close();
    }
  });

  test('an empty file says so; a .json file with a UTF-8 byte order mark is read', async () => {
    const router = new Router({ table: initial, log: () => undefined });
    for (const [name, text] of [['empty.yaml', ''], ['blank.json', ' \n\t\n']] as const) {
      const path = join(dir, name);
      await writeFile(path, text);
      await assert.rejects(new FileRouteTableSource({ path, router, pollMs: 0 }).start(), { code: 'GOVMAP_ROUTE_TABLE_SOURCE_FAILED', message: /the file is empty/ }, name);
    }
    const path = join(dir, 'bom-routes.json');
    await writeFile(path, `\uFEFF${JSON.stringify(withRule('gw-bom'))}`);
    const source = new FileRouteTableSource({ path, router, pollMs: 0 });
    await source.start();
    source.close();
    assert.equal(router.table.decide('1001', 'pay').route.target, 'gw-bom');
  });

  test('a failed reload is exported: govmap_route_table_source_errors_total and govmap_route_table_source_healthy', async () => {
    const path = join(dir, 'measured.yaml');
    await writeFile(path, 'default: { target: core }\nroutes: []\n');
    const router = new Router({ table: initial, log: () => undefined });
    const source = new FileRouteTableSource({ path, router, debounceMs: 10, pollMs: 0, log: () => undefined });
    const metrics = new RoutingMetrics().track(router, [source]);
    await source.start();
    try {
      let text = await metrics.registry.metrics();
      assert.match(text, /govmap_route_table_source_errors_total\{source="file"\} 0/);
      assert.match(text, /govmap_route_table_source_healthy\{source="file"\} 1/);
      await replaceFile(path, 'default: { target: core }\nroutes: nope\n');
      await source.reload();
      text = await metrics.registry.metrics();
      assert.match(text, /govmap_route_table_source_errors_total\{source="file"\} 1/);
      assert.match(text, /govmap_route_table_source_healthy\{source="file"\} 0/);
      await replaceFile(path, 'default: { target: core2 }\nroutes: []\n');
      await source.reload();
      assert.match(await metrics.registry.metrics(), /govmap_route_table_source_healthy\{source="file"\} 1/);
    } finally {
      source.close();
    }
  });

  test('a file that cannot be read is reported once, not at every check', async () => {
    const path = join(dir, 'vanishing.yaml');
    await writeFile(path, 'default: { target: core }\nroutes: []\n');
    const logged: string[] = [];
    const router = new Router({ table: initial, log: () => undefined });
    const source = new FileRouteTableSource({ path, router, debounceMs: 10, pollMs: 0, log: (m) => logged.push(m) });
    await source.start();
    try {
      await rm(path);
      for (let i = 0; i < 5; i++) await source.reload();
      assert.equal(source.status().errors, 1);
      assert.equal(logged.length, 1);
      assert.equal(source.status().healthy, false);
    } finally {
      source.close();
    }
  });

  test('pollMs beyond a timer\'s limit is refused, naming the option and the rule', () => {
    const router = new Router({ table: initial, log: () => undefined });
    assert.throws(
      () => new FileRouteTableSource({ path: join(dir, 'x.yaml'), router, pollMs: 3e9 }),
      (error: unknown) => error instanceof ConfigurationError && /"pollMs"/.test(error.message) && /at most 2147483647/.test(error.message),
    );
    assert.throws(() => new StateRouteTableSource({ store: new MemoryStateStore(), router, startTimeoutMs: 3e9 }), /"startTimeoutMs".*at most 2147483647/);
  });
});

/**
 * A store whose watch the test drives by hand: deliveries a real store only makes in rare
 * interleavings (an old value after a newer one) on demand.
 */
class ScriptedStore {
  readonly kind = 'scripted';
  handlers: StateWatchHandlers | null = null;
  watch(_prefix: string, handlers: StateWatchHandlers): { close(): Promise<void> } {
    this.handlers = handlers;
    queueMicrotask(() => handlers.onReset([]));
    return { close: async () => undefined };
  }
}

const envelope = (key: string, target: string, version: number, revision: bigint): StateEntry => ({
  key,
  value: JSON.stringify({ value: withRule(target), version, updatedAt: new Date().toISOString(), reason: 'test' }),
  revision,
});

describe('state route table source ordering', () => {
  test('a value older (by store revision) than the one applied is skipped, logged and counted', async () => {
    const store = new ScriptedStore();
    const key = '/govmap/routes/default';
    const router = new Router({ table: initial, log: () => undefined });
    const logged: string[] = [];
    const source = new StateRouteTableSource({ store: store as unknown as StateStore, router, key, log: (m) => logged.push(m) });
    await source.start();
    store.handlers!.onEvent({ type: 'put', entry: envelope(key, 'gw-new', 7, 20n) });
    assert.equal(router.table.decide('1001', 'pay').route.target, 'gw-new');
    store.handlers!.onEvent({ type: 'put', entry: envelope(key, 'gw-old', 9, 10n) });
    assert.equal(router.table.decide('1001', 'pay').route.target, 'gw-new', 'never rolled back to an older value');
    assert.equal(source.status().errors, 1);
    assert.match(logged.join('\n'), /stale value .*store revision 10.*older than store revision 20/);
    // The same revision again (a re-list after a reconnection) is not news.
    store.handlers!.onReset([envelope(key, 'gw-new', 7, 20n)]);
    assert.equal(source.status().errors, 1);
    assert.equal(source.status().version, 7);
  });

  test('a start that timed out leaves nothing running: a store answering late does not change the routes', async () => {
    const key = '/govmap/routes/default';
    let handlers: StateWatchHandlers | null = null;
    let closed = false;
    // Answers nothing until the test says so, like an etcd that is still connecting.
    const late = {
      kind: 'scripted',
      watch(_prefix: string, h: StateWatchHandlers) {
        handlers = h;
        return { close: async () => void (closed = true) };
      },
    };
    const router = new Router({ table: initial, log: () => undefined });
    const logged: string[] = [];
    const source = new StateRouteTableSource({ store: late as unknown as StateStore, router, key, startTimeoutMs: 20, log: (m) => logged.push(m) });
    await assert.rejects(source.start(), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'GOVMAP_ROUTE_TABLE_SOURCE_FAILED');
      assert.match(error.message, /^route table key \/govmap\/routes\/default \(scripted\): no answer from the store within 20 ms; the watch is closed/);
      return true;
    });
    assert.equal(closed, true, 'the watch was closed when start() failed');
    // The store answers after all: the service went on without this source, its routes stay.
    handlers!.onReset([envelope(key, 'gw-late', 3, 30n)]);
    handlers!.onEvent({ type: 'put', entry: envelope(key, 'gw-later', 4, 40n) });
    handlers!.onStatus?.('disconnected', new Error('gone'));
    assert.equal(router.table.decide('1001', 'pay').route.target, 'core');
    assert.equal(router.table.version, 1);
    assert.deepEqual([source.status().version, source.status().connected, source.status().errors], [null, false, 0]);
    assert.deepEqual(logged, []);
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
        await assert.rejects(b.put(withRule('gw-x'), { actor: 'ops', reason: 'stale', expectedVersion: 0 }), { code: 'GOVMAP_ROUTE_TABLE_VERSION_CONFLICT', message: /expected version 0 but found 1; nothing was written/ });

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

    test('two unconditional writes at once both land, one after the other; a conditional one that lost says which version it found', async () => {
      const store = open()!;
      const key = `/govmap-test/${randomUUID()}/routes/default`;
      const a = new StateRouteTableSource({ store, router: new Router({ table: initial, log: () => undefined }), key, log: () => undefined });
      const b = new StateRouteTableSource({ store, router: new Router({ table: initial, log: () => undefined }), key, log: () => undefined });
      try {
        const versions = await Promise.all([a.put(withRule('gw-a'), { actor: 'ops-a', reason: 'a' }), b.put(withRule('gw-b'), { actor: 'ops-b', reason: 'b' })]);
        assert.deepEqual([...versions].sort(), [1, 2], 'the loser of the compare-and-set re-read and wrote the next version');
        const results = await Promise.allSettled([a.put(withRule('gw-c'), { actor: 'ops-a', reason: 'c', expectedVersion: 2 }), b.put(withRule('gw-d'), { actor: 'ops-b', reason: 'd', expectedVersion: 2 })]);
        const lost = results.filter((r) => r.status === 'rejected');
        assert.equal(lost.length, 1, 'exactly one conditional write wins');
        const error = (lost[0] as PromiseRejectedResult).reason as { code: string; details: { expected: number; actual: number } };
        assert.equal(error.code, 'GOVMAP_ROUTE_TABLE_VERSION_CONFLICT');
        assert.deepEqual([error.details.expected, error.details.actual], [2, 3]);
      } finally {
        await a.close();
        await b.close();
        await store.close();
      }
    });

    test('a key deleted and written again is followed: its versions restart, the store revision orders them', async () => {
      const store = open()!;
      const key = `/govmap-test/${randomUUID()}/routes/default`;
      const router = new Router({ table: initial, log: () => undefined });
      const source = new StateRouteTableSource({ store, router, key, log: () => undefined });
      const metrics = new RoutingMetrics().track(router, [source]);
      try {
        await source.start();
        await source.put(withRule('gw-a'), { actor: 'ops', reason: 'a' });
        assert.equal(await source.put(withRule('gw-b'), { actor: 'ops', reason: 'b' }), 2);
        await eventually('gw-b', () => router.table.decide('1001', 'pay').route.target === 'gw-b');
        assert.equal(await store.delete(key), true);
        assert.equal(await source.put(withRule('gw-c'), { actor: 'ops', reason: 'c' }), 1, 'the key starts over at version 1');
        await eventually('gw-c after the re-creation', () => router.table.decide('1001', 'pay').route.target === 'gw-c');
        assert.equal(await source.put(withRule('gw-d'), { actor: 'ops', reason: 'd' }), 2);
        await eventually('gw-d', () => router.table.decide('1001', 'pay').route.target === 'gw-d');
        assert.deepEqual([source.status().version, source.status().errors, source.status().healthy], [2, 0, true]);
        const text = await metrics.registry.metrics();
        assert.match(text, new RegExp(`govmap_route_table_source_errors_total\\{source="${store.kind}"\\} 0`));
        assert.match(text, new RegExp(`govmap_route_table_source_healthy\\{source="${store.kind}"\\} 1`));
      } finally {
        await source.close();
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

test('put() with a reason or actor every process would reject (too long, missing) is refused before anything is written, not reported as a new version no router applies', async () => {
  const store = new MemoryStateStore();
  const key = '/govmap-test/put-request/routes/default';
  const router = new Router({ table: initial, log: () => undefined });
  const source = new StateRouteTableSource({ store, router, key, log: () => undefined });
  try {
    await source.start();
    const refused = (option: string) => (error: unknown) => error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && error.message.includes(`"${option}"`);
    await assert.rejects(source.put(withRule('gw-a'), { actor: 'ops', reason: 'r'.repeat(1001) }), refused('reason'));
    await assert.rejects(source.put(withRule('gw-a'), { actor: 'o'.repeat(201), reason: 'onboard 1001' }), refused('actor'));
    await assert.rejects(source.put(withRule('gw-a'), { actor: 'ops' } as unknown as { actor: string; reason: string }), refused('reason'));
    assert.equal(await store.get(key), undefined, 'nothing was written');
    assert.equal(await source.put(withRule('gw-a'), { actor: 'ops', reason: 'r'.repeat(1000) }), 1);
    await eventually('the router to route on it', () => router.table.decide('1001', 'pay').route.target === 'gw-a');
    assert.equal(source.status().errors, 0);
  } finally {
    await source.close();
    await store.close();
  }
});
