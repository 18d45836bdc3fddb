import assert from 'node:assert/strict';
import { appendFileSync, cpSync, existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import type { AuditRecorder } from '../../src/audit/index.ts';
import { JOURNAL_FILE } from '../../src/audit/journal.ts';
import { balances, readSpool, segmentFiles, tempSpool } from './helpers.ts';
import { openCLibrary } from '../../src/audit/shared-mapping.ts';

/**
 * A disk that fills up, without a small file system to fill: RLIMIT_FSIZE caps how large this
 * process may make a file. A write(2) across the cap writes what fits and returns short, the next
 * one fails (EFBIG; Node ignores SIGXFSZ), and ftruncate past it fails: what a full disk does to
 * the spool, at a byte the test chooses. Lifting the cap is the disk getting room again.
 */
interface FileSizeLimit {
  /** Caps file sizes at `bytes`, or restores the limit the process started with (null). */
  set(bytes: number | null): void;
}

const RLIMIT_FSIZE = 1;

async function fileSizeLimit(): Promise<FileSizeLimit | string> {
  if (process.platform !== 'linux') return 'RLIMIT_FSIZE is set through Linux libc';
  const koffi = (await import('koffi')).default;
  const lib = openCLibrary(koffi);
  if (lib === undefined) return 'the C library could not be loaded through koffi';
  const rlimit = koffi.struct('govmap_test_rlimit', { cur: 'uint64', max: 'uint64' });
  const getrlimit = lib.func('int getrlimit(int, _Out_ govmap_test_rlimit *)');
  const setrlimit = lib.func('int setrlimit(int, const govmap_test_rlimit *)');
  const original: { cur?: bigint; max?: bigint } = {};
  if (getrlimit(RLIMIT_FSIZE, original) !== 0) return 'getrlimit failed';
  void rlimit;
  return {
    set(bytes: number | null): void {
      const rc = setrlimit(RLIMIT_FSIZE, bytes === null ? original : { cur: BigInt(bytes), max: original.max }) as number;
      if (rc !== 0) throw new Error(`setrlimit(RLIMIT_FSIZE, ${bytes}) failed`);
    },
  };
}

const limit = await fileSizeLimit();
const skip = typeof limit === 'string' ? limit : false;
const cap = limit as FileSizeLimit;
const ACTOR = 'clearing/instance-1';

async function until(what: string, ready: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Blocks this thread (no event loop turn) until `ready()`, at most `ms`. */
function spinUntil(what: string, ready: () => boolean, ms = 5000): void {
  const deadline = Date.now() + ms;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    Atomics.wait(cell, 0, 0, 1);
  }
}

async function busySpool(dir: string): Promise<{ audit: AuditRecorder; map: ReturnType<typeof balances> }> {
  const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: false, fsyncIntervalMs: 5 });
  const map = balances();
  audit.attach(map);
  for (let i = 0; i < 20; i++) {
    map.store(`acct-${i}`, BigInt(i));
    map.load(`acct-${i}`);
  }
  await audit.flush();
  return { audit, map };
}

function assertIntact(dir: string, stores: Record<string, string>): void {
  const report = verifySpool(dir);
  assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
  const events = readSpool(dir).events;
  for (const [key, value] of Object.entries(stores)) {
    assert.ok(events.some((e) => e.op_type === 'STORE' && e.resource_id === key && e.value === value), `the STORE of ${key} = ${value} is in the log`);
  }
}

describe('a full disk (RLIMIT_FSIZE)', { skip }, () => {
  test('a write journal that cannot be allocated fails the start with GOVMAP_AUDIT_JOURNAL and leaves no JOURNAL behind; later starts work', async (t) => {
    const dir = tempSpool(t);
    cap.set(1 << 20);
    try {
      await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, writeJournal: true }), {
        code: 'GOVMAP_AUDIT_JOURNAL',
        message: /JOURNAL": could not be sized to 16777216 bytes \(EFBIG/,
      });
    } finally {
      cap.set(null);
    }
    assert.equal(existsSync(join(dir, JOURNAL_FILE)), false, 'the journal this start created is removed');
    for (const writeJournal of [false, true]) {
      const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal });
      await audit.stop();
    }
    assert.equal(verifySpool(dir).ok, true);
  });

  test('writeJournal false: a record cut short by the full disk is completed before the worker appends or seals anything', async (t) => {
    const dir = tempSpool(t);
    const { audit, map } = await busySpool(dir);
    const segment = segmentFiles(dir)[0]!;
    const size = statSync(segment).size;
    cap.set(size + 100);
    try {
      // Its first 100 bytes reach the file; the rest waits in the backlog.
      map.store('acct-torn', 123_456_789n);
      assert.equal(statSync(segment).size, size + 100);
      assert.equal(audit.healthy, false);
    } finally {
      cap.set(null);
    }
    // Room again. Reads wake the worker at once, long before the backlog's retry (250 ms): it
    // must neither append them nor seal while the file ends inside the STORE.
    for (let i = 0; i < 200; i++) map.load(`acct-${i % 20}`);
    await until('the recorder is healthy again', () => audit.healthy);
    map.store('acct-after', 7n);
    await audit.stop();
    assertIntact(dir, { 'acct-torn': '123456789', 'acct-after': '7' });
  });

  test('writeJournal false: while the worker\'s batch is cut short, the caller\'s writes wait for it instead of landing inside it', async (t) => {
    const dir = tempSpool(t);
    const { audit, map } = await busySpool(dir);
    const segment = segmentFiles(dir)[0]!;
    // ~200 reads held in the ring, then released into a disk with room for 1,000 bytes of them.
    audit.pauseDrainForTesting(true);
    for (let i = 0; i < 200; i++) map.load(`acct-${i % 20}`);
    await Promise.resolve();
    const size = statSync(segment).size;
    cap.set(size + 1000);
    try {
      audit.pauseDrainForTesting(false);
      spinUntil('the worker meets the full disk', () => audit.stats().workerWriteErrors > 0);
      assert.equal(statSync(segment).size, size + 1000);
      cap.set(null);
      // Room again, and this thread has not yet heard that the worker failed (its message waits
      // for the event loop): this write must not go to the end of the file, inside the batch.
      map.store('acct-during', 42n);
    } finally {
      cap.set(null);
    }
    await until('the recorder is healthy again', () => audit.healthy);
    map.store('acct-after', 7n);
    await audit.stop();
    assertIntact(dir, { 'acct-during': '42', 'acct-after': '7' });
  });
});

describe('a start that fails after recovery (a full disk), then a start that works', { skip }, () => {
  test('a line torn by the crash is still named by the AUDIT_GAP of the start that works, and verify passes', async (t) => {
    const live = tempSpool(t, 'live');
    const { audit } = await busySpool(live);
    // What a SIGKILL leaves: the spool as it is while the recorder runs, without its LOCK, and
    // the last record torn inside its write(2).
    const dir = join(live, '..', 'crashed');
    cpSync(live, dir, { recursive: true });
    rmSync(join(dir, 'LOCK'));
    await audit.stop();
    const segment = segmentFiles(dir)[0]!;
    const tornAt = statSync(segment).size;
    appendFileSync(segment, '{"v":1,"seq":4000,"op_type":"STORE","map":"balances","resource_id":"acct-');
    // The start after the crash: recovery runs, then the write journal cannot be allocated.
    cap.set(1 << 20);
    try {
      await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, writeJournal: true }), { code: 'GOVMAP_AUDIT_JOURNAL' });
    } finally {
      cap.set(null);
    }
    // As the error says: without the journal.
    const again = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: false });
    await again.stop();
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
    const gap = readSpool(dir).events.find((e) => e.op_type === 'AUDIT_GAP');
    assert.equal(gap?.gap?.torn?.offset, tornAt, 'the gap names the torn bytes');
  });
});

describe('a start after a clean stop that fails after recovery, then a start that works', { skip }, () => {
  test('zeros a power loss left after the stop are still a crash, not tampering, and are named', async (t) => {
    const dir = tempSpool(t);
    const { audit } = await busySpool(dir);
    await audit.stop();
    const segment = segmentFiles(dir)[0]!;
    const tornAt = statSync(segment).size;
    appendFileSync(segment, '\0'.repeat(300));
    cap.set(1 << 20);
    try {
      await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, writeJournal: true }), { code: 'GOVMAP_AUDIT_JOURNAL' });
    } finally {
      cap.set(null);
    }
    const again = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: false });
    await again.stop();
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
    assert.equal(readSpool(dir).events.find((e) => e.op_type === 'AUDIT_GAP')?.gap?.torn?.offset, tornAt, 'the gap names the zeros');
  });
});
