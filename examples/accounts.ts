/**
 * The specification's account example, ported. In Go:
 *
 *   func UpdateBalance(id string, delta int64) error {
 *       if delta == 0 { return nil }
 *       v, ok := balances.Load(id); if !ok { return ErrAccountNotFound }
 *       next := v.(int64) + delta; if next < 0 { return ErrBalanceUnderflow }
 *       balances.Store(id, next)   // racy: another goroutine may have stored since the Load
 *   }
 *
 * Here the load, the check and the store are one `update`, so no concurrent request can slip
 * between them, and the underflow rule lives in the map's validator, so no other write path
 * can bypass it.
 */
import { GovernedMap, GovMapError, ValidationError } from '../src/index.ts';

export class AccountNotFoundError extends GovMapError {
  constructor(accountId: string) {
    super('ACCOUNT_NOT_FOUND', `account ${JSON.stringify(accountId)} does not exist`, { accountId });
  }
}

export class BalanceUnderflowError extends GovMapError {
  constructor(accountId: string, balance: bigint, delta: bigint) {
    super('BALANCE_UNDERFLOW', `account ${JSON.stringify(accountId)}: balance ${balance} cannot take ${delta}`, {
      accountId,
      balance: balance.toString(),
      delta: delta.toString(),
    });
  }
}

/** Balances in minor units; the validator is the business rule. */
export function createBalances(): GovernedMap<string, bigint> {
  return new GovernedMap<string, bigint>({
    name: 'balances',
    validate: (_id, next) => (next >= 0n ? true : 'BALANCE_UNDERFLOW'),
  });
}

/**
 * Applies `delta` (minor units, may be negative) to an account, atomically.
 * A zero delta is ignored (no write, no audit record of a write).
 * @returns the new balance
 */
export function updateBalance(balances: GovernedMap<string, bigint>, accountId: string, delta: bigint): bigint {
  if (delta === 0n) {
    const current = balances.load(accountId);
    if (current === undefined) throw new AccountNotFoundError(accountId);
    return current;
  }
  let before = 0n;
  try {
    return balances.update(accountId, (balance) => {
      if (balance === undefined) throw new AccountNotFoundError(accountId);
      before = balance;
      return balance + delta;
    });
  } catch (error) {
    if (error instanceof ValidationError && error.reason === 'BALANCE_UNDERFLOW') throw new BalanceUnderflowError(accountId, before, delta);
    throw error;
  }
}
