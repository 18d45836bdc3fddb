import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import { JOURNAL_FILE, JOURNAL_HEADER_BYTES, JournalReader, openJournal, readJournal } from '../../src/audit/journal.ts';
import { allOf, GovernedMap } from '../../src/map/index.ts';
import { balances, readSpool, tempSpool } from './helpers.ts';

const ACTOR = 'clearing/journal-test';
const CHILD = fileURLToPath(new URL('./children/crash-writer.ts', import.meta.url));

const story = (dir: string): string[] =>
  readSpool(dir)
    .events.sort((a, b) => a.seq - b.seq)
    .filter((e) => e.op_type !== 'LOAD')
    .map((e) => `${e.op_type}${e.resource_id === null ? '' : `:${e.resource_id}`}${e.outcome === 'ok' ? '' : `:${e.outcome}`}`);

describe('the write journal (writeJournal: true)', () => {
  test('a write record is in the journal (the page cache) when store() returns, and in the log once the worker moves it', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: true });
    t.after(() => audit.stop());
    const map = balances();
    audit.attach(map);
    await audit.flush();
    audit.pauseDrainForTesting(true);
    map.store('acct-7', 700n);
    const seq = audit.stats().nextSeq - 1;
    const frame = readJournal(dir).find((f) => f.seq === seq);
    assert.ok(frame !== undefined, `seq ${seq} is framed in ${JOURNAL_FILE} when store() returns`);
    assert.match(frame.bytes.toString('utf8'), /"op_type":"STORE","map":"balances","resource_id":"acct-7".*"value":"700"/);
    assert.equal(
      readSpool(dir).events.some((e) => e.seq === seq),
      false,
      'the held worker has not moved it',
    );
    // A live verify meanwhile accepts the spool: the record is in the journal, not lost.
    map.load('acct-7');
    audit.pauseDrainForTesting(false);
    await audit.flush();
    const logged = readSpool(dir).events.find((e) => e.seq === seq);
    assert.equal(logged?.value, '700');
    assert.equal(verifySpool(dir).ok, true);
  });

  test('a full journal waits maxWaitMs, then fails over to memory (SINK_FAILED AUDIT_JOURNAL_FULL, guard() closed); once the worker moves again everything lands in seq order', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: true, journalBytes: 1 << 16, maxWaitMs: 20 });
    t.after(() => audit.stop());
    const map = new GovernedMap<string, bigint>({ name: 'guarded', validate: allOf(audit.guard<string, bigint>(), (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW')) });
    audit.attach(map);
    await audit.flush();
    audit.pauseDrainForTesting(true);
    let stored = 0;
    // ~270 bytes a record: 64 KiB holds ~240 of them.
    while (audit.healthy && stored < 1000) map.store(`acct-${stored++}`, 1n);
    assert.ok(stored > 200 && stored < 1000, `the journal filled after ${stored} writes`);
    assert.ok(audit.stats().journalFullWaits >= 1, 'the full journal was waited on (govmap_audit_journal_full_total)');
    assert.ok(audit.stats().journalUsedBytes > (1 << 16) - 1024, `${audit.stats().journalUsedBytes} bytes framed and waiting`);
    assert.throws(() => map.store('refused', 1n), { code: 'GOVMAP_VALIDATION_REJECTED', message: /AUDIT_UNAVAILABLE/ });
    await assert.rejects(audit.flush(), { code: 'GOVMAP_AUDIT_NOT_DURABLE' });
    audit.pauseDrainForTesting(false);
    const deadline = Date.now() + 5000;
    while (!audit.healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(audit.healthy, true, 'the backlog went into the journal once the worker moved it');
    map.store('after', 2n);
    await audit.flush();
    await audit.stop();
    const s = story(dir);
    const stores = s.filter((x) => x.startsWith('STORE:acct-'));
    assert.deepEqual(
      stores,
      Array.from({ length: stored }, (_, i) => `STORE:acct-${i}`),
    );
    const failed = readSpool(dir).events.find((e) => e.op_type === 'SINK_FAILED');
    assert.equal(failed?.reason, 'AUDIT_JOURNAL_FULL');
    assert.deepEqual(s.slice(-4), ['STORE:refused:rejected', 'SINK_RECOVERED', 'STORE:after', 'AUDIT_STOPPED']);
    assert.equal(verifySpool(dir).ok, true);
  });

  test('a record too large for a frame goes to write(2) in its turn: the write stream keeps seq order', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: true, journalBytes: 1 << 16 });
    const map = balances();
    audit.attach(map);
    const big = 'x'.repeat(20_000);
    for (let i = 0; i < 30; i++) map.store(i % 5 === 0 ? `${big}-${i}` : `acct-${i}`, BigInt(i));
    await audit.stop();
    const keys = story(dir)
      .filter((x) => x.startsWith('STORE:'))
      .map((x) => x.slice('STORE:'.length));
    assert.deepEqual(
      keys,
      Array.from({ length: 30 }, (_, i) => (i % 5 === 0 ? `${big}-${i}` : `acct-${i}`)),
    );
    assert.equal(verifySpool(dir).ok, true);
  });

  test('a restart after the worker died between moving frames and recording it duplicates nothing', async (t) => {
    const dir = tempSpool(t);
    // A writer killed after 400 returned writes; then the journal's persisted tail is put back to
    // its start, as if the worker had never recorded moving any frame.
    const writes = await new Promise<number[]>((resolve, reject) => {
      const seqs: number[] = [];
      const child = spawn(process.execPath, [CHILD, dir, 'free', 'journal'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (m: { type: string; seq: number }) => {
        if (m.type === 'write') seqs.push(m.seq);
        if (seqs.length === 400) child.kill('SIGKILL');
      });
      child.on('error', reject);
      child.on('exit', () => resolve(seqs));
    });
    const fd = openSync(join(dir, JOURNAL_FILE), 'r+');
    const tail = Buffer.alloc(16);
    tail.writeDoubleLE(JOURNAL_HEADER_BYTES, 0);
    tail.writeDoubleLE(0, 8);
    writeSync(fd, tail, 0, 16, 8);
    closeSync(fd);
    assert.ok(readJournal(dir).length >= 400, 'every frame since the start is pending again');
    const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: true });
    await audit.stop();
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
    const seen = new Map<number, number>();
    for (const e of readSpool(dir).events) seen.set(e.seq, (seen.get(e.seq) ?? 0) + 1);
    for (const seq of writes) assert.equal(seen.get(seq), 1, `write seq ${seq} is in the log exactly once`);
  });

  test('bad journal options are refused with a typed error naming the option', async () => {
    await assert.rejects(createAuditRecorder({ dir: join(tmpdir(), 'never'), actor: ACTOR, writeJournal: 'yes' as unknown as boolean }), {
      code: 'GOVMAP_AUDIT_INVALID_CONFIGURATION',
      message: /"writeJournal": must be true or false/,
    });
    await assert.rejects(createAuditRecorder({ dir: join(tmpdir(), 'never'), actor: ACTOR, journalBytes: 100_001 }), {
      code: 'GOVMAP_AUDIT_INVALID_CONFIGURATION',
      message: /"journalBytes": must be a multiple of 8/,
    });
  });
});

describe('the journal ring', () => {
  test('frames come out in order, exactly once, across wraps; an empty ring takes any record up to maxRecordBytes; recovery reads exactly what was not consumed', async () => {
    const root = mkdtempSync(join(tmpdir(), 'govmap-journal-'));
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.oneof(fc.record({ append: fc.integer({ min: 1, max: 1008 }) }), fc.record({ consume: fc.integer({ min: 1, max: 6 }) })), { maxLength: 120 }),
          async (ops) => {
            const dir = mkdtempSync(join(root, 'ring-'));
            const writer = await openJournal(dir, 4096);
            const reader = new JournalReader(join(dir, JOURNAL_FILE));
            try {
              assert.equal(writer.maxRecordBytes, 1008);
              let head = JOURNAL_HEADER_BYTES;
              let tail = JOURNAL_HEADER_BYTES;
              let seq = 0;
              let consumedSeq = 0;
              const queue: { seq: number; bytes: Buffer }[] = [];
              for (const op of ops) {
                if ('append' in op) {
                  const bytes = Buffer.alloc(op.append, String.fromCharCode(97 + (seq % 26)));
                  const next = writer.tryAppend(head, tail, bytes, 0, bytes.length, seq + 1);
                  if (next < 0) {
                    assert.ok(queue.length > 0, 'an empty ring refused a record');
                    continue;
                  }
                  seq++;
                  head = next;
                  queue.push({ seq, bytes });
                } else {
                  const got: { seq: number; bytes: Buffer }[] = [];
                  tail = reader.read(tail, head, (b, from, to, s) => {
                    if (got.length === op.consume) return false;
                    got.push({ seq: s, bytes: Buffer.from(b.subarray(from, to)) });
                    return true;
                  });
                  assert.deepEqual(got, queue.splice(0, got.length));
                  assert.equal(got.length, Math.min(op.consume, got.length + queue.length));
                  if (got.length > 0) consumedSeq = got.at(-1)!.seq;
                  reader.persistTail(tail, consumedSeq);
                }
              }
              assert.deepEqual(
                readJournal(dir).map((f) => ({ seq: f.seq, bytes: f.bytes })),
                queue,
              );
            } finally {
              reader.close();
              writer.unmap();
              rmSync(dir, { recursive: true, force: true });
            }
          },
        ),
        { numRuns: 300 },
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
