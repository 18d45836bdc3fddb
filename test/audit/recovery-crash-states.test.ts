import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import type { RecoveredSpool } from '../../src/audit/recovery.ts';
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

describe('a crash leaving a last segment far larger than the pieces recovery reads', () => {
  test('the start reads it in pieces: its memory does not grow with the segment, and it recovers exactly what it would from a small one (torn record named, numbering carried on, verify passes)', async (t) => {
    const live = tempSpool(t, 'live');
    // About 50 MiB in one segment (the default maxSegmentBytes is 64 MiB): 50 pieces of 1 MiB,
    // lines and seals crossing their boundaries.
    const audit = await createAuditRecorder({ dir: live, actor: ACTOR, writeJournal: false });
    const map = balances();
    audit.attach(map);
    for (let i = 0; i < 100_000; i++) {
      map.store(`acct-${i % 40}`, BigInt(1000 + i));
      map.load(`acct-${i % 40}`);
      if (i % 10_000 === 0) await audit.flush();
    }
    await audit.flush();
    const crashed = join(live, '..', 'crashed');
    cpSync(live, crashed, { recursive: true });
    rmSync(join(crashed, 'LOCK'));
    await audit.stop();
    const [file] = segmentFiles(crashed);
    const size = statSync(file!).size;
    assert.equal(segmentFiles(crashed).length, 1);
    assert.ok(size > 48 << 20, `${size} bytes`);
    const before = readSpool(crashed);
    const lastSeal = before.seals.at(-1)!;
    const readsDone = Math.max(...before.events.filter((e) => e.op_type === 'LOAD').map((e) => e.seq));
    const torn = '{"v":1,"seq":200003,"op_t';
    appendFileSync(file!, torn);

    // In a child: its peak resident size before and after recovery is recovery's alone.
    const probe = join(live, '..', 'probe');
    cpSync(crashed, probe, { recursive: true });
    const child = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { recoverSpool } = await import(${JSON.stringify(new URL('../../src/audit/recovery.ts', import.meta.url).href)});
         const before = process.resourceUsage().maxRSS;
         const recovered = recoverSpool(${JSON.stringify(probe)}, ${JSON.stringify(ACTOR)}, 'host/pid-2', null);
         console.log(JSON.stringify({ grewKiB: process.resourceUsage().maxRSS - before, recovered }));`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(child.status, 0, child.stderr);
    const { grewKiB, recovered } = JSON.parse(child.stdout) as { grewKiB: number; recovered: RecoveredSpool };
    // Reading the segment whole grew it by more than the segment (71 MiB for 66 MB); reading in
    // pieces ~7 MiB alone, up to 13 MiB beside other tests (when V8 collects varies): half the
    // segment tells the two apart without failing on that.
    assert.ok(grewKiB * 1024 < size / 2, `recovery's peak memory grew ${Math.round(grewKiB / 1024)} MiB for a ${size >> 20} MiB segment`);
    assert.deepEqual(recovered.chain, { segment: 1, seal: lastSeal.seal, prev: lastSeal.hash, sealedTo: lastSeal.to, lastSealReads: lastSeal.reads_through, lastSealWrites: lastSeal.writes_through });
    assert.equal(recovered.previous, 'crash');
    assert.equal(recovered.readsDone, readsDone);
    assert.deepEqual(recovered.gap?.torn, { segment: 1, offset: size, length: torn.length });
    assert.equal(recovered.gap?.from, readsDone + 1);

    // The real start on the same spool writes that gap, and the log verifies.
    await restartAndVerify(crashed);
    const gap = readSpool(crashed).events.find((e) => e.op_type === 'AUDIT_GAP');
    assert.deepEqual({ from: gap?.gap?.from, to: gap?.gap?.to, torn: gap?.gap?.torn }, recovered.gap);
  });
});
