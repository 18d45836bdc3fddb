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

