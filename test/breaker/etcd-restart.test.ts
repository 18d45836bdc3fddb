import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { etcdEndpoints } from '../state/tcp-proxy.ts';
import { PrivateEtcd, etcdBinary, freePort } from '../state/private-etcd.ts';
import { Instance } from './fixtures/instance-client.ts';

/**
 * etcd itself stopped mid-test and started again on the same data directory: a private etcd
 * (the binary test/infra/etcd.sh installed) on free ports, so stopping it disturbs no other
 * test. Both instances keep serving while it is down, then resync when it is back.
 */
const etcd = etcdEndpoints();
const bin = etcdBinary();
const skip = 'skip' in etcd ? etcd.skip : bin === null ? 'no etcd binary found (run bash test/infra/etcd.sh install, or set GOVMAP_ETCD_BIN)' : undefined;
if (skip !== undefined && bin === null && !('skip' in etcd) && process.env.CI) throw new Error(`${skip} (CI must run the etcd restart test)`);

test('etcd stopped mid-test and restarted: both instances keep serving on local decisions, then resync', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'govmap-etcd-'));
  const server = new PrivateEtcd(bin!, dir, await freePort(), await freePort());
  const instances: Instance[] = [];
  try {
    await server.start();
    const env = { ENDPOINTS: server.url, PREFIX: '/govmap', QUORUM: '0.5', OPEN_MS: '60000' };
    const a = new Instance({ ...env, INSTANCE: 'a' });
    const b = new Instance({ ...env, INSTANCE: 'b' });
    instances.push(a, b);
    await Promise.all([a.ready, b.ready]);
    await a.until('A has published', (r) => r.writes >= 1);

    await server.stop();
    const tripped = await a.ask('trip');
    assert.equal(tripped.state, 'OPEN', 'A decides on its own outcomes while etcd is down');
    const served = await b.ask('call');
    assert.equal(served.answer, 'served');
    assert.equal(served.settledInTurn, true, `a call must not wait for etcd (it settled only after the event loop turned, ${served.ms!.toFixed(1)} ms)`);
    await a.until('A knows etcd is unreachable', (r) => !r.connected);
    assert.equal((await a.ask('call')).answer, 'fallback');

    await server.start(); // same data directory: revisions and leases carry on
    await b.until('B sees A OPEN after etcd is back and adopts it', (r) => r.state === 'OPEN', 45_000);
    await a.until('A is connected again', (r) => r.connected, 45_000);
  } finally {
    for (const i of instances) await i.kill();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
