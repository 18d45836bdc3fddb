/**
 * Where the time of one SharedInt64Store read goes, in one thread: the parts of `get` timed on
 * their own beside `Map.get`, on the same keys and the same random order. Run by a worker of the
 * shared suite (bench/shared-memory.worker.ts) at 1,000 keys (everything in cache) and at the
 * suite's 100,000 keys (the table and the entries no longer are).
 *
 * It also times the hashes this store decided against, so the decision can be checked on any
 * machine:
 * - a multilinear hash (Lemire & Kaser, "Strongly universal string hashing is fast", 2014) over
 *   the key's UTF-16 units, two 16-bit halves from two random key streams. A provably universal
 *   family for keys chosen without knowledge of its key, but linear in that key, so unlike
 *   SipHash not a pseudorandom function: an attacker who learns which of its keys share a bucket
 *   learns equations in the hash key. It would have to be markedly faster to be worth that;
 *   `read_multilinear_vs_halfsiphash` says whether it is.
 * - MurmurHash3 (x86, 32-bit) with a seed: the fast end of seeded multiply-xorshift hashes, and
 *   unacceptable here — its per-block mixing does not depend on the seed, so multicollisions
 *   exist for every seed (Aumasson, Bernstein, Boßlet, "Hash-flooding DoS reloaded", 2012).
 *   `read_murmur3_vs_halfsiphash` is what that insecurity would buy.
 */
import type { SharedInt64Store } from '../src/stores/index.ts';
import { hashKeyInto } from '../src/stores/shared-memory/hash.ts';
import { medianOf } from './harness.ts';

/** ns per operation of each part, medians of `rounds` alternating rounds. */
export interface ReadCost {
  /** `Map.get` of the same key objects (V8 caches a string's own hash in the string). */
  readonly mapGet: number;
  /** Reading the key's UTF-16 units once (`charCodeAt`): the floor under any hash of the key. */
  readonly keyUnits: number;
  /** The store's hash: HalfSipHash-1-3 of the key, packing its words for the comparison. */
  readonly halfSipHash: number;
  /** A candidate: a multilinear hash, also packing the key's words. */
  readonly multilinear: number;
  /** Not a candidate (flooding-prone whatever the seed), the speed it would buy: seeded MurmurHash3, packing too. */
  readonly murmur3: number;
  /** `store.has` with the read cache off (`readCacheKeys: 0`): hash, lookup, validation; no value returned. */
  readonly has: number;
  /** `store.get` with the read cache off: `has` plus reading the value into a new bigint. */
  readonly get: number;
  /** `store.get` answered by this thread's read cache: Map lookup, one version check, the cached bigint. */
  readonly cachedGet: number;
}

const ROUNDS = 5;

/** `store` has its read cache off; `cached` is another attachment of the same map with it on. */
export function measureReadCost(keys: readonly string[], order: Int32Array, store: SharedInt64Store, cached: SharedInt64Store, map: Map<string, bigint>, ops: number): ReadCost {
  const mask = order.length - 1;
  const words = new Int32Array(64);
  const seed = new Int32Array(2);
  crypto.getRandomValues(seed);
  const k0 = seed[0]!;
  const k1 = seed[1]!;
  const streams = new Int32Array(2 * (2 + 64));
  crypto.getRandomValues(streams);
  let sink: unknown;
  // One closure per part, each monomorphic; every result is consumed so none can be skipped.
  const parts: Array<[keyof ReadCost, (n: number) => number]> = [
    [
      'mapGet',
      (n) => {
        let hits = 0;
        for (let i = 0; i < n; i++) {
          const value = map.get(keys[order[i & mask]!]!);
          if (value !== undefined) {
            hits++;
            sink = value;
          }
        }
        return hits;
      },
    ],
    [
      'keyUnits',
      (n) => {
        let x = 0;
        for (let i = 0; i < n; i++) {
          const key = keys[order[i & mask]!]!;
          for (let c = 0; c < key.length; c++) x ^= key.charCodeAt(c);
        }
        return x;
      },
    ],
    [
      'halfSipHash',
      (n) => {
        let x = 0;
        for (let i = 0; i < n; i++) x ^= hashKeyInto(keys[order[i & mask]!]!, k0, k1, words);
        return x;
      },
    ],
    [
      'multilinear',
      (n) => {
        let x = 0;
        for (let i = 0; i < n; i++) x ^= multilinearInto(keys[order[i & mask]!]!, streams, words);
        return x;
      },
    ],
    [
      'murmur3',
      (n) => {
        let x = 0;
        for (let i = 0; i < n; i++) x ^= murmur3Into(keys[order[i & mask]!]!, k0, words);
        return x;
      },
    ],
    [
      'has',
      (n) => {
        let hits = 0;
        for (let i = 0; i < n; i++) if (store.has(keys[order[i & mask]!]!)) hits++;
        return hits;
      },
    ],
    [
      'get',
      (n) => {
        let hits = 0;
        for (let i = 0; i < n; i++) {
          const value = store.get(keys[order[i & mask]!]!);
          if (value !== undefined) {
            hits++;
            sink = value;
          }
        }
        return hits;
      },
    ],
    [
      'cachedGet',
      (n) => {
        let hits = 0;
        for (let i = 0; i < n; i++) {
          const value = cached.get(keys[order[i & mask]!]!);
          if (value !== undefined) {
            hits++;
            sink = value;
          }
        }
        return hits;
      },
    ],
  ];
  for (const [, run] of parts) run(Math.min(ops, 200_000)); // warm-up
  const samples = new Map<keyof ReadCost, number[]>(parts.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of parts) {
      const start = process.hrtime.bigint();
      run(ops);
      samples.get(name)!.push(Number(process.hrtime.bigint() - start) / ops);
    }
  }
  if (sink === undefined) throw new Error('read cost: no read found its key');
  return Object.fromEntries([...samples].map(([name, ns]) => [name, medianOf(ns)])) as unknown as ReadCost;
}

/**
 * Multilinear hash, two 16-bit halves: each half is the top 16 bits of
 * (k[0] + k[1]·length + Σ k[i+2]·unit[i]) mod 2^32 with its own random key stream; the length
 * term separates keys that differ only by trailing zero units. Also packs the key two units per
 * word, as the store's hash does, so both do the same work for the lookup that follows.
 */
function multilinearInto(key: string, k: Int32Array, words: Int32Array): number {
  const length = key.length;
  let a = (k[0]! + Math.imul(k[2]!, length)) | 0;
  let b = (k[1]! + Math.imul(k[3]!, length)) | 0;
  let i = 0;
  let j = 4;
  for (; i + 1 < length; i += 2, j += 4) {
    const u0 = key.charCodeAt(i);
    const u1 = key.charCodeAt(i + 1);
    words[i >> 1] = u0 | (u1 << 16);
    a = (a + Math.imul(k[j]!, u0) + Math.imul(k[j + 2]!, u1)) | 0;
    b = (b + Math.imul(k[j + 1]!, u0) + Math.imul(k[j + 3]!, u1)) | 0;
  }
  if (i < length) {
    const u0 = key.charCodeAt(i);
    words[i >> 1] = u0;
    a = (a + Math.imul(k[j]!, u0)) | 0;
    b = (b + Math.imul(k[j + 1]!, u0)) | 0;
  }
  return (a >>> 16) | (b & 0xffff0000);
}

/** MurmurHash3 x86_32 over the packed words (two UTF-16 units per 32-bit block), seeded; packs too. */
function murmur3Into(key: string, seed: number, words: Int32Array): number {
  const length = key.length;
  let h = seed | 0;
  let i = 0;
  for (; i < length; i += 2) {
    let k = i + 1 < length ? key.charCodeAt(i) | (key.charCodeAt(i + 1) << 16) : key.charCodeAt(i);
    words[i >> 1] = k;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
