import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { basename, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import type { SealRecord } from '../../src/audit/event.ts';
import { encodeHead, HEAD_FILE, segmentHeaderLine } from '../../src/audit/spool.ts';
import { balances, segmentFiles } from './helpers.ts';
import { lines, spoolFixture } from './spool-fixture.ts';

/**
 * Segment files as a whole: a rotation a crash interrupted, empty segments, two files with one
 * number, the oldest segments gone (retention or deletion), HEAD gone.
 */
const { root, writeSpool: write, copyOf } = spoolFixture('verify-segments');
const writeSpool = (dir: string, iterations = 900): Promise<void> => write(dir, { iterations });
const pristine = join(root, 'pristine');
const retained = join(root, 'retained');

/**
 * What the demo's retention does (demo/audit-retention.ts): remove the oldest segments while the
 * recorder runs, then record AUDIT_RETENTION naming them (`absent_through`).
 */
async function writeRetainedSpool(dir: string, removeThrough: number): Promise<void> {
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', maxSegmentBytes: 65_536, sealBytes: 4096 });
  const map = balances();
  audit.attach(map);
  let i = 0;
  const write = async (until: () => boolean): Promise<void> => {
    for (; !until(); i++) {
      map.store(`acct-${i % 40}`, BigInt(1000 + i));
      map.load(`acct-${(i * 7) % 40}`);
      if (i % 100 === 0) await audit.flush();
    }
  };
  // The record lands in a segment after the next one, so removing that next one leaves no record.
  await write(() => audit.stats().segment >= removeThrough + 2);
  for (const file of segmentFiles(dir).slice(0, removeThrough)) unlinkSync(file);
  audit.recordGovernanceEvent({
    op: 'AUDIT_RETENTION',
    owner: null,
    resource: dir,
    reason: 'keep the newest segments',
    detail: { by: 'test retention', segment: removeThrough, file: `audit-${String(removeThrough).padStart(6, '0')}.jsonl`, bytes: 0, records: 0, absent_through: removeThrough },
  });
  const end = i + 300;
  await write(() => i >= end);
  await audit.stop();
}


/**
 * The state a crash leaves in the middle of a rotation (drain-worker.ts `rotate`): the new
 * segment was created (and its header written, unless `empty`), but the old one was not sealed
 * final yet, so HEAD still names the old one's last seal. Made from a stopped spool by dropping
 * its last segment and the final seal of the one before.
 */
function interruptRotation(dir: string, empty: boolean): void {
  const files = segmentFiles(dir);
  const last = files.at(-1)!;
  const previous = files.at(-2)!;
  const kept = lines(previous);
  const finalSeal = JSON.parse(kept.pop()!) as SealRecord;
  assert.equal(finalSeal.final, true, 'the segment before the last ends with its final seal');
  writeFileSync(previous, `${kept.join('\n')}\n`);
  const lastSeal = JSON.parse(kept.findLast((l) => l.startsWith('{"v":1,"type":"SEAL"'))!) as SealRecord;
  const segment = Number(/([0-9]+)\.jsonl$/.exec(last)![1]);
  writeFileSync(last, empty ? '' : segmentHeaderLine(segment, 'clearing/instance-1', 'test/pid-1', `${Date.now()}000000`));
  writeFileSync(
    join(dir, HEAD_FILE),
    encodeHead({ segment: lastSeal.segment, seal: lastSeal.seal, to: lastSeal.to, hash: lastSeal.hash, reads_through: lastSeal.reads_through, writes_through: lastSeal.writes_through }),
  );
}

describe('verify: segments', () => {
  before(async () => {
    await writeSpool(pristine);
    await writeRetainedSpool(retained, 2);
    assert.ok(segmentFiles(pristine).length >= 3, 'several segments');
  });

  test('onSegment follows the check: one call per segment, counts rising to the whole spool', async () => {
    const dir = copyOf(pristine);
    const files = segmentFiles(dir);
    const calls: Array<{ file: string; segmentsDone: number; segmentsTotal: number; bytesDone: number; bytesTotal: number }> = [];
    const report = verifySpool(dir, { onSegment: (p) => calls.push({ ...p }) });
    assert.equal(report.ok, true);
    assert.equal(calls.length, files.length);
    const total = files.reduce((sum, f) => sum + statSync(f).size, 0);
    calls.forEach((c, i) => {
      assert.equal(c.segmentsDone, i + 1);
      assert.equal(c.segmentsTotal, files.length);
      assert.equal(c.file, basename(files[i]!));
      assert.equal(c.bytesTotal, total);
      if (i > 0) assert.ok(c.bytesDone > calls[i - 1]!.bytesDone);
    });
    assert.equal(calls.at(-1)!.bytesDone, total);
  });

  for (const empty of [false, true]) {
    test(`a rotation interrupted by a crash (the new segment ${empty ? 'still empty' : 'holding only its header'}) is a note, and the next start completes it`, async () => {
      const dir = copyOf(pristine);
      interruptRotation(dir, empty);
      const report = verifySpool(dir);
      assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
      assert.ok(
        report.notes.some((n) => new RegExp(`does not end with its final seal and audit-[0-9]+\\.jsonl ${empty ? 'is still empty' : 'holds no seal yet'}: a rotation in progress, or interrupted by a crash; the next start completes it`).test(n)),
        report.notes.join('; '),
      );
      assert.equal(report.closed, false);
      // The state is one recovery knows: a restart seals the old segment final and carries on.
      const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', maxSegmentBytes: 65_536, sealBytes: 4096 });
      await audit.stop();
      const after = verifySpool(dir);
      assert.equal(after.ok, true, JSON.stringify(after.problems.slice(0, 2)));
      assert.ok(!after.notes.some((n) => /rotation/.test(n)), after.notes.join('; '));
    });
  }

  test('a segment without its final seal is still a problem when the segment after it has seals', () => {
    const dir = copyOf(pristine);
    const files = segmentFiles(dir);
    const previous = files.at(-2)!;
    const kept = lines(previous);
    kept.pop();
    writeFileSync(previous, `${kept.join('\n')}\n`);
    const report = verifySpool(dir);
    assert.equal(report.ok, false);
    assert.ok(report.problems.some((p) => p.file === basename(previous) && /does not end with its final seal although a later segment exists/.test(p.problem)), JSON.stringify(report.problems));
  });

  test('an empty segment file is a problem: alone in a directory, checked alone, or in the middle of a spool', () => {
    const dir = join(root, 'only-empty');
    mkdirSync(dir);
    writeFileSync(join(dir, 'audit-000001.jsonl'), '');
    for (const path of [dir, join(dir, 'audit-000001.jsonl')]) {
      const report = verifySpool(path);
      assert.equal(report.ok, false, path);
      assert.match(report.firstBad!.problem, /^the file is empty: every segment starts with its header line \(\{"type":"SEGMENT","segment":1\}\)$/);
      assert.equal(report.firstBad!.file, 'audit-000001.jsonl');
    }
    const spool = copyOf(pristine);
    const middle = segmentFiles(spool)[1]!;
    truncateSync(middle, 0);
    const report = verifySpool(spool);
    assert.equal(report.ok, false);
    assert.equal(report.firstBad!.file, basename(middle));
    assert.match(report.firstBad!.problem, /the file is empty/);
  });

  test('a segment padded past 2 GiB, or replaced by a directory: that segment is named and the rest is checked', () => {
    // Both made verify throw (ERR_FS_FILE_TOO_LARGE, EISDIR): the CLI then said "nothing was
    // checked" and exited 2 (usage), so growing one file hid the damage from a tamper alarm.
    const dir = copyOf(pristine);
    const [first, second] = segmentFiles(dir);
    truncateSync(second!, 3 * 2 ** 30); // sparse: no disk used
    const padded = verifySpool(dir);
    assert.equal(padded.ok, false);
    assert.equal(padded.firstBad!.file, basename(second!));
    assert.match(padded.firstBad!.problem, /^3221225472 bytes, more than any segment holds/);
    unlinkSync(second!);
    mkdirSync(second!);
    const replaced = verifySpool(dir);
    assert.equal(replaced.ok, false);
    assert.equal(replaced.firstBad!.file, basename(second!));
    assert.match(replaced.firstBad!.problem, /^a directory, not a regular file/);
    assert.ok(replaced.records > lines(first!).length - 10, 'the other segments were read');
  });

  test('two files with one segment number: "two files claim segment N", not a jump in the chain', () => {
    const dir = copyOf(pristine);
    const second = segmentFiles(dir)[1]!;
    copyFileSync(second, join(dir, 'audit-0000002.jsonl'));
    const report = verifySpool(dir);
    assert.equal(report.ok, false);
    assert.equal(report.firstBad!.file, 'audit-0000002.jsonl');
    assert.match(report.firstBad!.problem, /^two files claim segment 2: audit-000002\.jsonl and audit-0000002\.jsonl .* only audit-000002\.jsonl is checked$/);
    assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
  });

  test('the oldest segments removed by retention (named by AUDIT_RETENTION) verify, with a note', () => {
    assert.equal(basename(segmentFiles(retained)[0]!), 'audit-000003.jsonl');
    const report = verifySpool(retained);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
    assert.ok(
      report.notes.some((n) => /^the log starts at segment 3: earlier segments are absent, removed by retention \(AUDIT_RETENTION at audit-[0-9]+\.jsonl:[0-9]+ names segments through 2\)/.test(n)),
      report.notes.join('; '),
    );
  });

  test('the oldest segments deleted with no AUDIT_RETENTION naming them fail', () => {
    const dir = copyOf(pristine);
    const files = segmentFiles(dir);
    for (const file of files.slice(0, -1)) unlinkSync(file);
    const report = verifySpool(dir);
    assert.equal(report.ok, false);
    assert.equal(report.firstBad!.file, basename(files.at(-1)!));
    assert.match(report.firstBad!.problem, new RegExp(`^segment\\(s\\) 1\\.\\.${files.length - 1} are absent and no AUDIT_RETENTION record names their removal: the oldest segments were deleted, not retained$`));
  });

  test('one segment more deleted than AUDIT_RETENTION names fails, naming the newest record', () => {
    const dir = copyOf(retained);
    unlinkSync(segmentFiles(dir)[0]!);
    const report = verifySpool(dir);
    assert.equal(report.ok, false);
    assert.match(report.firstBad!.problem, /^segment\(s\) 1\.\.3 are absent and no AUDIT_RETENTION record names their removal \(the newest, audit-[0-9]+\.jsonl:[0-9]+, names segments through 2\)/);
  });

  test('a segment an operator gzipped is named in the report (code SEGMENT_COMPRESSED), in the middle of the log, at its start or at its end', () => {
    const gzip = (file: string): void => {
      writeFileSync(`${file}.gz`, gzipSync(readFileSync(file)));
      unlinkSync(file);
    };
    const check = (dir: string, gzipped: string, problem: RegExp): void => {
      const report = verifySpool(dir);
      assert.equal(report.ok, false);
      const named = report.problems.find((p) => p.code === 'SEGMENT_COMPRESSED');
      assert.ok(named !== undefined, JSON.stringify(report.problems));
      assert.match(named.problem, problem);
      assert.ok(named.problem.includes(`found ${basename(gzipped)}.gz: decompress it to verify`), named.problem);
    };
    const middle = copyOf(pristine);
    const second = segmentFiles(middle)[1]!;
    gzip(second);
    check(middle, second, /^segment 2 is missing; found audit-000002\.jsonl\.gz: decompress it to verify/);
    const oldest = copyOf(pristine);
    const first = segmentFiles(oldest)[0]!;
    gzip(first);
    check(oldest, first, /^segment\(s\) 1\.\.1 are absent .*; found audit-000001\.jsonl\.gz: decompress it to verify/);
    const newest = copyOf(pristine);
    const last = segmentFiles(newest).at(-1)!;
    gzip(last);
    check(newest, last, /^truncated: HEAD records seal #[0-9]+ .*; found audit-[0-9]+\.jsonl\.gz: decompress it to verify/);
  });

  test('a segment checked alone needs no AUDIT_RETENTION for the ones before it', () => {
    const report = verifySpool(segmentFiles(pristine)[1]!);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
  });

  test('HEAD removed while the log holds seals: a note that says what can no longer be detected', () => {
    const dir = copyOf(pristine);
    unlinkSync(join(dir, HEAD_FILE));
    const report = verifySpool(dir);
    assert.equal(report.ok, true);
    assert.ok(
      report.notes.some((n) => /^no HEAD file, although the log holds [0-9]+ seal\(s\): .* so it was deleted or not copied; without it, records or whole segments cut off the end of the log cannot be detected$/.test(n)),
      report.notes.join('; '),
    );
  });
});
