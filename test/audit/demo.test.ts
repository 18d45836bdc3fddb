import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDemo } from '../../demo/server.ts';
import { startDemoAudit } from '../../demo/audit.ts';
import { AuditConfigurationError, verifySpool } from '../../src/audit/index.ts';
import { readSpool, segmentFiles, tempSpool } from './helpers.ts';

test('the demo audits its balances: openings, reads, credits and refusals, verifiable; metrics on /metrics', async (t) => {
  const dir = tempSpool(t);
  const demo = await startDemo({ port: 0, accounts: 5, openingBalance: 1000n, audit: { dir, actor: 'govmap-demo/test' } });
  let closed = false;
  t.after(async () => {
    if (!closed) await demo.close();
  });
  const call = async (method: string, path: string, body?: unknown): Promise<number> => {
    const response = await fetch(demo.url + path, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    await response.arrayBuffer();
    return response.status;
  };
  assert.equal(await call('GET', '/accounts/acct-000001'), 200);
  assert.equal(await call('POST', '/accounts/acct-000001/credit', { amount: '250' }), 200);
  assert.equal(await call('POST', '/accounts/acct-000002/debit', { amount: '5000' }), 422);
  const metrics = await (await fetch(`${demo.url}/metrics`)).text();
  assert.match(metrics, /govmap_audit_records_total\{stream="write"\} [1-9]/);
  assert.match(metrics, /govmap_audit_spool_healthy 1/);
  await demo.close();
  closed = true;

  const events = readSpool(dir).events.filter((e) => e.map === 'balances');
  assert.equal(events[0]!.op_type, 'MAP_CREATED', 'audited from the map\'s creation');
  assert.equal(events.filter((e) => e.op_type === 'STORE' && e.outcome === 'ok' && e.value === '1000').length, 5, 'the five openings');
  assert.ok(events.some((e) => e.op_type === 'LOAD' && e.resource_id === 'acct-000001'));
  assert.ok(events.some((e) => e.op_type === 'STORE' && e.resource_id === 'acct-000001' && e.value === '1250'));
  const refused = events.find((e) => e.outcome === 'rejected')!;
  assert.equal(refused.reason, 'BALANCE_UNDERFLOW');
  assert.equal(refused.value, '-4000', 'the refused balance, as a decimal string');
  const report = verifySpool(dir);
  assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
  assert.equal(report.closed, true);
});

test('the demo records switch changes and leak suspects in the same verifiable spool', async (t) => {
  const dir = tempSpool(t);
  const demo = await startDemo({
    port: 0,
    accounts: 5,
    adminToken: 'audit-demo-test-token-0123',
    audit: { dir, actor: 'govmap-demo/test' },
    sandbox: { idleThresholdMs: 300, sweepIntervalMs: 100, advisorWindowMs: 2000, stateDirectory: null, onSuspect: () => {} },
  });
  let closed = false;
  t.after(async () => {
    if (!closed) await demo.close();
  });
  const change = await fetch(`${demo.url}/admin/switches`, {
    method: 'POST',
    headers: { authorization: 'Bearer audit-demo-test-token-0123', 'content-type': 'application/json' },
    body: JSON.stringify({ set: { 'payments.enabled': { enabled: false } }, reason: 'incident 7 drill' }),
  });
  assert.equal(change.status, 200, await change.text());
  const drill = await fetch(`${demo.url}/sandbox/drill/leak`, { method: 'POST', headers: { authorization: 'Bearer audit-demo-test-token-0123', 'content-type': 'application/json' }, body: '{"maps":3}' });
  assert.equal(drill.status, 200, await drill.text());
  let drillSuspect = false;
  // Bounded by time, generously: the sandbox sweeps every 100 ms, but a loaded box runs it late.
  const deadline = Date.now() + 15_000;
  while (!drillSuspect && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    drillSuspect = readSpool(dir).events.some((e) => e.op_type === 'LEAK_SUSPECT' && e.resource_id === 'drill_quote_cache');
  }
  await demo.close();
  closed = true;

  const events = readSpool(dir).events;
  const switched = events.find((e) => e.op_type === 'SWITCH_CHANGED' && e.resource_id === 'payments.enabled');
  assert.ok(switched, 'the switch change is in the spool');
  assert.equal(switched.reason, 'incident 7 drill');
  assert.match(JSON.parse(switched.detail!).by as string, /^admin/);
  assert.ok(events.some((e) => e.op_type === 'LEAK_SUSPECT' && e.resource_id === 'drill_quote_cache'), `a leak suspect for the drill's maps: ${events.filter((e) => e.op_type === 'LEAK_SUSPECT').map((e) => e.resource_id).join(',')}`);
  const report = verifySpool(dir);
  assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
});

test('the demo\'s retention keeps the newest segments, records each removal, and the spool still verifies', async (t) => {
  const dir = tempSpool(t);
  const demo = await startDemo({ port: 0, accounts: 20, audit: { dir, actor: 'govmap-demo/test', keepSegments: 3, segmentBytes: 65_536, retentionIntervalMs: 100 } });
  let closed = false;
  t.after(async () => {
    if (!closed) await demo.close();
  });
  // ~12 segments of writes: credits are STOREs of ~300 bytes each.
  for (let i = 0; i < 2500; i++) {
    const response = await fetch(`${demo.url}/accounts/acct-${String(1 + (i % 20)).padStart(6, '0')}/credit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":"1"}' });
    await response.arrayBuffer();
  }
  // Until a retention pass has run since the last rotation, not a fixed 400 ms: on a loaded box
  // the 100 ms retention timer can be late for longer than that, and the files were counted first.
  const deadline = Date.now() + 15_000;
  while (segmentFiles(dir).length > 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await demo.close();
  closed = true;

  const files = segmentFiles(dir);
  assert.ok(files.length <= 4, `at most keepSegments (+1 rotated since the last pass) segments remain: ${files.length}`);
  const retention = readSpool(dir).events.filter((e) => e.op_type === 'AUDIT_RETENTION');
  const oldestKept = Number(/audit-([0-9]+)\.jsonl$/.exec(files[0]!)![1]);
  assert.ok(oldestKept >= 3, `older segments were removed (oldest kept: ${oldestKept})`);
  const named = retention.map((e) => (JSON.parse(e.detail!) as { segment: number }).segment);
  // Records of early removals age out with their own segments; the kept ones name the latest removals in order.
  assert.ok(named.length >= 1);
  assert.deepEqual(named, Array.from({ length: named.length }, (_, i) => oldestKept - named.length + i), 'the newest removals, oldest first, up to the oldest kept segment');
  assert.equal((JSON.parse(retention.at(-1)!.detail!) as { absent_through: number }).absent_through, oldestKept - 1, 'the last record names the whole removed range');
  const report = verifySpool(dir);
  assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
  assert.ok(report.notes.some((n) => /earlier segments are absent/.test(n)), report.notes.join('; '));
});

test('without Kafka, the demo exports no Kafka health or lag sample (a 0 would read as Kafka failing)', async (t) => {
  const dir = tempSpool(t);
  const demo = await startDemo({ port: 0, accounts: 5, audit: { dir } });
  t.after(() => demo.close());
  const metrics = await (await fetch(`${demo.url}/metrics`)).text();
  assert.match(metrics, /^govmap_audit_spool_healthy 1$/m);
  assert.match(metrics, /^# TYPE govmap_audit_kafka_healthy gauge$/m, 'the family is declared');
  assert.doesNotMatch(metrics, /^govmap_audit_kafka_healthy /m, 'no forwarder: Kafka health is unknown, not 0');
  assert.doesNotMatch(metrics, /^govmap_audit_kafka_lag_bytes /m, 'no forwarder: no lag to report');
});

test('the closing audit summary, taken after close, counts every record verify finds in the spool: the last requests and the recorder\'s own records included', async (t) => {
  const dir = tempSpool(t);
  const demo = await startDemo({ port: 0, accounts: 5, traffic: true, audit: { dir, actor: 'govmap-demo/test' } });
  let closed = false;
  t.after(async () => {
    if (!closed) await demo.close();
  });
  for (let i = 0; i < 20; i++) {
    const response = await fetch(`${demo.url}/accounts/acct-00000${1 + (i % 5)}/credit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":"1"}' });
    await response.arrayBuffer();
  }
  await demo.close();
  closed = true;
  const summary = demo.auditSummary()[0]!;
  const match = /^audit: ([\d,]+) records \(([\d,]+) reads, ([\d,]+) writes, ([\d,]+) of the recorder and the governance parts\)/.exec(summary);
  assert.ok(match !== null, summary);
  const report = verifySpool(dir);
  assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
  assert.equal(Number(match[1]!.replaceAll(',', '')), report.records, `${summary}\nverify: ${report.records} records`);
});

test('GOVMAP_AUDIT_KEEP_SEGMENTS that cannot work (1, hex, an exponent) is refused naming the variable, not a keepSegments option the shell user never set', async (t) => {
  const saved = process.env.GOVMAP_AUDIT_KEEP_SEGMENTS;
  t.after(() => {
    if (saved === undefined) delete process.env.GOVMAP_AUDIT_KEEP_SEGMENTS;
    else process.env.GOVMAP_AUDIT_KEEP_SEGMENTS = saved;
  });
  for (const value of ['1', '0x10', '1e1', ' 8', '-2']) {
    process.env.GOVMAP_AUDIT_KEEP_SEGMENTS = value;
    const starting = startDemoAudit({ dir: tempSpool(t), actor: 'govmap-demo/test' });
    // Were it accepted, its recorder must not keep this file from exiting.
    t.after(async () => (await starting.catch(() => null))?.recorder.stop());
    await assert.rejects(starting, (error: Error & { code?: string }) => {
      assert.ok(error instanceof AuditConfigurationError, `${value}: ${error.name}: ${error.message}`);
      assert.match(error.message, /"GOVMAP_AUDIT_KEEP_SEGMENTS"/, value);
      assert.match(error.message, /at least 2.*0 to keep (all|everything)/, value);
      return true;
    }, `GOVMAP_AUDIT_KEEP_SEGMENTS=${JSON.stringify(value)} was accepted`);
  }
});
