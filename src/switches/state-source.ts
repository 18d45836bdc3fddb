import { z } from 'zod';
import { ConfigurationError, GovMapError } from '../map/errors.ts';
import type { StateEntry, StateStore, StateWatch } from '../state/store.ts';
import type { SwitchBoard } from './board.ts';
import { parseSwitchDefinition, SWITCH_NAME, toIssues } from './definition.ts';
import { SwitchConfigError, SwitchNameError, SwitchSourceError, SwitchVersionConflictError } from './errors.ts';
import { timerOption } from './timer-option.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

/**
 * The value of `<prefix><name>` (DESIGN.md): `{"value":<definition>,"version":n,"updatedAt":"<iso>","reason":"..."}`,
 * plus an optional `actor`. `value` is a switch definition or its true/false shorthand.
 */
const keySchema = z.strictObject({
  value: z.unknown(),
  version: z.number().int().min(1),
  updatedAt: z.iso.datetime({ offset: true }),
  reason: z.string().max(1000),
  actor: z.string().max(200).optional(),
});

export interface StateSwitchSourceOptions {
  /** Any state store: etcd in production, memory or file for one host. */
  readonly store: StateStore;
  readonly board: SwitchBoard;
  /** Key prefix, ending in `/`. Default `/govmap/switch/`. */
  readonly prefix?: string;
  /** How long start() waits for the first content, ms, at most 2,147,483,647. Default 5000. */
  readonly startTimeoutMs?: number;
  /** Where rejected keys and connection changes are reported. Default `console.error`. */
  readonly log?: (message: string, error?: unknown) => void;
}

/** Every key of StateSwitchSourceOptions (the compiler checks the two stay the same): any other is refused. */
const STATE_SOURCE_OPTIONS = optionKeys<StateSwitchSourceOptions>({
  store: true, board: true, prefix: true, startTimeoutMs: true, log: true,
});

export interface SwitchWriteRequest {
  readonly actor: string;
  readonly reason: string;
  /** Write only if the switch is at this version (`null`: only if it does not exist yet). */
  readonly expectedVersion?: number | null;
}

export interface StateSwitchSourceStatus {
  readonly store: string;
  readonly prefix: string;
  readonly connected: boolean;
  readonly switches: number;
  /** Keys rejected (bad name, bad JSON, schema violation); each keeps its last good definition. */
  readonly errors: number;
  readonly lastError: { readonly key: string; readonly message: string; readonly at: string } | null;
}

interface Held {
  readonly definition: unknown;
  readonly version: number;
  readonly revision: bigint;
}

/** Bound on the read-compare-write retries of an unconditional put racing other writers. */
const MAX_WRITE_ATTEMPTS = 5;

/**
 * Switches kept one key per switch in a state store (etcd: `/govmap/switch/<name>`), watched.
 * Every change any process makes reaches every process's board as one new snapshot; a key that
 * fails validation is rejected alone (logged, counted) and its switch keeps its last good
 * definition. While the store is unreachable the board keeps the last set it knew.
 */
export class StateSwitchSource {
  readonly #store: StateStore;
  readonly #board: SwitchBoard;
  readonly #prefix: string;
  readonly #startTimeoutMs: number;
  readonly #log: (message: string, error?: unknown) => void;
  readonly #held = new Map<string, Held>();
  #watch: StateWatch | null = null;
  #connected = false;
  #errors = 0;
  #lastError: StateSwitchSourceStatus['lastError'] = null;

  constructor(options: StateSwitchSourceOptions) {
    refuseUnknownOptions(options, STATE_SOURCE_OPTIONS, 'StateSwitchSource');
    const prefix = options.prefix ?? '/govmap/switch/';
    if (typeof prefix !== 'string' || !prefix.startsWith('/') || !prefix.endsWith('/')) {
      throw new ConfigurationError('prefix', 'a key prefix starts and ends with "/"', prefix);
    }
    this.#store = options.store;
    this.#board = options.board;
    this.#prefix = prefix;
    this.#startTimeoutMs = timerOption('startTimeoutMs', options.startTimeoutMs ?? 5000, 1);
    this.#log = options.log ?? ((message, error) => console.error(message, error ?? ''));
  }

  get kind(): string {
    return this.#store.kind;
  }

  /**
   * Starts the watch and resolves once the store's current switches are on the board. Rejects
   * with SwitchSourceError if none arrive within `startTimeoutMs`; the watch keeps trying
   * (close() stops it), and the board serves what it had.
   */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(new SwitchSourceError(`${this.#store.kind} ${this.#prefix}`, `no switches received within ${this.#startTimeoutMs} ms (is the store reachable?)`));
      }, this.#startTimeoutMs);
      this.#watch = this.#store.watch(this.#prefix, {
        onReset: (entries) => {
          this.#connected = true;
          this.#reset(entries);
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            resolve();
          }
        },
        onEvent: (event) => {
          if (event.type === 'put') this.#put(event.entry);
          else this.#delete(event.key);
        },
        onStatus: (status, error) => {
          this.#connected = status === 'connected';
          if (status === 'disconnected') this.#log(`govmap switches: ${this.#store.kind} ${this.#prefix}: disconnected; serving the last known switches`, error);
        },
      });
    });
  }

  /**
   * Writes switch `name` (validated first: an invalid definition never reaches the store).
   * @returns the switch's new version
   * @throws SwitchVersionConflictError when `expectedVersion` is given and not current
   */
  async put(name: string, definition: unknown, request: SwitchWriteRequest): Promise<number> {
    try {
      return await this.#write(name, definition, request);
    } catch (error) {
      this.#countRefusal(error);
      throw error;
    }
  }

  async #write(name: string, definition: unknown, request: SwitchWriteRequest): Promise<number> {
    if (typeof name !== 'string' || !SWITCH_NAME.test(name)) throw new SwitchNameError(name);
    parseSwitchDefinition(name, definition, `write of ${this.#prefix}${name}`);
    // As the board asks of every change; and within what the key's schema reads back.
    if (typeof request?.actor !== 'string' || request.actor.trim() === '' || request.actor.length > 200) throw new ConfigurationError('request.actor', 'every switch change names who makes it (1-200 characters)', request?.actor);
    if (typeof request.reason !== 'string' || request.reason.length > 1000) throw new ConfigurationError('request.reason', 'every switch change says why (a string of at most 1000 characters)', request.reason);
    // A string "1" (from an HTTP header) never equals version 1: it was reported as a conflict with the version it names.
    const expected: unknown = request.expectedVersion;
    if (expected !== undefined && expected !== null && !Number.isSafeInteger(expected)) {
      throw new ConfigurationError('request.expectedVersion', 'a whole number (the switch\'s version), null (write only if absent), or absent', expected);
    }
    const key = this.#prefix + name;
    for (let attempt = 1; ; attempt++) {
      const current = await this.#store.get(key);
      const held = current === undefined ? undefined : this.#decode(current);
      const version = held?.version ?? null;
      if (request.expectedVersion !== undefined && request.expectedVersion !== version) {
        throw new SwitchVersionConflictError(`switch ${key}`, request.expectedVersion, version);
      }
      const next = (version ?? 0) + 1;
      const value = JSON.stringify({ value: definition, version: next, updatedAt: new Date().toISOString(), reason: request.reason, actor: request.actor });
      const result = await this.#store.compareAndSet(key, value, current?.revision ?? null);
      if (result.ok) return next;
      if (request.expectedVersion !== undefined || attempt >= MAX_WRITE_ATTEMPTS) {
        const actual = result.current === undefined ? null : (this.#decode(result.current)?.version ?? null);
        throw new SwitchVersionConflictError(`switch ${key}`, request.expectedVersion ?? version, actual);
      }
    }
  }

  /** Deletes switch `name`. @returns whether it existed */
  async remove(name: string): Promise<boolean> {
    if (typeof name !== 'string' || !SWITCH_NAME.test(name)) {
      const error = new SwitchNameError(name);
      this.#countRefusal(error);
      throw error;
    }
    return this.#store.delete(this.#prefix + name);
  }

  /**
   * A write this source refused never reaches the board, whose counter is the one
   * `govmap_switch_rejected_changes_total` reads: count it there, as the board counts its own
   * refusals. A store that is down refused nothing (the change may succeed on retry).
   */
  #countRefusal(error: unknown): void {
    if (error instanceof SwitchNameError || error instanceof SwitchConfigError || error instanceof ConfigurationError || error instanceof SwitchVersionConflictError) {
      this.#board.counters.rejectedChanges++;
    }
  }

  status(): StateSwitchSourceStatus {
    return { store: this.#store.kind, prefix: this.#prefix, connected: this.#connected, switches: this.#held.size, errors: this.#errors, lastError: this.#lastError };
  }

  async close(): Promise<void> {
    const watch = this.#watch;
    this.#watch = null;
    await watch?.close();
  }

  #reset(entries: readonly StateEntry[]): void {
    const seen = new Set<string>();
    for (const entry of entries) {
      const name = entry.key.slice(this.#prefix.length);
      seen.add(name);
      const held = this.#decode(entry);
      if (held !== undefined) this.#held.set(name, held);
    }
    for (const name of [...this.#held.keys()]) if (!seen.has(name)) this.#held.delete(name);
    this.#apply('etcd', 'switches re-listed from the store');
  }

  #put(entry: StateEntry): void {
    const held = this.#decode(entry);
    if (held === undefined) return;
    this.#held.set(entry.key.slice(this.#prefix.length), held);
    const meta = safeMeta(entry.value);
    this.#apply(meta.actor ?? this.#store.kind, meta.reason ?? `${entry.key} changed`);
  }

  #delete(key: string): void {
    if (!this.#held.delete(key.slice(this.#prefix.length))) return;
    this.#apply(this.#store.kind, `${key} deleted`);
  }

  #apply(actor: string, reason: string): void {
    const switches = Object.fromEntries([...this.#held].map(([name, held]) => [name, held.definition]));
    try {
      this.#board.replace(switches, { actor, reason, source: this.#store.kind });
    } catch (error) {
      // Each key was validated alone; a set-level rule (too many switches) can still refuse the whole.
      this.#reject(this.#prefix, error);
    }
  }

  /** The key's switch, or undefined (rejected: logged and counted, the last good definition stays). */
  #decode(entry: StateEntry): Held | undefined {
    const name = entry.key.slice(this.#prefix.length);
    try {
      if (!SWITCH_NAME.test(name)) throw new SwitchNameError(name);
      let json: unknown;
      try {
        json = JSON.parse(entry.value);
      } catch (cause) {
        throw new SwitchSourceError(entry.key, 'value is not JSON', cause);
      }
      const parsed = keySchema.safeParse(json);
      if (!parsed.success) throw new SwitchConfigError(entry.key, toIssues(parsed.error.issues));
      parseSwitchDefinition(name, parsed.data.value, entry.key);
      return { definition: parsed.data.value, version: parsed.data.version, revision: entry.revision };
    } catch (error) {
      this.#reject(entry.key, error);
      return undefined;
    }
  }

  #reject(key: string, error: unknown): void {
    this.#errors++;
    const message = error instanceof GovMapError || error instanceof Error ? error.message : String(error);
    this.#lastError = { key, message, at: new Date().toISOString() };
    this.#log(`govmap switches: ${key} rejected, its switch keeps its last good definition: ${message}`);
  }
}

/**
 * Who changed a key and why, as written in it. Blank counts as absent: the board refuses a change
 * without an actor, and the key (valid on its own) would then wait for the next unrelated change.
 */
function safeMeta(text: string): { actor?: string; reason?: string } {
  const given = (value: unknown): value is string => typeof value === 'string' && value.trim() !== '';
  try {
    const json = JSON.parse(text) as { actor?: unknown; reason?: unknown };
    return {
      ...(given(json.actor) ? { actor: json.actor } : {}),
      ...(given(json.reason) ? { reason: json.reason } : {}),
    };
  } catch {
    return {};
  }
}
