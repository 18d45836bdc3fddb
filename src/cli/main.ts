#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { CommanderError } from 'commander';
import { demoCommand } from './demo-command.ts';
import { OPTIONAL_PARTS, PartsListError, parseParts } from '../../demo/parts.ts';
import type { OptionalPart } from '../../demo/parts.ts';
import { registerScanCommand } from './scan-command.ts';
import { registerSandboxCommand } from './sandbox-command.ts';
import { registerAdviseCommand } from './advise-command.ts';
import { registerAuditCommand } from './audit-command.ts';
import { closedPipeStop } from './closed-pipe.ts';

/** The exit status of a usage error. */
const EXIT_USAGE = 2;

/** The status a shell gives a command stopped by a closed pipe (128 + SIGPIPE). */
const EXIT_PIPE_CLOSED = 141;

// A reader that goes away (`govmap audit tail -f … | head`, quitting `less` or `jq`) makes the
// next write to stdout fail with EPIPE, emitted as an 'error' event nobody handled: a stack trace
// and exit 1, which a CI gate reads as "tampered" or "findings". Stop quietly instead, with the
// shell's status for it: not 0 either, since the output did not all reach its reader.
let pipeClosed = false;
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  // Once closed, every later write fails too (ERR_STREAM_DESTROYED): the stop below still runs.
  if (pipeClosed) return;
  if (error.code === 'EPIPE') {
    pipeClosed = true;
    const stop = closedPipeStop();
    if (stop === null) process.exit(EXIT_PIPE_CLOSED);
    void stop().finally(() => process.exit(EXIT_PIPE_CLOSED));
    return;
  }
  process.stderr.write(`govmap: cannot write to stdout and did not finish: ${error.stack ?? error.message}\n`);
  process.exit(EXIT_USAGE);
});

/** Parses a whole number option, naming the option and the rule when it is not one. */
export function integerOption(name: string, min: number, max: number): (raw: string) => number {
  return (raw) => {
    const value = Number(raw);
    if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
    }
    return value;
  };
}

/**
 * govmap's version from its package.json: two levels above src/cli/ in a checkout, three above
 * dist/src/cli/ in an installed package, so it is looked for upward from this file.
 */
function packageVersion(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'govmap' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json here (or not readable): look further up.
    }
  }
  return 'unknown';
}

/**
 * Parses `--without audit,routing`, naming the value and the parts there are when it is not a
 * list of them. Given twice (`--without audit --without routing`), the lists add up: commander
 * would otherwise keep only the last one and silently run with audit.
 */
function partsOption(raw: string, previous: OptionalPart[] | undefined): OptionalPart[] {
  try {
    return parseParts(previous === undefined ? raw : `${previous.join(',')},${raw}`);
  } catch (error) {
    if (error instanceof PartsListError) throw new InvalidArgumentError(error.message);
    throw error;
  }
}

/** Parses a rate from 0 to 1, naming the option when it is not one. */
function rateOption(name: string): (raw: string) => number {
  return (raw) => {
    const value = Number(raw);
    if (!/^[0-9.]+$/.test(raw) || !(value >= 0 && value <= 1)) throw new InvalidArgumentError(`${name} must be a number from 0 to 1 (got "${raw}")`);
    return value;
  };
}

const program = new Command()
  .name('govmap')
  .description('Governed concurrent maps for financial-grade Node.js services')
  // What a bug report and an upgrade check ask first.
  .version(packageVersion(), '-V, --version', 'print the govmap version and exit')
  .showHelpAfterError('(add --help for usage)')
  .configureOutput({ outputError: (text, write) => write(text) })
  // A usage error (unknown command or option, a bad value) exits 2 like every other refusal of
  // ours, not commander's 1: scripts tell "you called it wrong" from "it ran and failed" (for
  // `audit verify`, 1 means tampered). Subcommands declared below inherit this.
  .exitOverride((error: CommanderError) => {
    process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
  });

program
  .command('demo')
  .description('run the reference clearing service (balances in a GovernedMap, /metrics) on 127.0.0.1:8080')
  .addOption(new Option('-p, --port <port>', 'port to listen on (0 = any free port)').env('PORT').default(8080).argParser(integerOption('--port', 0, 65535)))
  .option('--host <host>', 'interface to listen on', '127.0.0.1')
  .option('--allowed-hosts <names>', 'names the service answers to in Host besides localhost, *.localhost, IP addresses and --host (comma-separated; default $GOVMAP_DEMO_ALLOWED_HOSTS); any other is refused with 403, against DNS rebinding')
  .option('--accounts <n>', 'accounts to seed (acct-000000…)', integerOption('--accounts', 1, 1_000_000), 1000)
  .option('--load', 'also drive traffic at the service and print progress (--duration, --concurrency and --exit need it)')
  .option('--duration <seconds>', 'with --load: how long to drive traffic; the service then keeps running unless --exit', integerOption('--duration', 1, 86_400), 10)
  .option('--concurrency <n>', 'with --load: requests in flight', integerOption('--concurrency', 1, 1024), 16)
  .option('--exit', 'with --load: stop the service when the load ends (exit code 1 if any 5xx was seen; 130/143 if SIGINT/SIGTERM stops the load before its end)')
  .option('--redis <url>', 'keep the balances in Redis (redis://host:port), shared by every demo process pointed at it')
  .option('--redis-cluster <nodes>', 'keep the balances in a Redis Cluster (host:port[,host:port...])')
  .option('--redis-ca-file <path>', "with rediss:// in --redis or --redis-cluster: PEM file of the CA that signed the servers' certificates (a private CA, trusted by this connection only)")
  .option('--etcd <endpoints>', 'share circuit-breaker state with other demo processes through etcd (host:port[,host:port])')
  .option('--instance <name>', "this process's name in the breaker cluster, stable across restarts (default <hostname>-<pid>)")
  .option('--gateway-failure-rate <rate>', 'share of settlement gateway calls that fail, 0 to 1 (change it live: POST /admin/faults)', rateOption('--gateway-failure-rate'), 0)
  .option('--gateway-latency <ms>', 'settlement gateway latency, milliseconds', integerOption('--gateway-latency', 0, 60_000), 5)
  .option('--no-traffic', 'no background traffic (by default the demo sends itself a payment and a transfer per org a second from three orgs, plus balance reads: ~250 requests/s, so the dashboard at / shows live data)')
  .option('--audit-dir <dir>', 'audit spool: every LOAD/STORE/DELETE/RANGE of the balances, tamper-evident (check: govmap audit verify <dir>)', './.govmap/audit')
  .option('--kafka <brokers>', 'also forward the audit to Kafka (host:port[,host:port...]), topic govmap.audit')
  .option('--bare', 'benchmark baseline: the same API on a plain Map, without any governance (no validator, metrics, audit)')
  .option('--without <parts>', `leave parts of governance out, to measure what each costs (govmap bench cost): ${OPTIONAL_PARTS.join(', ')}, comma-separated`, partsOption)
  .action(demoCommand);

registerScanCommand(program);
registerSandboxCommand(program);
registerAdviseCommand(program);
registerAuditCommand(program, integerOption);

program
  .command('bench')
  .description('run a benchmark suite (map, load, …; no suite lists them): prints a table, --json adds the JSON line')
  .argument('[suite]', 'suite name')
  .allowUnknownOption()
  .allowExcessArguments()
  .helpOption(false)
  .action(async (suite: string | undefined, _options: unknown, command: Command) => {
    const { benchCommand } = await import('./bench-command.ts');
    await benchCommand(suite, command.args.slice(suite === undefined ? 0 : 1));
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  // A failure no command handled (a bug of ours, an I/O error mid-run) must not exit 1: for
  // `audit verify` 1 means "tampered", for `scan` "findings", and a CI gate written as
  // `|| test $? -eq 1` would pass. It did not finish: exit 2, with the stack for the bug report.
  const [first = '', second = ''] = process.argv.slice(2);
  const command = first === 'audit' || first === 'sandbox' ? `${first} ${second}` : first;
  process.stderr.write(`govmap${command === '' ? '' : ` ${command}`}: failed unexpectedly and did not finish: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = EXIT_USAGE;
}
