import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { InvalidArgumentError, Option } from 'commander';
import type { Command, CommanderError } from 'commander';
import { authorizationProblem } from '../advisor/sources.ts';

export interface AdviseCommandOptions {
  readonly url?: string;
  readonly prometheus?: string;
  readonly json?: boolean;
  readonly map?: string[];
  readonly window: number;
  readonly timeout: number;
  readonly check?: boolean;
  readonly authEnv?: string;
  readonly authFile?: string;
}

/**
 * Exit statuses: 0 done, 1 the source could not be read, 2 usage error (a URL that is not
 * http(s), a --map the source does not have: a misspelt map must not pass a CI gate forever),
 * 3 with --check: a map should migrate, 4 the source refused the credentials (HTTP 401/403):
 * a cron job must tell an expired token, which a retry never fixes, from a source down.
 */
export const EXIT_SOURCE = 1;
export const EXIT_USAGE = 2;
export const EXIT_MIGRATE = 3;
export const EXIT_AUTH = 4;

/** How many of the source's maps a "no such map" refusal lists, enough to spot the misspelling. */
const MAPS_NAMED = 20;

function seconds(name: string, min: number, max: number): (raw: string) => number {
  return (raw) => {
    const value = Number(raw);
    if (!/^[0-9]+$/.test(raw) || value < min || value > max) throw new InvalidArgumentError(`${name} must be a whole number of seconds from ${min} to ${max} (got "${raw}")`);
    return value;
  };
}

/**
 * Options that take one value, each refusing a second occurrence. Commander keeps the last one
 * silently, so `--url prod … --url staging` (a flag appended by a wrapper script) gated on
 * staging and `--timeout 5 --timeout 600` waited ten minutes. The refusal is said by the action,
 * not thrown from the parser: commander's parse error echoes the value, and a --url may carry a
 * password.
 */
export class GivenOnce {
  private readonly seen = new Set<string>();
  private readonly repeated: string[] = [];

  /** The parser of `flag`: `parse` on its first value, a note of the repetition on the next. */
  parser<T>(flag: string, parse: (raw: string) => T): (raw: string) => T {
    return (raw) => {
      if (this.seen.has(flag) && !this.repeated.includes(flag)) this.repeated.push(flag);
      this.seen.add(flag);
      return parse(raw);
    };
  }

  /** The usage error to print when an option was given more than once, else null. */
  problem(): string | null {
    return this.repeated.length === 0 ? null : `${this.repeated.join(', ')} ${this.repeated.length === 1 ? 'is' : 'are'} given more than once: give it once (which value was meant is not guessed)`;
  }
}

const asIs = (raw: string): string => raw;

/** Adds `govmap advise` to the program. */
export function registerAdviseCommand(program: Command): void {
  const once = new GivenOnce();
  program
    .command('advise')
    .description('migration advice per map (stay, shared-memory-store, redis-store, not-a-map-workload) with the signals and figures behind it')
    .addOption(new Option('--url <url>', 'a running service\'s Prometheus metrics endpoint, e.g. http://127.0.0.1:8080/metrics').conflicts('prometheus').argParser(once.parser('--url', asIs)))
    .addOption(new Option('--prometheus <url>', 'a Prometheus server scraping govmap services (its HTTP query API), e.g. http://127.0.0.1:9090').argParser(once.parser('--prometheus', asIs)))
    .option('--map <name...>', `only these maps (exit ${EXIT_USAGE} if the source has no map of that name)`)
    .option('--window <seconds>', 'with --prometheus: window of the miss ratio and the GC trend', once.parser('--window', seconds('--window', 10, 86_400)), 300)
    .option('--timeout <seconds>', 'per-request timeout', once.parser('--timeout', seconds('--timeout', 1, 600)), 10)
    .addOption(new Option('--auth-env <name>', AUTH_ENV_HELP).conflicts('authFile').argParser(once.parser('--auth-env', asIs)))
    .option('--auth-file <file>', AUTH_FILE_HELP, once.parser('--auth-file', asIs))
    .option('--json', 'print {source, generatedAt, advice:[...]} as JSON')
    .option('--check', `exit ${EXIT_MIGRATE} when any map should move (for cron jobs and CI gates)`)
    .exitOverride((error: CommanderError) => {
      process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
    })
    .action(async (options: AdviseCommandOptions, command: Command) => {
      const repeated = once.problem();
      if (repeated !== null) {
        console.error(`govmap advise: ${repeated}`);
        process.exitCode = EXIT_USAGE;
        return;
      }
      await adviseCommand(options, command);
    });
}

export async function adviseCommand(options: AdviseCommandOptions, command?: Command): Promise<void> {
  if ((options.url === undefined) === (options.prometheus === undefined)) {
    console.error('govmap advise: give exactly one source: --url <metrics endpoint> or --prometheus <Prometheus URL>');
    process.exitCode = EXIT_USAGE;
    return;
  }
  // Commander fills --window with its default: only a typed one counts. With --url it would be
  // ignored silently, and the advice read as judged on a window it was not judged on.
  if (options.url !== undefined && command?.getOptionValueSource('window') === 'cli') {
    console.error("govmap advise: --window applies to --prometheus only (with --url the figures are the service's own windows: the advisor's windowMs, or the map metrics' 5-minute sliding window)");
    process.exitCode = EXIT_USAGE;
    return;
  }
  // Checked before any request: "notaurl" or ftp:// is a usage error (2), not an unreachable source (1).
  const given = options.url !== undefined ? { flag: '--url', url: options.url, example: 'http://127.0.0.1:8080/metrics' } : { flag: '--prometheus', url: options.prometheus!, example: 'http://127.0.0.1:9090' };
  if (!isHttpUrl(given.url)) {
    console.error(`govmap advise: ${given.flag} must be an http:// or https:// URL, e.g. ${given.example} (got "${given.url}")`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const withCredentials = redactedIfCredentials(given.url);
  if (withCredentials !== null) {
    console.error(`govmap advise: ${given.flag} ${withCredentials}: ${CREDENTIALS_RULE}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const auth = authorizationFromFlags(options);
  if ('problem' in auth) {
    console.error(`govmap advise: ${auth.problem}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const advisor = await import('../advisor/index.ts');
  const timeoutMs = options.timeout * 1000;
  const authorization = auth.authorization;
  let evidence;
  try {
    evidence =
      options.url !== undefined
        ? await advisor.evidenceFromMetricsEndpoint(options.url, { timeoutMs, authorization })
        : await advisor.evidenceFromPrometheus(options.prometheus!, { timeoutMs, windowMs: options.window * 1000, authorization });
  } catch (error) {
    if (error instanceof advisor.AdvisorAuthError) {
      console.error(`govmap advise: ${error.message}${authHint(error.details.sent === true)}`);
      process.exitCode = EXIT_AUTH;
      return;
    }
    if (error instanceof advisor.AdvisorSourceError || error instanceof advisor.MetricsParseError) {
      console.error(`govmap advise: ${error.message}`);
      process.exitCode = EXIT_SOURCE;
      return;
    }
    throw error;
  }
  const wanted = options.map === undefined ? null : new Set(options.map);
  const advice = evidence.filter((e) => wanted === null || wanted.has(e.map)).map((e) => advisor.advise(e, e.thresholds));
  const missing = wanted === null ? [] : [...wanted].filter((name) => !evidence.some((e) => e.map === name));
  // A JSON document is read by a program, which sees no stderr: advice lacking a --map it asked
  // for would look complete. A person reading the text still gets the maps found (exit 2 below).
  if (options.json === true) {
    if (missing.length === 0) console.log(JSON.stringify({ source: options.url ?? options.prometheus, generatedAt: new Date().toISOString(), advice }, null, 2));
  } else if (advice.length > 0 || wanted === null) {
    // Every --map missing: the refusal below says so; "no govmap maps found" would be wrong.
    console.log(advisor.formatAdvice(advice));
  }
  if (options.check === true && advice.some((a) => a.recommendation !== 'stay')) process.exitCode = EXIT_MIGRATE;
  if (options.check === true && evidence.length === 0) {
    // A gate pointed at a source with no govmap map (node-exporter on the wrong port, a service
    // before its first map) judged nothing: passing it would pass it for good.
    console.error(`govmap advise: --check: ${options.url ?? options.prometheus} has no govmap map metrics (syncmap_*), so nothing was judged: is it the right source?`);
    process.exitCode = EXIT_SOURCE;
  }
  if (wanted !== null) {
    if (missing.length > 0) {
      // Wins over --check's 3: a gate watching a map that is not there (a typo, a renamed map)
      // would otherwise pass forever.
      const known = [...new Set(evidence.map((e) => e.map))].sort();
      const has = known.length === 0 ? 'no govmap maps' : `${known.slice(0, MAPS_NAMED).join(', ')}${known.length > MAPS_NAMED ? `, and ${known.length - MAPS_NAMED} more` : ''}`;
      console.error(`govmap advise: --map ${missing.join(', ')}: no such map at the source (it has: ${has})`);
      process.exitCode = EXIT_USAGE;
    }
  }
}

function isHttpUrl(raw: string): boolean {
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** Why a URL with credentials is refused, for `advise` and `sandbox report`. */
export const CREDENTIALS_RULE = 'a URL with a user or password is not supported (fetch refuses to send them); give the URL without them, and the credentials with --auth-env <name> or --auth-file <file>';

/**
 * The URL with its password masked when it carries a user or password, else null. Such a URL
 * (Prometheus behind basic auth) failed as "cannot reach" (exit 1, read as a source down) with
 * the password printed whole into the CI log.
 */
export function redactedIfCredentials(raw: string): string | null {
  try {
    const url = new URL(raw);
    if (url.username === '' && url.password === '') return null;
    if (url.password !== '') url.password = '***';
    return url.href;
  } catch {
    return null;
  }
}

export const AUTH_ENV_HELP = 'environment variable holding the Authorization header for the source: "Bearer <token>" or "Basic <base64 of user:password>"';
export const AUTH_FILE_HELP = 'file whose first line is the Authorization header for the source (as --auth-env)';

/** What to do after a 401/403, in the flags' words. */
export function authHint(sent: boolean): string {
  return sent ? ' (check the credentials given with --auth-env / --auth-file)' : ' (give credentials with --auth-env <name> or --auth-file <file>)';
}

/**
 * The Authorization header from --auth-env or --auth-file, for `advise` and `sandbox report`, or
 * the problem with it: named by the flag and the rule, never showing the value, and found
 * before any request (a malformed header sent would only come back as a 401).
 */
export function authorizationFromFlags(options: { readonly authEnv?: string; readonly authFile?: string }): { readonly authorization: string | undefined } | { readonly problem: string } {
  let flag: string;
  let value: string;
  if (options.authEnv !== undefined) {
    flag = `--auth-env ${options.authEnv}`;
    const raw = process.env[options.authEnv];
    if (raw === undefined) return { problem: `${flag}: environment variable ${options.authEnv} is not set` };
    value = raw.trim();
    if (value === '') return { problem: `${flag}: environment variable ${options.authEnv} is set but empty` };
  } else if (options.authFile !== undefined) {
    flag = `--auth-file ${options.authFile}`;
    let text: string;
    try {
      text = readFirstBytes(options.authFile, MAX_AUTH_FILE_BYTES);
    } catch (error) {
      return { problem: `${flag}: cannot read the file: ${(error as Error).message}` };
    }
    value = (text.split('\n')[0] ?? '').trim();
    if (value === '') return { problem: `${flag}: the first line of the file is empty (it must hold the Authorization header)` };
  } else {
    return { authorization: undefined };
  }
  const problem = authorizationProblem(value);
  return problem === null ? { authorization: value } : { problem: `${flag}: the value ${problem}` };
}

/** More than any Authorization header (proxies refuse headers past 8-16 KiB): only the first line is read. */
const MAX_AUTH_FILE_BYTES = 65_536;

/**
 * The first `max` bytes of a regular file. Read whole, `--auth-file /dev/zero` (or a FIFO
 * nobody writes) never returned, and a large file was held in memory for one line.
 */
function readFirstBytes(path: string, max: number): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${path} is not a regular file`);
    const buffer = Buffer.alloc(max);
    let length = 0;
    for (let n = -1; n !== 0 && length < max; length += n) n = readSync(fd, buffer, length, max - length, null);
    return buffer.toString('utf8', 0, length);
  } finally {
    closeSync(fd);
  }
}
