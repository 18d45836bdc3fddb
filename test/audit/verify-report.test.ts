import assert from 'node:assert/strict';
import { statSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { formatVerifyReport, verifySpool } from '../../src/audit/index.ts';
import { segmentFiles } from './helpers.ts';
import { lines, spoolFixture, writeLines } from './spool-fixture.ts';

/**
 * What verify reports and how: which problem is the first bad record, what the text report
 * shows, a broken chain link told apart from altered bytes, a keyed spool checked without its
 * key, and a damaged write journal.
 */
const { root, writeSpool: write, damaged } = spoolFixture('verify-report');
const KEY = Buffer.from('a-32-byte-secret-for-the-chain!!');
process.env.GOVMAP_TEST_VERIFY_REPORT_KEY = KEY.toString('utf8');
const pristine = join(root, 'pristine');
const keyed = join(root, 'keyed');
const writeSpool = (dir: string, extra: Record<string, unknown> = {}): Promise<void> => write(dir, { extra: { writeJournal: true, ...extra } });

/** Index of the first SEAL line of a file. */
function firstSealLine(file: string): number {
  return lines(file).findIndex((l) => l.startsWith('{"v":1,"type":"SEAL"'));
}

describe('verify: the first bad record and the report', () => {
  before(async () => {
    await writeSpool(pristine);
    await writeSpool(keyed, { hmacKey: { env: 'GOVMAP_TEST_VERIFY_REPORT_KEY' } });
    assert.ok(segmentFiles(pristine).length >= 3, 'several segments');
  });

  test('a cut into a segment\'s final seal: the cut line is the first bad record, and the next segment\'s seal is a broken link, not altered bytes', () => {
    let cut = '';
    let next = '';
    const report = damaged(pristine, (_dir, files) => {
      cut = files[1]!;
      next = files[2]!;
      // The final seal line is ~300 bytes: 100 off its end leaves it without its newline.
      truncateSync(cut, statSync(cut).size - 100);
    });
    assert.equal(report.ok, false);
    assert.equal(report.firstBad!.file, basename(cut), JSON.stringify(report.firstBad));
    assert.equal(report.firstBad!.line, lines(cut).length + 1);
    assert.match(report.firstBad!.problem, /the file ends inside a record/);
    const inNext = report.problems.filter((p) => p.file === basename(next));
    assert.ok(inNext.some((p) => /chain link broken: prev [0-9a-f]{12}… is not the previous seal's hash [0-9a-f]{12}…; its own bytes are intact/.test(p.problem)), JSON.stringify(inNext));
    assert.ok(!inNext.some((p) => /do not match/.test(p.problem)), `the next segment's bytes are intact: ${JSON.stringify(inNext)}`);

    // The text names the first bad record and lists every other problem, the first in log order included.
    const text = formatVerifyReport(report);
    assert.match(text, new RegExp(`first bad record: ${basename(cut)}:${report.firstBad!.line} byte [0-9]+: the file ends inside a record`));
    for (const p of report.problems) {
      if (p === report.firstBad) continue;
      assert.ok(text.includes(`also: ${p.file}:${p.line}${p.seq === null ? '' : ` (seq ${p.seq})`}: ${p.problem}`), `the text lists ${p.file}:${p.line} ${p.problem}\n${text}`);
    }
  });

  test('a block whose bytes do not hash and the broken record inside it: the record is named, and the text lists the block too, each once', () => {
    let file = '';
    let at = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[1]!;
      const all = lines(file);
      at = all.findIndex((l, i) => i > 10 && l.includes('"op_type":"LOAD"'));
      all[at] = all[at]!.replace('"op_type"', '"op_typf"');
      writeLines(file, all);
    });
    assert.equal(report.firstBad!.file, basename(file));
    assert.equal(report.firstBad!.line, at + 1);
    assert.match(report.firstBad!.problem, /not a valid audit record/);
    const block = report.problems.find((p) => /do not match/.test(p.problem));
    assert.ok(block !== undefined, 'the failed block is a problem too');
    assert.notEqual(report.problems[0], report.firstBad, 'the block sorts first: the case where the first problem is not the first bad record');
    const text = formatVerifyReport(report);
    assert.equal(text.split(block.problem).length - 1, 1, `the block is listed once:\n${text}`);
    assert.equal(text.split(report.firstBad!.problem).length - 1, 1, `the first bad record is not repeated:\n${text}`);
  });

  test('a seal whose prev field alone was edited: a broken link, its bytes intact', () => {
    let file = '';
    let at = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[2]!;
      const all = lines(file);
      at = firstSealLine(file);
      all[at] = all[at]!.replace(/"prev":"(.)/, (_m, c: string) => `"prev":"${c === '0' ? '1' : '0'}`);
      writeLines(file, all);
    });
    assert.equal(report.firstBad!.file, basename(file));
    assert.equal(report.firstBad!.line, at + 1);
    assert.match(report.firstBad!.problem, /chain link broken: its prev field was altered .* its bytes hash correctly after the previous seal/);
    // Its own block is intact; the seal line itself lies in the next block, which fails.
    assert.ok(!report.problems.some((p) => /bytes 0\.\./.test(p.problem)), JSON.stringify(report.problems));
    assert.ok(report.problems.some((p) => p.line === at + 1 && /do not match/.test(p.problem)), `the next block starts at the edited seal line: ${JSON.stringify(report.problems)}`);
  });

  test('altered bytes under a seal that also breaks the link: both are reported', () => {
    const report = damaged(pristine, (_dir, files) => {
      const file = files[2]!;
      const all = lines(file);
      // A record with a value and the seal that covers it (the first seal after it).
      const store = all.findIndex((l) => /"value":"[0-9]/.test(l));
      const seal = all.findIndex((l, i) => i > store && l.startsWith('{"v":1,"type":"SEAL"'));
      all[seal] = all[seal]!.replace(/"prev":"(.)/, (_m, c: string) => `"prev":"${c === '0' ? '1' : '0'}`);
      all[store] = all[store]!.replace(/"value":"([0-9])/, (_m, d: string) => `"value":"${d === '1' ? '2' : '1'}`);
      writeLines(file, all);
    });
    assert.ok(report.problems.some((p) => /chain link broken: prev/.test(p.problem)), JSON.stringify(report.problems));
    assert.ok(report.problems.some((p) => /do not match their sha256 hash/.test(p.problem)), JSON.stringify(report.problems));
  });

  test('a keyed spool checked without its key: one problem saying so, and keyRequired for the CLI', () => {
    const without = verifySpool(keyed);
    assert.equal(without.ok, false);
    assert.equal(without.keyRequired, true);
    assert.ok(without.seals > 10, `many seals (${without.seals}), one problem`);
    assert.equal(without.problems.length, 1, JSON.stringify(without.problems.slice(0, 3)));
    assert.match(without.firstBad!.problem, /this spool's seals are HMAC-keyed \(hmac-sha256\): verify with the spool key \(--key-file or --key-env\)/);
    const withKey = verifySpool(keyed, { key: KEY });
    assert.equal(withKey.ok, true, JSON.stringify(withKey.problems.slice(0, 2)));
    assert.equal(withKey.keyRequired, false);
    assert.equal(verifySpool(pristine).keyRequired, false);
  });

  test('a keyed spool checked with the wrong key: still failed (a chain rebuilt under another key looks the same), with a note asking whether it is the spool\'s key', () => {
    const wrong = verifySpool(keyed, { key: Buffer.from('not-the-key-of-this-spool-at-all') });
    assert.equal(wrong.ok, false);
    assert.ok(wrong.notes.some((n) => /not one of the \d+ HMAC seals verifies with the key given: is it this spool's key/.test(n)), JSON.stringify(wrong.notes));
    const right = verifySpool(keyed, { key: KEY });
    assert.ok(!right.notes.some((n) => /HMAC seals verifies/.test(n)), 'no such note with the right key');
    // One block altered under the right key is tampering, and said only as that.
    const tampered = damaged(keyed, (_dir, files) => {
      const all = lines(files[1]!);
      const i = all.findIndex((l, n) => n > 20 && l.includes('"op_type":"STORE"'));
      all[i] = all[i]!.replace('"outcome":"ok"', '"outcome":"miss"');
      writeLines(files[1]!, all);
    }, KEY);
    assert.equal(tampered.ok, false);
    assert.ok(!tampered.notes.some((n) => /HMAC seals verifies/.test(n)), JSON.stringify(tampered.notes));
  });

  test('a keyed spool without its key still reports damage it can see (a missing record)', () => {
    const report = damaged(keyed, (_dir, files) => {
      const all = lines(files[1]!);
      all.splice(all.findIndex((l, i) => i > 20 && l.includes('"op_type":"STORE"')), 1);
      writeLines(files[1]!, all);
    });
    assert.equal(report.keyRequired, true);
    assert.ok(report.problems.some((p) => /is missing/.test(p.problem)), JSON.stringify(report.problems));
  });

  test('a damaged write journal is a note, not a crash', () => {
    for (const damage of [(journal: string) => truncateSync(journal, 4096), (journal: string) => writeFileSync(journal, Buffer.alloc(8192, 0x41))]) {
      const report = damaged(pristine, (dir) => damage(join(dir, 'JOURNAL')));
      assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
      assert.ok(report.notes.some((n) => /^the write journal \(JOURNAL\) could not be read \(.+\): write records still in it are not counted/.test(n)), report.notes.join('; '));
    }
  });
});
