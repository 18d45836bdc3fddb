import { Worker } from 'node:worker_threads';
import { SharedInt64Store } from '../src/stores/index.ts';
import { HttpError, sendJson } from './http.ts';
import { formatAmount } from './money.ts';
import type { DemoContext } from './server.ts';
import type { ScanReply, ScanRequest } from './shared-memory.worker.ts';
import { WorkerPool } from './worker-pool.ts';

export interface DemoSharedMemoryOptions {
  /** Worker threads of the risk-scan pool, started on the first scan. Default 2. */
  readonly workers?: number;
}

/**
 * The ledger's balances live in shared memory: the GovernedMap in the main thread still
 * validates, counts and audits every write (it commits by compare-and-swap on the shared
 * entry), and worker threads read the balances directly. Account ids are up to 64 characters.
 */
export function createSharedBalanceStore(accounts: number): SharedInt64Store {
  return SharedInt64Store.create({ initialCapacity: Math.max(1024, accounts), maxKeyLength: 64 });
}

/**
 * Plugs the shared-memory store into the demo:
 * - `GET /shared-memory/exposure?floor=<minor units>`: a risk scan of the seeded accounts, split
 *   across a pool of worker threads that read the balances straight from shared memory while
 *   the main thread keeps serving payments; the total, the accounts below the floor, and what
 *   each worker read;
 * - `GET /shared-memory`: the store's figures (keys, bytes, growths, recovered workers).
 */
export function installSharedMemory(context: DemoContext, store: SharedInt64Store, options: DemoSharedMemoryOptions = {}): void {
  const size = options.workers ?? 2;
  const accounts = context.options.accounts ?? 1000;
  const pool = new WorkerPool<Omit<ScanRequest, 'id'>, ScanReply>(
    size,
    () => {
      const url = new URL(`./shared-memory.worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
      const worker = new Worker(url, { workerData: { balances: store.handle } });
      // A worker that dies while holding a lock must not wedge the ledger: recover it on exit.
      store.supervise(worker);
      worker.unref();
      return worker;
    },
    (code) => new HttpError(503, 'SCAN_WORKER_LOST', `a shared-memory scan worker ended (exit code ${code}) before it answered; the next scan starts new workers`),
  );

  context.router.route('GET', /^\/shared-memory\/exposure$/, async (req, res) => {
    const raw = new URL(req.url ?? '/', 'http://localhost').searchParams.get('floor') ?? '100000';
    if (!/^(0|[1-9][0-9]{0,18})$/.test(raw)) throw new HttpError(400, 'FLOOR_MALFORMED', '"floor" must be a non-negative integer of minor units, e.g. 100000');
    const floor = BigInt(raw);
    const started = performance.now();
    const replies = await pool.each((i, n) => {
      const per = Math.ceil(accounts / n);
      return { from: i * per, to: Math.min(accounts, (i + 1) * per), floor, list: 20 };
    });
    sendJson(res, 200, {
      accounts,
      floor: formatAmount(floor),
      total: formatAmount(replies.reduce((sum, r) => sum + r.total, 0n)),
      belowFloor: replies.reduce((n, r) => n + r.belowFloor, 0),
      listed: replies.flatMap((r) => r.listed).slice(0, 20),
      missing: replies.reduce((n, r) => n + r.missing, 0),
      ms: Math.round((performance.now() - started) * 1000) / 1000,
      workers: replies.map((r) => ({ thread: r.thread, reads: r.reads, ms: Math.round(r.ms * 1000) / 1000 })),
    });
  });
  context.router.route('GET', /^\/shared-memory$/, (_req, res) => sendJson(res, 200, { kind: store.kind, ...store.stats() }));
  context.onClose(async () => {
    await pool.close();
    store.close();
  });
  context.announce(`shared memory: balances in a SharedArrayBuffer; GET /shared-memory/exposure?floor=100000 scans them from ${size} worker threads`);
}
