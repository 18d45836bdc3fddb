import * as hdr from 'hdr-histogram-js';
import type { LoadHttpClient } from './http-client.ts';

/**
 * An open-loop load generator: requests are issued on a fixed schedule (request i at
 * t0 + i / rate) whether or not earlier ones have answered, so a slow server cannot slow the
 * offered load down. Latency is measured from the *scheduled* send time, not the actual one,
 * which is what corrects coordinated omission: a stall shows up as the latency of every
 * request that should have been sent during it.
 *
 * Bounded: each step stops at its deadline; requests in flight are capped (`maxInFlight`)
 * and those that cannot be sent are counted as `shed`, never queued without limit.
 */
export interface StepOptions {
  /** Offered load, requests per second. */
  readonly rate: number;
  /** Measured part of the step, ms. */
  readonly durationMs: number;
  /** Unmeasured lead-in at the same rate, ms. */
  readonly warmupMs: number;
  /** Keep-alive connections to the service (see http-client.ts for why not node:http). */
  readonly client: LoadHttpClient;
  readonly next: () => PlannedRequest;
  /** Cap on requests awaiting an answer; beyond it, scheduled requests are shed. Default 2048. */
  readonly maxInFlight?: number;
  /** How long the step waits for answers still in flight at its end, ms (the client's own deadline fails them). Default 5,000. */
  readonly timeoutMs?: number;
  /** Called once the warm-up is over, before measuring (e.g. reset the server's probe). */
  readonly onMeasureStart?: () => Promise<void>;
}

export interface PlannedRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
}

export interface StepResult {
  readonly offered: number;
  readonly achieved: number;
  readonly sent: number;
  readonly completed: number;
  readonly ok: number;
  readonly clientErrors: number;
  readonly serverErrors: number;
  readonly networkErrors: number;
  readonly shed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
  /** The generator's own CPU (this process, all threads) per completed request over the measured part, µs. */
  readonly generatorCpuUsPerRequest: number;
}

/**
 * How the generator waits for the next scheduled request. It used to spin (setImmediate until
 * due): precise, but it kept one of the machine's two cores busy whatever the rate, leaving the
 * service and its threads to share the other. Now: a timer while the next request is far off
 * (Node's timers fire up to ~1 ms late, hence waking this much early), and naps of NAP_MS in
 * Atomics.wait close to it, each wake-up sending every request due by then. A timed wait costs
 * ~20-30 µs of CPU on these virtual machines, so napping once per request would cost half a
 * core at 16,000 req/s. The price is precision: a request leaves up to NAP_MS (plus the
 * kernel's timer slack) after its time and an answer arriving during a nap is read up to that
 * much late, both counted in its latency (measured from the scheduled time): ~0.45 ms added to
 * p50 (measured at 16,000 req/s), the same for both services, beside step p99s of several ms.
 * Measured: the generator's CPU per request at 16,000 req/s went from ~70 µs to ~26 µs.
 */
const COARSE_WAIT_MS = 2;
const NAP_MS = 0.25;
const nap = new Int32Array(new SharedArrayBuffer(4));

export async function runStep(options: StepOptions): Promise<StepResult> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  const maxInFlight = options.maxInFlight ?? 2048;
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = 1000 / options.rate;
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const end = measureFrom + options.durationMs;
  let measuring = false;
  let scheduled = 0;
  let inFlight = 0;
  const counts = { sent: 0, completed: 0, ok: 0, clientErrors: 0, serverErrors: 0, networkErrors: 0, shed: 0 };
  let completedInWindow = 0;
  let cpuAtMeasureStart: NodeJS.CpuUsage | null = null;

  const fire = (scheduledAt: number): void => {
    const measured = scheduledAt >= measureFrom;
    if (inFlight >= maxInFlight) {
      if (measured) counts.shed++;
      return;
    }
    const planned = options.next();
    inFlight++;
    if (measured) counts.sent++;
    const finish = (status: number): void => {
      inFlight--;
      const doneAt = performance.now();
      if (!measured) return;
      counts.completed++;
      if (doneAt <= end) completedInWindow++;
      histogram.recordValue(Math.max(1, Math.round((doneAt - scheduledAt) * 1000)));
      if (status === 0) counts.networkErrors++;
      else if (status >= 500) counts.serverErrors++;
      else if (status >= 400) counts.clientErrors++;
      else counts.ok++;
    };
    options.client.send(planned.method, planned.path, planned.headers, planned.body, finish);
  };

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      if (!measuring && now >= measureFrom) {
        measuring = true;
        cpuAtMeasureStart = process.cpuUsage();
        void options.onMeasureStart?.();
      }
      if (now >= end) {
        resolve();
        return;
      }
      // Issue everything whose scheduled time has come; late ticks catch up, keeping the rate.
      // Request i is due at start + i * intervalMs: every i up to and including this instant.
      const due = Math.floor((now - start) / intervalMs) + 1;
      while (scheduled < due) fire(start + scheduled++ * intervalMs);
      const wait = Math.min(start + scheduled * intervalMs, end) - performance.now();
      if (wait > COARSE_WAIT_MS) {
        setTimeout(tick, wait - COARSE_WAIT_MS);
      } else {
        if (wait > 0) Atomics.wait(nap, 0, 0, NAP_MS);
        setImmediate(tick);
      }
    };
    tick();
  });
  // Give answers still in flight until the client has failed any past its deadline, bounded.
  const drainUntil = performance.now() + timeoutMs + 500;
  while (inFlight > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));

  const cpu = cpuAtMeasureStart === null ? null : process.cpuUsage(cpuAtMeasureStart);
  const generatorCpu = cpu === null ? 0 : cpu.user + cpu.system;
  const ms = (us: number): number => us / 1000;
  return {
    offered: options.rate,
    achieved: (completedInWindow * 1000) / options.durationMs,
    ...counts,
    p50Ms: ms(histogram.getValueAtPercentile(50)),
    p99Ms: ms(histogram.getValueAtPercentile(99)),
    p999Ms: ms(histogram.getValueAtPercentile(99.9)),
    maxMs: ms(histogram.maxValue),
    meanMs: ms(histogram.mean),
    generatorCpuUsPerRequest: generatorCpu / Math.max(1, counts.completed),
  };
}

/**
 * The reference mix: reads:writes 20:1 over the seeded accounts; writes are small credits,
 * debits and transfers that the validator accepts; every request carries an X-Biz-Tag across
 * several orgs and transaction types.
 */
export function referenceMix(accounts: number, readsPerWrite = 20): () => PlannedRequest {
  let seed = 0x9e3779b9;
  const random = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const orgs = ['1001', '1002', '2001', '3001'];
  const account = (n: number): string => `acct-${String(n).padStart(6, '0')}`;
  const id = (): string => account(random(accounts));
  let i = 0;
  return (): PlannedRequest => {
    const isWrite = i++ % (readsPerWrite + 1) === readsPerWrite;
    const org = orgs[random(orgs.length)]!;
    if (!isWrite) return { method: 'GET', path: `/accounts/${id()}`, headers: { 'x-biz-tag': `orgId:${org}|txnType:query` } };
    const kind = random(3);
    const amount = String(1 + random(100));
    // A transfer's payee differs from its payer: a transfer to itself is refused (400), an error in the step's count.
    const from = random(accounts);
    const to = (from + 1 + random(Math.max(1, accounts - 1))) % accounts;
    const body = kind === 2 ? JSON.stringify({ from: account(from), to: account(to), amount }) : JSON.stringify({ amount });
    const path = kind === 2 ? '/transfers' : `/accounts/${id()}/${kind === 0 ? 'credit' : 'debit'}`;
    return {
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'x-biz-tag': `orgId:${org}|txnType:pay` },
      body,
    };
  };
}
