import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GovernedMap, ValidationError } from '../../src/index.ts';

/**
 * The seed's lost update, reproduced and then prevented. fast-check's scheduler controls the
 * order in which awaited work resumes and explores the interleavings.
 *
 * Each task credits +amount to one account after an awaited "risk check" (a scheduled promise).
 * Written naively (load, await, store) two credits can both read the old balance: one is lost.
 * With `updateAsync` every interleaving ends with the sum of all credits.
 */
const credits = fc.array(fc.bigInt({ min: 1n, max: 1000n }), { minLength: 2, maxLength: 6 });

function newAccounts(): GovernedMap<string, bigint> {
  const map = new GovernedMap<string, bigint>({ name: 'accounts', validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW') });
  map.store('acct-1', 0n);
  return map;
}

test('naive load / await / store loses updates under some interleaving (the bug is real)', async () => {
  let lostSomewhere = false;
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), credits, async (s, amounts) => {
      const map = newAccounts();
      const riskCheck = s.scheduleFunction(async (amount: bigint) => amount);
      await s.waitFor(
        Promise.all(
          amounts.map(async (amount) => {
            const balance = map.load('acct-1')!; // read
            const approved = await riskCheck(amount); // await: other credits run here
            map.store('acct-1', balance + approved); // write derived from the stale read
          }),
        ),
      );
      const expected = amounts.reduce((a, b) => a + b, 0n);
      if (map.load('acct-1') !== expected) lostSomewhere = true;
    }),
    { numRuns: 50 },
  );
  assert.equal(lostSomewhere, true, 'the scheduler should find an interleaving that loses a credit');
});

test('updateAsync never loses an update, whatever the interleaving', async () => {
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), credits, async (s, amounts) => {
      const map = newAccounts();
      const riskCheck = s.scheduleFunction(async (amount: bigint) => amount);
      await s.waitFor(Promise.all(amounts.map((amount) => map.updateAsync('acct-1', async (balance) => balance! + (await riskCheck(amount))))));
      assert.equal(map.load('acct-1'), amounts.reduce((a, b) => a + b, 0n));
    }),
    { numRuns: 200 },
  );
});

test('updateAsync with plain writes racing it: no update is lost, debits never underflow', async () => {
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), fc.array(fc.bigInt({ min: -500n, max: 500n }), { minLength: 1, maxLength: 8 }), async (s, deltas) => {
      const map = newAccounts();
      map.store('acct-1', 1000n);
      const check = s.scheduleFunction(async (d: bigint) => d);
      let applied = 0n;
      const tasks = deltas.map(async (delta, i) => {
        if (i % 3 === 2) {
          // A plain synchronous update interleaved with the async ones.
          await s.schedule(Promise.resolve());
          try {
            map.update('acct-1', (b) => b! + delta);
            applied += delta;
          } catch (error) {
            if (!(error instanceof ValidationError)) throw error; // only an underflow may refuse it
          }
          return;
        }
        try {
          await map.updateAsync('acct-1', async (b) => b! + (await check(delta)));
          applied += delta;
        } catch (error) {
          // Only an underflow may refuse it: a conflict error would be a credit the caller lost.
          if (!(error instanceof ValidationError)) throw error;
        }
      });
      await s.waitFor(Promise.all(tasks));
      const balance = map.load('acct-1')!;
      assert.equal(balance, 1000n + applied);
      assert.ok(balance >= 0n);
    }),
    { numRuns: 200 },
  );
});
