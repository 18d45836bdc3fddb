/**
 * The recorder's stop() against a Kafka that accepts connections and never answers (a hung
 * broker, a black-holing proxy): no real broker needed, a local TCP server stands in for it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createAuditRecorder } from '../../src/audit/index.ts';
import { balances, blackHoleBroker, tempSpool } from './helpers.ts';

test('a broker that accepts the connection but never answers: stop() returns within kafkaStopDrainMs (not after the send deadline), and the records wait in the spool', async (t) => {
  const port = await blackHoleBroker(t);
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-hung', kafkaStopDrainMs: 1000, kafka: { brokers: [`127.0.0.1:${port}`], topic: 'govmap.audit.hung', sendTimeoutMs: 10_000 } });
  let stopped = false;
  t.after(() => (stopped ? undefined : audit.stop()));
  const map = balances();
  audit.attach(map);
  for (let i = 0; i < 100; i++) map.store(`acct-${i}`, BigInt(i));
  await audit.flush();
  await new Promise((resolve) => setTimeout(resolve, 500)); // the forwarder's first request is waiting on the broker
  const started = performance.now();
  await audit.stop();
  stopped = true;
  const ms = performance.now() - started;
  // 1 s for Kafka, then the threads go: a service's shutdown budget (a pod's grace period) is
  // what kafkaStopDrainMs is set from.
  assert.ok(ms < 4000, `stop() took ${Math.round(ms)} ms with kafkaStopDrainMs 1000`);
  const forwarder = audit.forwarder!;
  assert.equal(forwarder.stats().sent, 0);
  assert.ok(forwarder.stats().lagBytes > 0, 'the records wait in the spool for the next start');
});

test('forwarder.stop(timeoutMs) past the longest timer Node holds (2,147,483,647 ms): refused (GOVMAP_AUDIT_INVALID_CONFIGURATION naming it), not a stop that gives up after 1 ms; forwarding goes on', async (t) => {
  const port = await blackHoleBroker(t);
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-hung', kafkaStopDrainMs: 500, kafka: { brokers: [`127.0.0.1:${port}`], topic: 'govmap.audit.hung', sendTimeoutMs: 10_000 } });
  t.after(() => audit.stop());
  const map = balances();
  audit.attach(map);
  for (let i = 0; i < 10; i++) map.store(`acct-${i}`, BigInt(i));
  await audit.flush();
  await new Promise((resolve) => setTimeout(resolve, 300)); // a request is waiting on the broker
  const forwarder = audit.forwarder!;
  for (const timeoutMs of [2 ** 31, 30 * 24 * 3600 * 1000, Number.POSITIVE_INFINITY]) {
    const started = performance.now();
    await assert.rejects(forwarder.stop(timeoutMs), (error: Error & { code?: string; details?: { option?: string } }) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_INVALID_CONFIGURATION');
      assert.equal(error.details?.option, 'stop timeoutMs');
      assert.match(error.message, /at most 2,147,483,647/);
      return true;
    });
    assert.ok(performance.now() - started < 100, 'refused at once, nothing waited for');
  }
  assert.equal(forwarder.stats().healthy, true, 'the refused stop stopped nothing');
});

test('Kafka not answering: audit.forwarder.stats().healthy turns false while audit.stats().healthy, the spool\'s, stays true (docs/audit.md: watch the forwarder)', async (t) => {
  const port = await blackHoleBroker(t);
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-hung', kafkaStopDrainMs: 500, kafka: { brokers: [`127.0.0.1:${port}`], topic: 'govmap.audit.hung', sendTimeoutMs: 1000 } });
  t.after(() => audit.stop());
  const map = balances();
  audit.attach(map);
  map.store('acct-1', 1n);
  await audit.flush();
  const deadline = Date.now() + 5000;
  while (audit.forwarder!.stats().healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(audit.forwarder!.stats().healthy, false, 'a send waiting past half of sendTimeoutMs is unhealthy');
  assert.equal(audit.stats().healthy, true, 'the spool is written: its health is not Kafka\'s');
});
