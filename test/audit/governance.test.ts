import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { AuditEventError, auditBreakerTransitions, auditLeakSuspects, auditSwitchChanges, createAuditRecorder, parseSpoolLine, verifySpool } from '../../src/audit/index.ts';
import type { AuditEvent } from '../../src/audit/index.ts';
import { BreakerGroup } from '../../src/breaker/index.ts';
import { GovernedMap } from '../../src/map/index.ts';
import { Sandbox } from '../../src/sandbox/index.ts';
import { SwitchBoard } from '../../src/switches/index.ts';
import { readSpool, segmentFiles, tempSpool } from './helpers.ts';

/**
 * The other parts' governance events in a real spool: a breaker group's transition, a switch
 * board's change, a sandbox's leak suspect, each through its one-line adapter. Verify accepts
 * the spool; editing one of those records is caught.
 */

function governance(dir: string): AuditEvent[] {
  return readSpool(dir).events.filter((e) => e.op_type === 'BREAKER_TRANSITION' || e.op_type === 'SWITCH_CHANGED' || e.op_type === 'LEAK_SUSPECT');
}

async function spoolWithAllThree(dir: string): Promise<void> {
  const recorder = await createAuditRecorder({ dir, actor: 'clearing/instance-1' });
  const group = new BreakerGroup({ name: 'settlement' });
  group.onTransition(auditBreakerTransitions(recorder));
  assert.equal(group.get('org-1001').adoptOpen(), true);

  const board = new SwitchBoard({ name: 'demo', audit: auditSwitchChanges(recorder) });
  board.set('routing.force-degrade', { enabled: true }, { actor: 'admin:alice', reason: 'drill 42' });

  let now = 1_000_000;
  const sandbox = new Sandbox({ idleThresholdMs: 1_000, gc: false, clock: () => now, onSuspect: auditLeakSuspects(recorder) }).start();
  try {
    const forgotten = new GovernedMap<string, number>({ name: 'fx_rates_eod', validate: () => true });
    forgotten.store('EURUSD', 10842);
    sandbox.sweep();
    now += 1_500;
    sandbox.sweep();
    assert.equal(forgotten.size, 1);
  } finally {
    sandbox.stop();
  }
  group.dispose();
  await recorder.stop();
}

describe('governance events in the audit trail', () => {
  test('a breaker transition, a switch change and a leak suspect are records of a spool that verifies', async (t) => {
    const dir = tempSpool(t);
    await spoolWithAllThree(dir);
    const events = governance(dir);
    const breaker = events.find((e) => e.op_type === 'BREAKER_TRANSITION');
    const change = events.find((e) => e.op_type === 'SWITCH_CHANGED');
    const suspect = events.find((e) => e.op_type === 'LEAK_SUSPECT');
    assert.ok(breaker && change && suspect, `all three kinds present: ${events.map((e) => e.op_type).join(',')}`);

    assert.equal(breaker.map, 'settlement');
    assert.equal(breaker.resource_id, 'settlement:org-1001');
    assert.equal(breaker.reason, 'cluster_quorum');
    assert.equal(breaker.actor, 'clearing/instance-1');
    assert.deepEqual({ ...JSON.parse(breaker.detail!), at: undefined }, { by: 'breaker', from: 'CLOSED', to: 'OPEN', key: 'org-1001', at: undefined });

    assert.equal(change.map, 'demo');
    assert.equal(change.resource_id, 'routing.force-degrade');
    assert.equal(change.reason, 'drill 42');
    const changeDetail = JSON.parse(change.detail!) as Record<string, unknown>;
    assert.equal(changeDetail.by, 'admin:alice');
    assert.equal(changeDetail.new_version, (changeDetail.old_version as number) + 1);

    assert.equal(suspect.resource_id, 'fx_rates_eod');
    assert.equal(suspect.reason, 'IDLE');
    const suspectDetail = JSON.parse(suspect.detail!) as Record<string, unknown>;
    assert.equal(suspectDetail.keys, 1);
    assert.match(String(suspectDetail.site), /governance\.test\.ts:\d+/, 'names the line that created the map');

    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.firstBad));
  });

  test('editing a governance record (who changed the switch) is caught by verify', async (t) => {
    const dir = tempSpool(t);
    await spoolWithAllThree(dir);
    const file = segmentFiles(dir).find((f) => readFileSync(f, 'utf8').includes('"SWITCH_CHANGED"'))!;
    const text = readFileSync(file, 'utf8');
    assert.ok(text.includes('admin:alice'));
    writeFileSync(file, text.replace('admin:alice', 'admin:mallo'));
    const report = verifySpool(dir);
    assert.equal(report.ok, false, 'the changed record must break the chain');
  });

  test('parseSpoolLine refuses a governance record without a JSON-object detail', () => {
    const base = { v: 1, seq: 7, op_type: 'SWITCH_CHANGED', map: 'demo', resource_id: 'x', trace_id: null, span_id: null, range_bounds: null, timestamp: '1', outcome: 'ok', reason: 'r', actor: 'a', origin: 'o' };
    assert.equal(parseSpoolLine(JSON.stringify({ ...base, detail: '{"by":"alice"}' })).kind, 'event');
    const bad = parseSpoolLine(JSON.stringify({ ...base, detail: 'alice' }));
    assert.equal(bad.kind, 'invalid');
    assert.match((bad as { problem: string }).problem, /detail is not a JSON object/);
  });

  test('a malformed event is refused with a typed error and writes nothing', async (t) => {
    const dir = tempSpool(t);
    const recorder = await createAuditRecorder({ dir, actor: 'clearing/instance-1' });
    const before = recorder.stats().nextSeq;
    assert.throws(() => recorder.recordGovernanceEvent({ op: 'SWITCH_CHANGED', resource: '', detail: {} }), (e: unknown) => e instanceof AuditEventError && e.code === 'GOVMAP_AUDIT_INVALID_EVENT' && /resource/.test(e.message));
    assert.throws(
      () => recorder.recordGovernanceEvent({ op: 'LEAK_SUSPECT', resource: 'm', detail: { amount: 10n as unknown as number } }),
      (e: unknown) => e instanceof AuditEventError && /detail\.amount/.test(e.message),
    );
    assert.throws(() => recorder.recordGovernanceEvent({ op: 'NOPE' as 'LEAK_SUSPECT', resource: 'm', detail: {} }), AuditEventError);
    assert.equal(recorder.stats().nextSeq, before, 'no seq was spent');
    await recorder.stop();
    assert.equal(verifySpool(dir).ok, true);
  });
});
