/**
 * The benchmark contract (DESIGN.md): a suite prints a table; with --json its last stdout line
 * is one JSON object {"suite", "results":[{"name","ns_per_op","ops_per_s"}], "ratios":{...}}.
 * Comparisons are ratios of measurements taken in the same run, never absolute times: these
 * machines are shared and noisy.
 */
export interface BenchResult {
  readonly name: string;
  readonly ns_per_op: number;
  readonly ops_per_s: number;
  readonly [extra: string]: unknown;
}

export interface SuiteReport {
  readonly suite: string;
  readonly results: BenchResult[];
  readonly ratios: Record<string, number>;
  /** Targets the ratios are judged against, e.g. {"governed_vs_plain": "<= 1.5"}. */
  readonly targets?: Record<string, string>;
  readonly notes?: string[];
  readonly [extra: string]: unknown;
}

export interface SuiteContext {
  /** Writes a progress line to stderr (stdout is reserved for the table and JSON). */
  readonly progress: (message: string) => void;
  /** Suite arguments after the suite name, e.g. ['--quick']. */
  readonly args: readonly string[];
  /** --quick: fewer iterations, for smoke runs in CI. */
  readonly quick: boolean;
}

export type Suite = (context: SuiteContext) => Promise<SuiteReport>;

/**
 * An option value a suite cannot run with (not a number, out of range, contradicting another
 * option), or an environment variable naming a service it needs that is unset or unreachable
 * (GOVMAP_REDIS_URL). The runner prints its message and exits 2 before anything is measured.
 */
export class BenchUsageError extends Error {
  readonly code = 'GOVMAP_BENCH_USAGE';
  /** The option at fault, e.g. `--step` (or the environment variable, e.g. `GOVMAP_REDIS_URL`). */
  readonly option: string;

  constructor(option: string, message: string) {
    super(message);
    this.name = 'BenchUsageError';
    this.option = option;
  }
}

/** What a numeric suite option may hold. */
export interface NumericLimit {
  readonly min: number;
  readonly max: number;
  readonly whole: boolean;
  readonly unit: string;
}

/** The options of a suite that drives the reference service in steps (load, cost). */
export const STEP_LIMITS = {
  hold: { min: 0.1, max: 600, whole: false, unit: 's' },
  warmup: { min: 0, max: 600, whole: false, unit: 's' },
  // Two at least: with one, every transfer of the mix is to its own payer, refused (400) by both services.
  accounts: { min: 2, max: 1_000_000, whole: true, unit: 'accounts' },
} as const satisfies Record<string, NumericLimit>;

/**
 * Fewest requests a measured step of the load and cost suites may send: below 100 a p99 is the
 * slowest answer or nothing, and a step that sends none reported p99 0 ms ("met") beside a
 * saturation ratio of NaN (null in the JSON line).
 */
export const MIN_REQUESTS_PER_STEP = 100;

/**
 * @throws BenchUsageError naming --hold and the rate option, when `holdS` seconds at `rate`
 * req/s (the lowest rate the suite offers) measure fewer than MIN_REQUESTS_PER_STEP requests
 */
export function checkRequestsPerStep(rateOption: string, rate: number, holdS: number): void {
  const requests = Math.floor(rate * holdS + 1e-9);
  if (requests < MIN_REQUESTS_PER_STEP) {
    throw new BenchUsageError('--hold', `--hold ${holdS} s at ${rateOption} ${rate} req/s measures ${requests} requests a step: a p99 needs at least ${MIN_REQUESTS_PER_STEP}; raise --hold or ${rateOption}`);
  }
}

/**
 * A reader of a suite's numeric options (`--hold 5`): the value given, or `fallback` when the
 * option is absent. @throws BenchUsageError naming the option, its range and unit, and the text
 * received, when the value is not a number in range (or not whole where it must be)
 */
export function numericOptions<Name extends string>(args: readonly string[], limits: Readonly<Record<Name, NumericLimit>>): (name: Name, fallback: number) => number {
  return (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    if (i < 0) return fallback;
    const text = args[i + 1] ?? '';
    const limit = limits[name];
    const n = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : Number.NaN;
    const kind = limit.whole ? 'a whole number' : 'a number';
    if (Number.isNaN(n) || (limit.whole && !Number.isInteger(n)) || n < limit.min || n > limit.max) {
      throw new BenchUsageError(`--${name}`, `--${name} must be ${kind} from ${limit.min.toLocaleString('en-US')} to ${limit.max.toLocaleString('en-US')} (${limit.unit}); got "${text}"`);
    }
    return n;
  };
}

/** Times `ops` calls of `body` after a warm-up; returns ns per op. */
export function timeOps(ops: number, body: (ops: number) => void): number {
  body(Math.min(ops, 100_000)); // warm-up: let the JIT settle before timing
  const start = process.hrtime.bigint();
  body(ops);
  return Number(process.hrtime.bigint() - start) / ops;
}

/** Median of repeated alternating measurements, so drift hits each contender alike. */
export function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function result(name: string, nsPerOp: number, extra: Record<string, unknown> = {}): BenchResult {
  return { name, ns_per_op: round(nsPerOp), ops_per_s: Math.round(1e9 / nsPerOp), ...extra };
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Said of every figure of a `--quick` run: a CI smoke proves the suite runs, it measures nothing. */
export const QUICK_NOTE = '--quick: a smoke proving the suite runs, on tiny sizes; its figures are not measurements and no target is judged';

export function formatTable(report: SuiteReport, quick = false): string {
  const rows = report.results.map((r) => [r.name, r.ns_per_op.toFixed(1), r.ops_per_s.toLocaleString('en-US')]);
  const header = ['benchmark', 'ns/op', 'ops/s'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [`suite: ${report.suite}`, line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line), ''];
  for (const [name, value] of Object.entries(report.ratios)) {
    const target = report.targets?.[name];
    // A quick run's "met" was read as a result by a CI gate: it is not judged at all.
    const verdict = quick ? 'not judged: --quick' : meets(value, target ?? '') ? 'met' : 'NOT met';
    out.push(`${name} = ${value}${target ? `  (target ${target}: ${verdict})` : ''}`);
  }
  for (const note of report.notes ?? []) out.push(`note: ${note}`);
  return out.join('\n');
}

export function meets(value: number, target: string): boolean {
  const match = /^(<=|>=|<|>|==)\s*(-?[0-9.]+)$/.exec(target.trim());
  if (match === null) return false;
  const bound = Number(match[2]);
  switch (match[1]) {
    case '<=':
      return value <= bound;
    case '>=':
      return value >= bound;
    case '<':
      return value < bound;
    case '>':
      return value > bound;
    default:
      return value === bound;
  }
}

/**
 * A reproducible uniform random order over `keys` keys: the glibc LCG mod 2^31 in 32-bit integer
 * arithmetic (Math.imul), keys from its high bits. The same LCG in doubles (`seed * 1103515245`)
 * passes 2^53, loses its low bits and cycles within ~10,000 steps: a "random order" over 100,000
 * keys then touched 3,613 of them, which is what every suite's figures measured until this.
 */
export function randomOrder(length: number, keys: number, seed: number, buffer?: ArrayBufferLike): Int32Array {
  const order = buffer === undefined ? new Int32Array(length) : new Int32Array(buffer, 0, length);
  let s = seed;
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    order[i] = (s >>> 8) % keys;
  }
  return order;
}
