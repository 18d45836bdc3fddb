import { createServer, connect } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';

/**
 * A TCP proxy in front of a real service, for outage tests: `cut()` closes every connection and
 * stops listening (clients get "connection refused", exactly as if the service were down),
 * `restore()` listens again on the same port. The service itself keeps running, so other
 * engineers' tests sharing it are not disturbed, and its state (leases expiring, revisions
 * moving on, compaction) evolves as it would during a real outage of this client.
 */
export class TcpProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;
  #stalled = false;
  #port = 0;

  constructor(target: string) {
    const url = new URL(target.includes('://') ? target : `http://${target}`);
    this.#target = { host: url.hostname, port: Number(url.port) };
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  async start(): Promise<this> {
    await this.#listen(0);
    return this;
  }

  async cut(): Promise<void> {
    this.#stalled = false;
    const server = this.#server;
    this.#server = null;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Stops forwarding without closing anything, until `cut()` or `close()`: a firewall that drops
   * packets, where no "connection refused" or reset ever tells the client.
   */
  stall(): void {
    this.#stalled = true;
    for (const socket of this.#sockets) {
      socket.unpipe();
      socket.pause();
    }
  }

  async restore(): Promise<void> {
    if (this.#server === null) await this.#listen(this.#port);
  }

  async close(): Promise<void> {
    await this.cut();
  }

  async #listen(port: number): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.#target.port, this.#target.host);
      this.#sockets.add(client).add(upstream);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      if (!this.#stalled) client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
    this.#port = (server.address() as AddressInfo).port;
  }
}

/** The etcd endpoints for real-service tests, or the reason they cannot run. Fails under CI. */
export function etcdEndpoints(): { endpoints: string } | { skip: string } {
  const endpoints = process.env.GOVMAP_ETCD_ENDPOINTS;
  if (endpoints !== undefined && endpoints !== '') return { endpoints };
  const reason = 'GOVMAP_ETCD_ENDPOINTS is not set: start etcd with `bash test/infra/etcd.sh start` and export its address';
  if (process.env.CI !== undefined && process.env.CI !== '') throw new Error(`${reason} (CI must run the real etcd tests)`);
  return { skip: reason };
}
