import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

/** Signals passed on to the suite: a stop asked of govmap is a stop of the benchmark it runs. */
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * `govmap bench <suite> [options]`: runs a benchmark suite in a fresh Node process (with
 * --expose-gc, so suites can settle the heap between contenders), exactly as
 * `npm run bench -- <suite>` does.
 */
export async function benchCommand(suite: string | undefined, args: string[]): Promise<void> {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const runner = fileURLToPath(new URL(`../../bench/run.${ext}`, import.meta.url));
  const child = spawn(process.execPath, ['--expose-gc', runner, ...(suite === undefined ? [] : [suite]), ...args], { stdio: 'inherit' });
  // Without these, a SIGTERM to govmap (a cancelled CI job, `timeout`, `kill <pid>`) ended govmap
  // alone and left the suite running, orphaned (and `bench load` its demo services). Handled
  // here, govmap waits for the suite to stop (it kills its services on the way out) and exits as
  // it did. Ctrl-C reaches the whole process group; passing it on again does no harm.
  const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
  for (const signal of FORWARDED) process.on(signal, forward);
  const code = await new Promise<number>((resolve) =>
    // Stopped by a signal: 128 + its number, as a shell reports it (1 would read as "ran and found a problem").
    child.on('close', (c, signal) => resolve(c ?? (signal === null ? 0 : 128 + (constants.signals[signal] ?? 0)))),
  );
  for (const signal of FORWARDED) process.off(signal, forward);
  process.exitCode = code;
}
