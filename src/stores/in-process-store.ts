import type { MapStore } from './store.ts';

/**
 * The default store: a JavaScript Map in this isolate. A Map keeps insertion order, which gives
 * `oldestKey` in O(1), and treats every string as data (`__proto__` is just a key), unlike an
 * object used as a dictionary.
 */
export class InProcessStore<K, V> implements MapStore<K, V> {
  readonly kind = 'in-process';
  readonly #entries = new Map<K, V>();

  get size(): number {
    return this.#entries.size;
  }

  get(key: K): V | undefined {
    return this.#entries.get(key);
  }

  has(key: K): boolean {
    return this.#entries.has(key);
  }

  set(key: K, value: V): void {
    this.#entries.set(key, value);
  }

  delete(key: K): boolean {
    return this.#entries.delete(key);
  }

  oldestKey(): K | undefined {
    for (const key of this.#entries.keys()) return key;
    return undefined;
  }

  snapshot(): Array<[K, V]> {
    return Array.from(this.#entries);
  }

  clear(): void {
    this.#entries.clear();
  }
}
