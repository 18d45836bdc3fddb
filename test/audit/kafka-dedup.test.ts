/**
 * AuditDeduplicator (the consumer side of the Kafka forwarder) on the order a consumer really
 * sees: an actor's records are spread over the topic's partitions by key, and a consumer
 * catching up reads one partition well ahead of another.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { AuditDeduplicator, createAuditRecorder, dedupKeyOf } from '../../src/audit/index.ts';
import { murmur2Partition } from '../../src/audit/kafka-forwarder.ts';
import { balances, segmentFiles, tempSpool } from './helpers.ts';

/** The spool's record lines, each with the partition the forwarder sends it to (of `partitions`). */
async function recordedLines(t: { after(fn: () => void): void }, events: number, partitions: number): Promise<Array<{ line: string; partition: number }>> {
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/dedup' });
  const map = balances();
  audit.attach(map);
  for (let i = 0; i < events; i++) {
    if (i % 4 === 0) map.store(`acct-${i % 300}`, BigInt(i));
    else map.load(`acct-${i % 300}`);
  }
  await audit.stop();
  const out: Array<{ line: string; partition: number }> = [];
  for (const file of segmentFiles(dir)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line === '' || dedupKeyOf(line) === null) continue;
      const record = JSON.parse(line) as { resource_id?: string | null; map?: string | null; actor: string };
      const key = Buffer.from(record.resource_id ?? record.map ?? record.actor);
      out.push({ line, partition: murmur2Partition(key) % partitions });
    }
  }
  return out;
}

test('a consumer reading one partition far ahead of another (past maxPending): every record is accepted once, none is dropped as a duplicate', async (t) => {
  const lines = await recordedLines(t, 4000, 2);
  const dedup = new AuditDeduplicator(500);
  // Partition 1 read to its end first, then partition 0 (a consumer catching up, a rebalance).
  const delivered = [...lines.filter((l) => l.partition === 1), ...lines.filter((l) => l.partition === 0)];
  assert.ok(delivered.filter((l) => l.partition === 1).length > 1000, 'partition 1 holds more records than maxPending');
  let accepted = 0;
  for (const { line } of delivered) if (dedup.acceptRecord(line)) accepted++;
  assert.equal(accepted, lines.length, `${lines.length - accepted} records never seen before were dropped as duplicates`);
  assert.equal(dedup.duplicates, 0);
  // A resend of the latest records (a forwarder restarted after a lost ack) is still removed.
  for (const { line } of delivered.slice(-200)) assert.equal(dedup.acceptRecord(line), false, 'a recent repeat is dropped');
});

test('held seqs past maxPending: each record costs about the same, not a scan of everything held', async () => {
  const dedup = new AuditDeduplicator(50_000);
  // Odd seqs first (one partition), far past the bound; then the even ones.
  const started = performance.now();
  for (let seq = 1; seq <= 200_000; seq += 2) dedup.accept(`svc/a:${seq}`);
  const ms = performance.now() - started;
  assert.ok(ms < 3000, `100,000 records took ${Math.round(ms)} ms`);
  let accepted = 0;
  for (let seq = 2; seq <= 200_000; seq += 2) if (dedup.accept(`svc/a:${seq}`)) accepted++;
  assert.equal(accepted, 100_000, 'the even seqs are new: none is dropped');
});

test('maxPending must be a positive integer: a typed error, not a deduplicator that holds nothing or everything', () => {
  for (const bad of [0, -1, Number.NaN, 1.5]) {
    assert.throws(() => new AuditDeduplicator(bad), (error: Error & { code?: string }) => error.code === 'GOVMAP_AUDIT_INVALID_CONFIGURATION' && error.message.includes('maxPending'));
  }
});
