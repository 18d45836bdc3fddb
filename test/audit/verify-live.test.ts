import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import { balances, segmentFiles, tempSpool } from './helpers.ts';

/**
 * Verifying the spool of a recorder that is running (what the dashboard and the demo's retention
 * do): the drain worker seals, fsyncs and moves HEAD while verify reads. An intact live spool must
 * verify every time; reading HEAD after the log once made a seal committed meanwhile look like a
 * truncated log.
 */
test('a live spool verifies while the recorder keeps sealing and moving HEAD', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'govmap-verify-live-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', fsyncIntervalMs: 1, sealBytes: 4096 });
  const map = balances();
  audit.attach(map);
  let headMoves = 0;
  let lastSeals = audit.stats().seals;
  try {
    for (let round = 0; round < 40; round++) {
      // A burst the drain worker is still sealing while verify reads.
      for (let i = 0; i < 2000; i++) {
        map.store(`acct-${i % 50}`, BigInt(round * 10_000 + i));
        map.load(`acct-${(i * 7) % 50}`);
      }
      const report = verifySpool(dir);
      assert.equal(report.ok, true, `round ${round}: ${JSON.stringify(report.firstBad)}`);
      const seals = audit.stats().seals;
      if (seals !== lastSeals) headMoves++;
      lastSeals = seals;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  } finally {
    await audit.stop();
  }
  assert.ok(headMoves >= 20, `the recorder sealed during most rounds (${headMoves} of 40): the race was exercised`);
  assert.equal(verifySpool(dir).ok, true);
});

test('each segment verifies on its own although records near its start are out of seq order (reads through the ring, writes through the journal); a duplicate there still fails', async (t) => {
  const dir = tempSpool(t);
  // Writes among many reads, in rounds. A long commit interval and a small ring (the reader
  // wakes the worker once an eighth of it is queued): the worker drains a round's reads as they
  // come, while its writes wait in the journal for the flush that ends the round, commits, and
  // rotates a full segment. So the segment after each rotation starts with reads whose seqs are
  // above writes that follow them. (With commits every 10 ms, that took a commit falling inside a
  // round and a worker awake right after it: on a busy machine, in 2 runs of 4 no segment did.)
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', maxSegmentBytes: 65_536, writeJournal: true, fsyncIntervalMs: 10_000, ringBytes: 1 << 16 });
  const map = balances();
  audit.attach(map);
  for (let round = 0; round < 60; round++) {
    const drained = audit.stats().drained;
    for (let i = 0; i < 400; i++) {
      if (i % 20 === 0) map.store(`acct-${i % 40}`, BigInt(round * 1000 + i));
      else map.load(`acct-${i % 40}`);
    }
    // Some of the round's reads reach the log before its first write does, which moves at the flush.
    const deadline = Date.now() + 5000;
    while (audit.stats().drained === drained && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    await audit.flush();
  }
  await audit.stop();
  const files = segmentFiles(dir);
  assert.ok(files.length >= 5, `${files.length} segments`);
  let startsOutOfOrder = 0;
  for (const file of files.slice(1)) {
    const seqs = [...readFileSync(file, 'utf8').matchAll(/^\{"v":1,"seq":([0-9]+),/gm)].map((m) => Number(m[1]));
    if (seqs.some((seq) => seq < seqs[0]!)) startsOutOfOrder++;
    const report = verifySpool(file);
    assert.equal(report.ok, true, `${basename(file)} alone: ${JSON.stringify(report.problems.slice(0, 2))}`);
  }
  t.diagnostic(`${startsOutOfOrder} of ${files.length - 1} segments after the first start above a record that follows them`);
  assert.ok(startsOutOfOrder >= 1, 'some segment starts above a record that follows it (the case under test)');
  // A record repeated near the start of a segment checked alone is still a duplicate.
  const file = files[2]!;
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.splice(3, 0, lines[2]!);
  writeFileSync(file, lines.join('\n'));
  const report = verifySpool(file);
  assert.equal(report.ok, false);
  assert.ok(report.problems.some((p) => /appears twice/.test(p.problem)), JSON.stringify(report.problems.slice(0, 3)));
});

test('a live spool whose newest write is still in the write journal verifies (noted); with that frame destroyed, the seq is missing', async (t) => {
  const dir = tempSpool(t);
  // A long commit interval: the worker moves journal frames only at a commit or a flush, while
  // it drains reads on every turn. So reads after a write reach the log before the write does.
  // A small ring: the reader wakes the sleeping worker once an eighth of it is queued.
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: true, fsyncIntervalMs: 10_000, ringBytes: 1 << 16 });
  t.after(() => audit.stop());
  const map = balances();
  audit.attach(map);
  await audit.flush();
  map.store('acct-1', 1n);
  const writeSeq = audit.stats().nextSeq - 1;
  const deadline = Date.now() + 5000;
  const logged = (): Set<number> => new Set(segmentFiles(dir).flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/^\{"v":1,"seq":([0-9]+),/gm)].map((m) => Number(m[1]))));
  const readsAfterWrite = (): number => [...logged()].filter((seq) => seq > writeSeq).length;
  // Batches of reads until some of them are in the log: a worker descheduled while the first
  // batch crossed the wake mark may drain part of it, then sleep until the next commit (10 s)
  // with the rest below the mark; the next batch wakes it again.
  do {
    for (let i = 0; i < 400; i++) map.load('acct-1');
    await new Promise((resolve) => setTimeout(resolve, 10));
  } while (readsAfterWrite() === 0 && Date.now() < deadline);
  assert.ok(readsAfterWrite() > 0, 'reads after the write reached the log');
  assert.equal(logged().has(writeSeq), false, 'the write is still in the journal');

  const report = verifySpool(dir);
  assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
  assert.ok(report.notes.some((n) => n.includes(`seq ${writeSeq} is in the write journal`)), report.notes.join('; '));

  // The same spool with the frame gone from the journal too: now it is a hole, and named.
  const copy = `${dir}-copy`;
  cpSync(dir, copy, { recursive: true });
  t.after(() => rmSync(copy, { recursive: true, force: true }));
  const journal = readFileSync(join(copy, 'JOURNAL'));
  const at = journal.indexOf(Buffer.from('"resource_id":"acct-1"'));
  assert.ok(at > 0);
  // The frame's mark: the frame header (16 bytes) precedes the record's first byte.
  const recordStart = journal.lastIndexOf(Buffer.from('{"v":1,'), at);
  journal.fill(0, recordStart - 16, recordStart - 12);
  writeFileSync(join(copy, 'JOURNAL'), journal);
  const broken = verifySpool(copy);
  assert.equal(broken.ok, false);
  assert.ok(broken.problems.some((p) => p.problem.includes(`seq ${writeSeq} is missing`)), JSON.stringify(broken.problems.slice(0, 2)));
});
