import { formatProgress, runLoad } from '../../demo/load.ts';
import { startDemo } from '../../demo/server.ts';
import { demoRedisOptions } from '../../demo/redis.ts';
import { GovMapError } from '../../src/map/index.ts';
import { startBareDemo } from '../../demo/bare.ts';

export interface DemoCommandOptions {
  readonly port: number;
  readonly host: string;
  readonly accounts: number;
  readonly load?: boolean;
  readonly duration: number;
  readonly concurrency: number;
  readonly exit?: boolean;
  readonly redis?: string;
  readonly redisCluster?: string;
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
}

export async function demoCommand(options: DemoCommandOptions): Promise<void> {
  if (options.bare === true) return bareCommand(options);
  let demo;
  try {
    demo = await startDemo({
      port: options.port,
      host: options.host,
      accounts: options.accounts,
      redis: demoRedisOptions(options),
      settlement: { etcd: options.etcd, instance: options.instance, failureRate: options.gatewayFailureRate, latencyMs: options.gatewayLatency },
      audit: { dir: options.auditDir ?? './.govmap/audit', kafka: options.kafka?.split(',').filter((b) => b !== '') },
      traffic: options.traffic !== false,
    });
  } catch (error) {
    if (error instanceof GovMapError) {
      console.error(`govmap demo: ${error.message}`);
      process.exitCode = 1;
      return;
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      console.error(`govmap demo: port ${options.port} on ${options.host} is in use; pass --port <n> (or PORT=<n>), or --port 0 for any free port`);
      process.exitCode = 1;
      return;
    }
    throw error;
  }
  console.log(`govmap demo: reference clearing service on ${demo.url}`);
  console.log(`  dashboard: ${demo.url}/`);
  console.log(`  ${options.accounts} accounts seeded (acct-000000…), 1,000,000 minor units each`);
  console.log(`  try: curl ${demo.url}/accounts/acct-000001`);
  console.log(`       curl -X POST ${demo.url}/accounts/acct-000001/debit -H 'content-type: application/json' -d '{"amount":"2500"}'`);
  console.log(`       curl ${demo.url}/metrics`);
  for (const line of demo.announcements) console.log(`  ${line}`);

  const shutdown = (): void => {
    console.log('govmap demo: shutting down');
    for (const line of demo.auditSummary()) console.log(`  ${line}`);
    void demo.close().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);

  if (options.load === true) {
    console.log(`govmap demo: driving load for ${options.duration}s with ${options.concurrency} requests in flight (reads:writes 20:1)`);
    const result = await runLoad({
      url: demo.url,
      durationSec: options.duration,
      concurrency: options.concurrency,
      accounts: options.accounts,
      onProgress: (p) => console.log(`  ${formatProgress(p)}`),
    });
    console.log(`govmap demo: load done: ${formatProgress(result)}`);
    const stats = demo.book.balances.stats();
    console.log(`  map "balances": ${stats.keys} keys, ${stats.loads} loads, ${stats.ranges} ranges, ${stats.stores.ok} stores, ${stats.stores.rejected} rejected ${JSON.stringify(stats.rejectionsByReason)}, read:write ${stats.readWriteRatio?.toFixed(1) ?? '-'}`);
    for (const line of demo.auditSummary()) console.log(`  ${line}`);
    if (options.exit === true) {
      await demo.close();
      const serverErrors = Object.entries(result.byStatus).filter(([status]) => status.startsWith('5')).reduce((n, [, c]) => n + c, 0);
      process.exitCode = serverErrors > 0 ? 1 : 0;
      return;
    }
  }
  console.log('govmap demo: running; Ctrl-C to stop');
}

/** The ungoverned baseline, for `govmap bench load`. Prints the same first line as the demo. */
async function bareCommand(options: DemoCommandOptions): Promise<void> {
  const bare = await startBareDemo({ port: options.port, host: options.host, accounts: options.accounts });
  console.log(`govmap demo: bare baseline (plain Map, no governance) on ${bare.url}`);
  const shutdown = (): void => void bare.close().then(() => process.exit(0));
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
