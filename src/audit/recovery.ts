import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { ChainState } from './drain-worker.ts';
import { GENESIS_HASH, isReadStream, parseSpoolLine } from './event.ts';
import type { SealRecord } from './event.ts';
import { AuditSpoolLockedError } from './errors.ts';
import { readJournal } from './journal.ts';
import {
  ChainHasher,
  fsyncDirectory,
  hashRange,
  listSegments,
  LOCK_FILE,
  readSeqReservation,
  sealLine,
  segmentHeaderLine,
  segmentName,
  writeFully,
} from './spool.ts';
import type { SegmentFile } from './spool.ts';

/** What one pass over a segment file tells recovery. */
export interface SegmentScan {
  readonly file: SegmentFile;
  readonly size: number;
  readonly lastSeal: SealRecord | null;
  readonly maxSeq: number;
  readonly maxReadSeq: number;
  readonly maxWriteSeq: number;
  readonly lastEventOp: string | null;
  readonly lastStartedSeq: number;
  /** Byte offset of an unterminated last line, or -1 when the file ends with a newline. */
  readonly tornOffset: number;
}

// Records start with these bytes (the encoder's fixed field order), so recovery reads seq and
// op_type without parsing the whole line; anything else (seals, gaps, damage) is parsed.
const PREFIX = /^\{"v":1,"seq":([0-9]+),"op_type":"([A-Z_]+)"/;

export function scanSegment(file: SegmentFile): SegmentScan {
  const bytes = readFileSync(file.path);
  let lastSeal: SealRecord | null = null;
  let maxSeq = 0;
  let maxReadSeq = 0;
  let maxWriteSeq = 0;
  let lastEventOp: string | null = null;
  let lastStartedSeq = 0;
  let start = 0;
  let tornOffset = -1;
  while (start < bytes.length) {
    const nl = bytes.indexOf(10, start);
    if (nl === -1) {
      tornOffset = start;
      break;
    }
    const head = bytes.toString('latin1', start, Math.min(nl, start + 64));
    const match = PREFIX.exec(head);
    if (match !== null && match[2] !== 'AUDIT_GAP') {
      const seq = Number(match[1]);
      const op = match[2]!;
      if (seq > maxSeq) maxSeq = seq;
      if (isReadStream(op)) {
        if (seq > maxReadSeq) maxReadSeq = seq;
      } else if (seq > maxWriteSeq) {
        maxWriteSeq = seq;
      }
      lastEventOp = op;
      if (op === 'AUDIT_STARTED') lastStartedSeq = seq;
    } else {
      const line = parseSpoolLine(bytes.toString('utf8', start, nl));
      if (line.kind === 'seal') lastSeal = line.seal;
      else if (line.kind === 'event') {
        const e = line.event;
        if (e.seq > maxSeq) maxSeq = e.seq;
        if (isReadStream(e.op_type)) maxReadSeq = Math.max(maxReadSeq, e.seq);
        else maxWriteSeq = Math.max(maxWriteSeq, e.seq);
        lastEventOp = e.op_type;
      }
    }
    start = nl + 1;
  }
  return { file, size: bytes.length, lastSeal, maxSeq, maxReadSeq, maxWriteSeq, lastEventOp, lastStartedSeq, tornOffset };
}

export interface CrashGap {
  readonly from: number;
  readonly to: number;
  readonly torn: { segment: number; offset: number; length: number } | null;
}

export interface RecoveredSpool {
  /** Path of the segment to append to. */
  readonly segmentPath: string;
  readonly chain: ChainState;
  readonly nextSeq: number;
  /** Highest read-stream / write-stream seq already in the log. */
  readonly readsDone: number;
  readonly writesDone: number;
  /** How the previous session ended: none (new spool), clean (AUDIT_STOPPED) or crash. */
  readonly previous: 'none' | 'clean' | 'crash';
  /** On a crash: the seqs that may have been lost, for the AUDIT_GAP record. */
  readonly gap: CrashGap | null;
}

/**
 * Reopens a spool for appending after whatever happened to the previous recorder.
 *
 * After a clean stop the log ends with AUDIT_STOPPED and its final seal: numbering carries on.
 * After a crash: a partial last line is terminated (and named, so verify accepts it); a segment
 * left without its final seal by a crash during rotation is sealed now; and the read records
 * that were still in the ring are accounted for. Those are exactly the read-stream seqs above the
 * last one in the log, up to the reservation in SEQ (no seq above it was ever handed out), so
 * the gap is [last read + 1, reservation] — minus the write records in it, which are all in the
 * log because a write reaches the file before its operation returns. Seqs in the range that were
 * reserved but never used look the same as lost ones; the record says "up to".
 */
export function recoverSpool(dir: string, actor: string, origin: string, key: Uint8Array | null): RecoveredSpool {
  const segments = listSegments(dir);
  const hasher = new ChainHasher(key);
  if (segments.length === 0) {
    const path = join(dir, segmentName(1));
    const fd = openSync(path, 'ax');
    const header = Buffer.from(segmentHeaderLine(1, actor, origin, `${Date.now()}000000`));
    writeFully(fd, header, 0, header.length);
    closeSync(fd);
    fsyncDirectory(dir);
    return {
      segmentPath: path,
      chain: { segment: 1, seal: 0, prev: GENESIS_HASH, sealedTo: 0, lastSealReads: 0, lastSealWrites: 0 },
      nextSeq: 1,
      readsDone: 0,
      writesDone: 0,
      previous: 'none',
      gap: null,
    };
  }

  const last = segments.at(-1)!;
  let scan = scanSegment(last);
  if (scan.size === 0) {
    // Created by a rotation that crashed before its header was written.
    const fd = openSync(last.path, 'a');
    const header = Buffer.from(segmentHeaderLine(last.segment, actor, origin, `${Date.now()}000000`));
    writeFully(fd, header, 0, header.length);
    closeSync(fd);
    scan = scanSegment(last);
  }

  // Write records a crash left in the journal (option writeJournal) join the log first, as if
  // the worker had moved them: everything below then sees them like any record write(2) put there.
  let journalTorn: CrashGap['torn'] = null;
  const replayed = replayJournal(dir, segments, scan);
  if (replayed.tornOffset !== -1) journalTorn = { segment: last.segment, offset: replayed.tornOffset, length: replayed.tornLength };
  if (replayed.frames > 0) scan = scanSegment(last);

  // The chain continues from the latest seal; a crash during rotation can leave the previous
  // segment without its final seal, and the new one without any.
  let chain: ChainState;
  let previousScan: SegmentScan | null = null;
  if (scan.lastSeal !== null) {
    const s = scan.lastSeal;
    chain = { segment: last.segment, seal: s.seal, prev: s.hash, sealedTo: s.to, lastSealReads: s.reads_through, lastSealWrites: s.writes_through };
  } else if (segments.length > 1) {
    const previousFile = segments.at(-2)!;
    previousScan = scanSegment(previousFile);
    const s = previousScan.lastSeal;
    if (s === null) {
      chain = { segment: last.segment, seal: 0, prev: GENESIS_HASH, sealedTo: 0, lastSealReads: 0, lastSealWrites: 0 };
    } else if (s.final) {
      chain = { segment: last.segment, seal: s.seal, prev: s.hash, sealedTo: 0, lastSealReads: s.reads_through, lastSealWrites: s.writes_through };
    } else {
      const fd = openSync(previousFile.path, 'r+');
      const end = previousScan.size;
      const hash = hashRange(fd, s.to, end, s.hash, hasher, Buffer.allocUnsafe(1 << 20));
      const reads = Math.max(s.reads_through, previousScan.maxReadSeq);
      const writes = Math.max(s.writes_through, previousScan.maxWriteSeq);
      const final = { v: 1 as const, type: 'SEAL' as const, seal: s.seal + 1, segment: previousFile.segment, from: s.to, to: end, reads_through: reads, writes_through: writes, alg: hasher.alg, prev: s.hash, hash, final: true };
      const line = Buffer.from(sealLine(final));
      writeFully(fd, line, 0, line.length, end);
      closeSync(fd);
      chain = { segment: last.segment, seal: final.seal, prev: hash, sealedTo: 0, lastSealReads: reads, lastSealWrites: writes };
    }
  } else {
    chain = { segment: last.segment, seal: 0, prev: GENESIS_HASH, sealedTo: 0, lastSealReads: 0, lastSealWrites: 0 };
  }

  const readsDone = Math.max(chain.lastSealReads, scan.maxReadSeq, previousScan?.maxReadSeq ?? 0);
  const writesDone = Math.max(chain.lastSealWrites, scan.maxWriteSeq, previousScan?.maxWriteSeq ?? 0);
  const maxSeq = Math.max(readsDone, writesDone, scan.maxSeq);
  // The last record may lie in an earlier segment when the last ones hold only headers and seals.
  let lastOp = scan.lastEventOp;
  for (let i = segments.length - 2; lastOp === null && i >= 0; i--) {
    lastOp = (i === segments.length - 2 && previousScan !== null ? previousScan : scanSegment(segments[i]!)).lastEventOp;
  }
  const clean = lastOp === 'AUDIT_STOPPED' && scan.tornOffset === -1 && journalTorn === null;
  if (clean) {
    return { segmentPath: last.path, chain, nextSeq: maxSeq + 1, readsDone, writesDone, previous: 'clean', gap: null };
  }

  let torn: CrashGap['torn'] = journalTorn;
  if (scan.tornOffset !== -1) {
    torn = { segment: last.segment, offset: scan.tornOffset, length: scan.size - scan.tornOffset };
    // Terminate the partial line so the records that follow start on their own line.
    const fd = openSync(last.path, 'a');
    writeFully(fd, Buffer.from('\n'), 0, 1);
    closeSync(fd);
  }
  const reserved = readSeqReservation(dir);
  const top = Math.max(reserved, maxSeq);
  const lastStarted = scan.lastStartedSeq !== 0 ? scan.lastStartedSeq : (previousScan?.lastStartedSeq ?? 0);
  let from = Math.max(readsDone + 1, lastStarted + 1);
  let to = top;
  if (from > to) {
    if (torn === null) {
      return { segmentPath: last.path, chain, nextSeq: top + 1, readsDone, writesDone, previous: 'crash', gap: null };
    }
    // Only a seal line was torn: no record is missing, but the torn bytes must be named; the
    // gap then names one seq that is skipped on purpose.
    from = top + 1;
    to = top + 1;
  }
  return { segmentPath: last.path, chain, nextSeq: to + 1, readsDone, writesDone, previous: 'crash', gap: { from, to, torn } };
}

/**
 * Appends to the last segment the journal's frames the log does not hold yet (seq above the
 * last write-stream record in the log; the worker may have died between writing a batch and
 * recording that it did), terminating a torn last line first. Returns how many, and the torn
 * line it terminated (-1 if none) so the crash's gap still names it.
 */
function replayJournal(dir: string, segments: readonly SegmentFile[], scan: SegmentScan): { frames: number; tornOffset: number; tornLength: number } {
  const frames = readJournal(dir);
  const none = { frames: 0, tornOffset: -1, tornLength: 0 };
  if (frames.length === 0) return none;
  // The last write-stream record in the log: the last segment may hold none yet (just rotated).
  let writesDone = Math.max(scan.maxWriteSeq, scan.lastSeal?.writes_through ?? 0);
  for (let i = segments.length - 2; writesDone === 0 && i >= 0; i--) {
    const earlier = scanSegment(segments[i]!);
    writesDone = Math.max(earlier.maxWriteSeq, earlier.lastSeal?.writes_through ?? 0);
  }
  const pending = frames.filter((f) => f.seq > writesDone);
  if (pending.length === 0) return none;
  const fd = openSync(scan.file.path, 'a');
  try {
    if (scan.tornOffset !== -1) writeFully(fd, Buffer.from('\n'), 0, 1);
    for (const frame of pending) writeFully(fd, frame.bytes, 0, frame.bytes.length);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { frames: pending.length, tornOffset: scan.tornOffset, tornLength: scan.tornOffset === -1 ? 0 : scan.size - scan.tornOffset };
}

/**
 * Takes the spool's LOCK: one recorder per directory. A lock left by a process that no longer
 * runs on this host is taken over; one held by a live process is refused.
 */
export function acquireSpoolLock(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const me = `${process.pid}@${hostname()}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, me, { flag: 'wx' });
      return () => {
        try {
          if (readFileSync(path, 'utf8') === me) unlinkSync(path);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = existsSync(path) ? readFileSync(path, 'utf8').trim() : '';
    const match = /^([0-9]+)@(.*)$/.exec(holder);
    if (match !== null && match[2] === hostname() && isAlive(Number(match[1]))) {
      throw new AuditSpoolLockedError(dir, `process ${match[1]} on ${match[2]}`);
    }
    if (match !== null && match[2] !== hostname()) {
      // A spool on shared storage held from another host: its liveness cannot be checked here.
      throw new AuditSpoolLockedError(dir, `process ${match[1]} on host ${match[2]} (remove ${path} if that host is gone)`);
    }
    try {
      unlinkSync(path);
    } catch {
      // Someone else took it over first; the next attempt sees their lock.
    }
  }
  throw new AuditSpoolLockedError(dir, 'another recorder racing for it');
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function fileSize(path: string): number {
  return statSync(path).size;
}
