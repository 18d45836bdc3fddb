import { ConfigurationError } from './errors.ts';

/**
 * The business validator: the one gate every write passes. The specification forbids a
 * bare, unvalidated store, so a GovernedMap cannot be built without one.
 *
 * A validator answers `true` to accept, or names why it refuses: a reason code string
 * (`'BALANCE_UNDERFLOW'`), `reject(code, detail)`, or `false` (reason `VALIDATION_FAILED`).
 * Reason codes become metric labels and audit fields, so keep them a small, stable set.
 */
export interface Rejection {
  readonly reason: string;
  readonly detail?: string;
}

export type Verdict = true | false | string | Rejection;

/**
 * @param key the key written
 * @param next the value about to be stored
 * @param previous the value it replaces, `undefined` when the key is new
 */
export type Validator<K, V> = (key: K, next: V, previous: V | undefined) => Verdict;

/** Validates a delete; omitted means deletes are always allowed. */
export type DeleteValidator<K, V> = (key: K, previous: V | undefined) => Verdict;

export function reject(reason: string, detail?: string): Rejection {
  return detail === undefined ? { reason } : { reason, detail };
}

export const GENERIC_REJECTION_REASON = 'VALIDATION_FAILED';

/** Normalises a verdict: `null` for accept, else the rejection. */
export function toRejection(verdict: Verdict): Rejection | null {
  if (verdict === true) return null;
  if (verdict === false) return { reason: GENERIC_REJECTION_REASON };
  if (typeof verdict === 'string') return { reason: verdict.length > 0 ? verdict : GENERIC_REJECTION_REASON };
  if (typeof verdict === 'object' && verdict !== null && typeof verdict.reason === 'string') {
    return verdict.reason.length > 0 ? verdict : { ...verdict, reason: GENERIC_REJECTION_REASON };
  }
  // A validator that returns undefined (forgot to return) must not silently accept.
  return { reason: 'VALIDATOR_RETURNED_NO_VERDICT' };
}

/** All validators must accept; the first refusal wins. */
export function allOf<K, V>(...validators: Validator<K, V>[]): Validator<K, V> {
  // No validator at all would accept every write: the bare store the specification forbids.
  if (validators.length === 0) throw new ConfigurationError('allOf', 'needs at least one validator (with none, every write would pass)');
  for (const [i, validate] of validators.entries()) {
    if (typeof validate !== 'function') throw new ConfigurationError(`allOf[${i}]`, 'must be a validator function', validate);
  }
  return (key, next, previous) => {
    for (const validate of validators) {
      const verdict = validate(key, next, previous);
      if (verdict !== true) return verdict;
    }
    return true;
  };
}
