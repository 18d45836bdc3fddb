import { BroadcastChannel } from 'node:worker_threads';
import type { PublishedSnapshot, SwitchBoard } from './board.ts';
import { ConfigurationError } from '../map/errors.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

/**
 * Switch snapshots across the worker threads of one process, over a BroadcastChannel.
 *
 * The main thread's board is the primary; each worker holds a replica board that adopts every
 * snapshot the primary publishes (same versions, so logs from any thread agree on what version
 * served a request). A worker that starts late says hello and the primary answers with its
 * current snapshot, so no worker runs on nothing. Messages are structured-cloned plain JSON.
 *
 * Each message carries its send time as performance.timeOrigin + performance.now() (epoch ms,
 * microsecond resolution, one clock for every thread), so a replica measures the delay.
 */

type Message =
  | { readonly type: 'govmap.switches.snapshot'; readonly snapshot: PublishedSnapshot; readonly sentAtMs: number }
  | { readonly type: 'govmap.switches.hello' };

export interface ThreadChannelOptions {
  /** Default `govmap:switches:<board name>`. */
  readonly channel?: string;
}

/** Every key of ThreadChannelOptions (the compiler checks the two stay the same); followPrimary also takes `log`. */
const CHANNEL_OPTIONS = optionKeys<ThreadChannelOptions>({ channel: true });
const FOLLOWER_OPTIONS: ReadonlySet<string> = new Set([...CHANNEL_OPTIONS, 'log']);

export interface SwitchPublisher {
  /** Snapshots sent so far (changes and answers to hellos). */
  readonly published: number;
  close(): void;
}

/** In the main thread: sends every new snapshot of `board` to the worker replicas. */
export function publishToWorkers(board: SwitchBoard, options: ThreadChannelOptions = {}): SwitchPublisher {
  // A misspelt `chanel` would publish on the default channel, where a renamed follower never hears it.
  refuseUnknownOptions(options, CHANNEL_OPTIONS, 'publishToWorkers');
  const channel = new BroadcastChannel(options.channel ?? `govmap:switches:${board.name}`);
  channel.unref();
  let published = 0;
  const send = (): void => {
    published++;
    channel.postMessage({ type: 'govmap.switches.snapshot', snapshot: board.publish(), sentAtMs: epochMs() } satisfies Message);
  };
  const unsubscribe = board.subscribe(send);
  channel.onmessage = (event) => {
    if ((event as { data: Message | undefined }).data?.type === 'govmap.switches.hello') send();
  };
  return {
    get published() {
      return published;
    },
    close() {
      unsubscribe();
      channel.close();
    },
  };
}

export interface SwitchFollower {
  /**
   * Resolves once the first snapshot from the primary has been adopted. Until then the channel
   * keeps the worker alive (so awaiting it works); with no primary, call close().
   */
  readonly ready: Promise<void>;
  /** Snapshots adopted / ignored (older than what the replica holds). */
  readonly adopted: number;
  readonly ignored: number;
  /** Delay of the last adopted snapshot, from the primary's send to the replica's swap, ms. */
  readonly lastDelayMs: number | null;
  readonly maxDelayMs: number | null;
  /** Messages that failed validation (logged); the replica keeps what it had. */
  readonly rejected: number;
  close(): void;
}

/** In a worker: makes `replica` (a board created with `replica: true`) follow the primary of the same name. */
export function followPrimary(replica: SwitchBoard, options: ThreadChannelOptions & { readonly log?: (message: string, error?: unknown) => void } = {}): SwitchFollower {
  refuseUnknownOptions(options, FOLLOWER_OPTIONS, 'followPrimary');
  // A board that is not a replica starts at version 1, the primary's number for its own first
  // set: that snapshot was ignored as not newer, `ready` resolved, and the worker served its own
  // switches (none) as if in sync until the primary's next change.
  if (replica?.replica !== true) throw new ConfigurationError('replica', 'followPrimary follows with a board created with { replica: true } (it takes the primary\'s versions and refuses local changes)', replica?.name);
  const channel = new BroadcastChannel(options.channel ?? `govmap:switches:${replica.name}`);
  // Kept referenced until the first snapshot is adopted: a worker whose only pending work is
  // `await follower.ready` would otherwise exit before the primary's answer arrives. Once
  // ready, the channel no longer keeps the thread alive (close() releases it too).
  const log = options.log ?? ((message, error) => console.error(message, error ?? ''));
  let adopted = 0;
  let ignored = 0;
  let rejected = 0;
  let lastDelayMs: number | null = null;
  let maxDelayMs: number | null = null;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    markReady = () => {
      channel.unref();
      resolve();
    };
  });
  channel.onmessage = (event) => {
    const message = (event as { data: Message | undefined }).data;
    if (message?.type !== 'govmap.switches.snapshot') return;
    try {
      if (replica.adopt(message.snapshot)) {
        adopted++;
        lastDelayMs = epochMs() - message.sentAtMs;
        maxDelayMs = Math.max(maxDelayMs ?? 0, lastDelayMs);
        markReady();
      } else {
        ignored++;
        if (replica.snapshot.version > 0) markReady();
      }
    } catch (error) {
      rejected++;
      log(`govmap switches: replica "${replica.name}" rejected snapshot v${String(message.snapshot?.version)} from its primary`, error);
    }
  };
  channel.postMessage({ type: 'govmap.switches.hello' } satisfies Message);
  return {
    ready,
    get adopted() {
      return adopted;
    },
    get ignored() {
      return ignored;
    },
    get rejected() {
      return rejected;
    },
    get lastDelayMs() {
      return lastDelayMs;
    },
    get maxDelayMs() {
      return maxDelayMs;
    },
    close() {
      channel.close();
    },
  };
}

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}
