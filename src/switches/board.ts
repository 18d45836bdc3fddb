import { AsyncLocalStorage } from 'node:async_hooks';
import { ConfigurationError } from '../map/errors.ts';
import { canonicalJson, definitionToJson, parseSwitchDefinition, parseSwitchSet, SWITCH_NAME } from './definition.ts';
import type { SwitchDefinition, SwitchSetInput } from './definition.ts';
import { SwitchConfigError, SwitchNameError, SwitchReplicaReadOnlyError, SwitchVersionConflictError } from './errors.ts';
import { SwitchSnapshot, SwitchView } from './snapshot.ts';
import type { SwitchContext, SwitchEvaluation } from './targeting.ts';
import { closestOption, optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

/** Who changes a switch set and why: recorded on the snapshot and in the audit event. */
export interface SwitchChangeRequest {
  /** `admin:<token id>`, `file:<path>`, `etcd`, `deploy-bot`... Required: an anonymous change is not auditable. */
  readonly actor: string;
  readonly reason: string;
  /** Default `api`. */
  readonly source?: string;
  /** Apply only if the board is still at this version (optimistic concurrency for admin edits). */
  readonly expectedVersion?: number;
}

/** What listeners receive after every swap. */
export interface SwitchChange {
  readonly board: string;
  readonly previous: SwitchSnapshot;
  readonly next: SwitchSnapshot;
  /** Switches added, removed or modified, sorted. Never empty: a no-op change makes no version, and a replica adopting a version that changes nothing calls no listener. */
  readonly changed: readonly string[];
}

/** The audit event of one change (who, when, old and new version, reason). */
export interface SwitchAuditEvent {
  readonly type: 'SWITCH_CHANGE';
  readonly board: string;
  readonly actor: string;
  readonly reason: string;
  readonly source: string;
  readonly oldVersion: number;
  readonly newVersion: number;
  readonly changed: readonly string[];
  /** ISO-8601. */
  readonly at: string;
  /** Nanoseconds since the epoch as a decimal string (the audit contract's timestamp). */
  readonly timestamp: string;
}

/**
 * Where change events go when audit is configured (the audit part's recorder, a Kafka topic...).
 * Called after the swap, off the readers' path; a failure is counted and logged, and never
 * undoes the change (the change is already what every reader sees).
 */
export interface SwitchAuditHook {
  record(event: SwitchAuditEvent): void | Promise<void>;
}

/** A snapshot as it travels between threads and processes: plain JSON. */
export interface PublishedSnapshot {
  readonly board: string;
  readonly version: number;
  readonly updatedAt: string;
  readonly actor: string;
  readonly reason: string;
  readonly source: string;
  readonly switches: Readonly<Record<string, unknown>>;
}

export interface SwitchBoardOptions {
  /** Names the board in metrics, audit events and the worker channel. Default `switches`. */
  readonly name?: string;
  /** The first snapshot's switches (validated). Default: none. */
  readonly initial?: SwitchSetInput;
  readonly audit?: SwitchAuditHook;
  /** Where audit and listener failures are reported. Default `console.error`. */
  readonly log?: (message: string, error?: unknown) => void;
  /** Milliseconds since the epoch, for `updatedAt`. Default `Date.now`. */
  readonly clock?: () => number;
  /**
   * A board that only follows another one (a worker thread's copy of the main thread's board):
   * it starts empty at version 0, takes the versions of the snapshots it adopts, and refuses
   * local changes (they would fork it from its primary). Default false.
   */
  readonly replica?: boolean;
}

/** Every key of SwitchBoardOptions (the compiler checks the two stay the same): any other is refused. */
const BOARD_OPTIONS = optionKeys<SwitchBoardOptions>({
  name: true, initial: true, audit: true, log: true, clock: true, replica: true,
});

/**
 * The holder of the current switch snapshot: one reference, swapped whole on every change.
 *
 * Invariants:
 * - `snapshot.version` only grows; each swap is version + 1 (a replica adopts its primary's numbers).
 * - a change that validates is applied whole; one that does not throws and changes nothing.
 * - inside `run()`, every read (isOn, evaluate, view, the OpenFeature provider) answers from the
 *   snapshot pinned when the run started, however many swaps happen meanwhile.
 */
export class SwitchBoard {
  readonly name: string;
  readonly replica: boolean;
  readonly #pinned = new AsyncLocalStorage<SwitchView>();
  /** Request contexts that carry this board's pin themselves (see `carryPinIn`). */
  readonly #pinCarriers: Array<() => SwitchView | undefined> = [];
  readonly #listeners = new Set<(change: SwitchChange) => void>();
  readonly #audit: SwitchAuditHook | undefined;
  readonly #log: (message: string, error?: unknown) => void;
  readonly #clock: () => number;
  #current: SwitchSnapshot;
  /** Counters read at scrape time. */
  readonly counters = { changes: 0, rejectedChanges: 0, auditErrors: 0, listenerErrors: 0 };

  constructor(options: SwitchBoardOptions = {}) {
    refuseUnknownOptions(options, BOARD_OPTIONS, 'SwitchBoard');
    const name = options.name ?? 'switches';
    if (typeof name !== 'string' || !SWITCH_NAME.test(name)) throw new ConfigurationError('name', 'a board name matches [A-Za-z][A-Za-z0-9_.-]{0,63}', name);
    this.name = name;
    this.#audit = options.audit;
    this.#log = options.log ?? ((message, error) => console.error(message, error ?? ''));
    this.#clock = options.clock ?? Date.now;
    this.replica = options.replica === true;
    if (this.replica && options.initial !== undefined) throw new ConfigurationError('initial', 'a replica board gets its switches from its primary only');
    const definitions = parseSwitchSet(options.initial ?? {}, `board "${name}" initial switches`);
    this.#current = new SwitchSnapshot(definitions, {
      version: this.replica ? 0 : 1,
      updatedAt: this.#now(),
      actor: 'init',
      reason: this.replica ? 'replica waiting for its primary' : 'initial switches',
      source: this.replica ? 'replica' : 'initial',
    });
  }

  /** The current snapshot (not the pinned one: use `view()` inside a request). */
  get snapshot(): SwitchSnapshot {
    return this.#current;
  }

  /**
   * Runs `fn` with the current snapshot pinned: everything `fn` starts, across any `await`,
   * reads that one version. Nested runs keep the outer pin (a request never sees two versions);
   * a nested `context` only changes whom targeting evaluates for.
   */
  run<T>(fn: () => T, context?: SwitchContext): T {
    const outer = this.#pin();
    if (outer !== undefined && context === undefined) return fn();
    if (outer !== undefined) return this.#pinned.run(new SwitchView(outer.snapshot, { ...outer.context, ...context }), fn);
    return this.#pinned.run(new SwitchView(this.#current, context ?? {}), fn);
  }

  /**
   * Runs `fn` with `view` pinned: re-enters a request's pin where the async context was lost
   * (a framework hook that runs outside the request's continuation). `view` comes from `view()`.
   */
  runWith<T>(view: SwitchView, fn: () => T): T {
    return this.#pinned.run(view, fn);
  }

  /**
   * Lets an async context that already travels with every request carry this board's pin, so a
   * request costs one async-context frame instead of two (each new frame copies the others:
   * about 1 KB and a microsecond per request in the reference service). `carrier` returns the
   * view pinned for the current request, or undefined outside one. A pin made by `run()` or
   * `runWith()` still comes first. The X-Biz-Tag middleware registers itself here.
   */
  carryPinIn(carrier: () => SwitchView | undefined): void {
    if (!this.#pinCarriers.includes(carrier)) this.#pinCarriers.push(carrier);
  }

  /** The view pinned for the current async context: our own pin, else a carrier's. */
  #pin(): SwitchView | undefined {
    const own = this.#pinned.getStore();
    if (own !== undefined) return own;
    const carriers = this.#pinCarriers;
    for (let i = 0; i < carriers.length; i++) {
      const carried = carriers[i]!();
      if (carried !== undefined) return carried;
    }
    return undefined;
  }

  /**
   * The pinned view inside `run()`; elsewhere a view of the current snapshot. A `context` given
   * inside a run is merged over the pinned one (it refines whom targeting evaluates for; the
   * snapshot stays the pinned one).
   */
  view(context?: SwitchContext): SwitchView {
    const pinned = this.#pin();
    if (pinned !== undefined) return context === undefined ? pinned : new SwitchView(pinned.snapshot, { ...pinned.context, ...context });
    return new SwitchView(this.#current, context ?? {});
  }

  /** Whether the view is pinned (inside `run()`). */
  get pinned(): boolean {
    return this.#pin() !== undefined;
  }

  isOn(name: string, context?: SwitchContext): boolean {
    const pinned = this.#pin();
    if (pinned !== undefined) return context === undefined ? pinned.isOn(name) : pinned.snapshot.isOn(name, { ...pinned.context, ...context });
    return this.#current.isOn(name, context ?? {});
  }

  evaluate(name: string, context?: SwitchContext): SwitchEvaluation {
    return this.view(context).evaluate(name);
  }

  /** Replaces the whole set. Returns the new snapshot, or null when nothing changed (no new version). */
  replace(switches: SwitchSetInput, change: SwitchChangeRequest): SwitchSnapshot | null {
    return this.#refusalsCounted(() => {
      const origin = originOf(change);
      return this.#swap(parseSwitchSet(switches, origin), change);
    });
  }

  /**
   * Sets some switches and removes others, leaving the rest as they are. A name in both lists is
   * refused (SwitchConfigError): which one was meant cannot be told, so neither is guessed.
   */
  update(patch: { readonly set?: SwitchSetInput; readonly remove?: readonly string[] }, change: SwitchChangeRequest): SwitchSnapshot | null {
    return this.#refusalsCounted(() => {
      const origin = originOf(change);
      assertPatch(patch, origin);
      const next = new Map(this.#definitionsOf(this.#current));
      const set = parseSwitchSet(patch.set ?? {}, origin);
      const given: unknown = patch.remove ?? [];
      // A string is iterable: `remove: 'fx'` removed switches "f" and "x" and left "fx" in force.
      if (!Array.isArray(given)) {
        throw new SwitchConfigError(origin, [{ path: 'remove', rule: `a list of switch names, e.g. [${JSON.stringify(typeof given === 'string' ? given : 'name')}]` }]);
      }
      const remove = patch.remove ?? [];
      for (const name of remove) {
        if (typeof name !== 'string' || !SWITCH_NAME.test(name)) throw new SwitchNameError(name);
      }
      // A misspelt name removed nothing and answered like a success: the switch the operator
      // meant to take away stayed in force.
      const issues = remove.flatMap((name, index) => {
        const path = `remove[${index}]`;
        if (set.has(name)) return [{ path, rule: `"${name}" is also in set: a switch is either set or removed by one change, not both` }];
        if (next.has(name)) return [];
        const meant = closestOption(name, next.keys());
        return [{ path, rule: `no switch "${name}" on board "${this.name}"${meant === undefined ? '' : ` (did you mean "${meant}"?)`}: nothing to remove` }];
      });
      if (issues.length > 0) throw new SwitchConfigError(origin, issues);
      for (const name of remove) next.delete(name);
      for (const [name, definition] of set) next.set(name, definition);
      return this.#swap(next, change);
    });
  }

  /** Sets one switch. */
  set(name: string, definition: unknown, change: SwitchChangeRequest): SwitchSnapshot | null {
    return this.#refusalsCounted(() => {
      if (typeof name !== 'string' || !SWITCH_NAME.test(name)) throw new SwitchNameError(name);
      const origin = originOf(change);
      const parsed = parseSwitchDefinition(name, definition, origin);
      const next = new Map(this.#definitionsOf(this.#current));
      next.set(name, parsed);
      return this.#swap(next, change);
    });
  }

  /**
   * Installs a snapshot made by another board (the primary of a worker replica, another
   * process through etcd) with that board's version, if it is newer than ours. No audit event:
   * the change was audited where it was made. Listeners are called only if a switch differs.
   * @returns whether it was installed
   */
  adopt(published: PublishedSnapshot): boolean {
    return this.#refusalsCounted(() => {
      // A malformed message on the worker channel failed here as a bare TypeError.
      if (published === null || typeof published !== 'object') {
        throw new SwitchConfigError(`snapshot adopted by board "${this.name}"`, [{ path: '(root)', rule: 'a published snapshot (board.publish()): an object with version and switches' }]);
      }
      if (!(Number.isSafeInteger(published.version) && published.version > this.#current.version)) return false;
      const definitions = parseSwitchSet(published.switches, `replica of board "${published.board}" v${published.version}`);
      const previous = this.#current;
      const next = new SwitchSnapshot(definitions, published);
      const changed = diff(previous, next);
      this.#current = next;
      this.counters.changes++;
      // The primary's version is taken all the same (logs from every thread agree on it), but a
      // replica that missed a change and its revert has nothing new to tell its listeners.
      if (changed.length > 0) this.#notify({ board: this.name, previous, next, changed });
      return true;
    });
  }

  /** The current snapshot as plain JSON, for another thread or process to `adopt`. */
  publish(): PublishedSnapshot {
    const s = this.#current;
    return { board: this.name, version: s.version, updatedAt: s.updatedAt, actor: s.actor, reason: s.reason, source: s.source, switches: s.toJSON().switches };
  }

  /** Calls `listener` after every swap, synchronously. Returns the unsubscribe function. */
  subscribe(listener: (change: SwitchChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Runs one call of the write API, counting it in `rejectedChanges` if it throws. Every throw of
   * these calls is a refusal (listener and audit failures are caught where they happen), so one
   * wrapper counts each refusal once, whichever check made it.
   */
  #refusalsCounted<T>(write: () => T): T {
    try {
      return write();
    } catch (error) {
      this.counters.rejectedChanges++;
      throw error;
    }
  }

  #definitionsOf(snapshot: SwitchSnapshot): Map<string, SwitchDefinition> {
    return new Map(snapshot.names().map((name) => [name, snapshot.get(name)!]));
  }

  #swap(definitions: ReadonlyMap<string, SwitchDefinition>, change: SwitchChangeRequest): SwitchSnapshot | null {
    if (this.replica) throw new SwitchReplicaReadOnlyError(this.name);
    const previous = this.#current;
    if (change.expectedVersion !== undefined && change.expectedVersion !== previous.version) {
      throw new SwitchVersionConflictError(`board "${this.name}"`, change.expectedVersion, previous.version);
    }
    const candidate = new SwitchSnapshot(definitions, {
      version: previous.version + 1,
      updatedAt: this.#now(),
      actor: change.actor,
      reason: change.reason,
      source: change.source ?? 'api',
    });
    const changed = diff(previous, candidate);
    if (changed.length === 0) return null;
    this.#current = candidate;
    this.counters.changes++;
    this.#notify({ board: this.name, previous, next: candidate, changed });
    this.#record(previous, candidate, changed);
    return candidate;
  }

  #notify(change: SwitchChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (error) {
        this.counters.listenerErrors++;
        this.#log(`govmap switches: board "${this.name}": a change listener threw (the change stands)`, error);
      }
    }
  }

  #record(previous: SwitchSnapshot, next: SwitchSnapshot, changed: readonly string[]): void {
    if (this.#audit === undefined) return;
    const event: SwitchAuditEvent = Object.freeze({
      type: 'SWITCH_CHANGE',
      board: this.name,
      actor: next.actor,
      reason: next.reason,
      source: next.source,
      oldVersion: previous.version,
      newVersion: next.version,
      changed,
      at: next.updatedAt,
      timestamp: nowNs(),
    });
    const failed = (error: unknown): void => {
      this.counters.auditErrors++;
      this.#log(`govmap switches: board "${this.name}": audit of change v${previous.version} -> v${next.version} failed`, error);
    };
    try {
      const pending = this.#audit.record(event);
      if (pending !== undefined && typeof pending.then === 'function') pending.then(undefined, failed);
    } catch (error) {
      failed(error);
    }
  }

  #now(): string {
    return new Date(this.#clock()).toISOString();
  }
}

/**
 * Checks a change request before anything is parsed (its actor names the origin of every
 * validation error) and returns that origin. `expectedVersion` must be a version a board can be
 * at: a string "3" from an If-Match header never equals version 3, and was reported as "expected
 * version 3 but found 3; re-read and retry", a retry that could never succeed.
 */
function originOf(change: SwitchChangeRequest): string {
  if (typeof change?.actor !== 'string' || change.actor.trim() === '') throw new ConfigurationError('change.actor', 'every switch change names who makes it', change?.actor);
  if (typeof change.reason !== 'string') throw new ConfigurationError('change.reason', 'every switch change says why (a string)', change.reason);
  const expected: unknown = change.expectedVersion;
  if (expected !== undefined && !Number.isSafeInteger(expected)) {
    throw new ConfigurationError('change.expectedVersion', 'a whole number (the version read from board.snapshot.version), or absent for an unconditional change', expected);
  }
  return `${change.source ?? 'api'} (${change.actor})`;
}

const PATCH_FIELDS = ['set', 'remove'];

/**
 * Refuses a patch that is not `{ set?, remove? }`. From plain JavaScript, or a JSON body passed
 * on as is, null failed as a TypeError, and a string, a list or a misspelt field (`sets`) changed
 * nothing and answered like a success: the change the operator meant was never made.
 */
function assertPatch(patch: unknown, origin: string): void {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    const what = patch === null || patch === undefined ? String(patch) : Array.isArray(patch) ? 'an array' : `a ${typeof patch}`;
    throw new SwitchConfigError(origin, [{ path: '(root)', rule: `the patch is an object { set?, remove? }, not ${what}` }]);
  }
  const issues = Object.keys(patch)
    .filter((field) => !PATCH_FIELDS.includes(field))
    .map((field) => {
      const meant = closestOption(field, PATCH_FIELDS);
      return { path: field.slice(0, 80), rule: `not a field of the patch${meant === undefined ? '' : ` (did you mean "${meant}"?)`}; its fields are set and remove` };
    });
  if (issues.length > 0) throw new SwitchConfigError(origin, issues);
}

/** Names whose definitions differ between two snapshots (added, removed or modified), sorted. */
export function diff(previous: SwitchSnapshot, next: SwitchSnapshot): string[] {
  const names = new Set([...previous.names(), ...next.names()]);
  const changed: string[] = [];
  for (const name of names) {
    const a = previous.get(name);
    const b = next.get(name);
    if (a === undefined || b === undefined || canonical(a) !== canonical(b)) changed.push(name);
  }
  return changed.sort();
}

function canonical(definition: SwitchDefinition): string {
  return canonicalJson(definitionToJson(definition));
}

function nowNs(): string {
  // performance.timeOrigin + now() has microsecond resolution; the contract wants ns as a decimal string.
  return (BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n).toString();
}
