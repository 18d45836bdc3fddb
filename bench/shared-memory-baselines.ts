/**
 * Baselines for the shared-memory suite: the two ways shared tables in npm packages synchronise
 * today, built on the same hash (HalfSipHash) and key encoding as SharedInt64Store so that the
 * comparison measures the synchronisation, not the hashing.
 *
 * Both are open-addressing tables (linear probing) of fixed capacity in one SharedArrayBuffer;
 * a slot is one cache line: [hash, key length, value (2 words), key (up to 24 UTF-16 units)].
 * - `global-spinlock`: every operation, read or write, takes one table-wide spinlock.
 * - `reader-counter`: a readers-writer lock whose readers increment and decrement a shared
 *   counter (the `sharedmap` package's scheme): reads exclude writers, not each other, but every
 *   read writes the counter's cache line, which then bounces between cores.
 */
import { hashKey, keyWord } from '../src/stores/shared-memory/hash.ts';

export type BaselineKind = 'global-spinlock' | 'reader-counter';

const SLOT_WORDS = 16;
const S_HASH = 0;
const S_LENGTH = 1;
const S_VALUE = 2;
const S_KEY = 4;
export const BASELINE_MAX_KEY_LENGTH = (SLOT_WORDS - S_KEY) * 2;
// Control words, each on its own cache line.
const LOCK = 0;
const READERS = 16;
const SLOTS_BASE = 32;
const SEED0 = 0x2545f491;
const SEED1 = 0x6b8b4567;

export class BaselineTable {
  readonly kind: BaselineKind;
  readonly buffer: SharedArrayBuffer;
  readonly #i32: Int32Array;
  readonly #i64: BigInt64Array;
  readonly #mask: number;

  constructor(kind: BaselineKind, buffer: SharedArrayBuffer) {
    this.kind = kind;
    this.buffer = buffer;
    this.#i32 = new Int32Array(buffer);
    this.#i64 = new BigInt64Array(buffer);
    this.#mask = (this.#i32.length - SLOTS_BASE) / SLOT_WORDS - 1;
  }

  /** A table with room for `keys` at a load factor of at most 1/2. */
  static create(kind: BaselineKind, keys: number): BaselineTable {
    let slots = 1;
    while (slots < keys * 2) slots *= 2;
    return new BaselineTable(kind, new SharedArrayBuffer((SLOTS_BASE + slots * SLOT_WORDS) * 4));
  }

  get(key: string): bigint | undefined {
    const hash = hashKey(key, SEED0, SEED1);
    if (this.kind === 'global-spinlock') {
      this.#lock();
      try {
        const slot = this.#find(key, hash);
        return slot < 0 ? undefined : this.#i64[(slot + S_VALUE) >> 1];
      } finally {
        Atomics.store(this.#i32, LOCK, 0);
      }
    }
    const i32 = this.#i32;
    for (;;) {
      Atomics.add(i32, READERS, 1);
      if (Atomics.load(i32, LOCK) === 0) break;
      // A writer holds or waits for the table: step aside until it is done.
      Atomics.sub(i32, READERS, 1);
      while (Atomics.load(i32, LOCK) !== 0);
    }
    try {
      const slot = this.#find(key, hash);
      return slot < 0 ? undefined : this.#i64[(slot + S_VALUE) >> 1];
    } finally {
      Atomics.sub(i32, READERS, 1);
    }
  }

  set(key: string, value: bigint): void {
    if (key.length > BASELINE_MAX_KEY_LENGTH) throw new RangeError(`baseline keys are at most ${BASELINE_MAX_KEY_LENGTH} units`);
    const hash = hashKey(key, SEED0, SEED1);
    this.#lock();
    const i32 = this.#i32;
    if (this.kind === 'reader-counter') while (Atomics.load(i32, READERS) !== 0);
    try {
      let slot = this.#find(key, hash);
      if (slot < 0) {
        slot = ~slot;
        i32[slot + S_HASH] = hash;
        i32[slot + S_LENGTH] = key.length;
        for (let w = 0; w < (key.length + 1) >> 1; w++) i32[slot + S_KEY + w] = keyWord(key, w);
      }
      this.#i64[(slot + S_VALUE) >> 1] = value;
    } finally {
      Atomics.store(i32, LOCK, 0);
    }
  }

  #lock(): void {
    const i32 = this.#i32;
    while (Atomics.compareExchange(i32, LOCK, 0, 1) !== 0) while (Atomics.load(i32, LOCK) !== 0);
  }

  /** Word offset of the key's slot, or ~(the free slot where it would go). Capacity is never exhausted (load <= 1/2). */
  #find(key: string, hash: number): number {
    const i32 = this.#i32;
    const length = key.length;
    for (let index = hash & this.#mask; ; index = (index + 1) & this.#mask) {
      const slot = SLOTS_BASE + index * SLOT_WORDS;
      if (i32[slot + S_LENGTH] === 0 && i32[slot + S_HASH] === 0) return ~slot;
      if (i32[slot + S_HASH] !== hash || i32[slot + S_LENGTH] !== length) continue;
      let same = true;
      for (let w = 0; w < (length + 1) >> 1 && same; w++) same = i32[slot + S_KEY + w] === keyWord(key, w);
      if (same) return slot;
    }
  }
}
