/**
 * `npm run bench -- <suite> [--json] [--quick]`. Suites load lazily so one suite's dependencies
 * (a Kafka client, worker threads) cost nothing to another.
 */
import { formatTable } from './harness.ts';
import type { Suite } from './harness.ts';

const suites: Record<string, { describe: string; load: () => Promise<Suite> }> = {
  load: { describe: 'load curve of the reference service, governed vs bare (open loop, GC from inside); --start --step --max --hold --out', load: async () => (await import('./load.bench.ts')).default },
  map: { describe: 'GovernedMap vs plain Map at read:write 20:1, 100:1, 1:1; young GCs during 10M loads', load: async () => (await import('./map.bench.ts')).default },
  shared: {
    describe: 'SharedInt64Store in 1 and 2 workers vs plain Map, postMessage to an owner, global-spinlock and reader-counter SAB tables',
    load: async () => (await import('./shared-memory.bench.ts')).default,
  },
  routing: { describe: 'switch read in a pinned request vs property read (target <= 2.0), X-Biz-Tag parse, route decision on 1,000 rules, switch propagation to a worker', load: async () => (await import('./routing.bench.ts')).default },
  redis: { describe: 'Redis store (needs GOVMAP_REDIS_URL): near-cache read vs Map (target <= 2.0), uncached round trip, pipelined add throughput, invalidation_p99_ms to another process', load: async () => (await import('./redis.bench.ts')).default },
  scan: { describe: 'govmap scan on a generated 500-file project: rules cost vs type-aware parse and vs typescript-eslint recommendedTypeChecked; scan_files_per_s', load: async () => (await import('./scan.bench.ts')).default },
  sandbox: { describe: 'runtime audit sandbox: ns added per map operation (target < 5), per map created, per sweep, heap per tracked map', load: async () => (await import('./sandbox.bench.ts')).default },
  audit: {
    describe: 'audit: ns a LOAD / STORE pays for its record (targets <= 60 / <= 2,000), drain throughput vs pino, Kafka forwarding (needs GOVMAP_KAFKA_BROKERS)',
    load: async () => (await import('./audit.bench.ts')).default,
  },
  breaker: { describe: 'CircuitBreaker per-call overhead vs direct await, cockatiel and opossum; etcd snapshot propagation p50/p99', load: async () => (await import('./breaker.bench.ts')).default },
};

const args = process.argv.slice(2);
const json = args.includes('--json');
const name = args.find((a) => !a.startsWith('--'));
if (name === undefined || !(name in suites)) {
  const list = Object.entries(suites)
    .map(([n, s]) => `  ${n.padEnd(12)} ${s.describe}`)
    .join('\n');
  console.error(`${name === undefined ? 'name a suite' : `unknown suite "${name}"`}; usage: npm run bench -- <suite> [--json] [--quick]\nsuites:\n${list}`);
  process.exit(2);
}
const suite = await suites[name]!.load();
const report = await suite({
  args: args.filter((a) => a !== name),
  quick: args.includes('--quick'),
  progress: (message) => process.stderr.write(`[bench ${name}] ${message}\n`),
});
console.log(formatTable(report));
if (json) console.log(JSON.stringify(report));
