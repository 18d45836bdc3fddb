/**
 * Several worker threads on one shared-memory map at once: concurrent governed updates lose
 * nothing and audit everything; and the stress test — counters, a reader, a grower, with
 * counter workers killed by `terminate()` at random moments, mid-write included — after which
 * the map is intact, no update was lost or duplicated, no reader saw a torn or vanished value,
 * and the GovernedMap over it audited every write that committed (but at most one per kill).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { SharedInt64Store, SharedRecordStore } from '../../src/stores/index.ts';
import { ATTEMPTED, AUDITED, CONTROL_WORDS, COUNTED, DONE, FIXED, READS, RECORDS, STOP, TRIPLE, VIOLATIONS } from './workers/stress-worker.ts';

const STRESS_KILLS = Number(process.env.GOVMAP_SHARED_STRESS_KILLS ?? 20);
const workerUrl = new URL('./workers/stress-worker.ts', import.meta.url);

describe('shared-memory map under concurrent workers', () => {
  test('counters, a reader and a grower, with counter workers killed mid-write: nothing lost, torn or unaudited', async (t) => {
    const balances = SharedInt64Store.create({ initialCapacity: 64, maxKeyLength: 24, maxKeys: 1_000_000, lockTimeoutMs: 10_000 });
    const records = SharedRecordStore.create({ layout: TRIPLE, initialCapacity: 16 });
    for (let i = 0; i < COUNTED; i++) balances.set(`c${i}`, 0n);
    for (let i = 0; i < FIXED; i++) balances.set(`f${i}`, BigInt(i));
    for (let i = 0; i < RECORDS; i++) records.set(`r${i}`, { a: 0n, b: 0n, c: 0n });
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
    const violations: string[] = [];
    const failures: unknown[] = [];

    const start = async (role: 'counter' | 'reader' | 'grower'): Promise<Worker> => {
      const worker = new Worker(workerUrl, { workerData: { role, balances: balances.handle, records: records.handle, control: control.buffer } });
      balances.supervise(worker);
      records.supervise(worker);
      worker.on('error', (error) => failures.push(error));
      worker.on('message', (message: unknown) => {
        if (typeof message === 'object' && message !== null && 'violation' in message) violations.push(String(message.violation));
      });
      await new Promise<void>((resolve) => worker.once('message', () => resolve()));
      return worker;
    };

    const counters = [await start('counter'), await start('counter')];
    const others = [await start('reader'), await start('grower')];
    let kills = 0;
    // Kill until enough kills landed inside a critical section (the recovery counts the locks
    // it had to release): killing at random, some must.
    while (kills < STRESS_KILLS || (balances.stats().locksRecovered + records.stats().locksRecovered < 3 && kills < 10 * STRESS_KILLS)) {
      await sleep(5 + Math.random() * 30);
      const victim = Math.floor(Math.random() * counters.length);
      await counters[victim]!.terminate();
      kills++;
      counters[victim] = await start('counter');
    }
    await sleep(100);
    Atomics.store(control, STOP, 1);
    await Promise.all([...counters, ...others].map((w) => new Promise((resolve) => w.once('exit', resolve))));
    await sleep(10); // let the last 'exit' recoveries run

    const stats = balances.stats();
    const recordStats = records.stats();
    t.diagnostic(
      `${kills} kills; locks held by killed workers and recovered: ${stats.locksRecovered} (balances) + ${recordStats.locksRecovered} (records); ` +
        `${stats.growths} growths to ${stats.keys} keys; ${Atomics.load(control, READS)} checked reads`,
    );
    assert.deepEqual(failures, [], 'no worker failed (no lock timeout, no error)');
    assert.deepEqual(violations, [], 'no reader saw a counted value go down, a fixed key vanish or change, or a torn record');
    assert.equal(Atomics.load(control, VIOLATIONS), 0);
    assert.ok(stats.locksRecovered + recordStats.locksRecovered >= 3, 'some kills landed while a lock was held');
    // A kill between two operations holds nothing: its slot is freed, and only kills that cut
    // something short count as recoveries.
    assert.equal(stats.threadsAttached, 1, 'every killed worker gave its owner slot back (only this thread is attached)');
    const recoveries = stats.recoveries + recordStats.recoveries;
    assert.ok(recoveries >= 1 && stats.recoveries <= kills && recordStats.recoveries <= kills, `the kills that held a lock were recovered (${stats.recoveries} + ${recordStats.recoveries} recoveries, ${kills} kills)`);
    assert.equal(recordStats.threadsAttached, 1);
    assert.ok(stats.growths >= 5, `the table grew while readers read (${stats.growths} growths)`);
    assert.ok(Atomics.load(control, READS) > 0);

    for (const store of [balances, records]) assert.deepEqual(store.checkIntegrity().problems, []);
    let unaudited = 0;
    for (let i = 0; i < COUNTED; i++) {
      const value = Number(balances.get(`c${i}`));
      const attempted = Atomics.load(control, ATTEMPTED + i);
      const done = Atomics.load(control, DONE + i);
      const audited = Atomics.load(control, AUDITED + i);
      // attempted++ ; update commits (value) ; observer (audited++) ; done++ — a kill can cut
      // between any two steps, so each count bounds the next.
      assert.ok(done <= audited && audited <= value && value <= attempted, `c${i}: done ${done} <= audited ${audited} <= value ${value} <= attempted ${attempted}`);
      unaudited += value - audited;
    }
    assert.ok(unaudited <= kills, `${unaudited} committed but unaudited updates for ${kills} kills`);
    for (let i = 0; i < RECORDS; i++) {
      const record = records.get(`r${i}`)!;
      assert.ok(record.a === record.b && record.c === -record.a, `record r${i} is whole`);
    }
    // And the map still works for everyone.
    balances.set('after', 1n);
    assert.equal(balances.add('after', 1n), 2n);
    balances.close();
    records.close();
  });

  test('two workers hammering the same keys through GovernedMap: every update lands once, every write is audited', async () => {
    const balances = SharedInt64Store.create({ initialCapacity: 16 });
    for (let i = 0; i < 4; i++) balances.set(`acct-${i}`, 1000n);
    const source = `
      import { workerData, parentPort } from 'node:worker_threads';
      import { GovernedMap, reject } from ${JSON.stringify(new URL('../../src/map/index.ts', import.meta.url).href)};
      import { SharedInt64Store } from ${JSON.stringify(new URL('../../src/stores/index.ts', import.meta.url).href)};
      const store = SharedInt64Store.attach(workerData.handle);
      const audit = { ok: 0, rejected: 0 };
      const map = new GovernedMap({
        name: 'balances', store, updateRetries: 10_000,
        validate: (_k, next) => (next >= 0n ? true : reject('BALANCE_UNDERFLOW')),
        observers: [{ onOperation: (_m, op, _k, outcome) => { if (op === 'STORE') audit[outcome]++; } }],
      });
      let credited = 0n, debited = 0n, refused = 0;
      for (let n = 0; n < 20_000; n++) {
        const key = 'acct-' + (n % 4);
        const delta = n % 3 === 0 ? -700n : 300n;
        try { map.update(key, (b) => b + delta); if (delta > 0n) credited += delta; else debited -= delta; }
        catch (e) { if (e.reason !== 'BALANCE_UNDERFLOW') throw e; refused++; }
      }
      parentPort.postMessage({ credited, debited, refused, audit });
    `;
    const results = await Promise.all(
      [0, 1].map((_, index) => {
        const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(source)}`), { workerData: { handle: balances.handle, index } });
        balances.supervise(worker);
        return new Promise<{ credited: bigint; debited: bigint; refused: number; audit: { ok: number; rejected: number } }>((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
        });
      }),
    );
    let total = 0n;
    for (let i = 0; i < 4; i++) total += balances.get(`acct-${i}`)!;
    const credited = results.reduce((s, r) => s + r.credited, 0n);
    const debited = results.reduce((s, r) => s + r.debited, 0n);
    assert.equal(total, 4000n + credited - debited, 'the books balance: no update lost or applied twice');
    for (const r of results) {
      assert.equal(r.audit.ok, 20_000 - r.refused, 'one audited STORE per committed update');
      assert.equal(r.audit.rejected, r.refused, 'every refusal audited');
    }
    assert.ok(results.every((r) => r.refused > 0), 'the validator was exercised');
    for (let i = 0; i < 4; i++) assert.ok(balances.get(`acct-${i}`)! >= 0n, 'no balance below zero');
    balances.close();
  });
});
