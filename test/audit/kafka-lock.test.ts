/**
 * One Kafka forwarder per spool and topic (`kafka-<topic>.lock`): a second one is refused with
 * AuditForwarderLockedError naming the holder; a lock left by a dead process is taken over; one
 * held by a live process is not. Against the real broker (GOVMAP_KAFKA_BROKERS), like kafka.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { Admin, Consumer } from '@platformatic/kafka';
import { AuditForwarderLockedError, createAuditRecorder, dedupKeyOf, startKafkaForwarder, verifySpool } from '../../src/audit/index.ts';
import type { KafkaForwarder } from '../../src/audit/index.ts';
import { balances, segmentFiles, tempSpool } from './helpers.ts';
import { BROKERS, needKafka } from './kafka-env.ts';

const CHILD = fileURLToPath(new URL('./children/forwarder-holder.ts', import.meta.url));

/** A topic of this test, deleted when the test ends. */
function uniqueTopic(t: TestContext, name: string): string {
  const topic = `govmap.audit.test.fwdlock.${name}.${process.pid}.${Date.now()}`;
  t.after(async () => {
    const admin = new Admin({ clientId: 'govmap-audit-test-admin', bootstrapBrokers: BROKERS });
    try {
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    } finally {
      await admin.close().catch(() => undefined);
    }
  });
  return topic;
}

/** Every message of the topic, read from the start until `count` have arrived (or the deadline). */
async function consumeCount(topic: string, count: number, timeoutMs: number): Promise<string[]> {
  const consumer = new Consumer({ groupId: `${topic}.reader.${Math.random()}`, clientId: 'govmap-audit-test-reader', bootstrapBrokers: BROKERS, maxWaitTime: 200 });
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
  const values: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`consumed ${values.length} of ${count} messages of ${topic} within ${timeoutMs} ms`)), timeoutMs);
      stream.on('error', reject);
      stream.on('data', (message: { value: Buffer }) => {
        values.push(message.value.toString('utf8'));
        if (values.length >= count) {
          clearTimeout(timer);
          // A little longer: a repeat sent by a second forwarder would arrive now.
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

function spoolKeys(dir: string): Set<string> {
  const keys = new Set<string>();
  for (const file of segmentFiles(dir)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const key = line === '' ? null : dedupKeyOf(line);
      if (key !== null) keys.add(key);
    }
  }
  return keys;
}

/** Starts a child running a forwarder on `dir`; resolves once it holds the lock. */
async function holder(t: TestContext, dir: string, topic: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CHILD, dir, topic, BROKERS.join(',')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code, signal) => reject(new Error(`the holder exited (${code ?? signal}) before starting its forwarder`)));
  });
  return child;
}

function assertLockedBy(error: unknown, dir: string, topic: string, pid: number): true {
  assert.ok(error instanceof AuditForwarderLockedError, String(error));
  assert.equal(error.code, 'GOVMAP_AUDIT_FORWARDER_LOCKED');
  assert.equal(error.details.dir, dir);
  assert.equal(error.details.topic, topic);
  assert.equal(error.details.pid, pid);
  assert.equal(error.details.host, hostname());
  assert.ok(typeof error.details.since === 'string' && !Number.isNaN(Date.parse(error.details.since)), `since: ${String(error.details.since)}`);
  assert.match(error.message, new RegExp(`process ${pid} on ${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} since `));
  assert.match(error.message, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  return true;
}

describe('audit: one Kafka forwarder per spool and topic', () => {
  test("a second forwarder on a recorder's spool is refused, naming the holder, and sends nothing; after the stop, the next one resumes from the checkpoint", async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic(t, 'second');
    const audit = await createAuditRecorder({ dir, actor: 'clearing/lock-test', kafka: { brokers: BROKERS, topic, producers: 1 } });
    let stopped = false;
    t.after(() => (stopped ? undefined : audit.stop()));
    const map = balances();
    audit.attach(map);
    for (let i = 0; i < 200; i++) map.store(`acct-${i}`, BigInt(i));
    await audit.flush();
    await audit.forwarder!.drain(30_000);

    // The same process (the recorder's forwarder holds the lock), a standalone forwarder.
    let second: KafkaForwarder | undefined;
    t.after(() => second?.stop());
    await assert.rejects(
      (async () => {
        second = await startKafkaForwarder({ dir, brokers: BROKERS, topic, producers: 1 });
      })(),
      (error) => assertLockedBy(error, dir, topic, process.pid),
    );
    // The recorder's forwarder is untouched by the refusal: it still holds its lock and goes on.
    assert.ok(existsSync(join(dir, `kafka-${topic}.lock`)));
    for (let i = 0; i < 50; i++) map.store(`late-${i}`, BigInt(i));
    await audit.flush();
    await audit.forwarder!.drain(30_000);
    assert.equal(audit.forwarder!.stats().healthy, true, String(audit.forwarder!.stats().lastError));

    await audit.stop();
    stopped = true;
    assert.equal(existsSync(join(dir, `kafka-${topic}.lock`)), false, 'the lock is released at stop');
    // Every record once: nothing was sent by a second forwarder.
    const keys = spoolKeys(dir);
    const values = await consumeCount(topic, keys.size, 30_000);
    assert.equal(values.length, keys.size, `${values.length} messages for ${keys.size} records`);

    // The next forwarder starts, from the checkpoint: nothing is sent again.
    const checkpoint = JSON.parse(readFileSync(join(dir, `kafka-${topic}.checkpoint`), 'utf8')) as { segment: number; offset: number; seq: number };
    const next = await startKafkaForwarder({ dir, brokers: BROKERS, topic, producers: 1 });
    try {
      assert.deepEqual(next.stats().position, { segment: checkpoint.segment, offset: checkpoint.offset });
      await next.drain(30_000);
      assert.equal(next.stats().sent, 0);
      // verify does not mind the lock beside the segments.
      assert.ok(existsSync(join(dir, `kafka-${topic}.lock`)));
      const report = verifySpool(dir);
      assert.equal(report.ok, true, JSON.stringify(report.problems));
    } finally {
      await next.stop();
    }
    // A restarted recorder with `kafka` (the same process) takes the lock again.
    const again = await createAuditRecorder({ dir, actor: 'clearing/lock-test', kafka: { brokers: BROKERS, topic, producers: 1 } });
    await again.stop();
    assert.equal(existsSync(join(dir, `kafka-${topic}.lock`)), false);
  });

  test('a lock held by a live other process is not taken over: the start is refused, naming it', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic(t, 'live');
    const child = await holder(t, dir, topic);
    const lock = join(dir, `kafka-${topic}.lock`);
    // (Were it started, it is stopped at the end: the file must end either way.)
    const started = (f: { stop(): Promise<void> }): never => {
      t.after(() => f.stop());
      throw new Error('started');
    };
    await assert.rejects(startKafkaForwarder({ dir, brokers: BROKERS, topic, producers: 1 }).then(started), (error) => assertLockedBy(error, dir, topic, child.pid!));
    assert.equal((JSON.parse(readFileSync(lock, 'utf8')) as { pid: number }).pid, child.pid, 'the live holder keeps its lock');
    // Nor by a recorder with `kafka` on that spool: it refuses to start, and leaves no lock of its own.
    await assert.rejects(createAuditRecorder({ dir, actor: 'clearing/lock-test', kafka: { brokers: BROKERS, topic, producers: 1 } }).then(started), (error) => assertLockedBy(error, dir, topic, child.pid!));
    assert.equal(existsSync(join(dir, 'LOCK')), false, "the refused recorder released the spool's LOCK");
  });

  test('a lock left by a SIGKILLed process is taken over', async (t) => {
    if (!needKafka(t)) return;
    const dir = tempSpool(t);
    const topic = uniqueTopic(t, 'stale');
    const child = await holder(t, dir, topic);
    const lock = join(dir, `kafka-${topic}.lock`);
    assert.equal((JSON.parse(readFileSync(lock, 'utf8')) as { pid: number }).pid, child.pid);
    // Dead (and reaped): its lock is stale and taken over.
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    assert.equal((JSON.parse(readFileSync(lock, 'utf8')) as { pid: number }).pid, child.pid, 'a SIGKILL leaves the lock behind');
    const forwarder = await startKafkaForwarder({ dir, brokers: BROKERS, topic, producers: 1 });
    try {
      const taken = JSON.parse(readFileSync(lock, 'utf8')) as { pid: number; host: string };
      assert.deepEqual([taken.pid, taken.host], [process.pid, hostname()]);
    } finally {
      await forwarder.stop();
    }
    assert.equal(existsSync(lock), false);
    assert.deepEqual(readdirSync(dir).filter((name) => name.startsWith(`kafka-${topic}.lock`)), [], 'no temporary lock files left');
  });
});

describe('audit: the forwarder lock after a container restart', () => {
  test('a lock left by an earlier process with this same pid (a container restarted after an OOM kill: its pid is the same again) is taken over, not refused as held by this process', async (t) => {
    const dir = tempSpool(t);
    const topic = 'govmap.audit.pid-reuse';
    const lock = join(dir, `kafka-${topic}.lock`);
    mkdirSync(dir, { recursive: true });
    // What the killed incarnation left: this pid and host, written before this process started.
    const before = new Date(performance.timeOrigin - 60_000).toISOString();
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname(), since: before, topic }));
    const forwarder = await startKafkaForwarder({ dir, brokers: ['127.0.0.1:1'], topic, producers: 1 });
    try {
      const taken = JSON.parse(readFileSync(lock, 'utf8')) as { pid: number; since: string };
      assert.equal(taken.pid, process.pid);
      assert.notEqual(taken.since, before, 'the lock is now this process\'s');
      // And this process's own lock still refuses a second forwarder in it.
      await assert.rejects(startKafkaForwarder({ dir, brokers: ['127.0.0.1:1'], topic, producers: 1 }), (error) => assertLockedBy(error, dir, topic, process.pid));
    } finally {
      await forwarder.stop(0);
    }
    assert.equal(existsSync(lock), false);
  });
});
