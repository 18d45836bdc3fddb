import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { SwitchBoard, definitionToJson, parseSwitchDefinition, decide, rolloutBucket } from '../../src/switches/index.ts';

const define = (definition: unknown) => parseSwitchDefinition('s', definition, 'test');

describe('targeting order', () => {
  test('kill beats everything, then disabled, then deny, then allow, then rollout', () => {
    const full = { enabled: true, allow: [{ orgIds: ['1001*'] }], deny: [{ orgIds: ['100199'] }], rollout: { percent: 100 } };
    assert.deepEqual(decide(define({ ...full, kill: true }), { orgId: '1001' }), { on: false, reason: 'KILLED' });
    assert.deepEqual(decide(define({ ...full, enabled: false }), { orgId: '1001' }), { on: false, reason: 'DISABLED' });
    assert.deepEqual(decide(define(full), { orgId: '100199' }), { on: false, reason: 'DENIED' });
    assert.deepEqual(decide(define(full), { orgId: '2001' }), { on: false, reason: 'NOT_TARGETED' });
    assert.deepEqual(decide(define(full), { orgId: '1001' }), { on: true, reason: 'ROLLOUT_INCLUDED' });
    assert.deepEqual(decide(define({ enabled: true, allow: [{ orgIds: ['1001*'] }] }), { orgId: '10017' }), { on: true, reason: 'TARGETED' });
    assert.deepEqual(decide(define(true), {}), { on: true, reason: 'ON' });
  });

  test('an audience ANDs its lists; a list of audiences ORs them', () => {
    const d = define({ enabled: true, allow: [{ orgIds: ['1001'], txnTypes: ['pay'] }, { txnTypes: ['refund'] }] });
    assert.equal(decide(d, { orgId: '1001', txnType: 'pay' }).on, true);
    assert.equal(decide(d, { orgId: '1001', txnType: 'transfer' }).on, false);
    assert.equal(decide(d, { orgId: '9999', txnType: 'refund' }).on, true);
    assert.equal(decide(d, {}).on, false, 'no org, no type: no audience matches');
  });

  test('a prefix matches the org itself and everything under it, and nothing else', () => {
    const d = define({ enabled: true, allow: [{ orgIds: ['1001*'] }] });
    for (const org of ['1001', '10010', '1001-east']) assert.equal(decide(d, { orgId: org }).on, true, org);
    for (const org of ['100', '1002', '01001']) assert.equal(decide(d, { orgId: org }).on, false, org);
  });

  test('a rollout without its context key is off, with a reason saying so', () => {
    assert.deepEqual(decide(define({ enabled: true, rollout: { percent: 50, by: 'account' } }), { orgId: '1' }), { on: false, reason: 'ROLLOUT_KEY_MISSING' });
  });

  test('a rollout by a key named like an Object.prototype member (a valid tag key) reads the context\'s string only: never throws', () => {
    const board = new SwitchBoard({ initial: {} });
    for (const by of ['constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      const d = define({ enabled: true, rollout: { percent: 100, by } });
      // A plain context (what board.view() and the OpenFeature provider build) inherits these names.
      assert.deepEqual(decide(d, { orgId: '1' }), { on: false, reason: 'ROLLOUT_KEY_MISSING' }, by);
      assert.deepEqual(decide(d, {}), { on: false, reason: 'ROLLOUT_KEY_MISSING' }, by);
      assert.deepEqual(decide(d, { [by]: 'acct-7' }), { on: true, reason: 'ROLLOUT_INCLUDED' }, by);
      board.set('gated', { enabled: true, rollout: { percent: 100, by } }, { actor: 'test', reason: by });
      assert.equal(board.isOn('gated'), false, by);
      assert.equal(board.view({ orgId: '1' }).evaluate('gated').reason, 'ROLLOUT_KEY_MISSING', by);
    }
    // A string the context inherits on purpose still counts.
    const byAccount = define({ enabled: true, rollout: { percent: 100, by: 'account' } });
    assert.deepEqual(decide(byAccount, Object.create({ account: 'acct-9' }) as Record<string, string>), { on: true, reason: 'ROLLOUT_INCLUDED' });
  });
  test('a number or boolean context value (plain JavaScript, { orgId: 1001 }) is read as its string: allow, deny and rollout answer as for "1001", and nothing throws', () => {
    const board = new SwitchBoard({
      initial: {
        pilot: { enabled: true, allow: [{ orgIds: ['1001*'] }] },
        guarded: { enabled: true, deny: [{ orgIds: ['100199'], txnTypes: ['true'] }] },
        split: { enabled: true, rollout: { percent: 100, by: 'account' } },
      },
    });
    const numeric = { orgId: 1001, account: 42 } as unknown as Record<string, string>;
    assert.equal(board.isOn('pilot', numeric), true);
    assert.equal(board.evaluate('pilot', numeric).reason, 'TARGETED');
    assert.equal(board.run(() => board.view().isOn('pilot'), numeric), true);
    assert.equal(board.evaluate('guarded', { orgId: 100199, txnType: true } as unknown as Record<string, string>).reason, 'DENIED', 'a numeric org does not slip past a deny list');
    assert.equal(board.evaluate('split', numeric).reason, 'ROLLOUT_INCLUDED');
    for (const odd of [{}, [], null, Number.NaN, () => '1001', Symbol('1001')]) {
      const context = { orgId: odd, account: odd } as unknown as Record<string, string>;
      assert.equal(board.evaluate('pilot', context).reason, 'NOT_TARGETED', String(typeof odd));
      assert.equal(board.evaluate('split', context).reason, 'ROLLOUT_KEY_MISSING', String(typeof odd));
    }
  });
});

describe('percentage rollout', () => {
  test('the bucket is stable (a pinned value, the same in every process) and within range', () => {
    // Pinned so a change to the hash (which would reshuffle every rollout in production) fails here.
    assert.equal(rolloutBucket('fast-settlement', '1001'), 4309);
    assert.equal(rolloutBucket('', ''), 6351);
    assert.notEqual(rolloutBucket('a', 'bc'), rolloutBucket('ab', 'c'), 'the separator keeps salt and value apart');
    fc.assert(
      fc.property(fc.string(), fc.string(), (salt, value) => {
        const b = rolloutBucket(salt, value);
        return Number.isInteger(b) && b >= 0 && b < 10_000;
      }),
      { numRuns: 300 },
    );
  });

  test('raising the percentage never turns anyone off (a rollout only grows its audience)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9]{1,8}$/), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 10_000 }), (org, a, b) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        const at = (bp: number) => decide(define({ enabled: true, rollout: { percent: bp / 100 } }), { orgId: org }).on;
        return !at(low) || at(high);
      }),
      { numRuns: 300 },
    );
  });

  test('the share switched on matches the percentage over many orgs, and two switches pick different orgs', () => {
    const orgs = Array.from({ length: 20_000 }, (_, i) => String(100_000 + i));
    const a = define({ enabled: true, rollout: { percent: 10 } });
    const b = parseSwitchDefinition('other', { enabled: true, rollout: { percent: 10 } }, 'test');
    const onA = orgs.filter((orgId) => decide(a, { orgId }).on);
    const onB = new Set(orgs.filter((orgId) => decide(b, { orgId }).on));
    assert.ok(Math.abs(onA.length / orgs.length - 0.1) < 0.01, `10% rollout switched on ${onA.length} of ${orgs.length}`);
    const overlap = onA.filter((o) => onB.has(o)).length / onA.length;
    assert.ok(overlap < 0.2, `salted by name, two 10% rollouts overlap by chance only (~10%), got ${overlap}`);
  });

  test('bucketing 2 (opt-in) spreads sequential org ids evenly over 100 percent bins, where the default is measurably uneven; the default still picks exactly the orgs it always did', () => {
    const orgs = Array.from({ length: 100_000 }, (_, i) => String(100_000 + i));
    const chiSquare = (bucketing: 1 | 2): number => {
      const d = parseSwitchDefinition('settlement.fast-path', { enabled: true, rollout: { percent: 50, ...(bucketing === 2 ? { bucketing } : {}) } }, 'test');
      const bins = new Array<number>(100).fill(0);
      for (const orgId of orgs) bins[Math.floor(rolloutBucket(d.rollout!.salt, orgId, d.rollout!.bucketing) / 100)]!++;
      const expected = orgs.length / 100;
      return bins.reduce((sum, observed) => sum + (observed - expected) ** 2 / expected, 0);
    };
    // 99 degrees of freedom: 148.2 is the critical value at p = 0.001.
    assert.ok(chiSquare(2) < 148.2, `bucketing 2: chi-square ${chiSquare(2).toFixed(1)} over 100 bins`);
    assert.ok(chiSquare(1) > 148.2, 'the default FNV-1a bucketing is the uneven one (kept: changing it would reshuffle live rollouts)');

    // A 37.5% rollout switched on these orgs before bucketing existed; by default it still does.
    const old = parseSwitchDefinition('settlement.fast-path', { enabled: true, rollout: { percent: 37.5 } }, 'test');
    const on = orgs.slice(0, 20_000).map((orgId) => (decide(old, { orgId }).on ? '1' : '0')).join('');
    assert.equal(createHash('sha256').update(on).digest('hex'), '85a6ae3188ceb41723fe5048b6fc1e47a33a28d2a4de4c14a94cf68c4791df4f');
    const explicit = parseSwitchDefinition('settlement.fast-path', { enabled: true, rollout: { percent: 37.5, bucketing: 1 } }, 'test');
    assert.deepEqual(explicit, old, 'bucketing: 1 is the default, spelt out');
    assert.deepEqual(definitionToJson(old).rollout, { percent: 37.5, by: 'orgId', salt: 'settlement.fast-path' }, 'a default definition reads back as it was written');

    // Through the board and evaluation: bucketing 2 is the mixed bucket, and a 0-100 rollout is monotone in it too.
    const mixed = parseSwitchDefinition('settlement.fast-path', { enabled: true, rollout: { percent: 37.5, bucketing: 2 } }, 'test');
    assert.deepEqual(definitionToJson(mixed).rollout, { percent: 37.5, by: 'orgId', salt: 'settlement.fast-path', bucketing: 2 });
    for (const orgId of orgs.slice(0, 2000)) {
      assert.equal(decide(mixed, { orgId }).on, rolloutBucket('settlement.fast-path', orgId, 2) < 3750, orgId);
    }
    assert.notEqual(rolloutBucket('fast-settlement', '1001', 2), rolloutBucket('fast-settlement', '1001'));
    assert.throws(() => parseSwitchDefinition('s', { enabled: true, rollout: { percent: 5, bucketing: 3 } }, 'test'), /switches\.s\.rollout\.bucketing: bucketing is 1 \(FNV-1a, the default\) or 2/);
  });

  test('percent 0 is nobody, 100 is everybody', () => {
    for (const orgId of ['1', '2', 'abc', '1001']) {
      assert.equal(decide(define({ enabled: true, rollout: { percent: 0 } }), { orgId }).on, false);
      assert.equal(decide(define({ enabled: true, rollout: { percent: 100 } }), { orgId }).on, true);
    }
  });
});

describe('reads', () => {
  test('an unknown switch is off with reason UNKNOWN_SWITCH, also for names on Object.prototype', () => {
    const board = new SwitchBoard({ initial: { a: true } });
    for (const name of ['nope', 'toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      assert.equal(board.isOn(name), false, name);
      assert.equal(board.evaluate(name).reason, 'UNKNOWN_SWITCH', name);
    }
  });

  test('a view serves value/offValue and the caller default for unknown switches', () => {
    const board = new SwitchBoard({ initial: { limit: { enabled: true, value: 500, offValue: 0, allow: [{ txnTypes: ['pay'] }] } } });
    assert.equal(board.view({ txnType: 'pay' }).value('limit', -1), 500);
    assert.equal(board.view({ txnType: 'refund' }).value('limit', -1), 0);
    assert.equal(board.view().value('missing', -1), -1);
  });
});
