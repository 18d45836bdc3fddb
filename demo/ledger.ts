import { GovernedMap, reject } from '../src/map/index.ts';
import type { MapObserver } from '../src/map/index.ts';
import type { MapStore } from '../src/stores/index.ts';
import { INT64_MAX } from './money.ts';

export const ACCOUNT_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** A business error of the clearing service: HTTP status, stable code, human reason. */
export class LedgerError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'LedgerError';
    this.status = status;
    this.code = code;
  }
}

export interface LedgerOptions {
  readonly observers?: readonly MapObserver<string>[];
  /** Where the balances live; default in process. The demo uses shared memory (demo/shared-memory.ts). */
  readonly store?: MapStore<string, bigint>;
}

/**
 * The reference clearing service's balances: account id -> balance in minor units, in a
 * GovernedMap whose validator is the business rule (a balance is never negative and never
 * leaves int64). Every movement is an atomic `update`, so concurrent requests cannot lose one.
 */
export class Ledger {
  readonly balances: GovernedMap<string, bigint>;

  constructor(options: LedgerOptions = {}) {
    this.balances = new GovernedMap<string, bigint>({
      name: 'balances',
      observers: options.observers,
      store: options.store,
      validate: (_id, next) => {
        if (typeof next !== 'bigint') return reject('BALANCE_NOT_INTEGER', 'balances are bigint minor units');
        if (next < 0n) return reject('BALANCE_UNDERFLOW', 'the balance would go below zero');
        if (next > INT64_MAX) return reject('BALANCE_OVERFLOW', 'the balance would exceed int64');
        return true;
      },
      // An account holding money cannot be closed: that money would vanish from the books.
      validateDelete: (_id, previous) => (previous === 0n ? true : reject('ACCOUNT_NOT_EMPTY', 'only a zero balance can be closed')),
    });
  }

  /** Seeds `count` accounts `acct-000000`… with `balance` each (an opening, so validated). */
  seed(count: number, balance: bigint): void {
    for (let i = 0; i < count; i++) this.balances.store(accountId(i), balance);
  }

  balance(id: string): bigint {
    assertAccountId(id);
    const value = this.balances.load(id);
    if (value === undefined) throw notFound(id);
    return value;
  }

  credit(id: string, amount: bigint): bigint {
    return this.#apply(id, amount);
  }

  debit(id: string, amount: bigint): bigint {
    return this.#apply(id, -amount);
  }

  /**
   * Moves `amount` between two accounts: both legs or neither. The specification forbids atomic
   * batch operations on the map, so the transfer is two validated updates; nothing can run
   * between them on this thread, and if the credit leg is refused the debit leg is reversed
   * before anyone can observe it.
   */
  transfer(from: string, to: string, amount: bigint): { from: bigint; to: bigint } {
    assertAccountId(from);
    assertAccountId(to);
    if (from === to) throw new LedgerError(400, 'TRANSFER_SAME_ACCOUNT', 'a transfer needs two different accounts');
    if (!this.balances.has(from)) throw notFound(from);
    if (!this.balances.has(to)) throw notFound(to);
    const fromBalance = this.#apply(from, -amount);
    try {
      const toBalance = this.#apply(to, amount);
      return { from: fromBalance, to: toBalance };
    } catch (error) {
      this.balances.update(from, (balance) => (balance ?? 0n) + amount);
      throw error;
    }
  }

  /**
   * The balances of the accounts whose id starts with `prefix`, in id order, at most `limit`: one
   * range walk over a consistent snapshot (a branch statement), so no transfer tears it.
   */
  statement(prefix: string, limit: number): Array<{ id: string; balance: bigint }> {
    const lines: Array<{ id: string; balance: bigint }> = [];
    this.balances.range((id, balance) => {
      lines.push({ id, balance });
      return lines.length < limit;
    }, { prefix });
    return lines;
  }

  #apply(id: string, delta: bigint): bigint {
    assertAccountId(id);
    return this.balances.update(id, (balance) => {
      if (balance === undefined) throw notFound(id);
      return balance + delta;
    });
  }
}

export function accountId(index: number): string {
  return `acct-${String(index).padStart(6, '0')}`;
}

/** Refuses an id that is not an account id (shared by the in-process and Redis ledgers). */
export function assertAccountId(id: string): void {
  if (!ACCOUNT_ID.test(id)) {
    // The id as JSON text (escaped), its first 80 characters: enough to find it, never a log flood.
    const shown = id.length <= 80 ? JSON.stringify(id) : `${JSON.stringify(id.slice(0, 80))}…`;
    throw new LedgerError(400, 'ACCOUNT_ID_INVALID', `account id ${shown} is not valid: account ids are 1-64 characters of letters, digits, "_" and "-", starting with a letter or digit`);
  }
}

function notFound(id: string): LedgerError {
  return new LedgerError(404, 'ACCOUNT_NOT_FOUND', `no account ${JSON.stringify(id)}`);
}
