import { createHash, createHmac } from 'node:crypto';
import type { Hash, Hmac } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, fsyncSync, openSync, readdirSync, readFileSync, readSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { GENESIS_HASH } from './event.ts';
import type { ChainAlgorithm, SealRecord } from './event.ts';

/**
 * The spool directory: segment files `audit-000001.jsonl`, `audit-000002.jsonl`, ... (append-only
 * JSON lines, rotated by size), and three small files beside them:
 *   HEAD  the last committed seal (segment, number, offset, hash): verify compares the log with
 *         it, so cutting whole records off the end is caught, not only cutting into one
 *   SEQ   how far seqs are reserved: a crash can lose read records up to here, and the restart
 *         names that range in an AUDIT_GAP record
 *   LOCK  the pid and host of the recorder writing the directory (one writer per spool)
 * and, with Kafka, `kafka-<topic>.checkpoint`: the forwarder's last acknowledged position.
 * and `kafka-<topic>.lock`: the pid, host and start time of the forwarder running (one per topic).
 */
export const SEGMENT_PATTERN = /^audit-([0-9]{6,})\.jsonl$/;
export const HEAD_FILE = 'HEAD';
export const SEQ_FILE = 'SEQ';
export const LOCK_FILE = 'LOCK';
/** HEAD is rewritten in place; a fixed size keeps each rewrite one write of one page. */
export const HEAD_BYTES = 512;
const SEQ_BYTES = 21;

export function segmentName(segment: number): string {
  return `audit-${String(segment).padStart(6, '0')}.jsonl`;
}

export interface SegmentFile {
  readonly segment: number;
  readonly name: string;
  readonly path: string;
}

/**
 * Segment files of a spool directory, in order. Two names can carry one number
 * (`audit-000003.jsonl`, `audit-0000003.jsonl`); the one the recorder writes (`segmentName`) comes
 * first, so readers that take the first of a number read the recorder's file, and verify reports
 * the other.
 */
export function listSegments(dir: string): SegmentFile[] {
  if (!existsSync(dir)) return [];
  const out: SegmentFile[] = [];
  for (const name of readdirSync(dir)) {
    const match = SEGMENT_PATTERN.exec(name);
    if (match !== null) out.push({ segment: Number(match[1]), name, path: join(dir, name) });
  }
  const canonical = (f: SegmentFile): number => (f.name === segmentName(f.segment) ? 0 : 1);
  return out.sort((a, b) => a.segment - b.segment || canonical(a) - canonical(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A segment an operator compressed (`gzip audit-000012.jsonl`): not read, but named where the segment is missed. */
export const COMPRESSED_SEGMENT_PATTERN = /^audit-([0-9]{6,})\.jsonl\.(gz|bz2|xz|zst|lz4)$/;

/** Compressed segment files of a spool directory, by segment number (the first name of each, sorted). */
export function listCompressedSegments(dir: string): Map<number, string> {
  const out = new Map<number, string>();
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const match = COMPRESSED_SEGMENT_PATTERN.exec(name);
    if (match !== null && !out.has(Number(match[1]))) out.set(Number(match[1]), name);
  }
  return out;
}

/** The most bytes one read of a file returns (readFileSync refuses more). */
const MAX_SEGMENT_READ = 2 ** 31 - 1;

/**
 * A segment file opened for reading in pieces (the caller closes `fd`), with its size when
 * opened, or why the file at its name cannot be one (a sentence). A segment is a regular file
 * below 2 GiB (maxSegmentBytes). The file is opened without blocking and checked once open: a
 * FIFO put where a segment belongs made every reader (verify, tail, a recorder's start) wait for
 * a writer forever, and a file padded past 2 GiB made verify give up ("nothing was checked")
 * instead of reporting it. Nobody reads a segment whole: it may be 2 GiB.
 */
export function openSegmentFile(path: string): { readonly fd: number; readonly size: number } | string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) {
      closeSync(fd);
      return `${fileKind(stats)}, not a regular file: every segment is a regular file the recorder appends to; not read`;
    }
    if (stats.size > MAX_SEGMENT_READ) {
      closeSync(fd);
      return `${stats.size} bytes, more than any segment holds (the recorder rotates below 2 GiB, maxSegmentBytes); not read`;
    }
    return { fd, size: stats.size };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

function fileKind(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  return 'a special file';
}

/**
 * The chain function: H(prev || bytes) with H = SHA-256, or HMAC-SHA256 under the spool key so
 * that whoever can rewrite the files but lacks the key cannot rebuild a valid chain.
 */
export class ChainHasher {
  readonly alg: ChainAlgorithm;
  readonly #key: Uint8Array | null;

  constructor(key: Uint8Array | null) {
    this.#key = key;
    this.alg = key === null ? 'sha256' : 'hmac-sha256';
  }

  begin(prevHex: string): Hash | Hmac {
    const h = this.#key === null ? createHash('sha256') : createHmac('sha256', this.#key);
    h.update(Buffer.from(prevHex, 'hex'));
    return h;
  }
}

/** The seal line, fields in the order verify expects. */
export function sealLine(seal: SealRecord): string {
  return `${JSON.stringify({
    v: 1,
    type: 'SEAL',
    seal: seal.seal,
    segment: seal.segment,
    from: seal.from,
    to: seal.to,
    reads_through: seal.reads_through,
    writes_through: seal.writes_through,
    alg: seal.alg,
    prev: seal.prev,
    hash: seal.hash,
    final: seal.final,
  })}\n`;
}

export function segmentHeaderLine(segment: number, actor: string, origin: string, timestamp: string): string {
  return `${JSON.stringify({ v: 1, type: 'SEGMENT', segment, actor, origin, timestamp })}\n`;
}

/** Hashes bytes [from, to) of an open file after `prev`, reading in chunks into `scratch`. */
export function hashRange(fd: number, from: number, to: number, prev: string, hasher: ChainHasher, scratch: Buffer): string {
  const h = hasher.begin(prev);
  let at = from;
  while (at < to) {
    const want = Math.min(scratch.length, to - at);
    const got = readSync(fd, scratch, 0, want, at);
    if (got <= 0) throw new Error(`short read at byte ${at} of ${to} while sealing`);
    h.update(scratch.subarray(0, got));
    at += got;
  }
  return h.digest('hex');
}

export interface HeadRecord {
  readonly segment: number;
  readonly seal: number;
  readonly to: number;
  readonly hash: string;
  readonly reads_through: number;
  readonly writes_through: number;
  /**
   * With an HMAC key: HMAC-SHA256 of the fields above (headMac). Without it, anyone who cuts
   * records off the end could rewrite HEAD to name an earlier seal (its hash is in the log) and
   * the cut would pass a keyed verify.
   */
  readonly mac?: string;
}

/** The MAC of HEAD's fields under the spool's key: a HEAD naming another seal cannot be forged without it. */
export function headMac(head: HeadRecord, key: Uint8Array): string {
  return createHmac('sha256', key)
    .update(JSON.stringify(['govmap-head-v1', head.segment, head.seal, head.to, head.hash, head.reads_through, head.writes_through]))
    .digest('hex');
}

export function encodeHead(fields: Omit<HeadRecord, 'mac'>, key: Uint8Array | null = null): Buffer {
  const head: HeadRecord = key === null ? fields : { ...fields, mac: headMac(fields, key) };
  const text = JSON.stringify(head);
  const out = Buffer.alloc(HEAD_BYTES, 0x20);
  out.write(text, 0, 'utf8');
  out[HEAD_BYTES - 1] = 10;
  return out;
}

export function readHead(dir: string): HeadRecord | null | 'unreadable' {
  const path = join(dir, HEAD_FILE);
  if (!existsSync(path)) return null;
  // A running recorder rewrites HEAD in place: a read can meet a rewrite half done. Read again
  // (three times, 1 ms apart) before calling it unreadable.
  for (let attempt = 0; ; attempt++) {
    try {
      // Opened without blocking and checked once open, like a segment: a FIFO named HEAD held
      // verify until someone wrote to it.
      const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      let text: string;
      try {
        if (!fstatSync(fd).isFile()) return 'unreadable';
        text = readFileSync(fd, 'utf8');
      } finally {
        closeSync(fd);
      }
      const value = JSON.parse(text) as HeadRecord;
      if (typeof value.segment === 'number' && typeof value.seal === 'number' && typeof value.hash === 'string') return value;
    } catch {
      // Torn or damaged: retried below, then reported.
    }
    if (attempt === 2) return 'unreadable';
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  }
}

/** The reservation ceiling: every seq ever handed out is <= this (0 when the file is absent). */
export function readSeqReservation(dir: string): number {
  const path = join(dir, SEQ_FILE);
  if (!existsSync(path)) return 0;
  const value = Number(readFileSync(path, 'utf8').trim());
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

export function encodeSeqReservation(through: number): Buffer {
  return Buffer.from(`${String(through).padStart(SEQ_BYTES - 1, ' ')}\n`, 'latin1');
}

/** Makes a new directory entry durable (the file's own fsync does not cover its name). */
export function fsyncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Not every platform can fsync a directory; the segment's own fsync still holds its data.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** write(2) until every byte is out; a short write is continued, an error thrown to the caller. */
export function writeFully(fd: number, bytes: Uint8Array, from: number, to: number, position?: number): void {
  let at = from;
  while (at < to) {
    const n = position === undefined ? writeSync(fd, bytes, at, to - at) : writeSync(fd, bytes, at, to - at, position + (at - from));
    at += n;
  }
}

export { GENESIS_HASH };
