import { existsSync, statSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type * as EslintModule from 'eslint';
import type { ESLint, Linter } from 'eslint';
import plugin, { TYPESCRIPT_FILES, recommendedRules, strictRules } from '../plugin.ts';
import type { Baseline, BaselineEntry } from './baseline.ts';
import { ScanUsageError } from './errors.ts';
import { fingerprintAll } from './fingerprint.ts';

export type Preset = 'recommended' | 'strict';
export type Severity = 'error' | 'warning';

export interface ScanOptions {
  /** Files or directories to scan, relative to `cwd`. Default `['.']`. */
  readonly paths?: readonly string[];
  /** The project root: paths in reports and fingerprints are relative to it. Default `process.cwd()`. */
  readonly cwd?: string;
  /** A tsconfig to take types from. Default: each file's nearest tsconfig.json (typescript-eslint's project service). */
  readonly project?: string;
  /** Rule set. Default `recommended`. */
  readonly preset?: Preset;
  /** Per-rule overrides on top of the preset, ESLint style: `{ 'govmap/forbidden-calls': ['error', { calls: [...] }] }`. */
  readonly rules?: Readonly<Record<string, unknown>>;
  /** Extra ignore globs (ESLint syntax, relative to `cwd`), on top of node_modules, .git, dist, coverage and `*.d.ts`. */
  readonly ignore?: readonly string[];
  /** Accepted findings: matching ones are reported as `baseline` and do not fail the scan. */
  readonly baseline?: Baseline;
  /** Files per ESLint call, i.e. per progress report. Default 25. */
  readonly batchSize?: number;
  /** Called after each batch. */
  readonly onProgress?: (progress: ScanProgress) => void;
}

export interface ScanProgress {
  readonly done: number;
  readonly total: number;
  readonly findings: number;
  readonly elapsedMs: number;
}

export interface Finding {
  /** `govmap/<rule>`. */
  readonly ruleId: string;
  /** Relative to the root, `/`-separated. */
  readonly file: string;
  /** 1-based. */
  readonly line: number;
  /** 1-based, UTF-16 code units. */
  readonly column: number;
  readonly endLine: number;
  /** 1-based, exclusive. */
  readonly endColumn: number;
  readonly severity: Severity;
  readonly message: string;
  /** Stable identity across line moves (see fingerprint.ts). */
  readonly fingerprint: string;
  /** The `-- reason` of the eslint-disable directive that silenced it; null when active. */
  readonly suppression: string | null;
  /** True when the baseline accepted it. */
  readonly baseline: boolean;
}

export interface RuleInfo {
  readonly id: string;
  readonly description: string;
  readonly docs: string;
  /** Severity in this run; `off` when the configuration disabled it. */
  readonly level: Severity | 'off';
}

export interface ScanReport {
  readonly root: string;
  readonly filesScanned: number;
  /**
   * Files found under the paths but skipped by an ignore (`--ignore`, the config's `ignore`,
   * ESLint's defaults): relative to the root, sorted. Not analysed, so reports count them.
   */
  readonly ignored: readonly string[];
  /** Sorted by file, line, column; includes suppressed and baseline findings. */
  readonly findings: readonly Finding[];
  /** Files ESLint could not analyse (a parse error, a file outside every tsconfig). */
  readonly unanalysed: readonly Unanalysed[];
  /** Every govmap rule, firing or not. */
  readonly rules: readonly RuleInfo[];
  readonly baselineUsed: boolean;
  /**
   * Baseline entries that matched no finding, for files under the paths scanned (analysed, or
   * gone): the finding was fixed or its line changed. They accept nothing now, but would accept a
   * regression at the same spot later; regenerating the baseline drops them. Empty without a baseline.
   */
  readonly staleBaseline: readonly BaselineEntry[];
  readonly startedAt: Date;
  readonly finishedAt: Date;
}

export interface Unanalysed {
  /** Relative to the root, `/`-separated. */
  readonly file: string;
  /** 1-based, where the parser stopped; null when the failure has no place (a file outside every tsconfig). */
  readonly line: number | null;
  readonly column: number | null;
  readonly message: string;
}

/** Findings that fail the scan: error level, not suppressed in the source, not in the baseline. */
export function failingFindings(report: ScanReport): Finding[] {
  return report.findings.filter((f) => f.severity === 'error' && f.suppression === null && !f.baseline);
}

/** Directories never walked: dependencies and VCS data. */
const SKIPPED_DIRECTORIES = new Set(['node_modules', '.git']);
/**
 * Build output, ignored by default as ESLint ignore patterns rather than left unwalked: a source
 * directory of the same name (a risk service's `src/risk/coverage/`) is then counted as ignored,
 * not skipped in silence, and a `!src/risk/coverage/` ignore brings it back.
 */
const DEFAULT_IGNORES = ['**/dist/', '**/coverage/'];
const TYPESCRIPT_SOURCE = /\.(?:ts|tsx|mts|cts)$/;
const DECLARATION_FILE = /\.d\.(?:ts|mts|cts)$|\.d\.[^.]+\.ts$/;
const DEFAULT_BATCH_SIZE = 25;
/**
 * Line breaks as ESLint counts them (its SourceCode's lineBreakPattern): a finding's line number
 * indexes lines split this way, so its fingerprint is taken from its own line even when a lone
 * `\r` or a U+2028/U+2029 (legal inside a string literal) sits above it.
 */
const LINE_BREAK = /\r\n|[\r\n\u2028\u2029]/;

/**
 * Runs govmap's rules over a project, type-aware, through ESLint's Node API. Only govmap's
 * rules run: the project's own ESLint config is not loaded (its other rules are its own
 * business), but its `eslint-disable ... -- reason` directives are honoured and reported as
 * suppressions. ESLint and the TypeScript parser load only when a scan runs.
 */
export async function scan(options: ScanOptions = {}): Promise<ScanReport> {
  const startedAt = new Date();
  const root = resolve(options.cwd ?? process.cwd());
  const preset = options.preset ?? 'recommended';
  const rules = { ...(preset === 'strict' ? strictRules : recommendedRules), ...checkRuleOverrides(options.rules ?? {}) } as Linter.RulesRecord;
  const { ESLint } = await loadEslint();
  const parser = (await import('@typescript-eslint/parser')) as unknown as Linter.Parser;

  let parserOptions: Linter.ParserOptions;
  if (options.project !== undefined) {
    const project = isAbsolute(options.project) ? options.project : resolve(root, options.project);
    if (!existsSync(project) || !statSync(project).isFile()) {
      throw new ScanUsageError('GOVMAP_SCAN_TSCONFIG_NOT_FOUND', `--project "${options.project}" is not a readable tsconfig file (looked at ${project})`, { project });
    }
    parserOptions = { project, tsconfigRootDir: dirname(project) };
  } else {
    parserOptions = { projectService: true, tsconfigRootDir: root };
  }

  const eslint = new ESLint({
    cwd: root,
    overrideConfigFile: true,
    errorOnUnmatchedPattern: false,
    overrideConfig: [
      { ignores: [...DEFAULT_IGNORES, ...(options.ignore ?? [])] },
      {
        files: TYPESCRIPT_FILES,
        languageOptions: { parser, parserOptions },
        plugins: { govmap: plugin as unknown as ESLint.Plugin },
        // Unused directives and other tools' rules are not govmap's to judge.
        linterOptions: { reportUnusedDisableDirectives: 'off' },
        rules,
      },
    ],
  });

  let files: string[];
  let ignored: string[];
  try {
    ({ files, ignored } = await collectFiles(root, options.paths ?? ['.'], eslint));
  } catch (cause) {
    // ESLint validates the configuration the first time it resolves one for a file.
    throw asConfigError(cause);
  }
  if (files.length === 0) {
    const skipped = ignored.length === 0 ? '' : `; ${ignored.length} found but ignored, first ${ignored[0]}`;
    throw new ScanUsageError('GOVMAP_SCAN_NO_FILES', `no TypeScript files to scan under ${(options.paths ?? ['.']).join(', ')} (looked for *.ts, *.tsx, *.mts, *.cts outside node_modules, dist, coverage and ignores${skipped})`, {
      paths: options.paths ?? ['.'],
      ignored: ignored.length,
    });
  }

  const raw: Array<Omit<Finding, 'fingerprint' | 'baseline'>> = [];
  const unanalysed: Unanalysed[] = [];
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  for (let i = 0; i < files.length; i += batchSize) {
    let results: ESLint.LintResult[];
    try {
      results = await eslint.lintFiles(files.slice(i, i + batchSize));
    } catch (cause) {
      throw asConfigError(cause);
    }
    for (const result of results) {
      collect(result, root, raw, unanalysed);
      if (!result.messages.some((m) => m.fatal === true)) raw.push(...(await inlineRuleConfigs(result.filePath, root)));
    }
    options.onProgress?.({ done: Math.min(files.length, i + batchSize), total: files.length, findings: raw.length, elapsedMs: Date.now() - startedAt.getTime() });
  }

  const findings = await finish(raw, root, options.baseline);
  const staleBaseline = options.baseline === undefined ? [] : staleEntries(options.baseline, root, options.paths ?? ['.'], new Set(ignored.map((f) => toPosix(relative(root, f)))), unanalysed);
  return {
    root,
    filesScanned: files.length,
    ignored: ignored.map((file) => toPosix(relative(root, file))),
    findings,
    unanalysed,
    rules: describeRules(rules),
    baselineUsed: options.baseline !== undefined,
    staleBaseline,
    startedAt,
    finishedAt: new Date(),
  };
}

async function loadEslint(): Promise<typeof EslintModule> {
  try {
    return await import('eslint');
  } catch (cause) {
    throw new ScanUsageError('GOVMAP_SCAN_ESLINT_MISSING', 'govmap scan needs eslint (>= 9) and typescript installed in the project: npm install --save-dev eslint typescript', {}, { cause });
  }
}

function checkRuleOverrides(overrides: Readonly<Record<string, unknown>>): Record<string, unknown> {
  for (const id of Object.keys(overrides)) {
    const name = id.startsWith('govmap/') ? id.slice('govmap/'.length) : null;
    if (name === null || !(name in plugin.rules)) {
      throw new ScanUsageError('GOVMAP_SCAN_CONFIG_INVALID', `rule "${id}" is not a govmap rule; known rules: ${Object.keys(plugin.rules).map((r) => `govmap/${r}`).join(', ')}`, { rule: id });
    }
  }
  return { ...overrides };
}

/**
 * The longest ESLint configuration message shown. Its schema errors run one line per broken
 * constraint (the rule, the value, then the reason: `Unexpected property "x". Expected
 * properties: ...`), a few hundred characters; the bound only stops a pathological one.
 */
const MAX_CONFIG_MESSAGE = 2000;

/** ESLint throws on an invalid rule option; that is the user's config, so a usage error. */
function asConfigError(cause: unknown): Error {
  if (cause instanceof ScanUsageError) return cause;
  const message = cause instanceof Error ? cause.message : String(cause);
  if (/Configuration for rule|Key "rules"|Could not find/.test(message)) {
    // The reason is on the later lines: keep them all, joined into the one line the CLI prints.
    const whole = message
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line.length > 0)
      .join(' ');
    const shown = whole.length > MAX_CONFIG_MESSAGE ? `${whole.slice(0, MAX_CONFIG_MESSAGE - 3)}...` : whole;
    return new ScanUsageError('GOVMAP_SCAN_CONFIG_INVALID', `the scan configuration is invalid: ${shown}`, {}, { cause });
  }
  return cause instanceof Error ? cause : new Error(message);
}

function toPosix(path: string): string {
  return sep === '/' ? path : path.split(sep).join('/');
}

function collect(result: ESLint.LintResult, root: string, out: Array<Omit<Finding, 'fingerprint' | 'baseline'>>, unanalysed: Unanalysed[]): void {
  const file = toPosix(relative(root, result.filePath));
  for (const message of result.messages) {
    if (message.fatal === true) {
      // A parse error carries where the parser stopped; a failure to find a tsconfig has line 0.
      // ESLint passes the parser's column through, expecting espree's 1-based one, but
      // typescript-estree's TSError column is TypeScript's 0-based character: made 1-based here,
      // like every other column in the report.
      const located = message.line > 0;
      unanalysed.push({ file, line: located ? message.line : null, column: located ? message.column + 1 : null, message: statedReason(message.message) });
      continue;
    }
    if (message.ruleId?.startsWith('govmap/') !== true) continue;
    out.push(toFinding(file, message, null));
  }
  for (const message of result.suppressedMessages) {
    if (message.ruleId?.startsWith('govmap/') !== true) continue;
    const justification = message.suppressions
      .map((s) => s.justification.trim())
      .filter((j) => j.length > 0)
      .join('; ');
    out.push(toFinding(file, message, justification));
  }
}

/**
 * `/* eslint govmap/no-rmw-across-await: off *\/` switches a rule off (or down) for the whole
 * file, with no reason and no trace in any report: one line at the top of a file, and a lost
 * update there scanned as 0 errors, exit 0 (it can switch off require-suppression-reason too, so
 * no rule can police it). ESLint's noInlineConfig would also drop the `eslint-disable ... --
 * reason` directives the scan honours, so each such comment is reported here instead, as an
 * error of require-suppression-reason: the gate fails until it is removed.
 */
async function inlineRuleConfigs(path: string, root: string): Promise<Array<Omit<Finding, 'fingerprint' | 'baseline'>>> {
  const text = await readFile(path, 'utf8').catch(() => '');
  if (!text.includes('govmap/')) return [];
  const file = toPosix(relative(root, path));
  const found: Array<Omit<Finding, 'fingerprint' | 'baseline'>> = [];
  for (const match of text.matchAll(/\/\*([\s\S]*?)\*\//g)) {
    const body = match[1]!;
    // `eslint ...` configures rules; `eslint-disable`, `eslint-enable` and `eslint-env` do not.
    if (!/^\s*eslint\s/.test(body) || !/\bgovmap\//.test(body)) continue;
    const start = positionOf(text, match.index);
    const end = positionOf(text, match.index + match[0].length);
    const rules = [...body.matchAll(/govmap\/[a-z-]+/g)].map((m) => m[0]);
    found.push({
      ruleId: 'govmap/require-suppression-reason',
      file,
      line: start.line,
      column: start.column,
      endLine: end.line,
      endColumn: end.column,
      severity: 'error',
      message: `Inline configuration of ${[...new Set(rules)].join(', ')} switches the rule for the whole file, with no reason and no report: govmap scan does not accept it. Remove it; to accept one finding, put \`// eslint-disable-next-line <rule> -- <reason>\` above it.`,
      suppression: null,
    });
  }
  return found;
}

/** 1-based line and column (UTF-16 units) of `offset`, lines counted as ESLint counts them. */
function positionOf(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split(LINE_BREAK);
  return { line: before.length, column: before.at(-1)!.length + 1 };
}

/**
 * A parse failure as one line. Its first line alone may not say what is wrong (typescript-eslint:
 * "ESLint was configured to lint X with type information from `parserOptions.project`:
 * tsconfig.json", the reason on the next line), so every line that states the problem is kept; the
 * "Either: - ..." advice is about an ESLint config, which `govmap scan` has none of, and is dropped.
 */
function statedReason(message: string): string {
  return message
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && line !== 'Either:' && !line.startsWith('- ') && !line.startsWith('See the typescript-eslint docs'))
    .map((line) => line.replace(/\s*Either:$/, ''))
    .join('; ');
}

function toFinding(file: string, message: Linter.LintMessage, suppression: string | null): Omit<Finding, 'fingerprint' | 'baseline'> {
  return {
    ruleId: message.ruleId!,
    file,
    line: message.line,
    column: message.column,
    endLine: message.endLine ?? message.line,
    endColumn: message.endColumn ?? message.column,
    severity: message.severity === 2 ? 'error' : 'warning',
    message: message.message,
    suppression,
  };
}

async function finish(raw: Array<Omit<Finding, 'fingerprint' | 'baseline'>>, root: string, baseline: Baseline | undefined): Promise<Finding[]> {
  const lines = new Map<string, string[]>();
  for (const file of new Set(raw.map((f) => f.file))) {
    lines.set(file, (await readFile(join(root, file), 'utf8')).split(LINE_BREAK));
  }
  const fingerprints = fingerprintAll(raw, (f) => lines.get(f.file)?.[f.line - 1] ?? '');
  const sorted = [...raw].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column || a.ruleId.localeCompare(b.ruleId));
  return sorted.map((f) => {
    const fingerprint = fingerprints.get(f)!;
    return { ...f, fingerprint, baseline: f.suppression === null && baseline !== undefined && baseline.take(fingerprint) };
  });
}

/**
 * The baseline's unmatched entries that this scan could have matched: a file named in the
 * entry and under the paths, neither ignored nor unanalysed (its findings are unknown), either
 * scanned or gone. A scan of part of a tree must not call the rest of the baseline stale; an entry
 * with no file (a bare fingerprint) counts only when the scan covered the whole root.
 */
function staleEntries(baseline: Baseline, root: string, paths: readonly string[], ignored: ReadonlySet<string>, unanalysed: readonly Unanalysed[]): BaselineEntry[] {
  const scopes = paths.map((p) => toPosix(relative(root, resolve(root, p))));
  const wholeRoot = scopes.includes('');
  const notAnalysed = new Set(unanalysed.map((u) => u.file));
  return baseline.unmatched().filter((entry) => {
    if (entry.file === null) return wholeRoot;
    if (notAnalysed.has(entry.file) || ignored.has(entry.file)) return false;
    return wholeRoot || scopes.some((scope) => entry.file === scope || entry.file!.startsWith(`${scope}/`));
  });
}

function describeRules(configured: Linter.RulesRecord): RuleInfo[] {
  return Object.entries(plugin.rules).map(([name, rule]) => {
    const id = `govmap/${name}`;
    const setting = configured[id];
    const raw = Array.isArray(setting) ? (setting[0] as unknown) : setting;
    const level = raw === 'error' || raw === 2 ? 'error' : raw === 'warn' || raw === 1 ? 'warning' : 'off';
    return { id, description: rule.meta.docs?.description ?? name, docs: rule.meta.docs?.url ?? `docs/lint.md#${name}`, level };
  });
}

/**
 * Every TypeScript source under `paths`, sorted, minus skipped directories and declaration
 * files, split into the files to lint and those an ESLint ignore pattern skips (counted, so a
 * report never passes over them in silence).
 *
 * A path outside the root is refused, not scanned: ESLint treats every file outside its cwd as
 * ignored, and reports and fingerprints name files relative to the root, which a file outside it
 * does not have. Widening the root to cover it instead would change every fingerprint, so a
 * baseline saved from the usual directory would stop matching.
 */
async function collectFiles(root: string, paths: readonly string[], eslint: ESLint): Promise<{ files: string[]; ignored: string[] }> {
  const found = new Set<string>();
  const notSources: string[] = [];
  for (const p of paths) {
    // resolve(root, '') is the root itself: `govmap scan "$DIR"` with DIR unset scanned the whole
    // project (minutes, and findings from code nobody meant) instead of saying the path is empty.
    if (typeof p !== 'string' || p.trim() === '') {
      throw new ScanUsageError('GOVMAP_SCAN_PATH_EMPTY', `a path is empty (${JSON.stringify(p)}): name a file or directory, or give no path to scan the current directory`, { path: p });
    }
    const absolute = resolve(root, p);
    if (!existsSync(absolute)) throw new ScanUsageError('GOVMAP_SCAN_PATH_NOT_FOUND', `path "${p}" does not exist (resolved to ${absolute})`, { path: p });
    if (isOutside(root, absolute)) {
      throw new ScanUsageError(
        'GOVMAP_SCAN_PATH_OUTSIDE_ROOT',
        `path "${p}" is outside the scan root ${root} (resolved to ${absolute}): paths must lie under the root, which reports and fingerprints are relative to; run the scan from a directory that holds every path`,
        { path: p, root },
      );
    }
    if (statSync(absolute).isDirectory()) await walkDirectory(root, absolute, found, eslint);
    else if (TYPESCRIPT_SOURCE.test(absolute) && !DECLARATION_FILE.test(absolute)) found.add(absolute);
    // Named by the user, so they believe it is scanned: dropping it would be a silent pass.
    else notSources.push(p);
  }
  if (notSources.length > 0) {
    const named = notSources.map((p) => `"${p}"`).join(', ');
    throw new ScanUsageError(
      'GOVMAP_SCAN_PATH_NOT_TYPESCRIPT',
      `${notSources.length === 1 ? 'path' : 'paths'} ${named} ${notSources.length === 1 ? 'is not a TypeScript source' : 'are not TypeScript sources'}: govmap scan analyses *.ts, *.tsx, *.mts, *.cts files (not declaration files *.d.ts); leave ${notSources.length === 1 ? 'it' : 'them'} out of the paths`,
      { paths: notSources },
    );
  }
  const files: string[] = [];
  const ignored: string[] = [];
  for (const file of [...found].sort()) {
    if (DECLARATION_FILE.test(file)) continue;
    if (await eslint.isPathIgnored(file)) ignored.push(file);
    else files.push(file);
  }
  return { files, ignored };
}

/** True when `path` (absolute) is not `root` nor under it. */
function isOutside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel);
}

/**
 * Symbolic links are not followed (a link is neither a file nor a directory entry here): a link
 * loop cannot hang the walk, and a linked file is scanned where it really lives, when that is
 * under the paths.
 */
async function walkDirectory(root: string, directory: string, found: Set<string>, eslint: ESLint): Promise<void> {
  let entries;
  try {
    entries = await readdir(directory, { withFileTypes: true });
  } catch (cause) {
    // An ignored directory need not be readable (a root-owned volume in a CI checkout); any
    // other holds files the scan cannot vouch for, so it is not passed over in silence.
    if (await eslint.isPathIgnored(join(directory, 'ignored.ts'))) return;
    const where = toPosix(relative(root, directory)) || '.';
    const code = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    throw new ScanUsageError(
      'GOVMAP_SCAN_PATH_UNREADABLE',
      `directory "${where}" cannot be read (${code}): the scan cannot vouch for the files in it; make it readable or --ignore '${where}/**'`,
      { path: where, reason: code },
      { cause },
    );
  }
  for (const entry of entries) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRECTORIES.has(entry.name)) await walkDirectory(root, path, found, eslint);
    } else if (entry.isFile() && TYPESCRIPT_SOURCE.test(entry.name)) {
      found.add(path);
    }
  }
}
