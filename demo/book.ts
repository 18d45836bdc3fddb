import type { MeasuredMap } from '../src/metrics/index.ts';

/**
 * What the clearing API needs of the balances, whether they live in this process (Ledger, a
 * GovernedMap) or in Redis shared by many processes (RedisLedger, demo/redis.ts). Results may
 * be promises: a handler awaits them either way. Amounts are bigint minor units.
 */
export interface BalanceBook {
  /** The map behind the balances, for metrics and stats. */
  readonly balances: MeasuredMap;
  balance(id: string): bigint | Promise<bigint>;
  credit(id: string, amount: bigint): bigint | Promise<bigint>;
  debit(id: string, amount: bigint): bigint | Promise<bigint>;
  transfer(from: string, to: string, amount: bigint): { from: bigint; to: bigint } | Promise<{ from: bigint; to: bigint }>;
  /** Accounts whose id starts with `prefix`, in id order, at most `limit` (a range walk); absent where the store cannot walk. */
  statement?(prefix: string, limit: number): Array<{ id: string; balance: bigint }>;
}
