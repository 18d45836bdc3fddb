/**
 * A risk-scan worker of the demo: attached to the ledger's balances in shared memory, it reads
 * a range of accounts directly — no message per read, no copy of the balances — and answers
 * with their total and the accounts below a floor.
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { SharedInt64Store } from '../src/stores/index.ts';
import type { SharedMapHandle } from '../src/stores/index.ts';
import { accountId } from './ledger.ts';

export interface ScanRequest {
  /** Echoed in the reply: several scans may be waiting on one worker. */
  readonly id: number;
  readonly from: number;
  readonly to: number;
  readonly floor: bigint;
  /** At most this many accounts below the floor are listed (all are counted). */
  readonly list: number;
}

export interface ScanReply {
  /** The id of the request this answers. */
  readonly id: number;
  readonly thread: number;
  readonly reads: number;
  readonly missing: number;
  readonly total: bigint;
  readonly belowFloor: number;
  readonly listed: string[];
  readonly ms: number;
}

const balances = SharedInt64Store.attach((workerData as { balances: SharedMapHandle }).balances);
parentPort!.on('message', (request: ScanRequest) => {
  const started = performance.now();
  let total = 0n;
  let missing = 0;
  let belowFloor = 0;
  const listed: string[] = [];
  for (let i = request.from; i < request.to; i++) {
    const id = accountId(i);
    const balance = balances.get(id);
    if (balance === undefined) {
      missing++;
      continue;
    }
    total += balance;
    if (balance < request.floor) {
      belowFloor++;
      if (listed.length < request.list) listed.push(id);
    }
  }
  const reply: ScanReply = { id: request.id, thread: threadId, reads: request.to - request.from, missing, total, belowFloor, listed, ms: performance.now() - started };
  parentPort!.postMessage(reply);
});
