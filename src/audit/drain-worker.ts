/**
 * The drain worker: the only thread that writes read records, seals the chain and fsyncs.
 *
 * Each turn it drains the ring into a batch buffer (encoding records as JSON lines), appends
 * the batch to the current segment, and when enough unsealed bytes have piled up (or on
 * commit) seals them: it reads the bytes [sealedTo, end of file) back from the file, hashes them
 * after the previous seal's hash, and appends a SEAL line. A commit (every `fsyncIntervalMs`, or
 * at once when flush() asks) is a seal followed by fsync; it then publishes how far each
 * stream is durable, which resolves flush() and the `updateAsync` calls waiting on it.
 *
 * Invariants it keeps:
 * - read records reach the file in seq order (it is their only writer);
 * - a seal covers exactly the bytes the OS held at [from, to), in file order, whoever wrote
 *   them; consecutive seals of a segment cover consecutive ranges; the first seal of a segment
 *   starts at byte 0 and carries on from the previous segment's final seal;
 * - a rotated segment ends with its final seal: the caller's thread has been moved to the new
 *   file (CTRL_APPEND_SEGMENT) and seen out of any write in progress (CTRL_IN_WRITE) before it is
 *   sealed. This thread's descriptors are its own: the caller's thread opens the segment itself,
 *   so nothing it writes through can be closed (at rotation or when this thread exits) under it.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { hrtimeOffsetMs } from './clock.ts';
import { journalBytesBetween, JournalReader } from './journal.ts';
import { NapPolicy } from './nap-policy.ts';
import type { ClockAnchor } from './clock.ts';
import { ByteWriter, EncodeContext, encodeIdentity, encodeRingEntry, maxEncodedBytes } from './encoder.ts';
import {
  CTRL_APPEND_SEGMENT,
  CTRL_FLUSH_REQUESTS,
  CTRL_FLUSH_WAITERS,
  CTRL_HEAD,
  CTRL_IN_WRITE,
  CTRL_JOURNAL_HEAD,
  CTRL_JOURNAL_TAIL,
  CTRL_PAUSED,
  CTRL_PAUSED_ACK,
  CTRL_PRODUCER_WAITING,
  CTRL_SEGMENT,
  CTRL_STOP,
  CTRL_SYNC_VERSION,
  CTRL_TAIL,
  CTRL_WORKER_FAILING,
  CTRL_WORKER_SLEEPING,
  CTRL_WRITE_TORN,
  IDLE_SLEEP_MS,
  WORKER_IDLE,
  WORKER_NAPPING,
  CTRL_DOORBELL,
  CLOCK_TICK_ENTRIES,
  PAD_MARK,
  STAT_BYTES_WRITTEN,
  STAT_CLOCK,
  STAT_EVENTS_DRAINED,
  STAT_FSYNCS,
  STAT_FSYNC_SECONDS,
  STAT_READS_DONE,
  STAT_ROTATIONS,
  STAT_SEALS,
  STAT_SEGMENT_BYTES,
  STAT_SYNCED_READS,
  STAT_SYNCED_WRITES,
  STAT_WORKER_WRITE_ERRORS,
  STAT_IDLE_SLEEPS,
  STAT_WRITES_DONE,
  viewRing,
  WRITE_TORN_BY_CALLER,
  WRITE_TORN_BY_WORKER,
} from './ring.ts';
import { ChainHasher, encodeHead, fsyncDirectory, hashRange, HEAD_FILE, segmentHeaderLine, segmentName, sealLine, writeFully } from './spool.ts';

export interface ChainState {
  segment: number;
  /** Number of the last seal written (0: none yet). */
  seal: number;
  /** Hash of the last seal (GENESIS_HASH before the first). */
  prev: string;
  /** End of the range the last seal of this segment covers (0 in a new segment). */
  sealedTo: number;
  lastSealReads: number;
  lastSealWrites: number;
}

export interface DrainWorkerData {
  readonly sab: SharedArrayBuffer;
  readonly dir: string;
  readonly anchor: ClockAnchor;
  /** The recording thread's `hrtimeOffsetMs()`: puts this thread's clock on its scale. */
  readonly recorderClockOffsetMs: number;
  readonly actor: string;
  readonly origin: string;
  readonly key: Uint8Array | null;
  readonly chain: ChainState;
  /** The segment to append to; the worker opens it (and every later one) and owns the fds. */
  readonly segmentPath: string;
  readonly readsDone: number;
  readonly fsyncIntervalMs: number;
  readonly sealBytes: number;
  readonly maxSegmentBytes: number;
  /** The write journal to move write records from (option writeJournal), or null. */
  readonly journalPath: string | null;
}

export type DrainWorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'synced' }
  | { readonly type: 'failing'; readonly code: string; readonly message: string }
  | { readonly type: 'recovered' }
  | { readonly type: 'stopped'; readonly chain: ChainState }
  | { readonly type: 'fatal'; readonly message: string };

/** How many entries to drain before looking at the clock, the stop flag and the seal size. */
const DRAIN_TURN = 4096;
/** Release ring space to a waiting producer at least this often (entries). */
const RELEASE_EVERY = 64;
/** How long one nap of a caught-up worker lasts while reads flow fast (see NapPolicy). */
const CLOCK_NAP_MS = 0.25;
/** Journal frames are moved at once when this many bytes of them wait (else once per commit). */
const JOURNAL_DRAIN_BYTES = 64 << 10;
/** After a failed write, wait this long before trying again (ms). */
const RETRY_AFTER_MS = 100;

function run(data: DrainWorkerData): void {
  const port = parentPort!;
  const ring = viewRing(data.sab);
  const { ctrl, stats, words } = ring;
  const cap = ring.capacityWords;
  const hasher = new ChainHasher(data.key);
  const ctx = new EncodeContext(data.anchor, encodeIdentity(data.actor, data.origin));
  const batch = new ByteWriter(Math.max(data.sealBytes * 2, 1 << 20));
  const flushAt = Math.max(4096, Math.min(data.sealBytes, batch.buf.length >> 1));
  const scratch = Buffer.allocUnsafe(1 << 20);
  const sleepCell = new Int32Array(new SharedArrayBuffer(4));
  // Not truncated: HEAD is rewritten in place (fixed size), and until this session's first commit
  // the previous one still names a seal that is in the log. Truncated, a verify running meanwhile
  // read an empty HEAD ("unreadable").
  const headFd = openSync(join(data.dir, HEAD_FILE), existsSync(join(data.dir, HEAD_FILE)) ? 'r+' : 'w');
  const chain: ChainState = { ...data.chain };
  // This thread's performance.now() plus this is the recording thread's performance.now().
  const toRecorderClock = hrtimeOffsetMs() - data.recorderClockOffsetMs;
  /** Refreshes the coarse clock word the reads take their timestamps from (see RingProducer.stamp). */
  const tick = (): void => {
    stats[STAT_CLOCK] = performance.now() + toRecorderClock;
  };
  /**
   * Before anything that can take long (fsync, rotation, a long sleep, a failing disk): reads then
   * read the clock themselves. A batch write or a seal (bounded: tens of µs for sealBytes) keeps
   * the word; the readers' own check (CLOCK_MAX_LAG_MS) catches a worker descheduled meanwhile.
   */
  const stopTicking = (): void => {
    stats[STAT_CLOCK] = 0;
  };

  // Read and append: the bytes are read back to seal them.
  // The caller's thread appends to the same file through its own descriptor (the recorder
  // published this segment in CTRL_APPEND_SEGMENT before starting this thread).
  let fd = openSync(data.segmentPath, 'a+');
  let readsDone = data.readsDone;
  let batchLastSeq = readsDone;
  let batchWritten = 0;
  let batchEvents = 0;
  let failing = false;
  let lastCommit = performance.now();
  let seenFlush = Atomics.load(ctrl, CTRL_FLUSH_REQUESTS);
  let unsyncedSeal = false;
  // The write journal: frames are read from `journalRead`; the batch then holds the frames up to
  // `batchJournalEnd` (last seq `batchWriteSeq`); once it is written they are in the spool up to
  // `journalMoved`, and releaseJournal() records that in the journal's header and only then
  // gives the space back to the caller's thread (CTRL_JOURNAL_TAIL). Never the other way round:
  // recovery scans from the recorded tail, and frames overwritten behind a stale one would break
  // the scan.
  const journal = data.journalPath === null ? null : new JournalReader(data.journalPath);
  let journalRead = Atomics.load(ctrl, CTRL_JOURNAL_TAIL);
  let journalReleased = journalRead;
  let journalMoved = -1;
  let journalMovedSeq = 0;
  let batchJournalEnd = -1;
  let batchWriteSeq = 0;

  const sleep = (ms: number): void => {
    Atomics.wait(sleepCell, 0, 0, ms);
  };
  const naps = new NapPolicy(NapPolicy.calibrate(CLOCK_NAP_MS, sleep), performance.now());

  const fail = (error: unknown): void => {
    stats[STAT_WORKER_WRITE_ERRORS]!++;
    if (!failing) {
      failing = true;
      Atomics.store(ctrl, CTRL_WORKER_FAILING, 1);
      const e = error as NodeJS.ErrnoException;
      port.postMessage({ type: 'failing', code: e.code ?? 'EIO', message: e.message ?? String(error) } satisfies DrainWorkerMessage);
    }
  };

  const recovered = (): void => {
    if (!failing) return;
    failing = false;
    Atomics.store(ctrl, CTRL_WORKER_FAILING, 0);
    port.postMessage({ type: 'recovered' } satisfies DrainWorkerMessage);
  };

  /**
   * The caller's thread's last write stopped partway (CTRL_WRITE_TORN): the file ends inside its
   * record until the caller's backlog retry appends the rest. Meanwhile nothing may be appended
   * (no batch, no seal, no rotation): it would land in the middle of that record.
   */
  const heldByCaller = (): boolean => (Atomics.load(ctrl, CTRL_WRITE_TORN) & WRITE_TORN_BY_CALLER) !== 0;

  /** Appends the batch; false (batch kept, to be retried) when the file refuses it or is held. */
  const writeBatch = (): boolean => {
    if (batch.pos === 0) return true;
    if (heldByCaller()) return false;
    try {
      // A short write is continued from where it stopped, so a retry never repeats bytes; while
      // the file ends inside the batch, the caller's thread appends nothing (WRITE_TORN_BY_WORKER).
      while (batchWritten < batch.pos) {
        batchWritten += writeSync(fd, batch.buf, batchWritten, batch.pos - batchWritten);
        if (batchWritten < batch.pos) Atomics.or(ctrl, CTRL_WRITE_TORN, WRITE_TORN_BY_WORKER);
      }
    } catch (error) {
      fail(error);
      return false;
    }
    if ((Atomics.load(ctrl, CTRL_WRITE_TORN) & WRITE_TORN_BY_WORKER) !== 0) Atomics.and(ctrl, CTRL_WRITE_TORN, ~WRITE_TORN_BY_WORKER);
    stats[STAT_BYTES_WRITTEN]! += batch.pos;
    stats[STAT_EVENTS_DRAINED]! += batchEvents;
    readsDone = batchLastSeq;
    stats[STAT_READS_DONE] = readsDone;
    if (batchJournalEnd !== -1) {
      // The spool holds these frames now (seals may cover them).
      stats[STAT_WRITES_DONE] = batchWriteSeq;
      journalMoved = batchJournalEnd;
      journalMovedSeq = batchWriteSeq;
      batchJournalEnd = -1;
      // Released at each commit (one pwrite of the header per commit, not per batch), or now
      // when an eighth of the journal waits for it.
      if (journalDistance(journalReleased, journalMoved) >= journal!.size >> 3) releaseJournal();
    }
    batch.pos = 0;
    batchWritten = 0;
    batchEvents = 0;
    recovered();
    return true;
  };

  /** Seals [sealedTo, EOF) of `file`. `writes` is the write-stream seq known to lie before EOF. */
  const seal = (file: number, writes: number, final: boolean): boolean => {
    if (!final && readsDone === chain.lastSealReads && writes === chain.lastSealWrites) return false;
    // Not in the middle of the caller's record (rotate() checks before it starts).
    if (!final && heldByCaller()) return false;
    const eof = fstatSync(file).size;
    if (!final && eof === chain.sealedTo) return false;
    const hash = hashRange(file, chain.sealedTo, eof, chain.prev, hasher, scratch);
    const record = {
      v: 1 as const,
      type: 'SEAL' as const,
      seal: chain.seal + 1,
      segment: chain.segment,
      from: chain.sealedTo,
      to: eof,
      reads_through: readsDone,
      writes_through: writes,
      alg: hasher.alg,
      prev: chain.prev,
      hash,
      final,
    };
    const line = Buffer.from(sealLine(record));
    writeFully(file, line, 0, line.length);
    chain.seal = record.seal;
    chain.prev = hash;
    chain.sealedTo = eof;
    chain.lastSealReads = readsDone;
    chain.lastSealWrites = writes;
    stats[STAT_SEALS]!++;
    stats[STAT_SEGMENT_BYTES] = eof + line.length;
    unsyncedSeal = true;
    return true;
  };

  /** The write-stream seq whose record is surely in the file: read after a fence. */
  const writesDone = (): number => {
    Atomics.load(ctrl, CTRL_IN_WRITE);
    return stats[STAT_WRITES_DONE]!;
  };

  const rotate = (): void => {
    // The rest of the caller's cut-short record must follow it in this file: rotate later.
    if (heldByCaller()) return;
    const next = chain.segment + 1;
    const newFd = openSync(join(data.dir, segmentName(next)), 'ax+');
    const header = Buffer.from(segmentHeaderLine(next, data.actor, data.origin, `${Date.now()}000000`));
    writeFully(newFd, header, 0, header.length);
    fsyncDirectory(data.dir);
    const writesBefore = writesDone();
    Atomics.store(ctrl, CTRL_APPEND_SEGMENT, next);
    // The caller's thread sets IN_WRITE before it reads APPEND_SEGMENT (and opens the new file
    // while IN_WRITE is set): once IN_WRITE reads 0 after the store, no write can still be going
    // to the old file, and every later one goes to the new file.
    while (Atomics.load(ctrl, CTRL_IN_WRITE) === 1) sleep(0.05);
    seal(fd, writesBefore, true);
    fsyncSync(fd);
    writeHead();
    unsyncedSeal = false;
    closeSync(fd);
    fd = newFd;
    chain.segment = next;
    chain.sealedTo = 0;
    stats[STAT_SEGMENT_BYTES] = header.length;
    stats[STAT_ROTATIONS]!++;
    Atomics.store(ctrl, CTRL_SEGMENT, next);
  };

  /** HEAD: the last seal that is fsynced (verify checks the log still has it). */
  const writeHead = (): void => {
    const head = encodeHead({
      segment: chain.segment,
      seal: chain.seal,
      to: chain.sealedTo,
      hash: chain.prev,
      reads_through: chain.lastSealReads,
      writes_through: chain.lastSealWrites,
    }, data.key);
    writeFully(headFd, head, 0, head.length, 0);
  };

  const commit = (rotateIfFull = true): void => {
    stopTicking();
    if (!writeBatch()) return;
    releaseJournal();
    try {
      seal(fd, writesDone(), false);
      if (unsyncedSeal) {
        const t0 = performance.now();
        fsyncSync(fd);
        stats[STAT_FSYNC_SECONDS]! += (performance.now() - t0) / 1000;
        stats[STAT_FSYNCS]!++;
        unsyncedSeal = false;
        writeHead();
      }
      stats[STAT_SYNCED_READS] = chain.lastSealReads;
      stats[STAT_SYNCED_WRITES] = chain.lastSealWrites;
      Atomics.add(ctrl, CTRL_SYNC_VERSION, 1);
      if (Atomics.load(ctrl, CTRL_FLUSH_WAITERS) !== 0) port.postMessage({ type: 'synced' } satisfies DrainWorkerMessage);
      if (rotateIfFull && stats[STAT_SEGMENT_BYTES]! >= data.maxSegmentBytes) rotate();
      recovered();
    } catch (error) {
      fail(error);
    }
  };

  /**
   * Seals once sealBytes are unsealed. A segment normally rotates at the first commit that finds
   * it full, with everything recorded before the commit moved into it; but a busy interval could
   * push a 64 KiB segment to 393 KB before that commit. So a seal that finds the segment a whole
   * seal block past maxSegmentBytes rotates at once (unless `rotateIfFull` is false: inside a
   * journal read), bounding a segment to about maxSegmentBytes + 2 x sealBytes (plus the journal
   * frames rotateCaughtUp moves in). Not while stopping: the log ends with the segment that holds
   * AUDIT_STOPPED.
   */
  const maybeSeal = (rotateIfFull = true): void => {
    try {
      const eof = fstatSync(fd).size;
      if (eof - chain.sealedTo >= data.sealBytes) seal(fd, writesDone(), false);
      // The seal may have been written inside a journal read, which cannot rotate: checked here too.
      if (rotateIfFull && stats[STAT_SEGMENT_BYTES]! >= data.maxSegmentBytes + data.sealBytes && Atomics.load(ctrl, CTRL_STOP) === 0) rotateCaughtUp();
    } catch (error) {
      fail(error);
    }
  };

  /**
   * Rotation between commits: the write records framed in the journal so far are moved first (a
   * commit moves them at the start of its turn), so every write below the reads already in this
   * segment is in it too: a segment's write stream never reaches behind its read stream into the
   * next segment, and a rotation a crash interrupts leaves nothing of that kind behind.
   */
  const rotateCaughtUp = (): void => {
    if (journalPending() > 0) drainJournal();
    // With the reads already encoded, as a commit writes its batch before it rotates.
    if (!writeBatch()) return;
    rotate();
  };

  /** Drains up to DRAIN_TURN entries; returns how many. */
  const drain = (): number => {
    let tail = Atomics.load(ctrl, CTRL_TAIL);
    const head = Atomics.load(ctrl, CTRL_HEAD);
    let n = 0;
    if (tail !== head) tick();
    while (tail !== head && n < DRAIN_TURN) {
      const length = words[tail]!;
      if (length === PAD_MARK) {
        tail = 0;
        continue;
      }
      if (batch.pos + maxEncodedBytes(length, ctx.identity.length) > batch.buf.length) {
        if (!writeBatch()) break;
        maybeSeal();
        tick();
      }
      encodeRingEntry(batch, ring, tail, ctx);
      batchLastSeq = ring.f64[(tail + 4) >> 1]!;
      batchEvents++;
      tail += length;
      if (tail === cap) tail = 0;
      n++;
      if (n % RELEASE_EVERY === 0) release(tail);
      if (n % CLOCK_TICK_ENTRIES === 0) tick();
      if (batch.pos >= flushAt) {
        release(tail);
        if (!writeBatch()) break;
        maybeSeal();
        tick();
      }
    }
    release(tail);
    return n;
  };

  const journalDistance = (from: number, to: number): number => journalBytesBetween(from, to, journal!.size);

  /** Records how far the spool holds the journal's frames, then lets the writer reuse the space. */
  const releaseJournal = (): void => {
    if (journalMoved === -1) return;
    try {
      journal!.persistTail(journalMoved, journalMovedSeq);
    } catch {
      // Not recorded: the space stays taken (the writer waits or fails over) and the next
      // commit tries again. Recovery skips frames the log already holds (by seq).
      return;
    }
    Atomics.store(ctrl, CTRL_JOURNAL_TAIL, journalMoved);
    journalReleased = journalMoved;
    journalMoved = -1;
  };

  /** Moves the journal's frames into the batch (in frame order); returns how many. */
  const drainJournal = (): number => {
    if (journal === null) return 0;
    const head = Atomics.load(ctrl, CTRL_JOURNAL_HEAD);
    if (head === journalRead) return 0;
    let n = 0;
    journalRead = journal.read(journalRead, head, (bytes, from, to, seq, next) => {
      const length = to - from;
      // As with reads: appended and sealed every flushAt bytes, so seals stay near sealBytes and
      // a full segment rotates within one of them (not after up to JOURNAL_DRAIN_BYTES).
      if (batch.pos >= flushAt) {
        if (!writeBatch()) return false;
        maybeSeal(false);
      }
      if (batch.pos + length > batch.buf.length) {
        if (batch.pos > 0 && !writeBatch()) return false;
        batch.ensure(length);
      }
      batch.buf.set(bytes.subarray(from, to), batch.pos);
      batch.pos += length;
      // Not counted in STAT_EVENTS_DRAINED: that counts reads drained from the ring.
      batchWriteSeq = seq;
      batchJournalEnd = next;
      n++;
      return true;
    });
    return n;
  };

  const ringEmpty = (): boolean => Atomics.load(ctrl, CTRL_HEAD) === Atomics.load(ctrl, CTRL_TAIL);
  /** Bytes framed in the journal and not yet read. */
  const journalPending = (): number => (journal === null ? 0 : journalDistance(journalRead, Atomics.load(ctrl, CTRL_JOURNAL_HEAD)));
  /** Nothing left to move: the ring and the journal are empty (what a flush or stop waits for). */
  const caughtUp = (): boolean => ringEmpty() && journalPending() === 0;
  /**
   * Everything recorded is in the spool, sealed and fsynced, and the journal's space is given
   * back: a commit now would do nothing. (Checks its shared inputs last, after the cheap locals.)
   */
  const committed = (): boolean =>
    batch.pos === 0 && journalMoved === -1 && !unsyncedSeal && readsDone === chain.lastSealReads && caughtUp() && writesDone() === chain.lastSealWrites;

  const release = (tail: number): void => {
    Atomics.store(ctrl, CTRL_TAIL, tail);
    if (Atomics.load(ctrl, CTRL_PRODUCER_WAITING) === 1) Atomics.notify(ctrl, CTRL_TAIL);
  };

  port.postMessage({ type: 'ready' } satisfies DrainWorkerMessage);
  for (;;) {
    const stopping = Atomics.load(ctrl, CTRL_STOP) === 1;
    const paused = !stopping && Atomics.load(ctrl, CTRL_PAUSED) === 1;
    // Tells pauseDrainForTesting that no turn drains from now on (one already past this line
    // when the pause came may still have): the test's reads after it stay in the ring.
    if (Atomics.load(ctrl, CTRL_PAUSED_ACK) !== (paused ? 1 : 0)) {
      Atomics.store(ctrl, CTRL_PAUSED_ACK, paused ? 1 : 0);
      Atomics.notify(ctrl, CTRL_PAUSED_ACK);
    }
    // The journal's frames are already safe from a process crash: they are read (a pread) once
    // per commit, when someone waits, or when JOURNAL_DRAIN_BYTES of them wait, not on every
    // turn (a write trickling in among reads would cost a syscall per turn). Journal first then.
    const journalDue =
      journal !== null &&
      (stopping || Atomics.load(ctrl, CTRL_FLUSH_REQUESTS) !== seenFlush || performance.now() - lastCommit >= data.fsyncIntervalMs || journalPending() >= JOURNAL_DRAIN_BYTES);
    // Held: the file ends inside a record of the caller's thread (see heldByCaller); it appends
    // the rest from its backlog, retried every 250 ms. Like a failing disk, nothing is drained.
    const held = heldByCaller();
    const drained = failing || held || paused ? 0 : (journalDue ? drainJournal() : 0) + drain();
    // The caller's thread rings after writing sealBytes of its own: keep blocks small either way.
    if (!failing && !held) maybeSeal();
    if (failing || held) {
      stopTicking();
      sleep(RETRY_AFTER_MS);
      writeBatch();
    }
    const now = performance.now();
    const readsFlowFast = naps.observe(drained, now);
    const flushRequests = Atomics.load(ctrl, CTRL_FLUSH_REQUESTS);
    const allMoved = caughtUp();
    if (stopping && (allMoved || failing || held)) {
      // No rotation now: the log should end with the segment that holds AUDIT_STOPPED.
      commit(false);
      break;
    }
    if (flushRequests !== seenFlush || now - lastCommit >= data.fsyncIntervalMs) {
      // A flush asks for what was recorded before it: drain the rest of the ring first.
      if (flushRequests !== seenFlush && !allMoved && !paused && !failing) continue;
      seenFlush = flushRequests;
      lastCommit = now;
      commit();
      continue;
    }
    // Journal frames not yet due wait for the commit below (the sleep ends by then).
    if (drained > 0 && !ringEmpty()) continue;
    if (batch.pos > 0 && !writeBatch()) continue;
    if (readsFlowFast && !paused) {
      // Reads flow fast enough for a nap to pay (see NapPolicy) and the worker caught up: nap
      // briefly and keep the clock word fresh, so the reads keep taking it instead of the clock
      // (see RingProducer.stamp). The producer wakes no one for this (CTRL_WORKER_SLEEPING stays
      // 0); the nap ends on its own.
      sleep(CLOCK_NAP_MS);
      tick();
      continue;
    }
    stopTicking();
    const bell = Atomics.load(ctrl, CTRL_DOORBELL);
    if (!paused && !failing && committed()) {
      // Nothing to do until someone records something, and they wake us (see WORKER_IDLE). The
      // store comes before the last look: a producer that published before it is seen here, one
      // that publishes after it sees WORKER_IDLE and rings (Atomics are sequentially consistent).
      Atomics.store(ctrl, CTRL_WORKER_SLEEPING, WORKER_IDLE);
      if (committed()) {
        stats[STAT_IDLE_SLEEPS]!++;
        Atomics.wait(ctrl, CTRL_DOORBELL, bell, IDLE_SLEEP_MS);
      }
      Atomics.store(ctrl, CTRL_WORKER_SLEEPING, 0);
      continue;
    }
    Atomics.store(ctrl, CTRL_WORKER_SLEEPING, WORKER_NAPPING);
    if (ringEmpty() || paused) {
      Atomics.wait(ctrl, CTRL_DOORBELL, bell, Math.max(0.1, lastCommit + data.fsyncIntervalMs - performance.now()));
    }
    Atomics.store(ctrl, CTRL_WORKER_SLEEPING, 0);
  }
  closeSync(headFd);
  closeSync(fd);
  journal?.close();
  port.postMessage({ type: 'stopped', chain } satisfies DrainWorkerMessage);
}

try {
  run(workerData as DrainWorkerData);
} catch (error) {
  parentPort!.postMessage({ type: 'fatal', message: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies DrainWorkerMessage);
  process.exitCode = 1;
}
