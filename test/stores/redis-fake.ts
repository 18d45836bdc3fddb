import type fc from 'fast-check';
import type { LinkListener, LuaScript, RedisLink } from '../../src/stores/redis/index.ts';
import { BOUNDED_ADD, CAS_DELETE, CAS_SET, Status } from '../../src/stores/redis/index.ts';

/**
 * A model of one Redis server and its RESP3 connections, for exploring interleavings with
 * fast-check's scheduler. It exists BESIDE the real-Redis tests (which prove the Lua and the
 * wire), to prove the map's own logic (compare-and-set loop, near-cache admission rule) under
 * orders of events a real server produces only rarely.
 *
 * What it models, as Redis 7 does it:
 * - Commands of one connection execute in the order sent, each atomically, at a moment the
 *   scheduler picks (so commands of different connections interleave freely).
 * - A read (GET, or GET inside a script) makes the server track the key for that connection;
 *   the next write of the key queues one invalidation push to each tracking connection and
 *   forgets them (tracking is one-shot). The writer's own push follows its reply.
 * - Replies and pushes of one connection are delivered in the order the server queued them, in
 *   chunks of 1-3 messages: within a chunk a push runs its listener synchronously while a reply
 *   only settles its promise (its continuation runs later), as in node-redis.
 */
export class FakeRedisServer {
  readonly data = new Map<string, string>();
  /** Every value any key ever held, in order (to check bounds were never crossed). */
  readonly history: Array<[string, string]> = [];
  readonly #tracking = new Map<string, Set<FakeConnection>>();

  track(connection: FakeConnection, key: string): void {
    let set = this.#tracking.get(key);
    if (set === undefined) this.#tracking.set(key, (set = new Set()));
    set.add(connection);
  }

  /**
   * Writes (or deletes, value null) and queues the invalidations of the other trackers.
   * @returns the key if `writer` itself tracked it: its push is queued after its reply.
   */
  write(key: string, value: string | null, writer: FakeConnection | null): string | null {
    if (value === null) this.data.delete(key);
    else {
      this.data.set(key, value);
      this.history.push([key, value]);
    }
    const trackers = [...(this.#tracking.get(key) ?? [])];
    this.#tracking.delete(key);
    let selfPush: string | null = null;
    for (const connection of trackers) {
      if (connection === writer) selfPush = key;
      else connection.push(key);
    }
    return selfPush;
  }
}

type Message = { kind: 'reply'; settle: () => void } | { kind: 'push'; key: string };

export class FakeConnection implements RedisLink {
  readonly kind = 'fake-redis';
  readonly healthy = true;
  readonly #server: FakeRedisServer;
  readonly #scheduler: fc.Scheduler;
  readonly #chunkSizes: readonly number[];
  #chunk = 0;
  readonly #listeners = new Set<LinkListener>();
  readonly #requests: Array<() => void> = [];
  readonly #outbox: Message[] = [];

  constructor(server: FakeRedisServer, scheduler: fc.Scheduler, chunkSizes: readonly number[]) {
    this.#server = server;
    this.#scheduler = scheduler;
    this.#chunkSizes = chunkSizes.length > 0 ? chunkSizes : [1];
  }

  listen(listener: LinkListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {}

  get(key: string): Promise<string | null> {
    return this.#send(() => {
      this.#server.track(this, key);
      return { reply: this.#server.data.get(key) ?? null, selfPush: null };
    });
  }

  runScript(script: LuaScript, key: string, args: readonly string[]): Promise<unknown> {
    return this.#send<unknown[]>(() => {
      const server = this.#server;
      const current = server.data.get(key) ?? null;
      server.track(this, key); // Redis 7 tracks keys read inside scripts too
      if (script === CAS_SET) {
        if (args[0] === 'absent' ? current !== null : current !== args[1]) return { reply: current === null ? [Status.ABSENT] : [Status.CHANGED, current], selfPush: null };
        return { reply: [Status.APPLIED], selfPush: server.write(key, args[2]!, this) };
      }
      if (script === CAS_DELETE) {
        if (current === null) return { reply: [Status.ABSENT], selfPush: null };
        if (current !== args[0]) return { reply: [Status.CHANGED, current], selfPush: null };
        return { reply: [Status.APPLIED], selfPush: server.write(key, null, this) };
      }
      if (script === BOUNDED_ADD) {
        if (current === null) return { reply: [Status.ABSENT], selfPush: null };
        const value = BigInt(current);
        if (value < BigInt(args[0]!)) return { reply: [Status.BELOW_MIN, current], selfPush: null };
        if (value > BigInt(args[1]!)) return { reply: [Status.ABOVE_MAX, current], selfPush: null };
        return { reply: [Status.APPLIED, current], selfPush: server.write(key, (value + BigInt(args[2]!)).toString(), this) };
      }
      throw new Error(`fake redis: unknown script ${script.name}`);
    });
  }

  async *scan(match: string): AsyncIterable<readonly string[]> {
    const prefix = match.replace(/\*$/, '').replace(/\\(.)/g, '$1');
    yield [...this.#server.data.keys()].filter((key) => key.startsWith(prefix));
  }

  /** Queues an invalidation push for delivery in order. */
  push(key: string): void {
    this.#outbox.push({ kind: 'push', key });
    this.#scheduleDelivery();
  }

  #send<T>(execute: () => { reply: T; selfPush: string | null }): Promise<T> {
    return new Promise<T>((resolve) => {
      this.#requests.push(() => {
        const { reply, selfPush } = execute();
        this.#outbox.push({ kind: 'reply', settle: () => resolve(reply) });
        this.#scheduleDelivery();
        if (selfPush !== null) this.push(selfPush);
      });
      // The moment the server runs it is the scheduler's choice; per connection, in send order.
      void this.#scheduler.schedule(Promise.resolve(), 'redis executes').then(() => this.#requests.shift()!());
    });
  }

  #scheduleDelivery(): void {
    void this.#scheduler.schedule(Promise.resolve(), 'redis delivers').then(() => {
      const size = this.#chunkSizes[this.#chunk++ % this.#chunkSizes.length]!;
      for (let i = 0; i < size && this.#outbox.length > 0; i++) {
        const message = this.#outbox.shift()!;
        if (message.kind === 'reply') message.settle();
        else for (const listener of this.#listeners) listener.invalidated(message.key);
      }
    });
  }
}
