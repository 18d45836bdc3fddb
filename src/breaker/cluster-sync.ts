import { ConfigurationError, GovMapError } from '../map/errors.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { StateKeyError, StateLeaseLostError } from '../state/errors.ts';
import type { StateEntry, StateEvent, StateLease, StateStore, StateWatch } from '../state/store.ts';
import type { BreakerGroup, BreakerLifecycle } from './breaker-group.ts';
import type { SyncHealth } from './breaker-metrics.ts';
import type { BreakerTransition, CircuitBreaker, ProbeGate } from './circuit-breaker.ts';
import { decodeSnapshot, encodeSnapshot } from './snapshot.ts';
import { BreakerSyncClosedError } from './errors.ts';
import type { BreakerSnapshot } from './snapshot.ts';

export interface BreakerClusterSyncOptions {
  /** Where snapshots live: an EtcdStateStore to share them across processes; File or Memory for one machine or tests. Required. */
  readonly store: StateStore;
  /**
   * This process's name in the cluster, stable across its restarts (a pod name of a StatefulSet,
   * `host-slot`): its snapshots are found again under it. `[A-Za-z0-9_.:-]{1,128}`. Required.
   */
  readonly instance: string;
  /** Key prefix. Default `/govmap` (keys `/govmap/circuit/<service>/<instance>`). */
  readonly prefix?: string;
  /**
   * Share of live instances (this one included) that must report a breaker OPEN for this
   * instance to adopt OPEN: `'majority'` (more than half, the default) or a fraction in (0, 1)
   * meaning "at least that share". One misbehaving instance must not open everyone's breaker.
   */
  readonly openQuorum?: number | 'majority';
  /**
   * Time to live of this instance's lease, seconds. Default 30. Its snapshots vanish this long
   * after the process stops renewing it (it died or lost etcd): a restart within the TTL finds
   * them. Keep it >= the breakers' openDurationMs, so that an OPEN breaker still waiting is
   * always found again after a crash.
   */
  readonly leaseTtlSeconds?: number;
  /** How long `start()` waits for the store before going on with local decisions, milliseconds. Default 3,000. */
  readonly startTimeoutMs?: number;
  /** Backoff between retries of failed writes: first and largest wait, milliseconds. Default 100 and 5,000. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** While another instance holds the right to probe, ask again this often, milliseconds (the release is also watched). Default 1,000. */
  readonly probeRetryMs?: number;
  /** Where warnings go (invalid snapshots, store failures). Default: console.warn. */
  readonly log?: (message: string, details: Record<string, unknown>) => void;
}

const INSTANCE = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Every key of BreakerClusterSyncOptions (the compiler checks the two stay the same): any other is refused. */
const OPTIONS = optionKeys<BreakerClusterSyncOptions>({
  store: true, instance: true, prefix: true, openQuorum: true, leaseTtlSeconds: true, startTimeoutMs: true,
  retryMinMs: true, retryMaxMs: true, probeRetryMs: true, log: true,
});
const PREFIX = /^\/[A-Za-z0-9_./-]{0,127}[^/]$|^\/$/;

interface PeerReport {
  readonly snapshot: BreakerSnapshot;
  readonly revision: bigint;
}

/** What an unreadable key held when it was counted. */
interface UnreadableKey {
  readonly reason: string;
  readonly revision: bigint;
  /** Compared too: a file the file store did not write has revision 0 whatever it holds. */
  readonly value: string;
}

interface ProbeHolder {
  readonly instance: string;
  readonly revision: bigint;
  /** When the holder took the right (its clock, epoch ms). */
  readonly since: number;
}

class SyncCounters {
  writes = 0;
  writeFailures = 0;
  conflicts = 0;
  leaseLosses = 0;
  resyncs = 0;
  adoptions = 0;
  readonly invalidSnapshots = new Map<string, number>();
}

/** A write of this instance's own snapshot kept failing compare-and-set (another process writes under the same instance name?). */
export class SnapshotConflictError extends GovMapError {
  constructor(key: string, attempts: number) {
    super('GOVMAP_BREAKER_SNAPSHOT_CONFLICT', `snapshot ${key}: compare-and-set lost ${attempts} times in a row; is another process using the same instance name?`, { key, attempts });
  }
}

/**
 * Shares breaker state across the processes of a service through a state store (etcd):
 *
 * - publishes: on every transition of a local breaker, its snapshot is written to
 *   `<prefix>/circuit/<service>/<instance>` by compare-and-set on the key's last revision, under
 *   this instance's lease. Never per call, and never on the caller's path: a transition marks
 *   the breaker dirty, a background flusher writes the latest snapshot (coalescing bursts) and
 *   retries with backoff while the store is unreachable. A lost lease is granted anew and every
 *   snapshot rewritten; a deleted own key (lease expired while cut off) is rewritten.
 * - watches `<prefix>/circuit/` and keeps the last snapshot of every instance (the view). The
 *   view outlives a disconnection: while etcd is unreachable, decisions use the last snapshots
 *   seen; the watch resumes or re-lists on reconnection, and the view is replaced.
 * - restores: a breaker created after `start()` whose own snapshot is in the view resumes it
 *   (an OPEN breaker stays OPEN for the rest of its wait).
 * - adopts: a CLOSED local breaker opens when at least `openQuorum` of the live instances
 *   (instances with a snapshot, this one included) report it OPEN. OPEN reports older than the
 *   last proof of health (probes that passed, here or anywhere) do not count.
 * - gates probing: when an OPEN breaker's wait ends, it probes only if this instance holds
 *   `<prefix>/circuit-probe/<service>` (created if absent, under the lease, released on leaving
 *   HALF_OPEN). The others stay OPEN; when the holder's probes pass they close too. If the store
 *   cannot be reached, each instance decides alone (it probes).
 * - bad data (malformed JSON, unknown state, wrong types) is ignored, logged and counted (once
 *   per bad write, not per re-list), and shown in `unreadableSnapshots` until fixed or deleted; an
 *   instance whose snapshot is unreadable has no report (it is not counted among the live).
 */
export class BreakerClusterSync implements SyncHealth, BreakerLifecycle {
  readonly store: StateStore;
  readonly instance: string;
  readonly prefix: string;
  readonly openQuorum: number | 'majority';
  readonly leaseTtlSeconds: number;
  readonly counters = new SyncCounters();

  readonly #startTimeoutMs: number;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  readonly #probeRetryMs: number;
  readonly #log: (message: string, details: Record<string, unknown>) => void;
  readonly #circuitPrefix: string;
  readonly #probePrefix: string;
  /** service -> instance -> last valid report (other instances and this one). */
  readonly #view = new Map<string, Map<string, PeerReport>>();
  readonly #probeHolders = new Map<string, ProbeHolder>();
  /** service -> epoch ms of the last proof of health: OPEN reports older than it are stale. */
  readonly #provenHealthyAt = new Map<string, number>();
  readonly #breakers = new Map<string, CircuitBreaker>();
  readonly #unsubscribe = new Map<string, () => void>();
  /** Own keys: last revision written (null: absent) and pending work. */
  readonly #ownRevision = new Map<string, bigint | null>();
  readonly #dirty = new Set<string>();
  readonly #pendingDelete = new Set<string>();
  readonly #awaitingProbe = new Set<string>();
  /** Probe rights to give back (service -> revision of our probe key), after the snapshots are written. */
  readonly #pendingRelease = new Map<string, bigint>();
  readonly #acquiring = new Set<string>();
  /**
   * Probe-right keys holding what no instance writes (service -> the key's revision), put there
   * by another tool and under no lease: they would never be released, and every instance would
   * wait for the right for good, its breaker OPEN. Taken over by compare-and-set at that revision.
   */
  readonly #invalidProbeKeys = new Map<string, bigint>();
  readonly #gate: ProbeGate;
  #watches: StateWatch[] = [];
  #lease: StateLease | null = null;
  #leasePending: Promise<StateLease> | null = null;
  #connected = false;
  #everConnected = false;
  #flushTimer: NodeJS.Timeout | null = null;
  #flushing = false;
  #backoff: number;
  #probeTimer: NodeJS.Timeout | null = null;
  #closed = false;
  #started: Promise<void> | null = null;
  #ready: { circuits: boolean; probes: boolean; resolve: (() => void) | null } = { circuits: false, probes: false, resolve: null };
  /**
   * Breakers added before the store was first read (start() not awaited, or a store slower than
   * startTimeoutMs): their own snapshot may be there, OPEN after a restart. Until the first read
   * they are not written, or the local CLOSED would overwrite it (our key takes our local state);
   * once read, one that has not moved since is restored from it. A local transition first makes
   * the local state the newer truth, and ends the wait.
   */
  readonly #unrestored = new Set<string>();
  /** Breakers whose key the store refuses (StateKeyError), already reported: they stay local. */
  readonly #refusedKeys = new Set<string>();
  /**
   * Keys under the prefix that hold what this instance cannot read, as last read. A key leaves
   * when it is read valid, deleted, or missing from a re-list. The same value read again (a
   * re-list after a watch could not resume) is the same bad write: counted and logged once, or
   * the invalid counter would measure re-lists rather than bad writes.
   */
  readonly #unreadable = new Map<string, UnreadableKey>();

  constructor(options: BreakerClusterSyncOptions) {
    // A misspelt option (`leaseTtl`, `quorum`) would leave its default in force without a word.
    refuseUnknownOptions(options, OPTIONS, 'BreakerClusterSync');
    if (typeof options.store?.compareAndSet !== 'function') throw new ConfigurationError('store', 'a StateStore (memory, file or etcd)');
    if (typeof options.instance !== 'string' || !INSTANCE.test(options.instance)) {
      throw new ConfigurationError('instance', 'an instance name is 1 to 128 letters, digits, "_", ".", ":" or "-", stable across restarts', options.instance);
    }
    const prefix = options.prefix ?? '/govmap';
    if (!PREFIX.test(prefix)) throw new ConfigurationError('prefix', 'a key prefix is "/" followed by letters, digits, "_", ".", "-" or "/", not ending in "/"', prefix);
    const quorum = options.openQuorum ?? 'majority';
    if (quorum !== 'majority' && !(typeof quorum === 'number' && quorum > 0 && quorum <= 1)) throw new ConfigurationError('openQuorum', '"majority" or a fraction above 0 and below 1', quorum);
    // The instance deciding is CLOSED and counts among the live: 1 (all of them OPEN) could never be reached.
    if (quorum === 1) throw new ConfigurationError('openQuorum', '1 could never be reached: the instance deciding is CLOSED and counts among the live ones; give a fraction below 1 ((n - 1) / n needs every other instance of n) or "majority"', quorum);
    const ttl = options.leaseTtlSeconds ?? 30;
    if (!Number.isInteger(ttl) || ttl < 2 || ttl > 86_400) throw new ConfigurationError('leaseTtlSeconds', 'a whole number of seconds from 2 to 86400', ttl);
    for (const option of ['startTimeoutMs', 'retryMinMs', 'retryMaxMs', 'probeRetryMs'] as const) {
      const value = options[option];
      if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > 600_000)) throw new ConfigurationError(option, 'a whole number of milliseconds from 1 to 600000', value);
    }
    if (options.retryMinMs !== undefined && options.retryMaxMs !== undefined && options.retryMinMs > options.retryMaxMs) {
      throw new ConfigurationError('retryMinMs', `the first wait between retries is at most the largest (retryMaxMs ${options.retryMaxMs})`, options.retryMinMs);
    }
    if (options.log !== undefined && typeof options.log !== 'function') throw new ConfigurationError('log', 'a function (message, details) => void', options.log);
    this.store = options.store;
    this.instance = options.instance;
    this.prefix = prefix === '/' ? '' : prefix;
    this.openQuorum = quorum;
    this.leaseTtlSeconds = ttl;
    this.#startTimeoutMs = options.startTimeoutMs ?? 3_000;
    this.#retryMaxMs = options.retryMaxMs ?? 5_000;
    // Only one of the two given: the default of the other yields (retryMaxMs 50 alone means 50 at most).
    this.#retryMinMs = Math.min(options.retryMinMs ?? 100, this.#retryMaxMs);
    this.#probeRetryMs = options.probeRetryMs ?? 1_000;
    this.#backoff = this.#retryMinMs;
    const log = options.log ?? ((message, details) => console.warn(`govmap breaker sync: ${message}`, details));
    // Logging runs inside watch handlers and timers: a logger that throws must not take the
    // watch (or the process, through an uncaught exception) down with it.
    this.#log = (message, details) => {
      try {
        log(message, details);
      } catch (error) {
        console.error(`govmap breaker sync: the log function threw while logging "${message}"`, error);
      }
    };
    this.#circuitPrefix = `${this.prefix}/circuit/`;
    this.#probePrefix = `${this.prefix}/circuit-probe/`;
    this.#gate = { requestProbe: (b) => this.#requestProbe(b), releaseProbe: (b) => this.#releaseProbe(b) };
  }

  get storeKind(): string {
    return this.store.kind;
  }

  /**
   * The keys under the prefix (snapshots, probe rights) this instance cannot read now, by reason:
   * each leaves its member out of the open quorum until it is fixed, rewritten valid or deleted.
   * Unlike `counters.invalidSnapshots`, this falls when they are.
   */
  get unreadableSnapshots(): ReadonlyMap<string, number> {
    const counts = new Map<string, number>();
    for (const { reason } of this.#unreadable.values()) counts.set(reason, (counts.get(reason) ?? 0) + 1);
    return counts;
  }

  /** True while the store answers; false while decisions rest on the last snapshots seen. */
  get connected(): boolean {
    return this.#connected;
  }

  /** The key of `service`'s snapshot for `instance` (default: this one). */
  keyOf(service: string, instance = this.instance): string {
    return `${this.#circuitPrefix}${service}/${instance}`;
  }

  /**
   * Starts watching and takes the lease. Resolves once the current snapshots are known (so
   * breakers created next can restore theirs), or after startTimeoutMs if the store cannot be
   * reached: the service then starts on local decisions and catches up in the background.
   */
  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new BreakerSyncClosedError(this.instance, 'start'));
    // Once: a second watch would deliver every change twice, and would take over the readiness
    // signal, leaving the first caller to wait out startTimeoutMs and warn of an unreachable store.
    this.#started ??= this.#start();
    return this.#started;
  }

  async #start(): Promise<void> {
    const ready = new Promise<void>((resolve) => (this.#ready.resolve = resolve));
    // One watch over both key families (`circuit/` and `circuit-probe/` share the prefix
    // `<prefix>/circuit`): one ordered stream, so a prober's CLOSED snapshot (written before it
    // releases the right) is always seen before the release.
    this.#watches = [
      this.store.watch(`${this.prefix}/circuit`, {
        onReset: (entries) => {
          this.#onProbeReset(entries.filter((e) => e.key.startsWith(this.#probePrefix)));
          this.#onCircuitReset(entries.filter((e) => e.key.startsWith(this.#circuitPrefix)));
        },
        onEvent: (event) => {
          const key = event.type === 'put' ? event.entry.key : event.key;
          if (key.startsWith(this.#probePrefix)) this.#onProbeEvent(event);
          else if (key.startsWith(this.#circuitPrefix)) this.#onCircuitEvent(event);
        },
        onStatus: (status, error) => this.#onStatus(status, error),
      }),
    ];
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.#startTimeoutMs)));
    const leased = this.#ensureLease().then(
      () => 'leased' as const,
      () => 'no-lease' as const,
    );
    const outcome = await Promise.race([Promise.all([ready, leased]).then(([, l]) => l), timedOut]);
    clearTimeout(timer);
    if (outcome !== 'leased') {
      this.#log(`state store "${this.store.kind}" not reachable within ${this.#startTimeoutMs} ms; breakers decide locally until it is`, { instance: this.instance });
    }
  }

  /** Shares the breakers of a keyed group (present and future). */
  attachGroup(group: BreakerGroup): this {
    if (this.#closed) throw new BreakerSyncClosedError(this.instance, 'attachGroup');
    group.attach(this, () => this.#gate);
    return this;
  }

  /** Shares one standalone breaker. */
  attachBreaker(breaker: CircuitBreaker): this {
    if (this.#closed) throw new BreakerSyncClosedError(this.instance, 'attachBreaker');
    breaker.setProbeGate(this.#gate);
    this.added(breaker);
    return this;
  }

  /** @internal BreakerLifecycle: a breaker was created. */
  added(breaker: CircuitBreaker): void {
    // Closed, the view is no longer kept up to date: restoring or adopting OPEN from it would
    // open a new breaker of a group it stays attached to on reports its peers have long replaced.
    if (this.#closed) return;
    const service = breaker.id;
    this.#breakers.get(service)?.setProbeGate(null);
    this.#breakers.set(service, breaker);
    const own = this.#view.get(service)?.get(this.instance);
    if (own !== undefined) {
      this.#ownRevision.set(service, own.revision);
      breaker.restore(own.snapshot);
    } else if (!this.#ready.circuits) {
      this.#unrestored.add(service);
    }
    this.#unsubscribe.get(service)?.();
    this.#unsubscribe.set(
      service,
      breaker.onTransition((t) => this.#onTransition(t)),
    );
    this.#pendingDelete.delete(service);
    this.#markDirty(service);
    this.#evaluate(service);
  }

  /** @internal BreakerLifecycle: a breaker was evicted. A CLOSED one's snapshot is deleted; an OPEN one's stays, to be restored if it comes back. */
  removed(breaker: CircuitBreaker): void {
    const service = breaker.id;
    if (this.#breakers.get(service) !== breaker) return;
    this.#breakers.delete(service);
    // No longer ours to coordinate: its in-flight probe settling later would release (or ask for)
    // the right under its id, which a new breaker for the same key may be probing under by then.
    breaker.setProbeGate(null);
    this.#unrestored.delete(service);
    this.#refusedKeys.delete(service);
    this.#unsubscribe.get(service)?.();
    this.#unsubscribe.delete(service);
    this.#awaitingProbe.delete(service);
    this.#dirty.delete(service);
    // Evicted while it probed (a forced eviction takes a HALF_OPEN breaker too): it will never
    // leave HALF_OPEN here, so the right is given back now, or every other instance would wait
    // for our lease to expire before probing the dependency.
    const holder = this.#probeHolders.get(service);
    if (holder?.instance === this.instance) {
      this.#probeHolders.delete(service);
      this.#pendingRelease.set(service, holder.revision);
      this.#scheduleFlush(0);
    }
    if (breaker.state === 'CLOSED') {
      this.#pendingDelete.add(service);
      this.#scheduleFlush(0);
    }
  }

  /** The snapshot of every instance for `service` (this one included) whose current value is valid, as this process knows them. */
  reports(service: string): Map<string, BreakerSnapshot> {
    return new Map([...(this.#view.get(service) ?? new Map<string, PeerReport>())].map(([instance, r]) => [instance, r.snapshot]));
  }

  /** The instance holding the right to probe `service`, if any. */
  probeHolder(service: string): string | null {
    return this.#probeHolders.get(service)?.instance ?? null;
  }

  /** Writes pending snapshots now; resolves when nothing is dirty (or the store failed). */
  async flush(): Promise<void> {
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    await this.#flush();
  }

  /**
   * Stops watching and writing. The lease is not revoked: this instance's snapshots stay for the
   * lease's TTL, so a restart within it resumes them. `revoke: true` deletes them now (a
   * permanent decommission).
   */
  async close(options: { readonly revoke?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    await this.flush().catch(() => undefined);
    this.#closed = true;
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    if (this.#probeTimer !== null) clearInterval(this.#probeTimer);
    for (const unsubscribe of this.#unsubscribe.values()) unsubscribe();
    for (const breaker of this.#breakers.values()) breaker.setProbeGate(null);
    await Promise.all(this.#watches.map((w) => w.close()));
    // No longer read: what was unreadable may be fixed any time now, and a gauge kept at its last
    // value would hold an alert for the life of the process (a sync replaced on a reload).
    this.#unreadable.clear();
    // The store may stay open for others (switches share it): its keep-alive of our lease must
    // stop here, or our last snapshots (an OPEN one counted in everyone's quorum) would live as
    // long as the process instead of for the lease's TTL.
    const lease = await this.#leasePending?.catch(() => null) ?? this.#lease;
    if (options.revoke === true) await lease?.revoke().catch(() => undefined);
    else lease?.release();
  }

  // ---- watch handlers -------------------------------------------------------------------

  #onCircuitReset(entries: readonly StateEntry[]): void {
    const previous = this.#view;
    const next = new Map<string, Map<string, PeerReport>>();
    this.#forgetUnlisted(this.#circuitPrefix, entries);
    for (const entry of entries) {
      const parsed = this.#parse(entry);
      if (parsed === null) continue;
      let reports = next.get(parsed.service);
      if (reports === undefined) next.set(parsed.service, (reports = new Map<string, PeerReport>()));
      reports.set(parsed.instance, parsed.report);
    }
    previous.clear();
    for (const [service, reports] of next) previous.set(service, reports);
    if (this.#everConnected) this.counters.resyncs++;
    this.#everConnected = true;
    this.#setConnected(true);
    for (const service of this.#unrestored) {
      const own = this.#view.get(service)?.get(this.instance);
      const breaker = this.#breakers.get(service);
      if (own === undefined || breaker === undefined) continue;
      this.#ownRevision.set(service, own.revision);
      breaker.restore(own.snapshot);
    }
    this.#unrestored.clear();
    // Own keys that vanished while we were away (lease expired) must be written again.
    for (const service of this.#breakers.keys()) {
      const own = this.#view.get(service)?.get(this.instance);
      if (own === undefined) this.#ownRevision.set(service, null);
      else if ((this.#ownRevision.get(service) ?? null) !== own.revision) this.#ownRevision.set(service, own.revision);
      if (own === undefined || own.snapshot.state !== this.#breakers.get(service)!.state) this.#markDirty(service);
      this.#evaluate(service);
    }
    this.#ready.circuits = true;
    this.#checkReady();
  }

  #onCircuitEvent(event: StateEvent): void {
    const key = event.type === 'put' ? event.entry.key : event.key;
    if (event.type === 'delete') this.#unreadable.delete(key);
    const name = this.#split(key, this.#circuitPrefix);
    if (name === null) {
      // Counted as on a re-list, so that the two agree (and a key fixed live leaves the gauge).
      if (event.type === 'put') this.#parse(event.entry);
      return;
    }
    const { service, instance } = name;
    if (event.type === 'delete') {
      this.#view.get(service)?.delete(instance);
      if (instance === this.instance && this.#breakers.has(service) && !this.#pendingDelete.has(service)) {
        // Our key vanished (lease expired while cut off, or deleted by hand): write it again.
        this.#ownRevision.set(service, null);
        this.#markDirty(service);
      }
      this.#evaluate(service);
      return;
    }
    const parsed = this.#parse(event.entry);
    if (parsed === null) {
      // Its state is unknown now: its last readable report (an OPEN vote, or a CLOSED one diluting
      // the quorum) must not keep counting for as long as the damaged value stays.
      this.#view.get(service)?.delete(instance);
      if (instance === this.instance && this.#breakers.has(service) && !this.#pendingDelete.has(service)) {
        // Our own key: the peers no longer count us either; our local state is the truth, write it over.
        this.#ownRevision.set(service, event.entry.revision);
        this.#markDirty(service);
      }
      this.#evaluate(service);
      return;
    }
    let reports = this.#view.get(service);
    if (reports === undefined) this.#view.set(service, (reports = new Map<string, PeerReport>()));
    const before = reports.get(instance);
    reports.set(instance, parsed.report);
    if (instance === this.instance) return;
    const now = parsed.report.snapshot;
    if (before !== undefined && before.snapshot.state !== 'CLOSED' && now.state === 'CLOSED') {
      // A breaker leaves OPEN/HALF_OPEN for CLOSED only through probes that passed (its own or,
      // adopted, another's; writes coalesce, so HALF_OPEN itself may never be seen): the
      // dependency is healthy as of that moment.
      this.#provenHealthy(service, Date.parse(now.since));
      if (this.#breakers.get(service)?.adoptProbeVerdict() === true) this.counters.adoptions++;
    }
    this.#evaluate(service);
  }

  #onProbeReset(entries: readonly StateEntry[]): void {
    this.#probeHolders.clear();
    this.#invalidProbeKeys.clear();
    this.#forgetUnlisted(this.#probePrefix, entries);
    for (const entry of entries) this.#onProbeEvent({ type: 'put', entry });
    for (const service of [...this.#awaitingProbe]) this.#acquireProbe(service);
    this.#ready.probes = true;
    this.#checkReady();
  }

  #onProbeEvent(event: StateEvent): void {
    const key = event.type === 'put' ? event.entry.key : event.key;
    const service = key.slice(this.#probePrefix.length);
    if (!key.startsWith(this.#probePrefix) || service.length === 0) return;
    if (event.type === 'delete') {
      this.#unreadable.delete(key);
      this.#invalidProbeKeys.delete(service);
      const holder = this.#probeHolders.get(service);
      this.#probeHolders.delete(service);
      if (holder !== undefined && holder.instance !== this.instance) this.#verdictOf(service, holder);
      if (this.#awaitingProbe.has(service)) this.#acquireProbe(service);
      return;
    }
    let instance: unknown;
    let since: unknown;
    try {
      ({ instance, since } = JSON.parse(event.entry.value) as { instance?: unknown; since?: unknown });
    } catch {
      instance = undefined;
    }
    const sinceMs = typeof since === 'string' ? Date.parse(since) : NaN;
    if (typeof instance !== 'string' || !Number.isFinite(sinceMs)) {
      this.#invalid(event.entry, 'invalid_probe_holder');
      // Whoever held the right before no longer does: the key says nothing of it now.
      this.#probeHolders.delete(service);
      this.#invalidProbeKeys.set(service, event.entry.revision);
      return;
    }
    this.#unreadable.delete(key);
    this.#invalidProbeKeys.delete(service);
    this.#probeHolders.set(service, { instance, revision: event.entry.revision, since: sinceMs });
  }

  /**
   * The holder gave the right back. It writes its verdict before releasing, and the watch
   * delivers in order, so its snapshot in the view is the verdict: CLOSED since it took the
   * right means its probes passed (an OPEN one: they failed, and whoever waits probes next).
   * Writes coalesce, so the holder's HALF_OPEN may never have been seen: this is the signal.
   */
  #verdictOf(service: string, holder: ProbeHolder): void {
    const report = this.#view.get(service)?.get(holder.instance)?.snapshot;
    if (report === undefined || report.state !== 'CLOSED') return;
    const closedAt = Date.parse(report.since);
    if (closedAt < holder.since) return;
    this.#provenHealthy(service, closedAt);
    if (this.#breakers.get(service)?.adoptProbeVerdict() === true) this.counters.adoptions++;
  }

  #onStatus(status: 'connected' | 'disconnected', error?: unknown): void {
    if (status === 'disconnected') {
      this.#setConnected(false, error);
      return;
    }
    this.#setConnected(true);
  }

  // ---- decisions ---------------------------------------------------------------------------

  /** Adopts OPEN for `service` if the quorum of live instances reports it OPEN. */
  #evaluate(service: string): void {
    const breaker = this.#breakers.get(service);
    if (breaker === undefined || breaker.state !== 'CLOSED') return;
    const reports = this.#view.get(service);
    if (reports === undefined) return;
    const staleBefore = this.#provenHealthyAt.get(service) ?? 0;
    let live = 1; // this instance, CLOSED
    let open = 0;
    for (const [instance, report] of reports) {
      if (instance === this.instance) continue;
      live++;
      if (report.snapshot.state === 'OPEN' && Date.parse(report.snapshot.since) >= staleBefore) open++;
    }
    if (open === 0) return;
    // majority: open > live / 2; a fraction q: open >= q * live. Not in basis points: 2/3 rounds up
    // to 6,667 there, and 2 of 3 instances (exactly two thirds) fell short. The tolerance absorbs
    // the float error of q * live (0.7 * 10 is 7.000000000000001), far below any step of open / live.
    const adopt = this.openQuorum === 'majority' ? open * 2 > live : open >= this.openQuorum * live - 1e-9;
    if (adopt && breaker.adoptOpen()) this.counters.adoptions++;
  }

  #onTransition(t: BreakerTransition): void {
    if (t.to === 'CLOSED' && (t.reason === 'probes_passed' || t.reason === 'cluster_probe_verdict')) {
      this.#provenHealthy(t.breaker, t.at);
    }
    if (t.to !== 'OPEN' || !this.#breakers.get(t.breaker)?.awaitingProbeRight) this.#awaitingProbe.delete(t.breaker);
    this.#unrestored.delete(t.breaker);
    this.#markDirty(t.breaker);
  }

  #requestProbe(breaker: CircuitBreaker): boolean {
    const service = breaker.id;
    // Cut off from the store (or its key refused by it), an instance cannot coordinate: it decides alone, on local data.
    if (!this.#connected || this.#refusedKeys.has(service) || this.#lease === null || this.#lease.lost || this.#closed) return true;
    const holder = this.#probeHolders.get(service);
    if (holder?.instance === this.instance) return true;
    this.#awaitingProbe.add(service);
    this.#probeTimer ??= setInterval(() => this.#retryProbes(), this.#probeRetryMs).unref();
    if (holder === undefined) this.#acquireProbe(service);
    return false;
  }

  #releaseProbe(breaker: CircuitBreaker): void {
    const service = breaker.id;
    const holder = this.#probeHolders.get(service);
    if (holder?.instance !== this.instance) return;
    this.#probeHolders.delete(service);
    // Released by the flusher after the snapshot that ends HALF_OPEN is written: the others
    // must see the verdict before they see the right free, or they would probe again.
    this.#pendingRelease.set(service, holder.revision);
    this.#scheduleFlush(0);
  }

  #acquireProbe(service: string): void {
    if (this.#acquiring.has(service) || this.#closed) return;
    const lease = this.#lease;
    if (lease === null || lease.lost) return;
    this.#acquiring.add(service);
    const expected = this.#invalidProbeKeys.get(service) ?? null;
    // The breaker's clock, the one its snapshots' `since` come from: the verdict is judged by comparing the two.
    const since = this.#breakers.get(service)?.settings.clock.now() ?? Date.now();
    const value = JSON.stringify({ instance: this.instance, since: new Date(since).toISOString() });
    this.store
      .compareAndSet(`${this.#probePrefix}${service}`, value, expected, { lease })
      .then((result) => {
        this.#setConnected(true);
        if (result.ok) {
          this.#invalidProbeKeys.delete(service);
          this.#probeHolders.set(service, { instance: this.instance, revision: result.revision, since });
          // Won too late (the breaker closed meanwhile, on another's verdict, or was evicted):
          // give it back at once, or every other instance would wait for it at the next outage.
          if (this.#breakers.get(service)?.awaitingProbeRight !== true) {
            this.#probeHolders.delete(service);
            this.#pendingRelease.set(service, result.revision);
            this.#scheduleFlush(0);
          }
        } else if (result.current !== undefined) {
          this.#onProbeEvent({ type: 'put', entry: result.current });
        }
        this.#grantIfHeld(service);
      })
      .catch((error: unknown) => {
        if (error instanceof StateKeyError) this.#unshareable(service, error);
        else this.#storeFailed('acquire probe right', error);
        this.#grantIfHeld(service); // now disconnected, or its key refused: the breaker decides alone
      })
      .finally(() => this.#acquiring.delete(service));
  }

  #grantIfHeld(service: string): void {
    const breaker = this.#breakers.get(service);
    if (breaker === undefined || !breaker.awaitingProbeRight) {
      this.#awaitingProbe.delete(service);
      return;
    }
    if (!this.#connected || this.#refusedKeys.has(service) || this.#probeHolders.get(service)?.instance === this.instance) {
      this.#awaitingProbe.delete(service);
      breaker.probeRightGranted();
    }
  }

  #retryProbes(): void {
    if (this.#awaitingProbe.size === 0 && this.#probeTimer !== null) {
      clearInterval(this.#probeTimer);
      this.#probeTimer = null;
      return;
    }
    for (const service of [...this.#awaitingProbe]) {
      const breaker = this.#breakers.get(service);
      if (breaker === undefined || !breaker.awaitingProbeRight) this.#awaitingProbe.delete(service);
      else if (!this.#connected) this.#grantIfHeld(service);
      else if (!this.#probeHolders.has(service)) this.#acquireProbe(service);
    }
  }

  // ---- writing -------------------------------------------------------------------------------

  #markDirty(service: string): void {
    // Written once the store has been read (see #unrestored): the first read marks it again.
    if (this.#closed || this.#unrestored.has(service)) return;
    this.#dirty.add(service);
    this.#scheduleFlush(0);
  }

  #scheduleFlush(delayMs: number): void {
    if (this.#flushTimer !== null || this.#flushing || this.#closed) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = null;
      void this.#flush();
    }, delayMs);
    this.#flushTimer.unref();
  }

  async #flush(): Promise<void> {
    if (this.#flushing || this.#closed) return;
    this.#flushing = true;
    let failed = false;
    try {
      for (const service of [...this.#pendingDelete]) {
        const expected = this.#ownRevision.get(service);
        if (this.#breakers.has(service)) {
          this.#pendingDelete.delete(service);
          continue;
        }
        if (expected !== null && expected !== undefined) await this.store.delete(this.keyOf(service), expected);
        this.#pendingDelete.delete(service);
        this.#ownRevision.delete(service);
        this.#setConnected(true);
      }
      for (const service of [...this.#dirty]) {
        this.#dirty.delete(service);
        try {
          await this.#write(service);
        } catch (error) {
          if (error instanceof StateKeyError) {
            this.#unshareable(service, error);
            continue;
          }
          this.#dirty.add(service);
          throw error;
        }
      }
      for (const [service, revision] of [...this.#pendingRelease]) {
        // Only once the verdict is written: a transition that arrived while this flush was
        // writing an older snapshot is still dirty, and goes first on the next round.
        if (this.#dirty.has(service)) continue;
        await this.store.delete(`${this.#probePrefix}${service}`, revision);
        this.#pendingRelease.delete(service);
      }
    } catch (error) {
      failed = true;
      this.counters.writeFailures++;
      this.#storeFailed('write snapshot', error);
    } finally {
      this.#flushing = false;
    }
    if (failed) {
      const wait = this.#backoff;
      this.#backoff = Math.min(this.#retryMaxMs, this.#backoff * 2);
      this.#scheduleFlush(wait);
    } else {
      this.#backoff = this.#retryMinMs;
      if (this.#dirty.size > 0 || this.#pendingDelete.size > 0 || this.#pendingRelease.size > 0) this.#scheduleFlush(0);
    }
  }

  async #write(service: string): Promise<void> {
    const breaker = this.#breakers.get(service);
    if (breaker === undefined) return;
    const lease = await this.#ensureLease();
    const key = this.keyOf(service);
    const value = encodeSnapshot(breaker.snapshot());
    // Not a read-modify-write across the awaits below: #write runs only inside #flush, never two at
    // once (#flushing), and what is stored after is the store's own answer to the compare-and-set.
    let expected = this.#lastWrittenRevision(service);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const result = await this.store.compareAndSet(key, value, expected, { lease });
      this.#setConnected(true);
      if (result.ok) {
        this.#ownRevision.set(service, result.revision);
        this.counters.writes++;
        return;
      }
      // Our key is ours alone: a mismatch means our lease expired (key gone) or our last write's
      // answer was lost. Our local state is the truth for our key: write over what is there.
      this.counters.conflicts++;
      expected = result.current?.revision ?? null;
    }
    throw new SnapshotConflictError(key, 3);
  }

  #lastWrittenRevision(service: string): bigint | null {
    return this.#ownRevision.get(service) ?? null;
  }

  #ensureLease(): Promise<StateLease> {
    if (this.#lease !== null && !this.#lease.lost) return Promise.resolve(this.#lease);
    this.#leasePending ??= this.store
      .grantLease(this.leaseTtlSeconds)
      .then((lease) => {
        this.#lease = lease;
        this.#setConnected(true);
        lease.onLost(() => this.#onLeaseLost(lease));
        return lease;
      })
      .finally(() => {
        this.#leasePending = null;
      });
    return this.#leasePending;
  }

  #onLeaseLost(lease: StateLease): void {
    if (this.#lease !== lease || this.#closed) return;
    this.#lease = null;
    this.counters.leaseLosses++;
    this.#log('lease lost; granting a new one and rewriting every snapshot', { instance: this.instance, lease: lease.id });
    for (const service of this.#breakers.keys()) {
      this.#ownRevision.set(service, null);
      this.#markDirty(service);
    }
    for (const [service, holder] of this.#probeHolders) if (holder.instance === this.instance) this.#probeHolders.delete(service);
    this.#pendingRelease.clear(); // the probe keys went with the lease
  }

  // ---- helpers -------------------------------------------------------------------------------

  /**
   * Records that `service` was proven healthy at `at` (epoch ms, possibly a peer's clock), capped
   * at this instance's now: a peer whose clock runs ahead (or a hand-written `since` in 9999)
   * would otherwise make every OPEN report stale until that future time, and the quorum could
   * never open this breaker again.
   */
  #provenHealthy(service: string, at: number): void {
    const now = this.#breakers.get(service)?.settings.clock.now() ?? Date.now();
    this.#provenHealthyAt.set(service, Math.max(this.#provenHealthyAt.get(service) ?? 0, Math.min(at, now)));
  }

  #setConnected(connected: boolean, error?: unknown): void {
    if (this.#connected === connected) return;
    this.#connected = connected;
    if (!connected) {
      this.#log(`state store "${this.store.kind}" unreachable; deciding on the last snapshots seen`, { instance: this.instance, error: error instanceof Error ? error.message : String(error) });
      // Breakers waiting for a probe right nobody can grant now decide alone.
      for (const service of [...this.#awaitingProbe]) this.#grantIfHeld(service);
    } else {
      this.#scheduleFlush(0);
    }
  }

  /**
   * The store refuses this breaker's key for good (too long for the file store's file names): no
   * retry can help, and the store itself answers, so it is not called unreachable (which would
   * retry forever and send every other breaker to local decisions). Said once, by name; the
   * breaker then decides alone, its probes too (see #requestProbe).
   */
  #unshareable(service: string, error: StateKeyError): void {
    if (this.#refusedKeys.has(service)) return;
    this.#refusedKeys.add(service);
    this.counters.writeFailures++;
    this.#log(`breaker "${service}" cannot be shared through state store "${this.store.kind}": ${error.message} (GOVMAP_STATE_KEY_INVALID); it decides on local data only (use shorter names, instance or prefix)`, { instance: this.instance, breaker: service });
  }

  #storeFailed(operation: string, error: unknown): void {
    if (this.#closed) return;
    if (error instanceof StateKeyError) {
      // A key refused is not a store that is down (see #unshareable).
      this.#log(`state store "${this.store.kind}" refused a key (${operation}): ${error.message}`, { instance: this.instance });
      return;
    }
    // The store answered that our lease has ended: the lease listener is already granting a new
    // one and marking every snapshot for rewriting; the retry goes out under it.
    if (error instanceof StateLeaseLostError) return;
    this.#setConnected(false, new Error(`${operation}: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
  }

  #checkReady(): void {
    if (this.#ready.circuits && this.#ready.probes) {
      this.#ready.resolve?.();
      this.#ready.resolve = null;
    }
  }

  #split(key: string, prefix: string): { service: string; instance: string } | null {
    if (!key.startsWith(prefix)) return null;
    const rest = key.slice(prefix.length);
    const slash = rest.lastIndexOf('/');
    if (slash <= 0 || slash === rest.length - 1) return null;
    return { service: rest.slice(0, slash), instance: rest.slice(slash + 1) };
  }

  #parse(entry: StateEntry): { service: string; instance: string; report: PeerReport } | null {
    const name = this.#split(entry.key, this.#circuitPrefix);
    if (name === null) {
      this.#invalid(entry, 'invalid_key');
      return null;
    }
    const decoded = decodeSnapshot(entry.value);
    if (!decoded.ok) {
      this.#invalid(entry, decoded.reason, name);
      return null;
    }
    this.#unreadable.delete(entry.key);
    return { ...name, report: { snapshot: decoded.snapshot, revision: entry.revision } };
  }

  /** A re-list hands over every key: those unreadable before that are not in it are gone. */
  #forgetUnlisted(prefix: string, entries: readonly StateEntry[]): void {
    const listed = new Set(entries.map((e) => e.key));
    for (const key of [...this.#unreadable.keys()]) if (key.startsWith(prefix) && !listed.has(key)) this.#unreadable.delete(key);
  }

  #invalid(entry: StateEntry, reason: string, name?: { service: string; instance: string }): void {
    const key = entry.key;
    const known = this.#unreadable.get(key);
    this.#unreadable.set(key, { reason, revision: entry.revision, value: entry.value });
    if (known !== undefined && known.revision === entry.revision && known.value === entry.value) return;
    const counts = this.counters.invalidSnapshots;
    counts.set(reason, (counts.get(reason) ?? 0) + 1);
    if (name === undefined) {
      this.#log('ignored an invalid snapshot', { key: key.slice(0, 200), reason });
      return;
    }
    const instance = name.instance.slice(0, 200);
    this.#log(`ignored an invalid snapshot of instance "${instance}" for breaker "${name.service.slice(0, 200)}" (${reason}): that instance is not counted in the open quorum until it writes a valid one`, {
      key: key.slice(0, 200),
      reason,
      instance,
      breaker: name.service.slice(0, 200),
    });
  }
}
