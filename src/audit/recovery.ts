import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { ChainState } from './drain-worker.ts';
import { GENESIS_HASH, isReadStream, parseSpoolLine } from './event.ts';
import type { SealRecord, SpoolLine } from './event.ts';
import { SegmentLines } from './verify.ts';
import { GovMapError } from '../map/errors.ts';
import { AuditConfigurationError, AuditSpoolDirectoryError, AuditSpoolLockedError, AuditTamperedError } from './errors.ts';
import { JOURNAL_FILE, readJournal } from './journal.ts';
import {
  ChainHasher,
  fsyncDirectory,
  hashRange,
  HEAD_FILE,
  headMac,
  listSegments,
  LOCK_FILE,
  openSegmentFile,
  readHead,
  readSeqReservation,
  sealLine,
  segmentHeaderLine,
  segmentName,
  writeFully,
} from './spool.ts';
import type { SegmentFile } from './spool.ts';
import { makeDirectorySync } from '../map/make-directory.ts';

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
  /** Where the line after the last seal starts (0 without a seal). */
  readonly lastSealEnd: number;
  /**
   * The op and seq of the last record the last seal covers (null, 0: none): inside its range
   * [from, to), which can end before the seal's own line (a write that landed meanwhile).
   */
  readonly sealedLastOp: string | null;
  readonly sealedLastSeq: number;
  /** The last seal's `to` when bytes lie between it and the seal's line (covered by no seal yet), else -1. */
  readonly uncoveredFrom: number;
  /**
   * A whole line after the last seal that is not a record, followed by no read and named by no
   * AUDIT_GAP: a torn line an earlier start terminated before it failed (a full disk refusing the
   * write journal, say) and so before it could write the gap naming it. Null if none.
   */
  readonly unnamedDamage: { readonly offset: number; readonly length: number } | null;
}

// Records start with these bytes (the encoder's fixed field order), so recovery reads seq and
// op_type without parsing the whole line; anything else (seals, gaps, damage) is parsed.
const PREFIX = /^\{"v":1,"seq":([0-9]+),"op_type":"([A-Z_]+)"/;

interface ScanTotals {
  maxSeq: number;
  maxReadSeq: number;
  maxWriteSeq: number;
  lastEventOp: string | null;
  lastEventSeq: number;
  lastStartedSeq: number;
}

export function scanSegment(file: SegmentFile): SegmentScan {
  const opened = openSegmentFile(file.path);
  // Someone else's file under a segment's name (a FIFO would have held the start forever).
  if (typeof opened === 'string') throw new AuditTamperedError(dirname(file.path), file.path, 0, `${file.name} is ${opened}`);
  let size = 0;
  let lastSeal: SealRecord | null = null;
  let t: ScanTotals = { maxSeq: 0, maxReadSeq: 0, maxWriteSeq: 0, lastEventOp: null, lastEventSeq: 0, lastStartedSeq: 0 };
  /** The totals as of the last seal: the lines after it are counted again, parsed (below). */
  let atLastSeal: ScanTotals = { ...t };
  let tornOffset = -1;
  let lastSealEnd = 0;
  /** Records since the last seal line, and the last one a seal's range covered. */
  let sinceSeal: { offset: number; op: string; seq: number }[] = [];
  let sealedLast: { op: string | null; seq: number } = { op: null, seq: 0 };
  let uncoveredFrom = -1;
  let unnamedDamage: { offset: number; length: number } | null = null;
  const count = (seq: number, op: string): void => {
    if (seq > t.maxSeq) t.maxSeq = seq;
    if (isReadStream(op)) {
      if (seq > t.maxReadSeq) t.maxReadSeq = seq;
    } else if (seq > t.maxWriteSeq) {
      t.maxWriteSeq = seq;
    }
    t.lastEventOp = op;
    t.lastEventSeq = seq;
    if (op === 'AUDIT_STARTED') t.lastStartedSeq = seq;
  };
  /**
   * Counts the lines `lines` returns. `fast`: a line with a record's prefix is taken for that record
   * unparsed. Sealed lines were written whole; after the last seal a line can be a torn one a
   * failed start terminated, which may begin like a record, so there every line is parsed.
   * Read in pieces (SegmentLines): read whole, a segment of up to 2 GiB (maxSegmentBytes) made
   * the start's memory grow by as much, in a service sized for its maps, not its audit log.
   */
  const pass = (lines: SegmentLines, fast: boolean): void => {
    try {
      while (lines.next()) {
        const start = lines.start;
        const nl = lines.end;
        if (nl === -1) {
          tornOffset = start;
          break;
        }
        take(lines, start, nl, fast);
      }
    } finally {
      lines.close();
    }
    size = lines.size;
  };
  const take = (lines: SegmentLines, start: number, nl: number, fast: boolean): void => {
    const match = fast ? PREFIX.exec(lines.head.toString('latin1', 0, 64)) : null;
    if (match !== null && match[2] !== 'AUDIT_GAP') {
      count(Number(match[1]), match[2]!);
      sinceSeal.push({ offset: start, op: match[2]!, seq: Number(match[1]) });
    } else {
      // Longer than any record (verify says so too): damage, not parsed.
      const line: SpoolLine = lines.text === null ? { kind: 'invalid', problem: 'longer than any audit record' } : parseSpoolLine(lines.text.toString('utf8'));
      if (line.kind === 'seal') {
        lastSeal = line.seal;
        lastSealEnd = nl + 1;
        atLastSeal = { ...t };
        unnamedDamage = null;
        const to = line.seal.to;
        const covered = sinceSeal.findLast((r) => r.offset < to);
        if (covered !== undefined) sealedLast = { op: covered.op, seq: covered.seq };
        uncoveredFrom = to < start ? to : -1;
        sinceSeal = [];
      } else if (line.kind === 'event') {
        const e = line.event;
        count(e.seq, e.op_type);
        sinceSeal.push({ offset: start, op: e.op_type, seq: e.seq });
        const torn = e.gap?.torn;
        if (isReadStream(e.op_type) || (torn != null && torn.segment === file.segment && torn.offset === unnamedDamage?.offset)) unnamedDamage = null;
      } else if (line.kind === 'invalid') {
        unnamedDamage = { offset: start, length: nl - start };
      }
    }
  };
  pass(new SegmentLines(opened.fd), true);
  const sealEnd: number = lastSealEnd;
  if (sealEnd < size) {
    t = { ...atLastSeal };
    tornOffset = -1;
    unnamedDamage = null;
    pass(new SegmentLines(openSync(file.path, 'r'), sealEnd), false);
  }
  const { maxSeq, maxReadSeq, maxWriteSeq, lastEventOp, lastStartedSeq } = t;
  return { file, size, lastSeal, maxSeq, maxReadSeq, maxWriteSeq, lastEventOp, lastStartedSeq, tornOffset, lastSealEnd, sealedLastOp: sealedLast.op, sealedLastSeq: sealedLast.seq, uncoveredFrom, unnamedDamage };
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
  if (scan.size === 0 || (scan.tornOffset === 0 && onlyTornHeader(last, scan))) {
    // Created by a rotation that crashed before its header was written, or before it was whole
    // (a power loss can leave its first block zeros, the header is not fsynced with the file's
    // name): nothing follows a header until it is complete, so the file holds no record. Written
    // anew; terminated instead, the torn bytes would stand where verify requires the header.
    const fd = openSync(last.path, 'r+');
    ftruncateSync(fd, 0);
    const header = Buffer.from(segmentHeaderLine(last.segment, actor, origin, `${Date.now()}000000`));
    writeFully(fd, header, 0, header.length, 0);
    closeSync(fd);
    scan = scanSegment(last);
  }

  // Nothing is written below until the spool is known to be this recorder's to continue: the
  // chain's key matches, and nobody added to a cleanly stopped log.
  const previousFile = segments.length > 1 ? segments.at(-2)! : null;
  const previousScan: SegmentScan | null = scan.lastSeal === null && previousFile !== null ? scanSegment(previousFile) : null;
  const lastSeal = scan.lastSeal ?? previousScan?.lastSeal ?? null;
  if (lastSeal !== null) checkChainKey(dir, lastSeal, hasher);
  checkHead(dir, lastSeal, key);
  const afterStop = checkNothingAfterStop(dir, scan, previousScan);

  // Write records a crash left in the journal (option writeJournal) join the log first, as if
  // the worker had moved them: everything below then sees them like any record write(2) put there.
  let journalTorn: CrashGap['torn'] = null;
  const replayed = replayJournal(dir, segments, scan, afterStop);
  if (replayed.tornOffset !== -1) journalTorn = { segment: last.segment, offset: replayed.tornOffset, length: replayed.tornLength };
  if (replayed.frames > 0) scan = scanSegment(last);

  // The chain continues from the latest seal; a crash during rotation can leave the previous
  // segment without its final seal, and the new one without any.
  let chain: ChainState;
  let previousTorn: CrashGap['torn'] = null;
  if (scan.lastSeal !== null) {
    const s = scan.lastSeal;
    chain = { segment: last.segment, seal: s.seal, prev: s.hash, sealedTo: s.to, lastSealReads: s.reads_through, lastSealWrites: s.writes_through };
  } else if (previousFile !== null && previousScan !== null) {
    const s = previousScan.lastSeal;
    if (s === null) {
      chain = { segment: last.segment, seal: 0, prev: GENESIS_HASH, sealedTo: 0, lastSealReads: 0, lastSealWrites: 0 };
    } else if (s.final) {
      chain = { segment: last.segment, seal: s.seal, prev: s.hash, sealedTo: 0, lastSealReads: s.reads_through, lastSealWrites: s.writes_through };
    } else {
      const fd = openSync(previousFile.path, 'r+');
      let end = previousScan.size;
      if (previousScan.tornOffset !== -1) {
        // The rotation's final seal (or the caller's last record before the swap) was torn by
        // the crash: terminated and named like a torn line at the end of the log, so the final
        // seal below is a line of its own and not glued to the torn bytes.
        previousTorn = { segment: previousFile.segment, offset: previousScan.tornOffset, length: end - previousScan.tornOffset };
        writeFully(fd, Buffer.from('\n'), 0, 1, end);
        end += 1;
      }
      const hash = hashRange(fd, s.to, end, s.hash, hasher, Buffer.allocUnsafe(1 << 20));
      const reads = Math.max(s.reads_through, previousScan.maxReadSeq);
      const writes = Math.max(s.writes_through, previousScan.maxWriteSeq);
      const final = { v: 1 as const, type: 'SEAL' as const, seal: s.seal + 1, segment: previousFile.segment, from: s.to, to: end, reads_through: reads, writes_through: writes, alg: hasher.alg, prev: s.hash, hash, final: true };
      const line = Buffer.from(sealLine(final));
      writeFully(fd, line, 0, line.length, end);
      // Durable before anything is chained to it: the seals that follow go to the next file, and
      // a power loss could otherwise keep them while losing this one, breaking the chain for good.
      fsyncSync(fd);
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
  const clean = lastOp === 'AUDIT_STOPPED' && scan.tornOffset === -1 && journalTorn === null && previousTorn === null && scan.unnamedDamage === null;
  if (clean) {
    return { segmentPath: last.path, chain, nextSeq: maxSeq + 1, readsDone, writesDone, previous: 'clean', gap: null };
  }

  // A torn line the start before this one terminated, but failed before its gap could name it.
  const leftByFailedStart = scan.unnamedDamage === null ? null : { segment: last.segment, ...scan.unnamedDamage };
  let torn: CrashGap['torn'] = journalTorn ?? previousTorn ?? leftByFailedStart;
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
function replayJournal(dir: string, segments: readonly SegmentFile[], scan: SegmentScan, afterStop: AfterStop): { frames: number; tornOffset: number; tornLength: number } {
  const frames = readJournal(dir);
  const none = { frames: 0, tornOffset: -1, tornLength: 0 };
  const { expectStart, required } = afterStop;
  const missingStart = (): AuditTamperedError =>
    new AuditTamperedError(dir, scan.file.path, scan.size, `reads follow the seal of a clean stop, but the next start's AUDIT_STARTED (seq ${expectStart}) is neither before them nor in the write journal`);
  if (frames.length === 0) {
    if (required) throw missingStart();
    return none;
  }
  // The last write-stream record in the log: the last segment may hold none yet (just rotated).
  let writesDone = Math.max(scan.maxWriteSeq, scan.lastSeal?.writes_through ?? 0);
  for (let i = segments.length - 2; writesDone === 0 && i >= 0; i--) {
    const earlier = scanSegment(segments[i]!);
    writesDone = Math.max(earlier.maxWriteSeq, earlier.lastSeal?.writes_through ?? 0);
  }
  const pending = frames.filter((f) => f.seq > writesDone);
  if (pending.length === 0) {
    if (required) throw missingStart();
    return none;
  }
  if (expectStart !== 0 && !pending[0]!.bytes.toString('latin1', 0, 64).startsWith(startedPrefix(expectStart))) {
    throw new AuditTamperedError(dir, join(dir, JOURNAL_FILE), 0, `the write journal holds a record (seq ${pending[0]!.seq}) after a clean stop that is not the next start's AUDIT_STARTED (seq ${expectStart})`);
  }
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
 * Refuses a key that cannot continue the chain: `hmacKey` absent, added or different from the one
 * the spool was written with would leave a log no single key verifies. The last seal says which
 * algorithm the chain uses; with a key, its HMAC is recomputed (one sealed block, read once at
 * start) and must match.
 */
function checkChainKey(dir: string, seal: SealRecord, hasher: ChainHasher): void {
  const where = `seal ${seal.seal} of ${segmentName(seal.segment)}`;
  if (seal.alg !== hasher.alg) {
    throw new AuditConfigurationError(
      'hmacKey',
      seal.alg === 'sha256'
        ? `the spool "${dir}" is chained with plain SHA-256 (${where}), not HMAC: start without hmacKey, or give the key a new spool directory`
        : `the spool "${dir}" is chained with HMAC-SHA256 (${where}): start with the hmacKey it was written with`,
    );
  }
  if (seal.alg !== 'hmac-sha256') return;
  const fd = openSync(join(dir, segmentName(seal.segment)), 'r');
  let hash: string;
  try {
    hash = hashRange(fd, seal.from, seal.to, seal.prev, hasher, Buffer.allocUnsafe(Math.min(1 << 20, Math.max(1, seal.to - seal.from))));
  } finally {
    closeSync(fd);
  }
  if (hash !== seal.hash) {
    throw new AuditConfigurationError(
      'hmacKey',
      `the spool "${dir}" is chained with HMAC-SHA256 and its last seal (${where}) does not verify with this key: start with the key the spool was written with (if it is that key, the sealed bytes were changed: run \`govmap audit verify ${dir}\`)`,
    );
  }
}

/**
 * HEAD names the last seal that was committed (fsynced before HEAD is written, so no crash or
 * power loss leaves HEAD ahead of the log). A log that ends before that seal was cut; carrying on
 * would name the cut records in a crash's AUDIT_GAP and overwrite HEAD at the first commit,
 * erasing the only evidence verify has of the cut. With a key, a HEAD whose MAC does not check
 * was rewritten by someone without it (to hide such a cut): refused for the same reason.
 */
function checkHead(dir: string, lastSeal: SealRecord | null, key: Uint8Array | null): void {
  const head = readHead(dir);
  if (head === null || head === 'unreadable') return;
  const path = join(dir, HEAD_FILE);
  if (key !== null && head.mac !== headMac(head, key)) {
    throw new AuditTamperedError(dir, path, 0, `HEAD ${head.mac === undefined ? 'carries no MAC' : "has a MAC that does not match the key"}: it was rewritten by someone without the spool key`);
  }
  const last = lastSeal?.seal ?? 0;
  if (head.seal > last) {
    throw new AuditTamperedError(dir, path, 0, `HEAD names seal #${head.seal} (segment ${head.segment}) as committed, but the log ends at seal #${last}: records were cut off the end of the log`);
  }
}

/** What must come first after a clean stop, when the log itself does not hold it yet. */
interface AfterStop {
  /** The seq the next start's AUDIT_STARTED must have as the journal's first pending frame (0: no constraint). */
  readonly expectStart: number;
  /** Reads of that next start are in the log already: its AUDIT_STARTED must be in the journal. */
  readonly required: boolean;
}

const ANY_RECORD_START = '{"v":1,"seq":';

/**
 * A cleanly stopped log (its last seal covers AUDIT_STOPPED) grows only by the next start: its
 * AUDIT_STARTED (the seq after the stop's) is its first write-stream record, and only its reads
 * (higher seqs, drained by the worker while AUDIT_STARTED still waited in the write journal) may
 * reach the file before it. Anything else after that seal was put there by someone else, and
 * continuing would seal it into the chain as if it were a crash's tail. A torn last line (a
 * crash, or zeros after power loss) is accepted: recovery names it in the gap as any torn line.
 */
function checkNothingAfterStop(dir: string, scan: SegmentScan, previousScan: SegmentScan | null): AfterStop {
  const none: AfterStop = { expectStart: 0, required: false };
  let stopped: SegmentScan;
  let from: number;
  if (scan.lastSeal !== null) {
    if (scan.sealedLastOp !== 'AUDIT_STOPPED') return none;
    refuseUncovered(dir, scan);
    stopped = scan;
    from = scan.lastSealEnd;
  } else {
    // A rotation racing the stop: then the last segment holds a header and what came after.
    if (previousScan?.lastSeal == null || previousScan.sealedLastOp !== 'AUDIT_STOPPED') return none;
    stopped = previousScan;
    refuseUncovered(dir, previousScan);
    if (previousScan.size > previousScan.lastSealEnd) {
      throw new AuditTamperedError(dir, previousScan.file.path, previousScan.lastSealEnd, `${previousScan.size - previousScan.lastSealEnd} bytes follow the seal of a clean stop (AUDIT_STOPPED, seq ${previousScan.sealedLastSeq}) in a segment that was rotated after it`);
    }
    const header = readBytes(scan.file.path, 0, Math.min(scan.size, 4096));
    const nl = header.indexOf(10);
    from = nl === -1 ? scan.size : nl + 1;
  }
  const stoppedSeq = stopped.sealedLastSeq;
  const expect = stoppedSeq + 1;
  const refuse = (at: number, what: string): never => {
    throw new AuditTamperedError(dir, scan.file.path, at, `${what} after the seal of a clean stop (AUDIT_STOPPED, seq ${stoppedSeq}); only the next start's AUDIT_STARTED (seq ${expect}) and its reads may follow it`);
  };
  // In pieces, as scanSegment: whatever follows the seal is read whole by nobody.
  const lines = new SegmentLines(openSync(scan.file.path, 'r'), from);
  let reads = false;
  try {
    while (lines.next()) {
      const head = lines.head.toString('latin1', 0, 64);
      if (lines.end === -1) {
        if (!tornRecord(head)) refuse(lines.start, 'an unterminated line that is not the start of a record');
        break;
      }
      const match = PREFIX.exec(head);
      // Such a torn line, terminated by a start that then failed (before its gap named it).
      if (match === null && scan.unnamedDamage?.offset === lines.start && tornRecord(head)) continue;
      const seq = match === null ? 0 : Number(match[1]);
      if (match !== null && match[2] === 'AUDIT_STARTED' && seq === expect) return none;
      if (match === null || !isReadStream(match[2]!) || seq <= expect) refuse(lines.start, match === null ? 'a line that is not a record' : `a ${match[2]} record (seq ${seq})`);
      reads = true;
    }
  } finally {
    lines.close();
  }
  return { expectStart: expect, required: reads };
}

/**
 * The seal of a clean stop covers everything up to its own line (AUDIT_STOPPED is the last
 * record, and nothing is written after it): bytes between its range and its line were put there
 * afterwards, where no seal will ever cover them (the next seal starts after the line).
 */
function refuseUncovered(dir: string, stopped: SegmentScan): void {
  if (stopped.uncoveredFrom === -1) return;
  throw new AuditTamperedError(
    dir,
    stopped.file.path,
    stopped.uncoveredFrom,
    `bytes lie between the end of the range the clean stop's seal covers (AUDIT_STOPPED, seq ${stopped.sealedLastSeq}; seal #${stopped.lastSeal!.seal} covers up to byte ${stopped.uncoveredFrom}) and that seal's line; only the next start's AUDIT_STARTED (seq ${stopped.sealedLastSeq + 1}) and its reads may follow a clean stop`,
  );
}

/**
 * The segment holds nothing but the unterminated start of its own header, or zeros: what a crash
 * or a power loss in the middle of writing the header leaves. Anything else unterminated at byte
 * 0 is left to be named as torn (and reported by verify).
 */
function onlyTornHeader(file: SegmentFile, scan: SegmentScan): boolean {
  const text = readBytes(file.path, 0, Math.min(scan.size, 4096)).toString('latin1');
  if (scan.size > 4096) return /^\0+$/.test(text) && allZeros(file.path, scan.size);
  const prefix = `{"v":1,"type":"SEGMENT","segment":${file.segment},`;
  return /^\0+$/.test(text) || prefix.startsWith(text) || text.startsWith(prefix);
}

/** The start of a torn record (or zeros a power loss left): what a crash may leave after a clean stop. */
function tornRecord(text: string): boolean {
  return /^\0+$/.test(text) || text.startsWith(ANY_RECORD_START) || ANY_RECORD_START.startsWith(text);
}

function startedPrefix(seq: number): string {
  return `{"v":1,"seq":${seq},"op_type":"AUDIT_STARTED"`;
}

/** Whether the first `size` bytes of the file are all zeros, read in pieces (a segment may be 2 GiB). */
function allZeros(path: string, size: number): boolean {
  const piece = Buffer.allocUnsafe(Math.min(size, 1 << 20));
  const zeros = Buffer.alloc(piece.length);
  const fd = openSync(path, 'r');
  try {
    for (let at = 0; at < size; ) {
      const n = readSync(fd, piece, 0, Math.min(piece.length, size - at), at);
      if (n === 0) break;
      if (!piece.subarray(0, n).equals(zeros.subarray(0, n))) return false;
      at += n;
    }
    return true;
  } finally {
    closeSync(fd);
  }
}

function readBytes(path: string, from: number, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const r = readSync(fd, buf, got, n - got, from + got);
      if (r === 0) break;
      got += r;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * Takes the spool's LOCK: one recorder per directory. A lock left by a process that no longer
 * runs on this host is taken over; one held by a live process is refused.
 */
export function acquireSpoolLock(dir: string): () => void {
  makeDirectorySync(dir);
  const path = join(dir, LOCK_FILE);
  // pid@host@when: `when` tells this process's lock from one an earlier process with the same
  // pid left (see earlierIncarnation).
  const me = `${process.pid}@${hostname()}@${new Date().toISOString()}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, me, { flag: 'wx' });
      heldSpoolLocks.add(me);
      return () => {
        heldSpoolLocks.delete(me);
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
    const match = /^([0-9]+)@([^@]*)(?:@(.+))?$/.exec(holder);
    if (match !== null && match[2] === hostname() && isAlive(Number(match[1])) && !earlierIncarnation(Number(match[1]), match[3], holder)) {
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

/** The spool LOCKs this thread holds: never an earlier incarnation's, whatever the clock did. */
const heldSpoolLocks = new Set<string>();

/**
 * A LOCK naming this very pid that this process did not write: left by a killed process whose
 * pid this one got again. A restarted container runs its processes in the same order, on the
 * same hostname (a pod's), so the service gets its old pid back; taken for a live holder, the
 * recorder was refused at every start and the service crash-looped. A LOCK of the format before
 * `when` was added, naming this pid, is an earlier process's too: this one writes `when`.
 */
function earlierIncarnation(pid: number, when: string | undefined, text: string): boolean {
  if (pid !== process.pid || heldSpoolLocks.has(text)) return false;
  if (when === undefined) return true;
  const at = Date.parse(when);
  // performance.timeOrigin is the process's start, in every thread.
  return Number.isFinite(at) && at < performance.timeOrigin;
}

const ERRNO_MEANING: Readonly<Record<string, string>> = {
  EEXIST: 'it exists and is not a directory',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exhausted',
  ENAMETOOLONG: 'the path is too long',
  ELOOP: 'too many symbolic links in the path',
};

/**
 * A system error met while opening the spool (creating the directory, its LOCK, SEQ or first
 * segment) as a typed error naming the option, the path and the errno; anything else unchanged.
 */
export function spoolDirectoryError(dir: string, error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof GovMapError) return error;
  const e = error as NodeJS.ErrnoException;
  if (typeof e.code !== 'string' || e.syscall === undefined) return error;
  return new AuditSpoolDirectoryError(dir, e.path ?? dir, e.code, ERRNO_MEANING[e.code] ?? e.message, error);
}

/** Whether `pid` names a running process on this host (EPERM: it runs, as another user). */
export function isAlive(pid: number): boolean {
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
