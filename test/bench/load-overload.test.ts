import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { overloadedAt80, unsaturatedAtTop } from '../../bench/load.bench.ts';

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

// A climb stopped by --max or --max-steps while the service still kept up never showed its
// saturation: "saturation" is then the highest load offered, and governed_vs_bare_saturation
// compared two caps (1.0, "met", with neither service near its limit) without a word.
const climb = (offered: number[], saturated: boolean[]): Array<{ offered: number; saturated: boolean }> => offered.map((o, i) => ({ offered: o, saturated: saturated[i]! }));

test('a service that still kept up at the top of the climb is named: its saturation is the cap, not its capacity', () => {
  const warning = unsaturatedAtTop(climb([200, 400], [false, false]), climb([200, 400], [false, false]));
  assert.equal(
    warning,
    'bare and governed still kept up at the top of the climb (400 req/s offered): their saturation is the highest load offered, not their capacity, so governed_vs_bare_saturation, and the load at which p99_ratio_at_80pct is measured, come from the cap; raise --max or --max-steps',
  );
  assert.match(unsaturatedAtTop(climb([500, 1000, 1500], [false, true, true]), climb([500, 1000, 1500, 2000], [false, false, false, false])) ?? '', /^governed still kept up at the top of the climb \(2000 req\/s offered\): its saturation is the highest load offered, not its capacity, so governed_vs_bare_saturation comes from the cap; raise --max or --max-steps$/);
});

test('no warning when both climbs ended saturated', () => {
  assert.equal(unsaturatedAtTop(climb([500, 1000, 1500], [false, true, true]), climb([500, 1000], [true, true])), null);
  // The cap reached at a saturated step: the service was at its limit there.
  assert.equal(unsaturatedAtTop(climb([500, 1000], [false, true]), climb([500, 1000], [true, true])), null);
});
