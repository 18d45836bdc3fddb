import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * `govmap bench <suite> [options]`: runs a benchmark suite in a fresh Node process (with
 * --expose-gc, so suites can settle the heap between contenders), exactly as
 * `npm run bench -- <suite>` does.
 */
export async function benchCommand(suite: string | undefined, args: string[]): Promise<void> {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const runner = fileURLToPath(new URL(`../../bench/run.${ext}`, import.meta.url));
  const child = spawn(process.execPath, ['--expose-gc', runner, ...(suite === undefined ? [] : [suite]), ...args], { stdio: 'inherit' });
  const code = await new Promise<number>((resolve) => child.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
  process.exitCode = code;
}
