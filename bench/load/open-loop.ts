import { request } from 'node:http';
import type { Agent } from 'node:http';
import * as hdr from 'hdr-histogram-js';

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
  readonly url: string;
  /** Offered load, requests per second. */
  readonly rate: number;
  /** Measured part of the step, ms. */
  readonly durationMs: number;
  /** Unmeasured lead-in at the same rate, ms. */
  readonly warmupMs: number;
  readonly agent: Agent;
  readonly next: () => PlannedRequest;
  /** Cap on requests awaiting an answer; beyond it, scheduled requests are shed. Default 2048. */
  readonly maxInFlight?: number;
  /** Per-request deadline, ms. Default 5,000. */
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
}

export async function runStep(options: StepOptions): Promise<StepResult> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  const maxInFlight = options.maxInFlight ?? 2048;
  const timeoutMs = options.timeoutMs ?? 5000;
  const base = new URL(options.url);
  const intervalMs = 1000 / options.rate;
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const end = measureFrom + options.durationMs;
  let measuring = false;
  let scheduled = 0;
  let inFlight = 0;
  const counts = { sent: 0, completed: 0, ok: 0, clientErrors: 0, serverErrors: 0, networkErrors: 0, shed: 0 };
  let completedInWindow = 0;

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
    const req = request(
      { host: base.hostname, port: base.port, method: planned.method, path: planned.path, headers: planned.headers, agent: options.agent, timeout: timeoutMs },
      (res) => {
        res.on('data', () => undefined);
        res.on('end', () => finish(res.statusCode ?? 0));
        res.on('error', () => finish(0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => finish(0));
    req.end(planned.body);
  };

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      if (!measuring && now >= measureFrom) {
        measuring = true;
        void options.onMeasureStart?.();
      }
      if (now >= end) {
        resolve();
        return;
      }
      // Issue everything whose scheduled time has come; late ticks catch up, keeping the rate.
      const due = Math.floor((now - start) / intervalMs);
      while (scheduled < due) fire(start + scheduled++ * intervalMs);
      setImmediate(tick);
    };
    tick();
  });
  // Give answers still in flight up to the request deadline, bounded.
  const drainUntil = performance.now() + timeoutMs;
  while (inFlight > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));

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
  const id = (): string => `acct-${String(random(accounts)).padStart(6, '0')}`;
  let i = 0;
  return (): PlannedRequest => {
    const isWrite = i++ % (readsPerWrite + 1) === readsPerWrite;
    const org = orgs[random(orgs.length)]!;
    if (!isWrite) return { method: 'GET', path: `/accounts/${id()}`, headers: { 'x-biz-tag': `orgId:${org}|txnType:query` } };
    const kind = random(3);
    const amount = String(1 + random(100));
    const body = kind === 2 ? JSON.stringify({ from: id(), to: id(), amount }) : JSON.stringify({ amount });
    const path = kind === 2 ? '/transfers' : `/accounts/${id()}/${kind === 0 ? 'credit' : 'debit'}`;
    return {
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'x-biz-tag': `orgId:${org}|txnType:pay` },
      body,
    };
  };
}
