import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import { createAuditRecorder } from '../../src/audit/index.ts';
import { GovMapError } from '../../src/map/index.ts';
import { segmentName } from '../../src/audit/spool.ts';
import { tailSpool } from '../../src/audit/tail.ts';
import { balances, segmentFiles, tempSpool } from './helpers.ts';

const until = async (done: () => boolean, ms: number): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
};

/**
 * `govmap audit tail -f` reads whatever the file holds at each poll; a record being appended can
 * end a poll in the middle of a multi-byte UTF-8 character (a key with "€"). Decoding each poll's
 * bytes alone turned both halves into U+FFFD.
 */
test('tail -f prints a record whose multi-byte character is split across two polls intact', async (t) => {
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: false });
  const map = balances();
  audit.attach(map);
  map.store('acct-1', 1n);
  map.store('compte-€-été', 2n);
  await audit.stop();

  // Take the record back off the end of the file, then append it again in two parts, split
  // inside "€" (3 bytes in UTF-8), while tail follows the file.
  const file = segmentFiles(dir).at(-1)!;
  const bytes = readFileSync(file);
  const lineStart = bytes.lastIndexOf(10, bytes.indexOf('compte-')) + 1;
  assert.ok(lineStart > 0);
  const lineEnd = bytes.indexOf(10, lineStart);
  const record = bytes.subarray(lineStart, lineEnd).toString('utf8');
  const tailBytes = Buffer.from(bytes.subarray(lineStart));
  truncateSync(file, lineStart);
  const euro = tailBytes.indexOf(Buffer.from('€'));
  assert.ok(euro > 0, 'the record holds the key as UTF-8, "€" as three bytes');
  const split = euro + 1;

  const printed: string[] = [];
  const controller = new AbortController();
  const following = tailSpool(dir, { lines: 0, follow: true, pollMs: 5, signal: controller.signal, write: (line) => printed.push(line) });
  try {
    await new Promise((resolve) => setTimeout(resolve, 50));
    appendFileSync(file, tailBytes.subarray(0, split));
    // Several polls read the first part alone.
    await new Promise((resolve) => setTimeout(resolve, 60));
    appendFileSync(file, tailBytes.subarray(split));
    await until(() => printed.includes(record), 5000);
  } finally {
    controller.abort();
    await following;
  }
  assert.ok(printed.includes(record), `the record as stored:\n${record}\nprinted:\n${printed.join('\n')}`);
  assert.ok(!printed.some((line) => line.includes('\uFFFD')), 'no replacement characters');
});

/**
 * `govmap audit tail -f` started while the recorder is appending a record: the file ends inside
 * that record. The initial tail printed the half already there as a line, and following printed
 * the rest as another: two broken lines for one record (jq fails on both).
 */
test('tail -f started while a record is being appended prints it once, whole', async (t) => {
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: false });
  const map = balances();
  audit.attach(map);
  map.store('acct-1', 1n);
  map.store('acct-2', 2n);
  await audit.stop();

  // Cut the file inside the last record, as a read racing the recorder's write sees it.
  const file = segmentFiles(dir).at(-1)!;
  const bytes = readFileSync(file);
  const lineStart = bytes.lastIndexOf(10, bytes.indexOf('acct-2')) + 1;
  const lineEnd = bytes.indexOf(10, lineStart);
  const record = bytes.subarray(lineStart, lineEnd).toString('utf8');
  const rest = Buffer.from(bytes.subarray(lineStart + 20));
  truncateSync(file, lineStart + 20);

  const printed: string[] = [];
  const controller = new AbortController();
  const following = tailSpool(dir, { lines: 5, follow: true, pollMs: 5, signal: controller.signal, write: (line) => printed.push(line) });
  try {
    await new Promise((resolve) => setTimeout(resolve, 50));
    appendFileSync(file, rest);
    await until(() => printed.includes(record), 2000);
  } finally {
    controller.abort();
    await following;
  }
  assert.ok(printed.includes(record), `the record as stored:\n${record}\nprinted:\n${printed.join('\n')}`);
  for (const line of printed) assert.doesNotThrow(() => JSON.parse(line), `a broken line was printed: ${line}`);
});

test('tail -f polling for a long time leaves no listener behind on its signal: they do not pile up while it follows', async (t) => {
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/tail-test' });
  await audit.stop();
  const controller = new AbortController();
  const following = tailSpool(dir, { lines: 0, follow: true, pollMs: 2, signal: controller.signal, write: () => undefined });
  // Some 100 polls: each added an abort listener that stayed until the signal aborted (hours of
  // `govmap audit tail -f`: one more every 200 ms).
  await new Promise((resolve) => setTimeout(resolve, 400));
  const listeners = getEventListeners(controller.signal, 'abort').length;
  controller.abort();
  await following;
  assert.ok(listeners <= 1, `${listeners} abort listeners on the signal after ~100 polls`);
});

/**
 * `govmap audit tail -f <segment>`: the docs promise it moves to the next segment once the current
 * one is sealed final, for a directory or a segment. Given a segment, it looked for the next one
 * nowhere and went on polling the rotated file, printing nothing more.
 */
test('tail -f given a segment file follows the rotation into the next segment', async (t) => {
  const dir = tempSpool(t);
  const options = { dir, actor: 'clearing/instance-1', maxSegmentBytes: 65_536, writeJournal: false };
  const first = await createAuditRecorder(options);
  first.attach(balances());
  await first.stop();
  const [segment] = segmentFiles(dir);

  const printed: string[] = [];
  const controller = new AbortController();
  const following = tailSpool(segment!, { lines: 0, follow: true, pollMs: 5, signal: controller.signal, write: (line) => printed.push(line) });
  try {
    const audit = await createAuditRecorder(options);
    const map = balances();
    audit.attach(map);
    // Committed every 50: the segment rotates at a commit that finds it full, so the records
    // after that commit go to the next segment.
    for (let i = 0; i < 400; i++) {
      map.store(`followed-${i}`, 1n);
      if (i % 50 === 49) await audit.flush();
    }
    await audit.stop();
    const files = segmentFiles(dir);
    assert.ok(files.length > 1 && readFileSync(files.at(-1)!, 'utf8').includes('"followed-399"'), 'the last records are in a later segment');
    await until(() => printed.some((line) => line.includes('"followed-399"')), 5000);
  } finally {
    controller.abort();
    await following;
  }
  assert.equal(printed.filter((line) => line.includes('"followed-')).length, 400, 'every record, in the segment given and the ones after it');
});

/**
 * Rotation was noticed only from a final seal read by a poll of the follow loop. A segment whose
 * final seal was already there when `tail -f` started (an older segment given, or a rotation
 * between listing the directory and reading the newest file) was followed forever, printing
 * nothing of the segments after it.
 */
test('tail -f given a segment already sealed final prints the segments after it, then what is appended', async (t) => {
  const dir = tempSpool(t);
  const options = { dir, actor: 'clearing/instance-1', maxSegmentBytes: 65_536, writeJournal: false };
  const audit = await createAuditRecorder(options);
  const map = balances();
  audit.attach(map);
  for (let i = 0; i < 400; i++) {
    map.store(`before-${i}`, 1n);
    if (i % 50 === 49) await audit.flush();
  }
  await audit.stop();
  const files = segmentFiles(dir);
  assert.ok(files.length > 1, 'the writes rotated segments');

  const printed: string[] = [];
  const controller = new AbortController();
  const following = tailSpool(files[0]!, { lines: 0, follow: true, pollMs: 5, signal: controller.signal, write: (line) => printed.push(line) });
  try {
    await until(() => printed.some((line) => line.includes('"before-399"')), 3000);
    const again = await createAuditRecorder(options);
    again.attach(map);
    map.store('after-restart', 1n);
    await again.stop();
    await until(() => printed.some((line) => line.includes('"after-restart"')), 3000);
  } finally {
    controller.abort();
    await following;
  }
  const inFirst = readFileSync(files[0]!, 'utf8').split('\n').filter((line) => line.includes('"before-')).length;
  assert.equal(printed.filter((line) => line.includes('"before-')).length, 400 - inFirst, 'every record of the segments after the one given');
  assert.equal(printed.filter((line) => line.includes('"after-restart"')).length, 1, 'and the record written after them');
});

/**
 * Without -f, the newest segment was printed up to its last byte: a record the recorder was still
 * appending (or a crash's torn tail, not yet recovered) came out as a broken line, and
 * `govmap audit tail dir | jq .` failed on it. Following already held such a line back.
 */
test('tail without -f while a record is being appended prints only whole records', async (t) => {
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: false });
  const map = balances();
  audit.attach(map);
  map.store('acct-1', 1n);
  map.store('acct-2', 2n);
  await audit.stop();
  const file = segmentFiles(dir).at(-1)!;
  appendFileSync(file, '{"v":1,"seq":99,"op_type":"LO');

  const printed: string[] = [];
  await tailSpool(dir, { lines: 3, write: (line) => printed.push(line) });
  assert.equal(printed.length, 3, printed.join('\n'));
  for (const line of printed) assert.doesNotThrow(() => JSON.parse(line), `a broken line was printed: ${line}`);
  assert.equal((JSON.parse(printed.at(-1)!) as { op_type: string }).op_type, 'AUDIT_STOPPED', 'the last whole record');
});

/** A synthetic segment of `count` record lines (tail prints lines as stored; it does not verify). */
function recordLines(count: number, firstSeq = 1): string {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`{"v":1,"seq":${firstSeq + i},"op_type":"LOAD","map":"balances","resource_id":"acct-${i}"}`);
  return `${lines.join('\n')}\n`;
}

/**
 * `govmap audit tail -n` takes up to 1,000,000 records, and an investigation does ask for that
 * many: past ~120,000 lines tail threw "Maximum call stack size exceeded" (the lines were spread
 * into one call) and printed nothing.
 */
test('tail -n 220000 prints the last 220,000 records of a spool, in order', async (t) => {
  const dir = tempSpool(t);
  mkdirSync(dir);
  writeFileSync(join(dir, segmentName(1)), recordLines(50_000));
  writeFileSync(join(dir, segmentName(2)), recordLines(200_000, 50_001));
  const printed: string[] = [];
  await tailSpool(dir, { lines: 220_000, write: (line) => printed.push(line) });
  assert.equal(printed.length, 220_000);
  assert.match(printed[0]!, /"seq":30001,/, 'starts 220,000 records from the end, in the older segment');
  assert.match(printed.at(-1)!, /"seq":250000,/);
  for (let i = 1; i < printed.length; i += 9973) assert.match(printed[i]!, new RegExp(`"seq":${30_001 + i},`), `line ${i} in order`);
});

/**
 * A segment may be configured up to 2 GiB (maxSegmentBytes). tail read every segment it printed
 * from whole and decoded it into one string: past V8's longest string (~512 MiB) it failed with
 * "Cannot create a string longer than ...", and below that it held the segment several times
 * over in memory to print ten lines. It now reads the end of the file, backwards, in pieces.
 */
test('tail of a segment larger than the longest JavaScript string prints its last records', async (t) => {
  const dir = tempSpool(t);
  mkdirSync(dir);
  const file = join(dir, segmentName(1));
  // Sparse: 600 MiB of file, next to no disk. The records sit at its end, as in a full segment.
  writeFileSync(file, '');
  truncateSync(file, 600 * 1024 * 1024);
  appendFileSync(file, `\n${recordLines(3)}`);
  for (const follow of [false, true]) {
    const printed: string[] = [];
    const controller = new AbortController();
    const done = tailSpool(dir, { lines: 2, follow, pollMs: 5, signal: controller.signal, write: (line) => printed.push(line) });
    if (follow) {
      await until(() => printed.length === 2, 5_000);
      appendFileSync(file, recordLines(1, 4));
      await until(() => printed.length === 3, 5_000);
      controller.abort();
    }
    await done;
    assert.deepEqual(printed.map((line) => (JSON.parse(line) as { seq: number }).seq), follow ? [2, 3, 4] : [2, 3], follow ? 'followed' : 'not followed');
  }
});

test('tail -f with pollMs past the longest timer Node holds, 0, negative or NaN: refused at once (GOVMAP_AUDIT_INVALID_CONFIGURATION naming pollMs), not a poll every millisecond', async (t) => {
  const dir = tempSpool(t);
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: false });
  await audit.stop();
  for (const pollMs of [2 ** 31, Number.POSITIVE_INFINITY, 0, -5, Number.NaN]) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 300);
    await assert.rejects(tailSpool(dir, { lines: 0, follow: true, pollMs, signal: controller.signal, write: () => undefined }), (error: Error & { code?: string; details?: { option?: string } }) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_INVALID_CONFIGURATION', `pollMs ${pollMs}: ${error.message}`);
      assert.equal(error.details?.option, 'pollMs');
      return true;
    }, `pollMs ${pollMs}`);
    clearTimeout(timer);
  }
});

test('tail of a path it cannot use (not there, no segments, only compressed segments, a segment that cannot be opened, a compressed segment given alone) is a GovMapError with code GOVMAP_AUDIT_SPOOL_PATH naming the path and why', async (t) => {
  const root = tempSpool(t);
  mkdirSync(root, { recursive: true });
  const empty = join(root, 'empty');
  mkdirSync(empty);
  const compressedOnly = join(root, 'compressed');
  mkdirSync(compressedOnly);
  writeFileSync(join(compressedOnly, 'audit-000001.jsonl.gz'), gzipSync('{"v":1}\n'));
  // Root reads any file whatever its mode: a symlink loop is a segment no one can open.
  const loop = join(root, 'loop');
  mkdirSync(loop);
  symlinkSync('audit-000001.jsonl', join(loop, 'audit-000001.jsonl'));
  for (const [path, why] of [
    [join(root, 'missing'), /no such file or directory/],
    [empty, /no audit segments \(audit-NNNNNN\.jsonl\)/],
    [compressedOnly, /found audit-000001\.jsonl\.gz: decompress it/],
    [loop, /audit-000001\.jsonl: cannot be opened \(ELOOP\)/],
    [join(compressedOnly, 'audit-000001.jsonl.gz'), /a compressed segment: decompress it \(to audit-000001\.jsonl\)/],
  ] as const) {
    const written: string[] = [];
    await assert.rejects(tailSpool(path, { write: (line) => written.push(line) }), (error: Error & { code?: string; details?: { path?: string } }) => {
      assert.ok(error instanceof GovMapError, `${path}: a GovMapError, not a plain ${error.constructor.name}: ${error.message}`);
      assert.equal(error.code, 'GOVMAP_AUDIT_SPOOL_PATH', error.message);
      assert.match(error.message, why);
      assert.ok(error.message.includes(path), `the message names ${path}: ${error.message}`);
      return true;
    }, path);
    assert.deepEqual(written, [], `nothing printed for ${path} (a compressed segment's bytes are not records)`);
  }
});

/**
 * Each poll opens the segment by its name and reads from the offset reached in the file that had
 * it before. A spool wiped and started again (a redeploy, a demo reset) puts a new, shorter
 * audit-000001.jsonl there: tail -f printed nothing more, for good.
 */
test('tail -f of a spool removed and started again under the same path: says so and prints the new spool\'s records, whole', async (t) => {
  const dir = tempSpool(t);
  const options = { dir, actor: 'clearing/instance-1', writeJournal: false };
  const old = await createAuditRecorder(options);
  const oldMap = balances();
  old.attach(oldMap);
  for (let i = 0; i < 300; i++) oldMap.store(`old-${i}`, BigInt(i));
  await old.stop();

  const printed: string[] = [];
  const said: string[] = [];
  const controller = new AbortController();
  const following = tailSpool(dir, { lines: 0, follow: true, pollMs: 5, signal: controller.signal, write: (line) => printed.push(line), onWait: (message) => said.push(message) });
  try {
    await new Promise((resolve) => setTimeout(resolve, 50));
    rmSync(dir, { recursive: true });
    const audit = await createAuditRecorder(options);
    const map = balances();
    audit.attach(map);
    for (let i = 0; i < 5; i++) map.store(`fresh-${i}`, 1n);
    await audit.stop();
    await until(() => printed.some((line) => line.includes('"fresh-4"')), 3000);
  } finally {
    controller.abort();
    await following;
  }
  assert.equal(printed.filter((line) => line.includes('"fresh-')).length, 5, `the new spool's records: ${printed.length} lines printed`);
  for (const line of printed) assert.doesNotThrow(() => JSON.parse(line), `a whole record, not the middle of one: ${line.slice(0, 80)}`);
  assert.ok(said.some((message) => /audit-000001\.jsonl.*replaced or truncated/.test(message)), `said on the side: ${said.join(' | ')}`);
});
