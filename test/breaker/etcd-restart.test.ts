import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { test } from 'node:test';
import { etcdEndpoints } from '../state/tcp-proxy.ts';
import { Instance } from './fixtures/instance-client.ts';

/**
 * etcd itself stopped mid-test and started again on the same data directory: a private etcd
 * (the binary test/infra/etcd.sh installed) on free ports, so stopping it disturbs no other
 * test. Both instances keep serving while it is down, then resync when it is back.
 */
function etcdBinary(): string | null {
  const candidates = [process.env.GOVMAP_ETCD_BIN, ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'etcd'))];
  const cache = join(process.env.GOVMAP_INFRA_CACHE ?? join(homedir(), '.cache', 'govmap-infra'));
  if (existsSync(cache)) for (const dir of readdirSync(cache)) if (dir.startsWith('etcd-')) candidates.push(join(cache, dir, 'etcd'));
  return candidates.find((c): c is string => c !== undefined && c !== '' && existsSync(c)) ?? null;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

class PrivateEtcd {
  readonly #bin: string;
  readonly #dir: string;
  readonly #client: number;
  readonly #peer: number;
  #process: ChildProcess | null = null;

  constructor(bin: string, dir: string, client: number, peer: number) {
    this.#bin = bin;
    this.#dir = dir;
    this.#client = client;
    this.#peer = peer;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#client}`;
  }

  async start(): Promise<void> {
    const peer = `http://127.0.0.1:${this.#peer}`;
    this.#process = spawn(
      this.#bin,
      ['--name', 'private', '--data-dir', this.#dir, '--listen-client-urls', this.url, '--advertise-client-urls', this.url, '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `private=${peer}`, '--initial-cluster-state', 'new', '--logger', 'zap', '--log-outputs', 'stderr'],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      const healthy = await fetch(`${this.url}/health`).then(
        async (r) => ((await r.json()) as { health?: string }).health === 'true',
        () => false,
      );
      if (healthy) return;
      if (Date.now() > deadline || this.#process.exitCode !== null) assert.fail(`private etcd did not become healthy on ${this.url}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async stop(): Promise<void> {
    const child = this.#process;
    this.#process = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }
}

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
    assert.ok(served.ms! < 50, `a call must not wait for etcd (took ${served.ms!.toFixed(1)} ms)`);
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
