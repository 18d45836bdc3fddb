import { threadId as currentThreadId } from 'node:worker_threads';
import type { Worker } from 'node:worker_threads';
import { ConfigurationError } from '../../map/errors.ts';
import { optionKeys } from '../../map/known-options.ts';
import { INT64_MAX, INT64_MIN, PLAIN_INT64_LOADS_ARE_SINGLE, codecFor } from './codecs.ts';
import type { ValueCodec, ValueLayout } from './codecs.ts';
import {
  SharedHandleError,
  SharedInt64OverflowError,
  SharedKeyError,
  SharedLockTimeoutError,
  SharedMapFullError,
  SharedStoreClosedError,
  SharedThreadsExhaustedError,
} from './errors.ts';
import { hashKey, hashKeyInto } from './hash.ts';
import {
  BUCKET_WORDS,
  B_LOCK,
  B_NEXT,
  B_REFS,
  B_SEQ,
  B_TAGS,
  E_HASH,
  E_KEY_LENGTH,
  E_STAMP_FROM_END,
  E_VALUE,
  E_VERSION_REF_FROM_END,
  FORMAT_VERSION,
  GROW_AT_LOAD,
  HEADER_WORDS,
  H_ALLOC_LOCK,
  H_ENTRY_WORDS,
  H_FORMAT,
  H_FREE_HEAD,
  H_GROWTHS,
  H_HEAP_TOP,
  H_INSERT_STAMP64,
  H_LOCKS_RECOVERED,
  H_LAYOUT_ID,
  H_MAGIC,
  H_MAX_KEYS,
  H_MAX_KEY_LENGTH,
  H_MAX_THREADS,
  H_OWNER_HIGH,
  H_PREVIOUS_TABLE,
  H_RECOVERIES,
  H_RESIZE_LOCK,
  H_SEED0,
  H_SEED1,
  H_TABLE,
  H_VALUE_WORDS,
  H_VERSION_CHUNK,
  H_VERSION_USED,
  INCARNATION_MASK,
  LINE_WORDS,
  MAGIC,
  MAX_THREADS_LIMIT,
  OWNER_ALIVE,
  OWNER_DEAD,
  OWNER_FREE,
  OWNER_RECOVERING,
  OWNER_SLOT_BITS,
  OWNER_WORDS,
  O_COUNT,
  O_FENCE,
  O_INCARNATION,
  O_INTENT_ALLOC,
  O_INTENT_BUCKET,
  O_INTENT_COUNT,
  O_INTENT_FREE,
  O_SLEEP,
  O_STATE,
  O_THREAD_ID,
  SLOTS_PER_BUCKET,
  TABLE_HEADER_WORDS,
  T_BUCKETS,
  T_MASK,
  VERSION_CHUNK_WORDS,
  VERSION_RETIRE_AT,
  entryWords,
} from './layout.ts';

export interface SharedMapOptions {
  /**
   * Names the map in SharedMapFullError, so an operator with several maps knows which one to size
   * up; travels to workers with the handle. `[A-Za-z_][A-Za-z0-9_:.-]{0,63}`, as GovernedMap's
   * names. Default: none, until a GovernedMap over the store gives it its own.
   */
  readonly name?: string;
  /** Hard limit on keys; the buffer reserves (virtual) address space for this many. Default 1,048,576. */
  readonly maxKeys?: number;
  /** Keys the first table is sized for, so a known population never waits on growth. Default 1,024. */
  readonly initialCapacity?: number;
  /** Longest key, in UTF-16 code units (JavaScript string length). Every entry reserves room for it. Default 64, at most 4,096. */
  readonly maxKeyLength?: number;
  /** Owner slots: threads (store instances) that may be attached at once. Default 64, at most 1,023. */
  readonly maxThreads?: number;
  /** How long a writer waits for a lock held by an owner nobody reported dead before giving up, ms. Default 2,000. */
  readonly lockTimeoutMs?: number;
  /**
   * Keys this thread's read cache may hold (see "Read cache" on SharedTable): 0 turns it off.
   * Per attachment, not per map: `attach(handle, { readCacheKeys })` sets it for that thread.
   * Each cached key costs this thread's heap ~117 bytes (measured: a Map entry, a small record,
   * the value's bigint) and keeps the key string alive. When full, the cache is emptied and
   * refills. Default 131,072 (at most ~15 MB per thread plus key strings). At most 8,388,608.
   */
  readonly readCacheKeys?: number;
}

/** Every key of SharedMapOptions (the compiler checks the two stay the same): the stores' create() refuses any other. */
export const SHARED_MAP_OPTIONS = optionKeys<SharedMapOptions>({
  name: true, maxKeys: true, initialCapacity: true, maxKeyLength: true, maxThreads: true, lockTimeoutMs: true, readCacheKeys: true,
});

/** Options of one thread's attachment (the map's own options come from its creator). */
export interface SharedAttachOptions {
  /** As SharedMapOptions.readCacheKeys: keys this thread's read cache may hold, 0 = off. Default 131,072. */
  readonly readCacheKeys?: number;
}

/** Every key of SharedAttachOptions: the stores' attach() refuses any other. */
export const SHARED_ATTACH_OPTIONS = optionKeys<SharedAttachOptions>({ readCacheKeys: true });

/**
 * What a worker needs to attach: pass it in `workerData` (structured clone shares the buffer,
 * it does not copy it).
 */
export interface SharedMapHandle {
  readonly kind: 'govmap.shared-memory';
  readonly format: number;
  readonly buffer: GrowableSharedArrayBuffer;
  readonly value: ValueLayout;
  readonly lockTimeoutMs: number;
  /** The map's name (SharedMapOptions.name); null or absent: unnamed. */
  readonly name?: string | null;
}

export interface SharedMapStats {
  readonly keys: number;
  readonly buckets: number;
  /** Table doublings since creation. */
  readonly growths: number;
  /** Dead owners that held locks (a write, growth or allocation cut short), recovered. An owner that died holding nothing frees its slot and is not counted. */
  readonly recoveries: number;
  /** Locks those owners held when they died (each a write, growth or allocation cut short). */
  readonly locksRecovered: number;
  readonly threadsAttached: number;
  /** Bytes of the buffer in use (header, owners, tables, entries, free entries). */
  readonly bytesUsed: number;
  /** Current length of the growable buffer. */
  readonly bytesAllocated: number;
  /** The most the buffer may grow to (reserved address space, not memory). */
  readonly bytesMax: number;
  readonly entryBytes: number;
  /**
   * This thread's read cache since attach: keys held now, its limit; reads answered by it
   * (`hits`), by re-reading the entry a stale cache entry names (`rereads`: the value changed),
   * and by the table (`misses`).
   */
  readonly readCache: { readonly keys: number; readonly limit: number; readonly hits: number; readonly rereads: number; readonly misses: number };
}

export interface IntegrityReport {
  readonly ok: boolean;
  readonly keys: number;
  /** Entries in the fullest bucket chain: stays small unless keys collide (hash flooding). */
  readonly longestChain: number;
  readonly problems: string[];
}

/** ES2024 members of SharedArrayBuffer (Node 20+) that this project's ES2023 lib does not declare. */
export interface GrowableSharedArrayBuffer extends SharedArrayBuffer {
  readonly growable: boolean;
  readonly maxByteLength: number;
  grow(newByteLength: number): void;
}
const GrowableBuffer = SharedArrayBuffer as unknown as new (byteLength: number, options: { maxByteLength: number }) => GrowableSharedArrayBuffer;

/** As GovernedMap's names: the name is quoted in error messages, so it is bounded and plain. */
const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_:.-]{0,63}$/;
const DEFAULT_MAX_KEYS = 1 << 20;
const DEFAULT_INITIAL_CAPACITY = 1024;
const DEFAULT_MAX_KEY_LENGTH = 64;
const MAX_KEY_LENGTH_LIMIT = 4096;
const DEFAULT_MAX_THREADS = 64;
const DEFAULT_LOCK_TIMEOUT_MS = 2000;
const DEFAULT_READ_CACHE_KEYS = 131_072;
/** V8 caps a Map at 2^24 entries; stay well below. */
const READ_CACHE_KEYS_LIMIT = 1 << 23;
/** Smallest table: 16 buckets (1 KiB); growth doubles from there. */
const MIN_BUCKETS = 16;
/** Lock attempts spun before sleeping: ~1 µs of spinning covers a held critical section. */
const SPIN_ATTEMPTS = 256;
/** A waiter past its spin sleeps this long per round (Atomics.wait with no notifier), ms. */
const SLEEP_MS = 0.05;
/** Growth is checked every this many inserts per thread (and whenever a bucket overflows). */
const GROWTH_CHECK_EVERY = 64;
/**
 * Most words a map's buffer may hold: 2^30 words = 4 GiB, less a line. Every offset (entry
 * references, HEAP_TOP, version words) is an int32 word index, and an int64 slot's index is that
 * offset `>> 1`; below 2^30 both stay positive int32s, the byte length below 2^32 (views take
 * `byteLength >>> 2`), and offsets stay V8 small integers (see CachedRead). A larger
 * reservation is refused at `create`, not found out when the heap passes the limit.
 */
const MAX_MAP_WORDS = 2 ** 30 - LINE_WORDS;
/** The buffer grows by at least this much at a time, bytes: each `grow` is a system call. */
const MIN_BUFFER_GROWTH = 1 << 20;
/**
 * x86 never reorders a load with an earlier load (TSO), so a reader's plain loads are complete
 * before its validating SEQ load. Elsewhere (arm64) the reader first makes a release store to
 * its own owner line, which orders every earlier load before the loads that follow it.
 */
const LOADS_NEED_FENCE = process.arch !== 'x64' && process.arch !== 'ia32';

/**
 * A hash map in one growable SharedArrayBuffer, shared by every worker thread that attaches it.
 *
 * Lineage. The bucket is xsync's MapOf (Go): a cache line holding a few slots, each with the
 * key's hash as a tag so a lookup touches an entry only when the hash matches, and overflow
 * buckets chained when full. Writers lock one bucket, not the table, as Java's ConcurrentHashMap
 * locks one bin. Reads are Go sync.Map's read path in spirit — no lock, no write — but made safe
 * for in-place updates with a per-bucket sequence counter (a seqlock, as in Linux): a reader
 * notes the counter, reads, and retries only if the counter moved. Growth follows
 * ConcurrentHashMap's "readers keep using the old table until the new one is published", made
 * simpler because entries never move: a new table is a new array of references to the same
 * entries, published with one atomic store.
 *
 * Invariants (all operations keep them, recovery restores them):
 * 1. Reads never write shared memory. A read computes the key's hash (HalfSipHash, per-map
 *    random key), loads the root bucket's SEQ from the table this thread last saw, walks the
 *    chain comparing tags then keys, reads the value, and accepts the result only if SEQ is
 *    unchanged. Writers add 2 to SEQ after any change a reader could misread, so SEQ of a live
 *    table is even and a reader never waits for a writer, not even a dead one. SEQ is odd only
 *    in a table that has been replaced ("moved"): the reader then loads the current table.
 * 2. A reachable entry's key never changes. Its value changes only in place for int64 (one
 *    atomic 64-bit store) or by replacing the entry reference (records, copy-on-write).
 * 3. An entry is freed only after it is unlinked and its root's SEQ is bumped, so a reader that
 *    still holds the reference sees SEQ move and retries; freed entries are reused.
 * 4. Structural writes (insert, delete, record replace) hold the root bucket's lock. The lock
 *    word holds the writer's owner id. Before a structural change the writer records an intent
 *    (bucket, entry allocated, entry freed, its count before) in its owner slot; each step is
 *    one atomic store, so after a crash at any step recovery can tell from reachability what
 *    happened and finish or undo it idempotently.
 * 5. Tables are never reused. A growth publishes the new table, marks every old root bucket
 *    moved, and only then lets writers into the new table (its locks are born held), so a
 *    reader still on the old table either sees the mark or reads a state no writer has left.
 * 6. Lock order: resize lock, then root bucket locks in index order, then the allocator lock,
 *    which is a leaf (its holder never waits for anything else).
 *
 * Memory ordering. V8 does not inline Atomics (a call costs ~7 ns, several plain loads), so a
 * read makes one Atomics call, the validating SEQ load (two on CPUs other than x86); the loads
 * before it — the first SEQ load, tags, references, key words, the value — are plain
 * typed-array loads. The argument, step by step:
 * - JavaScript's memory model lets racing plain loads see any value written, and the design
 *   needs no more: whatever they saw is discarded unless SEQ did not move.
 * - The validating load must be an Atomics load: the model lets an engine merge two plain loads
 *   of one location with no write by the same thread in between, and a SEQ load merged with the
 *   first one would validate nothing.
 * - The plain loads must happen between the two SEQ loads. In the compiler: V8 keeps typed-array
 *   loads in program order on its effect chain and moves none across the Atomics call. In the
 *   CPU: x86 never reorders a load with another load (TSO). On weaker CPUs (arm64,
 *   LOADS_NEED_FENCE) the first SEQ load is an Atomics load (a load-acquire: later loads cannot
 *   move before it) and, before validating, the reader makes a release store to its own owner
 *   line (earlier loads cannot move after it, and the validating load-acquire cannot move
 *   before it) — a line no other thread reads on its hot path.
 * - An int64 value is overwritten in place without moving SEQ, so its load must not tear by
 *   itself: one 64-bit load on 64-bit CPUs, an Atomics load on 32-bit ones
 *   (PLAIN_INT64_LOADS_ARE_SINGLE). Records never change while reachable.
 * Writers publish with Atomics.store and synchronise with each other through the locks.
 *
 * Read cache (Go sync.Map's read-only map in front of the shared one, per thread). Each
 * attachment keeps a JS `Map<string, CachedRead>` of keys it found in the table: the entry's
 * version word, the version it saw, and the value already materialised (for int64 the same
 * `bigint` every time, so a hit allocates nothing). A read first looks the key up there and, if
 * present, does one Atomics.load of the version word: equal to the cached version, the cached
 * value is returned; otherwise the seqlock read above runs and refreshes the entry. Version
 * words are dense (4-KiB chunks of the heap, see layout.ts), 400 KB for 100,000 entries, so the
 * check touches a region that can stay in a core's L2 cache where the entries (10 MB) cannot
 * (measured cost of a hit: docs/shared-memory.md, "Read cost").
 * 7. Every entry has a version word of its own for its whole life (free-list reuse included),
 *    never shared with another entry. It is even while the entry is reachable and not being
 *    changed. Every change to the entry's reachability, key or value happens while it is odd:
 *    an in-place int64 write adds 1 (odd), stores the value, adds 1 (even); a delete, a record
 *    replace (the old copy) and clear add 1 before unlinking, and the entry stays odd while
 *    unlinked or free; an insert links an odd entry (a fresh one starts at 1) and then adds 1.
 *    So "even" implies "linked and whole", a version only grows, and equal even versions at
 *    two instants mean the entry was reachable, held the same key and the same value at both
 *    and in between.
 * 8. No wraparound, no ABA: an entry whose version reaches VERSION_RETIRE_AT (2^30 - 64) is
 *    retired — its key moves to a fresh entry through the copy-on-write path, and the allocator
 *    never hands it out again. A version word therefore never takes the same value twice, even
 *    across delete and reuse of its entry for another key.
 * 9. A cache entry is filled only from a seqlock read that found the key (absent keys never
 *    enter, so a client cannot fill a cache with keys of its choosing that nobody wrote): the
 *    version is loaded (v1, even) before the value and again (v2) after the bucket's SEQ
 *    validated; it is kept only if v1 = v2. By 7, the entry held the key and that value at the
 *    instant of the v1 load. Writes do not touch the cache (measured: looking a key up in a
 *    100,000-key cache on every write cost more than it saved).
 *    A cache entry whose version moved but is even may still be the key's entry (a write in
 *    place, by any thread): the read loads the version (even), compares the key and loads the
 *    value from the entry it names, and keeps the value if the version did not move meanwhile —
 *    by 7 the entry held that key and value throughout, so the read linearizes at that load
 *    (#rereadInt64; keys are unique, so a linked entry holding the key is the key's entry).
 * 10. Recovery keeps 7: a dead owner's torn in-place write leaves an odd version in a chain
 *    whose lock it held; recovery makes every linked entry of such a chain even (one more step)
 *    and every entry its intent leaves unlinked odd, before releasing the lock.
 * Why a cached read is linearizable: it linearizes at its version load. If that load returns
 * the cached (even) version v, then by 7 and 8 the version was v continuously from the fill's v1
 * load to this load (it never returns to v once left), so at this instant the entry is reachable
 * with the key and the cached value — the map's state at an instant inside the call. A
 * different version (odd, or a later even one) sends the read to the seqlock path, which is
 * linearizable by itself. The cache is the thread's own, so nothing but this thread changes it.
 * The key lookup goes through V8's string hash (seeded per isolate, not a keyed PRF): its
 * collisions only slow the cache, and only keys present in the table can be cached, so its
 * size is bounded by what writers stored, and by readCacheKeys.
 *
 * Key encoding: UTF-16 code units as JavaScript strings hold them (no encoding step; equality is
 * exactly `===`), two per 32-bit word, up to `maxKeyLength` units.
 *
 * This class is the engine; SharedInt64Store and SharedRecordStore are its faces.
 */
export class SharedTable<V> {
  readonly codec: ValueCodec<V>;
  readonly #buffer: GrowableSharedArrayBuffer;
  #i32: Int32Array;
  #i64: BigInt64Array;
  readonly #seed0: number;
  readonly #seed1: number;
  readonly #maxKeyLength: number;
  readonly #maxKeys: number;
  readonly #entryWords: number;
  readonly #keyBase: number;
  /** Offset of the insertion stamp in an entry (64-bit, so even). */
  readonly #stampAt: number;
  /** Offset in an entry of the word holding its version word's offset. */
  readonly #versionAt: number;
  /** This thread's read cache (invariants 7-10): only keys found in the table, at most #cacheLimit. */
  readonly #cache = new Map<string, CachedRead<V>>();
  readonly #cacheLimit: number;
  #cacheHits = 0;
  #cacheMisses = 0;
  #cacheRereads = 0;
  readonly #maxThreads: number;
  readonly #lockTimeoutMs: number;
  /** Per attachment (it travels in the handle, not the buffer); set once, by the creator, the handle or adoptName. */
  #name: string | null;
  #table = 0;
  #mask = 0;
  // The owner slot this instance claimed.
  #slot = -1;
  #ownerBase = 0;
  #ownerId = 0;
  #closed = false;
  #insertsSinceCheck = 0;
  // Set by find(), checked by stable(): the read's root bucket and its SEQ.
  #readRoot = 0;
  #readSeq = 0;
  /**
   * The key of the operation in progress, packed as stored: filled by hashForFind, compared by
   * #search and #locate, copied into a new entry by #insert. Nothing between the hash and those
   * uses (lock waits and recovery included) hashes another key, so it cannot be overwritten.
   */
  readonly #keyWords: Int32Array;

  private constructor(buffer: GrowableSharedArrayBuffer, codec: ValueCodec<V>, lockTimeoutMs: number, readCacheKeys: number, name: string | null) {
    this.#buffer = buffer;
    this.#name = name;
    this.codec = codec;
    this.#i32 = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    this.#i64 = new BigInt64Array(buffer, 0, buffer.byteLength >>> 3);
    const i32 = this.#i32;
    this.#seed0 = Atomics.load(i32, H_SEED0);
    this.#seed1 = Atomics.load(i32, H_SEED1);
    this.#maxKeyLength = Atomics.load(i32, H_MAX_KEY_LENGTH);
    this.#maxKeys = Atomics.load(i32, H_MAX_KEYS);
    this.#entryWords = Atomics.load(i32, H_ENTRY_WORDS);
    this.#keyBase = E_VALUE + Atomics.load(i32, H_VALUE_WORDS);
    this.#stampAt = this.#entryWords - E_STAMP_FROM_END;
    this.#versionAt = this.#entryWords - E_VERSION_REF_FROM_END;
    this.#cacheLimit = readCacheKeys;
    this.#keyWords = new Int32Array((this.#maxKeyLength + 1) >> 1);
    this.#maxThreads = Atomics.load(i32, H_MAX_THREADS);
    this.#lockTimeoutMs = lockTimeoutMs;
    this.#adoptTable(Atomics.load(i32, H_TABLE));
    this.#claimOwnerSlot();
  }

  /** Builds a new map: header, owner table, the first table; claims an owner slot for this thread. */
  static create<V>(layout: ValueLayout, options: SharedMapOptions = {}): SharedTable<V> {
    const codec = codecFor(layout) as ValueCodec<V>;
    if (options.name !== undefined && (typeof options.name !== 'string' || !NAME_PATTERN.test(options.name))) {
      throw new ConfigurationError('name', 'must match [A-Za-z_][A-Za-z0-9_:.-]{0,63} (as a GovernedMap name)', options.name);
    }
    const maxKeys = integerOption('maxKeys', options.maxKeys, DEFAULT_MAX_KEYS, 1, 2 ** 28);
    const initialCapacity = integerOption('initialCapacity', options.initialCapacity, Math.min(DEFAULT_INITIAL_CAPACITY, maxKeys), 1, maxKeys);
    const maxKeyLength = integerOption('maxKeyLength', options.maxKeyLength, DEFAULT_MAX_KEY_LENGTH, 1, MAX_KEY_LENGTH_LIMIT);
    const maxThreads = integerOption('maxThreads', options.maxThreads, DEFAULT_MAX_THREADS, 1, MAX_THREADS_LIMIT);
    const lockTimeoutMs = integerOption('lockTimeoutMs', options.lockTimeoutMs, DEFAULT_LOCK_TIMEOUT_MS, 1, 3_600_000);
    const readCacheKeys = integerOption('readCacheKeys', options.readCacheKeys, DEFAULT_READ_CACHE_KEYS, 0, READ_CACHE_KEYS_LIMIT);

    const words = entryWords(codec.words, maxKeyLength);
    const ownersBase = HEADER_WORDS;
    const heapBase = ownersBase + maxThreads * OWNER_WORDS;
    const firstBuckets = nextPowerOfTwo(Math.max(MIN_BUCKETS, Math.ceil(initialCapacity / 3)));
    const firstTableWords = TABLE_HEADER_WORDS + firstBuckets * BUCKET_WORDS;
    const maxWords = reservedWords(maxKeys, words, heapBase, firstBuckets);
    if (maxWords > MAX_MAP_WORDS) {
      let fits = 1;
      for (let step = 1 << 27; step >= 1; step >>= 1) if (reservedWords(fits + step, words, heapBase, firstBuckets) <= MAX_MAP_WORDS) fits += step;
      throw new ConfigurationError(
        'maxKeys',
        `${maxKeys} keys of up to ${maxKeyLength} UTF-16 units (${words * 4} bytes per entry) need ${Math.ceil((maxWords * 4) / 2 ** 20)} MiB of buffer; a map addresses at most 4 GiB (32-bit word offsets, every thread's views): lower maxKeys (at most ${fits} at this maxKeyLength) or maxKeyLength`,
        maxKeys,
      );
    }
    const maxBytes = roundUp8(maxWords * 4);
    const initialBytes = Math.min(maxBytes, roundUp8(Math.max((heapBase + firstTableWords + initialCapacity * words) * 4, 64 * 1024)));
    const buffer = new GrowableBuffer(initialBytes, { maxByteLength: maxBytes });

    const i32 = new Int32Array(buffer, 0, initialBytes >>> 2);
    const seed = new Int32Array(2);
    crypto.getRandomValues(seed);
    i32[H_SEED0] = seed[0]!;
    i32[H_SEED1] = seed[1]!;
    i32[H_MAX_KEY_LENGTH] = maxKeyLength;
    i32[H_VALUE_WORDS] = codec.words;
    i32[H_ENTRY_WORDS] = words;
    i32[H_MAX_THREADS] = maxThreads;
    i32[H_LAYOUT_ID] = codec.layoutId;
    i32[H_MAX_KEYS] = maxKeys;
    i32[H_FORMAT] = FORMAT_VERSION;
    const table = heapBase;
    i32[table + T_MASK] = firstBuckets - 1;
    i32[table + T_BUCKETS] = firstBuckets;
    i32[H_HEAP_TOP] = table + firstTableWords;
    i32[H_VERSION_USED] = VERSION_CHUNK_WORDS; // no version chunk yet: the first entry takes one
    i32[H_TABLE] = table;
    // Written last: a buffer with the magic is complete.
    Atomics.store(i32, H_MAGIC, MAGIC);
    return new SharedTable<V>(buffer, codec, lockTimeoutMs, readCacheKeys, options.name ?? null);
  }

  /** Attaches to a map another thread created, from its handle. Claims an owner slot. */
  static attach<V>(handle: SharedMapHandle, expected: ValueLayout | undefined, options: SharedAttachOptions = {}): SharedTable<V> {
    const readCacheKeys = integerOption('readCacheKeys', options.readCacheKeys, DEFAULT_READ_CACHE_KEYS, 0, READ_CACHE_KEYS_LIMIT);
    if (handle === null || typeof handle !== 'object' || handle.kind !== 'govmap.shared-memory') {
      throw new SharedHandleError('expected the object returned by a shared-memory store\'s `handle` (kind "govmap.shared-memory")');
    }
    if (handle.format !== FORMAT_VERSION) throw new SharedHandleError(`format ${String(handle.format)} is not the supported format ${FORMAT_VERSION}`);
    const buffer = handle.buffer;
    if (!(buffer instanceof SharedArrayBuffer) || !buffer.growable) throw new SharedHandleError('"buffer" must be the growable SharedArrayBuffer of the map');
    if (buffer.byteLength < HEADER_WORDS * 4) throw new SharedHandleError('"buffer" is too small to hold a map');
    const header = new Int32Array(buffer, 0, HEADER_WORDS);
    if (Atomics.load(header, H_MAGIC) !== MAGIC) throw new SharedHandleError('"buffer" does not hold a govmap shared-memory map');
    if (Atomics.load(header, H_FORMAT) !== FORMAT_VERSION) throw new SharedHandleError('the buffer was written by another format version');
    let codec: ValueCodec<V>;
    try {
      codec = codecFor(handle.value) as ValueCodec<V>;
    } catch (error) {
      throw new SharedHandleError(`"value" layout is invalid: ${(error as Error).message}`);
    }
    if (Atomics.load(header, H_LAYOUT_ID) !== codec.layoutId) throw new SharedHandleError('the handle\'s value layout does not match the buffer\'s');
    if (expected !== undefined && codecFor(expected).layoutId !== codec.layoutId) {
      throw new SharedHandleError(`the map holds ${JSON.stringify(handle.value)} values, not ${JSON.stringify(expected)}`);
    }
    const timeout = typeof handle.lockTimeoutMs === 'number' && handle.lockTimeoutMs > 0 ? handle.lockTimeoutMs : DEFAULT_LOCK_TIMEOUT_MS;
    const name = handle.name ?? null;
    if (name !== null && (typeof name !== 'string' || !NAME_PATTERN.test(name))) throw new SharedHandleError('"name" must be a map name ([A-Za-z_][A-Za-z0-9_:.-]{0,63}) or null');
    return new SharedTable<V>(buffer, codec, timeout, readCacheKeys, name);
  }

  get handle(): SharedMapHandle {
    return { kind: 'govmap.shared-memory', format: FORMAT_VERSION, buffer: this.#buffer, value: this.codec.layout, lockTimeoutMs: this.#lockTimeoutMs, name: this.#name };
  }

  /** The map's name in this thread, or null. */
  get name(): string | null {
    return this.#name;
  }

  /** Names an unnamed map after the GovernedMap over it; a name given at create (or in the handle) is kept. */
  adoptName(name: string): void {
    if (this.#name === null && typeof name === 'string' && NAME_PATTERN.test(name)) this.#name = name;
  }

  get maxKeyLength(): number {
    return this.#maxKeyLength;
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ------------------------------------------------------------------ reads (no lock, no write)

  /** Whether `key` can be stored at all (a string within maxKeyLength). */
  admissible(key: unknown, operation: string): boolean {
    if (this.#closed) throw new SharedStoreClosedError(operation);
    if (typeof key !== 'string') throw new SharedKeyError(key, `must be a string (got ${typeof key})`);
    return key.length <= this.#maxKeyLength;
  }

  /** The key's hash; also packs the key for the comparisons of the `find` or write that follows. */
  hashForFind(key: string): number {
    return hashKeyInto(key, this.#seed0, this.#seed1, this.#keyWords);
  }

  /**
   * Word offset of the entry holding `key` as of the bucket's current SEQ, or 0 when absent;
   * `hash` must come from `hashForFind(key)` just before. The caller reads what it needs from
   * the entry, then calls `stable()`; if that is false the result may be torn and the caller
   * calls `find` again.
   */
  find(key: string, hash: number): number {
    for (;;) {
      const i32 = this.#i32;
      const root = this.#table + TABLE_HEADER_WORDS + (hash & this.#mask) * BUCKET_WORDS;
      // On x86 a plain load suffices here: loads stay in order on the CPU, and V8 does not move
      // loads across the Atomics call in stable(), which keeps the two SEQ loads distinct.
      const seq = LOADS_NEED_FENCE ? Atomics.load(i32, root + B_SEQ) : i32[root + B_SEQ]!;
      if ((seq & 1) !== 0) {
        // Moved: the table this thread was using has been replaced.
        this.#adoptTable(Atomics.load(i32, H_TABLE));
        continue;
      }
      this.#readRoot = root;
      this.#readSeq = seq;
      const ref = this.#search(i32, root, key, hash);
      if (ref >= 0) return ref;
      this.#refreshViews();
    }
  }

  /** The chain walk of `find`: plain loads only. -1 when a reference lies past this thread's views. */
  #search(i32: Int32Array, root: number, key: string, hash: number): number {
    const limit = i32.length - this.#entryWords;
    const length = key.length;
    let bucket = root;
    do {
      for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
        if (i32[bucket + B_TAGS + slot] !== hash) continue;
        const ref = i32[bucket + B_REFS + slot]!;
        if (ref === 0) continue;
        if (ref > limit) return -1;
        if (i32[ref + E_KEY_LENGTH] !== length) continue;
        const base = ref + this.#keyBase;
        const words = this.#keyWords;
        const count = (length + 1) >> 1;
        let w = 0;
        while (w < count && i32[base + w] === words[w]) w++;
        if (w === count) return ref;
      }
      bucket = i32[bucket + B_NEXT]!;
      if (bucket > i32.length - BUCKET_WORDS) return -1;
    } while (bucket !== 0);
    return 0;
  }

  /** True when nothing the last `find` looked at changed since: its result was a real state. */
  stable(): boolean {
    const i32 = this.#i32;
    if (LOADS_NEED_FENCE) Atomics.store(i32, this.#ownerBase + O_FENCE, 0);
    return Atomics.load(i32, this.#readRoot + B_SEQ) === this.#readSeq;
  }

  /**
   * A consistent read of `key`'s value (undefined when absent): from this thread's read cache
   * when the entry's version is the one cached (invariant 9), else by the seqlock. Lock-free.
   * Checks the key (`admissible`) only on a cache miss: a non-string or over-long key is never
   * cached, and close() empties the cache.
   */
  read(key: string): V | undefined {
    const cached = this.#cache.get(key);
    if (cached !== undefined && Atomics.load(this.#i32, cached.versionWord) === cached.version) {
      this.#cacheHits++;
      return this.codec.handOut(cached.value);
    }
    if (!this.admissible(key, 'get')) return undefined;
    this.#cacheMisses++;
    const hash = this.hashForFind(key);
    const codec = this.codec;
    for (;;) {
      const ref = this.find(key, hash);
      if (ref === 0) {
        if (this.stable()) return undefined;
        continue;
      }
      const i32 = this.#i32;
      const versionWord = i32[ref + this.#versionAt]!;
      // Garbage only if the walk was torn, which stable() rejects: keep the load in bounds.
      const version = versionWord > 0 && versionWord < i32.length ? Atomics.load(i32, versionWord) : 1;
      const value = codec.read(i32, this.#i64, ref + E_VALUE);
      if (!this.stable()) continue;
      if ((version & 1) === 0 && this.#cacheLimit !== 0 && Atomics.load(i32, versionWord) === version) {
        this.#remember(key, cached, ref, versionWord, version, value);
        return codec.handOut(value);
      }
      return value;
    }
  }

  /** `read` for int64 maps, without the codec calls: the hottest path of all. */
  readInt64(key: string): bigint | undefined {
    const cached = this.#cache.get(key) as CachedRead<bigint> | undefined;
    if (cached !== undefined && Atomics.load(this.#i32, cached.versionWord) === cached.version) {
      this.#cacheHits++;
      return cached.value;
    }
    return this.#readInt64Slow(key, cached);
  }

  #readInt64Slow(key: string, cached: CachedRead<bigint> | undefined): bigint | undefined {
    if (cached !== undefined) {
      // The version moved, most often because another thread wrote the value in place: if the
      // entry is linked and still holds this key, its value is the key's value (invariant 7),
      // read without hashing or walking the bucket.
      const value = this.#rereadInt64(key, cached);
      if (value !== undefined) return value;
    }
    if (!this.admissible(key, 'get')) return undefined;
    this.#cacheMisses++;
    const hash = this.hashForFind(key);
    for (;;) {
      const ref = this.find(key, hash);
      if (ref === 0) {
        if (this.stable()) return undefined;
        continue;
      }
      const i32 = this.#i32;
      const versionWord = i32[ref + this.#versionAt]!;
      const version = versionWord > 0 && versionWord < i32.length ? Atomics.load(i32, versionWord) : 1;
      const at = (ref + E_VALUE) >> 1;
      const value = PLAIN_INT64_LOADS_ARE_SINGLE ? this.#i64[at]! : Atomics.load(this.#i64, at);
      if (!this.stable()) continue;
      if ((version & 1) === 0 && this.#cacheLimit !== 0 && Atomics.load(i32, versionWord) === version) {
        this.#remember(key, cached as CachedRead<V> | undefined, ref, versionWord, version, value as V);
      }
      return value;
    }
  }

  /**
   * The value of `key` read straight from the entry a stale cache entry names, or undefined if
   * that cannot be trusted. Version v1 even (linked, not being changed), then the key and the
   * value by plain loads, then v2 = v1: by invariant 7 the entry was linked and held exactly
   * that key and value throughout, so the read linearizes at v1 (keys are unique in the map: a
   * linked entry holding the key is the key's entry). The plain loads sit between the two
   * Atomics loads as the seqlock's do (see "Memory ordering"); a garbage key or value read
   * while the version moved is discarded.
   */
  #rereadInt64(key: string, cached: CachedRead<bigint>): bigint | undefined {
    const i32 = this.#i32;
    const versionWord = cached.versionWord;
    const version = Atomics.load(i32, versionWord);
    if ((version & 1) !== 0) return undefined;
    const ref = cached.ref;
    if (!this.#holdsKey(ref, key)) return undefined;
    const at = (ref + E_VALUE) >> 1;
    const value = PLAIN_INT64_LOADS_ARE_SINGLE ? this.#i64[at]! : Atomics.load(this.#i64, at);
    if (LOADS_NEED_FENCE) Atomics.store(i32, this.#ownerBase + O_FENCE, 0);
    if (Atomics.load(i32, versionWord) !== version) return undefined;
    cached.version = version;
    cached.value = value;
    this.#cacheRereads++;
    return value;
  }

  contains(key: string): boolean {
    const cached = this.#cache.get(key);
    if (cached !== undefined && Atomics.load(this.#i32, cached.versionWord) === cached.version) {
      this.#cacheHits++;
      return true;
    }
    if (!this.admissible(key, 'has')) return false;
    this.#cacheMisses++;
    const hash = this.hashForFind(key);
    for (;;) {
      const found = this.find(key, hash) !== 0;
      if (this.stable()) return found;
    }
  }

  /** Fills or refreshes `key`'s cache entry (invariant 9: `version` was even and unchanged around the read of `value`). */
  #remember(key: string, cached: CachedRead<V> | undefined, ref: number, versionWord: number, version: number, value: V): void {
    if (cached !== undefined) {
      cached.ref = ref;
      cached.versionWord = versionWord;
      cached.version = version;
      cached.value = value;
      return;
    }
    const cache = this.#cache;
    // Emptied when full: O(1), no per-hit bookkeeping (an LRU would write on every hit), and a
    // working set that fits refills within one pass over it.
    if (cache.size >= this.#cacheLimit) cache.clear();
    cache.set(key, new CachedRead(ref, versionWord, version, value));
  }

  /** Keys in the map: the sum of every owner slot's net inserts. Exact when no write is in flight. */
  get size(): number {
    const i32 = this.#i32;
    const high = Atomics.load(i32, H_OWNER_HIGH);
    let total = 0;
    for (let slot = 0; slot < high; slot++) total = (total + Atomics.load(i32, HEADER_WORDS + slot * OWNER_WORDS + O_COUNT)) | 0;
    return total;
  }

  #adoptTable(table: number): void {
    if (table + TABLE_HEADER_WORDS > this.#i32.length) this.#refreshViews();
    this.#mask = Atomics.load(this.#i32, table + T_MASK);
    this.#table = table;
    if (table + TABLE_HEADER_WORDS + (this.#mask + 1) * BUCKET_WORDS > this.#i32.length) this.#refreshViews();
  }

  /**
   * Makes this thread's views reach everything allocated so far. A lock holder calls it before
   * following references: whatever its bucket links to was allocated before HEAP_TOP passed it.
   */
  #coverHeap(): void {
    if (Atomics.load(this.#i32, H_HEAP_TOP) > this.#i32.length) this.#refreshViews();
  }

  /**
   * Fixed-length views over the buffer as long as it is now. Length-tracking views follow growth
   * by themselves but every access re-checks the length, which costs more than rebuilding the
   * views on the rare occasions another thread grew the buffer.
   */
  #refreshViews(): void {
    const bytes = this.#buffer.byteLength;
    if (bytes === this.#i32.length * 4) return;
    // `>>>`: a buffer may exceed 2 GiB (up to MAX_MAP_WORDS words), where `>>` would go negative.
    this.#i32 = new Int32Array(this.#buffer, 0, bytes >>> 2);
    this.#i64 = new BigInt64Array(this.#buffer, 0, bytes >>> 3);
  }

  // ------------------------------------------------------------------ writes (one bucket lock)

  /**
   * Stores `value` under `key`. With `conditional`, only if the key currently holds `expected`
   * (undefined: is absent). Returns false when the condition did not hold (nothing written).
   */
  put(key: string, value: V, conditional: boolean, expected: V | undefined): boolean {
    const hash = this.hashForFind(key);
    const root = this.#lockRoot(hash);
    let overflowed = false;
    try {
      const ref = this.#locate(root, key, hash);
      if (conditional) {
        if (expected === undefined ? ref !== 0 : ref === 0 || !this.codec.equals(this.#i32, this.#i64, ref + E_VALUE, expected)) return false;
      }
      if (ref === 0) overflowed = this.#insert(root, key, hash, value);
      else if (this.codec.inPlace) this.#writeInPlace(root, ref, value);
      else this.#replace(root, ref, value);
    } finally {
      this.#unlock(root + B_LOCK);
    }
    if (overflowed || this.#insertsSinceCheck >= GROWTH_CHECK_EVERY) this.#maybeGrow();
    return true;
  }

  /**
   * Atomic add on an int64 value: returns the new value, or undefined when the key is absent
   * (nothing written). A sum outside int64 is refused with SharedInt64OverflowError, never
   * wrapped; nothing is written then.
   */
  add(key: string, delta: bigint): bigint | undefined {
    const hash = this.hashForFind(key);
    const root = this.#lockRoot(hash);
    try {
      const ref = this.#locate(root, key, hash);
      if (ref === 0) return undefined;
      const current = Atomics.load(this.#i64, (ref + E_VALUE) >> 1);
      const next = current + delta;
      if (next < INT64_MIN || next > INT64_MAX) throw new SharedInt64OverflowError(key, current, delta);
      this.#writeInPlace(root, ref, next as V);
      return next;
    } finally {
      this.#unlock(root + B_LOCK);
    }
  }

  /** Whether entry `ref` holds `key` (plain loads: the caller validates, or holds the root lock). */
  #holdsKey(ref: number, key: string): boolean {
    const i32 = this.#i32;
    const length = key.length;
    if (i32[ref + E_KEY_LENGTH] !== length) return false;
    const base = ref + this.#keyBase;
    let w = 0;
    for (let c = 0; c + 1 < length; c += 2, w++) {
      if (i32[base + w] !== (key.charCodeAt(c) | (key.charCodeAt(c + 1) << 16))) return false;
    }
    return (length & 1) === 0 || i32[base + w] === key.charCodeAt(length - 1);
  }

  /** Deletes `key`; with `conditional`, only if it holds `expected`. Returns whether it deleted. */
  remove(key: string, conditional: boolean, expected: V | undefined): boolean {
    const hash = this.hashForFind(key);
    const root = this.#lockRoot(hash);
    try {
      const i32 = this.#i32;
      const ref = this.#locate(root, key, hash);
      if (ref === 0) return false;
      if (conditional && (expected === undefined || !this.codec.equals(i32, this.#i64, ref + E_VALUE, expected))) return false;
      const me = this.#ownerBase;
      const countBefore = Atomics.load(i32, me + O_COUNT);
      this.#intend(root, 0, ref, countBefore);
      const slotWord = this.#slotOf(root, ref);
      Atomics.add(i32, i32[ref + this.#versionAt]!, 1); // odd from now on: no cached read of it validates
      Atomics.store(i32, slotWord + B_REFS - B_TAGS, 0); // unlinked: the delete has happened
      Atomics.store(i32, slotWord, 0);
      Atomics.add(i32, root + B_SEQ, 2); // readers holding `ref` retry before it can be reused
      Atomics.store(i32, me + O_COUNT, (countBefore - 1) | 0);
      this.#freeEntry(ref, true);
      this.#intend(0, 0, 0, 0);
      return true;
    } finally {
      this.#unlock(root + B_LOCK);
    }
  }

  /**
   * Overwrites an int64 value in place (root lock held) inside its version's odd window
   * (invariant 7). An entry whose version is exhausted is retired instead (invariant 8): the
   * value goes to a fresh entry. A cache entry of this key (this thread's or another's) then no
   * longer validates; the next read re-reads the entry it names (#rereadInt64).
   */
  #writeInPlace(root: number, ref: number, value: V): void {
    const i32 = this.#i32;
    const versionWord = i32[ref + this.#versionAt]!;
    if (Atomics.load(i32, versionWord) >= VERSION_RETIRE_AT) {
      this.#replace(root, ref, value);
      return;
    }
    Atomics.add(i32, versionWord, 1); // odd: cached copies of the old value stop validating
    this.codec.write(i32, this.#i64, ref + E_VALUE, value);
    Atomics.add(i32, versionWord, 1);
  }

  /**
   * Entry holding `key` in the chain of `root`, whose lock the caller holds; 0 when absent.
   * `hash` must come from `hashForFind(key)`: the key is compared as the words it packed.
   */
  #locate(root: number, key: string, hash: number): number {
    const i32 = this.#i32;
    const length = key.length;
    const count = (length + 1) >> 1;
    const words = this.#keyWords;
    for (let bucket = root; bucket !== 0; bucket = i32[bucket + B_NEXT]!) {
      for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
        if (i32[bucket + B_TAGS + slot] !== hash) continue;
        const ref = i32[bucket + B_REFS + slot]!;
        if (ref === 0 || i32[ref + E_KEY_LENGTH] !== length) continue;
        const base = ref + this.#keyBase;
        let w = 0;
        while (w < count && i32[base + w] === words[w]) w++;
        if (w === count) return ref;
      }
    }
    return 0;
  }

  /** Word offset of the tag word of the slot holding `ref` in `root`'s chain. */
  #slotOf(root: number, ref: number): number {
    const i32 = this.#i32;
    for (let bucket = root; bucket !== 0; bucket = i32[bucket + B_NEXT]!) {
      for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
        if (i32[bucket + B_REFS + slot] === ref) return bucket + B_TAGS + slot;
      }
    }
    throw new Error(`govmap shared-memory map: entry ${ref} is not in the chain of bucket ${root} (internal invariant broken)`);
  }

  /** Links a new entry; returns true when the chain overflowed into a new bucket (a growth hint). */
  #insert(root: number, key: string, hash: number, value: V): boolean {
    if (this.size >= this.#maxKeys) throw new SharedMapFullError(key, this.#maxKeys, 'the map holds its maximum number of keys', this.#name);
    // Find a free slot, or the chain's last bucket to hang an overflow bucket on.
    let i32 = this.#i32;
    let freeSlot = 0;
    let last = root;
    for (let bucket = root; bucket !== 0 && freeSlot === 0; bucket = i32[bucket + B_NEXT]!) {
      last = bucket;
      for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
        if (i32[bucket + B_REFS + slot] === 0) {
          freeSlot = bucket + B_TAGS + slot;
          break;
        }
      }
    }
    const me = this.#ownerBase;
    const countBefore = Atomics.load(i32, me + O_COUNT);
    this.#intend(root, 0, 0, countBefore);
    let overflow = 0;
    try {
      const ref = this.#allocEntry(key);
      if (freeSlot === 0) {
        // After the entry: heap words are never given back, so a bucket taken before an entry
        // that did not fit was lost for good. An entry is given back to the free list.
        try {
          overflow = this.#bump(BUCKET_WORDS, 0, key);
        } catch (error) {
          this.#unallocEntry(ref);
          throw error;
        }
      }
      i32 = this.#i32;
      // Not yet reachable: plain writes, published by the atomic store of the reference below.
      i32[ref + E_KEY_LENGTH] = key.length;
      i32[ref + E_HASH] = hash;
      this.#i64[(ref + this.#stampAt) >> 1] = Atomics.add(this.#i64, H_INSERT_STAMP64, 1n);
      this.codec.write(i32, this.#i64, ref + E_VALUE, value);
      const versionWord = this.#oddVersion(ref);
      // The key as hashForFind packed it (nothing since has hashed another key).
      const keyWords = (key.length + 1) >> 1;
      const words = this.#keyWords;
      for (let w = 0; w < keyWords; w++) i32[ref + this.#keyBase + w] = words[w]!;
      if (overflow !== 0) {
        i32[overflow + B_TAGS] = hash;
        i32[overflow + B_REFS] = ref;
        Atomics.store(i32, last + B_NEXT, overflow); // the insert happens here
      } else {
        Atomics.store(i32, freeSlot, hash);
        Atomics.store(i32, freeSlot + B_REFS - B_TAGS, ref); // the insert happens here
      }
      Atomics.add(i32, versionWord, 1); // even: linked and whole (invariant 7)
      Atomics.store(i32, me + O_COUNT, (countBefore + 1) | 0);
    } finally {
      this.#intend(0, 0, 0, 0);
    }
    this.#insertsSinceCheck++;
    return overflow !== 0;
  }

  /** Copy-on-write replace of a record: a new entry swapped into the same slot. */
  #replace(root: number, old: number, value: V): void {
    const me = this.#ownerBase;
    this.#intend(root, 0, old, Atomics.load(this.#i32, me + O_COUNT));
    try {
      const ref = this.#allocEntry(null);
      const i32 = this.#i32;
      // Same key, hash and insertion stamp (oldestKey order is insertion order, not update order).
      i32[ref + E_KEY_LENGTH] = i32[old + E_KEY_LENGTH]!;
      i32[ref + E_HASH] = i32[old + E_HASH]!;
      this.#i64[(ref + this.#stampAt) >> 1] = this.#i64[(old + this.#stampAt) >> 1]!;
      this.codec.write(i32, this.#i64, ref + E_VALUE, value);
      const keyWords = (i32[old + E_KEY_LENGTH]! + 1) >> 1;
      for (let w = 0; w < keyWords; w++) i32[ref + this.#keyBase + w] = i32[old + this.#keyBase + w]!;
      const versionWord = this.#oddVersion(ref);
      Atomics.add(i32, i32[old + this.#versionAt]!, 1); // the old copy: odd from now on
      Atomics.store(i32, this.#slotOf(root, old) + B_REFS - B_TAGS, ref); // the update happens here
      Atomics.add(i32, versionWord, 1); // the new copy: even
      Atomics.add(i32, root + B_SEQ, 2);
      this.#freeEntry(old, true);
    } finally {
      this.#intend(0, 0, 0, 0);
    }
  }

  /**
   * The version word of an entry about to be linked, which is odd (invariant 7: a free entry is
   * odd, a fresh one starts at 1); the caller adds 1 after linking it, giving a version above
   * any the entry had, so no cached read of its earlier life can match.
   */
  #oddVersion(ref: number): number {
    const i32 = this.#i32;
    const versionWord = i32[ref + this.#versionAt]!;
    if ((Atomics.load(i32, versionWord) & 1) === 0) Atomics.add(i32, versionWord, 1);
    return versionWord;
  }

  #intend(bucket: number, alloc: number, free: number, countBefore: number): void {
    const i32 = this.#i32;
    const me = this.#ownerBase;
    if (bucket === 0) {
      // Clearing: the bucket first, so recovery never reads a half-cleared intent as live.
      Atomics.store(i32, me + O_INTENT_BUCKET, 0);
      Atomics.store(i32, me + O_INTENT_ALLOC, 0);
      Atomics.store(i32, me + O_INTENT_FREE, 0);
      return;
    }
    Atomics.store(i32, me + O_INTENT_COUNT, countBefore);
    Atomics.store(i32, me + O_INTENT_ALLOC, alloc);
    Atomics.store(i32, me + O_INTENT_FREE, free);
    Atomics.store(i32, me + O_INTENT_BUCKET, bucket);
  }

  // ------------------------------------------------------------------ allocator (leaf lock)

  /**
   * An entry from the free list, else from the heap. Records the entry as this owner's intended
   * allocation before taking it, so a crash at any point leaves it either still free, or
   * recorded: recovery frees a recorded entry that did not become reachable.
   */
  #allocEntry(key: string | null): number {
    this.#lockLeaf(H_ALLOC_LOCK);
    try {
      const i32 = this.#i32;
      for (;;) {
        const head = Atomics.load(i32, H_FREE_HEAD);
        if (head === 0) return this.#bumpEntryLocked(key);
        const next = Atomics.load(i32, head + E_HASH);
        if (Atomics.load(i32, i32[head + this.#versionAt]!) >= VERSION_RETIRE_AT) {
          Atomics.store(i32, H_FREE_HEAD, next); // retired (invariant 8): dropped, never reused
          continue;
        }
        Atomics.store(i32, this.#ownerBase + O_INTENT_ALLOC, head);
        Atomics.store(i32, H_FREE_HEAD, next);
        return head;
      }
    } finally {
      this.#unlock(H_ALLOC_LOCK);
    }
  }

  /**
   * A never-used entry from the heap with a version word of its own (allocator lock held). The
   * version word is taken (H_VERSION_USED moved) before the entry records it, so no two entries
   * ever share one; a crash in between loses a word, or leaves an entry whose version reference
   * is still 0, which recovery leaks rather than frees (see #settleAllocator).
   */
  #bumpEntryLocked(key: string | null): number {
    let i32 = this.#i32;
    let used = Atomics.load(i32, H_VERSION_USED);
    if (used >= VERSION_CHUNK_WORDS) {
      const chunk = this.#bumpLocked(VERSION_CHUNK_WORDS, 0, key);
      i32 = this.#i32;
      Atomics.store(i32, H_VERSION_CHUNK, chunk);
      Atomics.store(i32, H_VERSION_USED, 0);
      used = 0;
    }
    const versionWord = Atomics.load(i32, H_VERSION_CHUNK) + used;
    Atomics.store(i32, H_VERSION_USED, used + 1);
    Atomics.store(i32, versionWord, 1); // odd: not linked yet
    const ref = this.#bumpLocked(this.#entryWords, this.#ownerBase + O_INTENT_ALLOC, key);
    Atomics.store(this.#i32, ref + this.#versionAt, versionWord);
    return ref;
  }

  /**
   * Pushes an unreachable entry on the free list (its E_HASH word becomes the link). With
   * `intended`, the entry is this owner's O_INTENT_FREE, which becomes `-ref` ("freed") under
   * the same lock: recovery then never frees again, or re-versions, an entry already pushed
   * (another thread may have reused it by then), yet still counts it as deleted.
   */
  #freeEntry(ref: number, intended: boolean): void {
    this.#lockLeaf(H_ALLOC_LOCK);
    try {
      const i32 = this.#i32;
      Atomics.store(i32, ref + E_HASH, Atomics.load(i32, H_FREE_HEAD));
      Atomics.store(i32, H_FREE_HEAD, ref);
      if (intended) Atomics.store(i32, this.#ownerBase + O_INTENT_FREE, -ref);
    } finally {
      this.#unlock(H_ALLOC_LOCK);
    }
  }

  /**
   * Gives back an entry this owner allocated and never linked (its version is still odd, its
   * free-list link word unwritten). Pushed and struck from the intent under the allocator lock,
   * so no other thread can take it while the intent still names it; a crash between the two
   * steps leaves it on the free list, which #settleAllocator and #settleIntent both check.
   */
  #unallocEntry(ref: number): void {
    this.#lockLeaf(H_ALLOC_LOCK);
    try {
      const i32 = this.#i32;
      Atomics.store(i32, ref + E_HASH, Atomics.load(i32, H_FREE_HEAD));
      Atomics.store(i32, H_FREE_HEAD, ref);
      Atomics.store(i32, this.#ownerBase + O_INTENT_ALLOC, 0);
    } finally {
      this.#unlock(H_ALLOC_LOCK);
    }
  }

  /** Fresh zeroed words from the heap (tables, overflow buckets). */
  #bump(words: number, intentWord: number, key: string | null): number {
    this.#lockLeaf(H_ALLOC_LOCK);
    try {
      return this.#bumpLocked(words, intentWord, key);
    } finally {
      this.#unlock(H_ALLOC_LOCK);
    }
  }

  #bumpLocked(words: number, intentWord: number, key: string | null): number {
    const top = Atomics.load(this.#i32, H_HEAP_TOP);
    const end = top + words;
    if (end > this.#i32.length) this.#growBuffer(end, key);
    // Memory past HEAP_TOP was never handed out, so it is still zero from `grow`.
    if (intentWord !== 0) Atomics.store(this.#i32, intentWord, top);
    Atomics.store(this.#i32, H_HEAP_TOP, end);
    return top;
  }

  #growBuffer(minWords: number, key: string | null): void {
    const buffer = this.#buffer;
    const needed = minWords * 4;
    if (buffer.byteLength < needed) {
      if (needed > buffer.maxByteLength) {
        throw new SharedMapFullError(key, this.#maxKeys, `the buffer reached its reserved ${buffer.maxByteLength} bytes`, this.#name);
      }
      const wanted = Math.max(needed, buffer.byteLength + MIN_BUFFER_GROWTH, Math.ceil(buffer.byteLength * 1.25));
      buffer.grow(Math.min(buffer.maxByteLength, roundUp8(wanted)));
    }
    this.#refreshViews();
  }

  // ------------------------------------------------------------------ growth

  #maybeGrow(): void {
    this.#insertsSinceCheck = 0;
    const i32 = this.#i32;
    const table = Atomics.load(i32, H_TABLE);
    if (table !== this.#table) this.#adoptTable(table);
    if (this.size <= (this.#mask + 1) * GROW_AT_LOAD) return;
    // Someone else growing (or snapshotting) will see the load too.
    if (Atomics.compareExchange(i32, H_RESIZE_LOCK, 0, this.#ownerId) !== 0) return;
    try {
      this.#grow();
    } catch (error) {
      // Growth runs after the write that triggered it has completed: its failure must not turn
      // that write into an error saying "nothing was written". A larger table is an
      // optimisation (shorter chains); without it the map stays correct, and a later insert
      // tries again. Refused: a bucket held by a dead owner nobody reported (lock timeout), or
      // no room left in the reserved buffer for a larger table.
      if (!(error instanceof SharedLockTimeoutError || error instanceof SharedMapFullError)) throw error;
    } finally {
      this.#unlock(H_RESIZE_LOCK);
    }
  }

  /**
   * Doubles the table (resize lock held). Writers are held off bucket by bucket as their locks
   * are taken; readers are never held off: the old table stays intact and readable until the new
   * one, which references the same entries, is published with one store to H_TABLE.
   */
  #grow(): void {
    const oldTable = this.#currentTable();
    const oldBuckets = this.#mask + 1;
    const locked = this.#lockAllBuckets(oldTable, oldBuckets);
    try {
      if (this.size <= oldBuckets * GROW_AT_LOAD) return;
      let buckets = oldBuckets * 2;
      while (this.size > buckets * 2) buckets *= 2;
      // The table and every overflow bucket the move needs, counted first, in one allocation:
      // heap words are never given back, so a table taken before an overflow bucket that did not
      // fit was lost for good, and with it the room the map's size says it still has.
      const tableWords = TABLE_HEADER_WORDS + buckets * BUCKET_WORDS;
      const spareBuckets = this.#overflowBucketsNeeded(oldTable, oldBuckets, buckets);
      const table = this.#bump(tableWords + spareBuckets * BUCKET_WORDS, 0, null);
      const i32 = this.#i32;
      i32[table + T_MASK] = buckets - 1;
      i32[table + T_BUCKETS] = buckets;
      let spare = table + tableWords;
      for (let b = 0; b < oldBuckets; b++) {
        for (let bucket = oldTable + TABLE_HEADER_WORDS + b * BUCKET_WORDS; bucket !== 0; bucket = i32[bucket + B_NEXT]!) {
          for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
            const ref = i32[bucket + B_REFS + slot]!;
            if (ref === 0) continue;
            const hash = i32[ref + E_HASH]!;
            if (this.#placeUnpublished(table + TABLE_HEADER_WORDS + (hash & (buckets - 1)) * BUCKET_WORDS, hash, ref, spare)) spare += BUCKET_WORDS;
          }
        }
      }
      // Born locked: no writer may change the new table before every old bucket says "moved",
      // or a reader still on the old table could read an entry freed through the new one.
      for (let b = 0; b < buckets; b++) i32[table + TABLE_HEADER_WORDS + b * BUCKET_WORDS + B_LOCK] = this.#ownerId;
      Atomics.store(i32, H_PREVIOUS_TABLE, oldTable);
      Atomics.store(i32, H_TABLE, table); // the new table is live
      this.#markMoved(oldTable);
      Atomics.store(i32, H_PREVIOUS_TABLE, 0);
      Atomics.add(i32, H_GROWTHS, 1);
      this.#adoptTable(table);
      this.#unlockAllBuckets(table, buckets);
    } finally {
      // Writers waiting on the old locks see H_TABLE changed and retry on the new table.
      this.#unlockAllBuckets(oldTable, locked);
    }
  }

  /** Makes every root SEQ of a replaced table odd (idempotent). Its bucket locks are held. */
  #markMoved(table: number): void {
    const i32 = this.#i32;
    const buckets = i32[table + T_BUCKETS]!;
    for (let b = 0; b < buckets; b++) {
      const word = table + TABLE_HEADER_WORDS + b * BUCKET_WORDS + B_SEQ;
      const seq = Atomics.load(i32, word);
      if ((seq & 1) === 0) Atomics.store(i32, word, seq + 1);
    }
  }

  /**
   * Overflow buckets a table of `buckets` needs for the entries of `oldTable`: ceil(n /
   * SLOTS_PER_BUCKET) - 1 for a bucket of n entries. All of `oldTable`'s bucket locks are held,
   * so the move that follows walks exactly these entries. One byte per bucket (1/64 of the table
   * itself) counting the entries in each chain's last bucket, never above SLOTS_PER_BUCKET: a
   * chain's length, which colliding keys can push past 255, would not fit.
   */
  #overflowBucketsNeeded(oldTable: number, oldBuckets: number, buckets: number): number {
    const i32 = this.#i32;
    const inLast = new Uint8Array(buckets);
    let needed = 0;
    for (let b = 0; b < oldBuckets; b++) {
      for (let bucket = oldTable + TABLE_HEADER_WORDS + b * BUCKET_WORDS; bucket !== 0; bucket = i32[bucket + B_NEXT]!) {
        for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
          const ref = i32[bucket + B_REFS + slot]!;
          if (ref === 0) continue;
          const at = i32[ref + E_HASH]! & (buckets - 1);
          if (inLast[at] === SLOTS_PER_BUCKET) {
            needed++;
            inLast[at] = 1;
          } else {
            inLast[at]!++;
          }
        }
      }
    }
    return needed;
  }

  /**
   * Adds (hash, ref) to a chain of a table no reader can see yet, hanging `spare` (zeroed words
   * counted for it) on the chain when it is full; returns true when it took `spare`.
   */
  #placeUnpublished(root: number, hash: number, ref: number, spare: number): boolean {
    const i32 = this.#i32;
    let last = root;
    for (let bucket = root; bucket !== 0; bucket = i32[bucket + B_NEXT]!) {
      last = bucket;
      for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
        if (i32[bucket + B_REFS + slot] === 0) {
          i32[bucket + B_TAGS + slot] = hash;
          i32[bucket + B_REFS + slot] = ref;
          return false;
        }
      }
    }
    i32[spare + B_TAGS] = hash;
    i32[spare + B_REFS] = ref;
    i32[last + B_NEXT] = spare;
    return true;
  }

  #currentTable(): number {
    const table = Atomics.load(this.#i32, H_TABLE);
    if (table !== this.#table) this.#adoptTable(table);
    return table;
  }

  /** Locks every root bucket in index order; returns how many it locked. Throws after unlocking on timeout. */
  #lockAllBuckets(table: number, buckets: number): number {
    let locked = 0;
    try {
      for (; locked < buckets; locked++) {
        const word = table + TABLE_HEADER_WORDS + locked * BUCKET_WORDS + B_LOCK;
        if (Atomics.compareExchange(this.#i32, word, 0, this.#ownerId) !== 0) this.#acquireSlow(word, 0, 'a bucket');
      }
      this.#coverHeap();
      return locked;
    } catch (error) {
      this.#unlockAllBuckets(table, locked);
      throw error;
    }
  }

  #unlockAllBuckets(table: number, count: number): void {
    for (let b = 0; b < count; b++) this.#unlock(table + TABLE_HEADER_WORDS + b * BUCKET_WORDS + B_LOCK);
  }

  /**
   * Runs `body` with every writer held off (resize lock and all bucket locks): a point in time at
   * which the whole map is one consistent state. Readers are not held off.
   */
  #withWorld<T>(body: (table: number, buckets: number) => T): T {
    this.#lockLeaf(H_RESIZE_LOCK, 'the resize lock');
    try {
      const table = this.#currentTable();
      const buckets = this.#mask + 1;
      const locked = this.#lockAllBuckets(table, buckets);
      try {
        return body(table, buckets);
      } finally {
        this.#unlockAllBuckets(table, locked);
      }
    } finally {
      this.#unlock(H_RESIZE_LOCK);
    }
  }

  // ------------------------------------------------------------------ whole-map operations

  /** Every entry at one instant (writers held off for the copy; readers are not), in insertion order. */
  entries(): Array<[string, V]> {
    if (this.#closed) throw new SharedStoreClosedError('snapshot');
    const stamps: number[] = [];
    const walked = this.#withWorld((table, buckets) => {
      const out: Array<[string, V]> = [];
      this.#walk(table, buckets, (ref) => {
        // As a number (a counter of inserts, far below 2^53): numbers sort faster than bigints.
        stamps.push(Number(this.#i64[(ref + this.#stampAt) >> 1]!));
        out.push([this.#keyAtEntry(ref), this.codec.read(this.#i32, this.#i64, ref + E_VALUE)]);
      });
      return out;
    });
    // Bucket order is hash order. An unbounded GovernedMap range promises insertion order (what
    // the in-process Map gives), and the insertion stamps are that order: unique, kept by an
    // update, new on a re-insert. Sorted after the writers were let go, by index.
    const order = Uint32Array.from(walked.keys()).sort((a, b) => stamps[a]! - stamps[b]!);
    const out = new Array<[string, V]>(walked.length);
    for (let i = 0; i < order.length; i++) out[i] = walked[order[i]!]!;
    return out;
  }

  /** The key with the smallest insertion stamp: the key added longest ago. O(n). */
  oldestKey(): string | undefined {
    if (this.#closed) throw new SharedStoreClosedError('oldestKey');
    return this.#withWorld((table, buckets) => {
      let oldest = 0;
      let stamp = 0n;
      this.#walk(table, buckets, (ref) => {
        const s = this.#i64[(ref + this.#stampAt) >> 1]!;
        if (oldest === 0 || s < stamp) {
          oldest = ref;
          stamp = s;
        }
      });
      return oldest === 0 ? undefined : this.#keyAtEntry(oldest);
    });
  }

  /** Removes every entry. */
  clear(): void {
    if (this.#closed) throw new SharedStoreClosedError('clear');
    this.#withWorld((table, buckets) => {
      const i32 = this.#i32;
      const me = this.#ownerBase;
      // Entry by entry, with the steps and intent of remove(), counted on this owner's count: a
      // clear cut short (its worker killed) is then recovered like a delete. Unlinking
      // everything first and fixing the counts and the free list at the end left, after a kill,
      // unlinked entries that were still counted (inserts refused as over maxKeys) and never freed.
      for (let b = 0; b < buckets; b++) {
        const root = table + TABLE_HEADER_WORDS + b * BUCKET_WORDS;
        for (let bucket = root; bucket !== 0; bucket = Atomics.load(i32, bucket + B_NEXT)) {
          for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
            const ref = Atomics.load(i32, bucket + B_REFS + slot);
            if (ref === 0) continue;
            const countBefore = Atomics.load(i32, me + O_COUNT);
            this.#intend(root, 0, ref, countBefore);
            Atomics.add(i32, i32[ref + this.#versionAt]!, 1); // odd before unlinking (invariant 7)
            Atomics.store(i32, bucket + B_REFS + slot, 0);
            Atomics.store(i32, bucket + B_TAGS + slot, 0);
            Atomics.add(i32, root + B_SEQ, 2); // before the entry can be reused (invariant 3)
            Atomics.store(i32, me + O_COUNT, (countBefore - 1) | 0);
            this.#freeEntry(ref, true);
            this.#intend(0, 0, 0, 0);
          }
        }
      }
    });
  }

  #walk(table: number, buckets: number, visit: (ref: number) => void): void {
    const i32 = this.#i32;
    for (let b = 0; b < buckets; b++) {
      for (let bucket = table + TABLE_HEADER_WORDS + b * BUCKET_WORDS; bucket !== 0; bucket = Atomics.load(i32, bucket + B_NEXT)) {
        for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
          const ref = Atomics.load(i32, bucket + B_REFS + slot);
          if (ref !== 0) visit(ref);
        }
      }
    }
  }

  #keyAtEntry(ref: number): string {
    const i32 = this.#i32;
    const length = i32[ref + E_KEY_LENGTH]!;
    const units = new Array<number>(length);
    for (let i = 0; i < length; i++) {
      const word = i32[ref + this.#keyBase + (i >> 1)]!;
      units[i] = (i & 1) === 0 ? word & 0xffff : word >>> 16;
    }
    return String.fromCharCode(...units);
  }

  stats(): SharedMapStats {
    const i32 = this.#i32;
    this.#currentTable();
    let attached = 0;
    const high = Atomics.load(i32, H_OWNER_HIGH);
    for (let slot = 0; slot < high; slot++) if (Atomics.load(i32, HEADER_WORDS + slot * OWNER_WORDS + O_STATE) === OWNER_ALIVE) attached++;
    return {
      keys: this.size,
      buckets: this.#mask + 1,
      growths: Atomics.load(i32, H_GROWTHS),
      recoveries: Atomics.load(i32, H_RECOVERIES),
      locksRecovered: Atomics.load(i32, H_LOCKS_RECOVERED),
      threadsAttached: attached,
      bytesUsed: Atomics.load(i32, H_HEAP_TOP) * 4,
      bytesAllocated: this.#buffer.byteLength,
      bytesMax: this.#buffer.maxByteLength,
      entryBytes: this.#entryWords * 4,
      readCache: { keys: this.#cache.size, limit: this.#cacheLimit, hits: this.#cacheHits, rereads: this.#cacheRereads, misses: this.#cacheMisses },
    };
  }

  /**
   * Checks every invariant with writers held off: each reachable entry once, in the bucket its
   * stored hash selects, with a key that hashes to that hash and is unique; nothing reachable is
   * on the free list; the owner counts sum to the reachable entries; no lock is held by an owner
   * that is not alive. For tests and for an operator after an incident.
   */
  checkIntegrity(): IntegrityReport {
    if (this.#closed) throw new SharedStoreClosedError('checkIntegrity');
    return this.#withWorld((table, buckets) => {
      const problems: string[] = [];
      const i32 = this.#i32;
      const seen = new Set<number>();
      const keys = new Set<string>();
      const versionWords = new Set<number>();
      let longestChain = 0;
      for (let b = 0; b < buckets; b++) {
        const root = table + TABLE_HEADER_WORDS + b * BUCKET_WORDS;
        if ((Atomics.load(i32, root + B_SEQ) & 1) !== 0) problems.push(`bucket ${b}: SEQ is odd`);
        let chain = 0;
        for (let bucket = root; bucket !== 0; bucket = Atomics.load(i32, bucket + B_NEXT)) {
          for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
            const ref = Atomics.load(i32, bucket + B_REFS + slot);
            if (ref === 0) continue;
            longestChain = Math.max(longestChain, ++chain);
            if (seen.has(ref)) problems.push(`entry ${ref} reachable twice`);
            seen.add(ref);
            const length = i32[ref + E_KEY_LENGTH]!;
            if (length < 0 || length > this.#maxKeyLength) {
              problems.push(`entry ${ref}: key length ${length}`);
              continue;
            }
            const key = this.#keyAtEntry(ref);
            const hash = hashKey(key, this.#seed0, this.#seed1);
            if (i32[ref + E_HASH] !== hash) problems.push(`entry ${ref} (${JSON.stringify(key)}): stored hash differs from the key's`);
            if (Atomics.load(i32, bucket + B_TAGS + slot) !== hash) problems.push(`entry ${ref} (${JSON.stringify(key)}): slot tag differs from the key's hash`);
            if ((hash & this.#mask) !== b) problems.push(`entry ${ref} (${JSON.stringify(key)}): in bucket ${b}, belongs in ${hash & this.#mask}`);
            const versionWord = i32[ref + this.#versionAt]!;
            if (versionWord < HEADER_WORDS || versionWord >= Atomics.load(i32, H_HEAP_TOP)) problems.push(`entry ${ref} (${JSON.stringify(key)}): version word ${versionWord} outside the heap`);
            else if ((Atomics.load(i32, versionWord) & 1) !== 0) problems.push(`entry ${ref} (${JSON.stringify(key)}): odd version ${Atomics.load(i32, versionWord)} while linked and unlocked`);
            if (versionWords.has(versionWord)) problems.push(`entry ${ref} (${JSON.stringify(key)}): version word ${versionWord} shared with another entry`);
            versionWords.add(versionWord);
            if (keys.has(key)) problems.push(`key ${JSON.stringify(key)} present twice`);
            keys.add(key);
          }
        }
      }
      this.#lockLeaf(H_ALLOC_LOCK);
      try {
        const limit = Atomics.load(i32, H_HEAP_TOP) / this.#entryWords + 1;
        let steps = 0;
        for (let ref = Atomics.load(i32, H_FREE_HEAD); ref !== 0; ref = Atomics.load(i32, ref + E_HASH)) {
          if (seen.has(ref)) problems.push(`entry ${ref} is reachable and on the free list`);
          if (++steps > limit) {
            problems.push('the free list has a cycle');
            break;
          }
        }
      } finally {
        this.#unlock(H_ALLOC_LOCK);
      }
      if (this.size !== seen.size) problems.push(`owner counts sum to ${this.size}, ${seen.size} entries are reachable`);
      for (const [word, what] of [
        [H_ALLOC_LOCK, 'allocator lock'],
        [H_RESIZE_LOCK, 'resize lock'],
      ] as const) {
        const holder = Atomics.load(i32, word);
        if (holder !== 0 && holder !== this.#ownerId && !this.#holderAlive(holder)) problems.push(`${what} held by dead owner ${holder}`);
      }
      return { ok: problems.length === 0, keys: seen.size, longestChain, problems };
    });
  }

  // ------------------------------------------------------------------ locks and owners

  /**
   * Locks the root bucket of `hash` in the current table. Starts from the table this thread last
   * saw without asking (an Atomics load saved per write): the check after the lock is taken is
   * what makes it right — a lock of a replaced table guards nothing, so it is released and the
   * current table tried (tables are never reused, so its words are still a lock nobody needs).
   */
  #lockRoot(hash: number): number {
    let table = this.#table;
    for (;;) {
      const root = table + TABLE_HEADER_WORDS + (hash & this.#mask) * BUCKET_WORDS;
      const word = root + B_LOCK;
      if (Atomics.compareExchange(this.#i32, word, 0, this.#ownerId) !== 0 && !this.#acquireSlow(word, table, 'a bucket')) {
        table = this.#currentTable();
        continue;
      }
      if (Atomics.load(this.#i32, H_TABLE) === table) {
        this.#coverHeap();
        return root;
      }
      // The table was replaced before we got the lock: this lock guards nothing any more.
      this.#unlock(word);
      table = this.#currentTable();
    }
  }

  /**
   * Locks a lock that guards no table (allocator, resize), then makes the views cover the heap:
   * the free list may lead to entries another thread allocated after this one last looked.
   */
  #lockLeaf(word: number, what = 'the allocator'): void {
    if (Atomics.compareExchange(this.#i32, word, 0, this.#ownerId) !== 0) this.#acquireSlow(word, 0, what);
    this.#coverHeap();
  }

  #unlock(word: number): void {
    Atomics.store(this.#i32, word, 0);
  }

  /**
   * Waits for a lock: spins briefly (critical sections are sub-microsecond), then sleeps in
   * short rounds so a holder preempted on a busy core gets the CPU back. Each round checks
   * whether the holder is dead and, if so, recovers it. Returns false, without the lock, if
   * `table` is non-zero and the table was replaced meanwhile.
   */
  #acquireSlow(word: number, table: number, what: string): boolean {
    const id = this.#ownerId;
    let since = 0;
    for (let attempt = 1; ; attempt++) {
      const i32 = this.#i32;
      const holder = Atomics.load(i32, word);
      if (holder === 0) {
        if (Atomics.compareExchange(i32, word, 0, id) === 0) return true;
        continue;
      }
      if (holder === id) throw new Error(`govmap shared-memory map: lock at word ${word} is already held by this thread (internal invariant broken)`);
      if (table !== 0 && Atomics.load(i32, H_TABLE) !== table) return false;
      if (attempt < SPIN_ATTEMPTS) continue;
      if (!this.#holderAlive(holder)) {
        this.#recoverHolder(word, holder);
        continue;
      }
      const now = performance.now();
      if (since === 0) since = now;
      else if (now - since > this.#lockTimeoutMs) throw new SharedLockTimeoutError(what, this.#threadOf(holder), this.#lockTimeoutMs, this.#name);
      Atomics.wait(i32, this.#ownerBase + O_SLEEP, 0, SLEEP_MS);
    }
  }

  #holderAlive(holder: number): boolean {
    const i32 = this.#i32;
    const slot = (holder & MAX_THREADS_LIMIT) - 1;
    if (slot < 0 || slot >= this.#maxThreads) return false;
    const base = HEADER_WORDS + slot * OWNER_WORDS;
    const state = Atomics.load(i32, base + O_STATE);
    if (Atomics.load(i32, base + O_INCARNATION) !== holder >>> OWNER_SLOT_BITS) return false;
    // RECOVERING counts as alive: another thread is releasing its locks right now.
    return state === OWNER_ALIVE || state === OWNER_RECOVERING;
  }

  #threadOf(holder: number): number {
    const slot = (holder & MAX_THREADS_LIMIT) - 1;
    if (slot < 0 || slot >= this.#maxThreads) return -1;
    return Atomics.load(this.#i32, HEADER_WORDS + slot * OWNER_WORDS + O_THREAD_ID);
  }

  /** The holder of `word` is dead: recover it (all its locks), or take an orphaned lock over. */
  #recoverHolder(word: number, holder: number): void {
    const slot = (holder & MAX_THREADS_LIMIT) - 1;
    const base = HEADER_WORDS + slot * OWNER_WORDS;
    if (slot >= 0 && slot < this.#maxThreads && Atomics.load(this.#i32, base + O_INCARNATION) === holder >>> OWNER_SLOT_BITS) {
      if (this.#recoverSlot(slot)) return;
      // Another thread won the recovery and has not finished (or handed the slot back DEAD):
      // this lock may be the bucket of the write it is about to settle. Releasing it here let
      // this thread into a half-done write and the recovery skip it (a count off for good).
      // The caller waits (RECOVERING counts as alive) or tries the recovery again.
      if (Atomics.load(this.#i32, base + O_STATE) !== OWNER_FREE) return;
    }
    // Its slot was already recovered and reused (or never existed): the lock is an orphan that
    // recovery did not own, e.g. a bucket of a table replaced since. Release it; the caller
    // retries and finds out whether it still guards anything.
    Atomics.compareExchange(this.#i32, word, holder, 0);
  }

  #claimOwnerSlot(): void {
    const i32 = this.#i32;
    for (let slot = 0; slot < this.#maxThreads; slot++) {
      const base = HEADER_WORDS + slot * OWNER_WORDS;
      if (Atomics.compareExchange(i32, base + O_STATE, OWNER_FREE, OWNER_ALIVE) !== OWNER_FREE) continue;
      const incarnation = ((Atomics.load(i32, base + O_INCARNATION) + 1) & INCARNATION_MASK) || 1;
      Atomics.store(i32, base + O_INCARNATION, incarnation);
      Atomics.store(i32, base + O_THREAD_ID, currentThreadId);
      Atomics.store(i32, base + O_INTENT_BUCKET, 0);
      // O_COUNT is inherited: it is this slot's share of the map's size, whoever holds the slot.
      for (let high = Atomics.load(i32, H_OWNER_HIGH); high < slot + 1; high = Atomics.load(i32, H_OWNER_HIGH)) {
        if (Atomics.compareExchange(i32, H_OWNER_HIGH, high, slot + 1) === high) break;
      }
      this.#slot = slot;
      this.#ownerBase = base;
      this.#ownerId = (incarnation << OWNER_SLOT_BITS) | (slot + 1);
      return;
    }
    throw new SharedThreadsExhaustedError(this.#maxThreads, this.#name);
  }

  /** Gives this instance's owner slot back. Later entry operations on this instance throw; `size` and `stats()` still answer (they only read counters). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cache.clear(); // every read now misses, and a miss checks #closed
    Atomics.compareExchange(this.#i32, this.#ownerBase + O_STATE, OWNER_ALIVE, OWNER_FREE);
  }

  /**
   * Watches a worker this thread started: when it exits (normally, by a crash or by
   * `terminate()`), its owner slots are marked dead and recovered — the locks it held are
   * released and a write it was in the middle of is finished or undone. Call it right after
   * `new Worker(...)`.
   */
  supervise(worker: Worker): void {
    // threadId reads -1 once the worker is gone, so take it now.
    const threadId = worker.threadId;
    // Even after this instance was closed: the map lives on in other threads, and a worker that
    // died holding a lock nobody recovers would make every writer of that bucket time out.
    worker.once('exit', () => {
      try {
        this.recoverThread(threadId);
      } catch (error) {
        // Thrown from an 'exit' listener it would be an uncaught exception, and the listeners
        // after it (worker.terminate()'s own promise among them) would never run. A recovery
        // blocked by a lock of a worker that died at the same moment is left DEAD and finished
        // by that worker's recovery (or by the first writer that meets its locks).
        if (!(error instanceof SharedLockTimeoutError)) throw error;
      }
    });
  }

  /**
   * Marks every owner slot of `threadId` dead and recovers it. Returns how many were recovered.
   * Works on a closed instance too: recovery takes the dead owner's locks in this instance's
   * name, and a closed instance's owner id may by now name a slot another thread claimed (whose
   * waiters would release those locks as orphans mid-recovery), so it borrows an owner slot for
   * the duration. With none free, the slots are only marked dead: a writer that meets one of
   * their locks recovers them then.
   */
  recoverThread(threadId: number): number {
    if (!this.#closed) return this.#recoverThreadAsOwner(threadId);
    try {
      this.#claimOwnerSlot();
    } catch (error) {
      if (!(error instanceof SharedThreadsExhaustedError)) throw error;
      this.#markThreadDead(threadId);
      return 0;
    }
    try {
      return this.#recoverThreadAsOwner(threadId);
    } finally {
      Atomics.compareExchange(this.#i32, this.#ownerBase + O_STATE, OWNER_ALIVE, OWNER_FREE);
    }
  }

  #markThreadDead(threadId: number): void {
    const i32 = this.#i32;
    const high = Atomics.load(i32, H_OWNER_HIGH);
    for (let slot = 0; slot < high; slot++) {
      const base = HEADER_WORDS + slot * OWNER_WORDS;
      if (Atomics.load(i32, base + O_THREAD_ID) === threadId) Atomics.compareExchange(i32, base + O_STATE, OWNER_ALIVE, OWNER_DEAD);
    }
  }

  #recoverThreadAsOwner(threadId: number): number {
    const i32 = this.#i32;
    const high = Atomics.load(i32, H_OWNER_HIGH);
    let recovered = 0;
    for (let slot = 0; slot < high; slot++) {
      const base = HEADER_WORDS + slot * OWNER_WORDS;
      if (slot === this.#slot || Atomics.load(i32, base + O_THREAD_ID) !== threadId) continue;
      if (Atomics.compareExchange(i32, base + O_STATE, OWNER_ALIVE, OWNER_DEAD) !== OWNER_ALIVE) continue;
      if (this.#recoverSlot(slot)) recovered++;
    }
    // Slots reported dead whose recovery could not finish (it needed a lock of a worker that died
    // at the same moment, maybe the one just recovered) or was left to writers: finish them now,
    // rather than when a writer happens to meet one of their locks.
    for (let slot = 0; slot < high; slot++) {
      if (slot === this.#slot || Atomics.load(i32, HEADER_WORDS + slot * OWNER_WORDS + O_STATE) !== OWNER_DEAD) continue;
      try {
        this.#recoverSlot(slot);
      } catch (error) {
        if (!(error instanceof SharedLockTimeoutError)) throw error; // still blocked: left DEAD for later
      }
    }
    return recovered;
  }

  /**
   * Recovery of a dead owner: release the allocator if it held it (the free list is consistent
   * at every step of push and pop), settle the write it was making from its intent, release
   * every other lock it held, free the slot. One thread wins the DEAD -> RECOVERING transition.
   */
  #recoverSlot(slot: number): boolean {
    let i32 = this.#i32;
    const base = HEADER_WORDS + slot * OWNER_WORDS;
    if (Atomics.compareExchange(i32, base + O_STATE, OWNER_DEAD, OWNER_RECOVERING) !== OWNER_DEAD) return false;
    this.#coverHeap();
    i32 = this.#i32;
    const dead = (Atomics.load(i32, base + O_INCARNATION) << OWNER_SLOT_BITS) | (slot + 1);
    let released = 0;
    // Died inside the allocator: settle its allocator steps while nobody else can allocate.
    if (Atomics.compareExchange(i32, H_ALLOC_LOCK, dead, this.#ownerId) === dead) {
      this.#settleAllocator(base);
      this.#unlock(H_ALLOC_LOCK);
      released++;
    }

    // A growth that died after publishing its table must finish marking the old one before
    // the new table's locks (born held by the dead owner) are released below.
    if (Atomics.load(i32, H_RESIZE_LOCK) === dead) {
      const previous = Atomics.load(i32, H_PREVIOUS_TABLE);
      if (previous !== 0 && Atomics.load(i32, H_TABLE) !== previous) this.#markMoved(previous);
      Atomics.store(i32, H_PREVIOUS_TABLE, 0);
    }

    const intentBucket = Atomics.load(i32, base + O_INTENT_BUCKET);
    if (intentBucket !== 0 && Atomics.compareExchange(i32, intentBucket + B_LOCK, dead, this.#ownerId) === dead) {
      try {
        this.#settleIntent(base, intentBucket);
        this.#settleVersions(intentBucket);
      } catch (error) {
        // Settling frees entries under the allocator lock, which a worker that died at the same
        // moment may hold, not reported dead yet (its 'exit' comes after this one's): after
        // lockTimeoutMs, hand the bucket back to the dead owner with its write untouched and
        // the slot back to DEAD. Every step is idempotent: the next recovery (the other
        // worker's, or a writer meeting this lock) settles it. Releasing the lock here would let
        // writers into a half-done write that nothing settles any more.
        Atomics.store(i32, intentBucket + B_LOCK, dead);
        Atomics.add(i32, H_LOCKS_RECOVERED, released);
        Atomics.store(i32, base + O_STATE, OWNER_DEAD);
        throw error;
      }
      this.#unlock(intentBucket + B_LOCK);
      released++;
    }
    Atomics.store(i32, base + O_INTENT_BUCKET, 0);

    // Any other bucket lock it held (it was growing, snapshotting or between steps of a write
    // that had not changed anything yet). Growth cannot replace the table meanwhile: it would
    // need these very locks.
    const table = this.#currentTable();
    i32 = this.#i32;
    const buckets = this.#mask + 1;
    for (let b = 0; b < buckets; b++) {
      const root = table + TABLE_HEADER_WORDS + b * BUCKET_WORDS;
      if (Atomics.compareExchange(i32, root + B_LOCK, dead, this.#ownerId) !== dead) continue;
      // It may have died inside an in-place write: an odd version in this chain (invariant 10).
      this.#settleVersions(root);
      this.#unlock(root + B_LOCK);
      released++;
    }
    if (Atomics.compareExchange(i32, H_RESIZE_LOCK, dead, 0) === dead) released++;
    Atomics.add(i32, H_LOCKS_RECOVERED, released);
    // Only an owner that died holding something counts: a worker ended between operations (a pool
    // shrinking) just gives its slot back, and must not fire an alert on recoveries.
    if (released > 0) Atomics.add(i32, H_RECOVERIES, 1);
    Atomics.store(i32, base + O_STATE, OWNER_FREE);
    return true;
  }

  /**
   * A dead owner held the allocator lock (we hold it now): an allocation it recorded but did not
   * finish — the entry still on the free list or past HEAP_TOP, or bumped before it got its
   * version reference — is forgotten (the entry stays free, or is leaked: never reachable, never
   * reused without a version word); an entry it pushed on the free list but had not yet marked
   * freed is marked freed (-ref), so #settleIntent counts it deleted and touches it no more.
   */
  #settleAllocator(owner: number): void {
    this.#coverHeap();
    const i32 = this.#i32;
    const alloc = Atomics.load(i32, owner + O_INTENT_ALLOC);
    if (alloc > 0 && (alloc + this.#entryWords > Atomics.load(i32, H_HEAP_TOP) || this.#onFreeList(alloc) || Atomics.load(i32, alloc + this.#versionAt) === 0)) {
      Atomics.store(i32, owner + O_INTENT_ALLOC, 0);
    }
    const free = Atomics.load(i32, owner + O_INTENT_FREE);
    if (free > 0 && this.#onFreeList(free)) Atomics.store(i32, owner + O_INTENT_FREE, -free);
  }

  /**
   * Root lock held, the write on it settled: every linked entry of the chain gets an even
   * version (a torn in-place write left it odd; the value itself is whole, one atomic store).
   */
  #settleVersions(root: number): void {
    const i32 = this.#i32;
    for (let bucket = root; bucket !== 0; bucket = Atomics.load(i32, bucket + B_NEXT)) {
      for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) {
        const ref = Atomics.load(i32, bucket + B_REFS + slot);
        if (ref === 0) continue;
        const versionWord = Atomics.load(i32, ref + this.#versionAt);
        if ((Atomics.load(i32, versionWord) & 1) !== 0) Atomics.add(i32, versionWord, 1);
      }
    }
  }

  /**
   * Finishes or undoes the dead owner's structural write on `root` (whose lock we now hold).
   * Whether each recorded entry is reachable tells which step it reached; every fix is
   * idempotent, so a recovery that itself dies can be run again.
   */
  #settleIntent(owner: number, root: number): void {
    const i32 = this.#i32;
    const alloc = Atomics.load(i32, owner + O_INTENT_ALLOC);
    const freeWord = Atomics.load(i32, owner + O_INTENT_FREE);
    // Negative: unlinked and already pushed on the free list by the dead owner (#freeEntry).
    const freed = freeWord < 0;
    const free = freed ? -freeWord : freeWord;
    const countBefore = Atomics.load(i32, owner + O_INTENT_COUNT);
    const allocLinked = alloc !== 0 && this.#inChain(root, alloc);
    const freeLinked = free !== 0 && !freed && this.#inChain(root, free);
    // insert: +1 once linked; delete: -1 once unlinked; record replace: both, net 0.
    Atomics.store(i32, owner + O_COUNT, (countBefore + (allocLinked ? 1 : 0) - (free !== 0 && !freeLinked ? 1 : 0)) | 0);
    // A slot whose reference was cleared but whose tag was not is harmless (ref 0 = empty).
    Atomics.add(i32, root + B_SEQ, 2); // before any free: a reader may hold either entry
    for (const ref of freed ? [alloc] : [alloc, free]) {
      if (ref === 0 || this.#inChain(root, ref)) continue;
      // Unlinked, so it must be odd (invariant 7): a crash may have left the fresh even version
      // of an entry it never linked. An entry without a version word is leaked, not freed.
      const versionWord = Atomics.load(i32, ref + this.#versionAt);
      if (versionWord === 0) continue;
      if ((Atomics.load(i32, versionWord) & 1) === 0) Atomics.add(i32, versionWord, 1);
      this.#lockLeaf(H_ALLOC_LOCK);
      try {
        if (ref < Atomics.load(i32, H_HEAP_TOP) && !this.#onFreeList(ref)) {
          Atomics.store(i32, ref + E_HASH, Atomics.load(i32, H_FREE_HEAD));
          Atomics.store(i32, H_FREE_HEAD, ref);
        }
      } finally {
        this.#unlock(H_ALLOC_LOCK);
      }
    }
    Atomics.store(i32, owner + O_INTENT_ALLOC, 0);
    Atomics.store(i32, owner + O_INTENT_FREE, 0);
  }

  #inChain(root: number, ref: number): boolean {
    const i32 = this.#i32;
    for (let bucket = root; bucket !== 0; bucket = Atomics.load(i32, bucket + B_NEXT)) {
      for (let slot = 0; slot < SLOTS_PER_BUCKET; slot++) if (Atomics.load(i32, bucket + B_REFS + slot) === ref) return true;
    }
    return false;
  }

  /** Allocator lock held. O(free entries): recovery only. */
  #onFreeList(ref: number): boolean {
    const i32 = this.#i32;
    const limit = Atomics.load(i32, H_HEAP_TOP) / this.#entryWords + 1;
    let steps = 0;
    for (let at = Atomics.load(i32, H_FREE_HEAD); at !== 0 && steps <= limit; at = Atomics.load(i32, at + E_HASH), steps++) {
      if (at === ref) return true;
    }
    return false;
  }
}

/**
 * One key of a thread's read cache: the entry's version word, the (even) version the value was
 * read at, and the value as handed out. Mutable so a refresh reuses the object (one shape, no
 * garbage); owned by one thread, so nothing else ever writes it.
 */
class CachedRead<V> {
  /**
   * The entry (word offset), re-read directly when the version moved (#rereadInt64). Every field
   * is a small integer (31-bit Smi: offsets below 2^30 words, versions below VERSION_RETIRE_AT);
   * a field that is not turns into a boxed double for every CachedRead, an extra dependent load.
   */
  ref: number;
  versionWord: number;
  version: number;
  value: V;

  constructor(ref: number, versionWord: number, version: number, value: V) {
    this.ref = ref;
    this.versionWord = versionWord;
    this.version = version;
    this.value = value;
  }
}

function integerOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigurationError(name, `must be an integer in ${min} ..= ${max}`, value);
  }
  return value;
}

/**
 * Words of address space a map reserves: every key's entry, the last table (mean load 2 per
 * bucket right after growth) plus all earlier ones (a doubling series sums to less than the
 * last), and as much again for overflow buckets, and one growth step of slack. Reserved, not
 * committed: pages are touched only as used.
 */
function reservedWords(maxKeys: number, entryWords: number, heapBase: number, firstBuckets: number): number {
  const lastBuckets = nextPowerOfTwo(Math.max(firstBuckets, Math.ceil(maxKeys / 2)));
  const firstTableWords = TABLE_HEADER_WORDS + firstBuckets * BUCKET_WORDS;
  return heapBase + firstTableWords + maxKeys * entryWords + 3 * (TABLE_HEADER_WORDS + lastBuckets * BUCKET_WORDS) + (MIN_BUFFER_GROWTH >> 2);
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function roundUp8(bytes: number): number {
  return Math.ceil(bytes / 8) * 8;
}
