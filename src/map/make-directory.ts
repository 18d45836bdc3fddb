import { mkdirSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * `mkdir -p`, one level at a time. Node's own `mkdir(path, { recursive: true })` never returns
 * for a path under /proc (mkdir there fails ENOENT while the parent exists, and Node tries
 * again for ever): `govmap demo --audit-dir /proc/x` hung, and SIGTERM could not stop it. Here
 * the level that cannot be made ends the walk with its own error (ENOENT, EACCES, ENOTDIR...).
 * A path that exists as a directory is fine; as anything else, EEXIST.
 */
export function makeDirectorySync(path: string): void {
  const target = resolve(path);
  try {
    mkdirSync(target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if (statSync(target).isDirectory()) return;
      throw error;
    }
    if (code !== 'ENOENT' || dirname(target) === target) throw error;
    makeDirectorySync(dirname(target));
    try {
      mkdirSync(target);
    } catch (again) {
      // Made meanwhile by another process starting on the same directory: it is there.
      if ((again as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(target).isDirectory()) throw again;
    }
  }
}

/** makeDirectorySync, without blocking the event loop. */
export async function makeDirectory(path: string): Promise<void> {
  const target = resolve(path);
  try {
    await mkdir(target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if ((await stat(target)).isDirectory()) return;
      throw error;
    }
    if (code !== 'ENOENT' || dirname(target) === target) throw error;
    await makeDirectory(dirname(target));
    try {
      await mkdir(target);
    } catch (again) {
      if ((again as NodeJS.ErrnoException).code !== 'EEXIST' || !(await stat(target)).isDirectory()) throw again;
    }
  }
}
