/**
 * The read ring: a single-producer, single-consumer queue of variable-length entries in one
 * SharedArrayBuffer, after pino's thread-stream. The producer is the thread that reads maps
 * (it writes fixed fields and the key's UTF-16 code units: no allocation, no encoding, no
 * syscall); the consumer is the drain worker, which encodes, chains and writes.
 *
 * Layout (all in one SharedArrayBuffer):
 *   control  Int32[CONTROL_INTS]   head, tail, doorbell and flags (see CTRL_*), in 3 cache lines
 *   stats    Float64[STATS_SLOTS]  seqs and counters published between the threads (see STAT_*)
 *   names    Int32[NAME_SLOTS * NAME_SLOT_WORDS]  map names by id: length, then UTF-16 units
 *   data     Int32[capacityWords]  entries, 8-byte aligned so f64 fields can sit in them
 *
 * Entry (words; f64 fields at even offsets), HEADER_WORDS fixed, then only what the record has:
 *   [0] length in words (even), or PAD_MARK: the rest of the buffer is unused, wrap to 0
 *   [1] op | outcome << 8 | flags << 16          [2] map id (or, FLAG_MAP_INLINE, its units) | reasonUnits << 16
 *   [3] key length in units (stored: at most MAX_KEY_UNITS) [4..5] seq f64   [6..7] performance.now() f64
 *   then [2 words] numeric key f64 (FLAG_KEY_NUMBER), then [6 words] trace id and span id (FLAG_TRACE),
 *   then text units: the map name (FLAG_MAP_INLINE only), reason, key; RANGE: bound lengths then bounds
 *
 * A map's name is written once into the names table (its first read), not into every entry:
 * a typical read entry is then 14 words (56 bytes, one cache line) instead of 26. The producer
 * writes a name before the entries that use it and publishes both with the same store of head,
 * so the worker always finds it. Names longer than NAME_MAX_UNITS, and any beyond NAME_SLOTS
 * distinct maps, travel inline in their entries as before.
 *
 * Invariants: 0 <= head, tail < capacityWords; head == tail means empty; the producer never lets
 * head catch up with tail (one word stays free), so full and empty are told apart without a
 * count. Only the producer writes head and entry words in [head, ...); only the consumer writes
 * tail. The producer publishes entries by a seq-cst store of head after writing their words, and
 * the consumer releases them by a seq-cst store of tail after reading them: the Atomics order is
 * the only synchronisation, no lock is taken.
 *
 * Publication is batched: the producer stores head once per PUBLISH_EVERY entries, and at the
 * end of the current task (a microtask) for the rest, and before anyone waits on the worker
 * (flush, stop, a full ring). Entries written but not yet published are, for the worker and for
 * a crash, the same as entries not yet drained: lost in a crash, and named by the AUDIT_GAP the
 * next start writes (seqs stay contiguous).
 */
import { renderKey } from './event.ts';

/**
 * Control words sit in three 64-byte cache lines by who writes them, so the reading thread's
 * store of `head` on every record does not bounce the line the worker writes (`tail`, flags)
 * between the two cores: line 0 is the producer's, line 1 the worker's, line 2 the direct-write
 * path's.
 */
export const CONTROL_INTS = 48;
export const STATS_SLOTS = 32;

export const CTRL_HEAD = 0;
/** Bumped by the producer to wake a sleeping worker (Atomics.notify). */
export const CTRL_DOORBELL = 1;
export const CTRL_TAIL = 16;
/**
 * WORKER_NAPPING while the worker sleeps on the doorbell until its next commit;
 * WORKER_IDLE while it sleeps with everything committed (see WORKER_IDLE); 0 while awake.
 */
export const CTRL_WORKER_SLEEPING = 17;
/** CTRL_WORKER_SLEEPING: asleep until the next commit (at most fsyncIntervalMs); woken early only for a big batch. */
export const WORKER_NAPPING = 1;
/**
 * CTRL_WORKER_SLEEPING: asleep with nothing left to drain, seal or fsync, for up to
 * IDLE_SLEEP_MS. Why: an idle recorder that woke every fsyncIntervalMs to find nothing to commit
 * took ~1% of a core per process for nothing (measured: ~100 wakeups and ~10 ms of CPU a
 * second). Whoever gives the worker work while it is idle wakes it at once: the first read
 * published, the first write appended, a flush, a stop. So the first write after a quiet spell
 * is fsynced at once rather than up to an interval later; no work ever waits for the timeout.
 */
export const WORKER_IDLE = 2;
/** The longest idle sleep: a bound, should a wake-up ever be missed, not a schedule. */
export const IDLE_SLEEP_MS = 1000;
/** 1 while the producer waits for free space; the worker then notifies on CTRL_TAIL. */
export const CTRL_PRODUCER_WAITING = 18;
/** Bumped by flush(): commit (seal + fsync) now instead of at the next interval. */
export const CTRL_FLUSH_REQUESTS = 19;
/** 1: drain everything, seal, fsync and exit. */
export const CTRL_STOP = 20;
/** Bumped by the worker after every commit (the synced seqs below are then current). */
export const CTRL_SYNC_VERSION = 21;
/** Set by the worker while its writes fail (an errno-ish code), 0 when healthy. */
export const CTRL_WORKER_FAILING = 22;
/** Current segment number (written by the worker at rotation). */
export const CTRL_SEGMENT = 23;
/** 1 while the main thread has flush() callers waiting for a commit message. */
export const CTRL_FLUSH_WAITERS = 24;
/** Test hook: 1 holds the worker (it drains nothing) to exercise a full ring and crash loss. */
export const CTRL_PAUSED = 25;
/** Test hook: the worker's answer to CTRL_PAUSED, set at the start of a turn that drains nothing. */
export const CTRL_PAUSED_ACK = 27;
/**
 * Write journal (option writeJournal): where the worker will read the next frame; it moves it
 * only once the spool holds the frames before it. 0 without a journal.
 */
export const CTRL_JOURNAL_TAIL = 26;
/** 1 while the caller's thread writes a record to the current segment (rotation waits for 0). */
export const CTRL_IN_WRITE = 32;
/**
 * The segment number the caller's thread appends to (through a descriptor of its own, opened by
 * path when this changes); the worker moves it on at rotation, the recorder sets it at start and
 * restart, and to -1 once the worker is known dead. A number, not a shared descriptor: a
 * descriptor another thread may close (a worker's are closed when it exits) could be reused by
 * any open() in the process before this thread saw it go, and records written to another file.
 */
export const CTRL_APPEND_SEGMENT = 33;
/** Write journal: where the caller's thread frames the next record (the worker reads up to it). */
export const CTRL_JOURNAL_HEAD = 34;
/**
 * A write to the spool stopped partway (a full disk): the file ends inside a record, and until
 * its writer appends the rest nothing else may be appended, or the record would be split by a
 * seal or another record. WRITE_TORN_BY_CALLER: the caller's thread holds the rest in its backlog
 * (the worker neither writes, seals nor rotates meanwhile); WRITE_TORN_BY_WORKER: the worker's
 * batch is cut short (the caller's thread sends its writes to the backlog meanwhile). Set by the
 * writer right after the short write, cleared once the record is whole.
 */
export const CTRL_WRITE_TORN = 35;
export const WRITE_TORN_BY_CALLER = 1;
export const WRITE_TORN_BY_WORKER = 2;

/**
 * The coarse clock word (alone in its 64-byte cache line: slots 16-23): `performance.now()` of the
 * recording thread, kept fresh by the drain worker while it encodes (at least every
 * CLOCK_TICK_ENTRIES entries), 0 whenever it is doing anything else (writing, sealing, fsync,
 * sleeping). Reads take their timestamp from it instead of reading the clock themselves; see
 * `RingProducer.stamp`.
 */
export const STAT_CLOCK = 16;
/** The drain worker refreshes STAT_CLOCK at least every this many entries it encodes (~64 µs at 1M/s). */
export const CLOCK_TICK_ENTRIES = 64;
/** The producer reads the real clock itself at least every this many reads, to catch a stale word. */
export const CLOCK_CHECK_EVERY = 16;
/** A clock word older than this (ms) when checked is not trusted again: the worker was descheduled. */
export const CLOCK_MAX_LAG_MS = 1;
/**
 * The producer publishes head at least every this many entries (32 entries of a typical read are
 * ~3 KiB, ~50 cache lines): the worker then reads lines the producer has finished with, instead of
 * pulling the line being written and the head word on every record.
 */
export const PUBLISH_EVERY = 32;

/** Seq of the last write-stream record the caller's thread handed to write(2). */
export const STAT_WRITES_DONE = 0;
/** Seq of the last read-stream record the worker handed to write(2). */
export const STAT_READS_DONE = 1;
/** At the last commit: every read-stream record with seq <= this is sealed and fsynced. */
export const STAT_SYNCED_READS = 2;
/** At the last commit: every write-stream record with seq <= this is sealed and fsynced. */
export const STAT_SYNCED_WRITES = 3;
export const STAT_EVENTS_DRAINED = 4;
export const STAT_BYTES_WRITTEN = 5;
export const STAT_SEALS = 6;
export const STAT_FSYNCS = 7;
export const STAT_FSYNC_SECONDS = 8;
export const STAT_WORKER_WRITE_ERRORS = 9;
export const STAT_ROTATIONS = 10;
export const STAT_SEGMENT_BYTES = 11;
/** Times the worker went to sleep idle (see WORKER_IDLE). */
export const STAT_IDLE_SLEEPS = 12;

export const PAD_MARK = -1;
export const HEADER_WORDS = 8;

export const OP_LOAD = 1;
export const OP_RANGE = 2;

export const FLAG_TRACE = 1;
export const FLAG_KEY_NUMBER = 2;
export const FLAG_KEY_PRESENT = 4;
/** The key was longer than MAX_KEY_UNITS; [3] holds MAX_KEY_UNITS and the record carries the full length. */
export const FLAG_KEY_CUT = 8;
export const FLAG_BOUNDS = 16;
export const FLAG_INCLUSIVE = 32;
export const FLAG_START = 64;
export const FLAG_END = 128;
export const FLAG_PREFIX = 256;
export const FLAG_REASON = 512;
/** The map name is in the entry's text (the names table had no room for it), not in the table. */
export const FLAG_MAP_INLINE = 1024;

/** Distinct map names the table holds; more travel inline. */
export const NAME_SLOTS = 256;
/** Longest name the table holds, in UTF-16 units (a GovernedMap name is at most 64); longer travel inline. */
export const NAME_MAX_UNITS = 64;
/** Words per table slot: the length, then NAME_MAX_UNITS units. */
export const NAME_SLOT_WORDS = 1 + NAME_MAX_UNITS / 2;

/** Longest key (UTF-16 units) a read record carries; longer keys are cut and flagged. */
export const MAX_KEY_UNITS = 1024;
/** Longest map name / reason / range bound the ring carries, in UTF-16 units. */
export const MAX_TEXT_UNITS = 1024;

export const OUTCOME_CODES = { ok: 0, miss: 1, rejected: 2, error: 3 } as const;

export interface RingViews {
  readonly sab: SharedArrayBuffer;
  readonly ctrl: Int32Array;
  readonly stats: Float64Array;
  /** The map-name table: slot i at word i * NAME_SLOT_WORDS (length), its units right after. */
  readonly names: Int32Array;
  readonly nameUnits: Uint16Array;
  readonly words: Int32Array;
  readonly f64: Float64Array;
  readonly units: Uint16Array;
  readonly capacityWords: number;
}

const CONTROL_BYTES = CONTROL_INTS * 4;
const STATS_BYTES = STATS_SLOTS * 8;
const NAMES_BYTES = NAME_SLOTS * NAME_SLOT_WORDS * 4;
const DATA_OFFSET = CONTROL_BYTES + STATS_BYTES + NAMES_BYTES;

export function createRing(capacityBytes: number): RingViews {
  const capacityWords = Math.floor(capacityBytes / 8) * 2;
  const ring = viewRing(new SharedArrayBuffer(DATA_OFFSET + capacityWords * 4));
  // Touch every page now: the first write to a fresh page faults into the kernel (costlier than
  // a whole record on some virtual machines), and that must not land on the reads' path.
  for (let w = 0; w < capacityWords; w += 1024) ring.words[w] = 0;
  return ring;
}

export function viewRing(sab: SharedArrayBuffer): RingViews {
  const capacityWords = (sab.byteLength - DATA_OFFSET) / 4;
  return {
    sab,
    ctrl: new Int32Array(sab, 0, CONTROL_INTS),
    stats: new Float64Array(sab, CONTROL_BYTES, STATS_SLOTS),
    names: new Int32Array(sab, CONTROL_BYTES + STATS_BYTES, NAMES_BYTES / 4),
    nameUnits: new Uint16Array(sab, CONTROL_BYTES + STATS_BYTES, NAMES_BYTES / 2),
    words: new Int32Array(sab, DATA_OFFSET, capacityWords),
    f64: new Float64Array(sab, DATA_OFFSET, capacityWords / 2),
    units: new Uint16Array(sab, DATA_OFFSET, capacityWords * 2),
    capacityWords,
  };
}

/** Bounds of a RANGE, as the map reports them. */
export interface BoundsLike {
  readonly start: string | null;
  readonly end: string | null;
  readonly inclusive: boolean;
  readonly prefix: string | null;
}

/**
 * The producer side, used on the caller's thread. `tryPublish` returns false when the entry
 * does not fit; the recorder then applies its full-ring policy.
 */
export class RingProducer {
  readonly #ring: RingViews;
  readonly #ctrl: Int32Array;
  readonly #words: Int32Array;
  readonly #f64: Float64Array;
  readonly #units: Uint16Array;
  readonly #cap: number;
  /** Wake the sleeping worker once this many words are queued (an eighth of the ring). */
  readonly #wakeWords: number;
  readonly #stats: Float64Array;
  /** Our own head (only we write it) and the last tail we read: reading shared state costs. */
  #head = 0;
  #tail = 0;
  /** Entries written since head was last published. */
  #unpublished = 0;
  #publishQueued = false;
  readonly #publishTask = (): void => {
    this.#publishQueued = false;
    this.publish();
  };
  /**
   * Clock state, in a typed array, not fields: a fractional number crossing a call that is not
   * inlined is boxed, which would allocate on every read.
   *   [0] the time of the record being published (ms, this thread's performance.now())
   *   [1] the latest timestamp handed out (by a read or a write): timestamps never go below it
   *   [2] a clock word found stale: not used again (the worker has not ticked since)
   */
  readonly #clock = new Float64Array(3);
  /** Reads left until the producer reads the real clock itself (see `stamp`). */
  #checkIn = 0;
  /** The last map name seen and its table id: a run of reads of one map skips the lookup. */
  #lastMap: string | null = null;
  #lastMapId = -1;
  readonly #mapIds = new Map<string, number>();

  constructor(ring: RingViews) {
    this.#ring = ring;
    this.#ctrl = ring.ctrl;
    this.#words = ring.words;
    this.#f64 = ring.f64;
    this.#units = ring.units;
    this.#stats = ring.stats;
    this.#cap = ring.capacityWords;
    this.#wakeWords = ring.capacityWords >> 3;
    this.#head = Atomics.load(ring.ctrl, CTRL_HEAD);
    this.#tail = Atomics.load(ring.ctrl, CTRL_TAIL);
  }

  get ring(): RingViews {
    return this.#ring;
  }

  /** Words queued and not yet drained. */
  get queuedWords(): number {
    const head = Atomics.load(this.#ctrl, CTRL_HEAD);
    const tail = Atomics.load(this.#ctrl, CTRL_TAIL);
    return head >= tail ? head - tail : this.#cap - tail + head;
  }

  /**
   * Takes the time of the next read record (see `tryPublish`). A clock read costs ~45 ns here,
   * as much as the rest of the read path, so a read takes the clock word the drain worker keeps
   * fresh while it drains (STAT_CLOCK) when there is one, and reads the clock itself when the
   * worker is not draining (word 0), every CLOCK_CHECK_EVERY reads, and after finding the word
   * more than CLOCK_MAX_LAG_MS old (until the worker ticks again). A timestamp is therefore never
   * later than the read, never below an earlier record's of this recorder (the max is kept), and
   * at most CLOCK_MAX_LAG_MS earlier than the read -- except for up to CLOCK_CHECK_EVERY - 1 reads
   * after the worker is descheduled mid-drain. The seq, not the timestamp, orders records exactly.
   */
  stamp(): void {
    const clock = this.#clock;
    let t = this.#stats[STAT_CLOCK]!;
    if (t === 0 || t === clock[2] || --this.#checkIn <= 0) {
      this.#stampFromClock();
      t = clock[0]!;
    }
    if (t < clock[1]!) t = clock[1]!;
    clock[1] = t;
    clock[0] = t;
  }

  /**
   * `stamp` when it reads the clock itself: leaves the reading in `clock[0]`. A method of its
   * own, taking and returning nothing, so that the clock's double never crosses a call:
   * `performance.now()` is a JS wrapper that V8 may decline to inline at a site it runs rarely
   * (here every 16th read), and a double returned by a call that is not inlined is boxed -- an
   * allocation per read. Measured with it inline in `stamp`: in 3 of 13 fresh processes every
   * such read allocated (26-53 young GCs per 2 million reads), depending on the order in which
   * the JIT compiled the functions. Here, either this method is inlined into a caller that runs
   * it often (and the wrapper with it), or it is compiled on its own, where the wrapper runs on
   * every call and is inlined.
   */
  #stampFromClock(): void {
    const clock = this.#clock;
    const word = this.#stats[STAT_CLOCK]!;
    const exact = performance.now();
    if (word !== 0 && exact - word > CLOCK_MAX_LAG_MS) clock[2] = word;
    this.#checkIn = CLOCK_CHECK_EVERY;
    clock[0] = exact;
  }

  /**
   * The timestamp of a record written on this thread now (the write path): the real clock, never
   * below a timestamp handed out before. ms, this thread's performance.now() scale.
   */
  exactStamp(): number {
    const clock = this.#clock;
    let t = performance.now();
    if (t < clock[1]!) t = clock[1]!;
    clock[1] = t;
    return t;
  }

  /**
   * Publishes one read record, timed by the last `stamp()`. `trace` holds 6 words (trace id
   * then span id) when `hasTrace`. Strings are copied as UTF-16 units; nothing here allocates
   * for string or number keys.
   */
  tryPublish(seq: number, op: number, outcome: number, map: string, key: unknown, reason: string | null, bounds: BoundsLike | null, hasTrace: boolean, trace: Int32Array): boolean {
    let keyText: string | null = null;
    let keyUnits = 0;
    let flags = 0;
    if (typeof key === 'string') {
      keyText = key;
      flags |= FLAG_KEY_PRESENT;
    } else if (typeof key === 'number') {
      flags |= FLAG_KEY_PRESENT | FLAG_KEY_NUMBER;
    } else if (key !== undefined) {
      // Not allocation-free (bigint and object keys are rendered): documented in docs/audit.md.
      keyText = renderKey(key);
      flags |= FLAG_KEY_PRESENT;
    }
    if (keyText !== null) {
      keyUnits = keyText.length;
      if (keyUnits > MAX_KEY_UNITS) {
        keyUnits = MAX_KEY_UNITS;
        flags |= FLAG_KEY_CUT;
      }
    }
    const mapId = map === this.#lastMap ? this.#lastMapId : this.#nameId(map);
    if (mapId < 0) flags |= FLAG_MAP_INLINE;
    const mapUnits = mapId >= 0 ? 0 : map.length > MAX_TEXT_UNITS ? MAX_TEXT_UNITS : map.length;
    let reasonUnits = 0;
    if (reason !== null) {
      flags |= FLAG_REASON;
      reasonUnits = reason.length > MAX_TEXT_UNITS ? MAX_TEXT_UNITS : reason.length;
    }
    let boundUnits = 0;
    if (bounds !== null) {
      flags |= FLAG_BOUNDS;
      if (bounds.inclusive) flags |= FLAG_INCLUSIVE;
      if (bounds.start !== null) {
        flags |= FLAG_START;
        boundUnits += Math.min(bounds.start.length, MAX_TEXT_UNITS);
      }
      if (bounds.end !== null) {
        flags |= FLAG_END;
        boundUnits += Math.min(bounds.end.length, MAX_TEXT_UNITS);
      }
      if (bounds.prefix !== null) {
        flags |= FLAG_PREFIX;
        boundUnits += Math.min(bounds.prefix.length, MAX_TEXT_UNITS);
      }
    }
    const textUnits = mapUnits + reasonUnits + keyUnits + boundUnits + (bounds !== null ? 4 : 0);
    const numberAt = (flags & FLAG_KEY_NUMBER) !== 0 ? HEADER_WORDS : 0;
    const traceAt = HEADER_WORDS + (numberAt !== 0 ? 2 : 0);
    const textAt = traceAt + (hasTrace ? 6 : 0);
    let length = textAt + ((textUnits + 1) >> 1);
    length += length & 1;

    const cap = this.#cap;
    const words = this.#words;
    const head = this.#reserve(length);
    if (head < 0) return false;

    const f64 = this.#f64;
    const at = head;
    if (hasTrace) flags |= FLAG_TRACE;
    words[at + 1] = op | (outcome << 8) | (flags << 16);
    words[at + 2] = (mapId >= 0 ? mapId : mapUnits) | (reasonUnits << 16);
    words[at + 3] = keyText === null ? 0 : keyText.length;
    f64[(at + 4) >> 1] = seq;
    f64[(at + 6) >> 1] = this.#clock[0]!;
    if (numberAt !== 0) f64[(at + numberAt) >> 1] = key as number;
    if (hasTrace) {
      const t = at + traceAt;
      words[t] = trace[0]!;
      words[t + 1] = trace[1]!;
      words[t + 2] = trace[2]!;
      words[t + 3] = trace[3]!;
      words[t + 4] = trace[4]!;
      words[t + 5] = trace[5]!;
    }
    const units = this.#units;
    let u = (at + textAt) << 1;
    for (let i = 0; i < mapUnits; i++) units[u++] = map.charCodeAt(i);
    if (reason !== null) for (let i = 0; i < reasonUnits; i++) units[u++] = reason.charCodeAt(i);
    if (keyText !== null) for (let i = 0; i < keyUnits; i++) units[u++] = keyText.charCodeAt(i);
    if (bounds !== null) {
      const s = bounds.start;
      const e = bounds.end;
      const p = bounds.prefix;
      const sl = s === null ? 0 : Math.min(s.length, MAX_TEXT_UNITS);
      const el = e === null ? 0 : Math.min(e.length, MAX_TEXT_UNITS);
      const pl = p === null ? 0 : Math.min(p.length, MAX_TEXT_UNITS);
      units[u++] = sl;
      units[u++] = el;
      units[u++] = pl;
      units[u++] = 0;
      for (let i = 0; i < sl; i++) units[u++] = s!.charCodeAt(i);
      for (let i = 0; i < el; i++) units[u++] = e!.charCodeAt(i);
      for (let i = 0; i < pl; i++) units[u++] = p!.charCodeAt(i);
    }
    words[at] = length;
    this.#head = at + length === cap ? 0 : at + length;
    if (++this.#unpublished >= PUBLISH_EVERY) this.publish();
    else if (!this.#publishQueued) {
      // The rest of a burst is published at the end of the current task. One microtask per task
      // that reads, not per read.
      this.#publishQueued = true;
      queueMicrotask(this.#publishTask);
    }
    return true;
  }

  /**
   * The table id of map name `map`, writing it into the table on first sight; -1 when it must
   * travel inline (too long, or the table is full). Remembered as the last map seen.
   */
  #nameId(map: string): number {
    let id = this.#mapIds.get(map);
    if (id === undefined) {
      // Inline names are not remembered: the table (and this index) stay bounded by NAME_SLOTS.
      id = map.length <= NAME_MAX_UNITS && this.#mapIds.size < NAME_SLOTS ? this.#mapIds.size : -1;
      if (id >= 0) {
        // Before any entry that uses it is published (publish's store of head orders them).
        const slot = id * NAME_SLOT_WORDS;
        const nameUnits = this.#ring.nameUnits;
        let u = (slot + 1) << 1;
        for (let i = 0; i < map.length; i++) nameUnits[u++] = map.charCodeAt(i);
        this.#ring.names[slot] = map.length;
        this.#mapIds.set(map, id);
      }
    }
    this.#lastMap = map;
    this.#lastMapId = id;
    return id;
  }

  /** True when at least a quarter of the ring is free (re-reads the shared tail). */
  hasRoom(): boolean {
    this.#tail = Atomics.load(this.#ctrl, CTRL_TAIL);
    const head = this.#head;
    const queued = head >= this.#tail ? head - this.#tail : this.#cap - this.#tail + head;
    return this.#cap - queued >= this.#cap >> 2;
  }

  /** Rings the doorbell now (flush, stop, or waiting for space), after publishing. */
  wake(): void {
    this.publish();
    Atomics.add(this.#ctrl, CTRL_DOORBELL, 1);
    Atomics.notify(this.#ctrl, CTRL_DOORBELL);
  }

  /**
   * Blocks the calling thread until the worker frees space or `timeoutMs` passes. Returns false
   * on timeout. Used by the `wait` full-ring policy only.
   */
  waitForSpace(timeoutMs: number): boolean {
    const ctrl = this.#ctrl;
    this.publish();
    const tail = Atomics.load(ctrl, CTRL_TAIL);
    Atomics.store(ctrl, CTRL_PRODUCER_WAITING, 1);
    this.wake();
    const result = Atomics.wait(ctrl, CTRL_TAIL, tail, timeoutMs);
    Atomics.store(ctrl, CTRL_PRODUCER_WAITING, 0);
    return result !== 'timed-out' || Atomics.load(ctrl, CTRL_TAIL) !== tail;
  }

  /**
   * Where an entry of `length` words goes, or -1 when it does not fit. Checked against the tail
   * last read; the shared tail is read again only when that says full (the worker only ever
   * frees space, so a stale tail can only under-estimate it).
   */
  #reserve(length: number): number {
    let fit = this.#fit(length, this.#tail);
    if (fit < 0) {
      this.#tail = Atomics.load(this.#ctrl, CTRL_TAIL);
      fit = this.#fit(length, this.#tail);
    }
    return fit;
  }

  #fit(length: number, tail: number): number {
    const head = this.#head;
    const cap = this.#cap;
    if (head >= tail) {
      if (head + length < cap || (head + length === cap && tail !== 0)) return head;
      // Does not fit before the end: it must fit at the start, leaving one word before tail.
      if (length >= tail) return -1;
      this.#words[head] = PAD_MARK;
      this.#head = 0;
      return 0;
    }
    return head + length < tail ? head : -1;
  }

  /** Makes every entry written so far visible to the worker (and wakes it for a big batch). */
  publish(): void {
    if (this.#unpublished === 0) return;
    this.#unpublished = 0;
    const next = this.#head;
    Atomics.store(this.#ctrl, CTRL_HEAD, next);
    // A notify is a syscall (~1 µs); ring only when a batch is worth it and the worker sleeps.
    // An idle worker is woken by the first entry (see WORKER_IDLE): this load after the store of
    // head pairs with the worker's store of WORKER_IDLE before its last look at head.
    const sleeping = Atomics.load(this.#ctrl, CTRL_WORKER_SLEEPING);
    if (sleeping === WORKER_IDLE) {
      this.wake();
      return;
    }
    if (sleeping !== WORKER_NAPPING) return;
    const tail = this.#tail;
    const queued = next >= tail ? next - tail : this.#cap - tail + next;
    if (queued >= this.#wakeWords) {
      this.#tail = Atomics.load(this.#ctrl, CTRL_TAIL);
      const fresh = next >= this.#tail ? next - this.#tail : this.#cap - this.#tail + next;
      if (fresh >= this.#wakeWords) this.wake();
    }
  }

  /** Wakes the worker if it sleeps idle (see WORKER_IDLE): the write paths call it after publishing a record. */
  wakeIfIdle(): void {
    if (Atomics.load(this.#ctrl, CTRL_WORKER_SLEEPING) === WORKER_IDLE) this.wake();
  }
}
