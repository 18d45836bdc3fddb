/* eslint-disable @typescript-eslint/require-await -- async so that every failure, bad key included, is a rejection */
import { StateLeaseLostError, StateStoreClosedError, assertDeleteRevision, assertLeaseTtl, assertStateKey, assertWrite } from './errors.ts';
import { guardHandlers } from './guarded-handlers.ts';
import type { CasResult, CompareAndSetOptions, StateEntry, StateEvent, StateLease, StateStore, StateWatch, StateWatchHandlers } from './store.ts';

interface Held {
  readonly value: string;
  readonly revision: bigint;
  readonly leaseId: string | null;
}

type Delivery = { readonly kind: 'event'; readonly event: StateEvent } | { readonly kind: 'reset'; readonly entries: StateEntry[] };

interface MemoryWatcher {
  readonly prefix: string;
  readonly handlers: StateWatchHandlers;
  readonly queue: Delivery[];
  scheduled: boolean;
  closed: boolean;
}

/**
 * The default state store: a sorted-on-read Map in this process. Revisions come from one
 * store-wide counter, as in etcd, so every write of any key gets a revision larger than all
 * before it. Watchers get their deliveries in write order, each in a later microtask than the
 * write (never re-entrantly inside the writer's call), the first being `onReset`.
 *
 * Leases here do not expire while held (the store lives and dies with its holder): a lease ends
 * when revoked, `ttlSeconds` after its holder `release()`s it, or by `expire()`, which ends one
 * as if its holder had vanished (how tests and embedders simulate a lost holder). Several
 * breakers or "instances" sharing one MemoryStateStore see each other exactly as processes
 * sharing an etcd do, minus the network.
 */
export class MemoryStateStore implements StateStore {
  readonly kind = 'memory';
  readonly #entries = new Map<string, Held>();
  readonly #leases = new Map<string, MemoryLease>();
  readonly #watchers = new Set<MemoryWatcher>();
  /** Leases their holder released, each ending at its TTL. */
  readonly #releasedLeases = new Map<string, NodeJS.Timeout>();
  #revision = 0n;
  #nextLease = 1;
  #closed = false;

  async get(key: string): Promise<StateEntry | undefined> {
    this.#open('get');
    assertStateKey(key);
    const held = this.#entries.get(key);
    return held === undefined ? undefined : { key, value: held.value, revision: held.revision };
  }

  async list(prefix: string): Promise<StateEntry[]> {
    this.#open('list');
    assertStateKey(prefix, 'prefix');
    return this.#snapshot(prefix);
  }

  async compareAndSet(key: string, value: string, expected: bigint | null, options: CompareAndSetOptions = {}): Promise<CasResult> {
    this.#open('compareAndSet');
    assertStateKey(key);
    assertWrite(value, expected);
    const lease = options.lease;
    if (lease !== undefined && (lease.lost || !this.#leases.has(lease.id))) throw new StateLeaseLostError(this.kind, lease.id);
    const held = this.#entries.get(key);
    if ((held?.revision ?? null) !== expected) {
      return { ok: false, current: held === undefined ? undefined : { key, value: held.value, revision: held.revision } };
    }
    const revision = ++this.#revision;
    this.#entries.set(key, { value, revision, leaseId: lease?.id ?? null });
    this.#publish({ type: 'put', entry: { key, value, revision } });
    return { ok: true, revision };
  }

  async delete(key: string, expected?: bigint): Promise<boolean> {
    this.#open('delete');
    assertStateKey(key);
    assertDeleteRevision(expected);
    const held = this.#entries.get(key);
    if (held === undefined || (expected !== undefined && held.revision !== expected)) return false;
    this.#remove(key);
    return true;
  }

  async grantLease(ttlSeconds: number): Promise<StateLease> {
    this.#open('grantLease');
    assertLeaseTtl(ttlSeconds);
    const lease = new MemoryLease(String(this.#nextLease++), ttlSeconds, (id) => this.expire(id), (id) => this.#expireLater(id, ttlSeconds));
    this.#leases.set(lease.id, lease);
    return lease;
  }

  /** Ends lease `id` as if its holder had vanished: its keys are deleted, its holder told. */
  expire(id: string): void {
    const lease = this.#leases.get(id);
    if (lease === undefined) return;
    this.#leases.delete(id);
    const released = this.#releasedLeases.get(id);
    if (released !== undefined) clearTimeout(released);
    this.#releasedLeases.delete(id);
    for (const [key, held] of this.#entries) if (held.leaseId === id) this.#remove(key);
    lease.markLost();
  }

  watch(prefix: string, handlers: StateWatchHandlers): StateWatch {
    this.#open('watch');
    assertStateKey(prefix, 'prefix');
    const watcher: MemoryWatcher = { prefix, handlers: guardHandlers(this.kind, prefix, handlers), queue: [{ kind: 'reset', entries: this.#snapshot(prefix) }], scheduled: false, closed: false };
    this.#watchers.add(watcher);
    this.#schedule(watcher);
    return {
      close: async () => {
        watcher.closed = true;
        this.#watchers.delete(watcher);
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const watcher of this.#watchers) watcher.closed = true;
    this.#watchers.clear();
    for (const timer of this.#releasedLeases.values()) clearTimeout(timer);
    this.#releasedLeases.clear();
  }

  /** A released lease is no longer renewed by anyone: it ends after its time to live, as in etcd. */
  #expireLater(id: string, ttlSeconds: number): void {
    if (!this.#leases.has(id) || this.#releasedLeases.has(id) || this.#closed) return;
    const timer = setTimeout(() => {
      this.#releasedLeases.delete(id);
      this.expire(id);
    }, ttlSeconds * 1000);
    timer.unref();
    this.#releasedLeases.set(id, timer);
  }

  #remove(key: string): void {
    this.#entries.delete(key);
    this.#publish({ type: 'delete', key, revision: ++this.#revision });
  }

  #snapshot(prefix: string): StateEntry[] {
    const out: StateEntry[] = [];
    for (const [key, held] of this.#entries) if (key.startsWith(prefix)) out.push({ key, value: held.value, revision: held.revision });
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  #publish(event: StateEvent): void {
    const key = event.type === 'put' ? event.entry.key : event.key;
    for (const watcher of this.#watchers) {
      if (!key.startsWith(watcher.prefix)) continue;
      watcher.queue.push({ kind: 'event', event });
      this.#schedule(watcher);
    }
  }

  #schedule(watcher: MemoryWatcher): void {
    if (watcher.scheduled) return;
    watcher.scheduled = true;
    queueMicrotask(() => {
      watcher.scheduled = false;
      // Drained one at a time so that a handler that closes the watch stops the rest.
      while (!watcher.closed && watcher.queue.length > 0) {
        const delivery = watcher.queue.shift()!;
        if (delivery.kind === 'reset') watcher.handlers.onReset(delivery.entries);
        else watcher.handlers.onEvent(delivery.event);
      }
    });
  }

  #open(operation: string): void {
    if (this.#closed) throw new StateStoreClosedError(this.kind, operation);
  }
}

/** A lease of the memory store: alive until revoked or expired through its store. */
class MemoryLease implements StateLease {
  readonly id: string;
  readonly ttlSeconds: number;
  readonly #end: (id: string) => void;
  readonly #release: (id: string) => void;
  readonly #listeners = new Set<() => void>();
  #lost = false;

  constructor(id: string, ttlSeconds: number, end: (id: string) => void, release: (id: string) => void) {
    this.id = id;
    this.ttlSeconds = ttlSeconds;
    this.#end = end;
    this.#release = release;
  }

  get lost(): boolean {
    return this.#lost;
  }

  onLost(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async revoke(): Promise<void> {
    this.#listeners.clear(); // the holder gave it up: that is not a loss to report
    this.#end(this.id);
  }

  /** Nobody renews it any more: it ends after its time to live. */
  release(): void {
    this.#listeners.clear();
    this.#release(this.id);
  }

  markLost(): void {
    if (this.#lost) return;
    this.#lost = true;
    for (const listener of [...this.#listeners]) listener();
    this.#listeners.clear();
  }
}
