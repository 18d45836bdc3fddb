import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { overloadedAt80 } from '../../bench/load.bench.ts';

const rounds = (flags: readonly boolean[]): Array<{ saturated: boolean }> => flags.map((saturated) => ({ saturated }));

test('the p99 ratio at 80% is flagged exactly when bare itself was saturated in a round there, with both counts', () => {
  fc.assert(
    fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 7 }), fc.array(fc.boolean(), { minLength: 1, maxLength: 7 }), (bare, governed) => {
      const warning = overloadedAt80(rounds(bare), rounds(governed));
      const bareSaturated = bare.filter(Boolean).length;
      if (bareSaturated === 0) {
        // Governed saturating alone is the finding the ratio exists to show, not a bad run.
        assert.equal(warning, null);
        return;
      }
      assert.ok(warning !== null);
      assert.match(warning, new RegExp(`saturated in ${bareSaturated} of ${bare.length} rounds \\(governed: ${governed.filter(Boolean).length} of ${governed.length}\\)`));
      assert.match(warning, /rerun on a quieter host/);
    }),
  );
});

test('the run that motivated it (both saturated in 7 of 10 rounds) is flagged', () => {
  const warning = overloadedAt80(rounds([true, true, true, true, false]), rounds([true, true, false, true, false]));
  assert.equal(
    warning,
    'at 80% of its own saturation the bare service was saturated in 4 of 5 rounds (governed: 3 of 5): the host slowed down after the climb, so p99_ratio_at_80pct compares overloaded services, not 80% load; rerun on a quieter host',
  );
});
