import assert from 'node:assert/strict';
import { createServer, connect as netConnect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createClient } from 'redis';
import { RemoteGovernedMap, connectRedis, int64Codec } from '../../src/stores/redis/index.ts';
import type { RedisLink } from '../../src/stores/redis/index.ts';
import { PrivateRedis, freePort } from './redis-env.ts';

/**
 * Redis Enterprise and Redis Cloud announce maintenance (a shard moving to another host) with
 * RESP3 push messages (MOVING, MIGRATING...). node-redis acts on them by itself when asked to, or
 * by default ("auto") on any RESP3 connection: it swaps the connection's socket for a new one,
 * with no disconnect or reconnect event. The server then owes the old socket's invalidations to a
 * socket that is gone, and the new one tracks nothing, so the near cache would keep a balance
 * another machine has since changed, for good. A proxy in front of a redis-server of the test's
 * own injects such a push; the map must still see the other machine's write.
 */
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const available = PrivateRedis.available();
const skip = available || ci ? false : 'redis-server is not installed (bash test/infra/redis.sh install)';

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A TCP proxy to `port` that can write extra bytes to its clients, as if the server sent them. */
class InjectingProxy {
  readonly #server: Server;
  readonly clients = new Set<Socket>();
  accepted = 0;
  port = 0;

  constructor(target: number) {
    this.#server = createServer((client) => {
      this.accepted++;
      const upstream = netConnect(target, '127.0.0.1');
      this.clients.add(client);
      client.pipe(upstream).pipe(client);
      const end = (): void => {
        this.clients.delete(client);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as { port: number }).port;
  }

  inject(frame: string): void {
    for (const client of this.clients) client.write(frame);
  }

  async close(): Promise<void> {
    for (const client of this.clients) client.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

function bulk(text: string): string {
  return `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
}

describe('a maintenance push from the server (Redis Enterprise MOVING)', { skip }, () => {
  let server: PrivateRedis;
  let proxy: InjectingProxy;
  const links: RedisLink[] = [];

  before(async () => {
    assert.ok(available, 'redis-server must be installed under CI (bash test/infra/redis.sh install)');
    server = new PrivateRedis(await freePort());
    await server.start();
    proxy = new InjectingProxy(server.port);
    await proxy.listen();
  });

  after(async () => {
    for (const link of links) await link.close().catch(() => undefined);
    await proxy?.close();
    await server?.stop();
  });

  test('does not leave the near cache holding a balance another machine changed (no socket swapped behind the link\'s back)', async () => {
    // No heartbeat: the push is injected between two commands, never inside a reply.
    const link = await connectRedis({ url: `redis://127.0.0.1:${proxy.port}`, heartbeatMs: 0 });
    links.push(link);
    const map = new RemoteGovernedMap<bigint>({
      name: 'balances', link, keyPrefix: 'maint:', codec: int64Codec, validate: (_k, v) => v >= 0n, sizeRefreshMs: 0,
    });
    const other = createClient({ url: server.url });
    await other.connect();
    try {
      await other.set('maint:acct-1', '100');
      assert.equal(await map.load('acct-1'), 100n);
      assert.equal(map.loadCached('acct-1'), 100n, 'cached, tracked by the server for this connection');

      // The server says the endpoint moves (to the same place, through the proxy) now.
      proxy.inject(`>4\r\n${bulk('MOVING')}:1\r\n:0\r\n${bulk(`127.0.0.1:${proxy.port}`)}`);
      // The first round trip's reply comes after the push on the wire, so the second command is
      // issued once the client has acted on the push: if it swaps sockets, it sends this one on
      // the new socket only (writes are paused until the swap is done).
      await map.refreshSize();
      assert.equal(await map.refreshSize(), 1);

      await other.set('maint:acct-1', '40'); // another machine debits 60
      await until(() => map.loadCached('acct-1') !== 100n, 'the other machine\'s write to reach the near cache');
      assert.equal(await map.load('acct-1'), 40n);
      await map.dispose();
    } finally {
      await other.close();
    }
  });
});
