import { InvalidArgumentError, Option } from 'commander';
import type { Command, CommanderError } from 'commander';
import type { LeakSuspect, SandboxReport } from '../sandbox/index.ts';
import { MAX_ANSWER_BYTES, readCapped } from '../advisor/sources.ts';
import { checkSandboxReport } from '../sandbox/report-schema.ts';
import { AUTH_ENV_HELP, AUTH_FILE_HELP, CREDENTIALS_RULE, GivenOnce, authHint, authorizationFromFlags, redactedIfCredentials } from './advise-command.ts';

export interface SandboxReportOptions {
  readonly url: string;
  readonly json?: boolean;
  readonly timeout: number;
  readonly failOnSuspects?: boolean;
  readonly authEnv?: string;
  readonly authFile?: string;
}

/**
 * Exit statuses: 0 done, 1 the service could not be read, 2 usage error, 3 with
 * --fail-on-suspects: suspects found, 4 the service refused the credentials (HTTP 401/403).
 */
export const EXIT_UNREACHABLE = 1;
export const EXIT_USAGE = 2;
export const EXIT_SUSPECTS = 3;
export const EXIT_AUTH = 4;

/** Adds `govmap sandbox report` to the program. */
export function registerSandboxCommand(program: Command): void {
  const once = new GivenOnce();
  const asIs = (raw: string): string => raw;
  const sandbox = program.command('sandbox').description('the runtime audit sandbox of a running service');
  sandbox
    .command('report')
    .description('leak suspects (idle maps, growing creation sites, keys that only grow) and GC pauses of a running service, from its GET /sandbox/report')
    .requiredOption('--url <url>', 'the service, e.g. http://127.0.0.1:8080 (the demo serves /sandbox/report)', once.parser('--url', asIs))
    .option('--json', 'print the report as JSON, as the service sent it')
    .option(
      '--timeout <seconds>',
      'request timeout',
      once.parser('--timeout', (raw: string) => {
        if (!/^[0-9]+$/.test(raw) || Number(raw) < 1 || Number(raw) > 600) throw new InvalidArgumentError(`--timeout must be a whole number of seconds from 1 to 600 (got "${raw}")`);
        return Number(raw);
      }),
      10,
    )
    .addOption(new Option('--auth-env <name>', AUTH_ENV_HELP).conflicts('authFile').argParser(once.parser('--auth-env', asIs)))
    .option('--auth-file <file>', AUTH_FILE_HELP, once.parser('--auth-file', asIs))
    .option('--fail-on-suspects', `exit ${EXIT_SUSPECTS} when the report lists any suspect`)
    .exitOverride((error: CommanderError) => {
      process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
    })
    .action(async (options: SandboxReportOptions) => {
      const repeated = once.problem();
      if (repeated !== null) {
        console.error(`govmap sandbox report: ${repeated}`);
        process.exitCode = EXIT_USAGE;
        return;
      }
      await sandboxReportCommand(options);
    });
}

export async function sandboxReportCommand(options: SandboxReportOptions): Promise<void> {
  let endpoint: string;
  try {
    const base = new URL(options.url);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http');
    // The endpoint itself, copied with a trailing slash, was read as a base: /sandbox/report/sandbox/report.
    const path = base.pathname.replace(/\/+$/, '');
    if (path.endsWith('/sandbox/report')) base.pathname = path;
    endpoint = path.endsWith('/sandbox/report') ? base.href : new URL('sandbox/report', base.href.endsWith('/') ? base.href : `${base.href}/`).href;
  } catch {
    console.error(`govmap sandbox report: --url must be an http(s) URL of the service, e.g. http://127.0.0.1:8080 (got "${options.url}")`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const withCredentials = redactedIfCredentials(options.url);
  if (withCredentials !== null) {
    console.error(`govmap sandbox report: --url ${withCredentials}: ${CREDENTIALS_RULE}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const auth = authorizationFromFlags(options);
  if ('problem' in auth) {
    console.error(`govmap sandbox report: ${auth.problem}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const authorization = auth.authorization;
  // A service that echoes the request in its error page must not get the token printed.
  const credential = authorization?.slice(authorization.indexOf(' ') + 1);
  const shown = (text: string): string => (credential === undefined ? text : text.split(credential).join('***'));
  let report: SandboxReport;
  try {
    const response = await fetch(endpoint, { signal: AbortSignal.timeout(options.timeout * 1000), ...(authorization === undefined ? {} : { headers: { authorization } }) });
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      const why = authorization === undefined ? 'it requires credentials and none were sent' : response.status === 403 ? 'the credentials sent do not allow this request' : 'the credentials sent were not accepted';
      console.error(`govmap sandbox report: ${endpoint}: the service refused authentication (HTTP ${response.status}): ${why}${authHint(authorization !== undefined)}`);
      process.exitCode = EXIT_AUTH;
      return;
    }
    // Capped as advise's answers are: a service flooding its answer cannot exhaust this process.
    const text = await readCapped(response, MAX_ANSWER_BYTES, (why) => new Error(why));
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${shown(text).slice(0, 300)}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`the answer is not a govmap sandbox report (not JSON: ${JSON.stringify(shown(text).slice(0, 80))})`);
    }
    const checked = checkSandboxReport(parsed);
    if (!checked.ok) throw new Error(`the answer is not a govmap sandbox report (${checked.problem})`);
    report = checked.report;
  } catch (error) {
    const reason = error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
    console.error(`govmap sandbox report: cannot read ${endpoint}: ${reason}`);
    process.exitCode = EXIT_UNREACHABLE;
    return;
  }
  console.log(options.json === true ? JSON.stringify(report, null, 2) : formatSandboxReport(report, endpoint));
  if (options.failOnSuspects === true && report.suspects.length > 0) process.exitCode = EXIT_SUSPECTS;
  // A gate must not pass on a sandbox that judged nothing: stopped, its "no suspects" is silence.
  else if (options.failOnSuspects === true && !report.running) {
    console.error(`govmap sandbox report: the sandbox of ${endpoint} is not running (stopped): no map was judged, so no verdict`);
    process.exitCode = EXIT_UNREACHABLE;
  }
}

const ms = (seconds: number | null): string => (seconds === null ? '-' : seconds >= 1 ? `${seconds.toFixed(2)}s` : `${(seconds * 1000).toFixed(1)}ms`);

function site(frames: readonly string[] | undefined, indent: string): string[] {
  if (frames === undefined || frames.length === 0) return [`${indent}created at: (site not captured: budget spent, or tracked after creation)`];
  return [`${indent}created at: ${frames[0]}`, ...frames.slice(1).map((f) => `${indent}        via ${f}`)];
}

function suspectLines(s: LeakSuspect): string[] {
  switch (s.kind) {
    case 'IDLE':
      return [`IDLE         ${s.instances} x "${s.map}" (${s.keys} keys), no access for ${Math.round(s.idleForMs.min / 1000)}s to ${Math.round(s.idleForMs.max / 1000)}s; oldest created ${s.oldestCreatedAt}`, ...site(s.site?.frames, '             ')];
    case 'SITE_GROWTH':
      return [`SITE_GROWTH  ${s.live} live "${s.maps.join('", "')}" maps, up from ${s.grewFrom} over ${s.risingSamples} post-GC samples since ${s.since}`, ...site(s.site.frames, '             ')];
    case 'KEY_GROWTH':
      return [`KEY_GROWTH   "${s.map}" #${s.instance}: ${s.grewFrom} -> ${s.keys} keys, never shrinking over ${s.risingSweeps} rising sweeps since ${s.since}`, ...site(s.site?.frames, '             ')];
  }
}

/** The report for a person: counts, each suspect with its creation site, GC pauses and trend. */
export function formatSandboxReport(r: SandboxReport, source: string): string {
  const out: string[] = [];
  out.push(`sandbox report of ${source}`);
  out.push(`  ${r.sweeps} sweeps, last ${r.lastSweepAt ?? 'never'} (${r.lastSweepMs === null ? '-' : `${r.lastSweepMs.toFixed(2)} ms`}); idle threshold ${ms(r.settings.idleThresholdMs / 1000)}, sweep every ${ms(r.settings.sweepIntervalMs / 1000)}`);
  const i = r.instances;
  out.push(`  maps: ${i.live} live, ${i.created} created, ${i.collected} collected, ${i.disposed} disposed; creation sites captured ${i.sitesCaptured}, skipped ${i.sitesSkipped} (budget ${r.settings.siteCapturesPerSecond}/s)`);
  out.push('');
  if (!r.running) out.push('the sandbox is not running (stopped): nothing is being swept or judged; the figures above are from before it stopped');
  if (r.suspects.length === 0) out.push(r.running ? 'no leak suspects' : 'no leak suspects listed (none judged since the stop)');
  else {
    out.push(`${r.suspects.length + r.suspectsNotListed} leak suspect(s)${r.suspectsNotListed > 0 ? ` (${r.suspectsNotListed} not listed)` : ''}:`);
    for (const s of r.suspects) out.push(...suspectLines(s).map((l) => `  ${l}`));
  }
  out.push('');
  if (r.gc.pauses === null) out.push('GC: not observed');
  else {
    const parts = Object.entries(r.gc.pauses)
      .filter(([, k]) => k.count > 0)
      .map(([kind, k]) => `${kind} ${k.count} (p99 ${ms(k.p99Seconds)}, max ${ms(k.maxSeconds)})`);
    out.push(`GC pauses: ${parts.length === 0 ? 'none yet' : parts.join('; ')}`);
    const t = r.gc.trend;
    if (t !== null) {
      // Whole minutes as minutes, anything else in seconds: rounding to minutes showed a 30 s window as "1-minute" and a 2 s one as "0-minute".
      const window = `${t.windowMs % 60_000 === 0 ? `${t.windowMs / 60_000}-minute` : `${+(t.windowMs / 1000).toFixed(3)}-second`} windows`;
      out.push(
        t.rising === null
          ? `GC trend: unknown until two whole ${window} are observed`
          : `GC trend: ${ms(t.recentPauseSeconds)} paused in the latest of two ${window} vs ${ms(t.previousPauseSeconds)} before (${(t.recentPauseFraction * 100).toFixed(2)}% of the time): ${t.rising ? 'RISING' : 'not rising'}`,
      );
    }
  }
  if (r.topSites.length > 0) {
    out.push('');
    out.push('creation sites with the most live maps:');
    for (const s of r.topSites) out.push(`  ${String(s.live).padStart(6)}  ${s.maps.join(', ')}  ${s.site.frames[0] ?? ''}`);
  }
  return out.join('\n');
}
