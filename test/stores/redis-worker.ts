/**
 * A second "machine" for the multi-process Redis tests: forked with IPC, it opens its own
 * connection and map, does what the parent asks, and reports back. Not a test file itself.
 *
 * Messages in:  { mode: 'accounts', redis, prefix, accounts, ops, concurrency, seed }
 *               { mode: 'watch', redis, prefix, key }   then { stop: true }
 * Messages out: accounts -> { type: 'done', applied: {account: "<decimal>"}, refused, conflicts, lowest }
 *               watch    -> { type: 'ready' }, { type: 'invalidated', at }, { type: 'value', value }
 */
import { UpdateConflictError, ValidationError } from '../../src/index.ts';
import { int64Codec, openRedisGovernedMap } from '../../src/stores/redis/index.ts';
import type { RedisConnectionOptions, RemoteGovernedMap } from '../../src/stores/redis/index.ts';

interface AccountsJob {
  readonly mode: 'accounts';
  readonly redis: RedisConnectionOptions;
  readonly prefix: string;
  readonly accounts: string[];
  readonly ops: number;
  readonly concurrency: number;
  readonly seed: number;
}
interface WatchJob {
  readonly mode: 'watch';
  readonly redis: RedisConnectionOptions;
  readonly prefix: string;
  readonly key: string;
}

const send = (message: unknown): void => {
  process.send!(message);
};

function open(redis: RedisConnectionOptions, prefix: string, onNearInvalidated?: (key: string | null) => void): Promise<RemoteGovernedMap<bigint>> {
  return openRedisGovernedMap<bigint>({
    name: 'balances',
    redis,
    keyPrefix: prefix,
    codec: int64Codec,
    validate: (_id, next) => (next >= 0n ? true : 'BALANCE_UNDERFLOW'),
    bounds: { min: 0n, belowReason: 'BALANCE_UNDERFLOW' },
    updateRetries: 50,
    sizeRefreshMs: 0,
    onNearInvalidated,
  });
}

async function accounts(job: AccountsJob): Promise<void> {
  const map = await open(job.redis, job.prefix);
  let seed = job.seed;
  const random = (n: number): number => {
    // 32-bit arithmetic: in doubles the product passes 2^53 and the sequence collapses.
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return (seed >>> 8) % n;
  };
  const applied = new Map<string, bigint>(job.accounts.map((a) => [a, 0n]));
  let refused = 0;
  let conflicts = 0;
  let lowest: bigint | null = null;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < job.ops) {
      next++;
      const account = job.accounts[random(job.accounts.length)]!;
      const delta = BigInt(random(351) - 200); // debits outweigh credits: the bound is hit often
      try {
        const balance = random(2) === 0 ? await map.add(account, delta) : await map.update(account, (b) => b! + delta);
        if (balance === undefined) throw new Error(`account ${account} vanished`);
        if (lowest === null || balance < lowest) lowest = balance;
        applied.set(account, applied.get(account)! + delta);
      } catch (error) {
        if (error instanceof ValidationError) refused++;
        else if (error instanceof UpdateConflictError) conflicts++;
        else throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  send({ type: 'done', applied: Object.fromEntries([...applied].map(([a, v]) => [a, v.toString()])), refused, conflicts, lowest: String(lowest), casConflicts: map.counters.casConflicts });
  await map.dispose();
}

async function watch(job: WatchJob): Promise<void> {
  let map: RemoteGovernedMap<bigint> | undefined = undefined;
  map = await open(job.redis, job.prefix, (key) => {
    if (key !== job.key) return;
    send({ type: 'invalidated', at: performance.timeOrigin + performance.now() });
    void map!.load(job.key).then((value) => send({ type: 'value', value: String(value) }));
  });
  await map.load(job.key);
  if (map.loadCached(job.key) === undefined) throw new Error('the watched key did not enter the near cache');
  send({ type: 'ready' });
  process.on('message', (message: { stop?: boolean }) => {
    if (message.stop === true) void map.dispose().then(() => process.exit(0));
  });
}

process.once('message', (job: AccountsJob | WatchJob) => {
  const run = job.mode === 'accounts' ? accounts(job) : watch(job);
  run.catch((error: unknown) => {
    send({ type: 'error', message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
    process.exit(1);
  });
});
