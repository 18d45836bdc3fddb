import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { describe, test } from 'node:test';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { context, trace, TraceFlags } from '@opentelemetry/api';
import { allOf, GovernedMap } from '../../src/map/index.ts';
import type { MapObserver } from '../../src/map/index.ts';
import { Registry } from 'prom-client';
import { createAuditRecorder, registerAuditMetrics, verifySpool } from '../../src/audit/index.ts';
import type { AuditRecorder } from '../../src/audit/index.ts';
import { CLOCK_MAX_LAG_MS, PUBLISH_EVERY } from '../../src/audit/ring.ts';
import { balances, bySeq, readSpool, segmentFiles, tempSpool } from './helpers.ts';

async function recorder(dir: string, extra: Record<string, unknown> = {}): Promise<AuditRecorder> {
  return createAuditRecorder({ dir, actor: 'clearing/instance-1', origin: 'test-host/pid-1', ...extra });
}

describe('what a record holds', () => {
  test('every operation is recorded with op, map, resource, outcome, reason, actor, origin, time and seq', async (t) => {
    const dir = tempSpool(t);
    const before = BigInt(Date.now()) * 1_000_000n;
    const audit = await recorder(dir);
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 100n);
    map.load('acct-1');
    map.load('acct-404');
    assert.throws(() => map.store('acct-1', -5n));
    map.range(() => {}, { start: 'acct-0', end: 'acct-9', inclusive: true });
    map.delete('acct-1');
    map.delete('acct-404');
    await audit.stop();
    const after = BigInt(Date.now()) * 1_000_000n;

    const events = bySeq(readSpool(dir).events);
    const ops = events.map((e) => `${e.op_type}:${e.outcome}${e.reason === null ? '' : `:${e.reason}`}`);
    assert.deepEqual(ops, [
      'AUDIT_STARTED:ok',
      'MAP_ATTACHED:ok',
      'STORE:ok',
      'LOAD:ok',
      'LOAD:miss',
      'STORE:rejected:BALANCE_UNDERFLOW',
      'RANGE:ok',
      'DELETE:ok',
      'DELETE:miss',
      'AUDIT_STOPPED:ok',
    ]);
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_e, i) => i + 1),
      'seqs are contiguous from 1 across reads and writes',
    );
    for (const e of events) {
      assert.equal(e.v, 1);
      assert.equal(e.actor, 'clearing/instance-1');
      assert.equal(e.origin, 'test-host/pid-1');
      assert.match(e.timestamp, /^[0-9]{19}$/);
      const ns = BigInt(e.timestamp);
      // Date.now() has millisecond resolution: the bracket is widened by 2 ms each side.
      assert.ok(ns >= before - 2_000_000n && ns <= after + 2_000_000n, `timestamp ${e.timestamp} is within [${before}, ${after}]`);
    }
    const store = events.find((e) => e.op_type === 'STORE' && e.outcome === 'ok')!;
    assert.equal(store.map, 'balances');
    assert.equal(store.resource_id, 'acct-1');
    assert.equal(store.value, '100', 'money as a decimal string');
    const refused = events.find((e) => e.outcome === 'rejected')!;
    assert.equal(refused.value, '-5', 'the refused value is recorded too');
    const range = events.find((e) => e.op_type === 'RANGE')!;
    assert.deepEqual(range.range_bounds, { start: 'acct-0', end: 'acct-9', inclusive: true, prefix: null });
    assert.equal(range.resource_id, null);
    assert.equal(events.find((e) => e.op_type === 'LOAD')!.range_bounds, null);
    assert.equal(events.find((e) => e.op_type === 'DELETE' && e.outcome === 'ok')!.value, '100', 'a delete records the value it removed');
    // Timestamps follow the order of the operations on the recording thread.
    for (let i = 1; i < events.length; i++) assert.ok(BigInt(events[i]!.timestamp) >= BigInt(events[i - 1]!.timestamp));
    assert.equal(verifySpool(dir).ok, true);
  });

  test('writes attempted and not made are recorded: a compare-and-swap that did not match (with the value offered) and an update that changed nothing', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 100n);
    assert.equal(map.compareAndSwap('acct-1', 90n, 10n), false);
    map.update('acct-1', (v) => v!);
    await map.updateAsync('acct-1', async (v) => v! + 0n);
    await audit.stop();
    const events = bySeq(readSpool(dir).events).filter((e) => e.map === 'balances' && e.resource_id === 'acct-1');
    assert.deepEqual(
      events.map((e) => `${e.op_type}:${e.outcome}:${e.reason ?? '-'}:${e.value ?? '-'}`),
      ['STORE:ok:-:100', 'STORE:miss:CAS_MISMATCH:10', 'LOAD:ok:UPDATE_UNCHANGED:-', 'LOAD:ok:UPDATE_UNCHANGED:-'],
    );
    assert.equal(verifySpool(dir).ok, true);
  });

  test('writes that end in UpdateConflictError are recorded as failed attempts (error, with the reason and the value that was being written) and counted as failed stores', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = new GovernedMap<string, bigint>({ name: 'balances', validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW'), updateRetries: 1 });
    audit.attach(map);
    map.store('acct-1', 100n);
    // Another caller changes the key while each attempt of the updateAsync awaits: it gives up.
    let wake: (() => void) | undefined;
    const pending = map.updateAsync('acct-1', async (v) => {
      await new Promise<void>((resolve) => (wake = resolve));
      return v! + 1000n;
    });
    for (let n = 1n; n <= 2n; n++) {
      const deadline = Date.now() + 5_000;
      while (wake === undefined) {
        assert.ok(Date.now() < deadline, `attempt ${n} of the updateAsync did not start within 5 s`);
        await new Promise((resolve) => setImmediate(resolve));
      }
      const resume = wake;
      wake = undefined;
      map.store('acct-1', n);
      resume();
    }
    await assert.rejects(pending, { code: 'GOVMAP_UPDATE_CONFLICT' });
    // The function of an update writes the key it is updating: the update's own write is refused.
    assert.throws(() => map.update('acct-1', (v) => {
      map.store('acct-1', 50n);
      return v! + 5n;
    }), { code: 'GOVMAP_UPDATE_CONFLICT' });
    // A write of the key from inside its own updateAsync function is refused where it is made.
    await assert.rejects(map.updateAsync('acct-1', async (v) => {
      map.store('acct-1', 9n);
      return v! + 1n;
    }), { code: 'GOVMAP_UPDATE_CONFLICT' });
    await assert.rejects(map.updateAsync('acct-1', async (v) => {
      map.delete('acct-1');
      return v! + 1n;
    }), { code: 'GOVMAP_UPDATE_CONFLICT' });
    await audit.stop();
    const events = bySeq(readSpool(dir).events).filter((e) => e.map === 'balances' && e.resource_id === 'acct-1' && e.outcome === 'error');
    assert.deepEqual(
      events.map((e) => `${e.op_type}:${e.outcome}:${e.reason ?? '-'}:${e.value ?? '-'}`),
      ['STORE:error:UPDATE_CONFLICT:1001', 'STORE:error:REENTRANT_WRITE:7', 'STORE:error:REENTRANT_WRITE:9', 'DELETE:error:REENTRANT_WRITE:50'],
    );
    assert.equal(map.load('acct-1'), 50n, 'none of the refused writes was applied');
    assert.equal(map.stats().stores.error, 3);
    assert.equal(map.stats().deletes.rejected, 1, 'a delete refused the same way counts as a refused delete');
    assert.deepEqual(map.stats().rejectionsByReason, { UPDATE_CONFLICT: 1, REENTRANT_WRITE: 3 });
    assert.equal(verifySpool(dir).ok, true);
  });

  test('an updateAsync of a key from inside an updateAsync of the same key (UpdateReentrantError) is recorded as a failed attempt (STORE error REENTRANT_WRITE, no value: none was computed) and counted as a failed store', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = new GovernedMap<string, bigint>({ name: 'balances', validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW') });
    audit.attach(map);
    map.store('acct-1', 100n);
    let inner: Promise<bigint> | undefined;
    const outer = map.updateAsync('acct-1', async (v) => {
      inner = map.updateAsync('acct-1', (x) => x! + 1n);
      await inner.catch(() => undefined);
      return v! + 5n;
    });
    assert.equal(await outer, 105n);
    await assert.rejects(inner!, { code: 'GOVMAP_UPDATE_REENTRANT' });
    await audit.stop();
    const events = bySeq(readSpool(dir).events).filter((e) => e.map === 'balances' && e.resource_id === 'acct-1');
    assert.deepEqual(
      events.map((e) => `${e.op_type}:${e.outcome}:${e.reason ?? '-'}:${e.value ?? '-'}`),
      ['STORE:ok:-:100', 'STORE:error:REENTRANT_WRITE:-', 'STORE:ok:-:105'],
    );
    assert.equal(map.load('acct-1'), 105n, 'the refused update wrote nothing');
    assert.deepEqual(map.stats().stores, { ok: 2, rejected: 0, error: 1 });
    assert.deepEqual(map.stats().rejectionsByReason, { REENTRANT_WRITE: 1 });
    assert.equal(verifySpool(dir).ok, true);
  });

  test('money beyond 2^53 keeps every digit; floats and objects are not recorded as values', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const money = balances();
    const any = new GovernedMap<string, unknown>({ name: 'misc', validate: () => true });
    audit.attach(money);
    audit.attach(any);
    money.store('acct-big', 9_007_199_254_740_993n);
    any.store('float', 0.1);
    any.store('object', { pan: '4111111111111111' });
    any.store('int', 42);
    await audit.stop();
    const values = new Map(readSpool(dir).events.filter((e) => e.op_type === 'STORE').map((e) => [e.resource_id, e.value]));
    assert.equal(values.get('acct-big'), '9007199254740993');
    assert.equal(values.get('float'), null);
    assert.equal(values.get('object'), null);
    assert.equal(values.get('int'), '42');
    const raw = readFileSync(segmentFiles(dir)[0]!, 'utf8');
    assert.doesNotMatch(raw, /"value":[0-9]/, 'never a JSON number');
    assert.doesNotMatch(raw, /4111111111111111/);
  });

  test('keys of any text survive: quotes, control characters, non-ASCII, lone surrogates, very long keys', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = balances();
    audit.attach(map);
    const keys = ['a"b\\c', 'tab\there\nnl', 'zürich-€-口座', 'emoji-😀', 'lone-\ud800-x', '\u0000\u001f'];
    for (const k of keys) {
      map.store(k, 1n);
      map.load(k);
    }
    const long = 'k'.repeat(5000);
    map.load(long);
    map.store(long, 1n);
    await audit.stop();
    const events = readSpool(dir).events;
    for (const k of keys) {
      assert.equal(events.filter((e) => e.resource_id === k && e.op_type === 'LOAD').length, 1, `LOAD of ${JSON.stringify(k)}`);
      assert.equal(events.filter((e) => e.resource_id === k && e.op_type === 'STORE').length, 1, `STORE of ${JSON.stringify(k)}`);
    }
    const longLoad = events.find((e) => e.op_type === 'LOAD' && e.resource_id?.startsWith('kkk'))!;
    assert.equal(longLoad.resource_id!.length, 1024, 'reads carry at most 1,024 units of a key');
    assert.equal(longLoad.resource_id_length, 5000, '…and say how long it was');
    assert.equal(events.find((e) => e.op_type === 'STORE' && e.resource_id?.startsWith('kkk'))!.resource_id, long, 'writes carry the whole key');
    // The lines are exactly what JSON.stringify writes (any JSON reader agrees on them).
    for (const line of readFileSync(segmentFiles(dir)[0]!, 'utf8').split('\n').filter((l) => l !== '')) {
      assert.equal(JSON.stringify(JSON.parse(line)), line);
    }
  });

  test('map lifecycle and recorder lifecycle are recorded', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = new GovernedMap<string, bigint>({ name: 'limits', validate: () => true, observers: [audit] });
    map.store('x', 1n);
    map.dispose();
    await audit.stop();
    const ops = bySeq(readSpool(dir).events).map((e) => `${e.op_type}${e.map === null ? '' : `:${e.map}`}`);
    assert.deepEqual(ops, ['AUDIT_STARTED', 'MAP_CREATED:limits', 'STORE:limits', 'MAP_DISPOSED:limits', 'AUDIT_STOPPED']);
  });

  test('detaching a map is recorded (MAP_DETACHED), once, and what follows is not; a map still attached at stop() is covered by AUDIT_STOPPED', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const fees = balances('fees');
    const limits = balances('limits');
    const detachFees = audit.attach(fees);
    audit.attach(limits);
    fees.store('acct-1', 1n);
    detachFees();
    detachFees(); // twice: still one record
    fees.store('acct-1', 2n); // no longer recorded
    limits.store('acct-1', 3n);
    audit.attach(fees); // attached again
    fees.store('acct-1', 4n);
    await audit.stop();
    const ops = bySeq(readSpool(dir).events).map((e) => `${e.op_type}${e.map === null ? '' : `:${e.map}`}${e.value == null ? '' : `=${e.value}`}`);
    assert.deepEqual(ops, ['AUDIT_STARTED', 'MAP_ATTACHED:fees', 'MAP_ATTACHED:limits', 'STORE:fees=1', 'MAP_DETACHED:fees', 'STORE:limits=3', 'MAP_ATTACHED:fees', 'STORE:fees=4', 'AUDIT_STOPPED']);
    assert.equal(audit.stats().afterStop, 0, 'detaching at stop() is not a record refused after stop');
    assert.equal(verifySpool(dir).ok, true);
  });
});

describe('read timestamps come from the coarse clock word', () => {
  test('under a stream of reads they never go backwards, never run ahead of the read, and lag it by at most CLOCK_MAX_LAG_MS (a few reads after a stall aside)', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 1n);
    const reads = 100_000;
    const writeEvery = 1_000;
    // performance.now() just before and just after each operation, by operation index.
    const before = new Float64Array(reads);
    const after = new Float64Array(reads);
    for (let i = 0; i < reads; i++) {
      before[i] = performance.now();
      if (i % writeEvery === 0) map.store('acct-1', BigInt(i));
      else map.load('acct-1');
      after[i] = performance.now();
    }
    await audit.stop();
    const ops = bySeq(readSpool(dir).events).filter((e) => e.op_type === 'LOAD' || (e.op_type === 'STORE' && e.value !== '1'));
    assert.equal(ops.length, reads);
    const ns = ops.map((e) => BigInt(e.timestamp));
    for (let i = 1; i < ns.length; i++) assert.ok(ns[i]! >= ns[i - 1]!, `timestamp of op ${i} (${ns[i]}) is not below op ${i - 1}'s (${ns[i - 1]})`);
    // A write takes the real clock inside store(): between before[w] and after[w]. Measured from
    // the last write w, a read i was at least before[i] - after[w] and at most after[i] - before[w]
    // later; its timestamp must not exceed the second, and should lag the first by <= 1 ms.
    const tolerance = 0.01; // ms: the two threads' clocks are matched through hrtime
    let lagging = 0;
    for (let i = 0; i < reads; i++) {
      const w = i - (i % writeEvery);
      if (i === w) continue;
      const sinceWriteMs = Number(ns[i]! - ns[w]!) / 1e6;
      assert.ok(sinceWriteMs <= after[i]! - before[w]! + tolerance, `read ${i} is stamped ${sinceWriteMs} ms after write ${w}, later than it ran`);
      if (sinceWriteMs < before[i]! - after[w]! - CLOCK_MAX_LAG_MS - tolerance) lagging++;
    }
    // Only the reads between a worker stall and the readers' next check (every CLOCK_CHECK_EVERY
    // reads) may lag more: a handful per stall, far below 5% of them.
    assert.ok(lagging < reads * 0.05, `${lagging} of ${reads} reads lag their timestamp by more than ${CLOCK_MAX_LAG_MS} ms`);
  });
});

describe('reads are published to the drain worker in batches', () => {
  test('a burst shorter than a batch is still drained once the task ends, without flush()', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 1n);
    const drainedBefore = audit.stats().drained;
    for (let i = 0; i < PUBLISH_EVERY - 1; i++) map.load('acct-1');
    // Published at the end of this task (a microtask); the worker drains within its commit
    // interval (10 ms). Wait well past that, on timers only (10 s: the worker thread runs late on a loaded box).
    const deadline = Date.now() + 10_000;
    while (audit.stats().drained < drainedBefore + PUBLISH_EVERY - 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(audit.stats().drained, drainedBefore + PUBLISH_EVERY - 1, 'every read of the burst reached the worker');
  });
});

describe('every record carries the trace of the span that was active', () => {
  test('reads and writes under a span carry its ids, across awaits; outside a span they are null', async (t) => {
    const manager = new AsyncLocalStorageContextManager().enable();
    assert.equal(context.setGlobalContextManager(manager), true);
    t.after(() => {
      context.disable();
      manager.disable();
    });
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = balances();
    audit.attach(map);
    const spanA = trace.wrapSpanContext({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED });
    const spanB = trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED });
    map.store('outside', 1n);
    await context.with(trace.setSpan(context.active(), spanA), async () => {
      map.store('a', 1n);
      map.load('a');
      await new Promise((resolve) => setTimeout(resolve, 5));
      map.load('a-after-await');
      await map.updateAsync('a', async (v) => (v ?? 0n) + 1n);
      await context.with(trace.setSpan(context.active(), spanB), async () => {
        map.load('b');
        map.range(() => {});
        map.delete('a');
      });
      map.load('a-again');
    });
    map.load('outside');
    await audit.stop();

    const events = readSpool(dir).events.filter((e) => e.map === 'balances' && e.op_type !== 'MAP_ATTACHED');
    const traced = (e: (typeof events)[number]): string => `${e.op_type}:${e.resource_id}:${e.trace_id?.slice(0, 4) ?? '-'}:${e.span_id?.slice(0, 4) ?? '-'}`;
    assert.deepEqual(bySeq(events).map(traced), [
      'STORE:outside:-:-',
      'STORE:a:0af7:b7ad',
      'LOAD:a:0af7:b7ad',
      'LOAD:a-after-await:0af7:b7ad',
      'STORE:a:0af7:b7ad',
      'LOAD:b:4bf9:00f0',
      'RANGE:null:4bf9:00f0',
      'DELETE:a:4bf9:00f0',
      'LOAD:a-again:0af7:b7ad',
      'LOAD:outside:-:-',
    ]);
    const full = events.find((e) => e.resource_id === 'b')!;
    assert.equal(full.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(full.span_id, '00f067aa0ba902b7');
  });
});

describe('durability', () => {
  /**
   * The drain worker can die (an out-of-memory in its thread, a bug). Nothing then moves records
   * into the spool, yet `healthy` and govmap_audit_spool_healthy said 1 until the write journal
   * filled, hours later at a low write rate: the alert meant for this stayed silent.
   */
  test('a drain worker that dies makes the recorder unhealthy at once: healthy false, spool_healthy 0, a SINK_FAILED record', async (t) => {
    const workers: Worker[] = [];
    const onWorker = (worker: Worker): void => void workers.push(worker);
    process.on('worker', onWorker);
    t.after(() => process.off('worker', onWorker));
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/worker-death' });
    process.off('worker', onWorker);
    const registry = new Registry();
    registerAuditMetrics(registry, audit);
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 1n);
    assert.equal(audit.healthy, true);
    assert.equal(workers.length, 1, 'the recorder started one thread: its drain worker');
    await workers[0]!.terminate();
    const deadline = Date.now() + 5_000;
    while (audit.healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(audit.healthy, false);
    assert.match(await registry.metrics(), /^govmap_audit_spool_healthy 0$/m);
    map.store('acct-2', 2n); // still recorded to the OS (the write journal): the restarted worker or the next start moves it
    await audit.stop();

    const next = await createAuditRecorder({ dir, actor: 'clearing/worker-death' });
    await next.stop();
    const events = readSpool(dir).events;
    assert.ok(events.some((e) => e.op_type === 'SINK_FAILED' && e.reason === 'DRAIN_WORKER_DIED'), 'the death is on record');
    assert.ok(events.some((e) => e.op_type === 'STORE' && e.resource_id === 'acct-2'), 'the write after it is not lost');
    assert.equal(verifySpool(dir).ok, true);
  });

  test('without the journal, a write record is in the segment file when store() returns, before any fsync', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir, { fsyncIntervalMs: 10_000, writeJournal: false });
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    map.store('acct-7', 700n);
    const raw = readFileSync(segmentFiles(dir)[0]!, 'utf8');
    assert.match(raw, /"op_type":"STORE","map":"balances","resource_id":"acct-7".*"value":"700"/);
  });

  test('an awaited updateAsync settles only once its record is sealed and fsynced; flush() likewise', async (t) => {
    const dir = tempSpool(t);
    // A long interval: nothing would be fsynced in this test unless the awaits asked for it.
    const audit = await recorder(dir, { fsyncIntervalMs: 10_000 });
    const map = balances();
    audit.attach(map);
    let storeSeq = 0;
    const spy: MapObserver<string> = {
      onOperation: (_m, op) => {
        if (op === 'STORE') storeSeq = audit.stats().nextSeq - 1;
      },
    };
    map.observe(spy);
    for (let i = 1; i <= 5; i++) {
      const resolved = await map.updateAsync('acct-1', async (v) => (v ?? 0n) + 10n);
      assert.equal(resolved, BigInt(10 * i));
      const stats = audit.stats();
      assert.ok(stats.syncedWrites >= storeSeq, `after the await, write seq ${storeSeq} is fsynced (synced through ${stats.syncedWrites})`);
      const { seals } = readSpool(dir);
      assert.ok(seals.some((s) => s.writes_through >= storeSeq), 'a seal covers it');
      const head = JSON.parse(readFileSync(join(dir, 'HEAD'), 'utf8')) as { writes_through: number };
      assert.ok(head.writes_through >= storeSeq, 'HEAD (written after fsync) covers it');
    }
    map.load('acct-1');
    const readSeq = audit.stats().nextSeq - 1;
    await audit.flush();
    assert.ok(audit.stats().syncedReads >= readSeq, 'flush() waits for reads still in the ring too');
    await audit.stop();
    assert.equal(verifySpool(dir).ok, true);
  });

  test('many concurrent updateAsync calls share fsyncs (group commit) and all settle durable', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir, { fsyncIntervalMs: 10_000 });
    const map = balances();
    audit.attach(map);
    const fsyncsBefore = audit.stats().fsyncs;
    await Promise.all(Array.from({ length: 200 }, (_, i) => map.updateAsync(`acct-${i % 20}`, async (v) => (v ?? 0n) + 1n)));
    const stats = audit.stats();
    assert.ok(stats.syncedWrites >= stats.nextSeq - 1);
    assert.ok(stats.fsyncs - fsyncsBefore < 200, `200 durable updates took ${stats.fsyncs - fsyncsBefore} fsyncs`);
    await audit.stop();
  });
});

describe('an idle recorder sleeps until there is work', () => {
  /** Polls `ready` every 2 ms; ms it took, or Infinity after `limitMs`. */
  async function msUntil(ready: () => boolean, limitMs: number): Promise<number> {
    const start = performance.now();
    while (!ready()) {
      if (performance.now() - start > limitMs) return Number.POSITIVE_INFINITY;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return performance.now() - start;
  }

  /** Context switches of the drain worker's thread (Linux: its name in /proc), or null elsewhere. */
  function drainThreadSwitches(): number | null {
    if (process.platform !== 'linux') return null;
    for (const task of readdirSync('/proc/self/task')) {
      if (readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim().startsWith('govmap-audit-dr')) {
        return Number(readFileSync(`/proc/self/task/${task}/schedstat`, 'utf8').split(' ')[2]);
      }
    }
    throw new Error('no drain worker thread found in /proc/self/task');
  }

  for (const writeJournal of [true, false]) {
    test(`${writeJournal ? 'journal' : 'write(2)'}: no wake-ups while idle; the next write, read or flush is committed at once, not at the idle timeout (IDLE_SLEEP_MS)`, async (t) => {
      const dir = tempSpool(t);
      // A long interval would hide nothing here: the idle sleep is IDLE_SLEEP_MS whatever it is.
      const audit = await recorder(dir, { writeJournal: process.platform === 'linux' ? writeJournal : false, fsyncIntervalMs: 10 });
      t.after(() => audit.stop());
      const map = balances();
      audit.attach(map);
      map.store('acct-1', 1n);
      map.load('acct-1');
      await audit.flush();
      assert.ok((await msUntil(() => audit.stats().workerIdleSleeps > 0, 2_000)) < 2_000, 'the worker went to sleep idle once everything was committed');

      // Idle: at fsyncIntervalMs 10 the worker used to wake ~100 times a second to commit nothing.
      const sleeps = audit.stats().workerIdleSleeps;
      const switches = drainThreadSwitches();
      const fsyncs = audit.stats().fsyncs;
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.ok(audit.stats().workerIdleSleeps - sleeps <= 1, `at most one idle sleep began in 200 ms (got ${audit.stats().workerIdleSleeps - sleeps})`);
      assert.equal(audit.stats().fsyncs, fsyncs, 'nothing was committed while idle');
      if (switches !== null) assert.ok(drainThreadSwitches()! - switches <= 5, `the drain thread ran at most 5 times in 200 ms idle (got ${drainThreadSwitches()! - switches})`);

      // Each kind of work wakes it, and it is synced long before the idle sleep (1 s, of which
      // at least 800 ms are left) would have ended; then the worker goes idle again at once (so
      // the next kind finds it asleep). 600 ms leaves room for a slow fsync on a busy machine.
      const kinds: Array<[string, () => void, () => boolean]> = [
        ['a write', () => map.store('acct-2', 2n), () => audit.stats().syncedWrites >= audit.stats().nextSeq - 1],
        ['a read', () => map.load('acct-2'), () => audit.stats().syncedReads >= audit.stats().nextSeq - 1],
        ['a write', () => map.delete('acct-2'), () => audit.stats().syncedWrites >= audit.stats().nextSeq - 1],
      ];
      for (const [kind, act, synced] of kinds) {
        const idleBefore = audit.stats().workerIdleSleeps;
        act();
        const took = await msUntil(synced, 2_000);
        assert.ok(took < 600, `${kind} after an idle spell was fsynced in ${took.toFixed(0)} ms (the idle sleep is 1,000 ms)`);
        assert.ok((await msUntil(() => audit.stats().workerIdleSleeps > idleBefore, 600)) < 600, `the worker went idle again after ${kind}`);
      }
      const start = performance.now();
      await audit.flush();
      assert.ok(performance.now() - start < 600, 'flush() from idle answered at once');
    });
  }
});

describe('restart, rotation and the chain', () => {
  test('after a clean stop the next recorder carries on the seqs without a gap', async (t) => {
    const dir = tempSpool(t);
    for (let session = 0; session < 3; session++) {
      const audit = await recorder(dir);
      const map = balances();
      audit.attach(map);
      for (let i = 0; i < 100; i++) {
        map.store(`acct-${i}`, BigInt(i));
        map.load(`acct-${i}`);
      }
      await audit.stop();
    }
    const events = bySeq(readSpool(dir).events);
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_e, i) => i + 1),
    );
    assert.equal(events.filter((e) => e.op_type === 'AUDIT_GAP').length, 0);
    assert.deepEqual(
      events.filter((e) => e.op_type === 'AUDIT_STARTED').map((e) => e.detail?.split(';')[0]),
      ['previous session: none', 'previous session: clean', 'previous session: clean'],
    );
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.equal(report.closed, true);
  });

  test('segments rotate by size and the chain runs across them', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir, { maxSegmentBytes: 65_536, sealBytes: 8192, fsyncIntervalMs: 2 });
    const map = balances();
    audit.attach(map);
    for (let i = 0; i < 3000; i++) {
      map.store(`acct-${i % 50}`, BigInt(i));
      map.load(`acct-${i % 50}`);
      if (i % 500 === 0) await audit.flush();
    }
    await audit.stop();
    const files = segmentFiles(dir);
    assert.ok(files.length >= 5, `rotated into ${files.length} segments`);
    const { seals } = readSpool(dir);
    for (let i = 1; i < seals.length; i++) {
      assert.equal(seals[i]!.seal, seals[i - 1]!.seal + 1);
      assert.equal(seals[i]!.prev, seals[i - 1]!.hash, 'each seal continues the previous one, across files');
    }
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.equal(report.records, 6003, '6,000 operations, AUDIT_STARTED, MAP_ATTACHED, AUDIT_STOPPED');
  });
});

describe('a full ring never drops silently', () => {
  test('drop: the dropped reads are named by an AUDIT_GAP (RING_FULL) and counted', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir, { ringBytes: 65_536, onRingFull: 'drop' });
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 1n);
    audit.pauseDrainForTesting(true);
    for (let i = 0; i < 5000; i++) map.load('acct-1');
    assert.ok(audit.stats().readsDropped > 0, 'the 64 KiB ring filled');
    audit.pauseDrainForTesting(false);
    map.load('acct-1');
    await audit.stop();
    const dropped = audit.stats().readsDropped;
    const events = readSpool(dir).events;
    // Usually one gap. The pause reaches a worker between two batches: one it was draining when
    // the ring filled frees room, which ends the first run of drops, and the reads that follow
    // fill the ring and open a second. Either way every dropped read is inside a RING_FULL gap.
    const gaps = events.filter((e) => e.op_type === 'AUDIT_GAP');
    assert.ok(gaps.length >= 1 && gaps.length <= 3, `${gaps.length} gap(s)`);
    assert.ok(gaps.every((g) => g.gap!.cause === 'RING_FULL'));
    assert.equal(gaps.reduce((n, g) => n + g.gap!.to - g.gap!.from + 1, 0), dropped);
    const loads = events.filter((e) => e.op_type === 'LOAD').length;
    assert.equal(loads + dropped, 5001, 'every read is either recorded or inside a gap');
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.equal(report.gaps.length, gaps.length);
  });

  test('drop: a ring filled by reads not yet published (long keys, small ring) is published, so the worker frees it within the same task', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir, { ringBytes: 65_536, onRingFull: 'drop' });
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    // 1,000-unit keys: ~2 KiB a record, so fewer than PUBLISH_EVERY records fill 64 KiB.
    const key = 'k'.repeat(1000);
    map.store(key, 1n);
    const reads = 400;
    const patience = performance.now() + 5_000;
    for (let i = 0; i < reads; i++) {
      const dropped = audit.stats().readsDropped;
      const drained = audit.stats().drained;
      map.load(key);
      // One synchronous task throughout: no microtask publishes for us. Give the worker time: 0.2 ms
      // a read, and after a read that found the ring full, until the worker has drained some (what
      // publishing the full ring lets it do), 5 s at most in all. The 0.2 ms alone left a worker
      // the busy machine did not schedule within the task's ~80 ms with nothing drained (CI-like).
      const until = performance.now() + 0.2;
      while (performance.now() < until);
      if (audit.stats().readsDropped > dropped) while (audit.stats().drained === drained && performance.now() < patience);
    }
    const s = audit.stats();
    assert.equal(s.readsRecorded + s.readsDropped, reads);
    assert.ok(s.readsRecorded > 2 * PUBLISH_EVERY, `${s.readsRecorded} reads recorded, ${s.readsDropped} dropped: the full ring was never drained during the task`);
  });

  test('wait: a burst larger than the ring waits for the worker and loses nothing', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir, { ringBytes: 65_536, onRingFull: 'wait', maxWaitMs: 5000 });
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 1n);
    for (let i = 0; i < 20_000; i++) map.load('acct-1');
    const stats = audit.stats();
    assert.ok(stats.ringFullWaits > 0, 'the burst outran the ring');
    assert.equal(stats.readsDropped, 0);
    await audit.stop();
    assert.equal(readSpool(dir).events.filter((e) => e.op_type === 'LOAD').length, 20_000);
    assert.equal(verifySpool(dir).ok, true);
  });
});

describe('configuration and ownership', () => {
  test('bad options are refused with a typed error naming the option and the rule', async (t) => {
    const dir = tempSpool(t);
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ actor: '' }, /"actor"/],
      [{ actor: 'has space' }, /"actor".*printable/],
      [{ fsyncIntervalMs: 0 }, /"fsyncIntervalMs".*at least 1 ms/],
      [{ onRingFull: 'block' }, /"onRingFull".*"wait" or "drop"/],
      [{ ringBytes: 100 }, /"ringBytes".*65,536/],
      [{ hmacKey: { env: 'GOVMAP_TEST_UNSET_KEY' } }, /hmacKey.env.*GOVMAP_TEST_UNSET_KEY is not set/],
      [{ hmacKey: { env: 'GOVMAP_TEST_EMPTY_KEY' } }, /hmacKey.env.*GOVMAP_TEST_EMPTY_KEY is set but empty/],
      [{ unknownOption: 1 }, /invalid audit option/],
    ];
    process.env.GOVMAP_TEST_EMPTY_KEY = '';
    t.after(() => delete process.env.GOVMAP_TEST_EMPTY_KEY);
    for (const [options, message] of cases) {
      await assert.rejects(createAuditRecorder({ dir, actor: 'svc/1', ...options }), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'GOVMAP_AUDIT_INVALID_CONFIGURATION');
        assert.match(error.message, message);
        return true;
      });
    }
    const keyFile = join(dir, '..', 'short.key');
    writeFileSync(keyFile, 'short\n');
    await assert.rejects(createAuditRecorder({ dir, actor: 'svc/1', hmacKey: { file: keyFile } }), /at least 16 bytes \(got 5\)/);
  });

  /**
   * A container restarted after an OOM kill runs its processes in the same order: the service
   * gets its old pid again, on the same hostname (a pod's), with the spool on a volume that
   * survived. The LOCK it left named that pid, taken for a live holder: the recorder was refused
   * at every start, and the service crash-looped.
   */
  test('a LOCK left by an earlier process with this same pid (a restarted container) is taken over, not refused as held by this process', async (t) => {
    const dir = tempSpool(t);
    const first = await recorder(dir);
    await first.stop();
    for (const left of [`${process.pid}@${hostname()}`, `${process.pid}@${hostname()}@${new Date(performance.timeOrigin - 60_000).toISOString()}`]) {
      writeFileSync(join(dir, 'LOCK'), left);
      const restarted = await recorder(dir);
      await restarted.stop();
    }
    assert.equal(verifySpool(dir).ok, true);
  });

  test('one recorder per spool directory', async (t) => {
    const dir = tempSpool(t);
    const first = await recorder(dir);
    await assert.rejects(recorder(dir), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_SPOOL_LOCKED');
      assert.match(error.message, new RegExp(`process ${process.pid}`));
      return true;
    });
    await first.stop();
    const second = await recorder(dir);
    await second.stop();
  });

  test('operations after stop() are counted, not recorded, and the maps are detached', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const attached = balances('attached');
    const constructed = new GovernedMap<string, bigint>({ name: 'constructed', validate: () => true, observers: [audit] });
    audit.attach(attached);
    await audit.stop();
    attached.store('a', 1n);
    constructed.store('b', 1n);
    constructed.load('b');
    assert.equal(audit.stats().afterStop, 2, 'the attached map was detached; the constructed one still reports');
    const events = bySeq(readSpool(dir).events);
    assert.equal(events.at(-1)!.op_type, 'AUDIT_STOPPED');
    await assert.rejects(audit.flush(), { code: 'GOVMAP_AUDIT_STOPPED' });
    // An awaited update whose record the stopped recorder could not take: applied, and said so
    // (a caller reading GOVMAP_AUDIT_STOPPED as "refused" would apply it again).
    await assert.rejects(constructed.updateAsync('b', (v) => v! + 1n), { code: 'GOVMAP_OBSERVER_FLUSH_FAILED', details: { map: 'constructed', key: 'b', applied: true } });
    assert.equal(constructed.load('b'), 2n);
    // A guarded map fails closed once the recorder is stopped: nothing more would be audited.
    const guarded = new GovernedMap<string, bigint>({ name: 'guarded', validate: allOf(audit.guard(), () => true), observers: [audit] });
    assert.throws(() => guarded.store('c', 1n), { code: 'GOVMAP_VALIDATION_REJECTED', reason: 'AUDIT_UNAVAILABLE' });
    assert.equal(guarded.load('c'), undefined);
  });

  test('guard() lets writes through while the spool is healthy', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    t.after(() => audit.stop());
    const map = new GovernedMap<string, bigint>({ name: 'guarded', validate: audit.guard() });
    map.store('a', 1n);
    assert.equal(map.load('a'), 1n);
    assert.equal(audit.healthy, true);
  });
});

describe('when the spool cannot be written', () => {
  test('without the journal, writes wait in memory in order, SINK_FAILED / SINK_RECOVERED are recorded, flush() refuses meanwhile, guard() fails closed', async (t) => {
    const dir = tempSpool(t);
    // The fault hook breaks this thread's write(2); with the journal this thread makes none
    // (its failing-over is tested in journal.test.ts).
    const audit = await recorder(dir, { writeJournal: false });
    const map = new GovernedMap<string, bigint>({ name: 'guarded', validate: allOf(audit.guard<string, bigint>(), (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW')) });
    audit.attach(map);
    map.store('before', 1n);
    audit.faultSpoolForTesting(true);
    map.store('during-1', 2n); // the write that meets the broken disk: applied, its record kept in memory
    assert.equal(audit.healthy, false);
    assert.throws(() => map.store('during-2', 3n), { code: 'GOVMAP_VALIDATION_REJECTED', message: /AUDIT_UNAVAILABLE/ });
    await assert.rejects(audit.flush(), { code: 'GOVMAP_AUDIT_NOT_DURABLE' });
    assert.ok(audit.stats().backlogRecords >= 2);
    audit.faultSpoolForTesting(false);
    const deadline = Date.now() + 5000;
    while (!audit.healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(audit.healthy, true, 'the backlog was written once the spool healed');
    map.store('after', 4n);
    await audit.flush();
    await audit.stop();
    const events = bySeq(readSpool(dir).events).filter((e) => e.op_type !== 'LOAD');
    const story = events.map((e) => `${e.op_type}${e.resource_id === null ? '' : `:${e.resource_id}`}${e.outcome === 'ok' ? '' : `:${e.outcome}`}`);
    assert.deepEqual(story, [
      'AUDIT_STARTED',
      'MAP_ATTACHED',
      'STORE:before',
      'STORE:during-1',
      'SINK_FAILED',
      'STORE:during-2:rejected',
      'SINK_RECOVERED',
      'STORE:after',
      'AUDIT_STOPPED',
    ]);
    assert.equal(events.find((e) => e.op_type === 'SINK_FAILED')!.reason, 'EBADF');
    assert.equal(verifySpool(dir).ok, true);
  });
});

describe('review: what a service sees around flush(), stop() and attach()', () => {
  test('govmap_audit_unsynced_records is 0 once flush() has resolved, whatever mix of reads and writes came before', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    t.after(() => audit.stop());
    const registry = new Registry();
    registerAuditMetrics(registry, audit);
    const unsynced = async (): Promise<number> => (await registry.getSingleMetric('govmap_audit_unsynced_records')!.get()).values[0]!.value;
    const map = balances();
    audit.attach(map);
    // Writes only: no read was ever recorded, so the read stream's synced seq stays at 0.
    for (let i = 0; i < 10; i++) map.store(`acct-${i}`, BigInt(i));
    await audit.flush();
    assert.equal(await unsynced(), 0, 'everything recorded is sealed and fsynced (writes only)');
    // Reads after the last write: the write stream's synced seq stays behind them.
    for (let i = 0; i < 10; i++) map.load(`acct-${i}`);
    await audit.flush();
    assert.equal(await unsynced(), 0, 'everything recorded is sealed and fsynced (reads after the last write)');
    // While something is still unsynced the gauge is not 0 (an upper bound, never below the truth).
    audit.pauseDrainForTesting(true);
    map.load('acct-1');
    map.store('acct-1', 5n);
    assert.ok((await unsynced()) >= 2);
    audit.pauseDrainForTesting(false);
    await audit.flush();
    assert.equal(await unsynced(), 0);
  });

  test('an updateAsync pending when stop() is called is not reported as audited and durable: it applies, but rejects saying so', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = balances();
    audit.attach(map);
    map.store('acct-1', 100n);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const pending = map.updateAsync('acct-1', async (v) => {
      await gate;
      return v! - 30n;
    });
    const stopped = audit.stop();
    release();
    const outcome = await pending.then(
      (value) => ({ value }),
      (error: Error & { code?: string; details?: Record<string, unknown> }) => ({ error }),
    );
    await stopped;
    assert.equal(map.load('acct-1'), 70n, 'the write was applied');
    const recorded = readSpool(dir).events.some((e) => e.op_type === 'STORE' && e.value === '70');
    if (!recorded) {
      // Not in the log: the caller must not be told the update settled durable.
      assert.ok('error' in outcome, `updateAsync resolved ${String((outcome as { value: unknown }).value)} though no record of the write exists`);
      assert.equal(outcome.error.details?.applied, true, 'the error says the write was applied (do not retry)');
    }
  });

  test('attaching a map twice (or attaching a map that already has the recorder as an observer) does not record every operation twice', async (t) => {
    const dir = tempSpool(t);
    const audit = await recorder(dir);
    const map = balances();
    audit.attach(map);
    assert.throws(() => audit.attach(map), { code: 'GOVMAP_INVALID_CONFIGURATION' });
    const constructed = new GovernedMap<string, bigint>({ name: 'constructed', validate: () => true, observers: [audit] });
    assert.throws(() => audit.attach(constructed), { code: 'GOVMAP_INVALID_CONFIGURATION' });
    map.store('acct-1', 1n);
    constructed.store('acct-2', 2n);
    await audit.stop();
    const events = readSpool(dir).events;
    assert.equal(events.filter((e) => e.op_type === 'STORE' && e.resource_id === 'acct-1').length, 1, 'one STORE record for one store()');
    assert.equal(events.filter((e) => e.op_type === 'STORE' && e.resource_id === 'acct-2').length, 1);
    assert.equal(events.filter((e) => e.op_type === 'MAP_ATTACHED').length, 1);
  });
});
