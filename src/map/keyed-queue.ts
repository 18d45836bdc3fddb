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

  async run<T>(key: K, section: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous === undefined ? mine : previous.then(() => mine);
    this.#tails.set(key, tail);
    try {
      if (previous !== undefined) await previous;
      return await section();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
