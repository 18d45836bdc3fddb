import { ValidationError, ValidatorFailedError } from './errors.ts';
import type { OpType, Outcome } from './observer.ts';
import type { MapCounters } from './stats.ts';
import { toRejection } from './validator.ts';
import type { DeleteValidator, Validator } from './validator.ts';

/**
 * What a governed map (in process, or over Redis) hands the admission step: its name, its
 * counters, its validators, and how it reports a refused write to its observers.
 */
export interface WriteAdmission<K, V> {
  readonly name: string;
  readonly counters: MapCounters;
  readonly validate: Validator<K, V>;
  readonly validateDelete: DeleteValidator<K, V> | undefined;
  /** Tells the observers about a refused write (`value`: the refused next value, or the kept previous one). */
  readonly report: (op: OpType, key: K, outcome: Outcome, reason: string, value: V) => void;
}

/** A map's admission from its options (name and validators), its counters and its reporting. */
export function writeAdmission<K, V>(
  options: { readonly name: string; readonly validate: Validator<K, V>; readonly validateDelete?: DeleteValidator<K, V> | undefined },
  counters: MapCounters,
  report: WriteAdmission<K, V>['report'],
): WriteAdmission<K, V> {
  return { name: options.name, counters, validate: options.validate, validateDelete: options.validateDelete, report };
}

/**
 * The rule every governed write obeys, written once for every map kind: run the validator;
 * a validator that throws is VALIDATOR_FAILED (counted as an error), one that refuses is its
 * reason (counted as rejected); either way the observers hear of it and the caller gets the
 * typed error. Nothing is written before this returns.
 * @throws ValidatorFailedError | ValidationError
 */
export function admitStore<K, V>(map: WriteAdmission<K, V>, key: K, next: V, previous: V | undefined): void {
  let verdict;
  try {
    verdict = map.validate(key, next, previous);
  } catch (cause) {
    map.counters.storesError++;
    map.counters.recordRejection('VALIDATOR_FAILED');
    map.report('STORE', key, 'error', 'VALIDATOR_FAILED', next);
    throw new ValidatorFailedError(map.name, key, cause);
  }
  if (isThenable(verdict)) {
    map.counters.storesError++;
    map.counters.recordRejection('VALIDATOR_FAILED');
    map.report('STORE', key, 'error', 'VALIDATOR_FAILED', next);
    throw asyncVerdict(map.name, key, verdict, 'write');
  }
  const rejection = toRejection(verdict);
  if (rejection !== null) {
    map.counters.storesRejected++;
    map.counters.recordRejection(rejection.reason);
    map.report('STORE', key, 'rejected', rejection.reason, next);
    throw new ValidationError(map.name, key, rejection.reason, rejection.detail);
  }
}

/**
 * The same for a delete of a key holding `previous`, when the map has a delete validator (a
 * throwing or refusing one is counted as a rejected delete).
 * @throws ValidatorFailedError | ValidationError
 */
export function admitDelete<K, V>(map: WriteAdmission<K, V>, key: K, previous: V): void {
  const validateDelete = map.validateDelete;
  if (validateDelete === undefined) return;
  let verdict;
  try {
    verdict = validateDelete(key, previous);
  } catch (cause) {
    map.counters.deletesRejected++;
    map.counters.recordRejection('VALIDATOR_FAILED');
    map.report('DELETE', key, 'error', 'VALIDATOR_FAILED', previous);
    throw new ValidatorFailedError(map.name, key, cause, 'threw', 'delete');
  }
  if (isThenable(verdict)) {
    map.counters.deletesRejected++;
    map.counters.recordRejection('VALIDATOR_FAILED');
    map.report('DELETE', key, 'error', 'VALIDATOR_FAILED', previous);
    throw asyncVerdict(map.name, key, verdict, 'delete');
  }
  const rejection = toRejection(verdict);
  if (rejection !== null) {
    map.counters.deletesRejected++;
    map.counters.recordRejection(rejection.reason);
    map.report('DELETE', key, 'rejected', rejection.reason, previous);
    throw new ValidationError(map.name, key, rejection.reason, rejection.detail, 'delete');
  }
}

function isThenable(verdict: unknown): verdict is PromiseLike<unknown> {
  return typeof verdict === 'object' && verdict !== null && typeof (verdict as { then?: unknown }).then === 'function';
}

/**
 * An async validator's answer comes too late to be the write's verdict: the write is refused,
 * and the promise's own rejection is handled here so it cannot crash the process.
 */
function asyncVerdict(map: string, key: unknown, verdict: PromiseLike<unknown>, operation: 'write' | 'delete'): ValidatorFailedError {
  try {
    verdict.then(undefined, () => undefined);
  } catch {
    // A thenable whose then() throws has nothing left to handle.
  }
  return new ValidatorFailedError(map, key, undefined, 'async', operation);
}
