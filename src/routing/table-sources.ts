import { z } from 'zod';
import { ConfigurationError, GovMapError } from '../map/errors.ts';
import type { StateEntry, StateStore, StateWatch } from '../state/store.ts';
import { timerOption } from '../switches/timer-option.ts';
import { WatchedFile } from '../switches/watched-file.ts';
import type { WatchedFileStatus } from '../switches/watched-file.ts';
import { RouteTableSourceError, RouteTableVersionConflictError } from './errors.ts';
import { RouteTable } from './route-table.ts';
import type { Router } from './router.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

export interface FileRouteTableSourceOptions {
  /** `.json`, `.yaml` or `.yml`: `{ default: {...}, routes: [...] }`. */
  readonly path: string;
  readonly router: Router;
  /** See WatchedFileOptions: maxBytes (default 1 MiB), debounceMs (50), settleMs (150), pollMs (2000; at most 2,147,483,647). */
  readonly maxBytes?: number;
  readonly debounceMs?: number;
  readonly settleMs?: number;
  readonly pollMs?: number;
  readonly log?: (message: string, error?: unknown) => void;
}

/** Every key of FileRouteTableSourceOptions (the compiler checks the two stay the same): any other is refused. */
const FILE_TABLE_SOURCE_OPTIONS = optionKeys<FileRouteTableSourceOptions>({
  path: true, router: true, maxBytes: true, debounceMs: true, settleMs: true, pollMs: true, log: true,
});

/**
 * A route table from a watched file. Each valid content replaces the router's table whole (a new
 * version); an invalid one is rejected whole, logged, counted (once per distinct failure: see
 * WatchedFileStatus.errors), shown in status() and in `govmap_route_table_source_*`, and the
 * router keeps routing on its last good table. A file that cannot be read or parsed fails with
 * RouteTableSourceError (`GOVMAP_ROUTE_TABLE_SOURCE_FAILED`); one that breaks the schema with
 * RouteTableError (`GOVMAP_ROUTE_TABLE_INVALID`).
 */
export class FileRouteTableSource {
  readonly kind = 'file';
  readonly #file: WatchedFile;

  constructor(options: FileRouteTableSourceOptions) {
    refuseUnknownOptions(options, FILE_TABLE_SOURCE_OPTIONS, 'FileRouteTableSource');
    const router = options.router;
    this.#file = new WatchedFile({
      path: options.path,
      role: 'route table file',
      error: (source, rule, cause) => new RouteTableSourceError(source, rule, cause),
      maxBytes: options.maxBytes,
      debounceMs: options.debounceMs,
      settleMs: options.settleMs,
      pollMs: options.pollMs,
      log: options.log,
      apply: (document) => {
        router.replaceTable(new RouteTable(document, { version: router.table.version + 1, origin: `file ${this.#file.path}` }));
      },
    });
  }

  /** Loads the file (throws if missing or invalid; the router keeps its table) and watches it. */
  start(): Promise<void> {
    return this.#file.start();
  }

  reload(): Promise<boolean> {
    return this.#file.check();
  }

  status(): WatchedFileStatus {
    return this.#file.status();
  }

  close(): void {
    this.#file.close();
  }
}

/** `<key>` holds `{"value": <route table document>, "version": n, "updatedAt": "<iso>", "reason": "...", "actor"?: "..."}`. */
const keySchema = z.strictObject({
  value: z.unknown(),
  version: z.number().int().min(1),
  updatedAt: z.iso.datetime({ offset: true }),
  reason: z.string().max(1000),
  actor: z.string().max(200).optional(),
});

/** Writes retried over a concurrent writer before the conflict is reported. */
const MAX_WRITE_ATTEMPTS = 5;

/** The version a stored value holds, or null when it holds none (absent or malformed). */
function versionOf(value: string): number | null {
  const parsed = keySchema.safeParse(safeJson(value));
  return parsed.success ? parsed.data.version : null;
}

export interface StateRouteTableSourceOptions {
  readonly store: StateStore;
  readonly router: Router;
  /** Default `/govmap/routes/default`. */
  readonly key?: string;
  /** How long start() waits for the store, ms, at most 2,147,483,647. Default 5000. */
  readonly startTimeoutMs?: number;
  readonly log?: (message: string, error?: unknown) => void;
}

/** Every key of StateRouteTableSourceOptions (the compiler checks the two stay the same): any other is refused. */
const STATE_TABLE_SOURCE_OPTIONS = optionKeys<StateRouteTableSourceOptions>({
  store: true, router: true, key: true, startTimeoutMs: true, log: true,
});

export interface StateRouteTableSourceStatus {
  readonly store: string;
  readonly key: string;
  readonly connected: boolean;
  /** Version of the key last applied, or null (none yet: the router's initial table is in force). */
  readonly version: number | null;
  /** Values rejected (malformed, invalid table) or skipped as stale (older than the one applied). */
  readonly errors: number;
  readonly healthy: boolean;
  readonly lastError: { readonly message: string; readonly at: string } | null;
}

/**
 * A route table kept in one key of a state store (etcd), watched: every process routes on the
 * same table, and an edit reaches them all. An invalid value is rejected (logged, counted) and
 * the router keeps its last good table; so does an unreachable store.
 *
 * Values are ordered by the store's revision (etcd's mod_revision), not by the `version` inside
 * them: `version` restarts at 1 when the key is deleted and written again, while the store's
 * revision only grows. A value at a revision below the one applied is stale: skipped, logged
 * and counted; the same revision again (a re-list after a reconnection) is already known.
 */
export class StateRouteTableSource {
  readonly #store: StateStore;
  readonly #router: Router;
  readonly #key: string;
  readonly #startTimeoutMs: number;
  readonly #log: (message: string, error?: unknown) => void;
  #watch: StateWatch | null = null;
  #connected = false;
  #version: number | null = null;
  /** Store revision of the value last applied or rejected; null when none, or the key was deleted. */
  #revision: bigint | null = null;
  #errors = 0;
  #healthy = true;
  #lastError: StateRouteTableSourceStatus['lastError'] = null;

  constructor(options: StateRouteTableSourceOptions) {
    refuseUnknownOptions(options, STATE_TABLE_SOURCE_OPTIONS, 'StateRouteTableSource');
    const key = options.key ?? '/govmap/routes/default';
    if (typeof key !== 'string' || !key.startsWith('/') || key.endsWith('/')) throw new ConfigurationError('key', 'a state key starts with "/" and names one key', key);
    this.#store = options.store;
    this.#router = options.router;
    this.#key = key;
    this.#startTimeoutMs = timerOption('startTimeoutMs', options.startTimeoutMs ?? 5000, 1);
    this.#log = options.log ?? ((message, error) => console.error(message, error ?? ''));
  }

  get kind(): string {
    return this.#store.kind;
  }

  /**
   * Watches the key; resolves once its current value (or its absence) is known. Rejects with
   * RouteTableSourceError when the store has not answered within `startTimeoutMs`; the watch is
   * then closed and nothing from it is applied later: the router keeps the table it had, and a
   * caller may start() again.
   */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      // Set once start() has rejected: a caller told "no table from this source" goes on with the
      // routes it has, and a store answering late must not change them under it.
      let abandoned = false;
      let watch: StateWatch | null = null;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        abandoned = true;
        this.#connected = false;
        if (this.#watch === watch) this.#watch = null;
        watch?.close().catch((error: unknown) => this.#log(`govmap routing: ${this.#store.kind} ${this.#key}: closing the watch of a start that timed out failed`, error));
        reject(new RouteTableSourceError(this.#where(), `no answer from the store within ${this.#startTimeoutMs} ms; the watch is closed and nothing from this source will be applied (the router keeps its table): start() again once the store is reachable`));
      }, this.#startTimeoutMs);
      // A prefix watch on the exact key also sees `<key>-other`; those entries are ignored.
      watch = this.#store.watch(this.#key, {
        onReset: (entries) => {
          if (abandoned) return;
          this.#connected = true;
          const entry = entries.find((e) => e.key === this.#key);
          if (entry !== undefined) this.#apply(entry);
          else this.#revision = null; // deleted while we were away: whatever comes next is new
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            resolve();
          }
        },
        onEvent: (event) => {
          if (abandoned) return;
          if (event.type === 'put' && event.entry.key === this.#key) {
            this.#apply(event.entry);
          } else if (event.type === 'delete' && event.key === this.#key) {
            // The store promises that a re-created key's revisions exceed its old ones, but a
            // watch delivers in order anyway: forgetting costs nothing and covers a store that
            // numbers a re-created key afresh (the file store can, within one microsecond).
            this.#revision = null;
            this.#log(`govmap routing: ${this.#key} was deleted; keeping route table v${this.#router.table.version}`);
          }
        },
        onStatus: (status, error) => {
          if (abandoned) return;
          this.#connected = status === 'connected';
          if (status === 'disconnected') this.#log(`govmap routing: ${this.#store.kind} ${this.#key}: disconnected; routing on the last known table`, error);
        },
      });
      this.#watch = watch;
    });
  }

  /**
   * Writes a new table (validated first: an invalid table never reaches the store). Without
   * `expectedVersion`, a concurrent writer that wins the compare-and-set is retried over
   * (a few times); with it, the write is conditional and never retried.
   * @returns the key's new version
   * @throws RouteTableVersionConflictError when `expectedVersion` is given and not current, or other writers kept winning
   */
  async put(document: unknown, request: { readonly actor: string; readonly reason: string; readonly expectedVersion?: number | null }): Promise<number> {
    new RouteTable(document, { origin: `write of ${this.#key}` });
    // What every watcher's keySchema accepts: a value it refuses would be written, returned as a
    // new version, and then rejected by every process, each keeping its old table.
    if (typeof request.reason !== 'string' || request.reason.length > 1000) throw new ConfigurationError('reason', 'a string of at most 1000 characters', request.reason === undefined ? undefined : typeof request.reason === 'string' ? `${request.reason.length} characters` : typeof request.reason);
    if (request.actor !== undefined && (typeof request.actor !== 'string' || request.actor.length > 200)) throw new ConfigurationError('actor', 'a string of at most 200 characters', typeof request.actor === 'string' ? `${request.actor.length} characters` : typeof request.actor);
    for (let attempt = 1; ; attempt++) {
      const current = await this.#store.get(this.#key);
      const version = current === undefined ? null : versionOf(current.value);
      if (request.expectedVersion !== undefined && request.expectedVersion !== version) throw new RouteTableVersionConflictError(this.#key, request.expectedVersion, version);
      const next = (version ?? 0) + 1;
      const value = JSON.stringify({ value: document, version: next, updatedAt: new Date().toISOString(), reason: request.reason, actor: request.actor });
      const result = await this.#store.compareAndSet(this.#key, value, current?.revision ?? null);
      if (result.ok) return next;
      if (request.expectedVersion !== undefined || attempt >= MAX_WRITE_ATTEMPTS) {
        throw new RouteTableVersionConflictError(this.#key, request.expectedVersion ?? version, result.current === undefined ? null : versionOf(result.current.value));
      }
    }
  }

  status(): StateRouteTableSourceStatus {
    return { store: this.#store.kind, key: this.#key, connected: this.#connected, version: this.#version, errors: this.#errors, healthy: this.#healthy, lastError: this.#lastError };
  }

  async close(): Promise<void> {
    const watch = this.#watch;
    this.#watch = null;
    await watch?.close();
  }

  #apply(entry: StateEntry): void {
    const known = this.#revision;
    if (known !== null && entry.revision === known) return; // a re-list handing back what we already applied or rejected
    const stale = known !== null && entry.revision < known;
    if (!stale) this.#revision = entry.revision;
    try {
      const parsed = keySchema.safeParse(safeJson(entry.value));
      if (!parsed.success) throw new RouteTableSourceError(this.#where(), `value is not {"value","version","updatedAt","reason"}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
      if (stale) {
        // Malformed values are reported as such first (the file store hands a hand-edited file over
        // at revision 0); a well-formed one this old would roll the router back: skipped.
        this.#reject(`stale value (v${parsed.data.version} at store revision ${entry.revision}) is older than store revision ${known} already applied; skipped`);
        return;
      }
      const table = new RouteTable(parsed.data.value, { version: this.#router.table.version + 1, origin: `${this.#store.kind} ${this.#key} v${parsed.data.version}` });
      this.#router.replaceTable(table);
      this.#version = parsed.data.version;
      this.#healthy = true;
    } catch (error) {
      this.#healthy = false;
      this.#reject(error instanceof GovMapError || error instanceof Error ? error.message : String(error));
    }
  }

  #reject(message: string): void {
    this.#errors++;
    this.#lastError = { message, at: new Date().toISOString() };
    this.#log(`govmap routing: ${this.#key} rejected; routing on the last good table v${this.#router.table.version}: ${message}`);
  }

  #where(): string {
    return `route table key ${this.#key} (${this.#store.kind})`;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
