import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, truncateSync } from 'node:fs';
import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import { createAuditRecorder } from '../../src/audit/index.ts';
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
