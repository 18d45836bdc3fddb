import { closeSync, constants as fsConstants, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { MapObserver, OpType, Outcome, RangeBounds, Validator } from '../map/index.ts';
import { reject } from '../map/index.ts';
import { hrtimeOffsetMs, takeAnchor } from './clock.ts';
import type { ClockAnchor } from './clock.ts';
import type { ChainState, DrainWorkerData, DrainWorkerMessage } from './drain-worker.ts';
import { ByteWriter, EncodeContext, encodeDirect, encodeIdentity } from './encoder.ts';
import type { DirectRecord } from './encoder.ts';
import { AuditJournalError, AuditNotDurableError, AuditStoppedError } from './errors.ts';
import type { GapCause, LifecycleOpType } from './event.ts';
import { checkGovernanceEvent } from './governance-event.ts';
import type { GovernanceEvent } from './governance-event.ts';
import { JOURNAL_FILE, JOURNAL_HEADER_BYTES, journalBytesBetween, JournalReader, openJournal } from './journal.ts';
import type { JournalWriter } from './journal.ts';
import type { KafkaForwarder } from './kafka-forwarder.ts';
import { resolveAuditOptions } from './options.ts';
import type { AuditRecorderOptions, ResolvedAuditOptions } from './options.ts';
import { acquireSpoolLock, recoverSpool, spoolDirectoryError } from './recovery.ts';
import type { RecoveredSpool } from './recovery.ts';
import {
  createRing,
  CTRL_APPEND_SEGMENT,
  CTRL_FLUSH_REQUESTS,
  CTRL_FLUSH_WAITERS,
  CTRL_HEAD,
  CTRL_IN_WRITE,
  CTRL_JOURNAL_HEAD,
  CTRL_JOURNAL_TAIL,
  CTRL_PAUSED,
  CTRL_PAUSED_ACK,
  CTRL_SEGMENT,
  CTRL_STOP,
  CTRL_TAIL,
  CTRL_WORKER_FAILING,
  CTRL_WORKER_SLEEPING,
  CTRL_WRITE_TORN,
  OP_LOAD,
  OP_RANGE,
  PAD_MARK,
  RingProducer,
  STAT_BYTES_WRITTEN,
  STAT_EVENTS_DRAINED,
  STAT_FSYNCS,
  STAT_FSYNC_SECONDS,
  STAT_READS_DONE,
  STAT_ROTATIONS,
  STAT_IDLE_SLEEPS,
  STAT_SEALS,
  STAT_SEGMENT_BYTES,
  STAT_SYNCED_READS,
  STAT_SYNCED_WRITES,
  STAT_WORKER_WRITE_ERRORS,
  STAT_WRITES_DONE,
  WRITE_TORN_BY_CALLER,
  WRITE_TORN_BY_WORKER,
} from './ring.ts';
import type { RingViews } from './ring.ts';
import { encodeSeqReservation, segmentName, SEQ_FILE } from './spool.ts';
import { ActiveTrace } from './trace.ts';

/** A point-in-time view of a recorder, for metrics, the dashboard and tests. */
export interface AuditRecorderStats {
  /** The next seq to be handed out. */
  readonly nextSeq: number;
  readonly readsRecorded: number;
  readonly writesRecorded: number;
  /**
   * Every record this recorder wrote, of every kind: reads, writes, its own (AUDIT_STARTED,
   * AUDIT_GAP, AUDIT_STOPPED, ...) and governance events; dropped reads and lost writes are not
   * among them. After stop() it is what this session added to the spool, the count verify finds
   * in a spool that one session wrote.
   */
  readonly records: number;
  /** Reads that found the ring full and waited (policy `wait`). */
  readonly ringFullWaits: number;
  /** Reads dropped for a full ring (named by AUDIT_GAP records). */
  readonly readsDropped: number;
  /** Write records lost because the spool failed past `maxBacklogBytes` (named by AUDIT_GAP). */
  readonly writesLost: number;
  /** Operations seen after stop() began, not recorded. */
  readonly afterStop: number;
  readonly gapsRecorded: number;
  /** Writes whose `recordValue` threw or returned a non-string: recorded with value null and value_error. */
  readonly recordValueFailures: number;
  readonly backlogRecords: number;
  readonly drained: number;
  readonly bytesWritten: number;
  readonly seals: number;
  readonly fsyncs: number;
  readonly fsyncSeconds: number;
  readonly rotations: number;
  /**
   * Times the drain worker went to sleep with everything committed (until the next record, a
   * flush or a stop wakes it) instead of waking every fsyncIntervalMs: a quiet recorder costs
   * next to no CPU.
   */
  readonly workerIdleSleeps: number;
  readonly segment: number;
  readonly ringUsedBytes: number;
  readonly ringCapacityBytes: number;
  /** Whether write records reach the OS through the write journal (else one write(2) each). */
  readonly writeJournal: boolean;
  /** Bytes of write records framed in the journal, not yet moved into the spool (0 without one). */
  readonly journalUsedBytes: number;
  /** Size of the journal's frame area (0 without one). */
  readonly journalCapacityBytes: number;
  /** Writes that found the journal full and waited for the worker. */
  readonly journalFullWaits: number;
  readonly workerWriteErrors: number;
  /**
   * Times the drain worker died while the process lived and a new one was started and runs
   * (govmap_audit_drain_worker_restarts_total); attempts whose worker died again are not counted.
   */
  readonly drainWorkerRestarts: number;
  /** False while the spool cannot be written (records wait in memory). */
  readonly healthy: boolean;
  /** Every read-stream record with seq <= this is fsynced; likewise writes. */
  readonly syncedReads: number;
  readonly syncedWrites: number;
  /**
   * Records handed out (seqs) not yet covered by a fsynced seal, an upper bound; 0 once every
   * record of both streams is fsynced (govmap_audit_unsynced_records).
   */
  readonly unsyncedRecords: number;
}

interface FlushWaiter {
  readonly reads: number;
  readonly writes: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

const OUTCOME: Readonly<Record<Outcome, number>> = { ok: 0, miss: 1, rejected: 2, error: 3 };
/** `value_error` of a write whose value the `recordValue` option failed to render (docs/audit.md). */
export const RECORD_VALUE_FAILED = 'RECORD_VALUE_FAILED';
const BUILD = Symbol('AuditRecorder.build');

/**
 * Restarting a dead drain worker (docs/audit.md "The drain worker dies"). The first attempt waits
 * RESTART_BACKOFF_MS (the death may come from something passing, and a restart is a recovery
 * scan of the last segment on this thread); each death within the window doubles the wait up to
 * RESTART_MAX_BACKOFF_MS. RESTART_LIMIT attempts within RESTART_WINDOW_MS: a worker that dies at
 * once every time would otherwise rescan the spool forever; after that it stays dead as before
 * (unhealthy, SINK_FAILED says so), 100+200+400+800+1,600 ms = 3.1 s after the first death.
 */
const RESTART_BACKOFF_MS = 100;
const RESTART_MAX_BACKOFF_MS = 5_000;
const RESTART_LIMIT = 5;
const RESTART_WINDOW_MS = 60_000;

function workerUrl(): URL {
  // Source runs by type stripping (.ts); the published package runs compiled .js.
  return new URL(import.meta.url.endsWith('.ts') ? './drain-worker.ts' : './drain-worker.js', import.meta.url);
}

/**
 * The audit recorder: a MapObserver that records every LOAD, STORE, DELETE and RANGE of the
 * maps it watches, plus their lifecycle and its own, into a tamper-evident spool.
 *
 * Two paths, two promises (docs/audit.md has the full contract):
 * - Writes (STORE, DELETE, refused writes) and lifecycle records are encoded on the caller's
 *   thread and reach the OS before the operation returns (framed into the shared-mapped write
 *   journal, or handed to write(2) without it): a process crash (SIGKILL, OOM)
 *   loses none. fsync is group-committed by the drain worker; `flush()` (and so an awaited
 *   `updateAsync`) resolves once the record is sealed and fsynced.
 * - Reads (LOAD, RANGE) write fixed fields into a preallocated shared ring and return; the
 *   drain worker encodes and appends them. A crash can lose the undrained tail, never silently:
 *   seqs are gap-free and the restarted recorder names the lost range in an AUDIT_GAP record.
 *
 * Invariants: seqs are handed out by the caller's thread only, one counter for both paths, and
 * never reused for this actor's spool; every seq ends up either as a record in the log or inside
 * an AUDIT_GAP range; within each path records reach the file in seq order.
 */
export class AuditRecorder implements MapObserver<unknown> {
  readonly dir: string;
  readonly actor: string;
  readonly origin: string;
  readonly #options: ResolvedAuditOptions;
  readonly #ring: RingViews;
  readonly #producer: RingProducer;
  readonly #ctrl: Int32Array;
  readonly #stats: Float64Array;
  readonly #trace = new ActiveTrace();
  readonly #anchor: ClockAnchor;
  readonly #ctx: EncodeContext;
  readonly #writer = new ByteWriter(4096);
  readonly #record: DirectRecord = {
    seq: 0,
    op: 'STORE',
    map: null,
    key: undefined,
    traceId: null,
    spanId: null,
    bounds: null,
    perfMs: 0,
    outcome: 0,
    reason: null,
    value: undefined,
    valueError: null,
    gap: null,
    detail: null,
  };
  readonly #releaseLock: () => void;
  readonly #seqFd: number;
  readonly #recovered: RecoveredSpool;
  /** The write journal (option writeJournal), or null: writes then go to write(2) directly. */
  readonly #journal: JournalWriter | null;
  #journalHead = JOURNAL_HEADER_BYTES;
  readonly #sleepCell = new Int32Array(new SharedArrayBuffer(4));
  #worker: Worker | undefined;
  #workerExited: Promise<void> = Promise.resolve();
  #chain: ChainState;

  #seq: number;
  #reservedThrough: number;
  #lastReadSeq: number;
  #lastWriteSeq: number;
  #bytesSinceBell = 0;
  #dropFrom = 0;
  #dropTo = 0;

  #failure: unknown = null;
  /** Set while the file ends inside one of this thread's records (CTRL_WRITE_TORN, see #appendToSpool). */
  #torn = false;
  /** Why the last #appendToSpool stopped short. */
  #writeError: unknown = null;
  /** Set while the drain worker cannot write or fsync (it retries); flush() rejects meanwhile. */
  #workerFailure: Error | null = null;
  /** Why the drain worker died: nothing moves records into the spool until it is restarted (unhealthy). */
  #workerDied: unknown = null;
  /** Set once the first worker was ready: a worker that fails to start fails the start, it is not restarted. */
  #started = false;
  /** When each restart attempt of the last RESTART_WINDOW_MS began (performance.now()). */
  #restartAttempts: number[] = [];
  #restartTimer: NodeJS.Timeout | undefined;
  /** The restart in progress (recovery done, the new worker not yet ready), awaited by stop(). */
  #restarting: Promise<void> | undefined;
  #drainWorkerRestarts = 0;
  #backlog: Buffer[] = [];
  #backlogSeqs: number[] = [];
  #backlogBytes = 0;
  #lostFrom = 0;
  #lostTo = 0;
  #retryTimer: NodeJS.Timeout | undefined;

  #waiters: FlushWaiter[] = [];
  /**
   * This thread's own descriptor on the segment it appends to (#appendSegment; -1 and 0: none),
   * opened when CTRL_APPEND_SEGMENT moves on. Never the worker's descriptor: Node closes those when
   * the thread exits, before this thread hears of it, and the number may then belong to any file.
   */
  #appendFd = -1;
  #appendSegment = 0;
  /** The last recovery's segment and its file (recovery may have found it under another name). */
  #recoveredSegment: { readonly segment: number; readonly path: string };
  /** faultSpoolForTesting's read-only descriptor while it is #appendFd, else -1. */
  #faultFd = -1;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #detachers = new Set<() => void>();
  #forwarder: KafkaForwarder | undefined;

  #readsRecorded = 0;
  #writesRecorded = 0;
  /** Records given a seq by #append (writes, lifecycle, governance, gaps), lost ones included. */
  #appended = 0;
  #ringFullWaits = 0;
  #journalFullWaits = 0;
  #readsDropped = 0;
  #writesLost = 0;
  #afterStop = 0;
  #gapsRecorded = 0;
  #recordValueFailures = 0;

  /** Use `createAuditRecorder`: it recovers the spool and starts the drain worker. */
  constructor(token: symbol, options: ResolvedAuditOptions, recovered: RecoveredSpool, releaseLock: () => void, journal: JournalWriter | null) {
    if (token !== BUILD) throw new TypeError('use createAuditRecorder(options) to make an AuditRecorder');
    this.#options = options;
    this.dir = options.dir;
    this.actor = options.actor;
    this.origin = options.origin;
    this.#recovered = recovered;
    this.#releaseLock = releaseLock;
    this.#ring = createRing(options.ringBytes);
    this.#producer = new RingProducer(this.#ring);
    this.#ctrl = this.#ring.ctrl;
    this.#stats = this.#ring.stats;
    this.#anchor = takeAnchor();
    this.#ctx = new EncodeContext(this.#anchor, encodeIdentity(options.actor, options.origin));
    this.#chain = recovered.chain;
    this.#seq = recovered.nextSeq;
    this.#reservedThrough = recovered.nextSeq - 1;
    this.#lastReadSeq = recovered.readsDone;
    this.#lastWriteSeq = recovered.writesDone;
    this.#stats[STAT_READS_DONE] = recovered.readsDone;
    this.#stats[STAT_WRITES_DONE] = recovered.writesDone;
    this.#stats[STAT_SYNCED_READS] = recovered.readsDone;
    this.#stats[STAT_SYNCED_WRITES] = recovered.writesDone;
    this.#ctrl[CTRL_SEGMENT] = recovered.chain.segment;
    this.#ctrl[CTRL_APPEND_SEGMENT] = recovered.chain.segment;
    this.#recoveredSegment = { segment: recovered.chain.segment, path: recovered.segmentPath };
    this.#journal = journal;
    this.#ctrl[CTRL_JOURNAL_HEAD] = JOURNAL_HEADER_BYTES;
    this.#ctrl[CTRL_JOURNAL_TAIL] = JOURNAL_HEADER_BYTES;
    // Not O_APPEND: on Linux a positioned write to an O_APPEND file appends anyway, and the
    // reservation must be rewritten in place.
    this.#seqFd = openSync(join(options.dir, SEQ_FILE), 'w');
  }

  /** @internal Starts the worker and writes AUDIT_STARTED (and a crash's AUDIT_GAP). */
  async start(): Promise<void> {
    const worker = this.#spawnWorker(this.#recovered.segmentPath, this.#recovered.readsDone);
    // The worker owns the segment files (it rotates them); it says when the first is open.
    await this.#workerReady(worker);
    this.#started = true;
    worker.unref();
    const r = this.#recovered;
    this.#lifecycle('AUDIT_STARTED', null, r.previous === 'crash' ? 'RECOVERED_AFTER_CRASH' : null, `previous session: ${r.previous}; spool ${this.dir}; segment ${r.chain.segment}; writes reach the OS ${this.#journal === null ? 'by write(2)' : `through the write journal (${this.#journal.size} bytes)`}`);
    if (r.gap !== null) {
      this.#gapRecord(r.gap.from, r.gap.to, 'CRASH', r.gap.torn, 'the previous recorder stopped without AUDIT_STOPPED; read records still in its ring were lost');
    }
  }

  /** Starts a drain worker on the chain as it stands (this.#chain), appending to `segmentPath`. */
  #spawnWorker(segmentPath: string, readsDone: number): Worker {
    const data: DrainWorkerData = {
      sab: this.#ring.sab,
      dir: this.dir,
      anchor: this.#anchor,
      recorderClockOffsetMs: hrtimeOffsetMs(),
      actor: this.actor,
      origin: this.origin,
      key: this.#options.key,
      chain: this.#chain,
      segmentPath,
      readsDone,
      fsyncIntervalMs: this.#options.fsyncIntervalMs,
      sealBytes: this.#options.sealBytes,
      maxSegmentBytes: this.#options.maxSegmentBytes,
      journalPath: this.#journal === null ? null : join(this.dir, JOURNAL_FILE),
    };
    const worker = new Worker(workerUrl(), { workerData: data, name: 'govmap-audit-drain' });
    this.#worker = worker;
    this.#workerExited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    // Events of a worker that was replaced (its death already handled) are ignored.
    worker.on('message', (message: DrainWorkerMessage) => {
      if (this.#worker === worker) this.#onWorkerMessage(message);
    });
    worker.on('error', (error) => this.#onWorkerDied(worker, error));
    worker.on('exit', (code) => {
      if (!this.#stopping) this.#onWorkerDied(worker, new Error(`drain worker exited with code ${code}`));
    });
    return worker;
  }

  /** Resolves when `worker` has opened its segment; rejects if it fails or exits first. */
  #workerReady(worker: Worker): Promise<void> {
    return new Promise<void>((resolve, rejectStart) => {
      const onMessage = (message: DrainWorkerMessage): void => {
        if (message.type === 'ready') {
          worker.off('message', onMessage);
          resolve();
        } else if (message.type === 'fatal') {
          rejectStart(new Error(`audit drain worker failed to start: ${message.message}`));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', rejectStart);
      worker.once('exit', (code) => rejectStart(new Error(`audit drain worker exited with code ${code} before it was ready`)));
    });
  }

  // ------------------------------------------------------------------ MapObserver

  onOperation(map: string, op: OpType, key: unknown, outcome: Outcome, reason: string | null, bounds: RangeBounds | null, value?: unknown): void {
    // Compares, not OUTCOME[outcome]: a keyed lookup by a varying string costs more per read.
    if (op === 'LOAD') this.#read(OP_LOAD, map, key, outcome === 'ok' ? 0 : outcome === 'miss' ? 1 : OUTCOME[outcome], reason, null);
    else if (op === 'RANGE') this.#read(OP_RANGE, map, undefined, OUTCOME[outcome], reason, bounds);
    else this.#write(op, map, key, outcome, reason, value);
  }

  onLifecycle(map: string, event: 'CREATED' | 'DISPOSED'): void {
    this.#lifecycle(event === 'CREATED' ? 'MAP_CREATED' : 'MAP_DISPOSED', map, null, null);
  }

  /**
   * Resolves once everything recorded before the call is sealed and fsynced. Rejects with
   * AuditNotDurableError while the spool cannot be written.
   */
  flush(): Promise<void> {
    if (this.#stopping) return Promise.reject(new AuditStoppedError('flush'));
    if (this.#failure !== null) return Promise.reject(new AuditNotDurableError(this.dir, this.#failure));
    if (this.#workerFailure !== null) return Promise.reject(new AuditNotDurableError(this.dir, this.#workerFailure));
    if (this.#dropFrom !== 0) this.#endDropRun();
    const reads = this.#lastReadSeq;
    const writes = this.#lastWriteSeq;
    if (this.#stats[STAT_SYNCED_READS]! >= reads && this.#stats[STAT_SYNCED_WRITES]! >= writes) return Promise.resolve();
    if (this.#worker === undefined) return Promise.reject(new AuditNotDurableError(this.dir, new Error('the audit drain worker is not running')));
    return new Promise<void>((resolve, rejectFlush) => {
      this.#waiters.push({ reads, writes, resolve, reject: rejectFlush });
      if (this.#waiters.length === 1) {
        Atomics.store(this.#ctrl, CTRL_FLUSH_WAITERS, 1);
        this.#worker?.ref();
      }
      Atomics.add(this.#ctrl, CTRL_FLUSH_REQUESTS, 1);
      this.#producer.wake();
    });
  }

  // ------------------------------------------------------------------ public API

  /**
   * Records every later operation of `map`. Returns a function that stops recording it, and
   * records MAP_DETACHED: without it, the silence that follows would read as a map nobody used.
   */
  attach<K>(map: { readonly name: string; observe(observer: MapObserver<K>): () => void }): () => void {
    const detach = map.observe(this);
    this.#lifecycle('MAP_ATTACHED', map.name, null, null);
    const remove = (): void => {
      if (!this.#detachers.delete(remove)) return; // detached already (twice, or by stop())
      detach();
      // At stop() every map is detached, and AUDIT_STOPPED says so for all of them.
      if (!this.#stopping) this.#lifecycle('MAP_DETACHED', map.name, null, null);
    };
    this.#detachers.add(remove);
    return remove;
  }

  /**
   * A validator that refuses writes while they could not be audited (reason AUDIT_UNAVAILABLE):
   * the spool cannot be written, or the recorder was stopped (it records nothing more: a map
   * still holding it as an observer would otherwise apply writes unaudited). Combine it with the
   * business validator (`allOf`) to fail closed instead of writing unaudited.
   */
  guard<K, V>(): Validator<K, V> {
    return () => {
      if (this.#stopping) return reject('AUDIT_UNAVAILABLE', `the audit recorder of ${this.dir} was stopped`);
      return this.#failure === null ? true : reject('AUDIT_UNAVAILABLE', `the audit spool ${this.dir} cannot be written`);
    };
  }

  get healthy(): boolean {
    return this.#failure === null && this.#workerFailure === null && this.#workerDied === null && Atomics.load(this.#ctrl, CTRL_WORKER_FAILING) === 0;
  }

  stats(): AuditRecorderStats {
    const s = this.#stats;
    return {
      nextSeq: this.#seq,
      readsRecorded: this.#readsRecorded,
      writesRecorded: this.#writesRecorded,
      records: this.#readsRecorded + this.#appended - this.#writesLost,
      ringFullWaits: this.#ringFullWaits,
      readsDropped: this.#readsDropped,
      writesLost: this.#writesLost,
      afterStop: this.#afterStop,
      gapsRecorded: this.#gapsRecorded,
      recordValueFailures: this.#recordValueFailures,
      backlogRecords: this.#backlog.length,
      drained: s[STAT_EVENTS_DRAINED]!,
      bytesWritten: s[STAT_BYTES_WRITTEN]!,
      seals: s[STAT_SEALS]!,
      fsyncs: s[STAT_FSYNCS]!,
      fsyncSeconds: s[STAT_FSYNC_SECONDS]!,
      rotations: s[STAT_ROTATIONS]!,
      workerIdleSleeps: s[STAT_IDLE_SLEEPS]!,
      segment: Atomics.load(this.#ctrl, CTRL_SEGMENT),
      ringUsedBytes: this.#producer.queuedWords * 4,
      ringCapacityBytes: this.#ring.capacityWords * 4,
      writeJournal: this.#journal !== null,
      journalUsedBytes: this.#journalUsedBytes(),
      journalCapacityBytes: this.#journal === null ? 0 : this.#journal.size - JOURNAL_HEADER_BYTES,
      journalFullWaits: this.#journalFullWaits,
      workerWriteErrors: s[STAT_WORKER_WRITE_ERRORS]!,
      drainWorkerRestarts: this.#drainWorkerRestarts,
      healthy: this.healthy,
      syncedReads: s[STAT_SYNCED_READS]!,
      syncedWrites: s[STAT_SYNCED_WRITES]!,
      unsyncedRecords: this.#unsyncedRecords(),
    };
  }

  /**
   * The synced marks are per stream (the highest read seq, the highest write seq, fsynced): a
   * stream with nothing pending must not hold the count back, or a service that only writes (its
   * synced read seq stays 0) would report every record it ever made as unsynced. Only streams
   * with records still pending bound it from below.
   */
  #unsyncedRecords(): number {
    const s = this.#stats;
    const reads = s[STAT_SYNCED_READS]!;
    const writes = s[STAT_SYNCED_WRITES]!;
    const floor = Math.min(reads >= this.#lastReadSeq ? Infinity : reads, writes >= this.#lastWriteSeq ? Infinity : writes);
    return floor === Infinity ? 0 : Math.max(0, this.#seq - 1 - floor);
  }

  /** The Kafka forwarder started by the `kafka` option, if any. */
  get forwarder(): KafkaForwarder | undefined {
    return this.#forwarder;
  }

  /** @internal */
  setForwarder(forwarder: KafkaForwarder): void {
    this.#forwarder = forwarder;
  }

  /** Records a sink's failure or recovery (the Kafka forwarder reports through this). */
  recordSinkEvent(op: 'SINK_FAILED' | 'SINK_RECOVERED', reason: string, detail: string): void {
    this.#lifecycle(op, null, reason, detail);
  }

  /**
   * Records a governance event of another part (a breaker transition, a switch change, a leak
   * suspect) as a write-stream record: encoded and handed to the OS before this returns, in the
   * hash chain like every write. Throws AuditEventError (GOVMAP_AUDIT_INVALID_EVENT) for an
   * unknown op, an empty resource or a detail that is not a small JSON object; after stop() the
   * event is counted in `afterStop` and not written. The adapters in governance.ts call this.
   */
  recordGovernanceEvent(event: GovernanceEvent): void {
    const text = checkGovernanceEvent(event);
    if (this.#stopping) {
      this.#afterStop++;
      return;
    }
    const r = this.#record;
    r.op = event.op;
    r.map = event.owner ?? null;
    r.key = event.resource;
    r.bounds = null;
    r.outcome = 0;
    r.reason = event.reason ?? null;
    r.value = undefined;
    r.valueError = null;
    r.gap = null;
    r.detail = text;
    this.#append(r);
  }

  /**
   * Records AUDIT_STOPPED after everything before it, seals, fsyncs and stops the worker. The
   * next recorder on this spool then carries on without a gap. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  /**
   * Test hook: makes this thread's writes to the spool fail (true) as a broken disk would, or
   * heal (false). Points the write path at a read-only descriptor of the current segment; not
   * for use while segments rotate.
   */
  faultSpoolForTesting(failing: boolean): void {
    if (failing && this.#faultFd === -1) {
      const segment = Atomics.load(this.#ctrl, CTRL_APPEND_SEGMENT);
      const readOnly = openSync(this.#segmentPath(segment), 'r');
      this.#closeAppend();
      this.#appendFd = readOnly;
      this.#appendSegment = segment;
      this.#faultFd = readOnly;
    } else if (!failing && this.#faultFd !== -1) {
      // Still in place unless a segment change closed it already; the next write reopens.
      if (this.#appendFd === this.#faultFd) this.#closeAppend();
      this.#faultFd = -1;
    }
  }

  /** Test hook: hold (true) or release the drain worker, to exercise a full ring and crash loss. */
  pauseDrainForTesting(paused: boolean): void {
    Atomics.store(this.#ctrl, CTRL_PAUSED, paused ? 1 : 0);
    this.#producer.wake();
    if (!paused) return;
    // Held only once the worker says so: a turn already draining when the pause came could
    // otherwise still take the reads and journal frames the test records right after it.
    const deadline = Date.now() + 5000;
    while (Atomics.load(this.#ctrl, CTRL_PAUSED_ACK) !== 1) {
      if (Date.now() > deadline) throw new Error('pauseDrainForTesting: the drain worker did not pause within 5 s');
      Atomics.wait(this.#ctrl, CTRL_PAUSED_ACK, 0, 10);
    }
  }

  // ------------------------------------------------------------------ read path

  #read(op: number, map: string, key: unknown, outcome: number, reason: string | null, bounds: RangeBounds | null): void {
    if (this.#stopping) {
      this.#afterStop++;
      return;
    }
    if (this.#dropFrom !== 0) {
      // While a drop run is open no read may be published (see #endDropRun); it closes once
      // the worker has freed a quarter of the ring.
      if (!this.#producer.hasRoom()) {
        this.#dropTo = this.#seq++;
        if (this.#dropTo > this.#reservedThrough) this.#reserve(this.#dropTo);
        this.#readsDropped++;
        return;
      }
      this.#endDropRun();
    }
    const seq = this.#seq++;
    if (seq > this.#reservedThrough) this.#reserve(seq);
    const hasTrace = this.#trace.capture();
    this.#producer.stamp();
    if (!this.#producer.tryPublish(seq, op, outcome, map, key, reason, bounds, hasTrace, this.#trace.words)) {
      this.#ringFull(seq, op, outcome, map, key, reason, bounds, hasTrace);
      return;
    }
    this.#lastReadSeq = seq;
    this.#readsRecorded++;
  }

  #ringFull(seq: number, op: number, outcome: number, map: string, key: unknown, reason: string | null, bounds: RangeBounds | null, hasTrace: boolean): void {
    // What fills the ring may not be published yet (a batch of long keys in a small ring):
    // the worker must see it to free any space, whatever the policy.
    this.#producer.publish();
    // Waiting only makes sense while a worker drains: a dead one would stall every read.
    if (this.#options.onRingFull === 'wait' && this.#worker !== undefined) {
      this.#ringFullWaits++;
      const deadline = performance.now() + this.#options.maxWaitMs;
      for (;;) {
        const left = deadline - performance.now();
        if (left <= 0) break;
        this.#producer.waitForSpace(left);
        if (this.#producer.tryPublish(seq, op, outcome, map, key, reason, bounds, hasTrace, this.#trace.words)) {
          this.#lastReadSeq = seq;
          this.#readsRecorded++;
          return;
        }
      }
    }
    if (this.#dropFrom === 0) this.#dropFrom = seq;
    this.#dropTo = seq;
    this.#readsDropped++;
  }

  /**
   * Ends a run of dropped reads: an AUDIT_GAP naming them is written on this thread (reaching
   * the file at once) before any later read is published, so a crash cannot leave a later read
   * in the log with the drop unnamed below it.
   */
  #endDropRun(): void {
    const from = this.#dropFrom;
    const to = this.#dropTo;
    this.#dropFrom = 0;
    this.#dropTo = 0;
    this.#gapRecord(from, to, 'RING_FULL', null, `${to - from + 1} read record(s) dropped: the audit ring stayed full (policy ${this.#options.onRingFull})`);
  }

  #reserve(seq: number): void {
    this.#reservedThrough = seq + this.#options.seqReservation - 1;
    try {
      const bytes = encodeSeqReservation(this.#reservedThrough);
      writeSync(this.#seqFd, bytes, 0, bytes.length, 0);
    } catch {
      // Without the reservation a crash's gap is named less tightly (from the log alone); the
      // records themselves are unaffected, and a failing disk shows in the spool's own errors.
    }
  }

  // ------------------------------------------------------------------ write path

  #write(op: OpType, map: string, key: unknown, outcome: Outcome, reason: string | null, value: unknown): void {
    if (this.#stopping) {
      this.#afterStop++;
      return;
    }
    const r = this.#record;
    r.op = op;
    r.map = map;
    r.key = key;
    r.bounds = null;
    r.outcome = OUTCOME[outcome];
    r.reason = reason;
    r.gap = null;
    r.detail = null;
    r.valueError = null;
    const recordValue = this.#options.recordValue;
    // Rendered before #append takes a seq: whatever recordValue does, the record is written.
    r.value = recordValue === false || value === undefined ? undefined : this.#renderValue(recordValue, value, r);
    this.#append(r);
    this.#writesRecorded++;
  }

  /**
   * The record's `value` from the user's `recordValue`. A function that throws or returns
   * anything but a string or null must not cost the operation its record (the STORE has been
   * applied): the value is then recorded as null with `value_error` RECORD_VALUE_FAILED, and the
   * detail says what the function did, never the value (it may hold what recordValue was meant
   * to keep out of the log).
   */
  #renderValue(recordValue: (value: unknown) => string | null, value: unknown, r: DirectRecord): string | null {
    let rendered: unknown;
    try {
      rendered = recordValue(value);
    } catch (error) {
      return this.#valueFailed(r, `recordValue threw ${error instanceof Error ? error.name : typeof error}`);
    }
    if (typeof rendered === 'string' || rendered === null) return rendered;
    const type = rendered === undefined ? 'undefined' : Array.isArray(rendered) ? 'an array' : typeof rendered === 'object' ? 'an object' : `a ${typeof rendered}`;
    return this.#valueFailed(r, `recordValue returned ${type}, not a string or null`);
  }

  #valueFailed(r: DirectRecord, what: string): null {
    r.valueError = RECORD_VALUE_FAILED;
    r.detail = `${what}; the value is not recorded`;
    if (this.#recordValueFailures++ === 0) {
      process.emitWarning(`audit recorder ${this.dir}: ${what}; such values are recorded as null with value_error ${RECORD_VALUE_FAILED} (stats().recordValueFailures counts them)`, { code: 'GOVMAP_AUDIT_RECORD_VALUE_FAILED' });
    }
    return null;
  }

  #lifecycle(op: LifecycleOpType, map: string | null, reason: string | null, detail: string | null): void {
    if (this.#stopping && op !== 'AUDIT_STOPPED') {
      this.#afterStop++;
      return;
    }
    const r = this.#record;
    r.op = op;
    r.map = map;
    r.key = undefined;
    r.bounds = null;
    r.outcome = 0;
    r.reason = reason;
    r.value = undefined;
    r.valueError = null;
    r.gap = null;
    r.detail = detail;
    this.#append(r);
  }

  #gapRecord(from: number, to: number, cause: GapCause, torn: { segment: number; offset: number; length: number } | null, detail: string): void {
    const r = this.#record;
    r.op = 'AUDIT_GAP';
    r.map = null;
    r.key = undefined;
    r.bounds = null;
    r.outcome = 0;
    r.reason = cause;
    r.value = undefined;
    r.valueError = null;
    r.gap = { from, to, cause, torn };
    r.detail = detail;
    this.#append(r);
    this.#gapsRecorded++;
  }

  /** Encodes `r` with the next seq and hands it to the journal or write(2) (to the backlog while failing). */
  #append(r: DirectRecord): void {
    const seq = this.#seq++;
    this.#appended++;
    if (seq > this.#reservedThrough) this.#reserve(seq);
    r.seq = seq;
    if (this.#trace.capture()) {
      r.traceId = this.#trace.traceId;
      r.spanId = this.#trace.spanId;
    } else {
      r.traceId = null;
      r.spanId = null;
    }
    // The real clock, but never below a read's coarse timestamp handed out before it.
    r.perfMs = this.#producer.exactStamp();
    const w = this.#writer;
    w.pos = 0;
    encodeDirect(w, r, this.#ctx);
    this.#lastWriteSeq = seq;
    if (this.#failure !== null) {
      this.#toBacklog(w.buf, 0, w.pos, seq);
      return;
    }
    if (this.#journal !== null) {
      this.#toJournal(w.buf, w.pos, seq);
      return;
    }
    this.#writeDirect(w.buf, w.pos, seq);
    this.#ringBell(w.pos);
  }

  /**
   * Seals follow the bytes, so verify can name a damaged block (and journal frames must not pile
   * up): tell the worker when this thread alone has written 4 x sealBytes. A notify is a futex
   * syscall, ~100 µs on some virtual machines: once per ~800 writes, not per 200.
   */
  #ringBell(bytes: number): void {
    this.#bytesSinceBell += bytes;
    if (this.#bytesSinceBell >= this.#options.sealBytes * 4) {
      this.#bytesSinceBell = 0;
      this.#producer.wake();
    } else {
      // A worker asleep with everything committed would otherwise fsync this only at its
      // idle timeout (see WORKER_IDLE): one shared load per write.
      this.#producer.wakeIfIdle();
    }
  }

  /**
   * The journal's write path: frames the record into the shared mapping (a memory copy: the
   * bytes are then the kernel's) and publishes the new head to the worker. A full journal waits
   * for the worker like a full ring (at most maxWaitMs), then fails over to the backlog as a
   * failing disk does; a record too large for a frame goes to write(2) once the journal is empty,
   * so the log keeps the write stream in seq order.
   */
  #toJournal(bytes: Uint8Array, length: number, seq: number): void {
    const journal = this.#journal!;
    const ctrl = this.#ctrl;
    let next = length > journal.maxRecordBytes ? -1 : journal.tryAppend(this.#journalHead, Atomics.load(ctrl, CTRL_JOURNAL_TAIL), bytes, 0, length, seq);
    if (next < 0) {
      const room = length > journal.maxRecordBytes ? (): boolean => Atomics.load(ctrl, CTRL_JOURNAL_TAIL) === this.#journalHead : (): boolean => (next = journal.tryAppend(this.#journalHead, Atomics.load(ctrl, CTRL_JOURNAL_TAIL), bytes, 0, length, seq)) >= 0;
      if (!this.#waitFor(room)) {
        this.#toBacklog(bytes, 0, length, seq);
        this.#spoolFailed(Object.assign(new AuditJournalError(join(this.dir, JOURNAL_FILE), `stayed full for ${this.#options.maxWaitMs} ms (the drain worker is not moving records into the spool)`), { code: 'AUDIT_JOURNAL_FULL' }));
        return;
      }
      if (next < 0) {
        this.#writeDirect(bytes, length, seq);
        this.#ringBell(length);
        return;
      }
    }
    this.#journalHead = next;
    Atomics.store(ctrl, CTRL_JOURNAL_HEAD, next);
    this.#ringBell(length);
  }

  /** Waits (this thread, bounded by maxWaitMs, the worker woken) until `ready()`; false on timeout. */
  #waitFor(ready: () => boolean): boolean {
    if (this.#worker === undefined) return false;
    this.#journalFullWaits++;
    const deadline = performance.now() + this.#options.maxWaitMs;
    this.#producer.wake();
    while (!ready()) {
      if (performance.now() >= deadline) return false;
      Atomics.wait(this.#sleepCell, 0, 0, 0.2);
    }
    return true;
  }

  #journalUsedBytes(): number {
    if (this.#journal === null) return 0;
    return journalBytesBetween(Atomics.load(this.#ctrl, CTRL_JOURNAL_TAIL), this.#journalHead, this.#journal.size);
  }

  /** write(2) of one record to the current segment: the path without a journal. */
  #writeDirect(bytes: Uint8Array, length: number, seq: number): void {
    const ctrl = this.#ctrl;
    Atomics.store(ctrl, CTRL_IN_WRITE, 1);
    const at = this.#appendToSpool(bytes, 0, length);
    if (at === length) this.#stats[STAT_WRITES_DONE] = seq;
    // Publishes STAT_WRITES_DONE to the worker (its fence reads this flag first).
    Atomics.store(ctrl, CTRL_IN_WRITE, 0);
    if (at < length) {
      this.#toBacklog(bytes, at, length, seq);
      this.#spoolFailed(this.#writeError);
    }
  }

  /**
   * write(2) of `bytes[from, to)` to the current segment (CTRL_IN_WRITE set by the caller),
   * continued after a short write; returns how far it got (`to` when whole; else #writeError
   * says why). A short write (a full disk) leaves the file ending inside the record: before the
   * next attempt WRITE_TORN_BY_CALLER tells the worker to append, seal and rotate nothing until
   * the rest follows (from the backlog), or a seal line would land in the middle of the record.
   * Nothing is appended while the worker's own batch is cut short, unless this thread's record
   * is (then the worker waits for it: one of the two must go first).
   */
  #appendToSpool(bytes: Uint8Array, from: number, to: number): number {
    const ctrl = this.#ctrl;
    // One shared load per write; the flag is set only while a disk fails.
    if ((Atomics.load(ctrl, CTRL_WRITE_TORN) & WRITE_TORN_BY_WORKER) !== 0 && !this.#torn) {
      this.#writeError = Object.assign(new Error(`the drain worker's last append to ${segmentName(Atomics.load(ctrl, CTRL_SEGMENT))} was cut short; write records wait in memory until it is complete`), { code: 'SPOOL_WRITE_TORN' });
      return from;
    }
    let at = from;
    try {
      // Read after CTRL_IN_WRITE was set (see the worker's rotate): one shared load per write, a
      // syscall only when the segment changed.
      const segment = Atomics.load(ctrl, CTRL_APPEND_SEGMENT);
      const fd = segment === this.#appendSegment ? this.#appendFd : this.#openAppend(segment);
      while (at < to) {
        at += writeSync(fd, bytes, at, to - at);
        if (at < to && !this.#torn) {
          this.#torn = true;
          Atomics.or(ctrl, CTRL_WRITE_TORN, WRITE_TORN_BY_CALLER);
        }
      }
    } catch (error) {
      this.#writeError = error;
      return at;
    }
    if (this.#torn) {
      this.#torn = false;
      Atomics.and(ctrl, CTRL_WRITE_TORN, ~WRITE_TORN_BY_CALLER);
    }
    return at;
  }

  /**
   * Points this thread's own descriptor at `segment` (inside CTRL_IN_WRITE, so a rotation waits for
   * it); throws while no drain worker runs (-1). O_APPEND without O_CREAT: two appenders of one file
   * each append at its end, as through one shared descriptor, and a missing segment is an error,
   * not a new file.
   */
  #openAppend(segment: number): number {
    this.#closeAppend();
    if (segment < 0) throw Object.assign(new Error('the drain worker died and no segment is written until it is restarted; write records wait in memory'), { code: 'DRAIN_WORKER_DIED' });
    this.#appendFd = openSync(this.#segmentPath(segment), fsConstants.O_WRONLY | fsConstants.O_APPEND);
    this.#appendSegment = segment;
    return this.#appendFd;
  }

  #closeAppend(): void {
    if (this.#appendFd === -1) return;
    const fd = this.#appendFd;
    this.#appendFd = -1;
    this.#appendSegment = 0;
    closeSync(fd);
  }

  /** The file of segment `segment`: the worker names the segments it rotates to by segmentName. */
  #segmentPath(segment: number): string {
    return segment === this.#recoveredSegment.segment ? this.#recoveredSegment.path : join(this.dir, segmentName(segment));
  }

  #toBacklog(bytes: Uint8Array, from: number, to: number, seq: number): void {
    // The rest of a record cut short in the file (from > 0) is always kept: the file cannot go
    // on without it.
    if (from === 0 && this.#backlogBytes + (to - from) > this.#options.maxBacklogBytes) {
      if (this.#lostFrom === 0) this.#lostFrom = seq;
      this.#lostTo = seq;
      this.#writesLost++;
      return;
    }
    this.#backlog.push(Buffer.from(bytes.subarray(from, to)));
    this.#backlogSeqs.push(seq);
    this.#backlogBytes += to - from;
  }

  #spoolFailed(error: unknown): void {
    if (this.#failure !== null) return;
    this.#failure = error;
    const e = error as NodeJS.ErrnoException;
    this.#lifecycle('SINK_FAILED', null, e.code ?? 'SPOOL_WRITE_FAILED', `spool ${this.dir}: ${e.message ?? String(error)}`);
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new AuditNotDurableError(this.dir, error));
    this.#retryTimer = setInterval(() => this.#retryBacklog(), 250);
    this.#retryTimer.unref();
  }

  #retryBacklog(): void {
    if (this.#journal !== null) {
      if (!this.#retryBacklogIntoJournal()) return;
    } else if (!this.#retryBacklogDirect()) {
      return;
    }
    const failure = this.#failure as NodeJS.ErrnoException;
    this.#failure = null;
    clearInterval(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#lostFrom !== 0) {
      const from = this.#lostFrom;
      const to = this.#lostTo;
      this.#lostFrom = 0;
      this.#lostTo = 0;
      this.#gapRecord(from, to, 'SPOOL_UNWRITABLE', null, `write records that did not fit the ${this.#options.maxBacklogBytes}-byte backlog while the spool failed`);
    }
    this.#lifecycle('SINK_RECOVERED', null, failure.code ?? 'SPOOL_WRITE_FAILED', `spool ${this.dir} writable again`);
  }

  /** Writes the backlog to the spool in order; false (the rest kept) when it still fails. */
  #retryBacklogDirect(): boolean {
    const ctrl = this.#ctrl;
    Atomics.store(ctrl, CTRL_IN_WRITE, 1);
    try {
      while (this.#backlog.length > 0) {
        const bytes = this.#backlog[0]!;
        const written = this.#appendToSpool(bytes, 0, bytes.length);
        if (written < bytes.length) {
          if (written > 0) this.#backlog[0] = bytes.subarray(written);
          this.#backlogBytes -= written;
          return false;
        }
        this.#backlog.shift();
        this.#backlogBytes -= bytes.length;
        this.#stats[STAT_WRITES_DONE] = this.#backlogSeqs.shift()!;
      }
    } finally {
      Atomics.store(ctrl, CTRL_IN_WRITE, 0);
    }
    return true;
  }

  /**
   * Frames the backlog into the journal in order, without waiting; false (the rest kept) while
   * it has no room. A record too large for a frame is written directly once the journal is empty.
   */
  #retryBacklogIntoJournal(): boolean {
    const journal = this.#journal!;
    const ctrl = this.#ctrl;
    while (this.#backlog.length > 0) {
      const bytes = this.#backlog[0]!;
      const seq = this.#backlogSeqs[0]!;
      const tail = Atomics.load(ctrl, CTRL_JOURNAL_TAIL);
      if (bytes.length > journal.maxRecordBytes) {
        if (tail !== this.#journalHead) return false;
        Atomics.store(ctrl, CTRL_IN_WRITE, 1);
        const written = this.#appendToSpool(bytes, 0, bytes.length);
        if (written === bytes.length) this.#stats[STAT_WRITES_DONE] = seq;
        Atomics.store(ctrl, CTRL_IN_WRITE, 0);
        if (written < bytes.length) {
          if (written > 0) this.#backlog[0] = bytes.subarray(written);
          this.#backlogBytes -= written;
          return false;
        }
      } else {
        const next = journal.tryAppend(this.#journalHead, tail, bytes, 0, bytes.length, seq);
        if (next < 0) {
          this.#producer.wake();
          return false;
        }
        this.#journalHead = next;
        Atomics.store(ctrl, CTRL_JOURNAL_HEAD, next);
      }
      this.#backlog.shift();
      this.#backlogSeqs.shift();
      this.#backlogBytes -= bytes.length;
    }
    this.#producer.wake();
    return true;
  }

  // ------------------------------------------------------------------ worker

  #onWorkerMessage(message: DrainWorkerMessage): void {
    switch (message.type) {
      case 'synced':
        this.#resolveWaiters();
        break;
      case 'failing': {
        const error = Object.assign(new Error(message.message), { code: message.code });
        this.#workerFailure = error;
        this.#lifecycle('SINK_FAILED', null, message.code, `drain worker: ${message.message}`);
        for (const waiter of this.#waiters.splice(0)) waiter.reject(new AuditNotDurableError(this.dir, error));
        this.#flushWaitersDone();
        break;
      }
      case 'recovered':
        this.#workerFailure = null;
        this.#lifecycle('SINK_RECOVERED', null, null, 'drain worker writes again');
        break;
      case 'stopped':
        this.#chain = message.chain;
        break;
      case 'ready':
        break;
      case 'fatal':
        this.#onWorkerDied(this.#worker!, new Error(message.message));
        break;
    }
  }

  #resolveWaiters(): void {
    const reads = this.#stats[STAT_SYNCED_READS]!;
    const writes = this.#stats[STAT_SYNCED_WRITES]!;
    const pending: FlushWaiter[] = [];
    for (const waiter of this.#waiters) {
      if (reads >= waiter.reads && writes >= waiter.writes) waiter.resolve();
      else pending.push(waiter);
    }
    this.#waiters = pending;
    if (pending.length === 0) {
      this.#flushWaitersDone();
    } else {
      // The commit that answered did not cover everyone (their reads were still draining).
      Atomics.add(this.#ctrl, CTRL_FLUSH_REQUESTS, 1);
      this.#producer.wake();
    }
  }

  #flushWaitersDone(): void {
    Atomics.store(this.#ctrl, CTRL_FLUSH_WAITERS, 0);
    if (!this.#stopping) this.#worker?.unref();
  }

  #onWorkerDied(worker: Worker, error: unknown): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    // Until the restart's recovery has looked at the spool, writes wait in the backlog (see
    // #openAppend): the dead thread may have left the file ending inside a line, and a record
    // appended to it would be glued to the torn bytes. Between the thread's exit and this, writes
    // went on through this thread's own descriptor (still open on the segment, unlike the dead
    // thread's), as a crash's would have.
    Atomics.store(this.#ctrl, CTRL_APPEND_SEGMENT, -1);
    this.#closeAppend();
    Atomics.store(this.#ctrl, CTRL_FLUSH_WAITERS, 0);
    this.#workerGone(worker, error instanceof Error ? error.message : String(error));
  }

  /**
   * Records the drain worker's death (SINK_FAILED DRAIN_WORKER_DIED: healthy is false from here)
   * and, unless stopping or past RESTART_LIMIT, schedules a new one once `dead` has exited.
   */
  #workerGone(dead: Worker | null, why: string): void {
    // Healthy until the write journal filled otherwise: hours at a low write rate, alert silent.
    this.#workerDied = new Error(why);
    const now = performance.now();
    this.#restartAttempts = this.#restartAttempts.filter((at) => now - at < RESTART_WINDOW_MS);
    const attempts = this.#restartAttempts.length;
    let detail = `drain worker: ${why}`;
    let delay = -1;
    if (!this.#started || this.#stopping) {
      // A worker that fails to start fails createAuditRecorder; one dying during stop() is not replaced.
    } else if (attempts >= RESTART_LIMIT) {
      detail += `; not restarted: ${attempts} restarts within ${RESTART_WINDOW_MS / 1000} s (limit ${RESTART_LIMIT}); reads wait in the ring and writes in the write journal until the process restarts`;
      process.emitWarning(`audit recorder ${this.dir}: the drain worker died (${why.split('\n')[0]}) and is not restarted: ${attempts} restarts within ${RESTART_WINDOW_MS / 1000} s; the spool gets nothing more until the process restarts`, { code: 'GOVMAP_AUDIT_DRAIN_WORKER_NOT_RESTARTED' });
    } else {
      delay = Math.min(RESTART_BACKOFF_MS * 2 ** attempts, RESTART_MAX_BACKOFF_MS);
      detail += `; restarting it in ${delay} ms (restart ${attempts + 1} of at most ${RESTART_LIMIT} within ${RESTART_WINDOW_MS / 1000} s)`;
    }
    this.#lifecycle('SINK_FAILED', null, 'DRAIN_WORKER_DIED', detail);
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new AuditNotDurableError(this.dir, this.#workerDied));
    if (delay < 0) return;
    // Not before the thread is gone: until then it may still append to the segment.
    const exited = dead === null ? Promise.resolve() : this.#workerExited;
    void exited.then(() => {
      if (this.#stopping) return;
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined;
        this.#restarting = this.#restartWorker().finally(() => {
          this.#restarting = undefined;
        });
      }, delay);
      // A pending restart does not keep the process alive (the worker itself is unref'd too).
      this.#restartTimer.unref();
    });
  }

  /**
   * Starts a new drain worker after one died while the process lived on. The spool is brought to
   * where a start would find it by the start's own recovery (recoverSpool): the journal's frames
   * moved in, a torn last line terminated, a segment a rotation left unsealed sealed; the chain
   * then continues from the last seal in the files, as after a crash. Unlike a crash, the ring
   * survives: reads still in it are drained by the new worker, and only those the dead one had
   * taken off it without writing them (between the last read in the log and the first one still
   * queued) are named, by an AUDIT_GAP with cause DRAIN_WORKER_DIED.
   */
  async #restartWorker(): Promise<void> {
    if (this.#stopping) return;
    this.#restartAttempts.push(performance.now());
    let recovered: RecoveredSpool;
    let segmentBytes: number;
    try {
      // The file would end inside this thread's record whose rest waits in the backlog (a failing
      // disk): recovery would terminate it as torn and the rest would follow as a line of its own.
      if (this.#torn) throw new Error('the spool ends inside a write record whose rest waits in memory (the disk is failing); retried');
      // What the producer has not published yet stays in the ring for the new worker.
      this.#producer.publish();
      recovered = recoverSpool(this.dir, this.actor, this.origin, this.#options.key);
      segmentBytes = statSync(recovered.segmentPath).size;
    } catch (error) {
      this.#workerGone(null, `restart failed: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    const ctrl = this.#ctrl;
    if (this.#journal !== null) {
      // Recovery moved every frame into the spool: the journal is empty from the head on. The tail
      // is persisted before the space is reused (the worker's own order, see releaseJournal).
      const reader = new JournalReader(join(this.dir, JOURNAL_FILE));
      try {
        reader.persistTail(this.#journalHead, recovered.writesDone);
      } finally {
        reader.close();
      }
      Atomics.store(ctrl, CTRL_JOURNAL_TAIL, this.#journalHead);
    }
    // What the dead worker left set: recovery has terminated a batch it cut short.
    Atomics.and(ctrl, CTRL_WRITE_TORN, ~WRITE_TORN_BY_WORKER);
    Atomics.store(ctrl, CTRL_WORKER_FAILING, 0);
    Atomics.store(ctrl, CTRL_WORKER_SLEEPING, 0);
    this.#workerFailure = null;
    // This thread's writes go to the recovered segment (reopened by its own descriptor at the next
    // write), from now on and as the new worker rotates.
    this.#closeAppend();
    this.#recoveredSegment = { segment: recovered.chain.segment, path: recovered.segmentPath };
    Atomics.store(ctrl, CTRL_APPEND_SEGMENT, recovered.chain.segment);
    Atomics.store(ctrl, CTRL_SEGMENT, recovered.chain.segment);
    this.#stats[STAT_SEGMENT_BYTES] = segmentBytes;
    this.#stats[STAT_READS_DONE] = recovered.readsDone;
    this.#stats[STAT_WRITES_DONE] = Math.max(this.#stats[STAT_WRITES_DONE]!, recovered.writesDone);
    this.#chain = recovered.chain;

    const ring = this.#ring;
    const head = Atomics.load(ctrl, CTRL_HEAD);
    let tail = Atomics.load(ctrl, CTRL_TAIL);
    if (tail !== head && ring.words[tail] === PAD_MARK) tail = 0;
    const firstQueued = tail === head ? this.#lastReadSeq + 1 : ring.f64[(tail + 4) >> 1]!;
    const from = recovered.readsDone + 1;
    const to = firstQueued - 1;
    const torn = recovered.gap?.torn ?? null;
    const lost = 'read records the dead drain worker had taken off the ring and not yet written were lost (writes in the range are in the log)';
    if (from <= to) {
      this.#gapRecord(from, to, 'DRAIN_WORKER_DIED', torn, lost);
    } else if (torn !== null) {
      // No read lost, but the torn bytes must be named: one seq skipped on purpose, as recovery does.
      const skip = this.#seq++;
      if (skip > this.#reservedThrough) this.#reserve(skip);
      this.#gapRecord(skip, skip, 'DRAIN_WORKER_DIED', torn, 'the dead drain worker left a torn line; no read record was lost (this seq is skipped to name it)');
    }

    const worker = this.#spawnWorker(recovered.segmentPath, recovered.readsDone);
    let ready = true;
    await this.#workerReady(worker).catch(() => {
      ready = false;
    });
    // A worker that died before it was ready was handled by #onWorkerDied (next attempt or give up).
    if (!ready || this.#worker !== worker) return;
    this.#workerDied = null;
    this.#drainWorkerRestarts++;
    if (this.#waiters.length === 0 && !this.#stopping) worker.unref();
    this.#lifecycle('SINK_RECOVERED', null, 'DRAIN_WORKER_DIED', `drain worker restarted (restart ${this.#drainWorkerRestarts} of this recorder); the chain continues at seal #${recovered.chain.seal} in segment ${recovered.chain.segment}`);
  }

  async #stop(): Promise<void> {
    // A restart under way finishes first (its worker then stops like any); a pending one is dropped.
    clearTimeout(this.#restartTimer);
    if (this.#restarting !== undefined) await this.#restarting;
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    for (const detach of [...this.#detachers]) detach();
    // AUDIT_STOPPED must be the last record: everything still in the ring goes first.
    Atomics.store(this.#ctrl, CTRL_PAUSED, 0);
    if (this.#dropFrom !== 0) this.#endDropRun();
    if (this.#worker !== undefined && this.#failure === null) {
      await new Promise<void>((resolve) => {
        this.#waiters.push({ reads: this.#lastReadSeq, writes: 0, resolve, reject: () => resolve() });
        Atomics.store(this.#ctrl, CTRL_FLUSH_WAITERS, 1);
        this.#worker?.ref();
        Atomics.add(this.#ctrl, CTRL_FLUSH_REQUESTS, 1);
        this.#producer.wake();
      });
    }
    if (this.#failure !== null) this.#retryBacklog();
    const s = this.stats();
    this.#lifecycle(
      'AUDIT_STOPPED',
      null,
      null,
      `reads ${s.readsRecorded}, writes ${s.writesRecorded}, reads dropped ${s.readsDropped}, writes lost ${s.writesLost}, not recorded after stop ${s.afterStop}`,
    );
    if (this.#worker !== undefined) {
      this.#worker.ref();
      Atomics.store(this.#ctrl, CTRL_STOP, 1);
      this.#producer.wake();
      await this.#workerExited;
      this.#worker = undefined;
    }
    if (this.#retryTimer !== undefined) clearInterval(this.#retryTimer);
    // AUDIT_STOPPED was the last write.
    this.#faultFd = -1;
    this.#closeAppend();
    // Nothing frames records any more (stopping) and the worker has moved them all.
    this.#journal?.unmap();
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new AuditStoppedError('flush'));
    if (this.#forwarder !== undefined) {
      // Give Kafka the last records (AUDIT_STOPPED included) for a moment; whatever it has not
      // acknowledged by then waits in the spool for the next start, behind the checkpoint.
      const deadline = Date.now() + this.#options.kafkaStopDrainMs;
      await this.#forwarder.drain(this.#options.kafkaStopDrainMs).catch(() => undefined);
      // The same budget: a request to a broker that never answers was held for up to the send
      // deadline (10 s by default) past it, whatever kafkaStopDrainMs said.
      await this.#forwarder.stop(Math.max(0, deadline - Date.now())).catch(() => undefined);
    }
    closeSync(this.#seqFd);
    this.#releaseLock();
  }
}

/**
 * Opens (or recovers) the spool in `options.dir` and starts recording. Attach maps with
 * `recorder.attach(map)` or pass the recorder in a map's `observers`; call `await
 * recorder.stop()` on shutdown.
 *
 *     const audit = await createAuditRecorder({ dir: './.govmap/audit', actor: 'clearing/instance-1' });
 *     audit.attach(balances);
 */
export async function createAuditRecorder(options: AuditRecorderOptions): Promise<AuditRecorder> {
  const resolved = resolveAuditOptions(options);
  let release: () => void;
  try {
    release = acquireSpoolLock(resolved.dir);
  } catch (error) {
    throw spoolDirectoryError(resolved.dir, error);
  }
  let recorder: AuditRecorder;
  let journal: JournalWriter | null = null;
  try {
    const recovered = recoverSpool(resolved.dir, resolved.actor, resolved.origin, resolved.key);
    // Recovery has moved whatever a crash left in the journal into the spool: it starts empty.
    if (resolved.writeJournal) journal = await openJournal(resolved.dir, resolved.journalBytes);
    else rmSync(join(resolved.dir, JOURNAL_FILE), { force: true });
    recorder = new AuditRecorder(BUILD, resolved, recovered, release, journal);
    await recorder.start();
  } catch (error) {
    journal?.unmap();
    release();
    throw spoolDirectoryError(resolved.dir, error);
  }
  if (resolved.kafka !== undefined) {
    const { startKafkaForwarder } = await import('./kafka-forwarder.ts');
    try {
      recorder.setForwarder(await startKafkaForwarder({ ...resolved.kafka, dir: resolved.dir, recorder, actor: resolved.actor, key: resolved.key }));
    } catch (error) {
      await recorder.stop();
      throw error;
    }
  }
  return recorder;
}
