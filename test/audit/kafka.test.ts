/**
 * The Kafka forwarder against a real broker (test/infra/kafka.sh; GOVMAP_KAFKA_BROKERS). Without
 * the variable these tests skip with the reason, and fail under CI.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { Admin, Consumer, murmur2 } from '@platformatic/kafka';
import { AuditConfigurationError, AuditDeduplicator, KafkaForwarder, createAuditRecorder, dedupKeyOf, parseSpoolLine, registerAuditMetrics, startKafkaForwarder, verifySpool } from '../../src/audit/index.ts';
import { Registry } from 'prom-client';
import { murmur2Partition } from '../../src/audit/kafka-forwarder.ts';
import { readJournal } from '../../src/audit/journal.ts';
import type { AuditRecorder, AuditRecorderOptions } from '../../src/audit/index.ts';
import { GovernedMap, GovMapError } from '../../src/map/index.ts';
import { balances, blackHoleBroker, readSpool, segmentFiles, tempSpool } from './helpers.ts';
import { BROKERS, CI, needKafka } from './kafka-env.ts';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Worker } from 'node:worker_threads';
import { connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ProducerLaneData, ProducerLaneReply } from '../../src/audit/kafka-lane-protocol.ts';

const KAFKA_SH = fileURLToPath(new URL('../infra/kafka.sh', import.meta.url));

function uniqueTopic(name: string): string {
  return `govmap.audit.test.${name}.${process.pid}.${Date.now()}`;
}

/** Every record line of the spool, by dedup key (what Kafka must end up holding). */
function spoolRecords(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of segmentFiles(dir)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const key = line === '' ? null : dedupKeyOf(line);
      if (key !== null) out.set(key, line);
    }
  }
  return out;
}

/** Creates `topic` with `partitions` partitions (otherwise the broker's default, 1, applies). */
async function createTopic(topic: string, partitions: number): Promise<void> {
  const admin = new Admin({ clientId: 'govmap-audit-test-admin', bootstrapBrokers: BROKERS });
  try {
    await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
  } finally {
    await admin.close();
  }
}

interface Consumed {
  readonly byKey: Map<string, { value: string; key: string; partition: number; offset: bigint }>;
  readonly messages: number;
  readonly duplicates: number;
}

/** Reads the topic from the start until every expected dedup key has arrived (or the deadline). */
async function consumeAll(topic: string, expected: ReadonlySet<string>, timeoutMs: number): Promise<Consumed> {
  const consumer = new Consumer({ groupId: `${topic}.reader.${Math.random()}`, clientId: 'govmap-audit-test-reader', bootstrapBrokers: BROKERS, maxWaitTime: 200 });
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
  const dedup = new AuditDeduplicator();
  const byKey = new Map<string, { value: string; key: string; partition: number; offset: bigint }>();
  let messages = 0;
  let missing = expected.size;
  const readTo = new Map<number, bigint>();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Say whether the records are in Kafka and unread, or never reached it: a failure must tell a slow reader from a lost write.
        void where(topic, readTo).then((state) => reject(new Error(`consumed ${expected.size - missing} of ${expected.size} records of ${topic} within ${timeoutMs} ms; ${state}`)));
      }, timeoutMs);
      stream.on('error', reject);
      stream.on('data', (message: { key: Buffer; value: Buffer; partition: number; offset: bigint }) => {
        messages++;
        readTo.set(message.partition, message.offset);
        const value = message.value.toString('utf8');
        const key = dedupKeyOf(value);
        if (key === null || !dedup.accept(key)) return;
        byKey.set(key, { value, key: message.key.toString('utf8'), partition: message.partition, offset: message.offset });
        if (expected.has(key)) missing--;
        if (missing === 0) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  } finally {
    await stream.close().catch(() => undefined);
    await consumer.close(true).catch(() => undefined);
  }
  return { byKey, messages, duplicates: dedup.duplicates };
}

/** Per partition: the last offset read against the partition's end offset (what Kafka holds). */
async function where(topic: string, readTo: ReadonlyMap<number, bigint>): Promise<string> {
  const admin = new Admin({ clientId: 'govmap-audit-test-admin', bootstrapBrokers: BROKERS });
  try {
    const metadata = await admin.metadata({ topics: [topic] });
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    const partitions = Array.from({ length: count }, (_, partitionIndex) => ({ partitionIndex, timestamp: -1n }));
    const [listed] = await admin.listOffsets({ topics: [{ name: topic, partitions }] });
    return (listed?.partitions ?? []).map((p) => `partition ${p.partitionIndex}: read to offset ${readTo.get(p.partitionIndex) ?? 'none'} of ${p.offset} held`).join(', ');
  } catch (error) {
    return `end offsets unknown (${String(error)})`;
  } finally {
    await admin.close().catch(() => undefined);
  }
}

/** The values of partition 0 of `topic`, in offset order, once it holds `count` messages. */
async function topicValues(topic: string, count: number): Promise<string[]> {
  const consumer = new Consumer({ groupId: `${topic}.values.${Math.random()}`, clientId: 'govmap-audit-test-reader', bootstrapBrokers: BROKERS, maxWaitTime: 200 });
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
  const values: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${topic} held ${values.length} of ${count} messages within 10 s: ${values.join(' | ')}`)), 10_000);
      stream.on('error', reject);
      stream.on('data', (message: { value: Buffer }) => {
        values.push(message.value.toString('utf8'));
        if (values.length === count) {
          clearTimeout(timer);
          // A moment more: a message past the expected ones would show.
          setTimeout(resolve, 500);
        }
      });
    });
  } finally {
    await stream.close().catch(() => undefined);
    await consumer.close(true).catch(() => undefined);
  }
  return values;
}

function assertAllArrived(records: ReadonlyMap<string, string>, consumed: Consumed): number {
  for (const [key, line] of records) {
    const got = consumed.byKey.get(key);
    assert.ok(got !== undefined, `record ${key} reached Kafka`);
    assert.equal(got.value, line, `record ${key} arrived as written in the spool`);
  }
  return records.size;
}

function kafkaPid(): number | null {
  const status = spawnSync('bash', [KAFKA_SH, 'status'], { encoding: 'utf8' });
  const match = /\(pid ([0-9]+)/.exec(status.stdout);
  return match === null ? null : Number(match[1]);
}

/**
 * Producer-lane threads of this process, as `<tid> <name> <state>` (Linux: from /proc; none where
 * there is no /proc). A thread that ends while the list is read is skipped: it used to make the
 * whole count 0, which the check that a lane runs would take for no lane at all.
 */
function laneThreads(): string[] {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return [];
  }
  const lanes: string[] = [];
  for (const tid of tids) {
    try {
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      if (!name.startsWith('govmap-audit-ka')) continue;
      // The state letter follows the parenthesised name (R, S, D, Z...): says whether a thread left over was still exiting.
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      lanes.push(`${tid} ${name} ${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]}`);
    } catch {
      // Ended meanwhile.
    }
  }
  return lanes;
}

async function stream(audit: AuditRecorder, map: ReturnType<typeof balances>, events: number, start: number): Promise<void> {
  for (let i = start; i < start + events; i++) {
    const key = `acct-${i % 500}`;
    if (i % 4 === 0) map.store(key, BigInt(i));
    else map.load(key);
    if (i % 5000 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await audit.flush();
}

describe('forwarding the spool to a real Kafka', { concurrency: false }, () => {
  test('every record arrives as its spool line, keyed by resource_id, across segment rotations', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('basic');
    // Small segments: the forwarder must follow the spool across rotations.
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-1', maxSegmentBytes: 65_536, kafka: { brokers: BROKERS, topic, batchRecords: 700 } });
    // A failed assertion must not leave the recorder's threads running: the file would never exit.
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    // Each stream() ends with a flush (a commit), where a full segment rotates.
    for (let i = 0; i < 8; i++) await stream(audit, map, 500, i * 500);
    await audit.forwarder!.drain(60_000);
    const records = spoolRecords(dir);
    const consumed = await consumeAll(topic, new Set(records.keys()), 60_000);
    await audit.stop();
    assertAllArrived(records, consumed);
    for (const { value, key } of consumed.byKey.values()) {
      const record = JSON.parse(value) as { resource_id: string | null; map: string | null; actor: string };
      assert.equal(key, record.resource_id ?? record.map ?? record.actor, 'the message key is the resource id');
    }
    assert.equal(audit.forwarder!.stats().errors, 0);
    assert.ok(segmentFiles(dir).length >= 5, `the spool rotated (${segmentFiles(dir).length} segments)`);
  });

  test('a topic of 4 partitions: two producer lanes; each key on its murmur2 partition, its records in seq order', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('lanes');
    await createTopic(topic, 4);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-lanes', kafka: { brokers: BROKERS, topic, batchRecords: 3000 } });
    // A failed assertion must not leave the recorder's threads running: the file would never exit.
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    await stream(audit, map, 20_000, 0);
    await audit.forwarder!.drain(60_000);
    const records = spoolRecords(dir);
    const consumed = await consumeAll(topic, new Set(records.keys()), 60_000);
    await audit.stop();
    assertAllArrived(records, consumed);
    assert.equal(audit.forwarder!.stats().errors, 0);
    // Per key: one partition (the client's default partitioner's), offsets rising with seq.
    const byResource = new Map<string, Array<{ seq: number; partition: number; offset: bigint }>>();
    for (const { value, key, partition, offset } of consumed.byKey.values()) {
      assert.equal(partition, (murmur2(Buffer.from(key)) >>> 0) % 4, `key ${key} is on the partition the client's partitioner gives it`);
      const list = byResource.get(key) ?? [];
      list.push({ seq: (JSON.parse(value) as { seq: number }).seq, partition, offset });
      byResource.set(key, list);
    }
    const partitionsUsed = new Set([...consumed.byKey.values()].map((m) => m.partition));
    assert.equal(partitionsUsed.size, 4, 'every partition got records (both lanes sent)');
    for (const [key, list] of byResource) {
      list.sort((a, b) => a.seq - b.seq);
      for (let i = 1; i < list.length; i++) assert.ok(list[i]!.offset > list[i - 1]!.offset, `key ${key}: seq ${list[i]!.seq} is after seq ${list[i - 1]!.seq} in its partition`);
    }
  });

  test('murmur2Partition is the client partitioner\'s hash (murmur2 >>> 0) for any bytes', () => {
    for (let n = 0; n < 2000; n++) {
      const key = Buffer.alloc(n % 37);
      for (let i = 0; i < key.length; i++) key[i] = (n * 131 + i * 977 + (i >> 2)) & 255;
      assert.equal(murmur2Partition(key), murmur2(key) >>> 0, `key ${key.toString('hex')}`);
    }
  });

  test('governance events (breaker transition, switch change, leak suspect) reach Kafka as their spool lines, keyed by resource_id', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('governance');
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-gov', kafka: { brokers: BROKERS, topic } });
    // A failed assertion must not leave the recorder's threads running: the file would never exit.
    t.after(() => audit.stop());
    audit.recordGovernanceEvent({ op: 'BREAKER_TRANSITION', owner: 'settlement', resource: 'settlement:1001', reason: 'failure_rate', detail: { by: 'breaker', from: 'CLOSED', to: 'OPEN' } });
    audit.recordGovernanceEvent({ op: 'SWITCH_CHANGED', owner: 'demo', resource: 'payments.enabled', reason: 'incident 7', detail: { by: 'admin:alice', old_version: 3, new_version: 4 } });
    audit.recordGovernanceEvent({ op: 'LEAK_SUSPECT', owner: null, resource: 'quote_cache', reason: 'IDLE', detail: { by: 'sandbox', keys: 12 } });
    await audit.flush();
    await audit.forwarder!.drain(60_000);
    const records = spoolRecords(dir);
    const consumed = await consumeAll(topic, new Set(records.keys()), 60_000);
    await audit.stop();
    assertAllArrived(records, consumed);
    const governance = [...consumed.byKey.values()].filter(({ value }) => /"op_type":"(BREAKER_TRANSITION|SWITCH_CHANGED|LEAK_SUSPECT)"/.test(value));
    assert.deepEqual(governance.map(({ key }) => key).sort(), ['payments.enabled', 'quote_cache', 'settlement:1001']);
  });

  test('Kafka stopped for 30 s in the middle of 100,000 events: every event arrives, none left duplicated after dedup', { timeout: 300_000 }, async (t) => {
    if (!needKafka(t)) return;
    const pid = kafkaPid();
    if (pid === null) {
      const reason = 'the broker was not started by test/infra/kafka.sh here, so this test cannot stop it';
      if (CI) assert.fail(reason);
      t.skip(reason);
      return;
    }
    const dir = tempSpool(t);
    const topic = uniqueTopic('outage');
    // 4 partitions: both producer lanes are sending when the broker stops.
    await createTopic(topic, 4);
    const audit = await createAuditRecorder({
      dir,
      actor: 'clearing/kafka-outage',
      kafka: { brokers: BROKERS, topic, sendTimeoutMs: 3000, backoffMs: 250, maxBackoffMs: 2000, batchRecords: 5000 },
    });
    const map = balances();
    audit.attach(map);
    let resumed = false;
    const resume = (): void => {
      if (!resumed) execFileSync('kill', ['-CONT', String(pid)]);
      resumed = true;
    };
    t.after(() => {
      try {
        resume();
      } catch {
        // The broker process is gone (stopped by someone else): nothing to resume.
      }
    });
    // A failed assertion must not leave the recorder's threads running: the file would never exit.
    t.after(() => audit.stop());

    await stream(audit, map, 30_000, 0);
    await audit.forwarder!.drain(60_000);
    // The broker stops answering (SIGSTOP: its connections stay open and go silent, which is
    // the failure that makes an unbounded idempotent send hang) while records keep coming.
    execFileSync('kill', ['-STOP', String(pid)]);
    const stoppedAt = Date.now();
    let n = 30_000;
    while (Date.now() - stoppedAt < 30_000) {
      await stream(audit, map, 2000, n);
      n += 2000;
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
    const during = audit.forwarder!.stats();
    assert.equal(during.healthy, false, 'the forwarder noticed the outage');
    assert.ok(during.lagBytes > 0, 'records wait in the spool');
    resume();
    await stream(audit, map, 100_000 - n, n);
    await audit.forwarder!.drain(120_000);
    const after = audit.forwarder!.stats();
    assert.equal(after.healthy, true);
    assert.ok(after.timeouts + after.errors > 0);

    const records = spoolRecords(dir);
    assert.ok(records.size >= 100_000, `${records.size} records`);
    const consumed = await consumeAll(topic, new Set(records.keys()), 120_000);
    await audit.stop();
    const delivered = assertAllArrived(records, consumed);
    t.diagnostic(`${delivered} records delivered; ${consumed.messages} messages read, ${consumed.duplicates} duplicates dropped; ${after.timeouts} send timeouts, ${after.errors} failed sends`);
    const sink = readSpool(dir).events.filter((e) => e.op_type === 'SINK_FAILED' || e.op_type === 'SINK_RECOVERED');
    assert.deepEqual(
      sink.map((e) => e.op_type),
      ['SINK_FAILED', 'SINK_RECOVERED'],
      'the outage is in the audit trail itself',
    );
    assert.match(sink[0]!.reason!, /^KAFKA_SEND_(TIMEOUT|FAILED)$/);
    assert.equal(verifySpool(dir).ok, true);
  });

  test('stop closes every producer lane even when the forwarder\'s last checkpoint write fails (spool directory removed)', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-gone', kafka: { brokers: BROKERS, topic: uniqueTopic('gone') } });
    let stopped = false;
    // A failed assertion must not leave the recorder's threads running: the file would never exit.
    t.after(() => (stopped ? undefined : audit.stop()));
    const map = balances();
    audit.attach(map);
    await stream(audit, map, 500, 0);
    await audit.forwarder!.drain(60_000);
    assert.ok(laneThreads().length > 0, 'a lane thread runs while forwarding');
    // The recorder goes on writing into it (the forwarder's checkpoint, HEAD, seals): a file
    // created between the removal's listing and its rmdir fails it with ENOTEMPTY (seen on CI),
    // so the removal is tried again until the directory is gone (then nothing can be created in it).
    for (let attempt = 1; existsSync(dir); attempt++) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY' || attempt >= 100) throw error;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    stopped = true;
    await audit.stop();
    // A lane left behind would keep forwarding nothing, forever, in this process.
    assert.deepEqual(laneThreads(), [], 'no producer lane thread outlives the stop');
  });

  test('a restarted forwarder resumes from its last acknowledged record', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('resume');
    const options = { dir, actor: 'clearing/kafka-resume', kafka: { brokers: BROKERS, topic } };
    let audit = await createAuditRecorder(options);
    // A failed assertion must not leave the recorder's threads running: the file would never exit.
    t.after(() => audit.stop());
    let map = balances();
    audit.attach(map);
    await stream(audit, map, 20_000, 0);
    await audit.forwarder!.drain(60_000);
    const firstSent = audit.forwarder!.stats().sent;
    await stream(audit, map, 10_000, 20_000);
    await audit.stop(); // records still unsent stay in the spool, behind the checkpoint
    audit = await createAuditRecorder(options);
    map = balances();
    audit.attach(map);
    await stream(audit, map, 10_000, 30_000);
    await audit.forwarder!.drain(60_000);
    const records = spoolRecords(dir);
    const consumed = await consumeAll(topic, new Set(records.keys()), 60_000);
    await audit.stop();
    assertAllArrived(records, consumed);
    assert.ok(firstSent >= 20_000);
    // At least once: only a batch in flight at the restart can come twice.
    assert.ok(consumed.messages - records.size <= 20_000, `${consumed.messages - records.size} repeats`);
  });

  test('a topic of 249 characters (the longest Kafka allows): its records arrive, and a restarted forwarder resumes from its checkpoint instead of failing to create its files', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const base = uniqueTopic('long');
    const topic = `${base}.${'x'.repeat(249 - base.length - 1)}`;
    assert.equal(topic.length, 249);
    const options = { dir, actor: 'clearing/kafka-long-topic', kafka: { brokers: BROKERS, topic } };
    let audit = await createAuditRecorder(options);
    t.after(() => audit.stop());
    let map = balances();
    audit.attach(map);
    await stream(audit, map, 2000, 0);
    await audit.forwarder!.drain(60_000);
    await audit.stop();
    const before = spoolRecords(dir).size;
    audit = await createAuditRecorder(options);
    map = balances();
    audit.attach(map);
    assert.ok(audit.forwarder!.stats().ackedSeq > 0, 'the restarted forwarder read its checkpoint');
    await stream(audit, map, 2000, 2000);
    await audit.forwarder!.drain(60_000);
    const records = spoolRecords(dir);
    const sentAfterRestart = audit.forwarder!.stats().sent;
    const consumed = await consumeAll(topic, new Set(records.keys()), 60_000);
    await audit.stop();
    assertAllArrived(records, consumed);
    // Resumed, not sent again from the start: only what came after the checkpoint (the records
    // of the restart, and the first run's own last lifecycle records) is sent.
    assert.ok(sentAfterRestart <= records.size - before + 10, `${sentAfterRestart} sent after the restart, ${records.size - before} recorded since`);
    for (const name of readdirSync(dir)) assert.ok(Buffer.byteLength(name) <= 255, name);
  });

  test('a line torn by a crash (terminated by recovery) is not forwarded: every message is a whole record', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('torn');
    let audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-torn', writeJournal: false });
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    for (let i = 0; i < 20; i++) map.store(`acct-${i % 3}`, BigInt(i));
    await audit.flush();
    await audit.stop();
    // A crash in the middle of the next write: its line ends after the actor, in the origin
    // (what the log holds when write(2) was cut short at a page boundary). Appended after what
    // HEAD vouches for: a crash never cuts a committed seal (recovery refuses such a log).
    const last = segmentFiles(dir).at(-1)!;
    const text = readFileSync(last, 'utf8');
    const storeAt = text.lastIndexOf('{"v":1,"seq":', text.lastIndexOf('"op_type":"STORE"'));
    const stoppedSeq = Math.max(...[...text.matchAll(/^\{"v":1,"seq":([0-9]+),/gm)].map((m) => Number(m[1])));
    const next = text.slice(storeAt, text.indexOf('\n', storeAt)).replace(/^\{"v":1,"seq":[0-9]+/, `{"v":1,"seq":${stoppedSeq + 1}`);
    appendFileSync(last, next.slice(0, next.indexOf(',"origin":"') + 15));
    audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-torn', writeJournal: false, kafka: { brokers: BROKERS, topic } });
    await audit.flush();
    await audit.forwarder!.drain(60_000);
    const records = spoolRecords(dir);
    const whole = [...records].filter(([, line]) => {
      try {
        JSON.parse(line);
        return true;
      } catch {
        return false;
      }
    });
    assert.equal(whole.length, records.size - 1, 'the spool holds one torn line');
    // One partition: the torn line, were it sent, comes before the records after it.
    const consumed = await consumeAll(topic, new Set(whole.map(([key]) => key)), 60_000);
    await audit.stop();
    for (const { value } of consumed.byKey.values()) assert.doesNotThrow(() => JSON.parse(value), `a whole record, not torn bytes: ${value}`);
    for (const [key, line] of whole) assert.equal(consumed.byKey.get(key)?.value, line);
  });

  test('a write torn by a crash and replayed whole from the journal: after dedup, the consumer has the whole record, not the torn copy', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('torn-journal');
    // The writer child (crash.test.ts) holds its drain worker, writes on into the journal, and is
    // killed; the log then gets the first 90% of one of those writes (its actor included), as a
    // write(2) cut short by the kill leaves it. Recovery terminates that line and replays the
    // whole record after it.
    const child = spawn(process.execPath, [fileURLToPath(new URL('./children/crash-writer.ts', import.meta.url)), dir, 'pause', 'journal'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let pausedTo = -1;
    let after = 0;
    await new Promise<void>((resolve, reject) => {
      child.on('message', (m: { type: string; seq: number; to: number }) => {
        if (m.type === 'paused') pausedTo = m.to;
        if (m.type === 'write' && pausedTo >= 0 && m.seq > pausedTo && ++after === 20) child.kill('SIGKILL');
      });
      child.on('error', reject);
      child.on('exit', () => resolve());
    });
    const frame = readJournal(dir).find((f) => f.seq > pausedTo);
    assert.ok(frame !== undefined, 'a write after the pause is in the journal only');
    appendFileSync(segmentFiles(dir).at(-1)!, frame.bytes.subarray(0, Math.floor(frame.bytes.length * 0.9)));
    const audit = await createAuditRecorder({ dir, actor: 'clearing/crash-test', kafka: { brokers: BROKERS, topic } });
    t.after(() => audit.stop());
    await audit.flush();
    await audit.forwarder!.drain(60_000);
    const whole = [...readFileSync(segmentFiles(dir).at(-1)!, 'utf8').split('\n')].find((line) => line.startsWith(`{"v":1,"seq":${frame.seq},`) && line.endsWith('}'));
    assert.ok(whole !== undefined, 'recovery replayed the whole record');
    const consumed = await consumeAll(topic, new Set([`clearing/crash-test:${frame.seq}`]), 60_000);
    await audit.stop();
    assert.equal(consumed.byKey.get(`clearing/crash-test:${frame.seq}`)?.value, whole, 'the record the consumer keeps is the whole one');
  });

  test('a record longer than a batch (a large recordValue) is forwarded, and the records after it too', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('large');
    // 200 KB of value: well under the broker's 1 MiB, but longer than batchBytes + the read margin.
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-large', recordValue: (v) => String(v), kafka: { brokers: BROKERS, topic, batchBytes: 65_536 } });
    t.after(() => audit.stop());
    const map = new GovernedMap<string, string>({ name: 'documents', validate: () => true });
    audit.attach(map);
    map.store('doc-1', 'small');
    map.store('doc-2', 'x'.repeat(200_000));
    map.store('doc-3', 'small again');
    await audit.flush();
    await audit.forwarder!.drain(20_000);
    const records = spoolRecords(dir);
    const consumed = await consumeAll(topic, new Set(records.keys()), 60_000);
    await audit.stop();
    assertAllArrived(records, consumed);
  });

  test('a record larger than the topic\'s max.message.bytes: a substitute naming it (same dedup key and Kafka key) is sent in its place, and the records after it still arrive', { timeout: 120_000 }, async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('oversized');
    // A topic-level limit of 20 KB: a 100 KB value that zstd cannot shrink is refused whatever the batch.
    const admin = new Admin({ clientId: 'govmap-audit-test-admin', bootstrapBrokers: BROKERS });
    try {
      await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1, configs: [{ name: 'max.message.bytes', value: '20000' }] });
    } finally {
      await admin.close();
    }
    const warnings: Array<Error & { code?: string }> = [];
    const onWarning = (w: Error & { code?: string }): void => void warnings.push(w);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-oversized', recordValue: (v) => String(v), kafka: { brokers: BROKERS, topic, backoffMs: 100 } });
    t.after(() => audit.stop());
    const registry = new Registry();
    registerAuditMetrics(registry, audit);
    const map = new GovernedMap<string, string>({ name: 'documents', validate: () => true });
    audit.attach(map);
    map.store('doc-1', 'small');
    map.store('doc-2', randomBytes(75_000).toString('base64'));
    map.store('doc-3', 'small again');
    await audit.flush();
    await audit.forwarder!.drain(30_000);
    // The batches shrank for that one record (to the few small records before it): the records
    // after it go in full batches again, not a handful per round trip for the rest of the process.
    const sendsBefore = audit.forwarder!.stats().sends;
    for (let i = 0; i < 6000; i++) map.store(`doc-${4 + (i % 50)}`, `after the oversized record ${i}`);
    await audit.flush();
    await audit.forwarder!.drain(30_000);
    const sendsAfter = audit.forwarder!.stats().sends - sendsBefore;
    assert.ok(sendsAfter < 30, `6,000 small records after the oversized one took ${sendsAfter} sends`);
    const records = spoolRecords(dir);
    const consumed = await consumeAll(topic, new Set(records.keys()), 30_000);
    await audit.stop();
    const big = [...records].find(([, line]) => line.includes('"resource_id":"doc-2"'))!;
    const [bigKey, bigLine] = big;
    for (const [key, line] of records) if (key !== bigKey) assert.equal(consumed.byKey.get(key)?.value, line, `record ${key} arrived as written in the spool`);
    const substitute = consumed.byKey.get(bigKey);
    assert.ok(substitute !== undefined, 'the oversized record\'s dedup key reached Kafka');
    assert.equal(substitute.key, 'doc-2', 'keyed like the record it replaces (same partition, same per-key order)');
    assert.equal(dedupKeyOf(substitute.value), bigKey);
    const parsed = parseSpoolLine(substitute.value);
    assert.equal(parsed.kind, 'event', `the substitute is a well-formed audit record: ${substitute.value}`);
    const original = JSON.parse(bigLine) as Record<string, unknown>;
    const got = JSON.parse(substitute.value) as Record<string, unknown> & { oversized: { reason: string; bytes: number; sha256: string; segment: string; offset: number } };
    for (const field of ['seq', 'op_type', 'map', 'resource_id', 'outcome', 'timestamp', 'actor', 'origin']) assert.equal(got[field], original[field], field);
    assert.equal(got.value, null, 'the value that did not fit is not in the substitute');
    assert.equal(got.oversized.reason, 'KAFKA_MESSAGE_TOO_LARGE');
    assert.equal(got.oversized.bytes, Buffer.byteLength(bigLine));
    assert.equal(got.oversized.sha256, createHash('sha256').update(bigLine).digest('hex'), 'the SHA-256 of the spool line');
    // Where the original lies: reading those bytes of the spool gives the line back.
    const at = readFileSync(join(dir, got.oversized.segment)).subarray(got.oversized.offset, got.oversized.offset + got.oversized.bytes).toString('utf8');
    assert.equal(at, bigLine, 'segment and offset point at the original line');
    const stats = audit.forwarder!.stats();
    assert.equal(stats.oversized, 1);
    assert.equal((await registry.getSingleMetric('govmap_audit_kafka_oversized_total')!.get()).values[0]!.value, 1, 'counted in the metrics');
    assert.equal(stats.healthy, true, 'healthy again once the records after it are acknowledged');
    assert.ok(warnings.some((w) => w.code === 'GOVMAP_AUDIT_KAFKA_RECORD_TOO_LARGE' && w.message.includes(bigKey)), `a warning names the record: ${warnings.map((w) => w.message).join(' | ')}`);
    const failed = readSpool(dir).events.find((e) => e.op_type === 'SINK_FAILED' && e.reason === 'KAFKA_RECORD_TOO_LARGE');
    assert.ok(failed !== undefined && failed.detail!.includes(bigKey) && failed.detail!.includes(got.oversized.sha256), 'the audit trail names the replaced record');
    // Consumers' dedup: the substitute holds the key; the original, were it ever sent (a restart before the checkpoint), is a repeat.
    const dedup = new AuditDeduplicator();
    assert.equal(dedup.acceptRecord(substitute.value), true);
    assert.equal(dedup.acceptRecord(bigLine), false);
  });

  test('after a send of a producer lane fails, the sends handed to it later are refused until it is discarded: a later record of the key never reaches Kafka before the failed one is resent', async (t) => {
    if (!needKafka(t)) return;
    const topic = uniqueTopic('kafka7-lane-order');
    // A 20 KB limit: the 60 KB record is refused by the broker, the small ones are taken.
    const admin = new Admin({ clientId: 'govmap-audit-test-admin', bootstrapBrokers: BROKERS });
    try {
      await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1, configs: [{ name: 'max.message.bytes', value: '20000' }] });
    } finally {
      await admin.close();
    }
    const lane = new Worker(new URL('../../src/audit/kafka-producer-worker.ts', import.meta.url), {
      workerData: { brokers: BROKERS, clientId: 'govmap-audit-test-lane', topic, sendTimeoutMs: 10_000, compression: 'none', dedupHeader: false } satisfies ProducerLaneData,
    });
    t.after(() => lane.terminate());
    let nextId = 1;
    const ask = (request: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<ProducerLaneReply> => {
      const id = nextId++;
      return new Promise((resolve) => {
        const onReply = (reply: ProducerLaneReply): void => {
          if (reply.id !== id) return;
          lane.off('message', onReply);
          resolve(reply);
        };
        lane.on('message', onReply);
        lane.postMessage({ ...request, id }, transfer);
      });
    };
    /** One record of key `acct-1`, as the forwarder hands it to a lane (partition 0). */
    const send = (seq: number, value: string): Promise<ProducerLaneReply> => {
      const key = Buffer.from('acct-1');
      const line = Buffer.from(JSON.stringify({ v: 1, seq, value, actor: 'clearing/lane-order' }));
      const data = new Uint8Array(key.length + line.length);
      data.set(key, 0);
      data.set(line, key.length);
      const index = Uint32Array.from([0, key.length, key.length, data.length, 0]);
      return ask({ type: 'send', data, index, count: 1 }, [data.buffer, index.buffer]);
    };
    assert.equal((await send(1, 'first')).type, 'ok');
    const refused = await send(2, randomBytes(45_000).toString('base64'));
    assert.equal(refused.type, 'failed', 'the broker refuses the 60 KB record');
    // The forwarder had already handed this one over (pipelined) when the failure came back: sent,
    // seq 3 would be in Kafka ahead of seq 2's resend (its substitute), out of seq order for the key.
    const later = await send(3, 'third');
    assert.equal(later.type, 'failed', 'a send handed over after the failure is not sent');
    assert.match((later as { message: string }).message, /earlier send .*failed/);
    assert.deepEqual(await topicValues(topic, 1), ['{"v":1,"seq":1,"value":"first","actor":"clearing/lane-order"}'], 'Kafka holds the record before the failure only');
    // The forwarder discards the producers, then resends from the last acknowledged record.
    assert.equal((await ask({ type: 'discard' })).type, 'ok');
    assert.equal((await send(2, 'its substitute')).type, 'ok');
    assert.equal((await send(3, 'third')).type, 'ok');
    const seqs = (await topicValues(topic, 3)).map((value) => (JSON.parse(value) as { seq: number }).seq);
    assert.deepEqual(seqs, [1, 2, 3], 'the key\'s records are in the partition in seq order');
  });

  test('a pipelined send refused by the broker: the records of a key still reach the partition in seq order (first copies, after dedup)', { timeout: 120_000 }, async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('kafka7-pipelined-order');
    const admin = new Admin({ clientId: 'govmap-audit-test-admin', bootstrapBrokers: BROKERS });
    try {
      await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1, configs: [{ name: 'max.message.bytes', value: '20000' }] });
    } finally {
      await admin.close();
    }
    // One record per send, three in flight: the sends after the refused one are already handed
    // over, and the next is handed over as soon as the one before the refused one is acknowledged.
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-pipelined-order', recordValue: (v) => String(v), kafka: { brokers: BROKERS, topic, compression: 'none', batchRecords: 1, maxInFlight: 3, backoffMs: 50 } });
    t.after(() => audit.stop());
    const map = new GovernedMap<string, string>({ name: 'documents', validate: () => true });
    audit.attach(map);
    map.store('doc-1', 'first');
    map.store('doc-1', randomBytes(45_000).toString('base64'));
    for (let i = 0; i < 20; i++) map.store('doc-1', `after ${i}`);
    await audit.flush();
    await audit.forwarder!.drain(30_000);
    const expected = [...spoolRecords(dir).values()].filter((line) => line.includes('"resource_id":"doc-1"')).length;
    const values = await topicValues(topic, audit.forwarder!.stats().sent);
    await audit.stop();
    const dedup = new AuditDeduplicator();
    const seqs = values.filter((value) => value.includes('"resource_id":"doc-1"') && dedup.acceptRecord(value)).map((value) => (JSON.parse(value) as { seq: number }).seq);
    assert.equal(seqs.length, expected, 'every record of doc-1 arrived');
    assert.deepEqual(seqs, seqs.toSorted((a, b) => a - b), `doc-1's records in partition order: ${seqs.join(',')}`);
  });

  for (const [past, moved] of [
    ['the end of its segment (a power loss kept the fsynced checkpoint, not the segment\'s unsynced tail)', (c: { segment: number; offset: number }) => ({ offset: c.offset + 200_000 })],
    ['the spool\'s last segment (a checkpoint from another spool)', (c: { segment: number; offset: number }) => ({ segment: c.segment + 5, offset: 1234 })],
  ] as const) test(`a checkpoint past ${past}: the spool is sent again, nothing recorded after the restart is skipped`, async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('review2-past-end');
    const withKafka = { dir, actor: 'clearing/kafka-past-end', kafka: { brokers: BROKERS, topic } };
    let audit = await createAuditRecorder(withKafka);
    t.after(() => audit.stop());
    let map = balances();
    audit.attach(map);
    await stream(audit, map, 400, 0);
    await audit.forwarder!.drain(60_000);
    await audit.stop();
    // The checkpoint is datasynced after every acknowledged batch; the segment's records are
    // forwarded as soon as they are written, before the drain worker's next fsync. A power loss
    // in between leaves the checkpoint pointing past what the segment still holds: the recorder
    // then appends its next records below that position. (A checkpoint copied from another
    // spool has the same effect.)
    const checkpointFile = join(dir, `kafka-${topic}.checkpoint`);
    const checkpoint = JSON.parse(readFileSync(checkpointFile, 'utf8')) as { segment: number; offset: number; seq: number };
    writeFileSync(checkpointFile, JSON.stringify({ ...checkpoint, ...moved(checkpoint) }));
    audit = await createAuditRecorder(withKafka);
    map = balances();
    audit.attach(map);
    await stream(audit, map, 400, 1000);
    await audit.forwarder!.drain(20_000).catch(() => undefined);
    const records = spoolRecords(dir);
    const consumed = await consumeAll(topic, new Set(records.keys()), 20_000);
    await audit.stop();
    assertAllArrived(records, consumed);
    const failed = readSpool(dir).events.find((e) => e.op_type === 'SINK_FAILED');
    assert.equal(failed?.reason, 'CHECKPOINT_PAST_SPOOL_END', 'the resend is in the audit trail');
  });

  /**
   * A spool forwarded up to a checkpoint, then written on while Kafka was off until it rotated
   * (retention may now remove the older segments, the checkpoint's among them).
   */
  async function forwardedThenWrittenOffline(t: TestContext, name: string): Promise<{ dir: string; topic: string; withKafka: AuditRecorderOptions; checkpoint: { segment: number; seq: number }; removable: string[] }> {
    const dir = tempSpool(t);
    const topic = uniqueTopic(name);
    const withKafka = { dir, actor: `clearing/kafka-${name}`, maxSegmentBytes: 65_536, kafka: { brokers: BROKERS, topic } };
    const forwarding = await createAuditRecorder(withKafka);
    t.after(() => forwarding.stop());
    const forwarded = balances();
    forwarding.attach(forwarded);
    await stream(forwarding, forwarded, 200, 0);
    await forwarding.forwarder!.drain(60_000);
    const { segment } = forwarding.forwarder!.stats().position;
    await forwarding.stop();
    // After the stop: it forwards its own AUDIT_STOPPED too.
    const { seq } = JSON.parse(readFileSync(join(dir, `kafka-${topic}.checkpoint`), 'utf8')) as { seq: number };
    const offline = await createAuditRecorder({ dir, actor: `clearing/kafka-${name}`, maxSegmentBytes: 65_536 });
    t.after(() => offline.stop());
    const written = balances();
    offline.attach(written);
    for (let i = 0; i < 6; i++) await stream(offline, written, 500, 200 + i * 500);
    await offline.stop();
    return { dir, topic, withKafka, checkpoint: { segment, seq }, removable: segmentFiles(dir).slice(0, -2) };
  }

  test('a checkpoint whose segment was removed while Kafka was off (retention): the forwarder goes on from the oldest segment left', async (t) => {
    if (!needKafka(t)) return;
    const { dir, topic, withKafka, checkpoint, removable } = await forwardedThenWrittenOffline(t, 'retained');
    assert.ok(removable.some((f) => f.endsWith(`${String(checkpoint.segment).padStart(6, '0')}.jsonl`)), 'the checkpoint\'s segment is among the removed');
    for (const file of removable) rmSync(file);
    const audit = await createAuditRecorder(withKafka);
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    await stream(audit, map, 200, 10_000);
    await audit.forwarder!.drain(20_000);
    const records = spoolRecords(dir);
    const consumed = await consumeAll(topic, new Set(records.keys()), 60_000);
    await audit.stop();
    assertAllArrived(records, consumed);
    const failed = readSpool(dir).events.find((e) => e.op_type === 'SINK_FAILED');
    assert.equal(failed?.reason, 'SPOOL_SEGMENT_MISSING', 'the skipped segments are in the audit trail');
  });

  test('records whose segment was removed before being forwarded are counted: govmap_audit_kafka_skipped_total in the registry text and stats().skipped', async (t) => {
    if (!needKafka(t)) return;
    const { withKafka, checkpoint, removable } = await forwardedThenWrittenOffline(t, 'skipped-metric');
    // What the removed segments held past the checkpoint: what Kafka will never get.
    let lost = 0;
    for (const file of removable) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const seq = line === '' ? 0 : Number(dedupKeyOf(line)?.split(':').at(-1) ?? 0);
        if (seq > checkpoint.seq) lost++;
      }
      rmSync(file);
    }
    assert.ok(lost > 1000, `${lost} records removed unforwarded`);
    const audit = await createAuditRecorder(withKafka);
    t.after(() => audit.stop());
    const registry = new Registry();
    registerAuditMetrics(registry, audit);
    await audit.forwarder!.drain(20_000);
    assert.equal(audit.forwarder!.stats().skipped, lost);
    assert.match(await registry.metrics(), new RegExp(`^govmap_audit_kafka_skipped_total ${lost}$`, 'm'));
    await audit.stop();
  });

  test('segments removed during a Kafka outage and the forwarder restarted while Kafka is still down: the skipped segments are still named in the audit trail when Kafka is back', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('retained-outage');
    const audit0 = await createAuditRecorder({ dir, actor: 'clearing/kafka-retained-outage', maxSegmentBytes: 65_536 });
    const map0 = balances();
    audit0.attach(map0);
    for (let i = 0; i < 6; i++) await stream(audit0, map0, 500, i * 500);
    await audit0.stop();
    // Kafka went down while the forwarder was at the start of audit-000001.jsonl.
    writeFileSync(join(dir, `kafka-${topic}.checkpoint`), JSON.stringify({ segment: 1, offset: 0, seq: 0 }));
    // What an operator does when the disk fills during the outage: the oldest segments go.
    const removed = segmentFiles(dir).slice(0, -2);
    for (const file of removed) rmSync(file);
    // The bootstrap address refuses until Kafka is "back" (then it leads to the real broker, whose
    // metadata names its own address).
    let up = false;
    const [host, port] = BROKERS[0]!.split(':') as [string, string];
    const proxy = createServer((socket) => {
      if (!up) return socket.destroy();
      const broker = connect(Number(port), host);
      socket.pipe(broker).pipe(socket);
      broker.on('error', () => socket.destroy());
      socket.on('error', () => broker.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    t.after(() => proxy.close());
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-retained-outage', maxSegmentBytes: 65_536, kafka: { brokers: [`127.0.0.1:${(proxy.address() as AddressInfo).port}`], topic, backoffMs: 50, maxBackoffMs: 200 } });
    t.after(() => audit.stop());
    const deadline = Date.now() + 20_000;
    while (audit.forwarder!.stats().errors === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(audit.forwarder!.stats().errors > 0, 'Kafka is down at the start');
    up = true;
    await audit.forwarder!.drain(30_000);
    await audit.stop();
    const failed = readSpool(dir).events.filter((e) => e.op_type === 'SINK_FAILED');
    const missing = failed.find((e) => e.reason === 'SPOOL_SEGMENT_MISSING');
    assert.ok(missing !== undefined, `the skipped segments are in the audit trail; SINK_FAILED seen: ${failed.map((e) => e.reason).join(', ')}`);
    assert.match(missing.detail ?? '', /audit-000001\.jsonl.*left the spool before being forwarded/);
  });

  test('a checkpoint whose segment was removed, and nothing left to send after it (the next segment holds only its header: the service was killed right after rotating): healthy again once caught up, the loss named, not unhealthy for ever', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('lost-then-idle');
    const audit0 = await createAuditRecorder({ dir, actor: 'clearing/kafka-lost-idle', maxSegmentBytes: 65_536 });
    const map0 = balances();
    audit0.attach(map0);
    for (let i = 0; i < 3; i++) await stream(audit0, map0, 500, i * 500);
    await audit0.stop();
    const files = segmentFiles(dir);
    const newest = Number(/audit-([0-9]+)\.jsonl$/.exec(files.at(-1)!)![1]);
    // Forwarded up to the newest segment, which then left the spool (retention) while no
    // forwarder ran; the one after it holds its header and nothing else.
    writeFileSync(join(dir, `kafka-${topic}.checkpoint`), JSON.stringify({ segment: newest, offset: 0, seq: 0 }));
    for (const file of files) rmSync(file);
    const next = join(dir, `audit-${String(newest + 1).padStart(6, '0')}.jsonl`);
    writeFileSync(next, `${JSON.stringify({ v: 1, type: 'SEGMENT', segment: newest + 1, actor: 'clearing/kafka-lost-idle', origin: 'test', timestamp: new Date().toISOString() })}\n`);
    const forwarder = await startKafkaForwarder({ dir, brokers: BROKERS, topic, pollIntervalMs: 20 });
    t.after(() => forwarder.stop());
    const deadline = Date.now() + 10_000;
    while (forwarder.stats().position.segment !== newest + 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(forwarder.stats().position.segment, newest + 1, 'forwarding went on with the next segment');
    assert.match(forwarder.stats().lastError ?? '', /left the spool before being forwarded/, 'the loss is named');
    const caughtUp = Date.now() + 5_000;
    while (!forwarder.stats().healthy && Date.now() < caughtUp) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(forwarder.stats().healthy, true, 'Kafka is fine and nothing more is lost: healthy once caught up');
    await forwarder.stop();
  });

  test('a compressed segment moved out of the spool instead of decompressed: skipped as removed (SPOOL_SEGMENT_MISSING), and healthy again once caught up', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('compressed-moved-out');
    const audit0 = await createAuditRecorder({ dir, actor: 'clearing/kafka-moved-out' });
    audit0.attach(balances());
    await audit0.stop();
    const [segment] = segmentFiles(dir);
    writeFileSync(join(dir, `kafka-${topic}.checkpoint`), JSON.stringify({ segment: 1, offset: 0, seq: 0 }));
    writeFileSync(`${segment}.gz`, gzipSync(readFileSync(segment!)));
    rmSync(segment!);
    // The segment after it holds its header only: once past the compressed one, nothing is left to send.
    writeFileSync(join(dir, 'audit-000002.jsonl'), `${JSON.stringify({ v: 1, type: 'SEGMENT', segment: 2, actor: 'clearing/kafka-moved-out', origin: 'test', timestamp: new Date().toISOString() })}\n`);
    const forwarder = await startKafkaForwarder({ dir, brokers: BROKERS, topic, pollIntervalMs: 20 });
    t.after(() => forwarder.stop());
    const named = Date.now() + 10_000;
    while (!/compressed/.test(forwarder.stats().lastError ?? '') && Date.now() < named) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(forwarder.stats().healthy, false, `held up by the compressed segment: ${forwarder.stats().lastError}`);
    rmSync(`${segment}.gz`);
    const deadline = Date.now() + 10_000;
    while (!forwarder.stats().healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.match(forwarder.stats().lastError ?? '', /audit-000001\.jsonl left the spool before being forwarded/);
    assert.equal(forwarder.stats().position.segment, 2);
    assert.equal(forwarder.stats().healthy, true, 'nothing more to send and Kafka fine: healthy');
    await forwarder.stop();
  });

  for (const [where, segment] of [['before any forwarder ran (no checkpoint)', 1], ['holding the forwarder\'s checkpoint', 2]] as const) test(`a segment an operator compressed (audit-00000${segment}.jsonl.gz) ${where}: named as compressed (SINK_FAILED SPOOL_SEGMENT_COMPRESSED, a warning, lastError), waited on rather than skipped as removed, and forwarded whole once decompressed`, { timeout: 120_000 }, async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic('compressed');
    const actor = 'clearing/kafka-compressed';
    const audit0 = await createAuditRecorder({ dir, actor, maxSegmentBytes: 65_536 });
    const map0 = balances();
    audit0.attach(map0);
    for (let i = 0; i < 4; i++) await stream(audit0, map0, 500, i * 500);
    await audit0.stop();
    const first = segmentFiles(dir)[segment - 1]!;
    assert.ok(segmentFiles(dir).length > 3, 'several segments');
    if (segment > 1) writeFileSync(join(dir, `kafka-${topic}.checkpoint`), JSON.stringify({ segment, offset: 0, seq: 0 }));
    // What logrotate's compress does to an old file, while the forwarder was off.
    writeFileSync(`${first}.gz`, gzipSync(readFileSync(first)));
    const original = readFileSync(first);
    rmSync(first);
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.message);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const audit = await createAuditRecorder({ dir, actor, maxSegmentBytes: 65_536, kafka: { brokers: BROKERS, topic, pollIntervalMs: 20 } });
    t.after(() => audit.stop());
    const deadline = Date.now() + 10_000;
    while (!/compressed/.test(audit.forwarder!.stats().lastError ?? '') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const stats = audit.forwarder!.stats();
    assert.match(stats.lastError ?? '', new RegExp(`audit-00000${segment}\\.jsonl\\.gz.*decompress`), `named as compressed, with what to do: ${stats.lastError}`);
    assert.equal(stats.skipped, 0, 'nothing skipped: the records are still in the spool, compressed');
    assert.equal(stats.position.segment <= segment, true, `not moved past the compressed segment (at ${stats.position.segment})`);
    assert.equal(stats.healthy, false, 'forwarding is held up: not healthy');
    assert.ok(warnings.some((w) => w.includes(`audit-00000${segment}.jsonl.gz`)), `a process warning names it: ${warnings.join(' | ')}`);
    writeFileSync(first, original);
    rmSync(`${first}.gz`);
    await audit.forwarder!.drain(60_000);
    // The checkpoint says the segments before it were forwarded: the rest must all arrive.
    const before = new Set(segment === 1 ? [] : [...spoolRecords(dir)].filter(([, line]) => readFileSync(segmentFiles(dir)[0]!, 'utf8').includes(line)).map(([key]) => key));
    const records = new Map([...spoolRecords(dir)].filter(([key]) => !before.has(key)));
    const consumed = await consumeAll(topic, new Set(records.keys()), 60_000);
    assert.equal(audit.forwarder!.stats().skipped, 0);
    await audit.stop();
    assertAllArrived(records, consumed);
    const failed = readSpool(dir).events.filter((e) => e.op_type === 'SINK_FAILED');
    assert.deepEqual(failed.map((e) => e.reason), ['SPOOL_SEGMENT_COMPRESSED'], 'named once, as compressed, not as removed');
    assert.ok(failed[0]!.detail?.includes(`audit-00000${segment}.jsonl.gz`), failed[0]!.detail ?? undefined);
  });

  test('kafka.sh stop, then start (a fresh broker): the forwarder reconnects and forwards what was recorded meanwhile', { timeout: 300_000 }, async (t) => {
    if (!needKafka(t)) return;
    if (kafkaPid() === null) {
      const reason = 'the broker was not started by test/infra/kafka.sh here, so this test cannot restart it';
      if (CI) assert.fail(reason);
      t.skip(reason);
      return;
    }
    const dir = tempSpool(t);
    const topic = uniqueTopic('restart');
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-restart', kafka: { brokers: BROKERS, topic, sendTimeoutMs: 3000, maxBackoffMs: 2000 } });
    // A failed assertion must not leave the recorder's threads running: the file would never exit.
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    await stream(audit, map, 5000, 0);
    await audit.forwarder!.drain(60_000);
    const ackedBefore = audit.forwarder!.stats().ackedSeq;
    execFileSync('bash', [KAFKA_SH, 'stop'], { stdio: 'ignore' });
    try {
      await stream(audit, map, 5000, 5000);
      await new Promise((resolve) => setTimeout(resolve, 4000));
      assert.equal(audit.forwarder!.stats().healthy, false);
    } finally {
      // The script starts a fresh, empty broker: what was acknowledged before is gone with the
      // old one; what was recorded since the last acknowledgement must arrive on the new one.
      startBrokerAgain();
    }
    await audit.forwarder!.drain(180_000);
    const after = [...spoolRecords(dir)].filter(([, line]) => (JSON.parse(line) as { seq: number }).seq > ackedBefore);
    const consumed = await consumeAll(topic, new Set(after.map(([key]) => key)), 120_000);
    await audit.stop();
    for (const [key, line] of after) assert.equal(consumed.byKey.get(key)?.value, line, `record ${key} recorded after the last acknowledgement arrived`);
    assert.ok(after.length >= 5000);
  });
});

describe('without a reachable broker', () => {
  test('a broker address that does not resolve: SINK_FAILED and lastError say which host and why, not only "metadata failed"', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-dns', kafkaStopDrainMs: 0, kafka: { brokers: ['no-such-host.invalid:9092'], sendTimeoutMs: 3000, backoffMs: 100 } });
    t.after(() => audit.stop());
    const deadline = Date.now() + 20_000;
    while (audit.forwarder!.stats().healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const { lastError } = audit.forwarder!.stats();
    await audit.stop();
    assert.match(lastError ?? '', /no-such-host\.invalid/, `lastError names the host: ${lastError}`);
    assert.match(lastError ?? '', /ENOTFOUND|EAI_AGAIN/, `lastError says the name does not resolve: ${lastError}`);
    const failed = readSpool(dir).events.find((e) => e.op_type === 'SINK_FAILED');
    assert.match(failed?.detail ?? '', /getaddrinfo (ENOTFOUND|EAI_AGAIN) no-such-host\.invalid/, 'the audit trail says why Kafka failed');
  });

  test('a broker that takes the connection and never answers (packets black-holed): healthy turns false at half the send deadline, not at the deadline', { timeout: 60_000 }, async (t) => {
    const port = await blackHoleBroker(t);
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-blackhole', kafkaStopDrainMs: 0, kafka: { brokers: [`127.0.0.1:${port}`], topic: 'govmap.audit.blackhole', sendTimeoutMs: 20_000 } });
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 1n);
    await audit.flush();
    const started = performance.now();
    while (audit.forwarder!.stats().healthy && performance.now() - started < 25_000) await new Promise((resolve) => setTimeout(resolve, 100));
    const ms = performance.now() - started;
    const stats = audit.forwarder!.stats();
    await audit.stop();
    assert.equal(stats.healthy, false, 'unhealthy while nothing is acknowledged');
    assert.ok(ms < 14_000, `healthy turned false after ${Math.round(ms)} ms of a 20,000 ms send deadline`);
  });

  test('drain() past its time is a typed error with a code, naming the topic, the lag and the last error', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-drain', kafkaStopDrainMs: 0, kafka: { brokers: ['127.0.0.1:1'], topic: 'govmap.audit.drain' } });
    t.after(() => audit.stop());
    await audit.flush();
    await assert.rejects(audit.forwarder!.drain(300), (error: Error & { code?: string }) => {
      assert.ok(error instanceof GovMapError, `${error.name}: ${error.message}`);
      assert.equal(error.code, 'GOVMAP_AUDIT_KAFKA_DRAIN_TIMEOUT');
      assert.match(error.message, /govmap\.audit\.drain.*300 ms.*lag [0-9]+ bytes/);
      return true;
    });
  });

  test('drain() of a stopped forwarder with records still unsent is refused at once as stopped (GOVMAP_AUDIT_STOPPED), not waited on for its whole timeout and then said to "go on"', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-drain-stopped', kafkaStopDrainMs: 0, kafka: { brokers: ['127.0.0.1:1'], topic: 'govmap.audit.drain-stopped' } });
    t.after(() => audit.stop());
    const forwarder = audit.forwarder!;
    await audit.stop();
    assert.ok(forwarder.stats().lagBytes > 0, 'records wait behind the checkpoint');
    const started = performance.now();
    await assert.rejects(forwarder.drain(10_000), (error: Error & { code?: string }) => {
      assert.ok(error instanceof GovMapError, `${error.name}: ${error.message}`);
      assert.equal(error.code, 'GOVMAP_AUDIT_STOPPED');
      assert.match(error.message, /forwarder.*drain\(\)/);
      return true;
    });
    assert.ok(performance.now() - started < 2000, `refused after ${Math.round(performance.now() - started)} ms`);
    // Never started: the same.
    const idle = new KafkaForwarder({ dir, brokers: ['127.0.0.1:1'], topic: 'govmap.audit.drain-idle' });
    await assert.rejects(idle.drain(10_000), (error: Error & { code?: string }) => error.code === 'GOVMAP_AUDIT_STOPPED');
  });

  test('an unknown kafka option (a misspelt topic) is refused, not ignored: the audit would go to govmap.audit', async (t) => {
    const dir = tempSpool(t);
    const starting = createAuditRecorder({ dir, actor: 'clearing/kafka-typo', kafkaStopDrainMs: 0, kafka: { brokers: ['127.0.0.1:1'], topc: 'payments.audit' } as never });
    // Were it accepted, its lanes must not keep this file from exiting.
    t.after(async () => (await starting.catch(() => null))?.stop());
    await assert.rejects(
      starting,
      (error: Error & { code?: string }) => {
        assert.ok(error instanceof AuditConfigurationError, `${error.name}: ${error.message}`);
        assert.match(error.message, /"kafka\.topc"/);
        return true;
      },
    );
  });

  test('a kafka count that is not a whole number (producers: 0.5), producers past 64, or a delay past a Node.js timer is refused naming the option, never floored to 0 or cut short', (t) => {
    const dir = tempSpool(t);
    // Floored, 0.5 producers or in flight would be 0: a forwarder that never sends, and says nothing.
    // Past 2^31 - 1 ms a timer fires after 1 ms: a backoff that hammers the broker.
    for (const [option, value] of [
      ['producers', 0.5],
      ['producers', 65],
      ['maxInFlight', 0.5],
      ['batchRecords', 2.5],
      ['batchBytes', 0.5],
      ['sendTimeoutMs', 2 ** 31],
      ['maxBackoffMs', 1e12],
      ['pollIntervalMs', Infinity],
    ] as const) {
      assert.throws(
        () => new KafkaForwarder({ dir, brokers: ['127.0.0.1:1'], [option]: value }),
        (error: Error & { code?: string }) => {
          assert.ok(error instanceof AuditConfigurationError, `${option} ${value}: ${error.name}: ${error.message}`);
          assert.equal(error.code, 'GOVMAP_AUDIT_INVALID_CONFIGURATION');
          assert.match(error.message, new RegExp(`"kafka\\.${option}"`));
          return true;
        },
        `${option}: ${value} was accepted`,
      );
    }
    // The documented limits themselves are accepted.
    new KafkaForwarder({ dir, brokers: ['127.0.0.1:1'], producers: 64, maxInFlight: 1, sendTimeoutMs: 2 ** 31 - 1 });
  });

  test('a count option below 1 or fractional (maxInFlight 0.5, batchRecords 0.5, producers 0.5, batchBytes 0.5) is refused naming it: not a frozen event loop, a forwarder that sends nothing, or a TypeError retried for ever', { timeout: 60_000 }, async (t) => {
    for (const option of ['maxInFlight', 'batchRecords', 'producers', 'batchBytes']) {
      for (const value of [0.5, 2.5]) {
        const dir = tempSpool(t);
        const starting = createAuditRecorder({ dir, actor: 'clearing/kafka-count', kafkaStopDrainMs: 0, kafka: { brokers: ['127.0.0.1:1'], [option]: value } });
        t.after(async () => (await starting.catch(() => null))?.stop());
        await assert.rejects(starting, (error: Error & { code?: string }) => {
          assert.ok(error instanceof AuditConfigurationError, `${option} ${value}: ${error.name}: ${error.message}`);
          assert.equal(error.code, 'GOVMAP_AUDIT_INVALID_CONFIGURATION');
          assert.match(error.message, new RegExp(`"kafka\\.${option}": must be (a positive integer|a whole number from 1 to 64).*received ${value}`));
          return true;
        });
      }
    }
  });

  test('a time option past the 32-bit timer range (sendTimeoutMs 2^31 meant as "no deadline") is refused naming it: not every send timed out after 1 ms', async (t) => {
    for (const option of ['sendTimeoutMs', 'pollIntervalMs', 'backoffMs', 'maxBackoffMs']) {
      const dir = tempSpool(t);
      const starting = createAuditRecorder({ dir, actor: 'clearing/kafka-time', kafkaStopDrainMs: 0, kafka: { brokers: ['127.0.0.1:1'], [option]: 2 ** 31 } });
      t.after(async () => (await starting.catch(() => null))?.stop());
      await assert.rejects(starting, (error: Error & { code?: string }) => {
        assert.ok(error instanceof AuditConfigurationError, `${option}: ${error.name}: ${error.message}`);
        assert.match(error.message, new RegExp(`"kafka\\.${option}": must be a positive number of ms, at most 2,147,483,647`));
        return true;
      });
    }
  });

  test('brokers: a bracketed IPv6 address ([::1]:9092) is accepted; a port outside 1-65535 is refused naming the broker', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/kafka-ipv6', kafkaStopDrainMs: 0, kafka: { brokers: ['[::1]:1', '[fd00:10::5]:9093'] } });
    await audit.stop();
    for (const broker of ['kafka-1:0', 'kafka-1:65536', 'kafka-1:99999', '[::1]', '::1:9092', '[]:9092']) {
      await assert.rejects(
        createAuditRecorder({ dir: tempSpool(t), actor: 'clearing/kafka-port', kafkaStopDrainMs: 0, kafka: { brokers: [broker] } }),
        (error: Error & { code?: string }) => {
          assert.ok(error instanceof AuditConfigurationError, `${broker}: ${error.name}: ${error.message}`);
          assert.match(error.message, /"kafka\.brokers"/);
          assert.ok(error.message.includes(broker), `${broker} is named: ${error.message}`);
          return true;
        },
      );
    }
  });

  test('a topic named "." or ".." (which Kafka refuses) is refused at start naming it, not retried for ever against the broker', async (t) => {
    for (const topic of ['.', '..']) {
      const starting = createAuditRecorder({ dir: tempSpool(t), actor: 'clearing/kafka-topic', kafkaStopDrainMs: 0, kafka: { brokers: ['127.0.0.1:1'], topic } });
      t.after(async () => (await starting.catch(() => null))?.stop());
      await assert.rejects(starting, (error: Error & { code?: string }) => {
        assert.ok(error instanceof AuditConfigurationError, `${topic}: ${error.name}: ${error.message}`);
        assert.match(error.message, /"kafka\.topic"/);
        return true;
      });
    }
  });

  test('a topic of 210 characters whose checkpoint an earlier version kept as kafka-<topic>.checkpoint: the forwarder resumes from it, not from the start of the spool', async (t) => {
    const dir = tempSpool(t);
    mkdirSync(dir, { recursive: true });
    const topic = `govmap.audit.${'y'.repeat(210 - 'govmap.audit.'.length)}`;
    writeFileSync(join(dir, `kafka-${topic}.checkpoint`), JSON.stringify({ segment: 3, offset: 4096, seq: 777 }));
    const forwarder = await startKafkaForwarder({ dir, brokers: ['127.0.0.1:1'], topic });
    t.after(() => forwarder.stop(0));
    assert.deepEqual(forwarder.stats().position, { segment: 3, offset: 4096 });
    assert.equal(forwarder.stats().ackedSeq, 777);
    await forwarder.stop(0);
    for (const name of readdirSync(dir)) assert.ok(Buffer.byteLength(name) <= 255, name);
  });

  test('startKafkaForwarder without a spool dir (an unset environment variable) is a typed error naming "dir", not a bare TypeError about a path', async () => {
    for (const dir of [undefined, '', 42]) {
      await assert.rejects(startKafkaForwarder({ dir, brokers: ['127.0.0.1:1'] } as never), (error: Error & { code?: string }) => {
        assert.ok(error instanceof AuditConfigurationError, `${String(dir)}: ${error.name}: ${error.message}`);
        assert.equal(error.code, 'GOVMAP_AUDIT_INVALID_CONFIGURATION');
        assert.match(error.message, /"dir": must be the spool directory/);
        return true;
      });
    }
  });

  /** A recorder started on a spool whose Kafka checkpoint holds `content` is refused, naming the file. */
  async function refusesCheckpoint(t: TestContext, content: string): Promise<void> {
    const dir = tempSpool(t);
    mkdirSync(dir, { recursive: true });
    const checkpoint = join(dir, 'kafka-govmap.audit.checkpoint');
    writeFileSync(checkpoint, content);
    await assert.rejects(
      createAuditRecorder({ dir, actor: 'clearing/kafka-checkpoint', kafkaStopDrainMs: 0, kafka: { brokers: ['127.0.0.1:1'] } }),
      (error: Error & { code?: string }) => {
        assert.ok(error instanceof AuditConfigurationError, `${content}: ${error.name}: ${error.message}`);
        assert.equal(error.code, 'GOVMAP_AUDIT_INVALID_CONFIGURATION');
        assert.ok(error.message.includes(checkpoint), error.message);
        return true;
      },
    );
  }

  test('a checkpoint with a negative position (hand-edited, damaged) refuses the start naming the file: not a forwarder stuck for ever on an out-of-range read', async (t) => {
    for (const content of ['{"segment":1,"offset":-5,"seq":0}', '{"segment":-2,"offset":0,"seq":0}', '{"segment":1,"offset":0,"seq":-7}']) await refusesCheckpoint(t, content);
  });

  test('an empty or torn checkpoint (a power loss during its rename) is a typed error naming the file, not a bare SyntaxError', async (t) => {
    for (const content of ['', '{"segment":3,"offs']) await refusesCheckpoint(t, content);
  });
});

describe('the Kafka client loads lazily', () => {
  test('a recorder without the kafka option never loads @platformatic/kafka, in any thread', (t) => {
    const dir = tempSpool(t);
    const scriptFile = join(dir, '..', 'lazy.mjs');
    const hookFile = join(dir, '..', 'lazy-hook.mjs');
    const logFile = join(dir, '..', 'lazy.log');
    // The hook is preloaded with --import, which worker threads inherit (the forwarder loads the
    // client in its producer lanes): every thread appends what it resolves to one file.
    writeFileSync(
      hookFile,
      `
      import { registerHooks } from 'node:module';
      import { appendFileSync } from 'node:fs';
      registerHooks({ resolve(specifier, context, next) { if (specifier.includes('platformatic/kafka')) appendFileSync(${JSON.stringify(logFile)}, specifier + '\\n'); return next(specifier, context); } });
    `,
    );
    writeFileSync(
      scriptFile,
      `
      import { readFileSync, existsSync } from 'node:fs';
      const loaded = () => (existsSync(${JSON.stringify(logFile)}) ? readFileSync(${JSON.stringify(logFile)}, 'utf8').split('\\n').filter((l) => l !== '') : []);
      const { createAuditRecorder } = await import(${JSON.stringify(new URL('../../src/audit/index.ts', import.meta.url).href)});
      const audit = await createAuditRecorder({ dir: ${JSON.stringify(dir)}, actor: 'svc/lazy' });
      await audit.stop();
      const without = loaded();
      // The control: with the option, the client is loaded (no broker needed for that).
      const withKafka = await createAuditRecorder({ dir: ${JSON.stringify(`${dir}-kafka`)}, actor: 'svc/lazy', kafkaStopDrainMs: 0, kafka: { brokers: ['127.0.0.1:1'] } });
      await withKafka.stop();
      console.log(JSON.stringify({ without, with: loaded().length }));
    `,
    );
    const out = execFileSync(process.execPath, ['--import', pathToFileURL(hookFile).href, scriptFile], { encoding: 'utf8' });
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as { without: string[]; with: number };
    assert.deepEqual(result.without, []);
    assert.ok(result.with > 0, 'the hook does see the client when the kafka option is given');
  });
});

/**
 * `kafka.sh start` after a stop, once more if it fails: the test is about the forwarder, and a
 * start that failed once in CI (output discarded, so nobody knew why) is the script's and the
 * machine's. Its stderr is kept, and named if the second start fails too.
 */
function startBrokerAgain(): void {
  const attempt = (): string | null => {
    try {
      execFileSync('bash', [KAFKA_SH, 'start'], { stdio: ['ignore', 'ignore', 'pipe'] });
      return null;
    } catch (error) {
      return String((error as { stderr?: Buffer }).stderr ?? error).trim();
    }
  };
  const first = attempt();
  if (first === null) return;
  execFileSync('sleep', ['5']);
  const second = attempt();
  if (second !== null) throw new Error(`kafka.sh start failed twice:\nfirst: ${first}\nsecond: ${second}`);
}
