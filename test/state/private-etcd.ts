import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

/**
 * A private etcd (the binary test/infra/etcd.sh installed) on free loopback ports, for tests
 * that stop etcd or compact its history: doing that to the shared etcd would disturb the other
 * tests using it.
 */
export function etcdBinary(): string | null {
  const candidates = [process.env.GOVMAP_ETCD_BIN, ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'etcd'))];
  const cache = join(process.env.GOVMAP_INFRA_CACHE ?? join(homedir(), '.cache', 'govmap-infra'));
  if (existsSync(cache)) for (const dir of readdirSync(cache)) if (dir.startsWith('etcd-')) candidates.push(join(cache, dir, 'etcd'));
  return candidates.find((c): c is string => c !== undefined && c !== '' && existsSync(c)) ?? null;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export class PrivateEtcd {
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

