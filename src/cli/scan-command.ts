import { access, stat, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Option } from 'commander';
import type { Command, CommanderError } from 'commander';

export interface ScanCommandOptions {
  readonly format: 'text' | 'json' | 'sarif';
  readonly output?: string;
  readonly baseline?: string;
  readonly project?: string;
  readonly preset?: 'recommended' | 'strict';
  readonly config?: string;
  readonly ignore?: string[];
  readonly progress: boolean;
}

/** Exit statuses: 0 clean, 1 findings that fail (error level, not suppressed, not in the baseline), 2 usage error or incomplete scan. */
export const EXIT_FINDINGS = 1;
export const EXIT_USAGE = 2;

/** Below this many files a scan is quick enough that progress lines would be noise. */
const PROGRESS_MIN_FILES = 100;
/** At most one progress line per this many ms. */
const PROGRESS_INTERVAL_MS = 1000;

/** Adds `govmap scan [paths...]` to the program. */
export function registerScanCommand(program: Command): void {
  program
    .command('scan')
    .description('run govmap\'s type-aware lint rules over a TypeScript project (text, JSON or SARIF 2.1.0); exit 1 on findings, 2 on usage errors')
    .argument('[paths...]', 'files or directories to scan, relative to the current directory', ['.'])
    .addOption(new Option('-f, --format <format>', 'report format').choices(['text', 'json', 'sarif']).default('text'))
    .option('-o, --output <file>', 'write the report to this file instead of stdout')
    .option('--baseline <file>', 'an earlier `--format json` (or sarif) report: its findings are accepted, only new ones fail')
    .option('-p, --project <tsconfig>', 'take types from this tsconfig (default: each file\'s nearest tsconfig.json)')
    .addOption(new Option('--preset <preset>', 'rule set (default recommended)').choices(['recommended', 'strict']))
    .option('-c, --config <file>', 'scan config, JSON or YAML: preset, project, ignore, rules (see docs/lint.md)')
    // Repeated, not variadic: a variadic option would take the paths after it as more globs
    // (`--ignore 'gen/**' services/payments` would scan everything but payments).
    .option('--ignore <glob>', 'also skip files matching this glob (ESLint syntax; repeat for more)', (glob: string, previous: string[] | undefined) => [...(previous ?? []), glob])
    .option('--no-progress', `no progress lines on stderr (printed for trees of ${PROGRESS_MIN_FILES}+ files)`)
    // Usage errors exit 2 (commander's default is 1, which here means "findings").
    .exitOverride((error: CommanderError) => {
      process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
    })
    .action(scanCommand);
}

export async function scanCommand(paths: string[], options: ScanCommandOptions): Promise<void> {
  // Before the scan, which can take minutes: a typo in --output should not cost them.
  if (options.output !== undefined) {
    const unwritable = await outputProblem(options.output);
    if (unwritable !== null) return refuseOutput(options.output, unwritable);
  }
  // The lint engine pulls in TypeScript and ESLint: load it only when a scan runs.
  const lint = await import('../lint/index.ts');
  try {
    const config = options.config === undefined ? {} : await lint.loadScanConfig(options.config);
    const baseline = options.baseline === undefined ? undefined : await lint.Baseline.load(options.baseline);
    let lastLine = 0;
    const report = await lint.scan({
      paths,
      project: options.project ?? config.project,
      preset: options.preset ?? config.preset,
      rules: config.rules,
      ignore: [...(config.ignore ?? []), ...(options.ignore ?? [])],
      baseline,
      onProgress: (p) => {
        if (!options.progress || p.total < PROGRESS_MIN_FILES) return;
        const now = Date.now();
        if (p.done < p.total && now - lastLine < PROGRESS_INTERVAL_MS) return;
        lastLine = now;
        const percent = Math.floor((p.done / p.total) * 100);
        process.stderr.write(`govmap scan: ${p.done}/${p.total} files (${percent}%), ${p.findings} findings, ${(p.elapsedMs / 1000).toFixed(1)} s\n`);
      },
    });
    const text = options.format === 'json' ? lint.formatJson(report) : options.format === 'sarif' ? lint.formatSarif(report) : lint.formatText(report);
    if (options.output === undefined) process.stdout.write(`${text}\n`);
    else {
      try {
        await writeFile(options.output, `${text}\n`);
      } catch (error) {
        return refuseOutput(options.output, (error as Error).message);
      }
    }
    if (report.ignored.length > 0 && options.format !== 'text') {
      // The text summary counts them; a JSON or SARIF report on stdout or in a file does not show a count to a person.
      process.stderr.write(`govmap scan: ${report.ignored.length} file(s) skipped by an ignore pattern, not analysed (first: ${report.ignored[0]})\n`);
    }
    // Counted in the text summary; a JSON report is an array of findings (and a baseline), with no place for them.
    if (report.staleBaseline.length > 0 && options.format !== 'text') process.stderr.write(`govmap scan: ${lint.staleNote(report.staleBaseline)}\n`);

    if (report.unanalysed.length > 0) {
      // A scan that skipped files cannot vouch for them: not a pass, whatever it found.
      const first = report.unanalysed[0]!;
      const where = first.line === null ? first.file : `${first.file}:${first.line}:${first.column}`;
      process.stderr.write(
        `govmap scan: ${report.unanalysed.length} file(s) could not be analysed (first: ${where}: ${first.message}); fix the syntax error, include them in a tsconfig or --ignore them\n`,
      );
      process.exitCode = EXIT_USAGE;
      return;
    }
    const failing = lint.failingFindings(report).length;
    if (failing > 0 && options.format !== 'text') process.stderr.write(`govmap scan: ${failing} finding(s) fail the scan\n`);
    process.exitCode = failing > 0 ? EXIT_FINDINGS : 0;
  } catch (error) {
    if (error instanceof lint.ScanUsageError) {
      process.stderr.write(`govmap scan: ${error.message} (${error.code})\n`);
      process.exitCode = EXIT_USAGE;
      return;
    }
    // Anything else (an I/O error mid-scan, a crash in ESLint or a rule) left the scan
    // incomplete. Uncaught it would exit 1, which CI reads as "findings, report written"
    // (`|| test $? -eq 1`); an incomplete scan is 2. The stack is for the bug report.
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`govmap scan: the scan failed and is incomplete: ${detail}\n`);
    process.exitCode = EXIT_USAGE;
  }
}

/**
 * Why the report cannot be written to `output`, or null when it can: the directory must exist and
 * be writable, and the path must not be a directory. Exit 1 means "findings", so a report that
 * was never written must not end with it (CI steps run `govmap scan --output f || test $? -eq 1`).
 */
async function outputProblem(output: string): Promise<string | null> {
  // resolve('') is the current directory, whose parent passed every check below.
  if (output === '') return 'the path is empty ("")';
  const directory = dirname(resolve(output));
  try {
    if (!(await stat(directory)).isDirectory()) return `${directory} is not a directory`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `directory ${directory} does not exist` : code === 'ENOTDIR' ? `${directory} is not a directory` : (error as Error).message;
  }
  try {
    await access(directory, constants.W_OK);
  } catch {
    return `directory ${directory} is not writable`;
  }
  try {
    if ((await stat(output)).isDirectory()) return `${output} is a directory`;
  } catch {
    // not there yet: it will be created
  }
  return null;
}

function refuseOutput(output: string, reason: string): void {
  process.stderr.write(`govmap scan: cannot write --output ${output}: ${reason}\n`);
  process.exitCode = EXIT_USAGE;
}
