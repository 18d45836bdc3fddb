import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * `govmap audit verify` exits 1 for a spool that is tampered or damaged, and a script pages
 * someone on it; a path that never was a spool (a file not named like a segment, a directory
 * with neither segments nor HEAD) is a usage error, exit 2.
 */
const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'govmap-audit-cli-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

function verify(path: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'audit', 'verify', path], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('a file not named audit-NNNNNN.jsonl: exit 2, naming the path and what was expected', () => {
  const passwd = join(scratch, 'passwd');
  writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\n');
  const r = verify(passwd);
  assert.equal(r.status, 2, r.stdout);
  assert.equal(r.stderr, `govmap audit verify: ${passwd}: "passwd" is not an audit segment name (audit-NNNNNN.jsonl) (give a spool directory, e.g. ./.govmap/audit, or one audit-NNNNNN.jsonl segment)\n`);
  assert.doesNotMatch(r.stdout, /FAILED/);
});

test('a directory with no segments and no HEAD: exit 2', () => {
  const empty = join(scratch, 'empty');
  mkdirSync(empty);
  writeFileSync(join(empty, 'notes.txt'), 'nothing to see\n');
  const r = verify(empty);
  assert.equal(r.status, 2, r.stdout);
  assert.match(r.stderr, /: this directory holds no audit segments \(audit-NNNNNN\.jsonl\) and no HEAD: not an audit spool/);
});

test('what is a spool, however damaged, is still verify\'s to judge: exit 1', () => {
  // A segment with garbage in it: tampered, not a usage error.
  const spool = join(scratch, 'spool');
  mkdirSync(spool);
  writeFileSync(join(spool, 'audit-000001.jsonl'), 'not a record\n');
  const segment = verify(join(spool, 'audit-000001.jsonl'));
  assert.equal(segment.status, 1, segment.stderr);
  assert.match(segment.stdout, /^FAILED/);
  // A spool whose segments were all removed, HEAD left behind: damage, not a typo.
  const gutted = join(scratch, 'gutted');
  mkdirSync(gutted);
  writeFileSync(join(gutted, 'HEAD'), '{}\n');
  const r = verify(gutted);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /no audit segments \(audit-NNNNNN\.jsonl\) here/);
});

test('a failure no command handles (here statSync throwing, as a bug would) exits 2 with its stack, never 1 ("tampered")', () => {
  const spool = join(scratch, 'crash');
  mkdirSync(spool);
  const preload = join(scratch, 'stat-fails.mjs');
  writeFileSync(
    preload,
    [
      "import fs from 'node:fs';",
      "import { syncBuiltinESMExports } from 'node:module';",
      "fs.statSync = () => { throw new Error('simulated bug in statSync'); };",
      'syncBuiltinESMExports();',
    ].join('\n'),
  );
  const r = spawnSync(process.execPath, ['--import', preload, cli, 'audit', 'verify', spool], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^govmap audit verify: failed unexpectedly and did not finish: Error: simulated bug in statSync\n {4}at /);
  assert.equal(r.stdout, '');
});
