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
   * Runs `section` once every earlier section of `key` has finished. If `abort.signal` aborts
   * while this one is still waiting its turn, it leaves the queue at once with `abort.error()`
   * (the sections queued after it still wait for the ones before it).
   */
  async run<T>(key: K, section: () => Promise<T>, abort?: { readonly signal: AbortSignal | undefined; readonly error: () => Error }): Promise<T> {
    const previous = this.#tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous === undefined ? mine : previous.then(() => mine);
    this.#tails.set(key, tail);
    try {
      if (previous !== undefined) await (abort?.signal === undefined ? previous : untilAborted(previous, abort.signal, abort.error));
      return await section();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
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
