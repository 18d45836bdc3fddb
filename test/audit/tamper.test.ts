import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { verifySpool } from '../../src/audit/index.ts';
import type { SealRecord, VerifyReport } from '../../src/audit/index.ts';
import { encodeHead, HEAD_FILE } from '../../src/audit/spool.ts';
import { VERIFY_CHUNK_BYTES } from '../../src/audit/verify.ts';
import { segmentFiles } from './helpers.ts';
import { lines, spoolFixture, writeLines } from './spool-fixture.ts';

/**
 * One pristine spool (several segments, small seal blocks), copied and damaged once per test.
 * Each damage must make verify fail and name where: the file and the line.
 */
const { root, writeSpool: write, damaged } = spoolFixture('tamper');
const pristine = join(root, 'pristine');
const keyed = join(root, 'keyed');
const KEY = Buffer.from('a-32-byte-secret-for-the-chain!!');
const writeSpool = (dir: string, extra: Record<string, unknown> = {}): Promise<void> => write(dir, { extra, iterations: 1500 });

/** 0-based index of the first line in `file` after `from` whose text matches. */
function findLine(file: string, pattern: RegExp, from = 10): number {
  const all = lines(file);
  for (let i = from; i < all.length; i++) if (pattern.test(all[i]!)) return i;
  throw new Error(`no line matches ${pattern} in ${file}`);
}
function assertNames(report: VerifyReport, file: string, line: number | number[], problem: RegExp): void {
  assert.equal(report.ok, false, 'verify must fail');
  const first = report.firstBad!;
  assert.equal(first.file, basename(file), `names the file (${JSON.stringify(first)})`);
  const expected = Array.isArray(line) ? line : [line];
  assert.ok(expected.includes(first.line), `names line ${expected.join(' or ')}, named ${first.line}: ${first.problem}`);
  assert.match(first.problem, problem);
}

describe('verify catches tampering and names the place', () => {
  before(async () => {
    await writeSpool(pristine);
    await writeSpool(keyed, { hmacKey: { env: 'GOVMAP_TEST_AUDIT_KEY' } });
  });
  process.env.GOVMAP_TEST_AUDIT_KEY = KEY.toString('utf8');

  test('the untouched spool verifies, across its segments', () => {
    assert.ok(segmentFiles(pristine).length >= 3);
    const report = verifySpool(pristine);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
    assert.equal(report.records, 3003);
    assert.equal(report.closed, true);
  });

  test('a flipped byte that breaks the record: that record', () => {
    let file = '';
    let at = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[1]!;
      const all = lines(file);
      at = findLine(file, /"op_type":"LOAD"/);
      all[at] = all[at]!.replace('"op_type"', '"op_typ\u0065"'.replace('e"', 'f"'));
      writeLines(file, all);
    });
    assertNames(report, file, at + 1, /not a valid audit record|unknown op_type/);
  });

  test('a flipped digit in an amount (still a valid record): its sealed block, which holds that record', () => {
    let file = '';
    let at = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[1]!;
      at = findLine(file, /"op_type":"STORE".*"value":"1[0-9]+"/, 20);
      const bytes = readFileSync(file);
      let offset = 0;
      for (let i = 0; i < at; i++) offset = bytes.indexOf(10, offset) + 1;
      const digit = bytes.indexOf('"value":"1', offset) + 9;
      bytes[digit] = bytes[digit] === 0x31 ? 0x32 : 0x31;
      writeFileSync(file, bytes);
    });
    assert.equal(report.ok, false);
    const first = report.firstBad!;
    assert.equal(first.file, basename(file));
    const range = /lines ([0-9]+)-([0-9]+)/.exec(first.problem);
    assert.ok(range !== null, first.problem);
    assert.ok(Number(range[1]) <= at + 1 && at + 1 <= Number(range[2]), `block ${range[0]} holds line ${at + 1}`);
    // Seals follow sealBytes (4 KiB here) as fast as the worker reacts; a burst of writes can make a block a few times larger.
    assert.ok(Number(range[2]) - Number(range[1]) < 150, `a bounded block, not the whole file (${range[0]})`);
    assert.match(first.problem, /do not match their sha256 hash/);
  });

  test('a deleted record: the place it was removed from, or where its successor in seq order lies', () => {
    let file = '';
    let at = 0;
    let successorLine = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[1]!;
      const all = lines(file);
      at = findLine(file, /"op_type":"STORE"/, 30);
      const seq = Number(/"seq":([0-9]+)/.exec(all[at]!)![1]);
      all.splice(at, 1);
      // Reads and writes reach the log by two paths, so seq + 1 may sit a few lines before or
      // after the gap; verify names the gap at the missing seq's successor ("deleted before seq
      // N") when that comes first.
      successorLine = all.findIndex((l) => l.includes(`"seq":${seq + 1},`)) + 1;
      writeLines(file, all);
    });
    assertNames(report, file, [at + 1, at, successorLine], /missing|do not match/);
  });

  test('two records swapped: the swapped pair', () => {
    let file = '';
    let at = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[2]!;
      const all = lines(file);
      at = findLine(file, /"op_type":"STORE"/, 30);
      let next = at + 1;
      while (!/"op_type":"STORE"/.test(all[next]!)) next++;
      [all[at], all[next]] = [all[next]!, all[at]!];
      writeLines(file, all);
    });
    assert.equal(report.ok, false);
    assert.equal(report.firstBad!.file, basename(file));
    assert.match(report.firstBad!.problem, /reordered|missing|appears twice/);
    assert.ok(report.firstBad!.line >= at + 1 && report.firstBad!.line <= at + 30, `line ${report.firstBad!.line} is at the swap (line ${at + 1})`);
  });

  test('an inserted record (a copy of another): the copy', () => {
    let file = '';
    let at = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[1]!;
      const all = lines(file);
      const source = findLine(file, /"op_type":"STORE"/, 20);
      at = source + 40;
      all.splice(at, 0, all[source]!);
      writeLines(file, all);
    });
    assertNames(report, file, at + 1, /appears twice|comes after/);
  });

  test('a record forged into the log: its line', () => {
    let file = '';
    let at = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[1]!;
      const all = lines(file);
      at = findLine(file, /"op_type":"STORE"/, 20);
      const forged = JSON.parse(all[at]!) as Record<string, unknown>;
      forged.seq = 999_999;
      forged.value = '100000000';
      all.splice(at + 1, 0, JSON.stringify(forged));
      writeLines(file, all);
    });
    assert.equal(report.ok, false);
    assert.equal(report.firstBad!.file, basename(file));
    assert.ok([at + 2, at + 1].includes(report.firstBad!.line) || /do not match/.test(report.firstBad!.problem), JSON.stringify(report.firstBad));
  });

  test('a record cut short with a whole copy after it, and no AUDIT_GAP naming the cut: the cut line', () => {
    // What a crash inside write(2) leaves, and recovery then names; here nobody names it.
    let file = '';
    let at = 0;
    const report = damaged(pristine, (_dir, files) => {
      file = files[1]!;
      const all = lines(file);
      at = findLine(file, /"op_type":"STORE"/);
      const whole = all[at]!;
      all[at] = whole.slice(0, Math.floor(whole.length / 2));
      all.splice(at + 1, 0, whole);
      writeLines(file, all);
    });
    assertNames(report, file, at + 1, /not a valid audit record/);
  });

  test('truncated inside a record: the cut record', () => {
    let file = '';
    const report = damaged(pristine, (_dir, files) => {
      file = files.at(-1)!;
      const size = readFileSync(file).length;
      truncateSync(file, size - 100);
    });
    assertNames(report, file, lines(file).length + 1, /ends inside a record/);
  });

  test('truncated at a record boundary: HEAD shows the committed tail is gone', () => {
    let file = '';
    const report = damaged(pristine, (_dir, files) => {
      file = files.at(-1)!;
      const all = lines(file);
      writeLines(file, all.slice(0, all.length - 5));
    });
    assert.equal(report.ok, false);
    assert.equal(report.firstBad!.file, basename(file));
    assert.match(report.firstBad!.problem, /truncated: HEAD records seal #[0-9]+/);
  });

  /** A STORE of the spool's, given the seq after the last and a new value: a record forged to follow the stop. */
  const forgedStore = (segment: string): string =>
    lines(segment)
      .find((l) => l.includes('"op_type":"STORE"'))!
      .replace(/"seq":[0-9]+/, '"seq":3004')
      .replace(/"value":"[0-9]+"/, '"value":"99999999"');

  test('records appended after the clean stop: the first of them, even with the key', () => {
    let file = '';
    let count = 0;
    const report = damaged(
      keyed,
      (_dir, files) => {
        file = files.at(-1)!;
        const all = lines(file);
        all.push(forgedStore(files[0]!));
        count = all.length;
        writeLines(file, all);
      },
      KEY,
    );
    assertNames(report, file, count, /follows the clean stop .* appended after the recorder stopped/);
  });

  test('a record slipped in just before the last seal line, past the bytes that seal covers: caught, even with the key', () => {
    // The last seal's `to` ends before its own line (a write may land between the two while the
    // recorder runs): bytes put there are hashed by no seal, and the stop looked sealed.
    let file = '';
    let at = 0;
    const report = damaged(
      keyed,
      (_dir, files) => {
        file = files.at(-1)!;
        const all = lines(file);
        at = all.length;
        all.splice(all.length - 1, 0, forgedStore(files[0]!));
        writeLines(file, all);
      },
      KEY,
    );
    assertNames(report, file, at, /follows the clean stop .* no seal covers it/);
  });

  test('truncated into a middle segment\'s final seal: that segment\'s cut line, not the next segment', () => {
    let file = '';
    const report = damaged(pristine, (_dir, files) => {
      file = files[1]!;
      truncateSync(file, readFileSync(file).length - 100);
    });
    assertNames(report, file, lines(file).length + 1, /ends inside a record/);
  });

  test('a whole segment deleted from the middle: the segment', () => {
    let next = '';
    const report = damaged(pristine, (_dir, files) => {
      rmSync(files[1]!);
      next = files[2]!;
    });
    assertNames(report, next, 1, /segment\(s\) 2\.\.2 are missing/);
  });

  test('a keyed chain: verifies with the key, is refused without it or with a wrong one', () => {
    assert.equal(verifySpool(keyed, { key: KEY }).ok, true);
    const without = verifySpool(keyed);
    assert.equal(without.ok, false);
    assert.match(without.firstBad!.problem, /keyed \(hmac-sha256\): verify with the spool key/);
    // Once for the spool, not once per seal; the CLI tells a missing key (usage) from tampering by it.
    assert.equal(without.problems.length, 1, JSON.stringify(without.problems.slice(0, 3)));
    assert.equal(without.keyRequired, true);
    const wrong = verifySpool(keyed, { key: Buffer.from('another-key-of-32-bytes-length!!') });
    assert.equal(wrong.ok, false);
    assert.match(wrong.firstBad!.problem, /do not match their hmac-sha256 hash/);
  });

  /**
   * Cuts the log back to the seal before a segment's last one, and writes a HEAD naming that seal
   * (as someone without the key can). Where rotation fell decides whether the last segment holds
   * two seals, so the cut is made in the last segment that does, and the segments after it go.
   */
  function cutToAnEarlierSeal(files: string[], dir: string, mac: 'none' | 'wrong-key'): void {
    const sealsOf = (file: string): { all: string[]; sealAt: number[] } => {
      const all = lines(file);
      return { all, sealAt: all.map((l, i) => (l.startsWith('{"v":1,"type":"SEAL"') ? i : -1)).filter((i) => i >= 0) };
    };
    const index = files.findLastIndex((f) => sealsOf(f).sealAt.length >= 2);
    assert.ok(index >= 0, 'some segment has two seals to cut between');
    const file = files[index]!;
    for (const later of files.slice(index + 1)) rmSync(later);
    const { all, sealAt } = sealsOf(file);
    const keep = sealAt.at(-2)!;
    writeLines(file, all.slice(0, keep + 1));
    const seal = JSON.parse(all[keep]!) as SealRecord;
    const fields = { segment: seal.segment, seal: seal.seal, to: seal.to, hash: seal.hash, reads_through: seal.reads_through, writes_through: seal.writes_through };
    writeFileSync(join(dir, HEAD_FILE), encodeHead(fields, mac === 'none' ? null : Buffer.from('another-key-of-32-bytes-length!!')));
  }

  test('records cut off the end with HEAD rewritten to name an earlier seal: caught with the key (HEAD is MAC\'d)', () => {
    const forged = damaged(keyed, (dir, files) => cutToAnEarlierSeal(files, dir, 'none'), KEY);
    assert.equal(forged.ok, false);
    assert.match(forged.firstBad!.problem, /^HEAD carries no MAC although the spool is keyed: it was rewritten by someone without the key/);
    const wrongKey = damaged(keyed, (dir, files) => cutToAnEarlierSeal(files, dir, 'wrong-key'), KEY);
    assert.equal(wrongKey.ok, false);
    assert.match(wrongKey.firstBad!.problem, /^HEAD's MAC does not match the key: HEAD was rewritten without the key/);
    // Without the cut, the recorder's own HEAD carries a MAC that checks.
    assert.equal(verifySpool(keyed, { key: KEY }).ok, true);
  });

  test('HEAD deleted from a keyed spool: a problem with the key (the end of the log cannot be vouched for), a note without it', () => {
    const report = damaged(keyed, (dir) => rmSync(join(dir, HEAD_FILE)), KEY);
    assert.equal(report.ok, false);
    assert.match(report.firstBad!.problem, /^no HEAD file in a keyed spool holding [0-9]+ seal\(s\)/);
    const unkeyed = damaged(pristine, (dir) => rmSync(join(dir, HEAD_FILE)));
    assert.equal(unkeyed.ok, true, 'an unkeyed spool copied without HEAD: a note, as before');
    assert.ok(unkeyed.notes.some((n) => n.startsWith('no HEAD file')));
  });

  test('rewriting a record and rebuilding the whole chain without the key is caught with the key', () => {
    const report = damaged(
      keyed,
      (_dir, files) => {
        // The attacker edits an amount, then recomputes every seal with plain SHA-256.
        let prev = '0'.repeat(64);
        for (const [index, file] of files.entries()) {
          const all = lines(file);
          if (index === 1) {
            const at = findLine(file, /"value":"1/);
            all[at] = all[at]!.replace(/"value":"1([0-9]+)"/, '"value":"9$1"');
          }
          let bytes = Buffer.alloc(0);
          const out: string[] = [];
          let from = 0;
          for (const text of all) {
            const record = JSON.parse(text) as Record<string, unknown>;
            if (record.type === 'SEAL') {
              const to = bytes.length;
              const hash = createHash('sha256').update(Buffer.from(prev, 'hex')).update(bytes.subarray(from, to)).digest('hex');
              const forged = { ...record, from, to, alg: 'sha256', prev, hash };
              prev = hash;
              from = to;
              const line = JSON.stringify(forged);
              out.push(line);
              bytes = Buffer.concat([bytes, Buffer.from(`${line}\n`)]);
              if (record.final === true) from = 0;
            } else {
              out.push(text);
              bytes = Buffer.concat([bytes, Buffer.from(`${text}\n`)]);
            }
          }
          writeLines(file, out);
        }
      },
      KEY,
    );
    assert.equal(report.ok, false);
    assert.match(report.firstBad!.problem, /plain sha256 but the spool key was given/);
  });
});

/**
 * Verify reads a segment in VERIFY_CHUNK_BYTES pieces, not whole: a line can straddle the edge of
 * a piece, and a seal's block can start in a piece already gone. Neither may change a verdict or
 * the place it names.
 */
describe('verify reads a segment larger than its read buffer', () => {
  const big = join(root, 'big-segment');
  before(() => write(big, { extra: { maxSegmentBytes: 8 << 20 }, iterations: 5000 }));

  /** The segment's bytes and the line (0-based) holding byte `offset`, with where it starts and ends. */
  function lineAt(file: string, offset: number): { bytes: Buffer; index: number; start: number; end: number } {
    const bytes = readFileSync(file);
    let start = 0;
    for (let index = 0; ; index++) {
      const end = bytes.indexOf(10, start);
      if (end >= offset) return { bytes, index, start, end };
      start = end + 1;
    }
  }

  test('a segment several read buffers long verifies, lines straddling the buffer edge included', () => {
    const [file] = segmentFiles(big);
    assert.ok(readFileSync(file!).length > 2 * VERIFY_CHUNK_BYTES, 'the segment spans more than two read buffers');
    const { start, end } = lineAt(file!, VERIFY_CHUNK_BYTES);
    assert.ok(start < VERIFY_CHUNK_BYTES && end > VERIFY_CHUNK_BYTES, 'a record straddles the first buffer edge');
    const report = verifySpool(big);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
    assert.equal(report.records, 10_003);
  });

  test('a byte broken just past the buffer edge is named at its line and byte offset: in a record straddling the edge, and in the record after it', () => {
    for (const after of [false, true]) {
      let at = { index: 0, start: 0 };
      const report = damaged(big, (_dir, files) => {
        const found = lineAt(files[0]!, VERIFY_CHUNK_BYTES);
        const next = { index: found.index + 1, start: found.end + 1 };
        at = after ? next : found;
        const bytes = found.bytes;
        bytes[after ? next.start + 1 : VERIFY_CHUNK_BYTES] = 0x01;
        writeFileSync(files[0]!, bytes);
      });
      assertNames(report, segmentFiles(big)[0]!, at.index + 1, /not a valid audit record/);
      assert.equal(report.firstBad!.offset, at.start);
    }
  });

  test('a digit flipped just past the buffer edge (still a valid record): its sealed block, which holds it', () => {
    let index = 0;
    const report = damaged(big, (_dir, files) => {
      const bytes = readFileSync(files[0]!);
      const digit = bytes.indexOf('"value":"', VERIFY_CHUNK_BYTES) + 9;
      bytes[digit] = bytes[digit] === 0x32 ? 0x33 : 0x32;
      index = lineAt(files[0]!, digit).index;
      writeFileSync(files[0]!, bytes);
    });
    assert.equal(report.ok, false);
    const range = /lines ([0-9]+)-([0-9]+)/.exec(report.firstBad!.problem);
    assert.ok(range !== null, report.firstBad!.problem);
    assert.ok(Number(range[1]) <= index + 1 && index + 1 <= Number(range[2]), `block ${range[0]} holds line ${index + 1}`);
  });

  test('a line longer than any record is a bad record at its place, and the lines after it are still checked', () => {
    let index = 0;
    let start = 0;
    const report = damaged(big, (_dir, files) => {
      const all = lines(files[0]!);
      // The last write, so that the bytes it shifts break few seals and the report stays short.
      index = all.findLastIndex((l) => l.includes('"op_type":"STORE"'));
      start = Buffer.byteLength(`${all.slice(0, index).join('\n')}\n`);
      all[index] = `{"v":1,"seq":${/"seq":([0-9]+)/.exec(all[index]!)![1]},"op_type":"STORE","detail":"${'x'.repeat(3 * VERIFY_CHUNK_BYTES)}"}`;
      writeLines(files[0]!, all);
    });
    assertNames(report, segmentFiles(big)[0]!, [index + 1], /longer than any audit record/);
    assert.equal(report.firstBad!.offset, start);
    assert.equal(report.records, 10_002, 'every other record is read');
  });

  test('a huge corrupt segment (zeros after a crash) is named, and verify holds a small part of it in memory at a time', () => {
    const dir = join(root, 'zeros');
    mkdirSync(dir);
    const file = join(dir, 'audit-000001.jsonl');
    const header = `${readFileSync(segmentFiles(big)[0]!, 'utf8').split('\n')[0]!}\n`;
    writeFileSync(file, header);
    const size = 64 << 20;
    truncateSync(file, size);
    // In a child: its peak resident size before and after the check is this check's alone.
    const child = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { verifySpool } = await import(${JSON.stringify(new URL('../../src/audit/index.ts', import.meta.url).href)});
         const before = process.resourceUsage().maxRSS;
         const report = verifySpool(${JSON.stringify(dir)});
         console.log(JSON.stringify({ grewKiB: process.resourceUsage().maxRSS - before, firstBad: report.firstBad }));`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(child.status, 0, child.stderr);
    const { grewKiB, firstBad } = JSON.parse(child.stdout) as { grewKiB: number; firstBad: VerifyReport['firstBad'] };
    assert.deepEqual({ line: firstBad!.line, offset: firstBad!.offset }, { line: 2, offset: header.length });
    assert.match(firstBad!.problem, new RegExp(`ends inside a record \\(${size - header.length} bytes without a newline\\)`));
    assert.ok(grewKiB * 1024 < size / 8, `verify's peak memory grew ${Math.round(grewKiB / 1024)} MiB for a ${size >> 20} MiB segment`);
  });
});
