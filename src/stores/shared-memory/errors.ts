import { GovMapError, describeKey } from '../../map/errors.ts';

/**
 * Typed failures of the shared-memory stores. Each refusal leaves the map unchanged: checks run
 * before anything is written, and a write that cannot get its lock gives up before touching
 * the entry.
 */

/** A key that is not a string, or longer than the map's `maxKeyLength`. */
export class SharedKeyError extends GovMapError {
  constructor(key: unknown, rule: string) {
    super('GOVMAP_SHARED_KEY_INVALID', `shared-memory map: key ${describeKey(key)} ${rule}`, {
      key: typeof key === 'string' ? key.slice(0, 80) : typeof key,
    });
  }
}

/** A value outside what the layout can hold (not a bigint, outside int64, a missing field...). */
export class SharedValueError extends GovMapError {
  constructor(key: string, rule: string) {
    super('GOVMAP_SHARED_VALUE_INVALID', `shared-memory map: value for key ${describeKey(key)} ${rule}`, { key: key.slice(0, 80) });
  }
}

/** `add` would carry the value outside int64: refused, never wrapped. */
export class SharedInt64OverflowError extends GovMapError {
  constructor(key: string, current: bigint, delta: bigint) {
    super(
      'GOVMAP_SHARED_INT64_OVERFLOW',
      `shared-memory map: add(${describeKey(key)}, ${delta}) would carry ${current} outside int64; nothing was written`,
      { key: key.slice(0, 80), current: current.toString(), delta: delta.toString() },
    );
  }
}

/** The map holds `maxKeys` keys, or its buffer reached the size reserved for them. */
export class SharedMapFullError extends GovMapError {
  /** The map's `name` (its own, or its GovernedMap's), so an operator with several knows which to size up; null when it has none. */
  readonly map: string | null;

  /** `key` null: the space was needed for the map's own structure (a larger table). */
  constructor(key: string | null, maxKeys: number, why: string, map: string | null = null) {
    super(
      'GOVMAP_SHARED_MAP_FULL',
      `${mapLabel(map)}: cannot ${key === null ? 'grow' : `add key ${describeKey(key)}`}: ${why} (maxKeys ${maxKeys})`,
      { map, key: key?.slice(0, 80) ?? null, maxKeys },
    );
    this.map = map;
  }
}

/** More threads attached than the map's `maxThreads` owner slots. */
export class SharedThreadsExhaustedError extends GovMapError {
  /** The map's name, as on SharedMapFullError; null when it has none. */
  readonly map: string | null;

  constructor(maxThreads: number, map: string | null = null) {
    super(
      'GOVMAP_SHARED_TOO_MANY_THREADS',
      `${mapLabel(map)}: all ${maxThreads} owner slots are taken; close() stores no longer used, supervise(worker) so dead workers free theirs, or create the map with a larger maxThreads`,
      { map, maxThreads },
    );
    this.map = map;
  }
}

/**
 * A lock stayed held past `lockTimeoutMs` by an owner not reported dead. Locks are held for
 * well under a microsecond, so this means a worker died and nobody told the map (see
 * `supervise`). The operation was not applied.
 */
export class SharedLockTimeoutError extends GovMapError {
  /** The map's name, as on SharedMapFullError; null when it has none. */
  readonly map: string | null;

  constructor(what: string, holderThreadId: number, timeoutMs: number, map: string | null = null) {
    super(
      'GOVMAP_SHARED_LOCK_TIMEOUT',
      `${mapLabel(map)}: ${what} stayed locked by thread ${holderThreadId} for over ${timeoutMs} ms; if that worker died, its parent must call supervise(worker) (or recoverThread(threadId)) so its locks are recovered; nothing was written`,
      { map, what, holderThreadId, timeoutMs },
    );
    this.map = map;
  }
}

/** `attach` was given something that is not a live handle of a compatible map. */
export class SharedHandleError extends GovMapError {
  constructor(rule: string) {
    super('GOVMAP_SHARED_HANDLE_INVALID', `shared-memory map: invalid handle: ${rule}`, { rule });
  }
}

/** The store was closed in this thread; attach again to use the map. */
export class SharedStoreClosedError extends GovMapError {
  constructor(operation: string) {
    super('GOVMAP_SHARED_STORE_CLOSED', `shared-memory map: ${operation}() called after close() in this thread`, { operation });
  }
}

/** How a message names the map: an operator with several must know which one to act on. */
function mapLabel(map: string | null): string {
  return map === null ? 'shared-memory map' : `shared-memory map "${map}"`;
}
