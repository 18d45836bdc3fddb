import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { findUnknownOption } from '../map/known-options.ts';
import { AuditConfigurationError } from './errors.ts';
import type { KafkaForwarderOptions } from './kafka-forwarder.ts';

/** Options of `createAuditRecorder`. Units are in the names' docs; every field but two has a default. */
export interface AuditRecorderOptions {
  /** Spool directory (created if absent). One recorder per directory. */
  readonly dir: string;
  /** Who acts, as the `actor` of every record: `<service>/<instance>`, stable across restarts. */
  readonly actor: string;
  /** Where records originate. Default `<hostname>/pid-<pid>`. */
  readonly origin?: string;
  /** Longest a record stays un-fsynced without anyone waiting for it, ms. Default 10. */
  readonly fsyncIntervalMs?: number;
  /** Seal (chain) at least every this many bytes, so verify localises damage to one block. Default 65,536. */
  readonly sealBytes?: number;
  /** Rotate the segment file after this many bytes. Default 67,108,864 (64 MiB). */
  readonly maxSegmentBytes?: number;
  /** Size of the read ring shared with the drain worker, bytes. Default 8,388,608 (8 MiB, ~95,000 reads). */
  readonly ringBytes?: number;
  /**
   * What a read does when the ring is full: `wait` (default) blocks the reading thread until the
   * worker frees space, at most `maxWaitMs`, then drops; `drop` drops at once. Dropped reads are
   * never silent: their seqs are named by an AUDIT_GAP record (cause RING_FULL) and counted in
   * `govmap_audit_ring_full_total`.
   */
  readonly onRingFull?: 'wait' | 'drop';
  /** Longest a read waits for ring space under `wait`, ms. Default 1,000. */
  readonly maxWaitMs?: number;
  /** Seqs reserved (written to SEQ) at a time; a crash's gap is at most this much wider than the loss. Default 4,096. */
  readonly seqReservation?: number;
  /** HMAC-SHA256 key for the chain, read from a file or an environment variable (at least 16 bytes). Default: plain SHA-256. */
  readonly hmacKey?: { readonly file: string } | { readonly env: string };
  /**
   * How a written value becomes the record's `value`. Default: bigints and safe integers as
   * decimal strings (money in minor units), anything else null (never a float, never an object
   * that may hold personal data). `false`: no value field.
   */
  readonly recordValue?: false | ((value: unknown) => string | null);
  /** Write records held in memory while the spool cannot be written, bytes. Default 67,108,864. */
  readonly maxBacklogBytes?: number;
  /**
   * Write records reach the OS through a shared file mapping (`JOURNAL` in the spool) instead of
   * one write(2) each: a STORE's audit costs a memory copy, not a system call, with the same
   * crash guarantee (see docs/audit.md, "The write journal"). Linux only; loads the koffi
   * package. Default: true on Linux, false elsewhere; the environment variable
   * GOVMAP_AUDIT_WRITE_JOURNAL=0 or =1 overrides the default.
   */
  readonly writeJournal?: boolean;
  /** Size of the write journal, bytes. Default 16,777,216 (16 MiB, ~60,000 write records). */
  readonly journalBytes?: number;
  /** Forward the spool to Kafka (the client loads only when this is set). */
  readonly kafka?: Omit<KafkaForwarderOptions, 'dir'>;
  /** On stop(), how long the forwarder may take to hand Kafka the last records, ms. Default 5,000. */
  readonly kafkaStopDrainMs?: number;
}

export interface ResolvedAuditOptions {
  readonly dir: string;
  readonly actor: string;
  readonly origin: string;
  readonly fsyncIntervalMs: number;
  readonly sealBytes: number;
  readonly maxSegmentBytes: number;
  readonly ringBytes: number;
  readonly onRingFull: 'wait' | 'drop';
  readonly maxWaitMs: number;
  readonly seqReservation: number;
  readonly key: Uint8Array | null;
  readonly recordValue: false | ((value: unknown) => string | null);
  readonly maxBacklogBytes: number;
  readonly writeJournal: boolean;
  readonly journalBytes: number;
  readonly kafka: Omit<KafkaForwarderOptions, 'dir'> | undefined;
  readonly kafkaStopDrainMs: number;
}

const IDENTITY = /^[\x21-\x7e]{1,256}$/;

const schema = z.strictObject({
  dir: z.string().min(1, 'must be a directory path'),
  actor: z.string().regex(IDENTITY, 'must be 1-256 printable ASCII characters without spaces, e.g. "clearing/instance-1"'),
  origin: z.string().regex(IDENTITY, 'must be 1-256 printable ASCII characters without spaces').optional(),
  fsyncIntervalMs: z.number().min(1, 'must be at least 1 ms').max(10_000, 'must be at most 10,000 ms').optional(),
  sealBytes: z.int().min(4096, 'must be at least 4,096 bytes').max(64 << 20, 'must be at most 64 MiB').optional(),
  maxSegmentBytes: z.int().min(1 << 16, 'must be at least 65,536 bytes').max(2 ** 31 - 1, 'must be below 2 GiB').optional(),
  ringBytes: z.int().min(1 << 16, 'must be at least 65,536 bytes').max(1 << 30, 'must be at most 1 GiB').optional(),
  onRingFull: z.enum(['wait', 'drop'], 'must be "wait" or "drop"').optional(),
  maxWaitMs: z.number().min(0, 'must be >= 0 ms').max(60_000, 'must be at most 60,000 ms').optional(),
  seqReservation: z.int().min(1, 'must be a positive integer').max(1 << 24, 'must be at most 16,777,216').optional(),
  hmacKey: z.union([z.strictObject({ file: z.string().min(1) }), z.strictObject({ env: z.string().min(1) })], 'must be {file: path} or {env: NAME}').optional(),
  recordValue: z.union([z.literal(false), z.custom<(value: unknown) => string | null>((v) => typeof v === 'function')], 'must be false or a function').optional(),
  maxBacklogBytes: z.int().min(0, 'must be >= 0').optional(),
  writeJournal: z.boolean('must be true or false').optional(),
  journalBytes: z.int().min(1 << 16, 'must be at least 65,536 bytes').max(1 << 30, 'must be at most 1 GiB').multipleOf(8, 'must be a multiple of 8').optional(),
  kafkaStopDrainMs: z.number().min(0, 'must be >= 0 ms').max(600_000, 'must be at most 600,000 ms').optional(),
  kafka: z.custom<Omit<KafkaForwarderOptions, 'dir'>>((v) => v !== null && typeof v === 'object', 'must be an object (see KafkaForwarderOptions)').optional(),
});

const OPTION_NAMES: ReadonlySet<string> = new Set(Object.keys(schema.shape));
const MIN_KEY_BYTES = 16;

export function resolveAuditOptions(options: AuditRecorderOptions): ResolvedAuditOptions {
  if (options === null || typeof options !== 'object') throw new AuditConfigurationError('options', 'createAuditRecorder needs {dir, actor}');
  // Before zod: its strict object names the whole options object, not the misspelt key.
  const unknown = findUnknownOption(options, OPTION_NAMES, 'createAuditRecorder');
  if (unknown !== undefined) throw new AuditConfigurationError(unknown.option, unknown.rule);
  const parsed = schema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const option = issue.path.length > 0 ? issue.path.join('.') : 'options';
    const received = issue.path.reduce<unknown>((v, k) => (v as Record<PropertyKey, unknown> | undefined)?.[k], options);
    throw new AuditConfigurationError(option, issue.message, typeof received === 'function' ? undefined : received);
  }
  const o = parsed.data;
  return {
    dir: o.dir,
    actor: o.actor,
    origin: o.origin ?? `${hostname()}/pid-${process.pid}`,
    fsyncIntervalMs: o.fsyncIntervalMs ?? 10,
    sealBytes: o.sealBytes ?? 65_536,
    maxSegmentBytes: o.maxSegmentBytes ?? 64 << 20,
    ringBytes: o.ringBytes ?? 8 << 20,
    onRingFull: o.onRingFull ?? 'wait',
    maxWaitMs: o.maxWaitMs ?? 1000,
    seqReservation: o.seqReservation ?? 4096,
    key: o.hmacKey === undefined ? null : loadKey(o.hmacKey),
    recordValue: o.recordValue ?? defaultRecordValue,
    maxBacklogBytes: o.maxBacklogBytes ?? 64 << 20,
    writeJournal: o.writeJournal ?? defaultWriteJournal(),
    journalBytes: o.journalBytes ?? 16 << 20,
    kafka: o.kafka,
    kafkaStopDrainMs: o.kafkaStopDrainMs ?? 5000,
  };
}

function defaultWriteJournal(): boolean {
  const env = process.env.GOVMAP_AUDIT_WRITE_JOURNAL;
  if (env === '0' || env === '1') return env === '1';
  if (env !== undefined && env !== '') throw new AuditConfigurationError('GOVMAP_AUDIT_WRITE_JOURNAL', 'must be 0 or 1', env);
  return process.platform === 'linux';
}

/** Reads an HMAC key from a file (one trailing newline ignored) or an environment variable. */
export function loadKey(source: { readonly file: string } | { readonly env: string }): Uint8Array {
  let key: Buffer;
  let where: string;
  if ('file' in source) {
    where = `hmacKey.file (${source.file})`;
    try {
      key = readFileSync(source.file);
    } catch (error) {
      throw new AuditConfigurationError('hmacKey.file', `cannot read the key file: ${(error as Error).message}`);
    }
    if (key.at(-1) === 10) key = key.subarray(0, key.at(-2) === 13 ? -2 : -1);
  } else {
    where = `hmacKey.env (${source.env})`;
    const value = process.env[source.env];
    if (value === undefined) throw new AuditConfigurationError('hmacKey.env', `environment variable ${source.env} is not set`);
    if (value === '') throw new AuditConfigurationError('hmacKey.env', `environment variable ${source.env} is set but empty`);
    key = Buffer.from(value, 'utf8');
  }
  if (key.length < MIN_KEY_BYTES) throw new AuditConfigurationError(where.split(' ')[0]!, `the key must be at least ${MIN_KEY_BYTES} bytes (got ${key.length})`);
  return new Uint8Array(key);
}

/** Money and ids as decimal strings; nothing else (a float is never an amount, an object may be PII). */
export function defaultRecordValue(value: unknown): string | null {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return null;
}
