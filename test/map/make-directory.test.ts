import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeDirectory, makeDirectorySync } from '../../src/map/make-directory.ts';

const scratch = mkdtempSync(join(tmpdir(), 'govmap-mkdir-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

test('makes every missing level, and a directory already there is fine (both forms)', async () => {
  makeDirectorySync(join(scratch, 'a', 'b', 'c'));
  assert.ok(statSync(join(scratch, 'a', 'b', 'c')).isDirectory());
  makeDirectorySync(join(scratch, 'a', 'b', 'c'));
  await makeDirectory(join(scratch, 'x', 'y', 'z'));
  assert.ok(statSync(join(scratch, 'x', 'y', 'z')).isDirectory());
  await makeDirectory(join(scratch, 'x', 'y'));
});

test('a file in the way is EEXIST (the path itself) or ENOTDIR (a level above)', async () => {
  const file = join(scratch, 'file');
  writeFileSync(file, 'x');
  assert.throws(() => makeDirectorySync(file), { code: 'EEXIST' });
  assert.throws(() => makeDirectorySync(join(file, 'below')), { code: 'ENOTDIR' });
  await assert.rejects(makeDirectory(file), { code: 'EEXIST' });
  await assert.rejects(makeDirectory(join(file, 'below')), { code: 'ENOTDIR' });
});

test('a path under /proc fails at once with ENOENT (Node\'s recursive mkdir never returned there)', { skip: process.platform === 'linux' ? false : '/proc is Linux' }, async () => {
  const started = performance.now();
  assert.throws(() => makeDirectorySync('/proc/govmap-no-such/dir'), { code: 'ENOENT' });
  await assert.rejects(makeDirectory('/proc/govmap-no-such/dir'), { code: 'ENOENT' });
  assert.ok(performance.now() - started < 5000);
});
