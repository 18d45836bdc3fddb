/* eslint-disable @typescript-eslint/require-await -- async so that every failure, bad key included, is a rejection */
import { randomBytes } from 'node:crypto';
import { open, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigurationError, GovMapError } from '../map/errors.ts';
import { StateKeyError, StateLeaseLostError, StateStoreClosedError, StateStoreUnavailableError, assertDeleteRevision, assertLeaseTtl, assertStateKey, assertWrite } from './errors.ts';
import { guardHandlers } from './guarded-handlers.ts';
import type { CasResult, CompareAndSetOptions, StateEntry, StateEvent, StateLease, StateStore, StateWatch, StateWatchHandlers } from './store.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { makeDirectory } from '../map/make-directory.ts';

export interface FileStateStoreOptions {
  /** Directory holding one file per key; created if missing. Give each deployment its own. */
  readonly directory: string;
  /** How often watches look for changes written by other processes, milliseconds. Default 250. */
  readonly pollIntervalMs?: number;
}

/** Every key of FileStateStoreOptions (the compiler checks the two stay the same): any other is refused. */
const FILE_STORE_OPTIONS = optionKeys<FileStateStoreOptions>({
  directory: true, pollIntervalMs: true,
});

/**
 * A key's file name is its URI-encoding plus `.json`; file systems allow 255 bytes per name, and
 * the longest name made from it is the temporary of a write, `<name>.<pid>.<8 hex>.tmp` (a pid
 * has up to 7 digits): a longer key would be accepted and then fail every write as
 * ENAMETOOLONG, reported as the store being unavailable.
 */
const MAX_FILE_NAME = 255 - '.1234567.12345678.tmp'.length;
/** A lock older than this was left by a process that died holding it, milliseconds. */
const STALE_LOCK_MS = 5_000;
const LOCK_RETRY_MS = 5;
/**
 * A write's temporary older than this was left by a writer that died between creating and
 * renaming it (writeAtomically), milliseconds. A live write renames within moments; one paused
 * past this (its lock long since breakable) finds its temporary gone and fails, writing nothing.
 * Age, not the pid in the name: a process sharing the directory from another PID namespace (a
 * container) has pids this one cannot see.
 */
const STALE_TEMPORARY_MS = 60_000;
/** The name writeAtomically gives a temporary: `<file>.<pid>.<8 hex>.tmp`. A key's file never matches (it ends in .json). */
const TEMPORARY_NAME = /\.[0-9]{1,10}\.[0-9a-f]{8}\.tmp$/;
const LOCK_ATTEMPTS = 400; // 2 s of 5 ms waits: far longer than any write holds a lock

interface Envelope {
  readonly revision: string;
  readonly value: string;
  readonly lease: string | null;
  /** A tombstone: the key is deleted; `revision` is the delete's, so a re-create numbers above it. */
  readonly deleted?: true;
}

/**
 * How long a tombstone is kept, milliseconds. Revisions start at the clock in µs, so a key
 * re-created this long after its delete numbers above it without the tombstone (unless the
 * clock went back further than this).
 */
const TOMBSTONE_MS = 60_000;

interface FileWatcher {
  readonly prefix: string;
  readonly handlers: StateWatchHandlers;
  /** Revision of every key this watcher has reported, to emit only changes. */
  known: Map<string, bigint> | null;
  /**
   * Text of the keys last reported at revision 0 (files that are not our envelope, edited by
   * hand): every edit of one reads revision 0 again, so only the text tells a change.
   */
  readonly foreign: Map<string, string>;
  /**
   * Keys this store's own writes reported to the watcher, with the scan number current then. A
   * scan whose listing began no later than that (its number is not larger) may hold the key's
   * older state, so it leaves the key to the next scan.
   */
  readonly ownWrites: Map<string, number>;
  /** Whether the last scan could read the directory: status changes are reported once each. */
  connected: boolean;
  closed: boolean;
}

/**
 * A state store in a directory: state survives a restart of the process, and processes on one
 * machine share it. One file per key (`<encodeURIComponent(key)>.json`, an envelope holding the
 * revision, the value text and the lease id), replaced atomically (write a temporary file, fsync,
 * rename), so a reader sees the old value or the new one, never half of one.
 *
 * Invariants:
 * - compare-and-set holds the key's lock file (`O_EXCL` create) from reading the revision to the
 *   rename, so writers in different processes are serialised; a lock older than 5 s is broken
 *   unless its holder is a process still alive on this host (paused is alive), and a writer
 *   whose lock was broken meanwhile (a holder on another host sharing the directory) fails its
 *   write (StateStoreUnavailableError) instead of renaming it over the other's, but for the
 *   instant between its last check and its rename.
 * - a new revision is max(previous + 1, now in µs): it grows even across a delete and re-create,
 *   because a delete leaves a tombstone holding its revision (removed by a reader a minute later).
 * - a lease is a file `.leases/<id>` holding its expiry time, rewritten by its holder every third
 *   of its time to live; an entry whose lease file is gone or expired reads as absent, and is
 *   deleted by the next process that looks. A process that dies therefore loses its entries
 *   after the lease's time to live, as with etcd; one that restarts within it finds them.
 * - watches poll the directory (each scan reads every file under the prefix: a change is a new
 *   revision, or new text in a file that is not our envelope), and writes made through this
 *   instance are delivered at once; a scan whose listing began before such a write
 *   leaves that key to the next scan, so a watch never goes back to a key's older state. A scan
 *   that fails (directory gone, a file that cannot be read) reports `disconnected` once; the next
 *   scan that succeeds reports `connected`.
 * - every failure of the file system reaches the caller as StateStoreUnavailableError; a
 *   directory that could not be created is tried again by the next operation.
 * - a writer that dies between writing its temporary and renaming it leaves the temporary
 *   (`<file>.<pid>.<8 hex>.tmp`, never read as a key); the next store to open the directory
 *   removes those older than a minute.
 */
export class FileStateStore implements StateStore {
  readonly kind = 'file';
  readonly directory: string;
  readonly pollIntervalMs: number;
  readonly #leaseDir: string;
  readonly #leases = new Map<string, FileLease>();
  readonly #watchers = new Set<FileWatcher>();
  /** Per-key promise chain: one write at a time per key within this process. */
  readonly #chains = new Map<string, Promise<unknown>>();
  #ready: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #polling: Promise<void> | null = null;
  /** Counts the listings scans have begun (see FileWatcher.ownWrites). */
  #scans = 0;
  #closed = false;

  constructor(options: FileStateStoreOptions) {
    refuseUnknownOptions(options, FILE_STORE_OPTIONS, 'FileStateStore');
    if (typeof options?.directory !== 'string' || options.directory.length === 0) {
      throw new ConfigurationError('directory', 'the file state store needs a directory path', options?.directory);
    }
    const poll = options.pollIntervalMs ?? 250;
    if (!Number.isInteger(poll) || poll < 10 || poll > 60_000) throw new ConfigurationError('pollIntervalMs', 'a whole number of milliseconds from 10 to 60000', poll);
    this.directory = options.directory;
    this.pollIntervalMs = poll;
    this.#leaseDir = join(this.directory, '.leases');
  }

  async get(key: string): Promise<StateEntry | undefined> {
    this.#open('get');
    assertStateKey(key);
    const file = this.#fileOf(key);
    await this.#init();
    return this.#read(key, file);
  }

  async list(prefix: string): Promise<StateEntry[]> {
    this.#open('list');
    assertStateKey(prefix, 'prefix');
    await this.#init();
    const names = await readdir(this.directory).catch(unavailable(this.kind, 'list'));
    const out: StateEntry[] = [];
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const key = keyOfFile(name);
      if (key === null || !key.startsWith(prefix)) continue;
      const entry = await this.#read(key, join(this.directory, name));
      if (entry !== undefined) out.push(entry);
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async compareAndSet(key: string, value: string, expected: bigint | null, options: CompareAndSetOptions = {}): Promise<CasResult> {
    this.#open('compareAndSet');
    assertStateKey(key);
    assertWrite(value, expected);
    const file = this.#fileOf(key);
    const lease = options.lease;
    if (lease !== undefined && (lease.lost || !this.#leases.has(lease.id))) throw new StateLeaseLostError(this.kind, lease.id);
    await this.#init();
    const result = await this.#serialised(key, () =>
      this.#locked(file, async (stillHeld): Promise<CasResult> => {
        const current = await this.#read(key, file);
        if ((current?.revision ?? null) !== expected) return { ok: false, current };
        const floor = BigInt(Date.now()) * 1000n;
        const previous = current?.revision ?? (await this.#rawRevision(file));
        const revision = previous !== null && previous >= floor ? previous + 1n : floor;
        const envelope: Envelope = { revision: revision.toString(), value, lease: lease?.id ?? null };
        await writeAtomically(file, JSON.stringify(envelope), stillHeld);
        return { ok: true, revision };
      }),
    ).catch(unavailable(this.kind, `compareAndSet ${key}`));
    if (result.ok) this.#deliver({ type: 'put', entry: { key, value, revision: result.revision } });
    return result;
  }

  async delete(key: string, expected?: bigint): Promise<boolean> {
    this.#open('delete');
    assertStateKey(key);
    assertDeleteRevision(expected);
    const file = this.#fileOf(key);
    await this.#init();
    const deleted = await this.#serialised(key, () =>
      this.#locked(file, async (stillHeld) => {
        const current = await this.#read(key, file);
        if (current === undefined || (expected !== undefined && current.revision !== expected)) return null;
        // Not unlink: a key re-created within the same millisecond would get the revision it had
        // before (the clock in µs), and a polling watch in another process, comparing revisions,
        // would never report the new value. The tombstone keeps the revision to number above.
        await writeAtomically(file, JSON.stringify(tombstoneOf({ revision: current.revision.toString() })), stillHeld);
        return current.revision;
      }),
    ).catch(unavailable(this.kind, `delete ${key}`));
    if (deleted === null) return false;
    this.#deliver({ type: 'delete', key, revision: deleted + 1n });
    return true;
  }

  async grantLease(ttlSeconds: number): Promise<StateLease> {
    this.#open('grantLease');
    assertLeaseTtl(ttlSeconds);
    await this.#init();
    const id = `${process.pid}-${randomBytes(6).toString('hex')}`;
    const lease = new FileLease(id, ttlSeconds, join(this.#leaseDir, id), (gone) => this.#endLease(gone), (gone) => this.#leases.delete(gone.id));
    await lease.renew().catch(unavailable(this.kind, 'grantLease'));
    // close() ran meanwhile and stopped the leases it knew: this one would be renewed for the
    // life of the process. Never started, its file runs out after its TTL.
    if (this.#closed) throw new StateStoreClosedError(this.kind, 'grantLease');
    lease.start();
    this.#leases.set(id, lease);
    return lease;
  }

  watch(prefix: string, handlers: StateWatchHandlers): StateWatch {
    this.#open('watch');
    assertStateKey(prefix, 'prefix');
    const watcher: FileWatcher = { prefix, handlers: guardHandlers(this.kind, prefix, handlers), known: null, foreign: new Map(), ownWrites: new Map(), connected: true, closed: false };
    this.#watchers.add(watcher);
    this.#timer ??= setInterval(() => void this.#poll(), this.pollIntervalMs).unref();
    // A scan already under way (another watch's) took its list of watchers before this one:
    // without a scan after it, this watch's first content would wait a whole poll interval.
    void (this.#polling ?? Promise.resolve()).then(() => this.#poll());
    return {
      close: async () => {
        watcher.closed = true;
        this.#watchers.delete(watcher);
        if (this.#watchers.size === 0 && this.#timer !== null) {
          clearInterval(this.#timer);
          this.#timer = null;
        }
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const watcher of this.#watchers) watcher.closed = true;
    this.#watchers.clear();
    for (const lease of this.#leases.values()) lease.stop();
    await this.#polling;
  }

  /** Looks for changes now (the poll timer does this every pollIntervalMs). */
  async poll(): Promise<void> {
    await this.#poll();
  }

  #poll(): Promise<void> {
    // One scan at a time: a slow disk must not stack up scans.
    this.#polling ??= this.#scanAll().finally(() => {
      this.#polling = null;
    });
    return this.#polling;
  }

  async #scanAll(): Promise<void> {
    for (const watcher of [...this.#watchers]) {
      if (watcher.closed) continue;
      let entries: StateEntry[];
      const scan = ++this.#scans;
      try {
        entries = await this.list(watcher.prefix);
      } catch (error) {
        if (this.#closed) return;
        if (watcher.connected && !watcher.closed) {
          watcher.connected = false;
          watcher.handlers.onStatus?.('disconnected', error instanceof StateStoreUnavailableError ? error : new StateStoreUnavailableError(this.kind, 'watch', error));
        }
        continue;
      }
      if (watcher.closed) continue;
      if (!watcher.connected) {
        watcher.connected = true;
        watcher.handlers.onStatus?.('connected');
      }
      if (watcher.known === null) {
        watcher.known = new Map(entries.map((e) => [e.key, e.revision]));
        for (const e of entries) if (e.revision === 0n) watcher.foreign.set(e.key, e.value);
        watcher.handlers.onReset(entries);
        continue;
      }
      const seen = new Set<string>();
      const ownLater = (key: string): boolean => (watcher.ownWrites.get(key) ?? 0) >= scan;
      for (const entry of entries) {
        // A handler may close the watch: the rest of this scan is then for nobody.
        if (watcher.closed) break;
        seen.add(entry.key);
        if (ownLater(entry.key) || (watcher.known.get(entry.key) === entry.revision && (entry.revision !== 0n || watcher.foreign.get(entry.key) === entry.value))) continue;
        watcher.known.set(entry.key, entry.revision);
        if (entry.revision === 0n) watcher.foreign.set(entry.key, entry.value);
        else watcher.foreign.delete(entry.key);
        watcher.handlers.onEvent({ type: 'put', entry });
      }
      for (const [key, revision] of watcher.known) {
        if (watcher.closed) break;
        if (seen.has(key) || ownLater(key)) continue;
        watcher.known.delete(key);
        watcher.foreign.delete(key);
        watcher.handlers.onEvent({ type: 'delete', key, revision: revision + 1n });
      }
      // What the next scan lists begins after these writes: it can judge their keys again.
      for (const [key, at] of watcher.ownWrites) if (at < scan) watcher.ownWrites.delete(key);
    }
  }

  /** Own writes reach own watchers at once (in a later microtask), without waiting for a poll. */
  #deliver(event: StateEvent): void {
    const key = event.type === 'put' ? event.entry.key : event.key;
    queueMicrotask(() => {
      for (const watcher of this.#watchers) {
        if (watcher.closed || watcher.known === null || !key.startsWith(watcher.prefix)) continue;
        // Even a write not reported here (another process's write of the key got there first)
        // makes a listing begun before it stale for the key.
        watcher.ownWrites.set(key, this.#scans);
        if (event.type === 'put') {
          const known = watcher.known.get(key);
          if (known !== undefined && known >= event.entry.revision) continue;
          watcher.known.set(key, event.entry.revision);
        } else {
          if (!watcher.known.has(key)) continue;
          watcher.known.delete(key);
        }
        watcher.foreign.delete(key);
        watcher.handlers.onEvent(event);
      }
    });
  }

  async #read(key: string, file: string): Promise<StateEntry | undefined> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StateStoreUnavailableError(this.kind, `read ${key}`, error);
    }
    const envelope = parseEnvelope(text);
    // A file that is not our envelope (edited by hand, written by something else) is handed to
    // the consumer as it is, revision 0: the consumer's decoder rejects and counts it.
    if (envelope === null) return { key, value: text, revision: 0n };
    if (envelope.deleted === true) {
      if (BigInt(envelope.revision) < BigInt(Date.now() - TOMBSTONE_MS) * 1000n) await reap(file, text, null);
      return undefined;
    }
    if (envelope.lease !== null && !(await this.#leaseAlive(envelope.lease))) {
      await reap(file, text, tombstoneOf(envelope));
      return undefined;
    }
    return { key, value: envelope.value, revision: BigInt(envelope.revision) };
  }

  async #rawRevision(file: string): Promise<bigint | null> {
    const text = await readFile(file, 'utf8').catch(() => null);
    const envelope = text === null ? null : parseEnvelope(text);
    return envelope === null ? null : BigInt(envelope.revision);
  }

  async #leaseAlive(id: string): Promise<boolean> {
    const own = this.#leases.get(id);
    if (own !== undefined) return !own.lost;
    const text = await readFile(join(this.#leaseDir, leaseFileName(id)), 'utf8').catch(() => null);
    // A lease file that is not what a holder writes (torn, edited) proves no holder alive.
    return text !== null && leaseExpiry(text) > Date.now();
  }

  async #endLease(lease: FileLease): Promise<void> {
    this.#leases.delete(lease.id);
    await rm(join(this.#leaseDir, leaseFileName(lease.id)), { force: true }).catch(unavailable(this.kind, `revoke lease ${lease.id}`));
    const names = await readdir(this.directory).catch(() => [] as string[]);
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const file = join(this.directory, name);
      const text = await readFile(file, 'utf8').catch(() => null);
      const envelope = text === null ? null : parseEnvelope(text);
      if (envelope?.lease !== lease.id) continue;
      const key = keyOfFile(name);
      // A tombstone, as delete() leaves: a key re-created within the millisecond numbers above it.
      const tombstone = tombstoneOf(envelope);
      await reap(file, text!, tombstone);
      if (key !== null) this.#deliver({ type: 'delete', key, revision: BigInt(tombstone.revision) });
    }
  }

  #fileOf(key: string): string {
    const name = `${encodeURIComponent(key)}.json`;
    if (name.length > MAX_FILE_NAME) throw new StateKeyError(key, `the file store keeps keys whose URI-encoding is at most ${MAX_FILE_NAME - 5} characters`);
    return join(this.directory, name);
  }

  #serialised<T>(key: string, body: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(key) ?? Promise.resolve();
    const next = previous.then(body, body);
    const settled = next.catch(() => undefined);
    this.#chains.set(key, settled);
    void settled.then(() => {
      if (this.#chains.get(key) === settled) this.#chains.delete(key);
    });
    return next;
  }

  /**
   * Runs `body` holding the key's lock. The lock file holds a token of this holding: a lock held
   * past STALE_LOCK_MS (a pause, an fsync stalled on a busy disk) is broken by another writer as
   * one left by a dead process, and its holder, resumed, renamed its write over the other's (two
   * compare-and-sets of one revision both succeeded). `stillHeld` refuses the write once the
   * token is gone, and the lock is removed only while it is still this holding's.
   */
  async #locked<T>(file: string, body: (stillHeld: () => Promise<void>) => Promise<T>): Promise<T> {
    const lock = `${file}.lock`;
    const token = lockToken();
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await open(lock, 'wx');
        try {
          await handle.writeFile(token);
        } catch (error) {
          await handle.close();
          await unlink(lock).catch(() => undefined);
          throw new StateStoreUnavailableError(this.kind, 'lock', error);
        }
        await handle.close();
        break;
      } catch (error) {
        if (error instanceof StateStoreUnavailableError) throw error;
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new StateStoreUnavailableError(this.kind, 'lock', error);
        const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > STALE_LOCK_MS && (await breakStaleLock(lock))) continue;
        if (attempt >= LOCK_ATTEMPTS) throw new StateStoreUnavailableError(this.kind, 'lock', new Error(`${lock} held for over ${LOCK_ATTEMPTS * LOCK_RETRY_MS} ms`));
        else await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
      }
    }
    const mine = async (): Promise<boolean> => (await readFile(lock, 'utf8').catch(() => null)) === token;
    const stillHeld = async (): Promise<void> => {
      if (!(await mine())) {
        throw new StateStoreUnavailableError(this.kind, 'lock', new Error(`${lock} was broken as stale while this process held it (over ${STALE_LOCK_MS} ms: paused, or a stalled disk); nothing was written`));
      }
    };
    try {
      return await body(stillHeld);
    } finally {
      // Another writer's lock now, if this one was broken: removing it would let a third in.
      if (await mine()) await unlink(lock).catch(ignoreMissing);
    }
  }

  #init(): Promise<void> {
    this.#ready ??= makeDirectory(this.#leaseDir).then(
      // Once per store: a writer that died mid-write left its temporary for ever otherwise.
      () => Promise.all([removeStaleTemporaries(this.directory), removeStaleTemporaries(this.#leaseDir)]).then(() => undefined),
      (error: unknown) => {
        // Not remembered: a directory created or made writable later is used by the next call.
        this.#ready = null;
        throw new StateStoreUnavailableError(this.kind, `create directory ${this.#leaseDir}`, error);
      },
    );
    return this.#ready;
  }

  #open(operation: string): void {
    if (this.#closed) throw new StateStoreClosedError(this.kind, operation);
  }
}

/** A lease of the file store: a file holding its expiry, renewed every third of its TTL. */
class FileLease implements StateLease {
  readonly id: string;
  readonly ttlSeconds: number;
  readonly #file: string;
  readonly #end: (lease: FileLease) => Promise<void>;
  readonly #forget: (lease: FileLease) => void;
  readonly #listeners = new Set<() => void>();
  #timer: NodeJS.Timeout | null = null;
  #lost = false;

  constructor(id: string, ttlSeconds: number, file: string, end: (lease: FileLease) => Promise<void>, forget: (lease: FileLease) => void) {
    this.id = id;
    this.ttlSeconds = ttlSeconds;
    this.#file = file;
    this.#end = end;
    this.#forget = forget;
  }

  get lost(): boolean {
    return this.#lost;
  }

  onLost(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async renew(): Promise<void> {
    await writeAtomically(this.#file, JSON.stringify({ expiresAt: Date.now() + this.ttlSeconds * 1000, pid: process.pid }));
  }

  start(): void {
    this.#timer = setInterval(() => {
      void this.#keepAlive();
    }, Math.max(100, (this.ttlSeconds * 1000) / 3)).unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  async revoke(): Promise<void> {
    this.stop();
    this.#listeners.clear();
    this.#lost = true;
    await this.#end(this);
  }

  /** Stops renewing: the lease file expires after the TTL and other processes drop its entries. */
  release(): void {
    this.stop();
    this.#listeners.clear();
    this.#forget(this);
  }

  async #keepAlive(): Promise<void> {
    // A process suspended past the TTL (stopped, swapped out) finds its lease expired: its
    // entries may already be gone, so it must not quietly resurrect them under the same id.
    // A lease file removed, torn or edited is expired too: other processes read it so.
    let expiresAt: number;
    try {
      expiresAt = leaseExpiry(await readFile(this.#file, 'utf8'));
    } catch (error) {
      // Runs on a timer, so nothing may escape as an unhandled rejection. A read error other
      // than "gone" (EMFILE, EIO) is no verdict on the lease: renew and look again next time.
      expiresAt = (error as NodeJS.ErrnoException).code === 'ENOENT' ? NaN : Infinity;
    }
    if (this.#timer === null) return; // stopped (released, revoked, store closed) meanwhile
    if (!(expiresAt > Date.now())) {
      this.stop();
      this.#lost = true;
      for (const listener of [...this.#listeners]) {
        try {
          listener();
        } catch (error) {
          console.error(`govmap file state store: a lost-lease listener of lease ${this.id} threw`, error);
        }
      }
      this.#listeners.clear();
      return;
    }
    await this.renew().catch(() => undefined);
  }
}

function parseEnvelope(text: string): Envelope | null {
  try {
    const parsed = JSON.parse(text) as Partial<Envelope> | null;
    if (parsed === null || typeof parsed !== 'object') return null;
    if (typeof parsed.revision !== 'string' || !/^[0-9]{1,20}$/.test(parsed.revision) || typeof parsed.value !== 'string') return null;
    if (parsed.lease !== null && typeof parsed.lease !== 'string') return null;
    if (parsed.deleted !== undefined && parsed.deleted !== true) return null;
    return parsed.deleted === true ? { revision: parsed.revision, value: parsed.value, lease: parsed.lease, deleted: true } : { revision: parsed.revision, value: parsed.value, lease: parsed.lease };
  } catch {
    return null;
  }
}

/** The expiry a lease file holds, epoch ms; NaN for anything a holder did not write. */
function leaseExpiry(text: string): number {
  try {
    const parsed = JSON.parse(text) as unknown;
    const expiresAt = parsed !== null && typeof parsed === 'object' ? (parsed as { expiresAt?: unknown }).expiresAt : undefined;
    return typeof expiresAt === 'number' && Number.isFinite(expiresAt) ? expiresAt : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Deletes an entry whose lease has ended, only if the file still holds the text that was read:
 * under the key's lock, so a writer that has just replaced it (a new lease, a restarted holder)
 * keeps its write. Best effort: a busy lock (a writer at work, or this process's own
 * compare-and-set reading the key) leaves the file for later; it reads as absent meanwhile.
 */
/** The tombstone of an entry: deleted, numbered one above it. */
function tombstoneOf(envelope: Pick<Envelope, 'revision'>): Envelope {
  return { revision: (BigInt(envelope.revision) + 1n).toString(), value: '', lease: null, deleted: true };
}

/**
 * Removes an entry still reading `text` (an expired lease's, an old tombstone), best effort: a
 * writer holding the key's lock wins, and the entry is left for a later reader. An entry that
 * ended with a lease is replaced by its `tombstone`, not unlinked, so that a re-create within the
 * millisecond numbers above it (as after delete()).
 */
async function reap(file: string, text: string, tombstone: Envelope | null): Promise<void> {
  const lock = `${file}.lock`;
  // A token in the lock, as #locked's: a reaper paused past STALE_LOCK_MS has its lock broken, and
  // must then neither write nor remove the lock another writer holds now.
  const token = lockToken('-reap');
  try {
    const handle = await open(lock, 'wx');
    try {
      await handle.writeFile(token);
    } finally {
      await handle.close();
    }
  } catch {
    return;
  }
  const mine = async (): Promise<boolean> => (await readFile(lock, 'utf8').catch(() => null)) === token;
  try {
    if ((await readFile(file, 'utf8').catch(() => null)) !== text) return;
    if (tombstone === null) {
      if (await mine()) await unlink(file);
    } else {
      await writeAtomically(file, JSON.stringify(tombstone), async () => {
        if (!(await mine())) throw new Error('lock lost');
      });
    }
  } catch {
    // left for a later reader
  } finally {
    if (await mine()) await unlink(lock).catch(() => undefined);
  }
}

/** What a lock file holds: this host and process (so a live holder is told from a dead one), and this holding. */
function lockToken(suffix = ''): string {
  return `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}${suffix}`;
}

/**
 * True when the lock's holder is another process alive on this host, paused or not (SIGSTOP, a
 * frozen container, a long GC pause or a stalled fsync): its lock was not left behind. Breaking
 * it let the holder, resumed, rename its write over the breaker's: the check a holder makes just
 * before its rename cannot close the window between that check and the rename, so two
 * compare-and-sets of one revision both succeeded (seen in CI). A holder on another host (a shared
 * directory), or a lock of an older format, cannot be asked: it is judged by age alone.
 */
async function holderAlive(lock: string): Promise<boolean> {
  const text = await readFile(lock, 'utf8').catch(() => null);
  if (text === null) return false;
  const [host, pidText] = text.split(':');
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process is there, another user's; ESRCH: it is gone.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes a lock its holder left behind (older than STALE_LOCK_MS, its holder not alive on this
 * host); false when it is not to be broken or another process
 * is breaking it at the same time. Two processes that both saw the lock stale and both unlinked
 * it could remove the lock one of them had just taken in between, and both would then win one
 * compare-and-set: so the unlink happens under `<lock>.break` (O_EXCL), after the lock is found
 * stale again there. A breaker lock older than STALE_LOCK_MS (its holder died) is removed.
 */
async function breakStaleLock(lock: string): Promise<boolean> {
  const breaker = `${lock}.break`;
  const age = (file: string): Promise<number> => stat(file).then((s) => Date.now() - s.mtimeMs, () => 0);
  try {
    await (await open(breaker, 'wx')).close();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    if ((await age(breaker)) > STALE_LOCK_MS) await unlink(breaker).catch(ignoreMissing);
    return false;
  }
  try {
    // A live holder's lock is not broken, however old: it is paused, not dead.
    if ((await age(lock)) > STALE_LOCK_MS && !(await holderAlive(lock))) {
      await unlink(lock).catch(ignoreMissing);
      return true;
    }
    return false;
  } finally {
    await unlink(breaker).catch(ignoreMissing);
  }
}

/** Turns a file-system failure into StateStoreUnavailableError; govmap's own errors pass as they are. */
function unavailable(kind: string, operation: string): (error: unknown) => never {
  return (error: unknown) => {
    if (error instanceof GovMapError) throw error;
    throw new StateStoreUnavailableError(kind, operation, error);
  };
}

function keyOfFile(name: string): string | null {
  try {
    return decodeURIComponent(name.slice(0, -'.json'.length));
  } catch {
    return null;
  }
}

function leaseFileName(id: string): string {
  return id.replace(/[^A-Za-z0-9-]/g, '_');
}

async function writeAtomically(file: string, text: string, beforeRename?: () => Promise<void>): Promise<void> {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temporary, 'w');
  try {
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    // Last, after the fsync: the longest wait of a write, where a lock is most likely lost.
    await beforeRename?.();
    await rename(temporary, file);
  } catch (error) {
    // A full disk must not also fill the directory with half-written temporaries.
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

/** Removes the temporaries in `directory` older than STALE_TEMPORARY_MS, best effort: never fails. */
async function removeStaleTemporaries(directory: string): Promise<void> {
  const names = await readdir(directory).catch(() => [] as string[]);
  for (const name of names) {
    if (!TEMPORARY_NAME.test(name)) continue;
    const file = join(directory, name);
    const age = await stat(file).then((s) => Date.now() - s.mtimeMs, () => 0);
    if (age > STALE_TEMPORARY_MS) await unlink(file).catch(() => undefined);
  }
}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
}
