/**
 * `npm run bench -- <suite> [--json] [--quick]`. Suites load lazily so one suite's dependencies
 * (a Kafka client, worker threads) cost nothing to another.
 */
import { BenchUsageError, QUICK_NOTE, formatTable } from './harness.ts';
import type { Suite, SuiteReport } from './harness.ts';

/** A suite's own option: `--name <value>` when `value` names what it takes, else a bare flag. */
interface SuiteOption {
  readonly name: string;
  readonly value?: string;
  readonly describe: string;
}

/**
 * A suite's entry. `needs`: packages it loads that govmap does not depend on (the yardsticks it
 * measures against, govmap's devDependencies): a source checkout has them, a project that
 * installed govmap does not, and there `govmap bench` must say what to install instead of dying
 * in a stack trace (or, for the ones loaded late, after minutes of measuring).
 */
interface SuiteEntry {
  readonly describe: string;
  readonly options?: readonly SuiteOption[];
  readonly needs?: readonly string[];
  readonly load: () => Promise<Suite>;
}

const suites: Record<string, SuiteEntry> = {
  load: {
    describe: 'load curve of the reference service, governed vs bare (open loop, GC from inside)',
    options: [
      { name: '--start', value: 'req/s', describe: 'first step of offered load (default 500)' },
      { name: '--step', value: 'req/s', describe: 'added per step (default 500)' },
      { name: '--max', value: 'req/s', describe: 'highest step offered (default 50,000)' },
      { name: '--max-steps', value: 'n', describe: 'most steps per service (default 100)' },
      { name: '--hold', value: 's', describe: 'seconds each step is measured (default 5)' },
      { name: '--warmup', value: 's', describe: 'seconds each step runs before it is measured (default 1)' },
      { name: '--accounts', value: 'n', describe: 'accounts the services seed and the mix reads (default 1,000)' },
      { name: '--out', value: 'file.svg', describe: 'where the chart goes (default ./govmap-load-curve.svg)' },
    ],
    load: async () => (await import('./load.bench.ts')).default,
  },
  cost: {
    describe: 'what each part of governance costs the reference service: CPU per request, bare vs governed vs governed without each part',
    options: [
      { name: '--rate', value: 'req/s', describe: 'offered load every contender carries (default 8,000; keep it below saturation)' },
      { name: '--rounds', value: 'n', describe: 'rounds, each contender in a fresh process each round; the median and spread are reported (default 6)' },
      { name: '--hold', value: 's', describe: 'seconds each step is measured (default 5)' },
      { name: '--warmup', value: 's', describe: 'seconds each fresh process is driven before it is measured (default 2)' },
      { name: '--accounts', value: 'n', describe: 'accounts the services seed and the mix reads (default 1,000)' },
      { name: '--parts', value: 'list', describe: 'parts to measure, comma-separated (default all: audit, routing, dashboard, metrics, shared-memory)' },
    ],
    load: async () => (await import('./cost.bench.ts')).default,
  },
  map: { describe: 'GovernedMap vs plain Map at read:write 20:1, 100:1, 1:1; young GCs during 10M loads', load: async () => (await import('./map.bench.ts')).default },
  shared: {
    describe: 'SharedInt64Store in 1 and 2 workers vs plain Map, postMessage to an owner, global-spinlock and reader-counter SAB tables',
    load: async () => (await import('./shared-memory.bench.ts')).default,
  },
  routing: { describe: 'switch read in a pinned request vs property read (target <= 2.0), X-Biz-Tag parse, route decision on 1,000 rules, switch propagation to a worker', load: async () => (await import('./routing.bench.ts')).default },
  redis: { describe: 'Redis store (needs GOVMAP_REDIS_URL): near-cache read vs Map (target <= 2.0), uncached round trip, pipelined add throughput, invalidation_p99_ms to another process', load: async () => (await import('./redis.bench.ts')).default },
  scan: {
    describe: 'govmap scan on a generated 500-file project: rules cost vs type-aware parse and vs typescript-eslint recommendedTypeChecked; scan_files_per_s',
    needs: ['typescript-eslint', 'eslint', 'typescript', '@types/node/package.json'],
    load: async () => (await import('./scan.bench.ts')).default,
  },
  sandbox: { describe: 'runtime audit sandbox: ns added per map operation (target < 5), per map created, per sweep, heap per tracked map', load: async () => (await import('./sandbox.bench.ts')).default },
  audit: {
    describe: 'audit: ns a LOAD / STORE pays for its record (targets <= 60 / <= 2,000), drain throughput vs pino, Kafka forwarding (needs GOVMAP_KAFKA_BROKERS)',
    needs: ['@opentelemetry/context-async-hooks', 'pino'],
    load: async () => (await import('./audit.bench.ts')).default,
  },
  breaker: {
    describe: 'CircuitBreaker per-call overhead vs direct await, cockatiel and opossum; etcd snapshot propagation p50/p99',
    needs: ['cockatiel', 'opossum'],
    load: async () => (await import('./breaker.bench.ts')).default,
  },
};

const COMMON: readonly SuiteOption[] = [
  { name: '--json', describe: 'also print the JSON line of the benchmark contract (last line of stdout)' },
  { name: '--quick', describe: 'a few seconds, tiny sizes: proves the suite runs (CI smoke), measures nothing' },
  { name: '--help', describe: 'this text' },
];

function optionLines(options: readonly SuiteOption[]): string {
  return options.map((o) => `    ${`${o.name}${o.value === undefined ? '' : ` <${o.value}>`}`.padEnd(22)} ${o.describe}`).join('\n');
}

function usage(only?: string): string {
  const names = only === undefined ? Object.keys(suites) : [only];
  const list = names
    .map((n) => {
      const suite = suites[n]!;
      return `  ${n.padEnd(12)} ${suite.describe}${suite.options === undefined ? '' : `\n${optionLines(suite.options)}`}`;
    })
    .join('\n');
  return `usage: npm run bench -- <suite> [options]   (or: govmap bench <suite> [options])\nsuites:\n${list}\noptions of every suite:\n${optionLines(COMMON)}`;
}

/** Whether `specifier` resolves from here, where the suite's own imports resolve from. */
function resolvable(specifier: string): boolean {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

const args = process.argv.slice(2);
const help = args.includes('--help') || args.includes('-h');
// The suite comes first: options before it were never checked (`--bogus map` ran the suite, and
// `--hold 5 load` took "5" for the suite's name).
if (!help && args[0] !== undefined && args[0].startsWith('-')) {
  console.error(`bench: name the suite first, then its options (got "${args[0]}" before any suite)\n${usage()}`);
  process.exit(2);
}
const name = args.find((a) => !a.startsWith('-'));
if (name !== undefined && !(name in suites)) {
  console.error(`unknown suite "${name}"\n${usage()}`);
  process.exit(2);
}
if (help) {
  console.log(usage(name));
  process.exit(0);
}
if (name === undefined) {
  console.error(`name a suite\n${usage()}`);
  process.exit(2);
}
// Every word after the suite name must be an option it knows (and its value): a misspelt
// `--hold` silently running the 11-minute default would waste a person's time.
const known = [...COMMON, ...(suites[name]!.options ?? [])];
const rest = args.slice(args.indexOf(name) + 1);
// Suites read an option's first value: a second one (a script's defaults, then an override) would be ignored.
const given = new Map<string, string>();
for (let i = 0; i < rest.length; i++) {
  const option = known.find((o) => o.name === rest[i]);
  if (option === undefined) {
    console.error(`bench ${name}: unknown option "${rest[i]}"\n${usage(name)}`);
    process.exit(2);
  }
  if (option.value !== undefined && (i + 1 >= rest.length || rest[i + 1]!.startsWith('--'))) {
    console.error(`bench ${name}: ${option.name} needs a value <${option.value}>`);
    process.exit(2);
  }
  if (option.value !== undefined) {
    const value = rest[++i]!;
    const first = given.get(option.name);
    if (first !== undefined) {
      console.error(`bench ${name}: ${option.name} is given twice ("${first}", then "${value}"): give it once`);
      process.exit(2);
    }
    given.set(option.name, value);
  }
}
const missing = (suites[name]!.needs ?? []).filter((specifier) => !resolvable(specifier)).map((specifier) => specifier.replace(/\/package\.json$/, ''));
if (missing.length > 0) {
  console.error(`bench ${name}: the suite needs ${missing.join(', ')}, not installed here (govmap's devDependencies, which an installed govmap does not bring): npm install --no-save ${missing.join(' ')}`);
  process.exit(2);
}
const json = args.includes('--json');
let report: SuiteReport;
try {
  const suite = await suites[name]!.load();
  report = await suite({
    args: args.filter((a) => a !== name),
    quick: args.includes('--quick'),
    progress: (message) => process.stderr.write(`[bench ${name}] ${message}\n`),
  });
} catch (error) {
  if (!(error instanceof BenchUsageError)) {
    // Not 1 (an uncaught error's status), which README.md keeps for "ran and found a problem":
    // the run did not finish. The stack is for the bug report.
    console.error(`bench ${name}: failed unexpectedly and did not finish: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(2);
  }
  console.error(`bench ${name}: ${error.message}\n(add --help for usage)`);
  process.exit(2);
}
const quick = args.includes('--quick');
if (quick) report = { ...report, notes: [...(report.notes ?? []), QUICK_NOTE] };
console.log(formatTable(report, quick));
if (json) console.log(JSON.stringify(report));
