import { ConfigurationError, InvalidArgumentError, MapDisposedError, ValidationError } from '../src/map/index.ts';
import { RedisCommandRefusedError, RedisUnavailableError, RedisValueCorruptError, int64Codec, openRedisGovernedMap } from '../src/stores/redis/index.ts';
import type { RedisConnectionOptions, RemoteGovernedMap } from '../src/stores/redis/index.ts';
import type { BalanceBook } from './book.ts';
import { sendError } from './http.ts';
import { LedgerError, accountId, assertAccountId } from './ledger.ts';
import { INT64_MAX } from './money.ts';
import type { DemoContext } from './server.ts';

/** `govmap demo --redis <url>` / `--redis-cluster <host:port,...>`. */
export interface DemoRedisOptions {
  /** One Redis server, `redis://host:port`. */
  readonly url?: string;
  /** A Redis Cluster's seed nodes, `host:port`. */
  readonly clusterNodes?: readonly string[];
  /** Prefix of the balance keys. Default `govmap:demo:balances:`. */
  readonly keyPrefix?: string;
  /** PEM file of the CA that signed a `rediss://` server's certificate (`--redis-ca-file`): trusted by this connection only. */
  readonly caFile?: string;
}

/** The CLI flags as DemoRedisOptions, or undefined when neither is given. */
export function demoRedisOptions(flags: { readonly redis?: string; readonly redisCluster?: string; readonly redisCaFile?: string }): DemoRedisOptions | undefined {
  if (flags.redis !== undefined && flags.redisCluster !== undefined) throw new ConfigurationError('--redis', 'give --redis or --redis-cluster, not both');
  // Checked here, not left to be ignored: a CA with no Redis to trust it for is a mistake.
  if (flags.redisCaFile !== undefined && flags.redis === undefined && flags.redisCluster === undefined) {
    throw new ConfigurationError('--redis-ca-file', 'needs --redis rediss://host:port or --redis-cluster rediss://host:port,...: it is the CA of their TLS certificates');
  }
  const caFile = flags.redisCaFile === undefined ? {} : { caFile: flags.redisCaFile };
  if (flags.redis !== undefined) return { url: flags.redis, ...caFile };
  if (flags.redisCluster !== undefined) return { clusterNodes: flags.redisCluster.split(',').map((node) => node.trim()), ...caFile };
  return undefined;
}

const DEFAULT_PREFIX = 'govmap:demo:balances:';
// Seeding issues this many loadOrStore calls at once: node-redis pipelines them.
const SEED_BATCH = 200;

/**
 * The clearing service's balances in Redis, shared by every demo process pointed at the same
 * Redis: the same business rules as Ledger (never below zero, never above int64), enforced
 * atomically across processes by the bounded INCRBY of `add`.
 */
export class RedisLedger implements BalanceBook {
  readonly balances: RemoteGovernedMap<bigint>;

  constructor(balances: RemoteGovernedMap<bigint>) {
    this.balances = balances;
  }

  /**
   * Creates the accounts that do not exist yet; existing balances are kept, since other
   * processes may already be moving money on them.
   */
  async seed(count: number, balance: bigint): Promise<number> {
    let created = 0;
    for (let i = 0; i < count; i += SEED_BATCH) {
      const batch = Array.from({ length: Math.min(SEED_BATCH, count - i) }, (_, j) => this.balances.loadOrStore(accountId(i + j), balance));
      for (const { loaded } of await Promise.all(batch)) if (!loaded) created++;
    }
    return created;
  }

  async balance(id: string): Promise<bigint> {
    assertAccountId(id);
    const value = await this.balances.load(id);
    if (value === undefined) throw notFound(id);
    return value;
  }

  credit(id: string, amount: bigint): Promise<bigint> {
    return this.#apply(id, amount);
  }

  debit(id: string, amount: bigint): Promise<bigint> {
    return this.#apply(id, -amount);
  }

  /**
   * Debit then credit, two atomic adds (the specification forbids batch operations on the map).
   * If the credit is refused, the debit is reversed; if the credit's outcome is unknown (Redis
   * lost mid-command), nothing is reversed blindly: the caller gets 503 and the log says what to
   * reconcile.
   */
  async transfer(from: string, to: string, amount: bigint): Promise<{ from: bigint; to: bigint }> {
    assertAccountId(from);
    assertAccountId(to);
    if (from === to) throw new LedgerError(400, 'TRANSFER_SAME_ACCOUNT', 'a transfer needs two different accounts');
    const [a, b] = await Promise.all([this.balances.load(from), this.balances.load(to)]);
    if (a === undefined) throw notFound(from);
    if (b === undefined) throw notFound(to);
    let fromBalance: bigint;
    try {
      fromBalance = await this.#apply(from, -amount);
    } catch (error) {
      // A debit that may be in Redis (an unknown outcome, or an error raised after the write)
      // is not a refusal: the money may have left the payer with nothing credited.
      if (writeNotApplied(error)) throw error;
      console.error(`govmap demo: RECONCILE transfer ${from} -> ${to} of ${amount}: the debit may or may not have been applied; nothing credited`, error);
      throw new LedgerError(503, 'TRANSFER_OUTCOME_UNKNOWN', `the debit of ${from} may have been applied (${describeFailure(error)}); ${to} was not credited: reconcile before retrying`);
    }
    try {
      return { from: fromBalance, to: await this.#apply(to, amount) };
    } catch (error) {
      // Reverse only a credit known not to be in Redis. Anything else may have been applied: an
      // unknown Redis outcome, or an error raised after the write (an audit that cannot fsync
      // rejects the awaited add of a credit Redis holds); reversing then would create money.
      if (!writeNotApplied(error)) {
        const why = describeFailure(error);
        console.error(`govmap demo: RECONCILE transfer ${from} -> ${to} of ${amount}: debited; the credit may or may not have been applied`, error);
        throw new LedgerError(503, 'TRANSFER_OUTCOME_UNKNOWN', `${from} was debited; the credit of ${to} may or may not have been applied (${why}): reconcile before retrying`);
      }
      try {
        await this.balances.add(from, amount);
      } catch (compensation) {
        console.error(`govmap demo: RECONCILE transfer ${from} -> ${to} of ${amount}: debited, credit refused, reversal failed`, compensation);
        throw new LedgerError(503, 'TRANSFER_REVERSAL_FAILED', `${from} was debited, the credit of ${to} was refused, and the reversal failed: reconcile before retrying`);
      }
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.balances.dispose();
  }

  async #apply(id: string, delta: bigint): Promise<bigint> {
    assertAccountId(id);
    const balance = await this.balances.add(id, delta);
    if (balance === undefined) throw notFound(id);
    return balance;
  }
}

/** Opens the Redis-backed balances with the Ledger's business rules. */
export async function openRedisLedger(options: DemoRedisOptions): Promise<RedisLedger> {
  const tls = options.caFile === undefined ? {} : { tls: { caFile: options.caFile } };
  const redis: RedisConnectionOptions = options.url !== undefined ? { url: options.url, ...tls } : { clusterNodes: options.clusterNodes, ...tls };
  const balances = await openRedisGovernedMap<bigint>({
    name: 'balances',
    redis,
    keyPrefix: options.keyPrefix ?? DEFAULT_PREFIX,
    codec: int64Codec,
    validate: (_id, next) => {
      if (next < 0n) return { reason: 'BALANCE_UNDERFLOW', detail: 'the balance would go below zero' };
      if (next > INT64_MAX) return { reason: 'BALANCE_OVERFLOW', detail: 'the balance would exceed int64' };
      return true;
    },
    // The validator's range, enforced atomically by Redis on every credit and debit.
    bounds: { min: 0n, max: INT64_MAX, belowReason: 'BALANCE_UNDERFLOW', aboveReason: 'BALANCE_OVERFLOW' },
    validateDelete: (_id, previous) => (previous === 0n ? true : { reason: 'ACCOUNT_NOT_EMPTY', detail: 'only a zero balance can be closed' }),
  });
  return new RedisLedger(balances);
}

/**
 * Redis mode of the demo: the account routes use balances in Redis; metrics export that map as
 * `balances`; Redis being unreachable answers 503 (never a silent success); the connection
 * closes with the service.
 */
export async function installRedisLedger(
  context: DemoContext,
  options: DemoRedisOptions,
  seed: { accounts: number; openingBalance: bigint },
  beforeSeed?: (ledger: RedisLedger) => void,
): Promise<RedisLedger> {
  const ledger = await openRedisLedger(options);
  context.onClose(() => ledger.close());
  beforeSeed?.(ledger);
  const created = await ledger.seed(seed.accounts, seed.openingBalance);
  context.metrics.track(ledger.balances);
  context.router.mapErrors((res, error) => {
    if (!(error instanceof RedisUnavailableError)) return false;
    sendError(res, 503, 'REDIS_UNAVAILABLE', error.message);
    return true;
  });
  const where = options.url ?? options.clusterNodes?.join(',');
  context.announce(`balances in ${ledger.balances.storeKind} ${where} (keys ${ledger.balances.keyPrefix}*): ${created} accounts created, ${seed.accounts - created} already there; every demo process on this Redis shares them`);
  return ledger;
}

/** Why a write's outcome is unknown, for the client's message. */
function describeFailure(error: unknown): string {
  return error instanceof RedisUnavailableError ? 'Redis unreachable' : error instanceof Error ? error.message.slice(0, 160) : String(error);
}

/**
 * Whether a failed debit or credit certainly wrote nothing: refused by the rules or by Redis, no
 * such account, or never sent. The remote map raises these before its script runs (or instead of it).
 */
function writeNotApplied(error: unknown): boolean {
  if (error instanceof RedisUnavailableError) return error.outcome === 'not-applied';
  return (
    error instanceof LedgerError ||
    error instanceof ValidationError ||
    error instanceof InvalidArgumentError ||
    error instanceof MapDisposedError ||
    error instanceof RedisCommandRefusedError ||
    error instanceof RedisValueCorruptError
  );
}

function notFound(id: string): LedgerError {
  return new LedgerError(404, 'ACCOUNT_NOT_FOUND', `no account ${JSON.stringify(id)}`);
}
