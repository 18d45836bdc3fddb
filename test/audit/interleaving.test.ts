import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GovernedMap } from '../../src/map/index.ts';
import type { MapObserver } from '../../src/map/index.ts';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import { readSpool, tempSpool } from './helpers.ts';

/**
 * The durability claim under concurrency: whatever order fast-check's scheduler resumes the
 * awaits of concurrent updates, flushes, plain writes and reads, (1) every awaited updateAsync
 * settles only once its STORE record is sealed and fsynced, (2) no update is lost, and (3) the
 * spool verifies with every seq accounted for, each stream in seq order.
 */
type Step =
  | { readonly kind: 'update'; readonly key: number; readonly delta: bigint }
  | { readonly kind: 'store'; readonly key: number }
  | { readonly kind: 'load'; readonly key: number }
  | { readonly kind: 'flush' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('update' as const), key: fc.integer({ min: 0, max: 2 }), delta: fc.bigInt({ min: 1n, max: 1000n }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('store' as const), key: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('load' as const), key: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
);

test('awaited updates are durable when they settle, none is lost, the spool verifies: any interleaving', async (t) => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), fc.array(step, { minLength: 1, maxLength: 14 }), async (s, steps) => {
      const dir = tempSpool(t, `spool-${run++}`);
      // A long interval: only the awaits themselves can cause the fsyncs the checks rely on.
      const audit = await createAuditRecorder({ dir, actor: 'clearing/interleaving', fsyncIntervalMs: 10_000 });
      const map = new GovernedMap<string, bigint>({ name: 'balances', validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW'), observers: [audit] });
      // Which seq the audit gave each STORE, by the value stored (values are unique per key here).
      const storeSeq = new Map<string, number>();
      const spy: MapObserver<string> = {
        onOperation: (_m, op, key, outcome, _r, _b, value) => {
          if (op === 'STORE' && outcome === 'ok') storeSeq.set(`${key}=${String(value)}`, audit.stats().nextSeq - 1);
        },
      };
      map.observe(spy);
      const expected = [0n, 0n, 0n];
      let storeCount = 0;
      const riskCheck = s.scheduleFunction(async (delta: bigint) => delta);
      const tasks = steps.map(async (st) => {
        if (st.kind === 'update') {
          const key = `acct-${st.key}`;
          expected[st.key]! += st.delta;
          const value = await map.updateAsync(key, async (v) => (v ?? 0n) + (await riskCheck(st.delta)));
          const seq = storeSeq.get(`${key}=${value}`);
          assert.ok(seq !== undefined, 'the commit was recorded');
          const synced = audit.stats().syncedWrites;
          assert.ok(synced >= seq, `updateAsync(${key}) settled with its record seq ${seq} fsynced (synced through ${synced})`);
        } else if (st.kind === 'store') {
          // A plain write racing the updates: updateAsync must retry, not lose either.
          const key = `acct-${st.key}`;
          const bump = 1_000_000n * BigInt(++storeCount);
          map.update(key, (v) => (v ?? 0n) + bump);
          expected[st.key]! += bump;
        } else if (st.kind === 'load') {
          await s.schedule(Promise.resolve());
          map.load(`acct-${st.key}`);
        } else {
          await s.schedule(Promise.resolve());
          await audit.flush();
        }
      });
      await s.waitFor(Promise.all(tasks));
      for (let k = 0; k < 3; k++) assert.equal(map.load(`acct-${k}`) ?? 0n, expected[k], `no update of acct-${k} is lost`);
      await audit.stop();
      const report = verifySpool(dir);
      assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
      const events = readSpool(dir).events;
      const seqs = events.map((e) => e.seq).sort((a, b) => a - b);
      assert.deepEqual(
        seqs,
        seqs.map((_s, i) => i + 1),
        'seqs are gap-free',
      );
    }),
    { numRuns: 25 },
  );
});
