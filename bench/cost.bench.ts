import { execFileSync } from 'node:child_process';
import { OPTIONAL_PARTS, PartsListError, parseParts } from '../demo/parts.ts';
import type { OptionalPart } from '../demo/parts.ts';
import { LoadHttpClient } from './load/http-client.ts';
import { referenceMix, runStep } from './load/open-loop.ts';
import type { StepResult } from './load/open-loop.ts';
import { ServiceProcess, runtimeSample } from './load/service-process.ts';
import { BenchUsageError, STEP_LIMITS, checkRequestsPerStep, medianOf, numericOptions, round } from './harness.ts';
import type { BenchResult, Suite, SuiteContext } from './harness.ts';

/**
 * `npm run bench -- cost`: what each part of governance costs the reference service, per request.
 *
 * The load suite answers "how much capacity does governance take"; its figures move with the
 * shared host from run to run (saturation ratios of 0.53-1.08 over twelve runs). This suite
 * answers the question a team asks next, "which part costs what", with a steadier measure:
 * the service's own CPU time per answered request (all its threads: the audit's drain worker
 * and V8's GC helpers count too), at one offered load every contender carries. It runs the bare
 * baseline, the governed service, and the governed service without each part in turn
 * (`govmap demo --without <part>`, demo/parts.ts), one step each per round, each step in a fresh
 * process, in a new order each round, and takes the median of the rounds
 * with their spread; a part whose cost is within that spread is said to be.
 *
 * A part's cost is the governed service's CPU per request minus the same without that part.
 * The parts' costs need not add up to the whole: what is left is the validator, the governed
 * map itself, the breaker and what the parts cost together.
 */
interface CostConfig {
  rate: number;
  holdMs: number;
  warmupMs: number;
  rounds: number;
  accounts: number;
  parts: readonly OptionalPart[];
}

const LIMITS = {
  rate: { min: 1, max: 1_000_000, whole: true, unit: 'req/s' },
  rounds: { min: 1, max: 100, whole: true, unit: 'rounds' },
  ...STEP_LIMITS,
} as const;

function parseConfig({ args, quick }: SuiteContext): CostConfig {
  const value = numericOptions(args, LIMITS);
  const partsAt = args.indexOf('--parts');
  let parts: readonly OptionalPart[] = OPTIONAL_PARTS;
  if (partsAt >= 0) {
    try {
      parts = parseParts(args[partsAt + 1] ?? '');
    } catch (error) {
      if (error instanceof PartsListError) throw new BenchUsageError('--parts', error.message.replace(/^--without/, '--parts'));
      throw error;
    }
  }
  const config: CostConfig = {
    rate: value('rate', quick ? 300 : 8000),
    holdMs: value('hold', quick ? 0.5 : 5) * 1000,
    // A fresh process per round: its JIT needs a few thousand requests before the measured part.
    warmupMs: value('warmup', quick ? 0.2 : 2) * 1000,
    rounds: value('rounds', quick ? 1 : 6),
    accounts: value('accounts', 1000),
    parts,
  };
  checkRequestsPerStep('--rate', config.rate, config.holdMs / 1000);
  return config;
}

interface Contender {
  /** `bare`, `governed`, or `governed without <part>`. */
  readonly label: string;
  readonly mode: 'bare' | 'governed';
  readonly part: OptionalPart | null;
  readonly rounds: RoundResult[];
}

interface RoundResult {
  readonly step: StepResult;
  /** The service's CPU (user + system, all threads) per answered request, µs; NaN without a runtime sample. */
  readonly cpuUsPerRequest: number;
  readonly allocBytesPerRequest: number;
}

/** What starting a service, and stopping it and writing its spool out, takes besides the step (measured: ~6 s a step on a 2-core VM). */
const STARTUP_ESTIMATE_MS = 6000;

/** A step at which the service did not keep up: its CPU per request is then not the cost of a request alone. */
function fellBehind(step: StepResult): boolean {
  return step.achieved < 0.95 * step.offered || step.shed > 0 || step.serverErrors + step.networkErrors > 0;
}

/**
 * One round of one contender, in a process of its own started for it and stopped after it.
 * Why a fresh process each time: the same code in two processes can differ by several µs per
 * request for good (the JIT compiles in a different order, memory lands differently: measured
 * here, one contender's process stayed 5-10 µs above another's in every one of 9 rounds), and
 * only other processes can average that out. Services left idle beside the one measured are
 * avoided too: their timers and disk writeback would fall on it.
 */
async function measure(c: Contender, config: CostConfig): Promise<RoundResult> {
  const service = new ServiceProcess(c.mode, config.accounts, c.part === null ? [] : [c.part]);
  let url: string;
  try {
    url = await service.url;
  } catch (error) {
    await service.stop();
    throw error;
  }
  const client = new LoadHttpClient(url, { connections: 256 });
  try {
    const step = await runStep({
      rate: config.rate,
      durationMs: config.holdMs,
      warmupMs: config.warmupMs,
      client,
      next: referenceMix(config.accounts),
      onMeasureStart: async () => {
        await runtimeSample(url); // starts the service's measurement interval now
      },
    });
    const runtime = await runtimeSample(url);
    const answered = runtime === null || runtime.intervalMs <= 0 ? 0 : step.completed;
    // cpuCores is CPU time over the probe's interval (the measured part of the step), spread
    // over the requests completed in it.
    const cpuMs = runtime === null ? Number.NaN : runtime.cpuCores * runtime.intervalMs;
    return {
      step,
      cpuUsPerRequest: answered > 0 ? (cpuMs * 1000) / answered : Number.NaN,
      allocBytesPerRequest: answered > 0 && runtime !== null ? runtime.allocatedBytes / answered : Number.NaN,
    };
  } finally {
    client.close();
    await service.stop();
    flushDirtyPages();
  }
}

/**
 * Writes the page cache out before the next contender runs: a governed service leaves tens of
 * MB of audit spool behind, and the file system's journal would otherwise make the next
 * service's fsyncs write them (ext4 data=ordered), counted as that service's cost.
 */
function flushDirtyPages(): void {
  if (process.platform !== 'linux') return;
  try {
    execFileSync('sync', { timeout: 30_000, stdio: 'ignore' });
  } catch {
    // Not available or too slow: the order shuffle still spreads the effect over every contender.
  }
}

/** A deterministic shuffle (xorshift32, Fisher-Yates): the same orders in every run. */
function seededShuffle(seed: number): <T>(items: readonly T[]) => T[] {
  let state = seed >>> 0 || 1;
  const next = (n: number): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  return <T>(items: readonly T[]): T[] => {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = next(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  };
}

/** The q-quantile of `values` (linear between the two nearest), NaN when empty. */
function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  return sorted[low]! + (sorted[Math.min(low + 1, sorted.length - 1)]! - sorted[low]!) * (at - low);
}

const suite: Suite = async (context) => {
  const config = parseConfig(context);
  const { progress } = context;
  const contenders: Contender[] = [
    { label: 'bare', mode: 'bare', part: null, rounds: [] },
    { label: 'governed', mode: 'governed', part: null, rounds: [] },
    ...config.parts.map((part): Contender => ({ label: `governed without ${part}`, mode: 'governed', part, rounds: [] })),
  ];
  progress(
    `CPU per request of the reference service at ${config.rate.toLocaleString('en-US')} req/s: bare, governed, and governed without ${config.parts.join(', ')}; ` +
      `${config.rounds} round(s) each, every round a fresh process (${config.warmupMs / 1000}s warm-up, ${config.holdMs / 1000}s measured); loopback only; ` +
      `about ${Math.ceil((contenders.length * config.rounds * (config.warmupMs + config.holdMs + STARTUP_ESTIMATE_MS)) / 60_000)} min`,
  );
  const shuffle = seededShuffle(0x2545f491);
  for (let r = 0; r < config.rounds; r++) {
    // A new order each round: a drift of the shared host falls on every contender alike, and no
    // contender always follows the same one (a rotation would keep the neighbours).
    const order = shuffle(contenders);
    for (const c of order) {
      const result = await measure(c, config);
      c.rounds.push(result);
      const s = result.step;
      progress(
        `round ${r + 1}/${config.rounds} ${c.label.padEnd(32)} achieved ${s.achieved.toFixed(0).padStart(6)}/s cpu ${result.cpuUsPerRequest.toFixed(1).padStart(6)} µs/req alloc ${(result.allocBytesPerRequest / 1024).toFixed(1)} KB/req p99 ${s.p99Ms.toFixed(2)} ms${fellBehind(s) ? '  [fell behind]' : ''}`,
      );
    }
  }

  // The rounds in which the service kept up (all of them if it never did: then a warning says so).
  const kept = (c: Contender): number[] => {
    const measured = c.rounds.filter((x) => Number.isFinite(x.cpuUsPerRequest));
    const keptUp = measured.filter((x) => !fellBehind(x.step));
    return (keptUp.length > 0 ? keptUp : measured).map((x) => x.cpuUsPerRequest);
  };
  const cpu = (c: Contender): number => medianOf(kept(c));
  /** Half the interquartile range of the rounds: how far one process's figure typically strays. */
  const spread = (c: Contender): number => (quantile(kept(c), 0.75) - quantile(kept(c), 0.25)) / 2;
  const bare = contenders[0]!;
  const governed = contenders[1]!;
  const overhead = cpu(governed) - cpu(bare);
  const costOf = (c: Contender): number => cpu(governed) - cpu(c);
  /** A part's cost no larger than the two figures' own spread cannot be told from zero by this run. */
  const withinNoise = (c: Contender): boolean => Math.abs(costOf(c)) <= spread(governed) + spread(c);
  const results: BenchResult[] = contenders.map((c) => ({
    name: `${c.label} @ ${config.rate} req/s`,
    // The contract's ns_per_op: here the service's CPU per request, the figure compared.
    ns_per_op: round(cpu(c) * 1000),
    ops_per_s: Math.round(medianOf(c.rounds.map((x) => x.step.achieved))),
    cpu_us_per_req: round(cpu(c), 2),
    cpu_us_per_req_spread: round(spread(c), 2),
    cpu_us_per_req_rounds: kept(c).map((v) => round(v, 1)),
    alloc_bytes_per_req: Math.round(medianOf(c.rounds.map((x) => x.allocBytesPerRequest).filter((v) => Number.isFinite(v)))),
    p99_ms: round(medianOf(c.rounds.map((x) => x.step.p99Ms))),
    ...(c.part === null ? {} : { part: c.part, part_cost_us_per_req: round(costOf(c), 2), within_noise: withinNoise(c) }),
    fell_behind_rounds: c.rounds.filter((x) => fellBehind(x.step)).length,
  }));
  const ratios: Record<string, number> = { governed_vs_bare_cpu_per_req: round(cpu(governed) / cpu(bare)) };
  // A share of nothing (the governed service measured as cheap as bare: noise, or a broken run) means nothing.
  const sharesMeaningful = overhead > spread(governed) + spread(bare);
  if (sharesMeaningful) for (const c of contenders.slice(2)) ratios[`${c.part!.replace('-', '_')}_share_of_overhead`] = round(costOf(c) / overhead);
  const behind = contenders.filter((c) => c.rounds.some((x) => fellBehind(x.step)));
  const noisy = contenders.slice(2).filter(withinNoise);
  const lines = contenders.slice(2).map((c) => `${c.part}: ${costOf(c).toFixed(1)} µs/req${withinNoise(c) ? ' (within noise)' : sharesMeaningful ? ` (${((100 * costOf(c)) / overhead).toFixed(0)}% of the overhead)` : ''}`);
  progress(`governed ${cpu(governed).toFixed(1)} ± ${spread(governed).toFixed(1)} µs/req vs bare ${cpu(bare).toFixed(1)} ± ${spread(bare).toFixed(1)}: governance costs ${overhead.toFixed(1)} µs of CPU per request; ${lines.join('; ')}`);
  return {
    suite: 'cost',
    results,
    ratios,
    notes: [
      "cpu_us_per_req: the service process's CPU time (user + system, every thread: audit drain worker, GC helpers) per answered request over the measured part of a step; the median of the rounds in which it kept up, each round a fresh process; cpu_us_per_req_spread: half their interquartile range",
      'part_cost_us_per_req: governed minus governed without that part; within_noise when it is no larger than the two spreads together. The parts need not add up to governed minus bare (the validator, the governed map and the breaker stay in every governed contender)',
      'a part\'s figure counts when it repeats from run to run: on a shared host a few µs can fall outside the spreads of one run (measured here: a dashboard figure of -5.5 µs in one run, +0.4 µs within noise in another)',
      `each contender carried ${config.rate} req/s of the reference mix (reads:writes 20:1, X-Biz-Tag across 4 orgs) from this process's open-loop generator`,
      ...(sharesMeaningful ? [] : [`no shares of the overhead: governed measured ${overhead.toFixed(1)} µs/req above bare, within the two spreads; more --rounds, or a quieter machine`]),
      ...(noisy.length === 0 ? [] : [`within noise on this host: ${noisy.map((c) => c.part).join(', ')}; more --rounds, or a quieter machine, tell them apart`]),
      ...(behind.length === 0 ? [] : [`warning: ${behind.map((c) => c.label).join(', ')} fell behind the offered load in some rounds (achieved < 95%, shed or failed): lower --rate so every contender keeps up`]),
    ],
  };
};

export default suite;
