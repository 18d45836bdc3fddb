import { GovMapError, describeKey } from '../map/errors.ts';

/** One problem found in a switch set: where (a dotted path) and which rule it broke. */
export interface SwitchIssue {
  /** `switches.fast-settlement.rollout.percent`, or `(root)`. */
  readonly path: string;
  readonly rule: string;
}

/**
 * A switch set (from a file, etcd, an admin call) broke the schema. Nothing was applied: the
 * board keeps serving the snapshot it had. `issues` lists every problem, not only the first.
 */
export class SwitchConfigError extends GovMapError {
  readonly issues: readonly SwitchIssue[];

  constructor(origin: string, issues: readonly SwitchIssue[]) {
    const shown = issues.slice(0, 5).map((i) => `${i.path}: ${i.rule}`).join('; ');
    const more = issues.length > 5 ? `; and ${issues.length - 5} more` : '';
    super('GOVMAP_SWITCH_CONFIG_INVALID', `switch set from ${origin} is invalid and was not applied: ${shown}${more}`, {
      origin,
      issues: issues.map((i) => ({ path: i.path, rule: i.rule })),
    });
    this.issues = Object.freeze([...issues]);
  }
}

/** A switch source could not read its input (missing file, unreadable, too large, etcd down). */
export class SwitchSourceError extends GovMapError {
  constructor(source: string, rule: string, cause?: unknown) {
    super('GOVMAP_SWITCH_SOURCE_FAILED', `switch source ${source}: ${rule}`, { source, rule }, cause === undefined ? undefined : { cause });
  }
}

/** A conditional change named a version the board (or etcd key) is no longer at. Nothing changed. */
export class SwitchVersionConflictError extends GovMapError {
  constructor(what: string, expected: number | bigint | null, actual: number | bigint | null) {
    super(
      'GOVMAP_SWITCH_VERSION_CONFLICT',
      `${what}: expected version ${expected === null ? '(absent)' : String(expected)} but found ${actual === null ? '(absent)' : String(actual)}; re-read and retry`,
      { what, expected: expected === null ? null : String(expected), actual: actual === null ? null : String(actual) },
    );
  }
}

/** A switch name outside `[A-Za-z][A-Za-z0-9_.-]{0,63}`. */
export class SwitchNameError extends GovMapError {
  constructor(name: unknown) {
    super('GOVMAP_SWITCH_NAME_INVALID', `switch name ${describeKey(name)} is invalid: names match [A-Za-z][A-Za-z0-9_.-]{0,63}`, {
      name: typeof name === 'string' ? name.slice(0, 80) : String(name),
    });
  }
}

/** A local change on a replica board: replicas follow their primary and change only through it. */
export class SwitchReplicaReadOnlyError extends GovMapError {
  constructor(board: string) {
    super('GOVMAP_SWITCH_REPLICA_READONLY', `board "${board}" is a replica: change its primary (the main thread's board), not the replica`, { board });
  }
}
