import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { open, readFile, rename } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { AuditConfigurationError, AuditStoppedError, KafkaDrainTimeoutError, KafkaSendTimeoutError } from './errors.ts';
import type { AuditRecorder } from './recorder.ts';
import { LANE_INDEX_FIELDS, tooLarge } from './kafka-lane-protocol.ts';
import type { ProducerLaneData, ProducerLaneReply, ProducerLaneRequest } from './kafka-lane-protocol.ts';
import { listCompressedSegments, listSegments, segmentName } from './spool.ts';
import { GOVERNANCE_OPS } from './event.ts';
import { acquireForwarderLock, forwarderFileStem } from './forwarder-lock.ts';
import { NULL_OPTION_RULE, findNullOption, findUnknownOption, optionKeys } from '../map/known-options.ts';

/**
 * Options of the Kafka forwarder. Times are in ms.
 */
export interface KafkaForwarderOptions {
  /** The spool directory to forward (the recorder's `dir`). */
  readonly dir: string;
  /** Bootstrap brokers, `host:port`. */
  readonly brokers: readonly string[];
  /** Topic. Default `govmap.audit`. */
  readonly topic?: string;
  /** Kafka client id. Default `govmap-audit-forwarder`. */
  readonly clientId?: string;
  /**
   * Deadline of one send, ms. Default 10,000. The client's own retries are bounded too, but an
   * idempotent send to an unreachable broker has been seen to hang regardless: past this the
   * producer is discarded and the batch is sent again from the last acknowledged record.
   */
  readonly sendTimeoutMs?: number;
  /**
   * Record batch compression. Default `zstd` (Node's own zlib): audit lines are repetitive JSON
   * and compress ~15x, so a send carries many more records under the broker's size limit.
   */
  readonly compression?: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';
  /** Records per send. Default 20,000. */
  readonly batchRecords?: number;
  /**
   * Batches read and handed to the producer lanes before the oldest is acknowledged. Default 3.
   * Each lane gives its producer one at a time (per-key order through a failure, see
   * kafka-producer-worker.ts); the others are read and split meanwhile. Each one holds up to
   * `batchBytes` of records in memory.
   */
  readonly maxInFlight?: number;
  /**
   * Uncompressed bytes of records per send. Default 8 MiB with compression, 512 KiB without.
   * The compressed batch must stay under the broker's `message.max.bytes` (1 MiB by default); a
   * send refused as too large is retried with half the bytes, down to a single record; a single
   * record refused is sent as a substitute naming it (stats `oversized`, docs/audit.md).
   */
  readonly batchBytes?: number;
  /**
   * Producer threads ("lanes"). Default 2. Each runs its own idempotent producer in a worker
   * thread and owns the partitions `p` with `p % lanes === lane`, so a key (hence a partition)
   * is always written by one producer, in spool order. Capped by the topic's partition count: a
   * one-partition topic gets one lane. The Kafka client's work (record building, compression,
   * its garbage) runs on these threads, not on the service's event loop.
   */
  readonly producers?: number;
  /** How often an idle forwarder looks for new records, ms. Default 20. */
  readonly pollIntervalMs?: number;
  /** First retry delay after a failed send, doubling up to `maxBackoffMs`. Default 250. */
  readonly backoffMs?: number;
  /** Default 5,000. */
  readonly maxBackoffMs?: number;
  /**
   * Also put the dedup key in a `govmap-dedup` header. Default false: the key is in the value
   * already (actor, seq; see `dedupKeyOf`), and a header per record costs this client about a
   * third of its throughput.
   */
  readonly dedupHeader?: boolean;
  /** Records SINK_FAILED / SINK_RECOVERED through this recorder (set by createAuditRecorder). */
  readonly recorder?: AuditRecorder;
  /** @internal (set by createAuditRecorder) */
  readonly actor?: string;
  /** @internal */
  readonly key?: Uint8Array | null;
}

export interface KafkaForwarderStats {
  readonly topic: string;
  /** Records acknowledged by Kafka (acks=all), this process. */
  readonly sent: number;
  readonly sends: number;
  /** Failed or timed-out sends. */
  readonly errors: number;
  readonly timeouts: number;
  /** Highest seq acknowledged so far (this process or before, from the checkpoint). */
  readonly ackedSeq: number;
  /** Bytes of the spool written but not yet acknowledged by Kafka. */
  readonly lagBytes: number;
  /**
   * Records the broker refused alone as larger than the topic's `max.message.bytes`, each sent
   * as a substitute naming it (`oversized`: its size, SHA-256, segment and offset in the spool).
   */
  readonly oversized: number;
  /**
   * Records never sent because their spool segment was removed (retention, an operator) before
   * they were forwarded (SINK_FAILED `SPOOL_SEGMENT_MISSING`), this process. Counted by seq: the
   * seqs between the last acknowledged record and the first record of the segment forwarding
   * went on with (a seq an AUDIT_GAP in the removed segments named as lost counts too).
   */
  readonly skipped: number;
  /**
   * False from a failed send until the next acknowledged one, and while a request has waited
   * for Kafka longer than half of `sendTimeoutMs` (a black-holed broker: nothing fails yet).
   * After a recorded loss (SPOOL_SEGMENT_MISSING, CHECKPOINT_PAST_SPOOL_END), false until the
   * next acknowledged send or until caught up with the spool; while forwarding waits for a
   * compressed segment (SPOOL_SEGMENT_COMPRESSED), false.
   */
  readonly healthy: boolean;
  readonly lastError: string | null;
  readonly position: { readonly segment: number; readonly offset: number };
}

/** Where the forwarder stands: the byte after the last acknowledged line. */
interface Checkpoint {
  readonly segment: number;
  readonly offset: number;
  readonly seq: number;
}

export const DEDUP_HEADER = 'govmap-dedup';
/** Every key of KafkaForwarderOptions (recorder, actor and key are set by createAuditRecorder). */
const FORWARDER_OPTIONS = optionKeys<KafkaForwarderOptions>({
  dir: true, brokers: true, topic: true, clientId: true, sendTimeoutMs: true, compression: true, batchRecords: true, maxInFlight: true, batchBytes: true,
  producers: true, pollIntervalMs: true, backoffMs: true, maxBackoffMs: true, dedupHeader: true, recorder: true, actor: true, key: true,
});
const NULLABLE_OPTIONS: ReadonlySet<string> = new Set(['key']);
const SEAL_OR_HEADER = Buffer.from('{"v":1,"type":');

/** A SEAL or SEGMENT line (not a record): compared in place, no subarray per line. */
function isSealOrHeader(line: Buffer): boolean {
  if (line.length < SEAL_OR_HEADER.length) return false;
  for (let i = 0; i < SEAL_OR_HEADER.length; i++) if (line[i] !== SEAL_OR_HEADER[i]) return false;
  return true;
}
const FINAL = Buffer.from('"final":true');
const SEQ_AT = '{"v":1,"seq":'.length;
const RESOURCE = Buffer.from(',"resource_id":');
const MAP = Buffer.from(',"map":');
const ACTOR = Buffer.from(',"actor":');
/** Largest read of the spool per send, bytes. */
const READ_CHUNK = 16 << 20;
/**
 * SINK_FAILED reasons that record what already happened to the spool (records skipped, the spool
 * sent again), not a failure still going on: health comes back once forwarding catches up.
 */
const RECORDED_LOSSES: ReadonlySet<string> = new Set(['SPOOL_SEGMENT_MISSING', 'CHECKPOINT_PAST_SPOOL_END']);

/** One lane's part of a batch: its records' key and value bytes, and where each one lies. */
interface LanePart {
  readonly data: Uint8Array;
  /** LANE_INDEX_FIELDS numbers per record (see kafka-lane-protocol.ts). */
  readonly index: Uint32Array;
  readonly count: number;
}

interface Batch {
  /** Records to send, all lanes together. */
  readonly records: number;
  /** Per lane (index = lane), undefined where a lane has none of this batch. */
  readonly parts: ReadonlyArray<LanePart | undefined>;
  readonly end: Checkpoint;
  /** The cursor moved (a seal, a segment change) without records to send. */
  readonly moved: boolean;
  /** Offset (in the cursor's segment) of the batch's first record; -1 when it has none. */
  readonly firstAt: number;
  /** Set when the batch is the substitute of an oversized record. */
  readonly substitute?: true;
}

/**
 * Forwards the spool to a Kafka topic, at least once, and resumes after any outage or restart
 * from the last acknowledged record (its checkpoint, `kafka-<topic>.checkpoint` in the spool; for
 * a topic longer than 200 characters, a prefix of it and its SHA-256: see forwarderFileStem).
 *
 * Each record is sent as the exact spool line (one larger than the topic takes: a substitute
 * naming it, see #substituteFor), key = resource_id (or the map, or the actor, for
 * records without one), header `govmap-dedup: <actor>:<seq>`: a consumer drops repeats by that
 * key (see AuditDeduplicator) and gets every record exactly once. The producer is idempotent
 * with acks=all, so the broker itself drops the repeats of a retried send within one producer
 * session; repeats across sessions (a send whose ack was lost, then resent after a restart)
 * are what the dedup key is for.
 *
 * The client (@platformatic/kafka) is imported here, lazily: a recorder without `kafka` never
 * loads it.
 */
export class KafkaForwarder {
  readonly topic: string;
  readonly #o: Required<Pick<KafkaForwarderOptions, 'dir' | 'brokers' | 'clientId' | 'sendTimeoutMs' | 'compression' | 'batchRecords' | 'maxInFlight' | 'batchBytes' | 'producers' | 'pollIntervalMs' | 'backoffMs' | 'maxBackoffMs'>>;
  readonly #recorder: AuditRecorder | undefined;
  readonly #checkpointPath: string;
  readonly #dedupHeader: boolean;
  /** Producer lanes, started when first needed (index = lane). */
  readonly #lanes: ProducerLane[] = [];
  /** The topic's partition count, asked of lane 0; undefined until known and after a failure. */
  #partitions: number | undefined;
  #cursor: Checkpoint = { segment: 0, offset: 0, seq: 0 };
  #handle: { segment: number; fh: FileHandle } | undefined;
  #running: Promise<void> | undefined;
  /** Releases the forwarder lock (`kafka-<topic>.lock`); set while started. */
  #releaseLock: (() => void) | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  #failedSince: number | null = null;
  /** The SINK_FAILED reason of the failure `#failedSince` dates. */
  #failedReason = '';
  /** The compressed segments forwarding waits on, as last named (named again only when they change). */
  #compressedNamed: string | undefined;
  /** Since when the loop has waited for Kafka's answer (the oldest send, the partition count); undefined when not waiting. */
  #waitingSince: number | undefined;
  #lastError: string | null = null;
  /** Shrinks when the broker refuses a batch as too large. */
  #batchBytes = 0;
  /** A record the broker refused alone as too large, and what is sent in its place, until acknowledged. */
  #oversizedAt: { segment: number; offset: number; substitute?: Buffer } | undefined;
  #oversized = 0;
  #skipped = 0;
  #sent = 0;
  #sends = 0;
  #errors = 0;
  #timeouts = 0;

  constructor(options: KafkaForwarderOptions) {
    // Refused like the recorder's own unknown options: a misspelt `topic` would otherwise send the
    // audit to govmap.audit, a misspelt `sendTimeoutMs` leave the default, without a word.
    const unknown = findUnknownOption(options, FORWARDER_OPTIONS, 'the Kafka forwarder');
    if (unknown !== undefined) throw new AuditConfigurationError(`kafka.${unknown.option}`, unknown.rule);
    // An empty dir would forward the working directory: no segments, caught up for ever.
    if (typeof options.dir !== 'string' || options.dir === '') throw new AuditConfigurationError('dir', 'must be the spool directory (the recorder\'s dir), a non-empty path', options.dir);
    // Only `undefined` takes the default: a `topic:` left empty in a config file would otherwise
    // send the audit to govmap.audit. `key: null` is the recorder's "no HMAC key".
    const nullKey = findNullOption(options, NULLABLE_OPTIONS);
    if (nullKey !== undefined) throw new AuditConfigurationError(`kafka.${nullKey}`, NULL_OPTION_RULE, null);
    if (options.dedupHeader !== undefined && typeof options.dedupHeader !== 'boolean') throw new AuditConfigurationError('kafka.dedupHeader', 'must be true or false', options.dedupHeader);
    const brokers = options.brokers;
    if (!Array.isArray(brokers) || brokers.length === 0) throw new AuditConfigurationError('kafka.brokers', 'must be a non-empty list of "host:port"', brokers);
    // The client reads an IPv6 address in brackets; a port out of range would only fail at the
    // first connection, retried for ever.
    const hostPort = /^(?:[^\s:[\]]+|\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]):([0-9]{1,5})$/;
    const bad = (brokers as unknown[]).find((b) => {
      const port = typeof b === 'string' ? Number(hostPort.exec(b)?.[1]) : NaN;
      return !(port >= 1 && port <= 65535);
    });
    if (bad !== undefined) throw new AuditConfigurationError('kafka.brokers', `must be a non-empty list of "host:port" ("[ipv6]:port"), port 1-65535; ${JSON.stringify(bad)} is not`, brokers);
    const topic = options.topic ?? 'govmap.audit';
    const compression = options.compression ?? 'zstd';
    if (!['none', 'gzip', 'snappy', 'lz4', 'zstd'].includes(compression)) throw new AuditConfigurationError('kafka.compression', 'must be none, gzip, snappy, lz4 or zstd', compression);
    if (!/^[A-Za-z0-9._-]{1,249}$/.test(topic) || topic === '.' || topic === '..') throw new AuditConfigurationError('kafka.topic', 'must be 1-249 of [A-Za-z0-9._-], not "." or ".." (a Kafka topic name)', topic);
    // Node's timers hold 31 bits: a longer delay fires after 1 ms (every send a timeout at once).
    const ms = (name: string, value: number | undefined, fallback: number): number => {
      const v = value ?? fallback;
      if (!(typeof v === 'number' && v > 0 && v <= 2_147_483_647)) throw new AuditConfigurationError(`kafka.${name}`, 'must be a positive number of ms, at most 2,147,483,647', value);
      return v;
    };
    // Counts below 1 were floored to 0: no batch ever in flight spun the event loop for ever,
    // no record per batch sent nothing while looking healthy, no lanes failed every read.
    const count = (name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number => {
      const v = value ?? fallback;
      if (!(Number.isSafeInteger(v) && v > 0 && v <= max)) throw new AuditConfigurationError(`kafka.${name}`, max === Number.MAX_SAFE_INTEGER ? 'must be a positive integer' : `must be a whole number from 1 to ${max}`, value);
      return v;
    };
    this.topic = topic;
    this.#o = {
      dir: options.dir,
      brokers: (brokers as readonly string[]).slice(),
      clientId: options.clientId ?? 'govmap-audit-forwarder',
      sendTimeoutMs: ms('sendTimeoutMs', options.sendTimeoutMs, 10_000),
      compression,
      batchRecords: count('batchRecords', options.batchRecords, 20_000),
      maxInFlight: count('maxInFlight', options.maxInFlight, 3),
      producers: count('producers', options.producers, 2, 64),
      batchBytes: count('batchBytes', options.batchBytes, compression === 'none' ? 512 << 10 : 8 << 20),
      pollIntervalMs: ms('pollIntervalMs', options.pollIntervalMs, 20),
      backoffMs: ms('backoffMs', options.backoffMs, 250),
      maxBackoffMs: ms('maxBackoffMs', options.maxBackoffMs, 5000),
    };
    this.#batchBytes = this.#o.batchBytes;
    this.#recorder = options.recorder;
    this.#dedupHeader = options.dedupHeader === true;
    this.#checkpointPath = join(options.dir, `${forwarderFileStem(topic)}.checkpoint`);
  }

  /**
   * Starts the producer lanes (each loads the client in its thread), loads the checkpoint, and
   * starts forwarding in the background. Needs no broker: the first send connects.
   */
  async start(): Promise<void> {
    // One forwarder per spool and topic (AuditForwarderLockedError names the other): two would
    // each send every record and race on the checkpoint. A second start() of a started forwarder
    // is refused the same way (the lock names this process).
    this.#releaseLock = acquireForwarderLock(this.#o.dir, this.topic);
    try {
      this.#stopping = false;
      // A topic of 201 to ~215 characters had its checkpoint under the plain name, which fits
      // (only the lock's temporary names could fail): kept, not every record sent again.
      const plain = join(this.#o.dir, `kafka-${this.topic}.checkpoint`);
      if (plain !== this.#checkpointPath && !existsSync(this.#checkpointPath) && existsSync(plain)) await rename(plain, this.#checkpointPath);
      this.#cursor = await this.#readCheckpoint();
      await Promise.all(Array.from({ length: this.#o.producers }, (_, lane) => this.#lane(lane).ready()));
    } catch (error) {
      await Promise.all(this.#lanes.splice(0).map((lane) => lane.close()));
      this.#unlock();
      throw error;
    }
    this.#running = this.#run();
  }

  #unlock(): void {
    const release = this.#releaseLock;
    this.#releaseLock = undefined;
    release?.();
  }

  /**
   * Stops after the send in flight (if any); the checkpoint keeps the position for the next start.
   * With `timeoutMs`, a request still unanswered by then (a broker that accepts connections and
   * never answers holds one for up to `sendTimeoutMs`) is abandoned: the producer threads are
   * terminated, and what they had not had acknowledged stays behind the checkpoint.
   */
  async stop(timeoutMs?: number): Promise<void> {
    // It becomes a timer: past 2,147,483,647 ms (Infinity included) Node fires it after 1 ms, and
    // a stop meant to wait days abandoned the request in flight at once.
    if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs >= 0 && timeoutMs <= 2_147_483_647)) {
      throw new AuditConfigurationError('stop timeoutMs', 'must be a number of ms from 0 to at most 2,147,483,647 (the longest delay a Node.js timer holds; a longer one would fire after 1 ms); omit it to wait for the send in flight', timeoutMs);
    }
    this.#stopping = true;
    this.#wake?.();
    try {
      if (timeoutMs !== undefined && this.#running !== undefined) {
        let timer: NodeJS.Timeout | undefined;
        const late = await Promise.race([this.#running.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(resolve, timeoutMs, true)))]);
        clearTimeout(timer);
        // Terminated threads fail their pending requests: the loop then ends at once.
        if (late) await Promise.all(this.#lanes.map((lane) => lane.abort()));
      }
      await this.#running;
    } finally {
      // However the loop ended (its last checkpoint write can fail: a spool directory removed
      // under it), the file and the lane threads go with it.
      await this.#handle?.fh.close().catch(() => undefined);
      this.#handle = undefined;
      await Promise.all(this.#lanes.splice(0).map((lane) => lane.close()));
      this.#running = undefined;
      // Last: the next forwarder on this spool starts from the checkpoint written above.
      this.#unlock();
    }
  }

  /**
   * Resolves once every record in the spool at the time of the call is acknowledged, or rejects
   * after `timeoutMs` (default 60,000); rejects at once (AuditStoppedError) when the forwarder is
   * not running, or stops meanwhile, with records still unacknowledged.
   */
  async drain(timeoutMs = 60_000): Promise<void> {
    // NaN would make the deadline never pass: a wait for ever.
    if (!(typeof timeoutMs === 'number' && timeoutMs >= 0)) throw new AuditConfigurationError('drain timeoutMs', 'must be a number >= 0 (ms)', timeoutMs);
    const target = this.#spoolEnd();
    const deadline = Date.now() + timeoutMs;
    while (!this.#reached(target)) {
      // Nothing would move the position: the whole timeout waited for nothing, then "goes on".
      if (this.#running === undefined || this.#stopping) throw new AuditStoppedError('drain', `audit Kafka forwarder (topic "${this.topic}")`, `while it is not running (before start() or after stop()), with ${this.stats().lagBytes} bytes of the spool not acknowledged; they are sent from the checkpoint at the next start`);
      if (Date.now() > deadline) throw new KafkaDrainTimeoutError(this.topic, timeoutMs, this.stats().lagBytes, this.#lastError);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  stats(): KafkaForwarderStats {
    return {
      topic: this.topic,
      sent: this.#sent,
      sends: this.#sends,
      errors: this.#errors,
      timeouts: this.#timeouts,
      oversized: this.#oversized,
      skipped: this.#skipped,
      ackedSeq: this.#cursor.seq,
      lagBytes: this.#lagBytes(),
      // A broker that drops packets fails nothing until the deadline: sends just hang. A healthy
      // one answers a batch in milliseconds, so half the deadline without an answer is an outage.
      healthy: this.#failedSince === null && (this.#waitingSince === undefined || Date.now() - this.#waitingSince < this.#o.sendTimeoutMs / 2),
      lastError: this.#lastError,
      position: { segment: this.#cursor.segment, offset: this.#cursor.offset },
    };
  }

  // ------------------------------------------------------------------ loop

  /**
   * The send pipeline: up to `maxInFlight` batches are read, handed to the lanes and awaited in
   * spool order. A lane sends them one at a time (a send queued in the client behind a failed
   * one would be sent under a new producer session, ahead of the failed one's resend); the next
   * batches are read and split meanwhile, so the forwarder is not idle for every round trip.
   *
   * Invariants: the cursor (and the checkpoint) only moves past a batch once it and every batch
   * before it are acknowledged; on any failure every batch still in flight is let settle and then
   * dropped, the producer is discarded, and sending starts again from the cursor. A batch after
   * the failed one may have reached Kafka anyway: it is sent again (at least once), and the dedup
   * key (actor, seq) removes the repeat.
   */
  async #run(): Promise<void> {
    let backoff = this.#o.backoffMs;
    const inFlight: Array<{ readonly batch: Batch; readonly sending: Promise<void> }> = [];
    /** Where the next batch to read starts: the end of the last one in flight, or the cursor. */
    const readFrom = (): Checkpoint => inFlight.at(-1)?.batch.end ?? this.#cursor;
    while (!this.#stopping) {
      // The partition count decides which lane sends which record; asked again after a failure.
      if (this.#partitions === undefined && inFlight.length === 0) {
        try {
          this.#partitions = await this.#waitingFor(this.#lane(0).partitions());
          // Lanes beyond the partition count would have nothing to send: their threads go.
          const lanes = Math.min(this.#o.producers, this.#partitions);
          if (this.#lanes.length > lanes) await Promise.all(this.#lanes.splice(lanes).map((lane) => lane.close()));
        } catch (error) {
          this.#errors++;
          if (error instanceof KafkaSendTimeoutError) this.#timeouts++;
          this.#failed(error, error instanceof KafkaSendTimeoutError ? 'KAFKA_SEND_TIMEOUT' : 'KAFKA_SEND_FAILED');
          await this.#discardProducers();
          await this.#sleep(backoff);
          backoff = Math.min(backoff * 2, this.#o.maxBackoffMs);
          continue;
        }
      }
      // Fill the pipeline.
      let caughtUp = false;
      while (inFlight.length < this.#o.maxInFlight && !this.#stopping) {
        let batch: Batch;
        try {
          batch = await this.#readBatch(readFrom());
        } catch (error) {
          if (inFlight.length > 0) break; // settle what is in flight first; the read is retried
          this.#failed(error, 'SPOOL_READ_FAILED');
          await this.#sleep(backoff);
          break;
        }
        if (batch.records === 0 && !batch.moved) {
          caughtUp = true;
          break;
        }
        // A batch that only moves the cursor (past seals, into the next segment) rides the
        // pipeline too, so the cursor still moves in order.
        const sending = batch.records === 0 ? Promise.resolve() : this.#send(batch);
        sending.catch(() => undefined);
        inFlight.push({ batch, sending });
      }
      const oldest = inFlight.shift();
      if (oldest === undefined) {
        if (caughtUp) this.#caughtUp();
        if (caughtUp) await this.#sleep(this.#o.pollIntervalMs);
        continue;
      }
      try {
        await this.#waitingFor(oldest.sending);
      } catch (error) {
        // Let the later sends settle (their outcome no longer matters: they are resent).
        await Promise.allSettled(inFlight.splice(0).map((f) => f.sending));
        this.#errors++;
        if (error instanceof KafkaSendTimeoutError) this.#timeouts++;
        // The broker answered: a smaller batch, or a substitute for the one record it will never
        // take, is the remedy, not waiting. Only a refused substitute is left to retry (backoff).
        const refused = tooLarge(error) && oldest.batch.substitute !== true;
        if (refused && oldest.batch.records > 1) this.#batchBytes = Math.max(1, this.#batchBytes >> 1);
        this.#failed(error, error instanceof KafkaSendTimeoutError ? 'KAFKA_SEND_TIMEOUT' : 'KAFKA_SEND_FAILED');
        if (refused && oldest.batch.records === 1) this.#oversizedAt = { segment: this.#cursor.segment, offset: oldest.batch.firstAt };
        // A producer that failed may hold a stale idempotence state (or a hung connection):
        // start over with a new one, from the last acknowledged record.
        await this.#discardProducers();
        if (refused) continue;
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, this.#o.maxBackoffMs);
        continue;
      }
      const messages = oldest.batch.records;
      this.#cursor = oldest.batch.end;
      if (oldest.batch.substitute === true) {
        this.#oversized++;
        this.#oversizedAt = undefined;
        // The halvings were for that one record: the records after it go in full batches again.
        this.#batchBytes = this.#o.batchBytes;
      }
      if (messages > 0) {
        backoff = this.#o.backoffMs;
        this.#sent += messages;
        this.#sends++;
      }
      try {
        await this.#writeCheckpoint();
        // Healthy again only once the position is kept too.
        if (messages > 0) this.#recovered();
      } catch (error) {
        // The position stays in memory and is written with the next batch; a restart before
        // that resends from the older checkpoint, and dedup (actor, seq) removes the repeats.
        // A failure, not the end of forwarding.
        this.#errors++;
        this.#failed(error, 'CHECKPOINT_WRITE_FAILED');
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, this.#o.maxBackoffMs);
      }
    }
    // Stopping: let the sends in flight settle, and keep whatever of them was acknowledged.
    for (const f of inFlight.splice(0)) {
      try {
        await f.sending;
      } catch {
        break;
      }
      this.#cursor = f.batch.end;
      this.#sent += f.batch.records;
    }
    await this.#writeCheckpoint();
  }

  /**
   * Hands each lane its part of the batch (in spool order: lanes start requests in arrival
   * order) and settles once every part has settled: ok if all were acknowledged, else the first
   * failure. Settling all parts first means that when the forwarder recovers from a failure, no
   * part of a dropped batch is still being sent by a lane.
   */
  async #send(batch: Batch): Promise<void> {
    const sends: Array<Promise<unknown>> = [];
    for (let lane = 0; lane < batch.parts.length; lane++) {
      const part = batch.parts[lane];
      if (part !== undefined) sends.push(this.#lane(lane).send(part));
    }
    const settled = await Promise.allSettled(sends);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
  }

  async #waitingFor<T>(answer: Promise<T>): Promise<T> {
    this.#waitingSince = Date.now();
    try {
      return await answer;
    } finally {
      this.#waitingSince = undefined;
    }
  }

  #lane(lane: number): ProducerLane {
    while (this.#lanes.length <= lane) {
      this.#lanes.push(
        new ProducerLane(this.#lanes.length, {
          brokers: this.#o.brokers,
          clientId: this.#o.clientId,
          topic: this.topic,
          sendTimeoutMs: this.#o.sendTimeoutMs,
          compression: this.#o.compression,
          dedupHeader: this.#dedupHeader,
        }),
      );
    }
    return this.#lanes[lane]!;
  }

  /**
   * After a failure: every lane drops its producer (which may hold a stale idempotence state or
   * a hung connection); the next sends start new ones. The partition count is asked again.
   */
  async #discardProducers(): Promise<void> {
    this.#partitions = undefined;
    await Promise.all(this.#lanes.map((lane) => lane.discard()));
  }

  /**
   * `line`, at `offset` of `segment`, was refused alone as larger than the topic takes: it is
   * sent as a substitute (same dedup key, same Kafka key) that says so and names the original in
   * the spool, so the records after it are not held up for ever. Named in the audit trail
   * (SINK_FAILED, KAFKA_RECORD_TOO_LARGE) and a process warning, once per record.
   */
  #substituteFor(line: Buffer, segment: number, offset: number): Buffer {
    const sha256 = createHash('sha256').update(line).digest('hex');
    const where = { reason: 'KAFKA_MESSAGE_TOO_LARGE', bytes: line.length, sha256, segment: segmentName(segment), offset };
    const substitute = oversizedSubstitute(line, where);
    const what = `record ${dedupKeyOf(line) ?? `at byte ${offset}`} (${line.length} bytes, sha256 ${sha256}, ${where.segment} byte ${offset}) is larger than Kafka topic ${this.topic} accepts (message.max.bytes); a substitute naming it is sent in its place, the record stays in the spool`;
    this.#lastError = what;
    this.#recorder?.recordSinkEvent('SINK_FAILED', 'KAFKA_RECORD_TOO_LARGE', `kafka topic ${this.topic}: ${what}`);
    process.emitWarning(`audit forwarder: ${what}`, { code: 'GOVMAP_AUDIT_KAFKA_RECORD_TOO_LARGE' });
    return substitute;
  }

  #failed(error: unknown, reason: string): void {
    this.#lastError = error instanceof Error ? error.message : String(error);
    if (this.#failedSince !== null) {
      // A failure that only an acknowledged send ends outranks a recorded loss, which catching up ends.
      if (RECORDED_LOSSES.has(this.#failedReason) && !RECORDED_LOSSES.has(reason)) this.#failedReason = reason;
      return;
    }
    this.#failedSince = Date.now();
    this.#failedReason = reason;
    this.#recorder?.recordSinkEvent('SINK_FAILED', reason, `kafka topic ${this.topic} (${this.#o.brokers.join(',')}): ${this.#lastError}`);
  }

  /**
   * Records skipped or sent again: named in the audit trail even when an outage is already on
   * (#failed names only the start of one), as a restart after segments were removed meets them.
   */
  #lost(what: string, reason: string): void {
    const during = this.#failedSince !== null;
    this.#failed(what, reason);
    if (during) this.#recorder?.recordSinkEvent('SINK_FAILED', reason, `kafka topic ${this.topic} (${this.#o.brokers.join(',')}): ${what}`);
  }

  #recovered(): void {
    if (this.#failedSince === null) return;
    const down = Date.now() - this.#failedSince;
    this.#failedSince = null;
    this.#recorder?.recordSinkEvent('SINK_RECOVERED', 'KAFKA', `kafka topic ${this.topic}: sends acknowledged again after ${down} ms; resumed from the last acknowledged record`);
  }

  /**
   * Caught up with the spool (nothing in flight, nothing more to read). After a recorded loss
   * (segments skipped, the spool sent again) no acknowledged send may ever come to end it: a spool
   * with nothing more to send stayed unhealthy for ever though Kafka was fine. The loss itself is
   * kept in SINK_FAILED and `skipped`; health is about forwarding now.
   */
  #caughtUp(): void {
    // A wait for a compressed segment that is over (decompressed, or moved out and skipped) is
    // one more thing already recorded; while it lasts, forwarding is held up, not caught up.
    const heldUpNoMore = this.#failedReason === 'SPOOL_SEGMENT_COMPRESSED' && this.#compressedNamed === undefined;
    if (this.#failedSince === null || !(RECORDED_LOSSES.has(this.#failedReason) || heldUpNoMore)) return;
    const down = Date.now() - this.#failedSince;
    this.#failedSince = null;
    this.#recorder?.recordSinkEvent('SINK_RECOVERED', 'KAFKA', `kafka topic ${this.topic}: caught up with the spool ${down} ms after ${this.#failedReason}; what it named stays as recorded there`);
  }

  /**
   * Whether segments from `from` to `to` are in the spool compressed (`audit-000012.jsonl.gz`, as
   * log rotation leaves them): their records are there, only not readable as they are. Skipping
   * them as removed lost the records and told the operator nothing they could undo; forwarding
   * waits instead, named once (SINK_FAILED SPOOL_SEGMENT_COMPRESSED, a process warning) and
   * unhealthy, until they are decompressed (or moved out of the spool: then skipped as removed).
   */
  #waitsForCompressed(cursor: Checkpoint, from: number, to: number): boolean {
    const names = [...listCompressedSegments(this.#o.dir)].filter(([segment]) => segment >= from && segment <= to).map(([, name]) => name);
    if (names.length === 0) {
      this.#compressedNamed = undefined;
      return false;
    }
    const what = `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} compressed in the spool and not yet forwarded (position ${cursor.segment === 0 ? 'the start of the spool' : `${segmentName(cursor.segment)} byte ${cursor.offset}`}); forwarding waits: decompress ${names.length === 1 ? 'it' : 'them'} in place to go on (or move ${names.length === 1 ? 'it' : 'them'} out of the spool directory to skip ${names.length === 1 ? 'its' : 'their'} records)`;
    if (this.#compressedNamed !== what) {
      this.#compressedNamed = what;
      this.#lost(what, 'SPOOL_SEGMENT_COMPRESSED');
      process.emitWarning(`audit forwarder: kafka topic ${this.topic}: ${what}`, { code: 'GOVMAP_AUDIT_KAFKA_SEGMENT_COMPRESSED' });
    }
    return true;
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stopping) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  // ------------------------------------------------------------------ spool reading

  async #readBatch(cursor: Checkpoint): Promise<Batch> {
    const none: Batch['parts'] = [];
    if (cursor.segment === 0) {
      const first = listSegments(this.#o.dir)[0];
      if (this.#waitsForCompressed(cursor, 1, first === undefined ? Number.MAX_SAFE_INTEGER : first.segment - 1)) return { records: 0, parts: none, end: cursor, moved: false, firstAt: -1 };
      if (first === undefined) return { records: 0, parts: none, end: cursor, moved: false, firstAt: -1 };
      return { records: 0, parts: none, end: { segment: first.segment, offset: 0, seq: cursor.seq }, moved: true, firstAt: -1 };
    }
    const fh = await this.#file(cursor.segment);
    if (fh === null) {
      // Not written yet (the next one after a final seal), or gone: removed while no forwarder
      // ran (retention, an operator). Waiting for a removed segment would stall forwarding for
      // ever while looking caught up; its records cannot be sent any more, so go on with the next
      // segment there is, and say so (SINK_FAILED until the next acknowledged send).
      const segments = listSegments(this.#o.dir);
      const next = segments.find((s) => s.segment > cursor.segment);
      if (this.#waitsForCompressed(cursor, cursor.segment, next === undefined ? Number.MAX_SAFE_INTEGER : next.segment - 1)) return { records: 0, parts: none, end: cursor, moved: false, firstAt: -1 };
      if (next === undefined) {
        // Waiting is right only for the segment after the newest one's final seal. A position
        // further on (or inside a segment that is gone while none follows it) belongs to another
        // spool, or to this one before it was reset: waiting would skip everything the spool holds
        // and everything recorded until it got that far, while drain() and the lag said caught up.
        const newest = segments.at(-1);
        if (newest === undefined || (newest.segment === cursor.segment - 1 && cursor.offset === 0)) return { records: 0, parts: none, end: cursor, moved: false, firstAt: -1 };
        this.#lost(`the checkpoint's position (${segmentName(cursor.segment)}, byte ${cursor.offset}) is past the end of the spool (${newest.name}); the spool is sent again from its oldest segment`, 'CHECKPOINT_PAST_SPOOL_END');
        return { records: 0, parts: none, end: { segment: 0, offset: 0, seq: cursor.seq }, moved: true, firstAt: -1 };
      }
      const gone = next.segment - 1 === cursor.segment ? segmentName(cursor.segment) : `${segmentName(cursor.segment)} to ${segmentName(next.segment - 1)}`;
      // The files are gone, their records with them: counted by seq, from the last one
      // acknowledged to the first one of the segment forwarding goes on with.
      let lowest = 0;
      for (const s of segments) if (s.segment >= next.segment && lowest === 0) lowest = await lowestSeq(s.path);
      const skipped = lowest === 0 ? 0 : Math.max(0, lowest - 1 - cursor.seq);
      this.#skipped += skipped;
      this.#lost(`${gone} left the spool before being forwarded (from byte ${cursor.offset}; ${skipped === 0 ? 'no record known lost' : `${skipped} records, seqs ${cursor.seq + 1} to ${cursor.seq + skipped}`}); forwarding goes on with ${next.name}`, 'SPOOL_SEGMENT_MISSING');
      return { records: 0, parts: none, end: { segment: next.segment, offset: 0, seq: cursor.seq }, moved: true, firstAt: -1 };
    }
    if (cursor.offset > 0) {
      // Every position the forwarder keeps is just after a line's newline. One that is not (the
      // segment is shorter, or a line goes through it) does not belong to this segment as it is:
      // a power loss kept the datasynced checkpoint but not the segment's unsynced tail, or the
      // checkpoint comes from another spool, or the segment was cut under the forwarder. Read
      // from there, the records appended below that position would never be sent (and drain()
      // and the lag would say caught up); the segment is sent again from its start instead
      // (at least once: dedup (actor, seq) removes the repeats).
      const before = Buffer.allocUnsafe(1);
      const { bytesRead: got } = await fh.read(before, 0, 1, cursor.offset - 1);
      if (got !== 1 || before[0] !== 10) {
        const { size } = await fh.stat();
        this.#lost(`the checkpoint's position (${segmentName(cursor.segment)}, byte ${cursor.offset}) is not the end of a line of that segment (${size} bytes); the segment is sent again from its start`, 'CHECKPOINT_PAST_SPOOL_END');
        return { records: 0, parts: none, end: { segment: cursor.segment, offset: 0, seq: cursor.seq }, moved: true, firstAt: -1 };
      }
    }
    let chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, this.#batchBytes + (64 << 10)));
    let { bytesRead } = await fh.read(chunk, 0, chunk.length, cursor.offset);
    // A line longer than the read (a large `recordValue`, a shrunken batchBytes) is read whole:
    // cut, it would never be sent, and the forwarder would wait on it for ever looking caught up.
    while (bytesRead === chunk.length && chunk.indexOf(10) === -1) {
      chunk = Buffer.allocUnsafe(chunk.length * 2);
      ({ bytesRead } = await fh.read(chunk, 0, chunk.length, cursor.offset));
    }
    const lines = new LaneSplitter(this.#partitions ?? 1, Math.min(this.#o.producers, this.#partitions ?? 1));
    let at = 0;
    let seq = cursor.seq;
    let end = cursor.offset;
    let bytes = 0;
    let firstAt = -1;
    while (lines.records < this.#o.batchRecords && (bytes < this.#batchBytes || lines.records === 0)) {
      const nl = chunk.indexOf(10, at);
      if (nl === -1 || nl >= bytesRead) break;
      const line = chunk.subarray(at, nl);
      const lineStart = cursor.offset + at;
      at = nl + 1;
      const meta = isSealOrHeader(line);
      if (meta && line.includes(FINAL)) {
        // The segment is complete (nothing is appended after its final seal): move on, but only
        // once the records before it are acknowledged, so stop just before it if some are pending.
        if (lines.records > 0) return { records: lines.records, parts: lines.parts(), end: { segment: cursor.segment, offset: lineStart, seq }, moved: true, firstAt };
        return { records: 0, parts: none, end: { segment: cursor.segment + 1, offset: 0, seq }, moved: true, firstAt: -1 };
      }
      end = cursor.offset + at;
      if (meta) continue;
      const lineSeq = seqOf(line);
      const key = lineSeq === 0 ? null : keyOf(line);
      if (key === null) continue; // damaged (a torn line after a crash): verify reports it
      const oversized = this.#oversizedAt;
      if (oversized !== undefined && oversized.segment === cursor.segment && oversized.offset === lineStart) {
        // The record the broker refused alone goes as its substitute, alone: were the substitute
        // refused too, no halving could help, and it is retried like any failed send.
        if (lines.records > 0) return { records: lines.records, parts: lines.parts(), end: { segment: cursor.segment, offset: lineStart, seq }, moved: true, firstAt };
        oversized.substitute ??= this.#substituteFor(line, cursor.segment, lineStart);
        lines.add(key, oversized.substitute);
        return { records: 1, parts: lines.parts(), end: { segment: cursor.segment, offset: end, seq: Math.max(seq, lineSeq) }, moved: true, firstAt: lineStart, substitute: true };
      }
      if (firstAt === -1) firstAt = lineStart;
      lines.add(key, line);
      bytes += line.length + 64;
      if (lineSeq > seq) seq = lineSeq;
    }
    return { records: lines.records, parts: lines.parts(), end: { segment: cursor.segment, offset: end, seq }, moved: end !== cursor.offset, firstAt };
  }

  async #file(segment: number): Promise<FileHandle | null> {
    if (this.#handle?.segment === segment) return this.#handle.fh;
    await this.#handle?.fh.close();
    this.#handle = undefined;
    const path = join(this.#o.dir, segmentName(segment));
    if (!existsSync(path)) return null;
    this.#handle = { segment, fh: await open(path, 'r') };
    return this.#handle.fh;
  }

  #spoolEnd(): Checkpoint {
    const segments = listSegments(this.#o.dir);
    const last = segments.at(-1);
    if (last === undefined) return { segment: 0, offset: 0, seq: 0 };
    return { segment: last.segment, offset: statSync(last.path).size, seq: 0 };
  }

  /** Caught up with `target`: everything before it is acknowledged (seals at the end don't count). */
  #reached(target: Checkpoint): boolean {
    const c = this.#cursor;
    if (c.segment > target.segment) return true;
    if (c.segment < target.segment) return false;
    if (c.offset >= target.offset) return true;
    return this.#onlySealsBetween(c, target);
  }

  #onlySealsBetween(from: Checkpoint, to: Checkpoint): boolean {
    // The tail after the last record may be seal lines only: nothing to forward there.
    return this.#lagBytes(from, to) === 0;
  }

  #lagBytes(from: Checkpoint = this.#cursor, to?: Checkpoint): number {
    let lag = 0;
    for (const s of listSegments(this.#o.dir)) {
      if (s.segment < from.segment || (to !== undefined && s.segment > to.segment)) continue;
      const size = to !== undefined && s.segment === to.segment ? to.offset : statSync(s.path).size;
      lag += Math.max(0, size - (s.segment === from.segment ? from.offset : 0));
    }
    return lag;
  }

  async #readCheckpoint(): Promise<Checkpoint> {
    if (!existsSync(this.#checkpointPath)) return { segment: 0, offset: 0, seq: 0 };
    let value: Partial<Checkpoint> | null;
    try {
      value = JSON.parse(await readFile(this.#checkpointPath, 'utf8')) as Partial<Checkpoint> | null;
    } catch (error) {
      // An empty or torn file (a power loss between the write and the rename), or one that cannot
      // be read: the same typed refusal as any other damage, naming the file and why.
      throw new AuditConfigurationError('kafka checkpoint', `${this.#checkpointPath} cannot be read as a forwarder checkpoint (${(error as Error).message}); move it away to forward from the start`);
    }
    if (value === null || typeof value !== 'object' || !isPosition(value.segment) || !isPosition(value.offset) || !isPosition(value.seq)) {
      throw new AuditConfigurationError('kafka checkpoint', `${this.#checkpointPath} is not a forwarder checkpoint; move it away to forward from the start`);
    }
    return value as Checkpoint;
  }

  async #writeCheckpoint(): Promise<void> {
    const tmp = `${this.#checkpointPath}.tmp`;
    // The new position reaches the disk before the rename puts it in place. Without that, a power
    // loss just after the rename can leave an empty checkpoint (delayed allocation), and the
    // forwarder would refuse to start until someone moved it away. The directory is not synced:
    // losing the rename itself leaves the older checkpoint, which only resends records that dedup
    // (actor, seq) removes. About a millisecond per batch, while the batches after it are in flight.
    const handle = await open(tmp, 'w');
    try {
      await handle.writeFile(JSON.stringify({ ...this.#cursor, topic: this.topic, updatedAt: new Date().toISOString() }));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.#checkpointPath);
  }
}

/** A checkpoint field: a negative offset made every read of the spool fail, retried for ever. */
function isPosition(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/**
 * The record's outermost brace closes at the line's last byte, not before and not inside a
 * string, scanning from `from` (a byte outside any string at the record's top level, depth 1).
 * A prefix of a record (a line torn by a crash) never passes.
 */
function closesAtEnd(line: Buffer, from: number): boolean {
  const last = line.length - 1;
  if (line[last] !== 125) return false;
  let depth = 1;
  for (let i = from; i <= last; i++) {
    const c = line[i]!;
    if (c === 34) {
      i = stringEnd(line, i);
      if (i === -1) return false;
    } else if (c === 123 || c === 91) depth++;
    else if ((c === 125 || c === 93) && --depth === 0) return i === last;
  }
  return false;
}

/**
 * Where the JSON string opened at `open` ends (its closing quote), or -1. Short strings (actor,
 * origin) byte by byte; past the first 64 bytes (a recorded value can be kilobytes, and this runs
 * for every record forwarded) the next quotes are found natively, a quote being the end unless
 * an odd run of backslashes escapes it.
 */
function stringEnd(line: Buffer, open: number): number {
  const stop = Math.min(line.length, open + 64);
  let i = open + 1;
  for (; i < stop; i++) {
    const c = line[i]!;
    if (c === 92) i++;
    else if (c === 34) return i;
  }
  for (let quote = line.indexOf(34, i); quote !== -1; quote = line.indexOf(34, quote + 1)) {
    let backslashes = 0;
    while (line[quote - 1 - backslashes] === 92) backslashes++;
    if ((backslashes & 1) === 0) return quote;
  }
  return -1;
}

/**
 * The Kafka key of a record line: its resource_id, or its map, or its actor (lifecycle records
 * without either); null for a damaged line (no actor, or torn).
 */
function keyOf(line: Buffer): Buffer | null {
  // The actor closes every record (only origin and the optional fields follow): look for it
  // from the end. `,"actor":` cannot occur inside a JSON string (its quotes would be escaped).
  const actorAt = line.lastIndexOf(ACTOR);
  if (actorAt < 0 || line[actorAt + ACTOR.length] !== 34) return null;
  // A line torn by a crash (recovery terminates it and names it in an AUDIT_GAP) can hold the seq
  // and the actor: sent, it would reach consumers as broken JSON, and, when recovery replays the
  // whole record from the journal after it, the dedup key would keep the torn copy and drop the
  // real one. Only whole records go. Checked from the actor on (the tail, not the whole line).
  if (!closesAtEnd(line, actorAt)) return null;
  const resource = jsonStringAt(line, line.indexOf(RESOURCE) + RESOURCE.length);
  return resource ?? jsonStringAt(line, line.indexOf(MAP) + MAP.length) ?? jsonStringAt(line, actorAt + ACTOR.length);
}

/**
 * Splits a batch's records between the lanes by partition: partition = murmur2(key) modulo the
 * partition count (the client's default partitioner, computed here once), lane = partition
 * modulo the lanes. Each lane's records are copied into one buffer (transferred to its thread,
 * not copied again), in spool order.
 */
class LaneSplitter {
  readonly #partitions: number;
  readonly #keys: Buffer[][] = [];
  readonly #lines: Buffer[][] = [];
  readonly #partition: number[][] = [];
  records = 0;

  constructor(partitions: number, lanes: number) {
    this.#partitions = partitions;
    for (let i = 0; i < lanes; i++) {
      this.#keys.push([]);
      this.#lines.push([]);
      this.#partition.push([]);
    }
  }

  add(key: Buffer, line: Buffer): void {
    const partition = murmur2Partition(key) % this.#partitions;
    const lane = partition % this.#keys.length;
    this.#keys[lane]!.push(key);
    this.#lines[lane]!.push(line);
    this.#partition[lane]!.push(partition);
    this.records++;
  }

  parts(): Array<LanePart | undefined> {
    const parts: Array<LanePart | undefined> = [];
    for (let lane = 0; lane < this.#keys.length; lane++) {
      const keys = this.#keys[lane]!;
      const lines = this.#lines[lane]!;
      const partitions = this.#partition[lane]!;
      const count = keys.length;
      if (count === 0) {
        parts.push(undefined);
        continue;
      }
      let size = 0;
      for (let r = 0; r < count; r++) size += keys[r]!.length + lines[r]!.length;
      const data = new Uint8Array(size);
      const index = new Uint32Array(count * LANE_INDEX_FIELDS);
      let at = 0;
      for (let r = 0, i = 0; r < count; r++, i += LANE_INDEX_FIELDS) {
        const key = keys[r]!;
        const line = lines[r]!;
        data.set(key, at);
        index[i] = at;
        index[i + 1] = at += key.length;
        data.set(line, at);
        index[i + 2] = at;
        index[i + 3] = at += line.length;
        index[i + 4] = partitions[r]!;
      }
      parts.push({ data, index, count });
    }
    return parts;
  }
}

/**
 * A producer lane: a worker thread (kafka-producer-worker.ts) with its own idempotent producer.
 * Requests are answered in the order the lane settles them, matched by id. A lane whose thread
 * dies fails its pending requests and is started again by the next request.
 */
class ProducerLane {
  readonly #lane: number;
  readonly #data: ProducerLaneData;
  #worker: Worker | undefined;
  /** Threads that failed ('error') and are still exiting: close() waits for them too. */
  readonly #exiting = new Set<Promise<unknown>>();
  readonly #pending = new Map<number, { resolve: (reply: Extract<ProducerLaneReply, { type: 'ok' }>) => void; reject: (error: unknown) => void; records: number }>();
  #nextId = 1;

  constructor(lane: number, data: ProducerLaneData) {
    this.#lane = lane;
    this.#data = data;
  }

  send(part: LanePart): Promise<unknown> {
    return this.#request({ type: 'send', id: 0, data: part.data, index: part.index, count: part.count }, part.count, [part.data.buffer as ArrayBuffer, part.index.buffer as ArrayBuffer]);
  }

  async partitions(): Promise<number> {
    const reply = await this.#request({ type: 'partitions', id: 0 }, 0);
    if (!(Number.isSafeInteger(reply.count) && reply.count! > 0)) throw new Error(`Kafka reported ${String(reply.count)} partitions for topic "${this.#data.topic}"`);
    return reply.count!;
  }

  /** Starts the thread if needed; resolves once it has loaded the client and answers. */
  async ready(): Promise<void> {
    await this.#request({ type: 'discard', id: 0 }, 0);
  }

  async discard(): Promise<void> {
    if (this.#worker === undefined) return;
    await this.#request({ type: 'discard', id: 0 }, 0).catch(() => undefined);
  }

  /** Terminates the thread now (no goodbye to the broker): its pending requests fail. */
  async abort(): Promise<void> {
    const worker = this.#worker;
    if (worker !== undefined) await worker.terminate();
    await Promise.all(this.#exiting);
  }

  async close(): Promise<void> {
    // A thread dropped at its 'error' event is still shutting down: stop() promises no lane
    // thread outlives it.
    await Promise.all(this.#exiting);
    const worker = this.#worker;
    if (worker === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#request({ type: 'close', id: 0 }, 0).catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, 3000)))]);
    clearTimeout(timer);
    this.#worker = undefined;
    await worker.terminate();
  }

  #request(request: ProducerLaneRequest, records: number, transfer: ArrayBuffer[] = []): Promise<Extract<ProducerLaneReply, { type: 'ok' }>> {
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, records });
      // Referenced only while it owes a reply (see #start).
      if (this.#pending.size === 1) worker.ref();
      worker.postMessage({ ...request, id }, transfer);
    });
  }

  #start(): Worker {
    const url = new URL(import.meta.url.endsWith('.ts') ? './kafka-producer-worker.ts' : './kafka-producer-worker.js', import.meta.url);
    const worker = new Worker(url, { workerData: this.#data, name: `govmap-audit-kafka-${this.#lane}` });
    // An idle lane must not keep the process alive: were a lane ever left behind (as when stop()
    // used to throw on a failed last checkpoint before closing its lanes), it would hold a
    // service's or a script's exit forever. Referenced while a request waits for its reply, so
    // `await forwarder.stop()` in a script still gets its answer.
    worker.unref();
    const died = (error: Error): void => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      const exited = worker.terminate().catch(() => undefined);
      this.#exiting.add(exited);
      void exited.then(() => this.#exiting.delete(exited));
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
    };
    worker.on('message', (reply: ProducerLaneReply) => {
      const pending = this.#pending.get(reply.id);
      if (pending === undefined) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if (reply.type === 'ok') pending.resolve(reply);
      else if (reply.timeout) pending.reject(new KafkaSendTimeoutError(this.#data.topic, pending.records, this.#data.sendTimeoutMs));
      else pending.reject(Object.assign(new Error(reply.message), reply.tooLarge ? { apiId: 'MESSAGE_TOO_LARGE' } : {}));
    });
    worker.on('error', died);
    worker.on('exit', (code) => died(new Error(`audit forwarder: producer lane ${this.#lane} exited with code ${code}`)));
    this.#worker = worker;
    return worker;
  }
}

/**
 * Kafka's murmur2 of `key` (the Java client's `Utils.murmur2`), as an unsigned 32-bit number:
 * exactly what @platformatic/kafka's `defaultPartitioner` returns (`murmur2(key) >>> 0`, before
 * the client takes it modulo the partition count), so a key keeps the partition earlier
 * versions of this forwarder gave it (per-key order across an upgrade). int32 arithmetic:
 * `Math.imul` is the Java `int` multiplication.
 */
export function murmur2Partition(key: Uint8Array): number {
  const m = 0x5bd1e995;
  const length = key.length;
  let h = 0x9747b28c ^ length;
  const blocks = length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length & 3;
  if (tail > 0) {
    if (tail === 3) h ^= key[blocks + 2]! << 16;
    if (tail >= 2) h ^= key[blocks + 1]! << 8;
    h ^= key[blocks]!;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h >>> 0;
}

/**
 * What is sent in place of a record too large for the topic: the record without its value (or
 * non-governance detail), with `oversized` naming the original (size, SHA-256, segment, offset).
 * Same seq and actor, so the same dedup key. A line that does not parse (keyOf let it through)
 * still gets a substitute with the dedup key.
 */
function oversizedSubstitute(line: Buffer, oversized: { reason: string; bytes: number; sha256: string; segment: string; offset: number }): Buffer {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line.toString('utf8')) as Record<string, unknown>;
  } catch {
    const actor = jsonStringAt(line, line.indexOf(ACTOR) + ACTOR.length)?.toString('utf8') ?? null;
    record = { v: 1, seq: seqOf(line), actor };
  }
  if ('value' in record) record.value = null;
  if ('detail' in record && !(GOVERNANCE_OPS as readonly unknown[]).includes(record.op_type)) record.detail = null;
  record.oversized = oversized;
  return Buffer.from(JSON.stringify(record));
}

/** The lowest record seq of a segment file (its two streams interleave), 0 when it holds none or cannot be read. */
async function lowestSeq(path: string): Promise<number> {
  let lowest = 0;
  /** The start of the line being read: its seq is in its first bytes, whatever its length. */
  let head = Buffer.alloc(0);
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      let at = 0;
      for (;;) {
        const nl = chunk.indexOf(10, at);
        if (head.length < SEQ_AT + 16) head = Buffer.concat([head, chunk.subarray(at, Math.min(nl === -1 ? chunk.length : nl, at + SEQ_AT + 16 - head.length))]);
        if (nl === -1) break;
        const seq = seqOf(head);
        if (seq > 0 && (lowest === 0 || seq < lowest)) lowest = seq;
        head = Buffer.alloc(0);
        at = nl + 1;
      }
    }
  } catch {
    // Removed meanwhile: what it held is not counted.
  }
  return lowest;
}

/** The seq of a record line (its fixed prefix), 0 when the line is not a record. */
function seqOf(line: Buffer): number {
  let seq = 0;
  let i = SEQ_AT;
  for (; i < line.length && i < SEQ_AT + 16; i++) {
    const c = line[i]!;
    if (c < 48 || c > 57) break;
    seq = seq * 10 + (c - 48);
  }
  return i === SEQ_AT ? 0 : seq;
}

/**
 * The dedup key `<actor>:<seq>` of a record as it arrives from Kafka (the message value), or null
 * for something that is not an audit record.
 */
export function dedupKeyOf(value: Buffer | string): string | null {
  const line = typeof value === 'string' ? Buffer.from(value) : value;
  const seq = seqOf(line);
  const actor = jsonStringAt(line, line.indexOf(ACTOR) + ACTOR.length);
  return seq === 0 || actor === null ? null : `${actor.toString('utf8')}:${seq}`;
}

/** The bytes of the JSON string starting at `at` (a `"`), unescaped; null for `null` or damage. */
function jsonStringAt(line: Buffer, at: number): Buffer | null {
  if (at <= 0 || line[at] !== 34) return null;
  let escaped = false;
  for (let i = at + 1; i < line.length; i++) {
    const c = line[i]!;
    if (c === 92) {
      escaped = true;
      i++;
    } else if (c === 34) {
      if (!escaped) return line.subarray(at + 1, i);
      try {
        return Buffer.from(JSON.parse(line.toString('utf8', at, i + 1)) as string);
      } catch {
        return null;
      }
    }
  }
  return null;
}

export async function startKafkaForwarder(options: KafkaForwarderOptions): Promise<KafkaForwarder> {
  const forwarder = new KafkaForwarder(options);
  await forwarder.start();
  return forwarder;
}

/**
 * Exactly-once on the consumer side: accepts a record the first time its (actor, seq) is seen.
 * Memory per actor: the highest seq below which everything was seen or given up on, plus the seqs
 * seen above it (a small set while records arrive nearly in order), plus the ranges given up on.
 * Past `maxPending` seqs held (seqs that never come, named by an AUDIT_GAP; a partition read far
 * ahead of another), the mark jumps: first past the seqs missing below the lowest held one (a gap
 * that never fills: exact), then, if more than half the bound is still held, past the lower half
 * of what is held. Every seq it jumps over that was not seen stays acceptable (a late record, on
 * a partition read behind the others, is never taken for a repeat); the price is that a repeat of
 * a seq inside a range jumped over slips through. Memory stays bounded, and each jump frees at
 * least half the bound, so a record costs O(1) amortized.
 */
export class AuditDeduplicator {
  readonly #actors = new Map<string, { through: number; above: Set<number>; late: number[] }>();
  readonly #maxPending: number;
  /** Ranges jumped over kept per actor; past it the two lowest merge (older repeats slip through). */
  readonly #maxRanges: number;
  #duplicates = 0;

  constructor(maxPending = 1_000_000) {
    // 0 or NaN made every record jump the mark (a scan each), a fraction is meaningless.
    if (!(Number.isSafeInteger(maxPending) && maxPending > 0)) throw new AuditConfigurationError('AuditDeduplicator maxPending', 'must be a positive integer (seqs held per actor)', maxPending);
    this.#maxPending = maxPending;
    this.#maxRanges = Math.max(16, Math.min(MAX_LATE_RANGES, maxPending));
  }

  /** Accepts a Kafka message value (an audit record line): true the first time only. */
  acceptRecord(value: Buffer | string): boolean {
    const key = dedupKeyOf(value);
    return key === null ? false : this.accept(key);
  }

  /**
   * `dedup` is a dedup key (`<actor>:<seq>`, as in the optional header). True the first time only;
   * false, like `acceptRecord` for what is not a record, for a string that is not a dedup key.
   */
  accept(dedup: string): boolean {
    const cut = dedup.lastIndexOf(':');
    const seq = Number(dedup.slice(cut + 1));
    // A foreign or damaged header used to be held as a seq (NaN, 1.5): its jumps then made
    // ranges that took the actor's late records for repeats, dropping them.
    if (cut === -1 || !/^[1-9][0-9]*$/.test(dedup.slice(cut + 1)) || !Number.isSafeInteger(seq)) return false;
    const actor = dedup.slice(0, cut);
    let state = this.#actors.get(actor);
    if (state === undefined) {
      state = { through: 0, above: new Set(), late: [] };
      this.#actors.set(actor, state);
    }
    if (seq <= state.through) {
      // Jumped over: a record not seen then is new (a late partition), not a repeat; taken out of
      // its range, so that its own repeat is one.
      if (takeFromRanges(state.late, seq, this.#maxRanges)) return true;
      this.#duplicates++;
      return false;
    }
    if (state.above.has(seq)) {
      this.#duplicates++;
      return false;
    }
    state.above.add(seq);
    // The mark used to jump to the lowest held seq, taking every seq below it that had not come
    // yet for seen: a partition read behind another lost its records to the dedup, and with the
    // set full each record rescanned it whole.
    if (state.above.size > this.#maxPending) this.#jump(state);
    while (state.above.has(state.through + 1)) {
      state.above.delete(state.through + 1);
      state.through++;
    }
    return true;
  }

  /**
   * Past the bound: the lower half of the held seqs is let go. The mark moves to the highest of
   * them, and only the seqs between them that have not arrived (a partition read behind another,
   * a seq lost with an AUDIT_GAP) go to the late ranges: each is still accepted once, and every
   * seq that did arrive stays a repeat. (The mark used to give up whole stretches, seen and unseen
   * alike, so a repeat of a record accepted a moment before could pass.)
   */
  #jump(state: { through: number; above: Set<number>; late: number[] }): void {
    const held = Float64Array.from(state.above).sort();
    const release = held.length - (this.#maxPending >> 1);
    let mark = state.through;
    for (let j = 0; j < release; j++) {
      const seq = held[j]!;
      if (seq > mark + 1) appendRange(state.late, mark + 1, seq - 1);
      state.above.delete(seq);
      mark = seq;
    }
    state.through = mark;
    capRanges(state.late, this.#maxRanges);
  }

  get duplicates(): number {
    return this.#duplicates;
  }
}

/** At most this many ranges jumped over per actor (bounded by maxPending too). */
const MAX_LATE_RANGES = 1024;

/** `ranges` is flat [from, to, from, to...], ascending and disjoint; `from` is above them all. */
function appendRange(ranges: number[], from: number, to: number): void {
  if (ranges.length > 0 && ranges[ranges.length - 1]! >= from - 1) ranges[ranges.length - 1] = to;
  else ranges.push(from, to);
}

/**
 * Past `max` ranges the lowest (oldest) merge into one: the seen seqs between them become
 * acceptable again. That is the price of the bound, paid by the oldest records only.
 */
function capRanges(ranges: number[], max: number): void {
  const excess = (ranges.length >> 1) - max;
  if (excess > 0) ranges.splice(1, excess * 2);
}

/** Removes `seq` from the range holding it: true if one did. */
function takeFromRanges(ranges: number[], seq: number, max: number): boolean {
  let lo = 0;
  let hi = (ranges.length >> 1) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const from = ranges[mid * 2]!;
    const to = ranges[mid * 2 + 1]!;
    if (seq < from) hi = mid - 1;
    else if (seq > to) lo = mid + 1;
    else {
      if (from === to) ranges.splice(mid * 2, 2);
      else if (seq === from) ranges[mid * 2] = seq + 1;
      else if (seq === to) ranges[mid * 2 + 1] = seq - 1;
      else {
        ranges.splice(mid * 2 + 1, 0, seq - 1, seq + 1);
        // Past the bound two ranges merge, the lowest pair: but not the two halves just split,
        // which would make `seq` (accepted this moment) acceptable again.
        if (ranges.length >> 1 > max) ranges.splice(mid === 0 ? 3 : 1, 2);
      }
      return true;
    }
  }
  return false;
}
