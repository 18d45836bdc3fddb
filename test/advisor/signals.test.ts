import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_THRESHOLDS, advise, missRatioSignal, rangeGrowthSignal, readWriteSignal } from '../../src/advisor/index.ts';
import type { MapEvidence } from '../../src/advisor/index.ts';

/** Evidence with nothing known but what a test sets. */
function evidence(partial: Partial<MapEvidence>): MapEvidence {
  return {
    map: 'quotes',
    instance: null,
    source: 'in-process',
    keys: 10,
    missRatio: { latest: null, breachedWindows: null, observedWindows: null, windowMs: 300_000 },
    gc: { rising: null, ratio: null, recentPauseFraction: null },
    readWrite: { ratio: null, reads: null, writes: null },
    ranges: { current: null, previous: null, beforePrevious: null, calendar: 'iso-week' },
    notes: [],
    ...partial,
  };
}

test('a figure just under its threshold is shown with the decimals that tell them apart, never "20:1 < 20:1"', () => {
  const t = { ...DEFAULT_THRESHOLDS, minReadWriteRatio: 20 };
  const under = readWriteSignal(evidence({ readWrite: { ratio: 19.96, reads: 4_990, writes: 250 } }), t);
  assert.equal(under.status, 'firing');
  assert.match(under.summary, /^19\.96:1 reads per write < 20:1 /);
  const over = readWriteSignal(evidence({ readWrite: { ratio: 20.004, reads: 20_004, writes: 1_000 } }), t);
  assert.match(over.summary, /^20\.004:1 reads per write >= 20:1 /);
  const plain = readWriteSignal(evidence({ readWrite: { ratio: 8, reads: 400, writes: 50 } }), t);
  assert.match(plain.summary, /^8:1 reads per write < 20:1 /, 'figures far apart keep one decimal at most');
});

test('a miss ratio just over its threshold is shown apart from it', () => {
  const t = { ...DEFAULT_THRESHOLDS, missRatio: 0.35, missRatioWindows: 3 };
  const signal = missRatioSignal(evidence({ missRatio: { latest: 0.3502, breachedWindows: 3, observedWindows: 3, windowMs: 300_000 }, gc: { rising: true, ratio: 1.234, recentPauseFraction: 0.02 } }), t);
  assert.equal(signal.status, 'firing');
  assert.match(signal.summary, /^miss ratio 35\.02% > 35\.00% for 3 consecutive/);
  assert.match(signal.summary, /GC pause time 1\.23x the window before/);
});

test('a miss ratio above its threshold in fewer windows than needed, with the windows observed unknown (an older service), is not called clear', () => {
  const t = { ...DEFAULT_THRESHOLDS, missRatio: 0.35, missRatioWindows: 3 };
  const unknown = missRatioSignal(evidence({ missRatio: { latest: 0.6, breachedWindows: 1, observedWindows: null, windowMs: 300_000 }, gc: { rising: true, ratio: 2, recentPauseFraction: 0.1 } }), t);
  assert.equal(unknown.status, 'insufficient-data', unknown.summary);
  assert.match(unknown.summary, /windows observed .*unknown/);
  // Known to have been observed longer than it breached: the breach is not held, so clear.
  const known = missRatioSignal(evidence({ missRatio: { latest: 0.6, breachedWindows: 1, observedWindows: 5, windowMs: 300_000 }, gc: { rising: true, ratio: 2, recentPauseFraction: 0.1 } }), t);
  assert.equal(known.status, 'clear');
  // Under the threshold now: clear whatever the windows observed.
  const under = missRatioSignal(evidence({ missRatio: { latest: 0.1, breachedWindows: 0, observedWindows: null, windowMs: 300_000 } }), t);
  assert.equal(under.status, 'clear');
});

test('range calls grown by exactly the threshold do not fire: +15.0% is not "> +15.0%", whatever the threshold and the baseline', () => {
  const t = { ...DEFAULT_THRESHOLDS, rangeGrowth: 0.15 };
  const week = (before: number, previous: number): MapEvidence =>
    evidence({ ranges: { current: { week: '2025-W03', count: 0 }, previous: { week: '2025-W02', count: previous }, beforePrevious: { week: '2025-W01', count: before }, calendar: 'iso-week' } });
  const exactly = rangeGrowthSignal(week(100, 115), t);
  assert.equal(exactly.status, 'clear', exactly.summary);
  assert.equal(advise(week(100, 115), t).recommendation, 'stay');
  assert.equal(rangeGrowthSignal(week(100, 116), t).status, 'firing');
  assert.match(rangeGrowthSignal(week(10_000, 11_501), t).summary, /\(\+15\.01%\) > \+15\.00%$/, 'figures that round alike are shown apart');
  // The week in progress already at exactly +15% of the whole previous week: not yet more.
  const inProgress = evidence({ ranges: { current: { week: '2025-W03', count: 115 }, previous: { week: '2025-W02', count: 100 }, beforePrevious: null, calendar: 'iso-week' } });
  assert.equal(rangeGrowthSignal(inProgress, t).status, 'clear');
  for (let percent = 1; percent < 100; percent++) {
    for (let before = 100; before <= 5_000; before += 100) {
      const at = before + (before * percent) / 100;
      if (!Number.isInteger(at)) continue;
      const th = { ...DEFAULT_THRESHOLDS, rangeGrowth: percent / 100 };
      assert.equal(rangeGrowthSignal(week(before, at), th).status, 'clear', `${before} -> ${at} is exactly +${percent}%`);
      assert.equal(rangeGrowthSignal(week(before, at + 1), th).status, 'firing', `${before} -> ${at + 1} is more than +${percent}%`);
    }
  }
});
