import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import { balances, segmentFiles } from './helpers.ts';
import { spoolFixture } from './spool-fixture.ts';

/**
 * After a clean stop (AUDIT_STOPPED, then its seal) the recorder writes nothing until a restart,
 * whose first write-stream record is AUDIT_STARTED. A record appended after the sealed stop is
 * not sealed and no HEAD vouches for it, so before this check it passed verify as "a running
 * recorder's unsealed tail", with or without the HMAC key.
 */
const { root, writeSpool: write, copyOf } = spoolFixture('verify-stop');
const KEY = Buffer.from('a-32-byte-secret-for-the-chain!!');
process.env.GOVMAP_TEST_VERIFY_STOP_KEY = KEY.toString('utf8');
const plain = join(root, 'plain');
const keyed = join(root, 'keyed');
const writeSpool = (dir: string, extra: Record<string, unknown> = {}): Promise<void> => write(dir, { extra, iterations: 300, flushEvery: 0 });

/** A copy of a record of the spool with op `op`, given a new seq and value. */
function forged(dir: string, op: 'STORE' | 'LOAD', seq: number): string {
  const line = readFileSync(segmentFiles(dir)[0]!, 'utf8').split('\n').find((l) => l.includes(`"op_type":"${op}"`))!;
  return `${line.replace(/"seq":[0-9]+/, `"seq":${seq}`).replace(/"value":"[0-9]+"/, '"value":"99999999"')}\n`;
}

function lineCount(file: string): number {
  return readFileSync(file, 'utf8').split('\n').length - 1;
}

describe('verify: nothing may follow a sealed clean stop but a restart', () => {
  before(async () => {
    await writeSpool(plain);
    await writeSpool(keyed, { hmacKey: { env: 'GOVMAP_TEST_VERIFY_STOP_KEY' } });
  });

  test('the stopped spools verify', () => {
    assert.equal(verifySpool(plain).ok, true);
    const report = verifySpool(keyed, { key: KEY });
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
    assert.equal(report.closed, true);
  });

  for (const [name, source, key] of [
    ['without a key', plain, null],
    ['with the HMAC key', keyed, KEY],
  ] as const) {
    test(`a STORE appended after the clean stop fails ${name}, naming its line`, () => {
      const dir = copyOf(source);
      const last = segmentFiles(dir).at(-1)!;
      const lastSeq = verifySpool(dir, { key }).lastSeq!;
      appendFileSync(last, forged(dir, 'STORE', lastSeq + 1));
      const report = verifySpool(dir, { key });
      assert.equal(report.ok, false, 'a forged record after the stop must not pass');
      assert.equal(report.firstBad!.file, basename(last));
      assert.equal(report.firstBad!.line, lineCount(last));
      assert.equal(report.firstBad!.seq, lastSeq + 1);
      assert.match(report.firstBad!.problem, /^STORE seq [0-9]+ follows the clean stop \(AUDIT_STOPPED seq [0-9]+ at audit-[0-9]+\.jsonl:[0-9]+, sealed\) and is not the AUDIT_STARTED a restart writes first: it was appended after the recorder stopped$/);
      assert.ok(!report.notes.some((n) => /not sealed yet/.test(n)), `not excused as a running recorder's tail: ${report.notes.join('; ')}`);
    });
  }

  test('a read appended after the clean stop, with no AUDIT_STARTED anywhere after it, fails', () => {
    const dir = copyOf(plain);
    const last = segmentFiles(dir).at(-1)!;
    const lastSeq = verifySpool(dir).lastSeq!;
    appendFileSync(last, forged(dir, 'LOAD', lastSeq + 1));
    const report = verifySpool(dir);
    assert.equal(report.ok, false);
    assert.equal(report.firstBad!.line, lineCount(last));
    assert.match(report.firstBad!.problem, /^LOAD seq [0-9]+ follows the clean stop .* no AUDIT_STARTED of a restart comes before or after it/);
  });

  test('a copy of the SEGMENT header appended after the clean stop fails verify, as it makes the recorder refuse to start', async () => {
    // A header is not a record, so it passed as nothing at all; the restart refuses the spool
    // (GOVMAP_AUDIT_TAMPERED, "run govmap audit verify"), which must then not say OK.
    const dir = copyOf(keyed);
    const last = segmentFiles(dir).at(-1)!;
    appendFileSync(last, `${readFileSync(last, 'utf8').split('\n')[0]!}\n`);
    await assert.rejects(createAuditRecorder({ dir, actor: 'clearing/instance-1', hmacKey: { env: 'GOVMAP_TEST_VERIFY_STOP_KEY' } }), { code: 'GOVMAP_AUDIT_TAMPERED' });
    const report = verifySpool(dir, { key: KEY });
    assert.equal(report.ok, false, 'verify must fail where the recorder refuses');
    assert.equal(report.firstBad!.file, basename(last));
    assert.equal(report.firstBad!.line, lineCount(last));
    assert.match(report.firstBad!.problem, /^a SEGMENT header inside the segment/);
  });

  test('a restart after the clean stop verifies: its AUDIT_STARTED is what follows the stop', async () => {
    const dir = copyOf(plain);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', maxSegmentBytes: 65_536, sealBytes: 4096 });
    const map = balances();
    audit.attach(map);
    for (let i = 0; i < 50; i++) {
      map.store(`acct-${i}`, BigInt(i));
      map.load(`acct-${i}`);
    }
    await audit.stop();
    const report = verifySpool(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
  });

  test("a restarted recorder's reads may reach the log before its AUDIT_STARTED, which still waits in the write journal: a note", async () => {
    const dir = copyOf(plain);
    // A long commit interval: the worker moves journal frames (AUDIT_STARTED among them) only at
    // a commit or a flush, while it drains reads on every turn.
    const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', writeJournal: true, fsyncIntervalMs: 10_000, ringBytes: 1 << 16 });
    try {
      const map = balances();
      audit.attach(map);
      map.store('acct-1', 1n);
      const firstRead = audit.stats().nextSeq;
      const logged = (): string => segmentFiles(dir).map((f) => readFileSync(f, 'utf8')).join('');
      // The worker writes reads in batches of flushAt bytes between commits: keep reading until
      // one batch of this session's reads is in the file (how many that takes depends on the
      // records' sizes, and on how busy the machine is).
      const deadline = Date.now() + 20_000;
      while (!logged().includes(`{"v":1,"seq":${firstRead},`) && Date.now() < deadline) {
        for (let i = 0; i < 100; i++) map.load('acct-1');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.ok(logged().includes(`{"v":1,"seq":${firstRead},`), 'the reads reached the log');
      assert.ok(!logged().includes('"op_type":"AUDIT_STARTED"') || logged().lastIndexOf('"op_type":"AUDIT_STARTED"') < logged().lastIndexOf('"op_type":"AUDIT_STOPPED"'), "the restart's AUDIT_STARTED is not in the log yet");
      const report = verifySpool(dir);
      assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
      assert.ok(report.notes.some((n) => /precede the restart's AUDIT_STARTED \(seq [0-9]+\), which is still in the write journal/.test(n)), report.notes.join('; '));
    } finally {
      await audit.stop();
    }
    const report = verifySpool(dir);
    assert.equal(report.ok, true, `stopped again: ${JSON.stringify(report.problems.slice(0, 2))}`);
  });
});
