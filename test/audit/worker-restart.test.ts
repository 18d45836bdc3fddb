import assert from 'node:assert/strict';
import { appendFileSync, closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { AuditNotDurableError, createAuditRecorder, registerAuditMetrics, verifySpool } from '../../src/audit/index.ts';
import type { AuditRecorder } from '../../src/audit/index.ts';
import type { AuditEvent } from '../../src/audit/event.ts';
import { balances, readSpool, segmentFiles, tempSpool } from './helpers.ts';

const ACTOR = 'clearing/worker-restart';

/** Resolves once `ready()` holds; fails the test after `limitMs` (a bound, not a sleep the code races). */
async function until(ready: () => boolean, limitMs: number, what: string): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!ready()) {
    if (Date.now() > deadline) assert.fail(`not within ${limitMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Starts a recorder and hands back the drain worker thread it started. */
async function withWorker(dir: string, extra: Record<string, unknown> = {}): Promise<{ audit: AuditRecorder; worker: Worker }> {
  const workers: Worker[] = [];
  const onWorker = (worker: Worker): void => void workers.push(worker);
  process.on('worker', onWorker);
  try {
    const audit = await createAuditRecorder({ dir, actor: ACTOR, ...extra });
    assert.equal(workers.length, 1, 'the recorder started one thread: its drain worker');
    return { audit, worker: workers[0]! };
  } finally {
    process.off('worker', onWorker);
  }
}

/** Every seq from 1 to the highest one is a record in the log or inside an AUDIT_GAP. */
function missingSeqs(events: readonly AuditEvent[]): { missing: number[]; unexplained: number[] } {
  const present = new Set(events.map((e) => e.seq));
  const gaps = events.filter((e) => e.op_type === 'AUDIT_GAP').map((e) => e.gap!);
  const top = Math.max(...present);
  const missing: number[] = [];
  const unexplained: number[] = [];
  for (let seq = 1; seq <= top; seq++) {
    if (present.has(seq)) continue;
    missing.push(seq);
    if (!gaps.some((g) => g.from <= seq && seq <= g.to)) unexplained.push(seq);
  }
  return { missing, unexplained };
}

describe('a drain worker that dies is restarted in-process', () => {
  for (const writeJournal of [true, false]) {
    test(`killed mid-stream of writes and reads (writeJournal ${writeJournal}): restarted, healthy again, no write lost, lost reads inside an AUDIT_GAP, the spool verifies`, async (t) => {
      const dir = tempSpool(t);
      const { audit, worker } = await withWorker(dir, { writeJournal });
      t.after(() => audit.stop());
      const registry = new Registry();
      registerAuditMetrics(registry, audit);
      const map = balances();
      audit.attach(map);
      const stored: string[] = [];
      let loads = 0;
      const burst = (from: number, n: number): void => {
        for (let i = from; i < from + n; i++) {
          map.store(`acct-${i}`, BigInt(i));
          stored.push(`acct-${i}`);
          for (let j = 0; j < 5; j++) {
            map.load(`acct-${i - j}`);
            loads++;
          }
        }
      };
      burst(0, 500);
      // Not awaited: the thread is stopped while this one goes on writing and reading.
      const terminated = worker.terminate();
      burst(500, 500);
      await terminated;
      burst(1000, 200); // while it is dead (and until the restart runs)
      assert.equal(audit.healthy, false, 'unhealthy as soon as the death is known');

      await until(() => audit.healthy, 15_000, 'the recorder is healthy again');
      assert.equal(audit.stats().drainWorkerRestarts, 1);
      assert.match(await registry.metrics(), /^govmap_audit_drain_worker_restarts_total 1$/m);
      assert.match(await registry.metrics(), /^govmap_audit_spool_healthy 1$/m);
      burst(1200, 200);
      await audit.flush(); // a flush after the restart resolves
      await audit.stop();

      const report = verifySpool(dir);
      assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
      const events = readSpool(dir).events;
      const storedKeys = new Set(events.filter((e) => e.op_type === 'STORE').map((e) => e.resource_id));
      assert.deepEqual(stored.filter((k) => !storedKeys.has(k)), [], 'every write before, during and after the restart is in the spool');
      const failed = events.findIndex((e) => e.op_type === 'SINK_FAILED' && e.reason === 'DRAIN_WORKER_DIED');
      const recovered = events.findIndex((e) => e.op_type === 'SINK_RECOVERED' && e.reason === 'DRAIN_WORKER_DIED');
      assert.ok(failed !== -1, 'the death is on record');
      assert.ok(recovered !== -1 && events[recovered]!.seq > events[failed]!.seq, 'the restart is on record after it');
      const { missing, unexplained } = missingSeqs(events);
      assert.deepEqual(unexplained, [], 'every seq not in the log is inside an AUDIT_GAP');
      const loadsInLog = events.filter((e) => e.op_type === 'LOAD').length;
      assert.equal(loadsInLog + missing.length, loads, 'every read is in the log or named as lost');
      if (missing.length > 0) {
        assert.ok(events.some((e) => e.op_type === 'AUDIT_GAP' && (e.gap!.cause === 'DRAIN_WORKER_DIED' || e.gap!.cause === 'RING_FULL')));
      }
    });
  }

  test('writeJournal false: writes made after the worker thread has exited but before its exit is handled go to the spool, never to a file that reused the dead thread\'s descriptor number', async (t) => {
    const dir = tempSpool(t);
    const { audit, worker } = await withWorker(dir, { writeJournal: false });
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    map.store('acct-0', 0n);
    await audit.flush();
    const segment = realpathSync(segmentFiles(dir).at(-1)!);
    // Every descriptor of this process open on the segment (Linux: /proc/self/fd).
    const onSegment = (): number[] =>
      readdirSync('/proc/self/fd')
        .map(Number)
        .filter((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`) === segment;
          } catch {
            return false;
          }
        });
    const before = onSegment();
    assert.ok(before.length >= 1, 'the drain worker has the segment open');
    // Not awaited, and nothing below yields until the writes are made: the recorder cannot have
    // handled the thread's 'exit' event yet. Node closes the thread's descriptors when it exits.
    const terminated = worker.terminate();
    const deadline = Date.now() + 10_000;
    let closed: number[] = [];
    while (closed.length === 0) {
      if (Date.now() > deadline) assert.fail('the terminated worker\'s descriptors were not closed within 10 s');
      const now = new Set(onSegment());
      closed = before.filter((fd) => !now.has(fd));
    }
    // Any other code in the process opening files now gets those numbers back.
    const otherDir = mkdtempSync(join(tmpdir(), 'govmap-other-'));
    t.after(() => rmSync(otherDir, { recursive: true, force: true }));
    const others: Array<{ fd: number; path: string }> = [];
    const taken = new Set<number>();
    for (let i = 0; i < 4096 && closed.some((fd) => !taken.has(fd)); i++) {
      const path = join(otherDir, `other-${i}.txt`);
      const fd = openSync(path, 'w');
      others.push({ fd, path });
      taken.add(fd);
    }
    assert.ok(closed.every((fd) => taken.has(fd)), `another file got each closed descriptor number (${closed.join(', ')})`);
    const stored: string[] = [];
    for (let i = 1; i <= 20; i++) {
      map.store(`acct-${i}`, BigInt(i) * 100n);
      stored.push(`acct-${i}`);
    }
    for (const other of others) closeSync(other.fd);
    const leaked = others.filter((o) => readFileSync(o.path, 'utf8') !== '').map((o) => `${o.path}: ${readFileSync(o.path, 'utf8').slice(0, 120)}`);
    assert.deepEqual(leaked, [], 'no audit record was written into an unrelated file');
    await terminated;
    await until(() => audit.healthy, 15_000, 'the recorder is healthy again');
    await audit.flush();
    await audit.stop();
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
    const events = readSpool(dir).events;
    const storedKeys = events.filter((e) => e.op_type === 'STORE').map((e) => e.resource_id);
    assert.deepEqual(storedKeys, ['acct-0', ...stored], 'every write is in the spool, once, in order');
    assert.deepEqual(missingSeqs(events).unexplained, []);
  });

  test('reads still in the ring when the worker dies are drained by the new one; a torn last line the dead one left is terminated and named by an AUDIT_GAP with cause DRAIN_WORKER_DIED', async (t) => {
    const dir = tempSpool(t);
    const { audit, worker } = await withWorker(dir);
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 1n);
    await audit.flush();
    // Held: these reads stay in the ring, and the worker dies before it drains them.
    audit.pauseDrainForTesting(true);
    for (let i = 0; i < 50; i++) map.load('acct-1');
    await worker.terminate();
    // What a worker stopped in the middle of appending a batch leaves (the restart is >= 100 ms
    // away, and nothing else appends meanwhile: the reads are held, no write is made).
    const segment = segmentFiles(dir).at(-1)!;
    const tornAt = statSync(segment).size;
    appendFileSync(segment, '{"v":1,"seq":2,"op_type":"LOAD","map":"bal');
    audit.pauseDrainForTesting(false);
    await until(() => audit.healthy, 15_000, 'the recorder is healthy again');
    map.store('acct-2', 2n);
    await audit.flush();
    await audit.stop();
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
    const events = readSpool(dir).events;
    assert.equal(events.filter((e) => e.op_type === 'LOAD').length, 50, 'the reads still in the ring were drained by the new worker');
    assert.deepEqual(missingSeqs(events).unexplained, []);
    const gap = events.find((e) => e.op_type === 'AUDIT_GAP');
    assert.equal(gap?.gap?.cause, 'DRAIN_WORKER_DIED');
    assert.deepEqual(gap?.gap?.torn, { segment: 1, offset: tornAt, length: 42 });
    assert.ok(events.some((e) => e.op_type === 'STORE' && e.resource_id === 'acct-2'));
  });

  test('a worker that dies at once on every start stops being restarted after the limit: unhealthy, the reason on record and in a warning', async (t) => {
    const dir = tempSpool(t);
    const { audit, worker } = await withWorker(dir);
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 1n);
    let started = 0;
    const killer = (w: Worker): void => {
      started++;
      void w.terminate();
    };
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('worker', killer);
    process.on('warning', onWarning);
    t.after(() => {
      process.off('worker', killer);
      process.off('warning', onWarning);
    });
    await worker.terminate();
    const gaveUp = (): boolean => warnings.some((w) => (w as Error & { code?: string }).code === 'GOVMAP_AUDIT_DRAIN_WORKER_NOT_RESTARTED');
    await until(gaveUp, 30_000, 'the recorder gives up restarting');
    assert.ok(started >= 1 && started <= 10, `restart attempts are bounded (${started})`);
    assert.equal(audit.healthy, false);
    assert.equal(audit.stats().drainWorkerRestarts, 0, 'none of them ran');
    map.store('acct-2', 2n);
    await assert.rejects(audit.flush(), AuditNotDurableError);
    process.off('worker', killer);
    await audit.stop();

    const next = await createAuditRecorder({ dir, actor: ACTOR });
    await next.stop();
    assert.equal(verifySpool(dir).ok, true);
    const events = readSpool(dir).events;
    const last = events.filter((e) => e.op_type === 'SINK_FAILED' && e.reason === 'DRAIN_WORKER_DIED').at(-1);
    assert.match(last?.detail ?? '', /not restarted/, 'the last SINK_FAILED says it was given up');
    assert.ok(events.some((e) => e.op_type === 'STORE' && e.resource_id === 'acct-2'), 'the write after it is not lost');
  });
});
