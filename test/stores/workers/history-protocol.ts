/** Messages between the linearizability test and its history workers. */
import type { RecordOf } from '../../../src/stores/index.ts';

export type OpKind = 'get' | 'set' | 'add' | 'cas' | 'delete' | 'cad';

/**
 * One operation: on key `key` of its history; `a` = value / delta / next, `b` = expected
 * (negative = absent, for cas). Record values are encoded as a bigint (see encodeRecord).
 * `pause` = busy-loop iterations before the call, to vary the interleaving.
 */
export interface OpSpec {
  readonly kind: OpKind;
  readonly key: number;
  readonly a: bigint;
  readonly b: bigint;
  readonly pause: number;
}

export interface HistorySpec {
  readonly id: number;
  /** Operations per worker thread. */
  readonly threads: readonly (readonly OpSpec[])[];
}

export interface HistoryBatch {
  readonly histories: readonly HistorySpec[];
}

export interface OpResult {
  readonly call: number;
  readonly ret: number;
  readonly output: bigint | string | boolean | null;
}

/** The record the record-store histories use: an account with two fields written together. */
export const ACCOUNT_LAYOUT = { balance: 'int64', version: 'int32' } as const;
export type Account = RecordOf<typeof ACCOUNT_LAYOUT>;

/** Record values in the specs are small bigints n: balance n * 1000, version n (never torn). */
export function decodeRecord(n: bigint): Account {
  return { balance: n * 1000n, version: Number(n) };
}

/** A record as the checker's model value: both fields, so a torn read shows. */
export function encodeRecord(value: Account): string {
  return `${value.balance}/${value.version}`;
}
