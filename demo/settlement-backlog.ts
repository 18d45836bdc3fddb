/**
 * Settlements the gateway could not take when their transfer was booked (its org's breaker open,
 * the gateway failing or slow), settled later in batches: the "later batch" a transfer's answer
 * promises (`settlement: queued`). Without it the demo counted queued settlements and never
 * settled one, so a gateway outage left the books and the gateway apart for good.
 *
 * Every `retryEveryMs` each org's oldest settlements (up to `batchSize`) are sent again, oldest
 * first, through the same per-org breaker as a live settlement: an org whose breaker is still
 * open, or whose gateway still fails, keeps its settlements (the first refusal or failure ends
 * that org's batch, so a failing gateway is not hammered with the backlog), and other orgs are
 * not held up by it. At most `maxPending` settlements are held (memory stays bounded through a
 * long outage); beyond that a settlement is counted as overflowed, for the reconciliation a real
 * clearing house runs at the end of the day, and the transfer's booking stands either way.
 */
export interface PendingSettlement {
  readonly org: string;
  readonly from: string;
  readonly to: string;
  readonly amount: bigint;
  /** Date.now() when it was first queued. */
  readonly queuedAt: number;
}

/** What one retry of a settlement came to. */
export type RetryResult = 'settled' | 'refused' | 'failed';

export interface SettlementBacklogOptions {
  /** Sends one settlement again (through the org's breaker); never throws. */
  readonly retry: (settlement: PendingSettlement) => Promise<RetryResult>;
  /** Most settlements held. Default 100,000. */
  readonly maxPending?: number;
  /** Most settlements of one org sent per round. Default 100. */
  readonly batchSize?: number;
  /** Time between rounds, ms. Default 1,000. */
  readonly retryEveryMs?: number;
}

export interface SettlementBacklogStatus {
  readonly pending: number;
  readonly settledLater: number;
  /** Retries the gateway failed or the breaker refused (the settlement stays pending). */
  readonly retriesFailed: number;
  readonly overflowed: number;
  readonly oldestQueuedAt: string | null;
}

export class SettlementBacklog {
  readonly #retry: SettlementBacklogOptions['retry'];
  readonly #maxPending: number;
  readonly #batchSize: number;
  /** Per org, oldest first. Orgs leave the map when their queue empties. */
  readonly #byOrg = new Map<string, PendingSettlement[]>();
  #pending = 0;
  #settledLater = 0;
  #retriesFailed = 0;
  #overflowed = 0;
  #round: Promise<void> | null = null;
  readonly #timer: NodeJS.Timeout;

  constructor(options: SettlementBacklogOptions) {
    this.#retry = options.retry;
    this.#maxPending = options.maxPending ?? 100_000;
    this.#batchSize = options.batchSize ?? 100;
    this.#timer = setInterval(() => void this.retryNow(), options.retryEveryMs ?? 1000);
    // A backlog never keeps the process alive: the demo stops when it is told to.
    this.#timer.unref();
  }

  /** Queues a settlement; false when the backlog is full (counted as overflowed). */
  add(settlement: PendingSettlement): boolean {
    if (this.#pending >= this.#maxPending) {
      this.#overflowed++;
      return false;
    }
    let queue = this.#byOrg.get(settlement.org);
    if (queue === undefined) this.#byOrg.set(settlement.org, (queue = []));
    queue.push(settlement);
    this.#pending++;
    return true;
  }

  /**
   * One round now (the timer's, or a test's); resolves when it is over. A round already running
   * is joined, not doubled: two rounds would send the same settlement twice.
   */
  retryNow(): Promise<void> {
    this.#round ??= this.#runRound().finally(() => (this.#round = null));
    return this.#round;
  }

  async #runRound(): Promise<void> {
    // Orgs one after another, each batch in order: the backlog is a trickle beside live traffic.
    for (const [org, queue] of [...this.#byOrg]) {
      const batch = queue.slice(0, this.#batchSize);
      let settled = 0;
      for (const settlement of batch) {
        const result = await this.#retry(settlement);
        if (result !== 'settled') {
          this.#retriesFailed++;
          break;
        }
        settled++;
      }
      // Settled ones leave from the front (added ones went to the back meanwhile).
      queue.splice(0, settled);
      this.#pending -= settled;
      this.#settledLater += settled;
      if (queue.length === 0) this.#byOrg.delete(org);
    }
  }

  status(): SettlementBacklogStatus {
    let oldest = Number.POSITIVE_INFINITY;
    for (const queue of this.#byOrg.values()) if (queue.length > 0 && queue[0]!.queuedAt < oldest) oldest = queue[0]!.queuedAt;
    return {
      pending: this.#pending,
      settledLater: this.#settledLater,
      retriesFailed: this.#retriesFailed,
      overflowed: this.#overflowed,
      oldestQueuedAt: Number.isFinite(oldest) ? new Date(oldest).toISOString() : null,
    };
  }

  /** The settlements still pending, each org's oldest first. */
  pendingSettlements(): PendingSettlement[] {
    return [...this.#byOrg.values()].flat();
  }

  /** Stops the rounds (after the one running, if any); what is pending stays counted. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#round;
  }
}
