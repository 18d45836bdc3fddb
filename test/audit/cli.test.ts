import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { createAuditRecorder } from '../../src/audit/index.ts';
import { balances, segmentFiles, tempSpool } from './helpers.ts';

const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** Runs the CLI; past `timeoutMs` it is killed (code null), so a command that hangs fails its test. */
function run(args: string[], env: Record<string, string> = {}, timeoutMs?: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function spool(dir: string, extra: Record<string, unknown> = {}): Promise<void> {
  const audit = await createAuditRecorder({ dir, actor: 'clearing/cli', ...extra });
  const map = balances();
  audit.attach(map);
  for (let i = 0; i < 300; i++) {
    map.store(`acct-${i % 10}`, BigInt(i));
    map.load(`acct-${i % 10}`);
  }
  await audit.stop();
}

describe('govmap audit verify', () => {
  test('an intact spool: exit 0 and a one-line OK', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    const { code, stdout } = await run(['audit', 'verify', dir]);
    assert.equal(code, 0, stdout);
    assert.match(stdout, /^OK: .*603 records \(seq 1\.\.603\).*chain intact/);
    const json = await run(['audit', 'verify', dir, '--json']);
    assert.equal(json.code, 0);
    assert.equal((JSON.parse(json.stdout) as { ok: boolean; records: number }).records, 603, '600 operations, AUDIT_STARTED, MAP_ATTACHED, AUDIT_STOPPED');
  });

  test('a damaged spool: exit 1, naming the file and line of the first bad record', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    const file = segmentFiles(dir)[0]!;
    const lines = readFileSync(file, 'utf8').split('\n');
    const [removed] = lines.splice(100, 1);
    const removedSeq = (JSON.parse(removed!) as { seq?: number }).seq;
    writeFileSync(file, lines.join('\n'));
    const { code, stdout } = await run(['audit', 'verify', dir]);
    assert.equal(code, 1, stdout);
    // Reads are appended by the drain worker and writes by the caller, so line order is not
    // seq order: the deletion is caught either where the chain breaks (line 100/101) or where
    // the first record after the missing seq stands, which may be earlier in the file.
    const first = new RegExp(`^FAILED: .*\\n  first bad record: ${basename(file)}:(\\d+) `).exec(stdout);
    assert.ok(first !== null, stdout);
    const namesTheLine = first[1] === '100' || first[1] === '101';
    const namesTheSeq = removedSeq !== undefined && stdout.includes(`seq ${removedSeq} is missing`);
    assert.ok(namesTheLine || namesTheSeq, `verify should name line 100/101 or the missing seq ${removedSeq}:\n${stdout}`);
  });

  test('a keyed spool needs its key; usage errors exit 2', async (t) => {
    const dir = tempSpool(t);
    const env = { GOVMAP_TEST_CLI_KEY: 'cli-test-key-of-at-least-16-bytes' };
    process.env.GOVMAP_TEST_CLI_KEY = env.GOVMAP_TEST_CLI_KEY;
    t.after(() => delete process.env.GOVMAP_TEST_CLI_KEY);
    await spool(dir, { hmacKey: { env: 'GOVMAP_TEST_CLI_KEY' } });
    assert.equal((await run(['audit', 'verify', dir, '--key-env', 'GOVMAP_TEST_CLI_KEY'], env)).code, 0);
    const keyFile = join(dir, '..', 'key');
    writeFileSync(keyFile, `${env.GOVMAP_TEST_CLI_KEY}\n`);
    assert.equal((await run(['audit', 'verify', dir, '--key-file', keyFile])).code, 0);
    const without = await run(['audit', 'verify', dir]);
    assert.equal(without.code, 2, 'a check that needed the key and did not get it was called wrong');
    assert.match(without.stdout, /verify with the spool key/);
    const missingKey = await run(['audit', 'verify', dir, '--key-file', join(dir, 'nope')]);
    assert.equal(missingKey.code, 2);
    assert.match(missingKey.stderr, /cannot read the key file/);
    assert.equal((await run(['audit', 'verify'])).code, 2);
  });

  test('a key that cannot be used: exit 2, naming the flag given (--key-file, --key-env), not a library option', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    const keyFile = join(dir, '..', 'short-key');
    writeFileSync(keyFile, 'short\n');
    const short = await run(['audit', 'verify', dir, '--key-file', keyFile]);
    assert.equal(short.code, 2);
    assert.equal(short.stderr, `govmap audit verify: --key-file ${keyFile}: the key must be at least 16 bytes (got 5)\n`);
    const unset = await run(['audit', 'verify', dir, '--key-env', 'GOVMAP_TEST_UNSET_KEY']);
    assert.equal(unset.code, 2);
    assert.equal(unset.stderr, 'govmap audit verify: --key-env GOVMAP_TEST_UNSET_KEY: environment variable GOVMAP_TEST_UNSET_KEY is not set\n');
  });

  test('progress goes to stderr, a line per segment with --progress, none with --no-progress; the JSON report stays whole', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/cli', maxSegmentBytes: 65_536 });
    const map = balances();
    audit.attach(map);
    // Committed every 500: the segment rotates at a commit that finds it full; unflushed, a drain
    // worker starved of CPU (a loaded machine) could commit all 3,000 at once into one segment.
    for (let i = 0; i < 3000; i++) {
      map.store(`acct-${i % 10}`, BigInt(i));
      if (i % 500 === 499) await audit.flush();
    }
    await audit.stop();
    const segments = segmentFiles(dir).length;
    assert.ok(segments >= 2, `the spool spans several segments (${segments})`);
    const shown = await run(['audit', 'verify', dir, '--json', '--progress']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal((JSON.parse(shown.stdout) as { ok: boolean }).ok, true);
    const lines = shown.stderr.split('\n').filter((l) => l.startsWith('govmap audit verify: '));
    assert.equal(lines.length, segments, shown.stderr);
    assert.match(lines[0]!, /^govmap audit verify: 1 of \d+ segments checked \([0-9.]+ of [0-9.]+ MiB, [0-9.]+ s\), last audit-000001\.jsonl$/);
    assert.match(lines.at(-1)!, new RegExp(`^govmap audit verify: ${segments} of ${segments} segments checked \\(([0-9.]+) of \\1 MiB`));
    const quiet = await run(['audit', 'verify', dir, '--no-progress']);
    assert.equal(quiet.code, 0, quiet.stdout);
    assert.equal(quiet.stderr, '');
    // Without either flag a check this quick prints no progress: lines start after a second.
    const auto = await run(['audit', 'verify', dir]);
    assert.equal(auto.stderr, '');
  });

  test('a path that is not there, or an empty directory, is a usage error (exit 2)', async (t) => {
    const dir = tempSpool(t);
    const missing = await run(['audit', 'verify', join(dir, 'no-such-spool')]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /no such file or directory: .*no-such-spool/);
    assert.equal(missing.stdout, '');
    mkdirSync(join(dir, 'empty'), { recursive: true });
    const empty = await run(['audit', 'verify', join(dir, 'empty')]);
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /no audit segments/);
    assert.equal(empty.stdout, '');
  });

  test('a gzipped segment is named with what to do: the segment file given alone (exit 2), and in the spool (exit 1, SEGMENT_COMPRESSED)', async (t) => {
    const dir = tempSpool(t);
    const audit = await createAuditRecorder({ dir, actor: 'clearing/cli', maxSegmentBytes: 65_536, sealBytes: 4096 });
    const map = balances();
    audit.attach(map);
    for (let i = 0; audit.stats().segment < 3; i++) map.store(`acct-${i % 10}`, BigInt(i));
    await audit.stop();
    const second = segmentFiles(dir)[1]!;
    writeFileSync(`${second}.gz`, gzipSync(readFileSync(second)));
    rmSync(second);
    const alone = await run(['audit', 'verify', `${second}.gz`]);
    assert.equal(alone.code, 2, alone.stderr);
    assert.match(alone.stderr, /audit-000002\.jsonl\.gz: a compressed segment: decompress it \(to audit-000002\.jsonl\) to verify/);
    const whole = await run(['audit', 'verify', dir]);
    assert.equal(whole.code, 1, whole.stdout);
    assert.match(whole.stdout, /first bad record: audit-000003\.jsonl:1 byte 0: segment 2 is missing; found audit-000002\.jsonl\.gz: decompress it to verify/);
    const json = JSON.parse((await run(['audit', 'verify', dir, '--json'])).stdout) as { firstBad: { code?: string } };
    assert.equal(json.firstBad.code, 'SEGMENT_COMPRESSED');
    // Every segment compressed, and no HEAD: still named, not "not an audit spool".
    const only = join(dir, 'only-gz');
    mkdirSync(only);
    copyFileSync(`${second}.gz`, join(only, 'audit-000002.jsonl.gz'));
    const gzOnly = await run(['audit', 'verify', only]);
    assert.equal(gzOnly.code, 1, gzOnly.stderr);
    assert.match(gzOnly.stdout, /no audit segments \(audit-NNNNNN\.jsonl\) here; found audit-000002\.jsonl\.gz: decompress it to verify/);
  });
});

describe('a segment of garbage', () => {
  /**
   * A file that is not an audit log at all (a disk fault, the wrong file copied in) has a bad line
   * every few bytes, and verify kept each one until the end, in case a later gap excused it as a
   * crash's torn line: ~500 MB for a 64 MiB segment, and out of memory within a container's limit.
   */
  test('verify reports it within a small heap: the first bad lines listed, the rest counted, exit 1', async (t) => {
    const dir = tempSpool(t);
    mkdirSync(dir, { recursive: true });
    const lines = ['{"v":1,"type":"SEGMENT","segment":1}'];
    for (let i = 0; i < 150_000; i++) lines.push(`garbage ${i} ${'x'.repeat(i % 40)}`);
    writeFileSync(join(dir, 'audit-000001.jsonl'), `${lines.join('\n')}\n`);
    const result = await run(['audit', 'verify', dir, '--no-progress'], { NODE_OPTIONS: '--max-old-space-size=24' }, 120_000);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stdout, /audit-000001\.jsonl:2: not a valid audit record/, 'the first bad lines are named');
    // The header line is one of them (not a whole SEGMENT record): 150,001 in all, 400 listed.
    assert.match(result.stdout, /149601 more lines are not valid audit records, from audit-000001\.jsonl line 401 on/);
  });
});

describe('a FIFO under a segment\'s name', () => {
  test('verify names it (exit 1) and tail refuses it (exit 2); neither waits for a writer', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    // Reading a FIFO blocks until something writes to it: both commands hung, for good.
    execFileSync('mkfifo', [join(dir, 'audit-000002.jsonl')]);
    const verify = await run(['audit', 'verify', dir], {}, 20_000);
    assert.equal(verify.code, 1, `${verify.stdout}${verify.stderr}`);
    assert.match(verify.stdout, /audit-000002\.jsonl:0: a FIFO \(named pipe\), not a regular file/);
    const tail = await run(['audit', 'tail', dir], {}, 20_000);
    assert.equal(tail.code, 2, tail.stderr);
    assert.match(tail.stderr, /^govmap audit tail: .*audit-000002\.jsonl: a FIFO \(named pipe\), not a regular file/);
  });
});

describe('a FIFO as HEAD or JOURNAL', () => {
  // HEAD and JOURNAL were opened like regular files: a FIFO put in their place held verify (and
  // the demo's retention and dashboard, which verify a live spool) until someone wrote to it.
  test('verify reports it instead of waiting for a writer: HEAD unreadable (exit 1), JOURNAL noted', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    const head = join(dir, '..', 'head-fifo');
    mkdirSync(head);
    for (const name of readdirSync(dir)) copyFileSync(join(dir, name), join(head, name));
    rmSync(join(head, 'HEAD'));
    execFileSync('mkfifo', [join(head, 'HEAD')]);
    const headVerify = await run(['audit', 'verify', head], {}, 20_000);
    assert.equal(headVerify.code, 1, `${headVerify.stdout}${headVerify.stderr}`);
    assert.match(headVerify.stdout, /HEAD is unreadable/);

    rmSync(join(dir, 'JOURNAL'), { force: true });
    execFileSync('mkfifo', [join(dir, 'JOURNAL')]);
    const journalVerify = await run(['audit', 'verify', dir], {}, 20_000);
    assert.equal(journalVerify.code, 0, `${journalVerify.stdout}${journalVerify.stderr}`);
    assert.match(journalVerify.stdout, /note: the write journal \(JOURNAL\) could not be read \(.*not a regular file/);
  });
});

describe('govmap audit tail', () => {
  test('prints the last records; -f follows new ones until interrupted', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    const last = await run(['audit', 'tail', dir, '-n', '3']);
    assert.equal(last.code, 0);
    const lines = last.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; op_type: string });
    assert.equal(lines.length, 3, 'three records, no seal lines');
    assert.equal(lines.at(-1)!.op_type, 'AUDIT_STOPPED');

    const child = spawn(process.execPath, [cli, 'audit', 'tail', dir, '-n', '1', '-f'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // Following starts once the last record is printed.
    const ready = Date.now() + 15_000;
    while (!out.includes('AUDIT_STOPPED') && Date.now() < ready) await new Promise((resolve) => setTimeout(resolve, 50));
    const audit = await createAuditRecorder({ dir, actor: 'clearing/cli', maxSegmentBytes: 65_536 });
    const map = balances();
    audit.attach(map);
    for (let i = 0; i < 400; i++) map.store(`followed-${i}`, 1n);
    // A commit before the stop: the segment rotates at a commit that finds it full, but not at the
    // final one (the log ends in the segment that holds AUDIT_STOPPED), so 400 writes the worker
    // had not yet committed when stop() came all landed in one segment (seen in CI).
    await audit.flush();
    await audit.stop();
    const deadline = Date.now() + 15_000;
    while (!out.includes('"resource_id":"followed-399"') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    child.kill('SIGINT');
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    const followed = out.split('\n').filter((l) => l.includes('"followed-'));
    assert.equal(followed.length, 400, 'every new record, across the rotation to a new segment');
    assert.ok(segmentFiles(dir).length > 1, 'the followed writes rotated segments');
  });

  test('-f on a spool that does not exist yet waits for it (saying so on stderr) and prints its records; without -f it is exit 2 naming the path', async (t) => {
    const dir = join(tempSpool(t), 'not-yet');
    const missing = await run(['audit', 'tail', dir]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /not-yet: no such file or directory/);
    const child = spawn(process.execPath, [cli, 'audit', 'tail', dir, '-f'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const waiting = Date.now() + 15_000;
    while (!err.includes('waiting') && child.exitCode === null && Date.now() < waiting) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(child.exitCode, null, `tail -f gave up on a spool not there yet: ${err}`);
    assert.match(err, /waiting for audit segments at .*not-yet/);
    // The service starts after the operator's tail: what it records is followed from its first record.
    await spool(dir);
    const deadline = Date.now() + 15_000;
    while (!out.includes('AUDIT_STOPPED') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    child.kill('SIGINT');
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    const seqs = out.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    // Reads and writes are appended by two threads: lines are not in seq order, but all are there once.
    assert.deepEqual(seqs.sort((a, b) => a - b), Array.from({ length: 603 }, (_, i) => i + 1), 'every record of the new spool, from its first');
  });

  test('a compressed segment given alone, or a directory of only compressed segments: exit 2 and one line saying to decompress, not the gzip bytes printed with exit 0', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    const segment = segmentFiles(dir)[0]!;
    writeFileSync(`${segment}.gz`, gzipSync(readFileSync(segment)));
    rmSync(segment);
    for (const [path, why] of [
      [`${segment}.gz`, /audit-000001\.jsonl\.gz: a compressed segment: decompress it \(to audit-000001\.jsonl\)/],
      [dir, /no audit segments \(audit-NNNNNN\.jsonl\) in this directory; found audit-000001\.jsonl\.gz: decompress it/],
    ] as const) {
      const tail = await run(['audit', 'tail', path]);
      assert.equal(tail.code, 2, tail.stderr);
      assert.equal(tail.stdout, '', 'no compressed bytes on the terminal');
      assert.match(tail.stderr, why);
      assert.equal(tail.stderr.trim().split('\n').length, 1, `one line: ${tail.stderr}`);
    }
  });

  test('-f on a directory of only compressed segments says so while it waits for a new segment, naming them', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    const segment = segmentFiles(dir)[0]!;
    writeFileSync(`${segment}.gz`, gzipSync(readFileSync(segment)));
    rmSync(segment);
    const child = spawn(process.execPath, [cli, 'audit', 'tail', dir, '-f'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const deadline = Date.now() + 15_000;
    while (!err.includes('waiting') && child.exitCode === null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill('SIGINT');
    await new Promise((resolve) => child.on('close', resolve));
    assert.match(err, /waiting for audit segments at .*; found only compressed segments \(audit-000001\.jsonl\.gz\), which tail does not read: decompress one to read it/);
  });

  test('a reader that goes away (| head) ends it quietly with 141, not a stack trace and exit 1', async (t) => {
    const dir = tempSpool(t);
    await spool(dir);
    // 603 records, ~150 KB: more than a pipe holds, so the CLI is still writing when the reader goes.
    const child = spawn(process.execPath, [cli, 'audit', 'tail', dir, '-n', '1000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.stdout.destroy();
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(stderr, '', 'no stack trace, no message: the reader left on purpose');
    assert.equal(code, 141, '128 + SIGPIPE: the output did not all reach its reader; not 1 (tampered) and not 0');
  });
});
