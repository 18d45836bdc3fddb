import { accountId } from './ledger.ts';

export interface LoadOptions {
  /** Base URL of the service, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  /** How long to drive traffic, seconds. Default 10. */
  readonly durationSec?: number;
  /** Requests in flight at once. Default 16. */
  readonly concurrency?: number;
  /** Accounts to spread traffic over (acct-000000…). Default 1,000. */
  readonly accounts?: number;
  /**
   * Balance reads per balance written, as the map counts them (the specification's floor being
   * 20). Default 21. A transfer writes two balances, so there are more read requests per write
   * request than this.
   */
  readonly readsPerWrite?: number;
  /** Called about once a second with the totals so far. */
  readonly onProgress?: (progress: LoadProgress) => void;
  readonly signal?: AbortSignal;
}

export interface LoadProgress {
  readonly elapsedSec: number;
  readonly requests: number;
  readonly perSecond: number;
  readonly byStatus: Readonly<Record<string, number>>;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/**
 * Drives the demo with its intended shape: read-mostly over the seeded accounts (21 balance reads
 * per balance written, as the map counts them: 28 read requests per write request), writes a
 * mix of credits, debits (some too large, so the validator visibly refuses them) and transfers.
 * Closed loop (each worker waits for its answer): this shows the demo working; the load curve
 * with an open-loop generator is `govmap bench load`.
 */
export async function runLoad(options: LoadOptions): Promise<LoadProgress> {
  const duration = (options.durationSec ?? 10) * 1000;
  const accounts = options.accounts ?? 1000;
  // Write requests are credits, debits and transfers in equal shares: 4/3 balances written each.
  const readRequestsPerWriteRequest = Math.max(1, Math.round((options.readsPerWrite ?? 21) * (4 / 3)));
  const latencies: number[] = [];
  const byStatus: Record<string, number> = {};
  let requests = 0;
  const started = performance.now();
  let sent = 0;
  let writes = 0;
  let seed = 0x2545f491;
  const random = (n: number): number => {
    // xorshift32: deterministic traffic, no crypto needed for a load mix.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };

  const oneRequest = async (): Promise<void> => {
    const index = random(accounts);
    const id = accountId(index);
    // A fixed rotation, not a draw: the read:write ratio printed after a short load is the one
    // asked for, not a sample of it (a 2 s load of ~1,500 requests drew ratios from 16 to 25).
    const isWrite = sent++ % (readRequestsPerWriteRequest + 1) === readRequestsPerWriteRequest;
    let response: Response;
    const t0 = performance.now();
    if (!isWrite) {
      response = await fetch(`${options.url}/accounts/${id}`);
    } else {
      // A transfer's payee is another account: a transfer to itself is refused (400), not load.
      const kind = writes++ % (accounts >= 2 ? 3 : 2);
      // One debit in ten asks for more than any account holds: a visible validator refusal.
      const amount = kind === 1 && random(10) === 0 ? '900000000000' : String(1 + random(5000));
      const path = kind === 2 ? '/transfers' : `/accounts/${id}/${kind === 0 ? 'credit' : 'debit'}`;
      const body = kind === 2 ? { from: id, to: accountId((index + 1 + random(Math.max(1, accounts - 1))) % accounts), amount } : { amount };
      response = await fetch(options.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    }
    await response.arrayBuffer();
    latencies.push(performance.now() - t0);
    requests++;
    byStatus[response.status] = (byStatus[response.status] ?? 0) + 1;
  };

  const snapshot = (): LoadProgress => {
    const sorted = latencies.slice().sort((a, b) => a - b);
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    const elapsedSec = (performance.now() - started) / 1000;
    return { elapsedSec, requests, perSecond: requests / Math.max(elapsedSec, 0.001), byStatus: { ...byStatus }, p50Ms: at(0.5), p99Ms: at(0.99) };
  };

  const timer = setInterval(() => options.onProgress?.(snapshot()), 1000);
  try {
    const worker = async (): Promise<void> => {
      while (performance.now() - started < duration && options.signal?.aborted !== true) {
        try {
          await oneRequest();
        } catch {
          byStatus.network_error = (byStatus.network_error ?? 0) + 1;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency ?? 16 }, worker));
  } finally {
    clearInterval(timer);
  }
  return snapshot();
}

export function formatProgress(p: LoadProgress): string {
  const statuses = Object.entries(p.byStatus)
    .map(([status, count]) => `${status}:${count}`)
    .join(' ');
  return `${p.elapsedSec.toFixed(1).padStart(5)}s  ${String(p.requests).padStart(7)} req  ${p.perSecond.toFixed(0).padStart(6)} req/s  p50 ${p.p50Ms.toFixed(2)} ms  p99 ${p.p99Ms.toFixed(2)} ms  [${statuses}]`;
}
