import assert from 'node:assert/strict';
import { appendFileSync, cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import { balances, readSpool, segmentFiles, tempSpool } from './helpers.ts';

const ACTOR = 'clearing/instance-1';

/**
 * What a SIGKILL leaves of an idle recorder: a copy of its spool (one segment, sealed and
 * fsynced up to a commit) taken while it runs, without its LOCK.
 */
async function crashedSpool(t: { after(fn: () => void): void }): Promise<string> {
  const live = tempSpool(t, 'live');
  const audit = await createAuditRecorder({ dir: live, actor: ACTOR, writeJournal: false, sealBytes: 4096 });
  const map = balances();
  audit.attach(map);
  for (let i = 0; i < 200; i++) {
    map.store(`acct-${i % 40}`, BigInt(1000 + i));
    map.load(`acct-${i % 40}`);
  }
  await audit.flush();
  const dir = join(live, '..', 'crashed');
  cpSync(live, dir, { recursive: true });
  rmSync(join(dir, 'LOCK'));
  await audit.stop();
  assert.equal(segmentFiles(dir).length, 1);
  return dir;
}

const header = (segment: number): string => `{"v":1,"type":"SEGMENT","segment":${segment},"actor":"${ACTOR}","origin":"host/pid-1","timestamp":"1732600000123456789"}\n`;

async function restartAndVerify(dir: string): Promise<void> {
  const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: false });
  await audit.stop();
  const report = verifySpool(dir);
  assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 3)));
}

describe('a crash in the middle of a rotation', () => {
  test('the old segment\'s final seal torn by the kill: recovery terminates and names it, seals the segment final, and verify passes', async (t) => {
    const dir = await crashedSpool(t);
    const [first] = segmentFiles(dir);
    const tornAt = readFileSync(first!).length;
    // The rotation had written the new segment's header and moved the writers to it, and was
    // appending the old segment's final seal when the process died.
    appendFileSync(first!, '{"v":1,"type":"SEAL","seal":');
    writeFileSync(join(dir, 'audit-000002.jsonl'), header(2));
    await restartAndVerify(dir);
    const gap = readSpool(dir).events.find((e) => e.op_type === 'AUDIT_GAP');
    assert.deepEqual(gap?.gap?.torn, { segment: 1, offset: tornAt, length: 28 }, 'the torn seal bytes are named');
  });

  for (const [name, tail] of [
    ['torn', '{"v":1,"type":"SEGM'],
    ['zeros after a power loss', '\0'.repeat(150)],
  ] as const) {
    test(`the new segment's header ${name}: recovery writes the header anew, and verify passes`, async (t) => {
      const dir = await crashedSpool(t);
      writeFileSync(join(dir, 'audit-000002.jsonl'), tail);
      await restartAndVerify(dir);
      assert.match(readFileSync(join(dir, 'audit-000002.jsonl'), 'utf8'), /^\{"v":1,"type":"SEGMENT","segment":2,/);
    });
  }
});
