import { AsyncLocalStorage } from 'node:async_hooks';
import { UpdateReentrantError } from './errors.ts';

/** A section running in this async context: queued again on its own key, it would wait for itself. */
interface Holding {
  readonly queue: object;
  readonly key: unknown;
  running: boolean;
  /** The section is committing its own result: writes now are its own, not its function's. */
  committing: boolean;
  readonly outer: Holding | undefined;
}

/** The sections the current async context is inside (innermost first). */
const holdings = new AsyncLocalStorage<Holding>();

export interface QueueOptions<K = unknown> {
  /** Leaves the queue at once if this aborts while the section waits its turn. */
  readonly signal?: AbortSignal | undefined;
  /** The error to leave with when `signal` aborts. */
  readonly aborted?: () => Error;
  /** The map's name, for the error when a section queues on the key it already holds. */
  readonly map?: string;
  /**
   * Called with the key just before a section queued on the key it already holds is refused
   * (UpdateReentrantError), for the map to count and audit that failed write; only on that path.
   */
  readonly onReentrant?: (key: K) => void;
}

/**
 * Serialises asynchronous critical sections per key, FIFO: while one `updateAsync` of key k is
 * awaiting, the next one of k waits its turn; other keys proceed freely. The seed's lost update
 * (load, await, store) cannot happen between two queued updates because the second one reads
 * only after the first has committed.
 *
 * Memory: one entry per key that has a section running or waiting; removed when the last leaves.
 */
export class KeyedQueue<K> {
  readonly #tails = new Map<K, Promise<void>>();

  /** Keys with a section running or queued. */
  get activeKeys(): number {
    return this.#tails.size;
  }

  /**
   * Whether the calling code runs inside the function of a section of `key` (not its commit):
   * a write of the key from there would be overwritten, or repeated on every retry, by the
   * section's own. Free when no section is running.
   */
  insideSection(key: K): boolean {
    if (this.#tails.size === 0) return false;
    for (let h = holdings.getStore(); h !== undefined; h = h.outer) {
      if (h.running && !h.committing && h.queue === this && sameKey(h.key, key)) return true;
    }
    return false;
  }

  /** Runs the current section's own commit (`insideSection` is false for its key meanwhile). */
  committing<T>(write: () => T): T {
    const holding = holdings.getStore();
    if (holding === undefined) return write();
    holding.committing = true;
    try {
      return write();
    } finally {
      holding.committing = false;
    }
  }

  /**
   * Runs `section` once every earlier section of `key` has finished. If `options.signal` aborts
   * while this one is still waiting its turn, it leaves the queue at once with
   * `options.aborted()` (the sections queued after it still wait for the ones before it).
   * A section that queues again on its own key (an updateAsync of k inside the function of an
   * updateAsync of k) would wait for itself forever: it is refused with UpdateReentrantError.
   */
  async run<T>(key: K, section: () => Promise<T>, options: QueueOptions<K> = {}): Promise<T> {
    for (let h = holdings.getStore(); h !== undefined; h = h.outer) {
      if (h.running && h.queue === this && sameKey(h.key, key)) {
        options.onReentrant?.(key);
        throw new UpdateReentrantError(options.map ?? '?', key);
      }
    }
    const previous = this.#tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous === undefined ? mine : previous.then(() => mine);
    this.#tails.set(key, tail);
    const holding: Holding = { queue: this, key, running: true, committing: false, outer: holdings.getStore() };
    let reachedTurn = previous === undefined;
    try {
      if (previous !== undefined) {
        const { signal, aborted } = options;
        await (signal === undefined || aborted === undefined ? previous : untilAborted(previous, signal, aborted));
        reachedTurn = true;
      }
      return await holdings.run(holding, section);
    } finally {
      // Callbacks the section left behind (timers, later promises) still carry this context:
      // once it has finished, they may queue on the key like anyone else.
      holding.running = false;
      release();
      if (reachedTurn) {
        if (this.#tails.get(key) === tail) this.#tails.delete(key);
      } else {
        // Left while waiting (aborted): the sections before it may still be running, so the key
        // stays held until they finish, or the next caller would start beside them.
        void tail.then(() => {
          if (this.#tails.get(key) === tail) this.#tails.delete(key);
        });
      }
    }
  }
}

/**
 * Key equality as a Map sees it (SameValueZero), as the store and #tails do: with Object.is, -0
 * and 0 would be one entry and one queue but two keys here, and an update of -0 inside an update
 * of 0 would wait for itself forever.
 */
function sameKey(a: unknown, b: unknown): boolean {
  return a === b || (a !== a && b !== b);
}

/** `turn`, or a rejection as soon as `signal` aborts, whichever comes first. */
function untilAborted(turn: Promise<void>, signal: AbortSignal, aborted: () => Error): Promise<void> {
  if (signal.aborted) return Promise.reject(aborted());
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(aborted());
    signal.addEventListener('abort', onAbort, { once: true });
    void turn.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
