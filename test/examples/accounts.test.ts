import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AccountNotFoundError, BalanceUnderflowError, createBalances, updateBalance } from '../../examples/accounts.ts';

test('account not found', () => {
  const balances = createBalances();
  assert.throws(() => updateBalance(balances, 'acct-404', 10n), (e: unknown) => e instanceof AccountNotFoundError && e.code === 'ACCOUNT_NOT_FOUND');
  assert.throws(() => updateBalance(balances, 'acct-404', 0n), AccountNotFoundError);
  assert.equal(balances.size, 0);
});

test('balance underflow is refused and the balance is unchanged', () => {
  const balances = createBalances();
  balances.store('acct-1', 100n);
  assert.throws(
    () => updateBalance(balances, 'acct-1', -101n),
    (e: unknown) => e instanceof BalanceUnderflowError && e.details.balance === '100' && e.details.delta === '-101',
  );
  assert.equal(balances.load('acct-1'), 100n);
  assert.equal(updateBalance(balances, 'acct-1', -100n), 0n);
});

test('zero delta is ignored: no write happens', () => {
  const balances = createBalances();
  balances.store('acct-1', 100n);
  const writes = balances.counters.storesOk;
  assert.equal(updateBalance(balances, 'acct-1', 0n), 100n);
  assert.equal(balances.counters.storesOk, writes);
});

test('any sequence of deltas: the balance is the sum of the accepted ones and never negative', () => {
  fc.assert(
    fc.property(fc.array(fc.bigInt({ min: -1000n, max: 1000n }), { maxLength: 100 }), (deltas) => {
      const balances = createBalances();
      balances.store('acct-1', 500n);
      let expected = 500n;
      for (const delta of deltas) {
        if (expected + delta < 0n) {
          assert.throws(() => updateBalance(balances, 'acct-1', delta), BalanceUnderflowError);
        } else {
          expected += delta;
          assert.equal(updateBalance(balances, 'acct-1', delta), expected);
        }
      }
      assert.equal(balances.load('acct-1'), expected);
    }),
  );
});
