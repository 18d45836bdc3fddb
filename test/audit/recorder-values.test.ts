import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import { balances, bySeq, readSpool, tempSpool } from './helpers.ts';
import { GovernedMap } from '../../src/map/index.ts';

/**
 * A `recordValue` option is user code on the write path: whatever it does, the write it renders
 * keeps its record, its seq and its outcome (docs/audit.md, "The record": `value_error`).
 */
describe('a recordValue that fails', () => {
  const failures: Array<[string, (value: unknown) => unknown, RegExp]> = [
    ['throws', () => {
      throw new TypeError('cannot render 12.5');
    }, /^recordValue threw TypeError; the value is not recorded$/],
    ['throws a non-Error', () => {
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- user code may throw anything
      throw 'nope';
    }, /^recordValue threw string;/],
    ['returns a number', (v) => Number(v), /^recordValue returned a number, not a string or null;/],
    ['returns an object', () => ({ card: '4111111111111111' }), /^recordValue returned an object, not a string or null;/],
    ['returns undefined', () => undefined, /^recordValue returned undefined, not a string or null;/],
  ];
  for (const [name, recordValue, detail] of failures) {
    test(`${name}: the write is recorded with value null and value_error RECORD_VALUE_FAILED, seqs stay gap-free, verify passes`, async (t) => {
      const dir = tempSpool(t);
      const warnings: Error[] = [];
      const onWarning = (w: Error): void => void warnings.push(w);
      process.on('warning', onWarning);
      t.after(() => process.off('warning', onWarning));
      const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: false, recordValue: recordValue as (value: unknown) => string | null });
      const map = balances();
      audit.attach(map);
      map.store('acct-1', 12n);
      assert.throws(() => map.store('acct-1', -1n));
      map.delete('acct-1');
      assert.equal(audit.stats().recordValueFailures, 3);
      await audit.stop();
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));

      const events = bySeq(readSpool(dir).events);
      const writes = events.filter((e) => e.op_type === 'STORE' || e.op_type === 'DELETE');
      assert.deepEqual(
        writes.map((e) => `${e.op_type}:${e.outcome}:${e.reason}`),
        ['STORE:ok:null', 'STORE:rejected:BALANCE_UNDERFLOW', 'DELETE:ok:null'],
        'the outcome and reason stay the operation\'s own',
      );
      for (const e of writes) {
        const raw = e as unknown as Record<string, unknown>;
        assert.equal(e.value, null);
        assert.equal(raw.value_error, 'RECORD_VALUE_FAILED');
        assert.match(String(e.detail), detail);
        assert.doesNotMatch(String(e.detail), /4111|12\.5|12/, 'the detail never carries the value');
      }
      assert.deepEqual(events.map((e) => e.seq), events.map((_e, i) => i + 1), 'no seq is used without its record');
      const report = verifySpool(dir);
      assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
      const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'GOVMAP_AUDIT_RECORD_VALUE_FAILED');
      assert.equal(ours.length, 1, 'one warning per recorder, not one per write');
    });
  }

  test('a recordValue that works (string or null) writes no value_error', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: false, recordValue: (v) => (v === 5n ? null : String(v)) });
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 12n);
    map.store('acct-2', 5n);
    assert.equal(audit.stats().recordValueFailures, 0);
    await audit.stop();
    const writes = readSpool(dir).events.filter((e) => e.op_type === 'STORE');
    assert.deepEqual(writes.map((e) => e.value), ['12', null]);
    for (const e of writes) {
      assert.equal('value_error' in e, false);
      assert.equal('detail' in e, false);
    }
  });
});

test('an evicted or expired entry\'s DELETE carries the value removed, as a delete()\'s does (money leaving the map is on record)', async (t) => {
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: false });
  let now = 1_000;
  const evicting = new GovernedMap<string, bigint>({ name: 'evicting', validate: () => true, maxKeys: 1, onFull: 'evict-oldest' });
  const expiring = new GovernedMap<string, bigint>({ name: 'expiring', validate: () => true, ttlMs: 50, clock: () => now });
  audit.attach(evicting);
  audit.attach(expiring);
  evicting.store('acct-1', 2500n);
  evicting.store('acct-2', 10n); // evicts acct-1
  expiring.store('acct-3', 700n);
  now += 100;
  assert.equal(expiring.load('acct-3'), undefined); // expired on read
  expiring.store('acct-4', 1n);
  evicting.delete('acct-2');
  await audit.stop();
  const deletes = bySeq(readSpool(dir).events)
    .filter((e) => e.op_type === 'DELETE')
    .map((e) => `${e.map}:${e.resource_id}:${e.reason}:${e.value}`);
  assert.deepEqual(deletes, ['evicting:acct-1:EVICTED:2500', 'expiring:acct-3:EXPIRED:700', 'evicting:acct-2:null:10']);
});
