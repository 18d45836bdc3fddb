/**
 * The shared-memory map's byte layout. Every offset is in 32-bit words of one growable
 * SharedArrayBuffer; every worker that attaches reads the same layout, so these numbers are a
 * wire format: a change bumps FORMAT_VERSION and `attach` refuses a buffer of another version.
 *
 *   [header: 4 cache lines][owner table: maxThreads lines][heap: tables, overflow buckets, entries]
 *
 * The heap only grows (bump allocation at HEAP_TOP, `SharedArrayBuffer.prototype.grow` when it
 * runs out); freed entries go to a free list and are reused; bucket arrays of an outgrown table
 * are never reused (a stale reader may still be walking them, see shared-table.ts).
 */

/** 'GMSH' — a buffer that does not start with it was not made by this module. */
export const MAGIC = 0x474d5348;
/** 2: entries carry a version word (per-thread read caches validate against it). */
export const FORMAT_VERSION = 2;

/** 64-byte cache line = 16 words. Fields written by different parties sit on different lines. */
export const LINE_WORDS = 16;

// Header line 0: read by every operation, written only when the table is replaced.
export const H_MAGIC = 0;
export const H_FORMAT = 1;
/** Word offset of the current table. Tables are never reused, so it doubles as the generation. */
export const H_TABLE = 2;
/** HalfSipHash key, two words: chosen at random by `create`, so hash values cannot be predicted. */
export const H_SEED0 = 3;
export const H_SEED1 = 4;
export const H_MAX_KEY_LENGTH = 5;
/** Value words per entry (2 per field: every field is one 8-byte slot). */
export const H_VALUE_WORDS = 6;
export const H_ENTRY_WORDS = 7;
export const H_MAX_THREADS = 8;
/** Hash of the value layout (int64, or the record's field names and types). */
export const H_LAYOUT_ID = 9;
export const H_MAX_KEYS = 10;

// Header line 1: the insertion stamp (64-bit at words 16-17), bumped by every insert.
export const H_INSERT_STAMP64 = 8; // BigInt64Array index of word 16

// Header line 2: the allocator.
export const H_ALLOC_LOCK = 32;
export const H_FREE_HEAD = 33;
/** First unallocated word of the heap. */
export const H_HEAP_TOP = 34;
/**
 * Entry version words are handed out from chunks of VERSION_CHUNK_WORDS words taken from the
 * heap: the chunk being used and how many of its words are handed out (VERSION_CHUNK_WORDS:
 * none left). Version words of 1,024 entries sit in 4 KiB, so the versions of 100,000 entries
 * take 400 KB — a size that stays in a core's L2 cache, unlike the entries themselves.
 */
export const H_VERSION_CHUNK = 35;
export const H_VERSION_USED = 36;
export const VERSION_CHUNK_WORDS = 1024;
/**
 * An entry whose version reaches this is retired: its key moves to a fresh entry (the
 * copy-on-write path records use) and it is never allocated again, so a version word only
 * grows and never wraps (an int64 entry retires after ~2^29 writes; 64-192 bytes are lost then).
 * Below 2^30 a version is a small integer (31-bit Smi) in V8, so a read cache holding it stays
 * unboxed.
 */
export const VERSION_RETIRE_AT = 2 ** 30 - 64;

// Header line 3: table growth and bookkeeping.
export const H_RESIZE_LOCK = 48;
export const H_GROWTHS = 49;
export const H_RECOVERIES = 50;
/** One past the highest owner slot ever claimed: `size` sums counts only up to here. */
export const H_OWNER_HIGH = 51;
/** The table being replaced while a growth is marking it moved; 0 otherwise (for recovery). */
export const H_PREVIOUS_TABLE = 52;
/** Locks recovery found held by a dead owner and released (or took over to settle a write). */
export const H_LOCKS_RECOVERED = 53;

export const HEADER_WORDS = 4 * LINE_WORDS;

/**
 * Owner slot: one per attached store instance (normally one per thread), one cache line, written
 * only by its owner (and by recovery once the owner is dead). Lock words hold the owner id
 * `incarnation << OWNER_SLOT_BITS | (slot + 1)`, so a lock names the thread holding it and a slot
 * reused by a new thread cannot be confused with its dead predecessor.
 */
export const OWNER_WORDS = LINE_WORDS;
export const O_STATE = 0;
export const O_INCARNATION = 1;
export const O_THREAD_ID = 2;
/** Net keys this slot inserted minus deleted (int32, wrapping; the sum over slots is `size`). */
export const O_COUNT = 3;
/** Write intent, set before a structural change under a bucket lock, cleared before unlocking. */
export const O_INTENT_BUCKET = 4;
/** Entry being allocated (insert, or the new copy of a record update). */
export const O_INTENT_ALLOC = 5;
/** Entry being unlinked and freed (delete, or the old copy of a record update). */
export const O_INTENT_FREE = 6;
/** O_COUNT before the change: recovery recomputes O_COUNT from it, so the fix is idempotent. */
export const O_INTENT_COUNT = 7;
/** Always 0: a waiter sleeps with Atomics.wait on it (nobody notifies; the timeout wakes it). */
export const O_SLEEP = 8;
/** Written by this owner's readers on weakly ordered CPUs as a load fence (see SharedTable.stable). */
export const O_FENCE = 9;

export const OWNER_FREE = 0;
export const OWNER_ALIVE = 1;
/** Reported dead (worker 'exit'); its locks and intents are waiting for recovery. */
export const OWNER_DEAD = 2;
export const OWNER_RECOVERING = 3;

/** Owner slots are numbered in 10 bits (at most 1,023 threads); the incarnation takes 21 more. */
export const OWNER_SLOT_BITS = 10;
export const MAX_THREADS_LIMIT = (1 << OWNER_SLOT_BITS) - 1;
export const INCARNATION_MASK = (1 << 21) - 1;

/**
 * Table: one descriptor line, then `buckets` root buckets. Immutable once published except
 * for the buckets' own words.
 */
export const T_MASK = 0;
export const T_BUCKETS = 1;
export const TABLE_HEADER_WORDS = LINE_WORDS;

/**
 * Bucket: one cache line. Six slots because 4 header words + 6 tags + 6 refs fill 16 words
 * exactly (xsync's MapOf makes the same cache-line trade with 5 pointer slots). A full bucket
 * chains to an overflow bucket of the same shape; only the root bucket's SEQ and LOCK are used.
 */
export const BUCKET_WORDS = LINE_WORDS;
export const B_SEQ = 0;
export const B_LOCK = 1;
export const B_NEXT = 2;
export const B_TAGS = 4;
export const B_REFS = 10;
export const SLOTS_PER_BUCKET = 6;

/**
 * Entries per root bucket before the table doubles. At a mean of 4 per 6-slot bucket (Poisson),
 * about 1 bucket in 9 overflows; right after doubling the mean is 2 and 1 in 200 does.
 */
export const GROW_AT_LOAD = 4;

/**
 * Entry: [key length, hash][value words][key, 2 UTF-16 units/word]...[version ref][insertion stamp (2 words)],
 * rounded up to whole cache lines. Every heap allocation is a multiple of a line, so entries
 * start on a line: a lookup of a key of up to 24 units (with an int64 value) touches exactly one
 * line of its entry, not two, and int64 fields are 8-byte aligned for BigInt64Array. The key and
 * value of a reachable entry never change, except an int64 value, which is one word overwritten
 * atomically in place. The stamp, read only by oldestKey, goes last; before it the word offset
 * of the entry's version word (in a version chunk), fixed for the entry's whole life.
 *
 * Version word: even while the entry is reachable and not being changed; odd while a writer
 * changes it (in-place int64 write: odd, store, even) and while it is unlinked or free. Every
 * change to the entry's reachability, key or value moves it, and it only grows (see
 * VERSION_RETIRE_AT), so an unchanged even version means an unchanged entry.
 */
export const E_KEY_LENGTH = 0;
export const E_HASH = 1;
export const E_VALUE = 2;
/** Words from the end of the entry to its insertion stamp. */
export const E_STAMP_FROM_END = 2;
/** Words from the end of the entry to the offset of its version word. */
export const E_VERSION_REF_FROM_END = 3;

export function entryWords(valueWords: number, maxKeyLength: number): number {
  const words = E_VALUE + valueWords + Math.ceil(maxKeyLength / 2) + E_VERSION_REF_FROM_END;
  return Math.ceil(words / LINE_WORDS) * LINE_WORDS;
}
