import { accessSync, constants, existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { RuntimeSample } from '../demo/runtime-probe.ts';
import { renderLoadChart } from './load/chart.ts';
import type { ChartPoint } from './load/chart.ts';
import { LoadHttpClient } from './load/http-client.ts';
import { referenceMix, runStep } from './load/open-loop.ts';
import type { StepResult } from './load/open-loop.ts';
import { ServiceProcess, runtimeSample } from './load/service-process.ts';
import { BenchUsageError, STEP_LIMITS, checkRequestsPerStep, numericOptions, round } from './harness.ts';
import type { BenchResult, Suite, SuiteContext } from './harness.ts';

/**
 * `npm run bench -- load`: the reference service's load curve, governance on and off.
 *
 * The service runs in its own process (`govmap demo`, and `govmap demo --bare` for the
 * baseline); this process drives it with an open-loop generator over loopback in steps of
 * rising offered load until it saturates. Per step it reads GC pauses, allocation and
 * event-loop delay from inside the service (GET /internal/runtime).
 */
interface LoadConfig {
  start: number;
  step: number;
  max: number;
  holdMs: number;
  warmupMs: number;
  accounts: number;
  maxSteps: number;
  out: string;
  quick: boolean;
}

export interface StepReport extends StepResult {
  readonly runtime: RuntimeSample | null;
  readonly saturated: boolean;
}

const SATURATION = {
  /** Achieved below this share of offered: the service no longer keeps up. */
  achievedShare: 0.9,
  /** p99 above this: queues are building. */
  p99Ms: 500,
  /** Failed (5xx, network, shed) above this share of sent. */
  failedShare: 0.01,
};

/** Each numeric option: its bounds, and whether it must be whole. Every loop stays bounded. */
const LIMITS = {
  start: { min: 1, max: 1_000_000, whole: true, unit: 'req/s' },
  step: { min: 1, max: 1_000_000, whole: true, unit: 'req/s' },
  max: { min: 1, max: 1_000_000, whole: true, unit: 'req/s' },
  'max-steps': { min: 1, max: 1_000, whole: true, unit: 'steps' },
  ...STEP_LIMITS,
} as const;

function parseConfig({ args, quick }: SuiteContext): LoadConfig {
  const value = numericOptions(args, LIMITS);
  const outIndex = args.indexOf('--out');
  const config: LoadConfig = {
    start: value('start', quick ? 200 : 500),
    step: value('step', quick ? 200 : 500),
    max: value('max', quick ? 400 : 50_000),
    holdMs: value('hold', quick ? 1 : 5) * 1000,
    warmupMs: value('warmup', quick ? 0.3 : 1) * 1000,
    accounts: value('accounts', 1000),
    maxSteps: value('max-steps', quick ? 2 : 100),
    out: resolve(outIndex >= 0 ? args[outIndex + 1]! : 'govmap-load-curve.svg'),
    quick,
  };
  if (config.start > config.max) {
    throw new BenchUsageError('--start', `--start (${config.start} req/s) is above --max (${config.max} req/s): no step would be offered`);
  }
  checkRequestsPerStep('--start', config.start, config.holdMs / 1000);
  // Checked now, not after a run of many minutes: the chart must have somewhere to go.
  if (!config.out.endsWith('.svg')) throw new BenchUsageError('--out', `--out names the chart file, an SVG: it must end in .svg (got ${config.out})`);
  const outDir = dirname(config.out);
  if (!existsSync(outDir) || !statSync(outDir).isDirectory()) throw new BenchUsageError('--out', `--out: the folder ${outDir} does not exist`);
  if (existsSync(config.out) && statSync(config.out).isDirectory()) throw new BenchUsageError('--out', `--out: ${config.out} is a directory; name the chart file, e.g. ${config.out}/govmap-load-curve.svg`);
  try {
    accessSync(outDir, constants.W_OK);
  } catch {
    throw new BenchUsageError('--out', `--out: the folder ${outDir} is not writable here`);
  }
  return config;
}

function isSaturated(r: StepResult): boolean {
  const failed = r.serverErrors + r.networkErrors + r.shed;
  return r.achieved < SATURATION.achievedShare * r.offered || r.p99Ms > SATURATION.p99Ms || failed > SATURATION.failedShare * Math.max(1, r.sent + r.shed);
}

async function measureStep(url: string, rate: number, holdMs: number, config: LoadConfig, client: LoadHttpClient): Promise<StepReport> {
  const result = await runStep({
    rate,
    durationMs: holdMs,
    warmupMs: config.warmupMs,
    client,
    next: referenceMix(config.accounts),
    onMeasureStart: async () => {
      await runtimeSample(url); // starts the service's measurement interval now
    },
  });
  const runtime = await runtimeSample(url);
  return { ...result, runtime, saturated: isSaturated(result) };
}

interface Contender {
  readonly mode: 'governed' | 'bare';
  readonly service: ServiceProcess;
  readonly url: string;
  readonly client: LoadHttpClient;
  readonly steps: StepReport[];
  /** Saturated steps in a row, up to the last one measured. */
  saturatedInARow: number;
}

async function contender(mode: 'governed' | 'bare', config: LoadConfig): Promise<Contender> {
  const service = new ServiceProcess(mode, config.accounts);
  const url = await service.url;
  return { mode, service, url, client: new LoadHttpClient(url, { connections: 256 }), steps: [], saturatedInARow: 0 };
}

/**
 * Both services run side by side (the idle one costs nothing) and each step of offered load is
 * measured on one, then the other, alternating which goes first: drift of a shared machine
 * (other processes, thermal, page cache) then falls on both curves alike, as in the map suite.
 * A contender stops climbing at its second saturated step in a row. One saturated step followed
 * by a sustained one is a stall of the shared machine, not the service's limit: counting any two
 * (as before) stopped a service on two separate blips while it went on to sustain more (measured:
 * governed saturated at 19,000 req/s, sustained 19,500-22,000, and was stopped at 22,500).
 */
async function curves(config: LoadConfig, progress: (m: string) => void): Promise<[Contender, Contender]> {
  const bare = await contender('bare', config);
  const governed = await contender('governed', config);
  for (let i = 0, rate = config.start; i < config.maxSteps && rate <= config.max; i++, rate += config.step) {
    const order = i % 2 === 0 ? [bare, governed] : [governed, bare];
    let climbing = false;
    for (const c of order) {
      if (c.saturatedInARow >= 2) continue;
      climbing = true;
      const step = await measureStep(c.url, rate, config.holdMs, config, c.client);
      c.steps.push(step);
      progress(describeStep(c.mode, step));
      c.saturatedInARow = step.saturated ? c.saturatedInARow + 1 : 0;
    }
    if (!climbing) break;
  }
  return [bare, governed];
}

const ROUNDS_AT_80 = 5;

/** p99 at one offered load: alternating rounds on both, the median of each, and every round. */
async function atLoad(rate: number, rounds: number, config: LoadConfig, contenders: [Contender, Contender], progress: (m: string) => void): Promise<{ medians: [StepReport, StepReport]; all: [StepReport[], StepReport[]] }> {
  const results: [StepReport[], StepReport[]] = [[], []];
  for (let r = 0; r < rounds; r++) {
    for (const index of r % 2 === 0 ? [0, 1] : [1, 0]) {
      const c = contenders[index]!;
      const step = await measureStep(c.url, rate, config.holdMs, config, c.client);
      progress(describeStep(`${c.mode}@80%`, step));
      results[index]!.push(step);
    }
  }
  const median = (steps: StepReport[]): StepReport => [...steps].sort((a, b) => a.p99Ms - b.p99Ms)[steps.length >> 1]!;
  return { medians: [median(results[0]), median(results[1])], all: results };
}

/**
 * Why `p99_ratio_at_80pct` of this run does not measure what it is named for, or null. The 80%
 * rounds run after the climb; when the shared host slows down in between, bare itself cannot
 * carry 80% of the saturation it showed, both services shed load, and the ratio compares two
 * overloaded services (measured: both saturated in 7 of 10 rounds, p99s of 110-160 ms, ratio
 * 0.94 -- "met", and meaningless). Saturated rounds of the governed service alone are what the
 * ratio is there to show, so only bare's count.
 */
export function overloadedAt80(bareRounds: readonly { readonly saturated: boolean }[], governedRounds: readonly { readonly saturated: boolean }[]): string | null {
  const bare = bareRounds.filter((r) => r.saturated).length;
  if (bare === 0) return null;
  const governed = governedRounds.filter((r) => r.saturated).length;
  return `at 80% of its own saturation the bare service was saturated in ${bare} of ${bareRounds.length} rounds (governed: ${governed} of ${governedRounds.length}): the host slowed down after the climb, so p99_ratio_at_80pct compares overloaded services, not 80% load; rerun on a quieter host`;
}

/**
 * Why `governed_vs_bare_saturation` of this run is not a ratio of capacities, or null. A climb
 * ends at --max or --max-steps as well as at two saturated steps in a row; a service whose last
 * step still kept up never showed its limit (run 4 of the README: bare "saturated" at the
 * 30,000 req/s cap), and the same cap then sets the 80% load the p99 ratio is measured at.
 */
export function unsaturatedAtTop(bareSteps: readonly { readonly offered: number; readonly saturated: boolean }[], governedSteps: readonly { readonly offered: number; readonly saturated: boolean }[]): string | null {
  const unsaturated = (
    [
      ['bare', bareSteps],
      ['governed', governedSteps],
    ] as const
  ).filter(([, steps]) => steps.length > 0 && !steps.at(-1)!.saturated);
  if (unsaturated.length === 0) return null;
  const top = Math.max(...unsaturated.map(([, steps]) => steps.at(-1)!.offered));
  const both = unsaturated.length === 2;
  const bareCapped = unsaturated.some(([mode]) => mode === 'bare');
  return `${unsaturated.map(([mode]) => mode).join(' and ')} still kept up at the top of the climb (${top} req/s offered): ${both ? 'their' : 'its'} saturation is the highest load offered, not ${both ? 'their' : 'its'} capacity, so governed_vs_bare_saturation${bareCapped ? ', and the load at which p99_ratio_at_80pct is measured, come' : ' comes'} from the cap; raise --max or --max-steps`;
}

export function describeStep(mode: string, s: StepReport): string {
  const gc = s.runtime === null ? 'gc n/a' : `gc ${s.runtime.gc.count} (${s.runtime.gc.totalPauseMs.toFixed(1)} ms, max ${s.runtime.gc.maxPauseMs.toFixed(1)}) alloc ${(s.runtime.allocationBytesPerSec / 1e6).toFixed(1)} MB/s eld p99 ${s.runtime.eventLoopDelayMs.p99.toFixed(1)} ms`;
  return `${mode.padEnd(8)} offered ${String(s.offered).padStart(6)}/s achieved ${s.achieved.toFixed(0).padStart(6)}/s p50 ${s.p50Ms.toFixed(2)} p99 ${s.p99Ms.toFixed(2)} p99.9 ${s.p999Ms.toFixed(2)} ms err ${s.serverErrors + s.networkErrors} shed ${s.shed} ${gc} gen ${s.generatorCpuUsPerRequest.toFixed(0)} µs/req${s.saturated ? '  [saturated]' : ''}`;
}

function toPoint(s: StepReport): ChartPoint {
  const seconds = (s.runtime?.intervalMs ?? 0) / 1000;
  return { offered: s.offered, achieved: s.achieved, p99Ms: s.p99Ms, gcPauseMsPerSec: s.runtime !== null && seconds > 0 ? s.runtime.gc.totalPauseMs / seconds : Number.NaN };
}

function rows(mode: string, steps: StepReport[]): BenchResult[] {
  return steps.map((s) => ({
    name: `${mode} @ ${s.offered} req/s offered`,
    ns_per_op: s.achieved > 0 ? round(1e9 / s.achieved) : 0,
    ops_per_s: Math.round(s.achieved),
    offered: s.offered,
    p50_ms: round(s.p50Ms),
    p99_ms: round(s.p99Ms),
    p999_ms: round(s.p999Ms),
    errors: s.serverErrors + s.networkErrors,
    client_errors: s.clientErrors,
    shed: s.shed,
    gc_count: s.runtime?.gc.count ?? null,
    gc_young: s.runtime?.gc.young ?? null,
    gc_pause_total_ms: s.runtime === null ? null : round(s.runtime.gc.totalPauseMs),
    gc_pause_max_ms: s.runtime === null ? null : round(s.runtime.gc.maxPauseMs),
    alloc_mb_per_s: s.runtime === null ? null : round(s.runtime.allocationBytesPerSec / 1e6),
    event_loop_delay_p99_ms: s.runtime === null ? null : round(s.runtime.eventLoopDelayMs.p99),
    service_cpu_cores: s.runtime === null ? null : round(s.runtime.cpuCores),
    generator_cpu_us_per_req: round(s.generatorCpuUsPerRequest, 1),
    saturated: s.saturated,
  }));
}

const suite: Suite = async (context) => {
  const config = parseConfig(context);
  const { progress } = context;
  progress(`steps from ${config.start} req/s by ${config.step} (max ${config.max}), ${config.holdMs / 1000}s each after ${config.warmupMs / 1000}s warm-up; loopback only`);

  const [bare, governed] = await curves(config, progress);
  const bareSaturation = Math.max(...bare.steps.map((s) => s.achieved));
  const governedSaturation = Math.max(...governed.steps.map((s) => s.achieved));
  const at80 = Math.max(1, Math.round(0.8 * bareSaturation));
  progress(`saturation: bare ${bareSaturation.toFixed(0)} req/s, governed ${governedSaturation.toFixed(0)} req/s; p99 of both at 80% of bare (${at80} req/s), median of ${config.quick ? 1 : ROUNDS_AT_80} alternating rounds`);
  let bare80: StepReport;
  let governed80: StepReport;
  let overloaded: string | null = null;
  try {
    // Five rounds each: on a shared 2-core machine one 5 s step's p99 varies up to 3x from round
    // to round (measured 4.9-15.4 ms for the same service and load); the median of five holds.
    const at80Rounds = await atLoad(at80, config.quick ? 1 : ROUNDS_AT_80, config, [bare, governed], progress);
    [bare80, governed80] = at80Rounds.medians;
    overloaded = overloadedAt80(...at80Rounds.all);
  } finally {
    for (const c of [bare, governed]) {
      c.client.close();
      await c.service.stop();
    }
  }

  const capped = unsaturatedAtTop(bare.steps, governed.steps);
  const ratios = {
    governed_vs_bare_saturation: round(governedSaturation / bareSaturation),
    p99_ratio_at_80pct: round(governed80.p99Ms / Math.max(bare80.p99Ms, 0.001)),
  };
  const svg = renderLoadChart(
    'govmap reference service: load curve, governance on vs bare',
    [
      { label: 'governed (validation, metrics, audit…)', color: '#1f6feb', points: governed.steps.map(toPoint) },
      { label: 'bare (plain Map)', color: '#d97706', points: bare.steps.map(toPoint) },
    ],
    [
      `saturation: governed ${governedSaturation.toFixed(0)} req/s, bare ${bareSaturation.toFixed(0)} req/s (ratio ${ratios.governed_vs_bare_saturation})`,
      `p99 at ${at80} req/s (80% of bare saturation): governed ${governed80.p99Ms.toFixed(2)} ms, bare ${bare80.p99Ms.toFixed(2)} ms (ratio ${ratios.p99_ratio_at_80pct})`,
      ...(overloaded === null ? [] : ['warning: bare was saturated at 80% of its own saturation (the host slowed down): the p99 ratio compares overloaded services']),
      ...(capped === null ? [] : ['warning: a service still kept up at the top of the climb: its saturation is the cap, not its capacity (raise --max or --max-steps)']),
      'open-loop generator (latency from scheduled send time), reads:writes 20:1, X-Biz-Tag across 4 orgs',
    ],
  );
  writeFileSync(config.out, svg);
  progress(`chart written to ${config.out}`);

  return {
    suite: 'load',
    results: [...rows('bare', bare.steps), ...rows('governed', governed.steps), ...rows('bare at 80%', [bare80]), ...rows('governed at 80%', [governed80])],
    ratios,
    targets: { governed_vs_bare_saturation: '>= 0.9', p99_ratio_at_80pct: '<= 1.2' },
    notes: [
      `saturation = highest achieved req/s over the steps; a step is saturated when achieved < ${SATURATION.achievedShare * 100}% of offered, p99 > ${SATURATION.p99Ms} ms or > ${SATURATION.failedShare * 100}% failed`,
      'service and generator share this machine\'s cores: compare the two runs, not absolute numbers; generator_cpu_us_per_req is what the generator itself took',
      `chart: ${config.out}`,
      ...(overloaded === null ? [] : [`warning: ${overloaded}`]),
      ...(capped === null ? [] : [`warning: ${capped}`]),
    ],
    chart: config.out,
  };
};

export default suite;
