import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Option } from 'commander';
import type { Command, CommanderError } from 'commander';
import type * as Spool from '../audit/spool.ts';
import type { VerifyProgress } from '../audit/verify.ts';

/** Exit statuses of `govmap audit verify`: 0 intact, 1 tampered or damaged, 2 usage error. */
export const EXIT_TAMPERED = 1;
export const EXIT_USAGE = 2;

interface VerifyOptions {
  readonly keyFile?: string;
  readonly keyEnv?: string;
  readonly json?: boolean;
  /** true: a line per segment; false: none; undefined: once the check has taken a second, a line a second. */
  readonly progress?: boolean;
}

/** Without --progress, lines start once a check has run this long, and come at most this often, ms. */
const PROGRESS_AFTER_MS = 1000;

interface TailOptions {
  readonly lines: number;
  readonly follow?: boolean;
  readonly seals?: boolean;
}

/** Adds `govmap audit verify <path>` and `govmap audit tail <path>` to the program. */
export function registerAuditCommand(program: Command, integerOption: (name: string, min: number, max: number) => (raw: string) => number): void {
  const audit = program.command('audit').description('check and follow a govmap audit spool (see docs/audit.md)');
  audit
    .command('verify')
    .description('check the tamper-evident chain of a spool directory (or one segment file) and name the first bad record; exit 1 if any')
    .argument('<path>', 'spool directory (e.g. ./.govmap/audit) or one audit-NNNNNN.jsonl segment')
    .option('--key-file <file>', 'the HMAC key file the spool was written with')
    .option('--key-env <name>', 'environment variable holding the HMAC key')
    .option('--json', 'print the report as one JSON object')
    .option('--progress', 'a progress line on stderr per segment checked (default: a line a second once the check has taken a second)')
    .option('--no-progress', 'no progress lines')
    .exitOverride((error: CommanderError) => {
      process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
    })
    .action(verifyCommand);
  audit
    .command('tail')
    .description('print the last records of a spool; with -f, keep printing new ones (across rotations) until Ctrl-C')
    .argument('<path>', 'spool directory or one segment file')
    .addOption(new Option('-n, --lines <n>', 'how many of the last records to print').default(10).argParser(integerOption('--lines', 0, 1_000_000)))
    .option('-f, --follow', 'keep printing records as they are written')
    .option('--seals', 'also print SEAL and SEGMENT lines')
    .action(tailCommand);
}

async function verifyCommand(path: string, options: VerifyOptions): Promise<void> {
  const { verifySpool, formatVerifyReport } = await import('../audit/verify.ts');
  const { loadKey } = await import('../audit/options.ts');
  if (options.keyFile !== undefined && options.keyEnv !== undefined) {
    console.error('govmap audit verify: give the key once: --key-file or --key-env, not both');
    process.exitCode = EXIT_USAGE;
    return;
  }
  let key: Uint8Array | null = null;
  try {
    if (options.keyFile !== undefined) key = loadKey({ file: options.keyFile });
    if (options.keyEnv !== undefined) key = loadKey({ env: options.keyEnv });
  } catch (error) {
    // The rule alone, after the flag the operator typed: the message names the library option
    // (hmacKey.file), which no one gave on this command line.
    const rule = (error as { details?: { rule?: unknown } }).details?.rule;
    const flag = options.keyFile !== undefined ? `--key-file ${options.keyFile}` : `--key-env ${options.keyEnv}`;
    console.error(`govmap audit verify: ${typeof rule === 'string' ? `${flag}: ${rule}` : (error as Error).message}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  // A path that is not there is a usage error (exit 2), not a tampered log (exit 1): a script
  // that alerts on exit 1 must not page anyone over a typo.
  if (!existsSync(path)) {
    console.error(`govmap audit verify: no such file or directory: ${path} (give a spool directory, e.g. ./.govmap/audit, or one audit-NNNNNN.jsonl segment)`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const notASpool = notAnAuditPath(path, await import('../audit/spool.ts'));
  if (notASpool !== null) {
    console.error(`govmap audit verify: ${path}: ${notASpool} (give a spool directory, e.g. ./.govmap/audit, or one audit-NNNNNN.jsonl segment)`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  let report: ReturnType<typeof verifySpool>;
  const startedAt = performance.now();
  let lastLineAt = -Infinity;
  const onSegment = (p: VerifyProgress): void => {
    const now = performance.now();
    if (options.progress !== true && (now - startedAt < PROGRESS_AFTER_MS || now - lastLineAt < PROGRESS_AFTER_MS)) return;
    lastLineAt = now;
    // stderr: stdout carries the report (and --json must stay one parseable object).
    console.error(`govmap audit verify: ${p.segmentsDone} of ${p.segmentsTotal} segments checked (${mib(p.bytesDone)} of ${mib(p.bytesTotal)} MiB, ${((now - startedAt) / 1000).toFixed(1)} s), last ${p.file}`);
  };
  try {
    report = verifySpool(path, { key, ...(options.progress === false ? {} : { onSegment }) });
  } catch (error) {
    // The spool could not be read at all (EACCES, EIO): nothing was checked, so this is not
    // "tampered" (exit 1) — say what stopped the check, without a stack.
    const e = error as NodeJS.ErrnoException;
    console.error(`govmap audit verify: cannot read ${e.path ?? path}: ${e.code ?? 'error'}: ${e.message} (nothing was checked)`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  if (options.json === true) console.log(JSON.stringify(report));
  else console.log(formatVerifyReport(report));
  // A keyed spool checked without its key: the check was incomplete because it was called
  // wrong (exit 2), whatever else it found; the report still lists what it could see.
  process.exitCode = report.keyRequired ? EXIT_USAGE : report.ok ? 0 : EXIT_TAMPERED;
}

/**
 * Why `path` is not something to verify, or null when it is. A file named otherwise than a
 * segment, or a directory with neither segments nor HEAD, was never a spool: a usage error
 * (exit 2), not a tampered log (exit 1) that pages someone. A directory with a HEAD and no
 * segments is a spool whose segments are gone: that is verify's to report as damage.
 */
function notAnAuditPath(path: string, spool: typeof Spool): string | null {
  const stats = statSync(path);
  if (stats.isDirectory()) {
    // Compressed segments alone are a spool too: verify names them and says what to do.
    if (spool.listSegments(path).length > 0 || existsSync(join(path, spool.HEAD_FILE)) || spool.listCompressedSegments(path).size > 0) return null;
    return 'this directory holds no audit segments (audit-NNNNNN.jsonl) and no HEAD: not an audit spool';
  }
  if (!stats.isFile()) return 'not a regular file or a directory';
  const compressed = spool.COMPRESSED_SEGMENT_PATTERN.exec(basename(path));
  if (compressed !== null) return `a compressed segment: decompress it (to ${basename(path).slice(0, -compressed[2]!.length - 1)}) to verify`;
  if (!spool.SEGMENT_PATTERN.test(basename(path))) return `"${basename(path)}" is not an audit segment name (audit-NNNNNN.jsonl)`;
  return null;
}

async function tailCommand(path: string, options: TailOptions): Promise<void> {
  const { tailSpool } = await import('../audit/tail.ts');
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await tailSpool(path, {
      lines: options.lines,
      follow: options.follow === true,
      seals: options.seals === true,
      signal: controller.signal,
      write: (line) => process.stdout.write(`${line}\n`),
      onWait: (message) => console.error(`govmap audit tail: ${message}`),
    });
  } catch (error) {
    console.error(`govmap audit tail: ${(error as Error).message}`);
    process.exitCode = EXIT_USAGE;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/** Bytes as MiB with one decimal: progress figures, not exact counts. */
function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
}
