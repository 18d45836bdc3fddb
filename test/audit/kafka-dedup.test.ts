/**
 * AuditDeduplicator (the consumer side of the Kafka forwarder) on the order a consumer really
 * sees: an actor's records are spread over the topic's partitions by key, and a consumer
 * catching up reads one partition well ahead of another.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
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

test('reads lost to a full ring (seqs that never come, each named by an AUDIT_GAP) do not let a recent repeat through', async (t) => {
  const lines = await recordedLines(t, 4000, 2);
  // Every tenth read lost: its seq never reaches Kafka. The held seqs pile up behind each hole
  // until the mark jumps past it.
  let reads = 0;
  const kept = lines.filter(({ line }) => !(line.includes('"op_type":"LOAD"') && reads++ % 10 === 0));
  assert.ok(kept.length < lines.length - 200, 'the test loses reads');
  const dedup = new AuditDeduplicator(500);
  const delivered = [...kept.filter((l) => l.partition === 1), ...kept.filter((l) => l.partition === 0)];
  let accepted = 0;
  for (const { line } of delivered) if (dedup.acceptRecord(line)) accepted++;
  assert.equal(accepted, kept.length, 'every record that came is accepted once');
  const slipped = delivered.slice(-200).filter(({ line }) => dedup.acceptRecord(line)).length;
  assert.equal(slipped, 0, `${slipped} of the 200 latest records, resent, were accepted again`);
});

test('any delivery order, any lost seqs: each record is accepted the first time only, and a resend of the latest ones is dropped', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 50, max: 600 }),
      fc.integer({ min: 4, max: 64 }),
      fc.array(fc.nat(), { maxLength: 80 }),
      fc.integer({ min: 1, max: 4 }),
      fc.infiniteStream(fc.nat()),
      (count, maxPending, lostPicks, partitions, picks) => {
        const lost = new Set(lostPicks.map((n) => (n % count) + 1));
        // Seqs spread over partitions; each partition in order, the partitions read interleaved at random.
        const queues: number[][] = Array.from({ length: partitions }, () => []);
        for (let seq = 1; seq <= count; seq++) if (!lost.has(seq)) queues[seq % partitions]!.push(seq);
        const it = picks[Symbol.iterator]();
        // A partition is near seq order, not exactly (reads and writes reach the spool by two paths).
        for (const q of queues) for (let i = 1; i < q.length; i++) if (it.next().value! % 8 === 0) [q[i - 1], q[i]] = [q[i]!, q[i - 1]!];
        const order: number[] = [];
        while (queues.some((q) => q.length > 0)) {
          const open = queues.filter((q) => q.length > 0);
          order.push(open[it.next().value! % open.length]!.shift()!);
        }
        const dedup = new AuditDeduplicator(maxPending);
        for (const seq of order) {
          assert.equal(dedup.accept(`svc/a:${seq}`), true, `seq ${seq}, first seen, was dropped`);
          assert.equal(dedup.accept(`svc/a:${seq}`), false, `seq ${seq}, resent at once, was accepted`);
        }
        for (const seq of order.slice(-Math.max(1, maxPending >> 1))) assert.equal(dedup.accept(`svc/a:${seq}`), false, `seq ${seq}, among the latest, resent, was accepted`);
      },
    ),
    { numRuns: 300 },
  );
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

test('a string that is not a dedup key (a foreign govmap-dedup header) is not accepted, and the actor\'s genuine records are still accepted once each', () => {
  const dedup = new AuditDeduplicator(4);
  for (const bad of ['no-colon', 'svc/a:abc', 'svc/a:1.5', 'svc/a:-3', 'svc/a:0', 'svc/a:', 'svc/a:1e3', 'svc/a:9007199254740993']) {
    assert.equal(dedup.accept(bad), false, `${JSON.stringify(bad)} is not a dedup key`);
  }
  assert.equal(dedup.duplicates, 0, 'none of them counts as a repeat');
  // Past maxPending, so the mark jumps over seqs 1 and 2, which have not arrived yet (a partition read behind).
  for (let seq = 3; seq <= 22; seq++) assert.equal(dedup.accept(`svc/a:${seq}`), true, `seq ${seq}`);
  assert.equal(dedup.accept('svc/a:1'), true, 'seq 1, late, is accepted');
  assert.equal(dedup.accept('svc/a:2'), true, 'seq 2, late, is accepted');
  assert.equal(dedup.accept('svc/a:1'), false, 'seq 1 resent is a repeat');
  assert.equal(dedup.accept('svc/a:22'), false, 'seq 22 resent is a repeat');
});
