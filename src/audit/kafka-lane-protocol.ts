/**
 * The messages between the Kafka forwarder (main thread) and its producer lanes (worker
 * threads, kafka-producer-worker.ts). Kept apart so that the forwarder does not load the worker
 * module (which starts a lane when imported).
 */

export interface ProducerLaneData {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly topic: string;
  /** Deadline of one request to the lane's producer, ms. */
  readonly sendTimeoutMs: number;
  readonly compression: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';
  readonly dedupHeader: boolean;
}

export type ProducerLaneRequest =
  | { readonly type: 'send'; readonly id: number; readonly data: Uint8Array; readonly index: Uint32Array; readonly count: number }
  | { readonly type: 'partitions' | 'discard' | 'close'; readonly id: number };

export type ProducerLaneReply =
  | { readonly type: 'ok'; readonly id: number; readonly count?: number }
  | { readonly type: 'failed'; readonly id: number; readonly message: string; readonly timeout: boolean; readonly tooLarge: boolean };

/** Numbers per record in a send's index: key start, key end, value start, value end, partition. */
export const LANE_INDEX_FIELDS = 5;


/**
 * The broker refused a record batch as larger than its `message.max.bytes` (the client nests
 * broker errors in `errors`). Used by the lane that sees the error and by the forwarder that
 * shrinks its batches.
 */
export function tooLarge(error: unknown): boolean {
  const seen = new Set<unknown>();
  const walk = (e: unknown): boolean => {
    if (e === null || typeof e !== 'object' || seen.has(e)) return false;
    seen.add(e);
    const x = e as { apiId?: unknown; errors?: unknown };
    if (x.apiId === 'MESSAGE_TOO_LARGE') return true;
    return Array.isArray(x.errors) && x.errors.some(walk);
  };
  return walk(error);
}

/**
 * What a client error says, with its causes: the client wraps them (`metadata failed 4 times.`,
 * `Producing messages failed.` are aggregates), and the top message alone does not tell an
 * unresolvable broker name from a refused connection, an invalid topic or a record too large.
 * The first few distinct causes (message, the broker's error name, the cause's message) follow it.
 */
export function describeKafkaError(error: unknown): string {
  const top = error instanceof Error ? error.message : String(error);
  const causes = new Set<string>();
  const seen = new Set<unknown>();
  const walk = (e: unknown): void => {
    if (e === null || typeof e !== 'object' || seen.has(e) || causes.size >= 3) return;
    seen.add(e);
    const x = e as { message?: unknown; apiId?: unknown; errors?: unknown; cause?: unknown };
    if (Array.isArray(x.errors) && x.errors.length > 0) {
      for (const nested of x.errors) walk(nested);
      return;
    }
    if (e === error) return walk(x.cause);
    let text = String(x.message);
    if (typeof x.apiId === 'string') text += ` (${x.apiId})`;
    const cause = x.cause as { message?: unknown } | undefined;
    if (cause !== null && typeof cause === 'object' && typeof cause.message === 'string') text += ` (${cause.message})`;
    causes.add(text);
  };
  walk(error);
  return causes.size === 0 ? top : `${top} — ${[...causes].join('; ')}`;
}
