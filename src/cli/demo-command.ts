import { isIP } from 'node:net';
import type { Command } from 'commander';
import { formatProgress, runLoad } from '../../demo/load.ts';
import { startDemo } from '../../demo/server.ts';
import { demoRedisOptions } from '../../demo/redis.ts';
import { startBareDemo } from '../../demo/bare.ts';
import type { OptionalPart } from '../../demo/parts.ts';
import { EXIT_USAGE, describeStartFailure } from './demo-start-failure.ts';
import { beforeClosedPipeExit } from './closed-pipe.ts';

export interface DemoCommandOptions {
  readonly port: number;
  readonly host: string;
  /** `--allowed-hosts a,b`: names served in Host besides loopback ones and --host. */
  readonly allowedHosts?: string;
  readonly accounts: number;
  readonly load?: boolean;
  readonly duration: number;
  readonly concurrency: number;
  readonly exit?: boolean;
  readonly redis?: string;
  readonly redisCluster?: string;
  /** `--redis-ca-file`: the CA of a rediss:// server's certificate. */
  readonly redisCaFile?: string;
  readonly etcd?: string;
  readonly instance?: string;
  readonly gatewayFailureRate?: number;
  readonly gatewayLatency?: number;
  readonly bare?: boolean;
  /** Audit spool directory (`--audit-dir`, default ./.govmap/audit). */
  readonly auditDir?: string;
  /** Kafka brokers to forward the audit to (`--kafka host:port[,host:port]`). */
  readonly kafka?: string;
  /** Background traffic through the service's own handlers; `--no-traffic` sets it false. */
  readonly traffic?: boolean;
  /** Parts of governance left out (`--without audit,routing`), to measure what each costs. */
  readonly without?: readonly OptionalPart[];
}

/** Options that only shape the load run: given without --load they would do nothing. */
const LOAD_ONLY_OPTIONS = ['duration', 'concurrency', 'exit'] as const;

/**
 * Exit status of a demo stopped by a signal while its load was still running: 128 + the signal
 * number, as a shell reports it, so a CI gate on `--load --exit` reads an interrupted run as a
 * failure and never as a pass (0).
 */
const EXIT_INTERRUPTED: Readonly<Record<'SIGINT' | 'SIGTERM', number>> = { SIGINT: 130, SIGTERM: 143 };

export async function demoCommand(options: DemoCommandOptions, command?: Command): Promise<void> {
  const problem = usageProblem(options, command);
  if (problem !== null) {
    console.error(`govmap demo: ${problem}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  if (options.bare === true) return bareCommand(options);
  const auditDir = options.auditDir ?? './.govmap/audit';
  // A signal while the service starts (seconds with many accounts: each seeded balance is an
  // audit record) killed the process with the spool open: the next start then recorded a CRASH
  // gap for an operator's Ctrl-C. Held until the start is over, then stopped as below; a second
  // one still kills (the handlers are `once`).
  let early: 'SIGINT' | 'SIGTERM' | null = null;
  const onEarly = (signal: 'SIGINT' | 'SIGTERM'): void => {
    early = signal;
    console.error(`govmap demo: ${signal}: stopping as soon as the service has started (the audit spool is open; ${signal} again to kill it now)`);
  };
  process.once('SIGINT', onEarly);
  process.once('SIGTERM', onEarly);
  let demo;
  try {
    demo = await startDemo({
      port: options.port,
      host: options.host,
      allowedHosts: options.allowedHosts?.split(',').map((name) => name.trim()).filter((name) => name !== ''),
      accounts: options.accounts,
      redis: demoRedisOptions(options),
      settlement: { etcd: options.etcd, instance: options.instance, failureRate: options.gatewayFailureRate, latencyMs: options.gatewayLatency },
      audit: { dir: auditDir, kafka: options.kafka?.split(',').filter((b) => b !== '') },
      traffic: options.traffic !== false,
      without: options.without,
    });
  } catch (error) {
    const redis =
      options.redis !== undefined ? { flag: '--redis' as const, value: options.redis } : options.redisCluster !== undefined ? { flag: '--redis-cluster' as const, value: options.redisCluster } : undefined;
    const failure = describeStartFailure(error, { host: options.host, port: options.port, auditDir, ...(redis === undefined ? {} : { redis }) });
    if (failure === null) throw error;
    console.error(`govmap demo: ${failure.message}`);
    process.exitCode = failure.exitCode;
    return;
  } finally {
    process.off('SIGINT', onEarly);
    process.off('SIGTERM', onEarly);
  }
  // Once: a signal and a closed stdout may both ask for it.
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => (closed ??= demo.close());
  console.log(`govmap demo: reference clearing service on ${demo.url}`);
  console.log(`  dashboard: ${demo.url}/`);
  console.log(`  ${options.accounts} accounts seeded (acct-000000…), 1,000,000 minor units each`);
  console.log(`  try: curl ${demo.url}/accounts/acct-000001`);
  console.log(`       curl -X POST ${demo.url}/accounts/acct-000001/debit -H 'content-type: application/json' -d '{"amount":"2500"}'`);
  console.log(`       curl ${demo.url}/metrics`);
  for (const line of demo.announcements) console.log(`  ${line}`);

  // Set while the load runs: a signal then means the run did not finish (see EXIT_INTERRUPTED).
  let load: AbortController | null = null;
  let stopping = false;
  beforeClosedPipeExit(() => {
    stopping = true;
    load?.abort();
    return close();
  });
  const shutdown = (signal: 'SIGINT' | 'SIGTERM'): void => {
    stopping = true;
    const interrupted = load !== null;
    load?.abort();
    console.log(`govmap demo: shutting down${interrupted ? ` (${signal} during the load: exit ${EXIT_INTERRUPTED[signal]})` : ''}`);
    // After close: the answers still underway, the traffic's last requests and AUDIT_STOPPED
    // are records too, and a summary taken before them fell short of what verify counts.
    void close().then(() => {
      for (const line of demo.auditSummary()) console.log(`  ${line}`);
      process.exit(interrupted ? EXIT_INTERRUPTED[signal] : 0);
    });
  };
  if (early !== null) return shutdown(early);
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);

  if (options.load === true) {
    console.log(`govmap demo: driving load for ${options.duration}s with ${options.concurrency} requests in flight (read-mostly: about 21 balance reads per balance written)`);
    // The ratio printed after the load is over the load alone: the counters also hold the
    // seeding (one store per account), which would drag a 20:1 load down to a few reads per write.
    const before = { reads: demo.book.balances.counters.reads, writes: demo.book.balances.counters.writes };
    load = new AbortController();
    const result = await runLoad({
      url: demo.url,
      durationSec: options.duration,
      concurrency: options.concurrency,
      accounts: options.accounts,
      signal: load.signal,
      onProgress: (p) => console.log(`  ${formatProgress(p)}`),
    });
    load = null;
    // Interrupted: the signal handler closes the service and sets the exit status.
    if (stopping) return;
    console.log(`govmap demo: load done: ${formatProgress(result)}`);
    // Closed first when exiting: the map's line and the audit's then count the same operations,
    // the background traffic's last requests and the answers still underway included.
    if (options.exit === true) await close();
    const stats = demo.book.balances.stats();
    const reads = demo.book.balances.counters.reads - before.reads;
    const writes = demo.book.balances.counters.writes - before.writes;
    const ratio = writes === 0 ? (reads === 0 ? '-' : 'reads only') : (reads / writes).toFixed(1);
    console.log(`  map "balances": ${stats.keys} keys, ${stats.loads} loads, ${stats.ranges} ranges, ${stats.stores.ok} stores, ${stats.stores.rejected} rejected ${JSON.stringify(stats.rejectionsByReason)}, read:write during the load ${ratio}`);
    if (options.exit === true) {
      for (const line of demo.auditSummary()) console.log(`  ${line}`);
      const serverErrors = Object.entries(result.byStatus).filter(([status]) => status.startsWith('5')).reduce((n, [, c]) => n + c, 0);
      process.exitCode = serverErrors > 0 ? 1 : 0;
      return;
    }
    // Still running: what the audit recorded so far (the closing lines give the final count).
    for (const line of demo.auditSummary()) console.log(`  ${line}`);
  }
  console.log('govmap demo: running; Ctrl-C to stop');
}

/**
 * Options the bare baseline has nothing to apply to (it has no audit, no Redis, no breaker, no
 * gateway, no load driver): given with --bare, they would be silently ignored. (--no-traffic is
 * not one: the baseline sends itself no traffic, as asked; govmap bench load passes it to both.)
 */
const GOVERNED_ONLY_OPTIONS = ['load', 'duration', 'concurrency', 'exit', 'redis', 'redisCluster', 'redisCaFile', 'etcd', 'instance', 'gatewayFailureRate', 'gatewayLatency', 'auditDir', 'kafka', 'without', 'allowedHosts'] as const;

/** `redisCluster` as typed: `--redis-cluster`. */
function flag(name: string): string {
  return `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** What is wrong with the options before anything starts, or null. */
function usageProblem(options: DemoCommandOptions, command: Command | undefined): string | null {
  if (options.bare === true) {
    const given = GOVERNED_ONLY_OPTIONS.filter((name) => command?.getOptionValueSource(name) === 'cli').map(flag);
    if (given.length > 0) {
      return `--bare runs the ungoverned baseline only, which has nothing to apply ${given.join(', ')} to (drive it with govmap bench load, or drop --bare)`;
    }
  }
  if (options.load !== true) {
    // Commander fills --duration and --concurrency with their defaults: only what was typed counts.
    const given = LOAD_ONLY_OPTIONS.filter((name) => command?.getOptionValueSource(name) === 'cli');
    if (given.length === 1) return `--${given[0]} needs --load (it shapes the load run, and there is none without it)`;
    if (given.length > 1) return `${given.map((name) => `--${name}`).join(', ')} need --load (they shape the load run, and there is none without it)`;
  }
  // Node reads an empty host as "every interface": `--host "$HOST"` with HOST unset would turn a
  // loopback-only service (admin endpoints, the dashboard) into one on every network it is on.
  if (options.host.trim() === '') return `--host must be an address or host name of this machine, e.g. 127.0.0.1 or 0.0.0.0 (got ${JSON.stringify(options.host)})`;
  // Four dotted numbers are an IPv4 address or nothing: refuse 999.1.1.1 here, where a resolver
  // would be asked about it as a host name (and might answer slowly, or not at all offline).
  if (/^[0-9]+(?:\.[0-9]+){3}$/.test(options.host) && isIP(options.host) === 0) {
    return `--host ${options.host}: not an IPv4 address (four numbers from 0 to 255), e.g. 127.0.0.1 or 0.0.0.0`;
  }
  if (options.allowedHosts !== undefined && options.allowedHosts.split(',').every((name) => name.trim() === '')) {
    return `--allowed-hosts ${JSON.stringify(options.allowedHosts)}: no name given; e.g. --allowed-hosts demo.bank.internal (loopback names are always served)`;
  }
  if (options.auditDir === '') return '--audit-dir must be a directory path (got "")';
  if (options.kafka !== undefined) {
    // Left to the recorder, an empty list (`--kafka ,`) would mean no forwarding at all, silently.
    const brokers = options.kafka.split(',').filter((b) => b !== '');
    if (brokers.length === 0) return `--kafka ${JSON.stringify(options.kafka)}: no broker given; e.g. --kafka 127.0.0.1:9092`;
    // As the forwarder reads them: IPv6 in brackets, and a port it can connect to (0 is none).
    const bad = brokers.find((b) => {
      const port = Number(/^(?:[^\s:[\]]+|\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]):([0-9]{1,5})$/.exec(b)?.[1]);
      return !(port >= 1 && port <= 65_535);
    });
    if (bad !== undefined) return `--kafka: ${JSON.stringify(bad)} is not host:port (a port from 1 to 65535; IPv6 as [::1]:9092), e.g. 127.0.0.1:9092`;
  }
  const without = new Set(options.without ?? []);
  const typed = (name: string): boolean => command?.getOptionValueSource(name) === 'cli';
  if (without.has('audit') && (typed('kafka') || typed('auditDir'))) {
    return `--without audit leaves the audit out, so there is nothing to apply ${typed('kafka') ? '--kafka' : '--audit-dir'} to`;
  }
  if (without.has('shared-memory') && (options.redis !== undefined || options.redisCluster !== undefined)) {
    return '--without shared-memory with --redis or --redis-cluster: the balances are then in Redis, not in shared memory, anyway (drop --without shared-memory)';
  }
  return null;
}

/** The ungoverned baseline, for `govmap bench load`. Prints the same first line as the demo. */
async function bareCommand(options: DemoCommandOptions): Promise<void> {
  let bare;
  try {
    bare = await startBareDemo({ port: options.port, host: options.host, accounts: options.accounts });
  } catch (error) {
    // The same one line and exit status as the governed demo (a busy port is 1, an unknown host
    // 2): `govmap bench load` starts this and reports its first stderr line, not a stack.
    const failure = describeStartFailure(error, { host: options.host, port: options.port });
    if (failure === null) throw error;
    console.error(`govmap demo: ${failure.message}`);
    process.exitCode = failure.exitCode;
    return;
  }
  console.log(`govmap demo: bare baseline (plain Map, no governance) on ${bare.url}`);
  const shutdown = (): void => void bare.close().then(() => process.exit(0));
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
