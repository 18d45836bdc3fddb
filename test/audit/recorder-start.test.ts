import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import type { AuditRecorderOptions } from '../../src/audit/index.ts';
import { JOURNAL_FILE, openJournal } from '../../src/audit/journal.ts';
import { balances, bySeq, readSpool, segmentFiles, tempSpool } from './helpers.ts';
import type { GovMapError } from '../../src/map/errors.ts';

const ACTOR = 'clearing/instance-1';

/** A spool with a few records, stopped cleanly. */
async function stoppedSpool(dir: string, extra: Partial<AuditRecorderOptions> = {}): Promise<void> {
  const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: false, ...extra });
  const map = balances();
  audit.attach(map);
  for (let i = 0; i < 20; i++) {
    map.store(`acct-${i}`, BigInt(i));
    map.load(`acct-${i}`);
  }
  await audit.stop();
}

/** Size of every file in the spool: a refused start must leave it exactly as it was. */
function snapshot(dir: string): Record<string, number> {
  return Object.fromEntries(segmentFiles(dir).map((f) => [f, statSync(f).size]));
}

describe('a spool directory that cannot be used', () => {
  test('a file, or a path under a file: GOVMAP_AUDIT_SPOOL_DIRECTORY naming the option dir, the path and the errno', async (t) => {
    const root = tempSpool(t, 'root');
    mkdirSync(root, { recursive: true });
    const file = join(root, 'not-a-dir');
    writeFileSync(file, 'x');
    await assert.rejects(createAuditRecorder({ dir: file, actor: ACTOR }), (error: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_SPOOL_DIRECTORY');
      assert.match(error.message, /audit option "dir": cannot use ".*not-a-dir" as the spool directory: it exists and is not a directory \(EEXIST\)/);
      assert.equal(error.details?.option, 'dir');
      assert.equal(error.details?.errno, 'EEXIST');
      return true;
    });
    await assert.rejects(createAuditRecorder({ dir: join(file, 'spool'), actor: ACTOR }), (error: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_SPOOL_DIRECTORY');
      assert.match(error.message, /not-a-dir\/spool" as the spool directory: a part of the path is a file, not a directory \(ENOTDIR/);
      assert.equal(error.details?.errno, 'ENOTDIR');
      return true;
    });
  });

  test('a directory this process may not write: EACCES, typed', async (t) => {
    const dir = tempSpool(t);
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o500);
    // (tempSpool's own cleanup may have run first: root removes the directory whatever its mode.)
    t.after(() => existsSync(dir) && chmodSync(dir, 0o700));
    if (process.getuid?.() !== 0) {
      await assert.rejects(createAuditRecorder({ dir, actor: ACTOR }), { code: 'GOVMAP_AUDIT_SPOOL_DIRECTORY', message: /permission denied \(EACCES/ });
      return;
    }
    // Permission bits do not stop root: start the recorder in a child running as nobody.
    chmodSync(join(dir, '..'), 0o755);
    const recorder = new URL('../../src/audit/index.ts', import.meta.url).href;
    const script = `import { createAuditRecorder } from ${JSON.stringify(recorder)};
try { await createAuditRecorder({ dir: ${JSON.stringify(dir)}, actor: 'clearing/instance-1' }); console.log('{}'); }
catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await new Promise((resolve) => child.on('close', resolve));
    const error = JSON.parse(out) as { code?: string; message?: string };
    assert.equal(error.code, 'GOVMAP_AUDIT_SPOOL_DIRECTORY', out);
    assert.match(error.message ?? '', /permission denied \(EACCES/);
  });
});

describe('option values JSON cannot show', () => {
  test('NaN and Infinity are reported as such, not as null', async (t) => {
    const dir = tempSpool(t);
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, fsyncIntervalMs: Number.NaN }), (error: Error) => {
      assert.match(error.message, /"fsyncIntervalMs".*\(received NaN\)$/);
      return true;
    });
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, sealBytes: Number.POSITIVE_INFINITY }), { message: /"sealBytes".*\(received Infinity\)$/ });
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, maxWaitMs: Number.NEGATIVE_INFINITY }), { message: /"maxWaitMs".*\(received -Infinity\)$/ });
  });
});

describe('a misspelt option', () => {
  // zod's strict object named the whole options object ("options", received with every value in
  // it), not the key: details.option could not point at the typo, and no spelling was suggested.
  test('is named itself (details.option), with the option it resembles, and nothing is created', async (t) => {
    const dir = tempSpool(t);
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, fsyncIntervalMS: 5 } as unknown as AuditRecorderOptions), (error: GovMapError) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_INVALID_CONFIGURATION');
      assert.equal((error.details as { option: string }).option, 'fsyncIntervalMS');
      assert.equal(error.message, 'invalid audit option "fsyncIntervalMS": is not an option of createAuditRecorder; did you mean "fsyncIntervalMs"?');
      return true;
    });
    assert.equal(existsSync(dir), false, 'refused before the spool directory is made');
  });
});

describe('a restart with another hmacKey', () => {
  const KEY_A = 'GOVMAP_TEST_RESTART_KEY_A';
  const KEY_B = 'GOVMAP_TEST_RESTART_KEY_B';
  process.env[KEY_A] = 'key-a-0123456789abcdef';
  process.env[KEY_B] = 'key-b-0123456789abcdef';

  test('is refused (GOVMAP_AUDIT_INVALID_CONFIGURATION naming hmacKey and what the spool expects), and the spool is left untouched', async (t) => {
    const keyed = tempSpool(t, 'keyed');
    await stoppedSpool(keyed, { hmacKey: { env: KEY_A } });
    const before = snapshot(keyed);
    await assert.rejects(createAuditRecorder({ dir: keyed, actor: ACTOR, writeJournal: false, hmacKey: { env: KEY_B } }), {
      code: 'GOVMAP_AUDIT_INVALID_CONFIGURATION',
      message: /"hmacKey": the spool ".*keyed" is chained with HMAC-SHA256 and its last seal \(seal [0-9]+ of audit-000001\.jsonl\) does not verify with this key/,
    });
    await assert.rejects(createAuditRecorder({ dir: keyed, actor: ACTOR, writeJournal: false }), {
      code: 'GOVMAP_AUDIT_INVALID_CONFIGURATION',
      message: /"hmacKey": the spool ".*keyed" is chained with HMAC-SHA256 \(seal [0-9]+ of audit-000001\.jsonl\): start with the hmacKey it was written with/,
    });
    assert.deepEqual(snapshot(keyed), before);

    const plain = tempSpool(t, 'plain');
    await stoppedSpool(plain);
    await assert.rejects(createAuditRecorder({ dir: plain, actor: ACTOR, writeJournal: false, hmacKey: { env: KEY_A } }), {
      code: 'GOVMAP_AUDIT_INVALID_CONFIGURATION',
      message: /"hmacKey": the spool ".*plain" is chained with plain SHA-256 .*not HMAC: start without hmacKey/,
    });

    // The right key (and no key for a plain spool) carries on, and the chain verifies under it.
    await stoppedSpool(keyed, { hmacKey: { env: KEY_A } });
    const report = verifySpool(keyed, { key: new Uint8Array(Buffer.from(process.env[KEY_A]!)) });
    assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
    await stoppedSpool(plain);
    assert.equal(verifySpool(plain).ok, true);
  });
});

describe('records added to a cleanly stopped spool', () => {
  const forged = (seq: number): string =>
    `{"v":1,"seq":${seq},"op_type":"STORE","map":"balances","resource_id":"acct-666","trace_id":null,"span_id":null,"range_bounds":null,"timestamp":"1732600000123456789","outcome":"ok","reason":null,"actor":"${ACTOR}","origin":"host/pid-1","value":"1000000"}\n`;
  const lastSeq = (dir: string): number => Math.max(...readSpool(dir).events.map((e) => e.seq));

  test('appended to the last segment: the start is refused (GOVMAP_AUDIT_TAMPERED naming the file and byte), nothing is sealed', async (t) => {
    const dir = tempSpool(t);
    await stoppedSpool(dir);
    const [segment] = segmentFiles(dir);
    const offset = statSync(segment!).size;
    appendFileSync(segment!, forged(lastSeq(dir) + 1));
    const before = snapshot(dir);
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, writeJournal: false }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_TAMPERED');
      assert.ok(error.message.includes(`${segment!} at byte ${offset}`), error.message);
      assert.match(error.message, /a STORE record \(seq [0-9]+\) after the seal of a clean stop \(AUDIT_STOPPED, seq [0-9]+\); only the next start's AUDIT_STARTED \(seq [0-9]+\) and its reads may follow it/);
      assert.match(error.message, /govmap audit verify /);
      return true;
    });
    assert.deepEqual(snapshot(dir), before, 'the forged record was not sealed into the chain');
    assert.equal(existsSync(join(dir, 'LOCK')), false, 'the lock is released');
  });

  test('slipped in before the stop\'s seal line, past the bytes that seal covers: refused too, nothing is sealed', async (t) => {
    // The record stands before the last seal's line, so it looked like the last record before
    // the seal: the start took the log for a crash's and sealed the record into its chain.
    const dir = tempSpool(t);
    await stoppedSpool(dir);
    const [segment] = segmentFiles(dir);
    const text = readFileSync(segment!, 'utf8');
    const sealAt = text.lastIndexOf('{"v":1,"type":"SEAL"');
    writeFileSync(segment!, `${text.slice(0, sealAt)}${forged(lastSeq(dir) + 1)}${text.slice(sealAt)}`);
    const before = snapshot(dir);
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, writeJournal: false }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_TAMPERED');
      assert.ok(error.message.includes(`${segment!} at byte ${sealAt}`), error.message);
      assert.match(error.message, /between the end of the range the clean stop's seal covers .* and that seal's line/);
      return true;
    });
    assert.deepEqual(snapshot(dir), before, 'the forged record was not sealed into the chain');
  });

  test('a FIFO under the next segment\'s name: the start is refused (GOVMAP_AUDIT_TAMPERED naming it), it does not wait for a writer', async (t) => {
    const dir = tempSpool(t);
    await stoppedSpool(dir);
    const fifo = join(dir, 'audit-000002.jsonl');
    execFileSync('mkfifo', [fifo]);
    // In a child: reading the FIFO blocked the start (and this process) until something wrote to it.
    const recorder = new URL('../../src/audit/index.ts', import.meta.url).href;
    const script = `import { createAuditRecorder } from ${JSON.stringify(recorder)};
try { const a = await createAuditRecorder({ dir: ${JSON.stringify(dir)}, actor: 'clearing/instance-1', writeJournal: false }); await a.stop(); console.log('{}'); }
catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000, killSignal: 'SIGKILL', encoding: 'utf8' });
    const error = JSON.parse(out) as { code?: string; message?: string };
    assert.equal(error.code, 'GOVMAP_AUDIT_TAMPERED', out);
    assert.ok(error.message!.includes(`${fifo} at byte 0: audit-000002.jsonl is a FIFO (named pipe), not a regular file`), error.message);
  });

  test('in a new segment after the stopped one, or as frames in the write journal: refused too', async (t) => {
    const dir = tempSpool(t, 'segment');
    await stoppedSpool(dir);
    const extra = join(dir, 'audit-000002.jsonl');
    writeFileSync(extra, `{"v":1,"type":"SEGMENT","segment":2,"actor":"${ACTOR}","origin":"host/pid-1","timestamp":"1732600000123456789"}\n${forged(lastSeq(dir) + 1)}`);
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, writeJournal: false }), { code: 'GOVMAP_AUDIT_TAMPERED', message: /audit-000002\.jsonl at byte [0-9]+/ });

    const journaled = tempSpool(t, 'journal');
    await stoppedSpool(journaled, { writeJournal: true });
    const journal = await openJournal(journaled, 1 << 16);
    const bytes = Buffer.from(forged(lastSeq(journaled) + 1));
    assert.ok(journal.tryAppend(64, 64, bytes, 0, bytes.length, lastSeq(journaled) + 1) > 0);
    journal.unmap();
    const before = snapshot(journaled);
    await assert.rejects(createAuditRecorder({ dir: journaled, actor: ACTOR, writeJournal: true }), { code: 'GOVMAP_AUDIT_TAMPERED', message: /JOURNAL at byte 0: the write journal holds a record \(seq [0-9]+\) after a clean stop/ });
    assert.deepEqual(snapshot(journaled), before);
  });

  /**
   * A second session on the stopped spool that dies (SIGKILL) before its first seal: nothing
   * commits for 10 s. With `reads`, it first waits until the worker has appended reads: with the
   * journal, they reach the log before its AUDIT_STARTED, which waits in the journal (a small ring
   * wakes the worker for them; frames move only at a commit).
   */
  async function crashedSecondSession(dir: string, journal: boolean, reads: boolean): Promise<void> {
    const code = `
      import { createAuditRecorder } from ${JSON.stringify(new URL('../../src/audit/index.ts', import.meta.url).href)};
      import { GovernedMap } from ${JSON.stringify(new URL('../../src/map/index.ts', import.meta.url).href)};
      const audit = await createAuditRecorder({ dir: ${JSON.stringify(dir)}, actor: ${JSON.stringify(ACTOR)}, writeJournal: ${journal}, fsyncIntervalMs: 10000, sealBytes: 1 << 24, ringBytes: 1 << 16 });
      audit.recordSinkEvent('SINK_FAILED', 'TEST', 'a write record of the second session');
      if (${reads}) {
        const map = new GovernedMap({ name: 'balances', validate: () => true });
        audit.attach(map);
        for (let i = 0; i < 500; i++) map.load('acct-' + i);
        await Promise.resolve();
        while (audit.stats().drained === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      process.kill(process.pid, 'SIGKILL');
    `;
    const script = join(dir, '..', 'second-session.mjs');
    writeFileSync(script, code);
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'inherit', 'inherit'] });
      child.on('error', reject);
      child.on('exit', (exitCode, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the second session exited on its own (${signal ?? exitCode})`))));
    });
  }

  for (const [path, reads] of [['direct', false], ['journal', false], ['journal', true]] as const) {
    test(`the next session's own records (${path === 'direct' ? 'write(2)' : 'write journal'}${reads ? ', its reads in the log before its AUDIT_STARTED' : ''}), left unsealed by a crash, are recovered as before`, async (t) => {
      const dir = tempSpool(t);
      await stoppedSpool(dir);
      const stopped = lastSeq(dir);
      await crashedSecondSession(dir, path === 'journal', reads);
      if (reads) {
        const lines = readFileSync(segmentFiles(dir)[0]!, 'utf8').split('\n');
        const stop = lines.findIndex((line) => line.includes('"op_type":"AUDIT_STOPPED"'));
        assert.match(lines[stop + 2]!, /"op_type":"LOAD"/, 'the case under test: after the stop and its seal, reads of the second session come first');
      }
      const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: path === 'journal' });
      await audit.stop();
      const report = verifySpool(dir);
      assert.equal(report.ok, true, JSON.stringify(report.problems.slice(0, 2)));
      const ops = bySeq(readSpool(dir).events)
        .filter((e) => e.seq > stopped && e.op_type !== 'LOAD' && e.op_type !== 'MAP_ATTACHED')
        .map((e) => `${e.op_type}${e.reason === null ? '' : `:${e.reason}`}`);
      assert.deepEqual(ops, ['AUDIT_STARTED', 'SINK_FAILED:TEST', 'AUDIT_STARTED:RECOVERED_AFTER_CRASH', 'AUDIT_GAP:CRASH', 'AUDIT_STOPPED']);
    });
  }

  test('reads appended after a clean stop without the AUDIT_STARTED of a start before them: refused', async (t) => {
    const dir = tempSpool(t);
    await stoppedSpool(dir);
    const [segment] = segmentFiles(dir);
    const seq = lastSeq(dir) + 2;
    appendFileSync(segment!, forged(seq).replace('"op_type":"STORE"', '"op_type":"LOAD"').replace(',"value":"1000000"', ''));
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, writeJournal: true }), {
      code: 'GOVMAP_AUDIT_TAMPERED',
      message: /reads follow the seal of a clean stop, but the next start's AUDIT_STARTED \(seq [0-9]+\) is neither before them nor in the write journal/,
    });
  });

  test('a torn beginning of the next AUDIT_STARTED, or zeros a power loss left, are a crash, not tampering', async (t) => {
    for (const [name, tail] of [
      ['torn', (seq: number) => `{"v":1,"seq":${seq},"op_type":"AUDIT_STA`],
      ['zeros', () => '\0'.repeat(300)],
    ] as const) {
      const dir = tempSpool(t, name);
      await stoppedSpool(dir);
      appendFileSync(segmentFiles(dir)[0]!, tail(lastSeq(dir) + 1));
      const audit = await createAuditRecorder({ dir, actor: ACTOR, writeJournal: false });
      await audit.stop();
      const gap = readSpool(dir).events.find((e) => e.op_type === 'AUDIT_GAP');
      assert.ok(gap?.gap?.torn !== undefined && gap.gap.torn !== null, `${name}: the torn bytes are named`);
      const report = verifySpool(dir);
      assert.equal(report.ok, true, `${name}: ${JSON.stringify(report.problems.slice(0, 2))}`);
    }
  });
});

describe('a write journal that a failed start left zero-filled', () => {
  test('holds nothing: every later start works, with or without the journal', async (t) => {
    const dir = tempSpool(t);
    await stoppedSpool(dir);
    // What a start that failed to allocate the journal on a full disk left behind before: the
    // file at its full size, never initialised.
    writeFileSync(join(dir, JOURNAL_FILE), Buffer.alloc(1 << 16));
    await stoppedSpool(dir, { writeJournal: false });
    assert.equal(existsSync(join(dir, JOURNAL_FILE)), false);
    writeFileSync(join(dir, JOURNAL_FILE), Buffer.alloc(1 << 16));
    await stoppedSpool(dir, { writeJournal: true, journalBytes: 1 << 16 });
    assert.equal(verifySpool(dir).ok, true);
    assert.equal(readFileSync(join(dir, JOURNAL_FILE)).toString('latin1', 0, 8), 'GOVMAPJ1');
  });
});

describe('records cut off the end of the log, HEAD left as it was', () => {
  test('the start is refused (GOVMAP_AUDIT_TAMPERED naming HEAD): restarting would bury the cut under a crash\'s AUDIT_GAP and overwrite HEAD, the only evidence of it', async (t) => {
    const dir = tempSpool(t);
    await stoppedSpool(dir, { sealBytes: 4096 });
    await stoppedSpool(dir, { sealBytes: 4096 });
    const [segment] = segmentFiles(dir);
    const text = readFileSync(segment!, 'utf8');
    const seals = [...text.matchAll(/^\{"v":1,"type":"SEAL".*$/gm)];
    assert.ok(seals.length >= 3);
    // The cut: everything after an earlier seal (the last session's records and its stop).
    const keep = seals.at(-3)!;
    writeFileSync(segment!, text.slice(0, keep.index + keep[0].length + 1));
    assert.equal(verifySpool(dir).ok, false, 'verify sees the cut: HEAD names a seal that is gone');
    const before = snapshot(dir);
    await assert.rejects(createAuditRecorder({ dir, actor: ACTOR, writeJournal: false }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'GOVMAP_AUDIT_TAMPERED');
      assert.match(error.message, /HEAD at byte 0: HEAD names seal #[0-9]+ .* as committed, but the log ends at seal #[0-9]+/);
      return true;
    });
    assert.deepEqual(snapshot(dir), before, 'nothing was appended');
    assert.equal(verifySpool(dir).ok, false, 'the evidence is still there');
  });
});
