import type { Etcd3, IKeyValue, IOptions, Lease, Watcher } from 'etcd3';
import { ConfigurationError } from '../map/errors.ts';
import { StateLeaseLostError, StateStoreClosedError, StateStoreUnavailableError, assertDeleteRevision, assertLeaseTtl, assertStateKey, assertWrite } from './errors.ts';
import { guardHandlers } from './guarded-handlers.ts';
import type { CasResult, CompareAndSetOptions, StateEntry, StateLease, StateStore, StateWatch, StateWatchHandlers } from './store.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

export interface EtcdStateStoreOptions {
  /** etcd client URLs, e.g. `['http://127.0.0.1:2379']` (a `host:port` gets `http://`). Required. */
  readonly endpoints: readonly string[] | string;
  /**
   * Deadline of each unary call (get, txn, lease grant), milliseconds. Default 2,000. Nothing on
   * a caller's path awaits the store, so this bounds how long a background write waits, not a call.
   */
  readonly callTimeoutMs?: number;
  /** How long to wait for a connection before a call fails, milliseconds. Default 2,000. */
  readonly dialTimeoutMs?: number;
  /** Passed to the etcd3 client as is (credentials, auth, fault handling); endpoints above win. */
  readonly client?: Omit<IOptions, 'hosts'>;
}

/** Every key of EtcdStateStoreOptions (the compiler checks the two stay the same): any other is refused. */
const ETCD_STORE_OPTIONS = optionKeys<EtcdStateStoreOptions>({
  endpoints: true, callTimeoutMs: true, dialTimeoutMs: true, client: true,
});

/**
 * The state store on a real etcd (v3 API, through the `etcd3` client, loaded on first use so
 * that a process that never configures etcd never loads gRPC).
 *
 * - compare-and-set is one transaction: `mod_revision(key) == expected` (or `create_revision
 *   == 0` for "absent") then put, else get; the new revision is the transaction's header
 *   revision, which is the key's mod_revision.
 * - a lease is an etcd lease with automatic keep-alive (every third of its TTL); etcd3 reports
 *   it lost when etcd says it expired or the client has been cut off for twice its TTL.
 * - a watch lists the prefix, then watches from the list's revision + 1, so no change falls
 *   between the two; the client resumes a broken stream from the last revision it saw. When it
 *   cannot (etcd compacted that revision away, the watch is cancelled) the watch lists again and
 *   delivers `onReset`: the consumer gets the full current content instead of a silent gap.
 */
export class EtcdStateStore implements StateStore {
  readonly kind = 'etcd';
  readonly endpoints: readonly string[];
  readonly #options: EtcdStateStoreOptions;
  #client: Promise<Etcd3> | null = null;
  readonly #leases = new Set<EtcdLease>();
  readonly #watches = new Set<EtcdWatch>();
  #closed = false;

  constructor(options: EtcdStateStoreOptions) {
    refuseUnknownOptions(options, ETCD_STORE_OPTIONS, 'EtcdStateStore');
    const raw = typeof options?.endpoints === 'string' ? options.endpoints.split(',') : options?.endpoints;
    if (!Array.isArray(raw) || raw.length === 0) throw new ConfigurationError('endpoints', 'name at least one etcd endpoint, e.g. http://127.0.0.1:2379', options?.endpoints);
    this.endpoints = raw.map((e: string) => normaliseEndpoint(e));
    for (const option of ['callTimeoutMs', 'dialTimeoutMs'] as const) {
      const value = options[option];
      if (value !== undefined && (!Number.isInteger(value) || value < 10 || value > 600_000)) {
        throw new ConfigurationError(option, 'a whole number of milliseconds from 10 to 600000', value);
      }
    }
    this.#options = options;
  }

  /** The underlying etcd3 client (created on first use). For tests and operators' tooling. */
  client(): Promise<Etcd3> {
    if (this.#closed) return Promise.reject(new StateStoreClosedError(this.kind, 'client'));
    this.#client ??= (async () => {
      const { Etcd3 } = await import('etcd3');
      const callTimeout = this.#options.callTimeoutMs ?? 2_000;
      return new Etcd3({
        ...this.#options.client,
        hosts: [...this.endpoints],
        dialTimeout: this.#options.dialTimeoutMs ?? 2_000,
        defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeout }),
      });
    })();
    return this.#client;
  }

  async get(key: string): Promise<StateEntry | undefined> {
    this.#open('get');
    assertStateKey(key);
    const client = await this.client();
    const response = await this.#call(`get ${key}`, () => client.get(key).exec());
    const kv = response.kvs[0];
    return kv === undefined ? undefined : toEntry(kv);
  }

  async list(prefix: string): Promise<StateEntry[]> {
    return (await this.#list(prefix)).entries;
  }

  async compareAndSet(key: string, value: string, expected: bigint | null, options: CompareAndSetOptions = {}): Promise<CasResult> {
    this.#open('compareAndSet');
    assertStateKey(key);
    assertWrite(value, expected);
    const lease = options.lease;
    if (lease !== undefined && (lease.lost || !(lease instanceof EtcdLease))) throw new StateLeaseLostError(this.kind, lease.id);
    const client = await this.client();
    const put = client.put(key).value(value);
    if (lease !== undefined) put.lease(lease.id);
    const txn = expected === null ? client.if(key, 'Create', '==', 0) : client.if(key, 'Mod', '==', expected.toString());
    const response = await this.#call(`compareAndSet ${key}`, () => txn.then(put).else(client.get(key)).commit()).catch(async (error: unknown) => {
      // etcd ended the lease (expired while this process was paused, revoked by someone else)
      // before our keep-alive, up to a third of its TTL away, noticed: the store answered, so
      // it is not "unavailable", and the holder must hear now that it needs a new lease.
      if (lease instanceof EtcdLease && error instanceof StateStoreUnavailableError && error.cause instanceof (await import('etcd3')).EtcdLeaseInvalidError) {
        lease.ended();
        throw new StateLeaseLostError(this.kind, lease.id);
      }
      throw error;
    });
    if (response.succeeded) return { ok: true, revision: BigInt(response.header.revision) };
    const kv = response.responses[0]?.response_range?.kvs[0];
    return { ok: false, current: kv === undefined ? undefined : toEntry(kv) };
  }

  async delete(key: string, expected?: bigint): Promise<boolean> {
    this.#open('delete');
    assertStateKey(key);
    assertDeleteRevision(expected);
    const client = await this.client();
    if (expected === undefined) {
      const response = await this.#call(`delete ${key}`, () => client.delete().key(key).exec());
      return Number(response.deleted) > 0;
    }
    const response = await this.#call(`delete ${key}`, () => client.if(key, 'Mod', '==', expected.toString()).then(client.delete().key(key)).commit());
    return response.succeeded;
  }

  async grantLease(ttlSeconds: number): Promise<StateLease> {
    this.#open('grantLease');
    assertLeaseTtl(ttlSeconds);
    const client = await this.client();
    const lease = client.lease(ttlSeconds, { autoKeepAlive: true });
    // etcd3 emits 'lost' on the lease; with no listener an EventEmitter would not throw for it,
    // but we listen from the start so that a loss before grant() settles is not missed.
    const wrapped = new EtcdLease(ttlSeconds, lease, (l) => this.#leases.delete(l));
    const id = await this.#call('grantLease', () => lease.grant()).catch((error: unknown) => {
      lease.release();
      throw error;
    });
    // close() ran meanwhile and released the leases it knew: this one would be kept alive by
    // nobody's choice until the client closed.
    if (this.#closed) {
      lease.release();
      throw new StateStoreClosedError(this.kind, 'grantLease');
    }
    wrapped.granted(id);
    this.#leases.add(wrapped);
    return wrapped;
  }

  watch(prefix: string, handlers: StateWatchHandlers): StateWatch {
    this.#open('watch');
    assertStateKey(prefix, 'prefix');
    const watch = new EtcdWatch(prefix, guardHandlers(this.kind, prefix, handlers), this.client(), (p) => this.#list(p), () => this.#closed, this.#options.callTimeoutMs ?? 2_000);
    this.#watches.add(watch);
    watch.start();
    return {
      close: async () => {
        this.#watches.delete(watch);
        await watch.close();
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#watches].map((w) => w.close()));
    this.#watches.clear();
    for (const lease of this.#leases) lease.release();
    this.#leases.clear();
    const client = await this.#client?.catch(() => null);
    client?.close();
  }

  async #list(prefix: string): Promise<{ entries: StateEntry[]; revision: bigint }> {
    this.#open('list');
    assertStateKey(prefix, 'prefix');
    const client = await this.client();
    const response = await this.#call(`list ${prefix}`, () => client.getAll().prefix(prefix).sort('Key', 'Ascend').exec());
    return { entries: response.kvs.map(toEntry), revision: BigInt(response.header.revision) };
  }

  async #call<T>(operation: string, body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      throw new StateStoreUnavailableError(this.kind, operation, error);
    }
  }

  #open(operation: string): void {
    if (this.#closed) throw new StateStoreClosedError(this.kind, operation);
  }
}

/** An etcd lease kept alive by etcd3; reports its loss once. */
class EtcdLease implements StateLease {
  readonly ttlSeconds: number;
  readonly #lease: Lease;
  readonly #forget: (lease: EtcdLease) => void;
  readonly #listeners = new Set<() => void>();
  #id = '';
  #lost = false;

  constructor(ttlSeconds: number, lease: Lease, forget: (lease: EtcdLease) => void) {
    this.ttlSeconds = ttlSeconds;
    this.#lease = lease;
    this.#forget = forget;
    lease.on('lost', () => this.#markLost());
  }

  get id(): string {
    return this.#id;
  }

  get lost(): boolean {
    return this.#lost;
  }

  granted(id: string): void {
    this.#id = id;
  }

  /** etcd refused a write under this lease as unknown: it has ended. */
  ended(): void {
    this.#markLost();
  }

  onLost(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async revoke(): Promise<void> {
    this.#listeners.clear();
    this.#lost = true;
    this.#forget(this);
    try {
      await this.#lease.revoke();
    } catch (error) {
      throw new StateStoreUnavailableError('etcd', `revoke lease ${this.#id}`, error);
    }
  }

  /** Stops keep-alive without revoking: the lease then expires after its TTL. */
  release(): void {
    this.#listeners.clear();
    this.#forget(this);
    this.#lease.release();
  }

  #markLost(): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#forget(this);
    for (const listener of [...this.#listeners]) listener();
    this.#listeners.clear();
  }
}

/** Waits between attempts to re-establish a watch whose listing failed, milliseconds. */
const RELIST_BACKOFF_MS = [100, 250, 500, 1_000, 2_000];

/**
 * One watch: list, watch from the list's revision + 1; on cancellation (compaction) or an
 * unrecoverable stream error, list again and deliver onReset. Events a resumed stream repeats
 * (older than the last delivered revision, or the same key again at it) are dropped.
 */
class EtcdWatch {
  readonly #prefix: string;
  readonly #handlers: StateWatchHandlers;
  readonly #client: Promise<Etcd3>;
  readonly #list: (prefix: string) => Promise<{ entries: StateEntry[]; revision: bigint }>;
  readonly #storeClosed: () => boolean;
  readonly #cancelTimeoutMs: number;
  #watcher: Watcher | null = null;
  #revision = 0n;
  /** Keys delivered at `#revision` (see #seen). */
  readonly #keysAtRevision = new Set<string>();
  #attempt = 0;
  #closed = false;
  #connected = true;
  #retry: NodeJS.Timeout | null = null;

  constructor(prefix: string, handlers: StateWatchHandlers, client: Promise<Etcd3>, list: (prefix: string) => Promise<{ entries: StateEntry[]; revision: bigint }>, storeClosed: () => boolean, cancelTimeoutMs: number) {
    this.#cancelTimeoutMs = cancelTimeoutMs;
    this.#prefix = prefix;
    this.#handlers = handlers;
    this.#client = client;
    this.#list = list;
    this.#storeClosed = storeClosed;
  }

  start(): void {
    void this.#establish();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry !== null) clearTimeout(this.#retry);
    const watcher = this.#watcher;
    this.#watcher = null;
    if (watcher === null) return;
    // etcd3 waits for etcd to confirm the cancel. An etcd that stopped answering without
    // closing the connection (a firewall dropping packets) never does, and a service shutting
    // down would hang on close() for good; nothing is delivered after close() either way.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      watcher.cancel().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#cancelTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  async #establish(): Promise<void> {
    if (this.#dead()) return;
    let listed: { entries: StateEntry[]; revision: bigint };
    let watcher: Watcher;
    try {
      listed = await this.#list(this.#prefix);
      if (this.#dead()) return;
      const client = await this.#client;
      watcher = await client
        .watch()
        .prefix(this.#prefix)
        .startRevision((listed.revision + 1n).toString())
        .create();
    } catch (error) {
      this.#status('disconnected', error);
      const wait = RELIST_BACKOFF_MS[Math.min(this.#attempt++, RELIST_BACKOFF_MS.length - 1)]!;
      this.#retry = setTimeout(() => void this.#establish(), wait);
      this.#retry.unref();
      return;
    }
    if (this.#dead()) {
      await watcher.cancel().catch(() => undefined);
      return;
    }
    this.#attempt = 0;
    this.#watcher = watcher;
    this.#revision = listed.revision;
    this.#keysAtRevision.clear();
    this.#status('connected');
    this.#handlers.onReset(listed.entries);
    watcher.on('put', (kv) => this.#deliverPut(kv));
    watcher.on('delete', (kv) => this.#deliverDelete(kv));
    watcher.on('disconnected', (error) => this.#status('disconnected', error));
    watcher.on('connected', () => this.#status('connected'));
    watcher.on('error', (error) => {
      // The watch was cancelled by etcd (typically: its start revision was compacted away):
      // resuming is impossible, so start over from a fresh listing.
      if (this.#watcher !== watcher) return;
      this.#watcher = null;
      void watcher.cancel().catch(() => undefined);
      this.#status('disconnected', error);
      void this.#establish();
    });
  }

  #deliverPut(kv: IKeyValue): void {
    // etcd keeps streaming until it confirms the cancel a round trip after close(): what
    // arrives meanwhile is for a consumer that no longer listens.
    if (this.#dead()) return;
    const entry = toEntry(kv);
    if (this.#seen(entry.revision, entry.key)) return;
    this.#handlers.onEvent({ type: 'put', entry });
  }

  #deliverDelete(kv: IKeyValue): void {
    if (this.#dead()) return;
    const revision = BigInt(kv.mod_revision);
    const key = kv.key.toString('utf8');
    if (this.#seen(revision, key)) return;
    this.#handlers.onEvent({ type: 'delete', key, revision });
  }

  /**
   * Whether the event of `key` at `revision` was delivered already (a resumed stream repeating
   * it). One revision can change several keys: a transaction, or a lease that expires or is
   * revoked, deletes all its keys at one revision. So only an older revision, or the same key
   * again at the current one, is a repeat; dropping every event at the current revision would
   * deliver the first key of an expired lease and leave the others in the consumer's view.
   */
  #seen(revision: bigint, key: string): boolean {
    if (revision < this.#revision) return true;
    if (revision > this.#revision) {
      this.#revision = revision;
      this.#keysAtRevision.clear();
    } else if (this.#keysAtRevision.has(key)) {
      return true;
    }
    this.#keysAtRevision.add(key);
    return false;
  }

  #status(status: 'connected' | 'disconnected', error?: unknown): void {
    if (this.#dead() || this.#connected === (status === 'connected')) return;
    this.#connected = status === 'connected';
    this.#handlers.onStatus?.(status, error);
  }

  #dead(): boolean {
    return this.#closed || this.#storeClosed();
  }
}

function toEntry(kv: IKeyValue): StateEntry {
  return { key: kv.key.toString('utf8'), value: kv.value.toString('utf8'), revision: BigInt(kv.mod_revision) };
}

function normaliseEndpoint(endpoint: string): string {
  const trimmed = String(endpoint).trim();
  const match = /^(https?:\/\/)?[A-Za-z0-9.[\]:-]+:([0-9]{1,5})\/?$/.exec(trimmed);
  if (match === null) {
    throw new ConfigurationError('endpoints', 'each endpoint is host:port or http(s)://host:port', endpoint);
  }
  // Accepted, port 99999 would fail every call as "unreachable" for the life of the process.
  const port = Number(match[2]);
  if (port < 1 || port > 65_535) throw new ConfigurationError('endpoints', 'an endpoint\'s port is from 1 to 65535', endpoint);
  return trimmed.includes('://') ? trimmed.replace(/\/$/, '') : `http://${trimmed}`;
}
