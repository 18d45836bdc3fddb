import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BreakerClusterSync, BreakerMetrics, CircuitBreaker } from '../../src/breaker/index.ts';
import { EtcdStateStore } from '../../src/state/index.ts';
import { PrivateEtcd, etcdBinary, freePort } from '../state/private-etcd.ts';
import { TcpProxy, etcdEndpoints } from '../state/tcp-proxy.ts';

/**
 * A watch that cannot resume (etcd compacted the history it needed while the instance was cut
 * off) re-lists every key. On a private etcd (the binary test/infra/etcd.sh installed), since
 * compacting the shared one would disturb the other tests' watches.
 */
const etcd = etcdEndpoints();
const bin = etcdBinary();
const skip = 'skip' in etcd ? etcd.skip : bin === null ? 'no etcd binary found (run bash test/infra/etcd.sh install, or set GOVMAP_ETCD_BIN)' : undefined;
if (skip !== undefined && bin === null && !('skip' in etcd) && process.env.CI) throw new Error(`${skip} (CI must run the etcd re-list test)`);

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('etcd: an unchanged unreadable key is counted once, not again on every re-list; it stays in snapshots_unreadable until deleted', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'govmap-etcd-'));
  const server = new PrivateEtcd(bin!, dir, await freePort(), await freePort());
  await server.start();
  const proxy = await new TcpProxy(server.url).start();
  const watched = new EtcdStateStore({ endpoints: proxy.url, callTimeoutMs: 1_000, dialTimeoutMs: 1_000 });
  const direct = new EtcdStateStore({ endpoints: server.url });
  const sync = new BreakerClusterSync({ store: watched, instance: 'me', log: () => undefined });
  const breaker = new CircuitBreaker({ name: 'settlement' });
  const metrics = new BreakerMetrics().trackSync(sync);
  const unreadable = async (reason = 'malformed_json'): Promise<string | undefined> => new RegExp(`^govmap_breaker_snapshots_unreadable\\{member="me",reason="${reason}"\\} (\\d+)$`, 'm').exec(await metrics.render())?.[1];
  const key = '/govmap/circuit/settlement/p2';
  try {
    const bad = await direct.compareAndSet(key, '{"state":"OPEN",', null);
    assert.ok(bad.ok);
    // Another tool's value in the probe-right key, and a snapshot of an unknown state that is deleted while the instance is cut off.
    await direct.compareAndSet('/govmap/circuit-probe/settlement', 'garbage', null);
    await direct.compareAndSet('/govmap/circuit/settlement/p9', JSON.stringify({ state: 'SMOKING', failures: 0, timeouts: 0, total: 0, breachedWindows: 0, since: new Date().toISOString(), version: 1 }), null);
    await sync.start();
    sync.attachBreaker(breaker);
    await sync.flush();
    assert.deepEqual(Object.fromEntries(sync.counters.invalidSnapshots), { malformed_json: 1, unknown_state: 1, invalid_probe_holder: 1 });
    assert.equal(await unreadable('unknown_state'), '1');
    for (let round = 1; round <= 2; round++) {
      await proxy.cut();
      if (round === 2) await direct.delete('/govmap/circuit/settlement/p9');
      // While cut off, etcd moves on and compacts its history away: the watch cannot resume, it re-lists.
      const other = await direct.compareAndSet(`/govmap/circuit/settlement/p${round + 2}`, JSON.stringify({ state: 'CLOSED', failures: 0, timeouts: 0, total: 0, breachedWindows: 0, since: new Date().toISOString(), version: 1 }), null);
      assert.ok(other.ok);
      // Compacted past p<n>'s own write, the first the resumed stream would need.
      const head = await direct.compareAndSet(`/govmap-test/elsewhere-${round}`, '1', null);
      assert.ok(head.ok);
      await (await direct.client()).kv.compact({ revision: head.revision.toString(), physical: true });
      await proxy.restore();
      await until(`re-list ${round}`, () => sync.counters.resyncs >= round && sync.reports('settlement').has(`p${round + 2}`));
    }
    assert.deepEqual(Object.fromEntries(sync.counters.invalidSnapshots), { malformed_json: 1, unknown_state: 1, invalid_probe_holder: 1 }, 'one bad write each, counted once: the counter must not measure re-lists');
    assert.equal(await unreadable(), '1', 'still unreadable after the re-lists');
    assert.equal(await unreadable('invalid_probe_holder'), '1');
    assert.equal(await unreadable('unknown_state'), '0', 'deleted while cut off: missing from the re-list, so no longer unreadable');
    // A new bad write of the same key is a new event to count.
    const again = await direct.compareAndSet(key, '{"state":"', bad.revision);
    assert.ok(again.ok);
    await until('the second bad write is counted', () => sync.counters.invalidSnapshots.get('malformed_json') === 2, 5_000);
    await direct.delete(key);
    await until('the deleted key is no longer unreadable', async () => (await unreadable()) === '0', 5_000);
  } finally {
    await sync.close({ revoke: true }).catch(() => undefined);
    breaker.dispose();
    await watched.close();
    await direct.close();
    await proxy.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
