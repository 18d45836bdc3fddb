import { closeSync, existsSync, readSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { GENESIS_HASH, isReadStream, parseSpoolLine } from './event.ts';
import type { AuditGap, SealRecord } from './event.ts';
import { readJournal } from './journal.ts';
import { ChainHasher, hashRange, headMac, listCompressedSegments, listSegments, openSegmentFile, readHead, SEGMENT_PATTERN, segmentName } from './spool.ts';
import type { SegmentFile } from './spool.ts';

export interface VerifyOptions {
  /** The spool's HMAC key, when it was written with one (a keyed chain cannot be checked without it). */
  readonly key?: Uint8Array | null;
  /**
   * Called after each segment is checked, for progress output: a spool of many large segments
   * takes minutes, and an operator must be able to tell a long check from a hung one.
   */
  readonly onSegment?: (progress: VerifyProgress) => void;
}

/** How far a check has got: segments and their bytes, checked so far and in all. */
export interface VerifyProgress {
  readonly file: string;
  readonly segmentsDone: number;
  readonly segmentsTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

/** A segment's size for progress figures; 0 when it cannot be read (the check names why). */
function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** One thing wrong, where it is. `line` is 1-based; `offset` the byte where the line starts. */
export interface VerifyProblem {
  readonly file: string;
  readonly line: number;
  readonly offset: number;
  readonly seq: number | null;
  readonly problem: string;
  /**
   * Set where a script can act on the finding: `SEGMENT_COMPRESSED`, a segment missed from the
   * chain is in the directory compressed (audit-NNNNNN.jsonl.gz): decompress it and verify again.
   */
  readonly code?: 'SEGMENT_COMPRESSED';
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly path: string;
  readonly files: readonly string[];
  readonly records: number;
  readonly seals: number;
  /** The lowest and highest seq in the log: reads and writes reach it by two paths, so not those of its first and last lines. */
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  readonly gaps: readonly (AuditGap & { readonly file: string; readonly line: number })[];
  /** The log ends with AUDIT_STOPPED: its recorder stopped cleanly. */
  readonly closed: boolean;
  /** Records after the last seal (a running recorder's tail; sealed at its next commit). */
  readonly unsealedRecords: number;
  /** The earliest problem in log order: the first record that cannot be trusted. */
  readonly firstBad: VerifyProblem | null;
  /** Problems in log order (at most MAX_PROBLEMS). */
  readonly problems: readonly VerifyProblem[];
  readonly notes: readonly string[];
  /**
   * The seals are HMAC-keyed and no key was given, so their hashes were not checked (one problem
   * says so). Not evidence of tampering, an incomplete check: `govmap audit verify` exits 2
   * (usage) on it, not 1.
   */
  readonly keyRequired: boolean;
}

const MAX_PROBLEMS = 100;
/** Invalid lines kept one by one (each may yet be excused as a crash's torn line by a later gap). */
const MAX_TORN_CANDIDATES = MAX_PROBLEMS * 4;
/** Problems the text report lists besides the first bad record; --json has them all. */
const SHOWN_PROBLEMS = 20;
/** Seqs held while waiting for their predecessors; beyond this a missing seq is reported at once. */
const MAX_PENDING = 1_000_000;

/**
 * A problem and where it sorts. `kind`: `record` names a line for certain (unparseable,
 * duplicated, out of order, a broken seal or segment); `block` is a seal whose bytes do not
 * hash to it (the damage is somewhere in [from, to)); `missing` is a seq no record holds, whose
 * place is inferred (`candidates`: where its successor in either stream lies).
 */
interface Located {
  readonly p: VerifyProblem;
  readonly fileIndex: number;
  readonly sortOffset: number;
  readonly kind: 'record' | 'block' | 'missing';
  readonly block?: { readonly fileIndex: number; readonly from: number; readonly to: number };
  readonly candidates?: readonly Candidate[];
  /** A missing seq placed at the end of the log because a stream has no record after it. */
  readonly inferredEnd?: boolean;
}

interface Candidate {
  readonly p: VerifyProblem;
  readonly fileIndex: number;
  readonly sortOffset: number;
  readonly atEnd: boolean;
}

interface Seen {
  readonly file: string;
  readonly line: number;
  readonly offset: number;
  readonly fileIndex: number;
  readonly read: boolean;
}

/**
 * Checks a spool (a directory of segments, or one segment file) end to end:
 * - every seal: its range continues the previous one, its `prev` is the previous seal's hash, and
 *   the bytes it covers hash to it (HMAC with the key when the spool is keyed);
 * - segments are consecutive, each starts with its header, each but the last ends with its final
 *   seal, and the chain runs on across them;
 * - every line is a valid record; seqs rise within each stream (reads, writes), none repeats,
 *   and every seq from the first to the last is present or named by an AUDIT_GAP;
 * - HEAD (the last committed seal) is still in the log, so cutting records off the end shows.
 * It names the first record it can prove bad. A byte flip that still parses as a valid record
 * is localised to its sealed block (at most `sealBytes`, 64 KiB by default).
 */
export function verifySpool(path: string, options: VerifyOptions = {}): VerifyReport {
  const key = options.key ?? null;
  const hasher = new ChainHasher(key);
  const isDir = existsSync(path) && statSync(path).isDirectory();
  // HEAD before the log: a running recorder writes HEAD only after the seal it names is in the
  // log, and the log only grows, so HEAD read first is always covered by the log read after it.
  // Read last, a seal committed meanwhile looked like a truncated log (a live spool "BROKEN").
  const head = isDir ? readHead(path) : null;
  const notes: string[] = [];
  // With a write journal, a running (or crashed, not yet restarted) recorder's newest write
  // records may still be there rather than in the log. Its seqs are read before the log and
  // again after it: a frame moved into the log meanwhile is in one of the three reads.
  const journaled = new Set<number>();
  /** AUDIT_STARTED frames still in the journal: a restarted recorder's first record may wait there. */
  const journaledStarts = new Set<number>();
  let journalUnreadable = false;
  const readJournalSeqs = (): void => {
    if (!isDir || journalUnreadable) return;
    try {
      for (const frame of readJournal(path)) {
        journaled.add(frame.seq);
        if (STARTED_RECORD.test(frame.bytes.toString('latin1', 0, Math.min(frame.bytes.length, 64)))) journaledStarts.add(frame.seq);
      }
    } catch (error) {
      // Not a failure of the log: the journal only holds copies of write records on their way
      // into it. What is lost is the excuse for a running recorder's newest writes, which then
      // show as missing if they are not in the log yet.
      journalUnreadable = true;
      notes.push(
        `the write journal (JOURNAL) could not be read (${error instanceof Error ? error.message : String(error)}): write records still in it are not counted, so a running or crashed recorder's newest writes show as missing`,
      );
    }
  };
  readJournalSeqs();
  let segments: SegmentFile[];
  /** Files whose segment number another file already has: only the first (the recorder's name) is read. */
  const duplicates: { keptIndex: number; file: SegmentFile; twin: SegmentFile }[] = [];
  if (isDir) {
    segments = [];
    for (const seg of listSegments(path)) {
      const twin = segments.at(-1);
      if (twin !== undefined && twin.segment === seg.segment) duplicates.push({ keptIndex: segments.length - 1, file: seg, twin });
      else segments.push(seg);
    }
  } else {
    const match = SEGMENT_PATTERN.exec(basename(path));
    segments = existsSync(path) ? [{ segment: match === null ? 0 : Number(match[1]), name: basename(path), path }] : [];
    notes.push('one segment checked alone: pass the directory to check the chain across segments and against HEAD');
  }
  const found: Located[] = [];
  const add = (fileIndex: number, sortOffset: number, p: VerifyProblem, kind: Located['kind'] = 'record', extra: Partial<Located> = {}): void => {
    if (found.length < MAX_PROBLEMS * 4) found.push({ p, fileIndex, sortOffset, kind, ...extra });
  };
  let endOfLog: { file: string; line: number; offset: number; fileIndex: number } = { file: path, line: 0, offset: 0, fileIndex: 0 };
  // Declared before the first return: finish() reads them (an empty or missing path returns early).
  let records = 0;
  let sealCount = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  let lastEventOp: string | null = null;
  let unsealedRecords = 0;
  let keyRequired = false;
  /** Keyed seals hashed with the given key, and how many of them it verified. */
  let keyedHashed = 0;
  let keyedMatched = 0;
  const gaps: (AuditGap & { file: string; line: number })[] = [];
  for (const { keptIndex, file, twin } of duplicates) {
    add(keptIndex, 0, {
      file: file.name,
      line: 0,
      offset: 0,
      seq: null,
      problem: `two files claim segment ${file.segment}: ${twin.name} and ${file.name} (the recorder writes one file per segment, named ${segmentName(file.segment)}); only ${twin.name} is checked`,
    });
  }
  // Not read (no gzip support: a segment is checked as the recorder wrote it), but named where
  // its segment is missed, so an operator who compressed old segments is not sent hunting for a
  // deletion.
  const compressed = isDir ? listCompressedSegments(path) : new Map<number, string>();
  const compressedCopies = (from: number, to: number): Pick<VerifyProblem, 'problem' | 'code'> | null => {
    const names = [...compressed].filter(([segment]) => segment >= from && segment <= to).map(([, name]) => name);
    return names.length === 0 ? null : { problem: `; found ${names.join(', ')}: decompress ${names.length === 1 ? 'it' : 'them'} to verify`, code: 'SEGMENT_COMPRESSED' };
  };
  if (segments.length === 0) {
    const why = !existsSync(path) ? 'no such file or directory' : 'no audit segments (audit-NNNNNN.jsonl) here';
    const copies = compressedCopies(0, Number.MAX_SAFE_INTEGER);
    add(0, 0, { file: path, line: 0, offset: 0, seq: null, problem: `${why}${copies?.problem ?? ''}`, ...(copies === null ? {} : { code: copies.code }) });
    return finish();
  }

  let prevHash = GENESIS_HASH;
  // A log that starts after segment 1 is checked from there; whether that is retention is decided
  // at the end, from the AUDIT_RETENTION records in what is left.
  let resync = segments[0]!.segment !== 1;
  /** The AUDIT_RETENTION record naming the most removed segments (`absent_through`), and whether a seal covers it. */
  let retention: { file: string; line: number; through: number; sealed: boolean } | null = null;
  let retentionUnsealed: { file: string; line: number; through: number } | null = null;
  /**
   * The last AUDIT_STOPPED while nothing else followed it; `sealed` once a seal covers it. After a
   * sealed stop the recorder writes nothing until a restart, whose first write-stream record is
   * AUDIT_STARTED (then, after a crash, its AUDIT_GAP); only the restart's reads can reach the file
   * before it (the worker moves journal frames at its commits but reads every turn), and their
   * seqs are above it. `firstRead` is the first such read while AUDIT_STARTED is still to come.
   */
  let stop: { file: string; line: number; seq: number; sealed: boolean } | null = null;
  let firstReadAfterStop: { file: string; line: number; offset: number; fileIndex: number; seq: number; op: string } | null = null;
  let appendedAfterStop = false;
  /** A record after a sealed clean stop that no restarted recorder can have written: reported once. */
  const appendedAfter = (stopped: { file: string; line: number; seq: number }, first: NonNullable<typeof firstReadAfterStop>, why: string): void => {
    appendedAfterStop = true;
    add(first.fileIndex, first.offset, {
      file: first.file,
      line: first.line,
      offset: first.offset,
      seq: first.seq,
      problem: `${first.op} seq ${first.seq} follows the clean stop (AUDIT_STOPPED seq ${stopped.seq} at ${stopped.file}:${stopped.line}, sealed) and ${why}: it was appended after the recorder stopped`,
    });
  };
  let expectedSeal = 0;
  const lastInStream = { r: { seq: 0, file: '', line: 0, offset: 0, fileIndex: 0 }, w: { seq: 0, file: '', line: 0, offset: 0, fileIndex: 0 } };
  const sealsByNumber = new Map<number, { segment: number; hash: string }>();

  // Seq accounting: everything <= watermark is present or excused; `pending` holds seqs seen
  // above it (the two streams interleave, so a seq may arrive before its predecessor).
  let watermark = -1;
  // A log checked from the middle (one segment alone, or the oldest left by retention) starts its
  // seq accounting at its first record. Records are not in seq order in the file (reads reach it
  // through the ring, writes through the journal, each up to a commit interval late), so a record
  // a little below that start can follow it: it is older than the checked range, not a
  // duplicate. In that first file every seq seen is remembered, so real duplicates still show.
  let midStreamFile = -1;
  const midStreamSeen = new Set<number>();
  /** The first read and write seq of that file (a hole below either may be in the file before). */
  const midStreamFirst = { r: Number.POSITIVE_INFINITY, w: Number.POSITIVE_INFINITY };
  /** Set once the whole log is read: only then is a hole known to be at the log's end. */
  let atLogEnd = false;
  const pending = new Map<number, Seen>();
  /**
   * Seqs read only from a damaged line so far. A SIGKILL can stop the worker's write(2) inside a
   * record whose whole copy the write journal still holds: recovery terminates the torn bytes,
   * names them in its AUDIT_GAP and appends the record again. That later, whole record is the
   * record, not a second copy; the damaged line is still reported unless a gap names it as torn.
   */
  const seenDamaged = new Set<number>();
  const excused: { from: number; to: number }[] = [];
  const isExcused = (seq: number): boolean => excused.some((g) => seq >= g.from && seq <= g.to);
  const advance = (): void => {
    for (;;) {
      const next = watermark + 1;
      if (pending.has(next)) {
        pending.delete(next);
        watermark = next;
      } else if (isExcused(next)) {
        const gap = excused.find((g) => next >= g.from && next <= g.to)!;
        watermark = pending.size === 0 ? gap.to : next;
      } else {
        return;
      }
    }
  };
  const reportMissing = (): void => {
    // The lowest seq seen above the hole, and the lowest of each stream: the hole was a record
    // of one of the two streams, so it stood just before that stream's next record.
    let successor: number | null = null;
    let readSuccessor: number | null = null;
    let writeSuccessor: number | null = null;
    for (const [seq, seen] of pending) {
      if (successor === null || seq < successor) successor = seq;
      if (seen.read && (readSuccessor === null || seq < readSuccessor)) readSuccessor = seq;
      if (!seen.read && (writeSuccessor === null || seq < writeSuccessor)) writeSuccessor = seq;
    }
    if (successor === null) return;
    const missing = watermark + 1;
    const through = successor - 1;
    const what = missing === through ? `seq ${missing} is missing` : `seqs ${missing}..${through} are missing`;
    // Checked from the middle of the log, each stream reaches a file in seq order, but the two
    // are interleaved with a lag (a commit interval): a hole is proof only where both streams
    // pass it inside the checked range. Below the first read or the first write of the first
    // file, it may be a record of that stream in the segment before; above the last read or the
    // last write of a segment checked alone, one in the segment after. Noted, not failed.
    if (midStreamFile !== -1 && through < Math.max(midStreamFirst.r, midStreamFirst.w)) {
      notes.push(`${what.replace(' missing', ' not in the checked range')} (below its first ${midStreamFirst.r > midStreamFirst.w ? 'read' : 'write'}: records of that stream can be in the segment before)`);
      watermark = through;
      advance();
      return;
    }
    if (atLogEnd && !isDir && lastEventOp !== 'AUDIT_STOPPED' && missing > Math.min(lastInStream.r.seq, lastInStream.w.seq)) {
      notes.push(`${what.replace(' missing', ' not in this segment')} (above its last ${lastInStream.r.seq < lastInStream.w.seq ? 'read' : 'write'}, seq ${Math.min(lastInStream.r.seq, lastInStream.w.seq)}: records of that stream can be in the segment after)`);
      watermark = through;
      advance();
      return;
    }
    if (lastEventOp !== 'AUDIT_STOPPED' && through - missing < journaled.size) {
      let inJournal = true;
      for (let seq = missing; seq <= through && inJournal; seq++) inJournal = journaled.has(seq);
      if (inJournal) {
        // Not evidence of tampering: write records the worker has not moved yet (or, after a
        // crash, that recovery will move at the next start). Noted, and the scan moves on.
        notes.push(`${what.replace(' missing', ' in the write journal, not in the log yet')} (a running recorder moves them within its commit interval; after a crash the next start does)`);
        watermark = through;
        advance();
        return;
      }
    }
    if (atLogEnd && readSuccessor === null && lastEventOp !== 'AUDIT_STOPPED' && head !== null && head !== 'unreadable' && missing > head.reads_through) {
      // A running recorder: reads drain in seq order and HEAD (read before the log) vouches only
      // for reads through `reads_through`. A hole after every read present and above that is
      // reads still in the ring, not yet drained (a crash would name them in an AUDIT_GAP at the
      // next start); it is not evidence of tampering. Noted, and the scan moves past it.
      notes.push(`${what.replace(' missing', ' not in the log yet')} (newer than HEAD's reads_through ${head.reads_through}: reads a running recorder has not drained yet)`);
      watermark = through;
      advance();
      return;
    }
    const candidates: Candidate[] = [];
    for (const next of [readSuccessor, writeSuccessor]) {
      if (next === null) {
        candidates.push({
          fileIndex: endOfLog.fileIndex,
          sortOffset: endOfLog.offset,
          atEnd: true,
          p: { file: endOfLog.file, line: endOfLog.line + 1, offset: endOfLog.offset, seq: null, problem: `truncated: ${what} at the end of the log (no record and no AUDIT_GAP names ${missing === through ? 'it' : 'them'})` },
        });
      } else {
        const at = pending.get(next)!;
        candidates.push({
          fileIndex: at.fileIndex,
          sortOffset: at.offset,
          atEnd: false,
          p: { file: at.file, line: at.line, offset: at.offset, seq: next, problem: `${what}: no record and no AUDIT_GAP names ${missing === through ? 'it' : 'them'} (deleted before seq ${next})` },
        });
      }
    }
    candidates.sort((a, b) => a.fileIndex - b.fileIndex || a.sortOffset - b.sortOffset);
    const first = candidates[0]!;
    add(first.fileIndex, first.sortOffset, first.p, 'missing', { candidates });
    watermark = through;
    advance();
  };
  const tornCandidates = new Map<string, Located>();
  /**
   * Invalid lines past MAX_TORN_CANDIDATES, counted and not kept: a segment of garbage (a disk
   * fault, the wrong file) has a candidate per line, and keeping each took verify to ~500 MB for
   * a 64 MiB segment. `unmatchedExcuses`: gaps naming a torn line not kept, possibly one of these.
   */
  const tornOverflow = { count: 0, first: null as Located | null, unmatchedExcuses: 0 };
  /**
   * The next-to-last segment does not end with its final seal: a problem, unless the last segment
   * shows a rotation that had not finished (decided once the last segment is read).
   */
  let unfinishedRotation: Located | null = null;
  let lastFileEmpty = false;
  let lastFileHasSeal = false;

  /** For a seal whose block the chunk buffer no longer holds (a block past a chunk boundary). */
  let scratchBuffer: Buffer | null = null;
  const scratch = (): Buffer => (scratchBuffer ??= Buffer.allocUnsafe(1 << 18));

  const onSegment = options.onSegment;
  // Sizes only when someone follows the progress: a stat per segment is not free on a big spool.
  const sizes = onSegment === undefined ? [] : segments.map((seg) => sizeOf(seg.path));
  const bytesTotal = sizes.reduce((a, b) => a + b, 0);
  let bytesDone = 0;
  for (let fileIndex = 0; fileIndex < segments.length; fileIndex++) {
    if (onSegment !== undefined && fileIndex > 0) {
      bytesDone += sizes[fileIndex - 1]!;
      onSegment({ file: segments[fileIndex - 1]!.name, segmentsDone: fileIndex, segmentsTotal: segments.length, bytesDone, bytesTotal });
    }
    const seg = segments[fileIndex]!;
    if (fileIndex > 0 && seg.segment !== segments[fileIndex - 1]!.segment + 1) {
      const from = segments[fileIndex - 1]!.segment + 1;
      const to = seg.segment - 1;
      const jump = `the chain jumps from segment ${from - 1} to ${seg.segment}`;
      const copies = compressedCopies(from, to);
      add(fileIndex, 0, {
        file: seg.name,
        line: 1,
        offset: 0,
        seq: null,
        problem:
          copies === null
            ? `segment(s) ${from}..${to} are missing: ${jump}`
            : from === to
              ? `segment ${from} is missing${copies.problem} (${jump})`
              : `segment(s) ${from}..${to} are missing: ${jump}${copies.problem}`,
        ...(copies === null ? {} : { code: copies.code }),
      });
      resync = true;
    }
    const opened = openSegmentFile(seg.path);
    // Not a segment file (a FIFO, a directory, a file padded past 2 GiB): named, and checked as
    // if empty, so the chain's other problems and the rest of the log are still reported.
    if (typeof opened === 'string') add(fileIndex, 0, { file: seg.name, line: 0, offset: 0, seq: null, problem: opened });
    const lines = typeof opened === 'string' ? null : new SegmentLines(opened.fd);
    const isLast = fileIndex === segments.length - 1;
    if (typeof opened !== 'string' && opened.size === 0) {
      // A rotation that crashed between creating the file and writing its header leaves the last
      // segment empty (the next start writes the header): decided with the segment before it.
      if (isLast && fileIndex > 0) lastFileEmpty = true;
      else add(fileIndex, 0, { file: seg.name, line: 1, offset: 0, seq: null, problem: emptySegmentProblem(seg.segment) });
    }
    const lineStarts: number[] = [];
    const lineOf = (offset: number): number => {
      let lo = 0;
      let hi = lineStarts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (lineStarts[mid]! <= offset) lo = mid;
        else hi = mid - 1;
      }
      return lo + 1;
    };
    let sealedTo = 0;
    let lastLineFinalSeal = false;
    let sawSealInFile = false;
    let recordsInFile = 0;
    /** The records of this file since its last seal line: a seal may not cover the last of them. */
    let sinceSeal: { offset: number; line: number; seq: number; op: string }[] = [];
    let start = 0;
    let lineNo = 0;
    while (lines !== null && lines.next()) {
      start = lines.start;
      lineNo++;
      lineStarts.push(start);
      const nl = lines.end;
      const here = (problem: string, seq: number | null = null, sortOffset = start): void =>
        add(fileIndex, sortOffset, { file: seg.name, line: lineNo, offset: start, seq, problem });
      if (nl === -1) {
        const uncommitted = head !== null && head !== 'unreadable' && fileIndex === segments.length - 1 && (seg.segment > head.segment || (seg.segment === head.segment && start >= head.to));
        if (uncommitted && lastEventOp !== 'AUDIT_STOPPED') {
          // Past what HEAD (read before the log) vouches for, in a recorder that has not stopped:
          // a record being written while we read, or a crash's torn tail that the next start
          // cuts and names in an AUDIT_GAP. Nothing committed is missing; noted, not failed.
          notes.push(`the log ends inside a record (${lines.size - start} bytes) past HEAD's committed offset: a record a running recorder is writing, or a crash's torn tail its next start names in an AUDIT_GAP`);
          break;
        }
        here(`the file ends inside a record (${lines.size - start} bytes without a newline): truncated, or torn by a crash the recorder has not yet recovered from`);
        break;
      }
      lastLineFinalSeal = false;
      const text = lines.text;
      const parsed: ReturnType<typeof parseSpoolLine> =
        text === null ? { kind: 'invalid', problem: `a line of ${nl - start} bytes, longer than any audit record (at most ${VERIFY_CHUNK_BYTES}): not parsed` } : parseSpoolLine(text.toString('utf8'));
      if (lineNo === 1 && !(parsed.kind === 'segment' && parsed.segment.segment === seg.segment)) {
        here(`the first line is not this segment's header ({"type":"SEGMENT","segment":${seg.segment}})`);
      }
      if (lineNo > 1 && parsed.kind === 'segment') {
        // A header is written once, as the file's first line. One further on is no record, so no
        // other check sees it, and where no seal covers it (after the last seal, or before a seal
        // whose range ends short of its line) it passed, although recovery refuses the spool.
        here(`a SEGMENT header inside the segment (line ${lineNo}): the recorder writes one, as the first line of the file; this one was inserted`);
      }
      if (parsed.kind === 'invalid') {
        // A damaged record still holds its place: count its seq as seen when it can be read,
        // so the damage is reported once, here, and not again as a missing seq.
        const seqMatch = SEQ_FIELD.exec(lines.head.toString('latin1', 0, 64));
        const damagedSeq = seqMatch === null ? null : Number(seqMatch[1]);
        const candidate: Located = { fileIndex, sortOffset: start, kind: 'record', p: { file: seg.name, line: lineNo, offset: start, seq: damagedSeq, problem: `not a valid audit record: ${parsed.problem}` } };
        if (tornCandidates.size < MAX_TORN_CANDIDATES) {
          tornCandidates.set(`${seg.segment}:${start}`, candidate);
        } else {
          tornOverflow.count++;
          tornOverflow.first ??= candidate;
        }
        if (damagedSeq !== null && damagedSeq > watermark && !pending.has(damagedSeq)) {
          if (watermark < 0) watermark = resync ? damagedSeq - 1 : 0;
          pending.set(damagedSeq, { file: seg.name, line: lineNo, offset: start, fileIndex, read: /"op_type":"(LOAD|RANGE)"/.test(lines.head.toString('latin1')) });
          seenDamaged.add(damagedSeq);
          advance();
        }
      } else if (parsed.kind === 'seal') {
        const s = parsed.seal;
        sealCount++;
        sawSealInFile = true;
        // A seal covers [from, to), and `to` may end before its own line (a write landed between
        // the worker's read-back and its seal line): records there are sealed only by the next
        // seal. After the log's last seal they are sealed by none, so they count as unsealed.
        const coveredTo = Math.min(s.to, start);
        const uncovered = sinceSeal.filter((r) => r.offset >= coveredTo);
        const lastCovered = sinceSeal.findLast((r) => r.offset < coveredTo);
        unsealedRecords = uncovered.length;
        if (lastCovered?.op === 'AUDIT_STOPPED' && uncovered.length > 0 && !appendedAfterStop) {
          // AUDIT_STOPPED is the last record a recorder writes and its seal covers it: a record
          // after the stop that this seal leaves out was put there once the seal was written.
          const first = uncovered[0]!;
          appendedAfter(
            { file: seg.name, line: lastCovered.line, seq: lastCovered.seq },
            { file: seg.name, line: first.line, offset: first.offset, fileIndex, seq: first.seq, op: first.op },
            `lies before seal #${s.seal} but past the bytes it covers (up to ${s.to}), so no seal covers it`,
          );
        } else if (stop !== null) {
          stop.sealed = true;
        }
        sinceSeal = [];
        if (retentionUnsealed !== null) {
          if (retention === null || retentionUnsealed.through >= retention.through) retention = { ...retentionUnsealed, sealed: true };
          retentionUnsealed = null;
        }
        checkSeal(s, start, nl);
        lastLineFinalSeal = s.final;
      } else if (parsed.kind === 'event') {
        const e = parsed.event;
        records++;
        recordsInFile++;
        unsealedRecords++;
        sinceSeal.push({ offset: start, line: lineNo, seq: e.seq, op: e.op_type });
        lastEventOp = e.op_type;
        // The lowest, not the first in the file: reads and writes reach the log by two paths, so
        // a read drained early can stand before the AUDIT_STARTED with seq 1.
        if (firstSeq === null || e.seq < firstSeq) firstSeq = e.seq;
        if (watermark < 0) {
          watermark = resync && seg.segment !== 1 ? e.seq - 1 : 0;
          if (watermark > 0) midStreamFile = fileIndex;
        }
        if (lastSeq === null || e.seq > lastSeq) lastSeq = e.seq;
        const read = isReadStream(e.op_type);
        const stream = read ? 'r' : 'w';
        const previous = lastInStream[stream];
        const midStream = fileIndex === midStreamFile;
        // Already counted from a damaged line: this whole record takes that line's place.
        const wholeAfterDamaged = !midStream && seenDamaged.delete(e.seq);
        const duplicate = !wholeAfterDamaged && (midStream ? midStreamSeen.has(e.seq) : e.seq <= watermark || pending.has(e.seq));
        if (midStream) {
          midStreamSeen.add(e.seq);
          if (e.seq < midStreamFirst[stream]) midStreamFirst[stream] = e.seq;
        }
        const beforeStart = midStream && !duplicate && e.seq <= watermark;
        if (duplicate) {
          here(`seq ${e.seq} appears twice (a record was duplicated or inserted)`, e.seq);
        } else if (e.seq < previous.seq) {
          // Either this record or the previous one of its stream is out of place; the previous
          // one sorts first (a swapped pair, or a forged record with a high seq, starts there).
          add(previous.fileIndex, previous.offset, {
            file: previous.file,
            line: previous.line,
            offset: previous.offset,
            seq: previous.seq,
            problem: `seq ${previous.seq} (line ${previous.line}) is followed by seq ${e.seq} (${seg.name}:${lineNo}) in the ${read ? 'read' : 'write'} stream: records were reordered or inserted`,
          });
        }
        if (e.seq > previous.seq) lastInStream[stream] = { seq: e.seq, file: seg.name, line: lineNo, offset: start, fileIndex };
        if (!duplicate && !beforeStart && !wholeAfterDamaged) {
          pending.set(e.seq, { file: seg.name, line: lineNo, offset: start, fileIndex, read });
          advance();
          if (pending.size > MAX_PENDING) reportMissing();
        }
        if (stop !== null && stop.sealed && !appendedAfterStop) {
          if (read) {
            firstReadAfterStop ??= { file: seg.name, line: lineNo, offset: start, fileIndex, seq: e.seq, op: e.op_type };
          } else {
            if (e.op_type !== 'AUDIT_STARTED') {
              const first = firstReadAfterStop ?? { file: seg.name, line: lineNo, offset: start, fileIndex, seq: e.seq, op: e.op_type };
              appendedAfter(stop, first, `is not the AUDIT_STARTED a restart writes first`);
            } else if (firstReadAfterStop !== null && firstReadAfterStop.seq < e.seq) {
              appendedAfter(stop, firstReadAfterStop, `is older than the restart's AUDIT_STARTED (seq ${e.seq}, ${seg.name}:${lineNo}), so no restarted recorder wrote it`);
            }
            stop = null;
            firstReadAfterStop = null;
          }
        } else if (stop !== null && !stop.sealed) {
          // A record between AUDIT_STOPPED and its seal: the stop is not the end of that run's log.
          stop = null;
        }
        if (e.op_type === 'AUDIT_STOPPED') stop = { file: seg.name, line: lineNo, seq: e.seq, sealed: false };
        if (e.op_type === 'AUDIT_RETENTION') {
          const through = retentionThrough(e.detail);
          if (through !== null && (retentionUnsealed === null || through >= retentionUnsealed.through)) retentionUnsealed = { file: seg.name, line: lineNo, through };
        }
        if (e.op_type === 'AUDIT_GAP' && e.gap !== undefined) {
          gaps.push({ ...e.gap, file: seg.name, line: lineNo });
          excused.push({ from: e.gap.from, to: e.gap.to });
          const torn = e.gap.torn;
          if (torn !== null && torn !== undefined && !tornCandidates.delete(`${torn.segment}:${torn.offset}`)) tornOverflow.unmatchedExcuses++;
          advance();
        }
      }
    }
    lines?.close();
    const size = lines?.size ?? 0;
    endOfLog = { file: seg.name, line: lineNo, offset: size, fileIndex };
    if (!isLast && !lastLineFinalSeal && size > 0) {
      const missingFinal: Located = {
        fileIndex,
        sortOffset: size,
        kind: 'record',
        p: {
          file: seg.name,
          line: lineNo,
          offset: lineStarts.at(-1) ?? 0,
          seq: null,
          problem: 'this segment does not end with its final seal although a later segment exists: it was truncated, or records were appended after it was closed',
        },
      };
      if (fileIndex === segments.length - 2) unfinishedRotation = missingFinal;
      else add(missingFinal.fileIndex, missingFinal.sortOffset, missingFinal.p);
    }
    if (isLast) lastFileHasSeal = sawSealInFile;
    if (isLast && !sawSealInFile && recordsInFile > 0 && unfinishedRotation === null) notes.push(`${seg.name} has no seal yet (a new segment of a running recorder)`);

    // Seal checks need this file's bytes and line table.
    function checkSeal(s: SealRecord, lineStart: number, _lineEnd: number): void {
      const at = (problem: string, sortOffset = lineStart): void =>
        add(fileIndex, sortOffset, { file: seg.name, line: lineNo, offset: lineStart, seq: null, problem: `seal #${s.seal}: ${problem}` });
      if (s.segment !== seg.segment) at(`names segment ${s.segment} but lies in segment ${seg.segment} (moved from another file)`);
      if (!resync && s.seal !== expectedSeal + 1) at(`expected seal #${expectedSeal + 1}: a seal was removed or inserted`);
      if (s.from !== sealedTo) at(`covers bytes from ${s.from}, but the previous seal of this segment ended at ${sealedTo}: bytes were inserted or removed`);
      if (s.to > lineStart) at(`covers bytes up to ${s.to}, past its own line at ${lineStart}: bytes were removed before it`);
      if (key !== null && s.alg !== 'hmac-sha256') at('is plain sha256 but the spool key was given: the chain may have been rebuilt by someone without the key');
      if (key === null && s.alg === 'hmac-sha256' && !keyRequired) {
        // Once, not per seal: every keyed seal is unverifiable for the same reason.
        keyRequired = true;
        at("this spool's seals are HMAC-keyed (hmac-sha256): verify with the spool key (--key-file or --key-env); without it no seal's hash can be checked");
      }
      const linkBroken = !resync && s.prev !== prevHash;
      const link = `prev ${s.prev.slice(0, 12)}… is not the previous seal's hash ${prevHash.slice(0, 12)}…`;
      const from = Math.min(s.from, lineStart);
      const to = Math.min(s.to, lineStart);
      const hashable = s.alg === hasher.alg && from <= to;
      if (linkBroken && !hashable) at(`chain link broken: ${link}`);
      if (hashable) {
        const hashAfter = (prev: string): string => lines!.hash(hasher, prev, from, to, scratch);
        const hash = hashAfter(resync ? s.prev : prevHash);
        // A broken link and altered bytes are different findings: hashed after the seal's own
        // prev, intact bytes still match it (the seal before it was altered or removed, or this
        // block comes from another chain); hashed after the previous seal, only prev was edited.
        const intactAfterOwnPrev = linkBroken && hash !== s.hash && hashAfter(s.prev) === s.hash;
        if (key !== null) {
          keyedHashed++;
          if (hash === s.hash || intactAfterOwnPrev) keyedMatched++;
        }
        if (linkBroken) {
          if (hash === s.hash) at(`chain link broken: its prev field was altered (${link}, but its bytes hash correctly after the previous seal)`);
          else if (intactAfterOwnPrev) at(`chain link broken: ${link}; its own bytes are intact, so the seal before it was altered or removed, or this block comes from another chain`);
          else at(`chain link broken: ${link}`);
        }
        if (hash !== s.hash && !intactAfterOwnPrev) {
          const first = lineOf(from);
          const last = lineOf(Math.max(from, to - 1));
          add(
            fileIndex,
            from,
            {
              file: seg.name,
              line: first,
              offset: from,
              seq: null,
              problem: `seal #${s.seal}: bytes ${from}..${to} (lines ${first}-${last}) do not match their ${s.alg} hash: a record in them was altered, inserted, removed or reordered`,
            },
            'block',
            { block: { fileIndex, from, to } },
          );
        }
      }
      prevHash = s.hash;
      resync = false;
      sealedTo = s.to;
      expectedSeal = s.seal;
      sealsByNumber.set(s.seal, { segment: seg.segment, hash: s.hash });
    }
  }
  if (onSegment !== undefined && segments.length > 0) {
    onSegment({ file: segments.at(-1)!.name, segmentsDone: segments.length, segmentsTotal: segments.length, bytesDone: bytesTotal, bytesTotal });
  }

  for (const candidate of tornCandidates.values()) add(candidate.fileIndex, candidate.sortOffset, candidate.p, 'record');
  // Each gap excuses one torn line at most: more lines than excuses left means damage among them.
  if (tornOverflow.first !== null && tornOverflow.count > tornOverflow.unmatchedExcuses) {
    const first = tornOverflow.first;
    add(first.fileIndex, first.sortOffset, first.p, 'record');
    notes.push(`${tornOverflow.count} more lines are not valid audit records, from ${first.p.file} line ${first.p.line} on: past the first ${MAX_TORN_CANDIDATES} such lines only the first is listed (the spool holds something other than audit records, or is badly damaged)`);
  }
  if (keyedHashed > 1 && keyedMatched === 0) {
    // Every block "altered" at once is far more often the wrong key than a rewritten spool: say
    // so before someone opens an incident (the findings stand: the two cannot be told apart).
    notes.push(`not one of the ${keyedHashed} HMAC seals verifies with the key given: is it this spool's key (--key-file, --key-env)? A chain rebuilt under another key looks the same`);
  }
  atLogEnd = true;
  readJournalSeqs();
  while (pending.size > 0) reportMissing();

  const lastFile = segments.at(-1)!;
  if (unfinishedRotation !== null) {
    // A rotation writes the new segment's header, moves the writers to it, then seals the old
    // one final and writes HEAD. Stopped in between (a crash, or a live rotation while we read),
    // the old segment lacks its final seal and the new one has no seal and HEAD names none of it;
    // the next start seals the old segment final. Anything else is a cut or an append.
    const previous = unfinishedRotation.p.file;
    const headBefore = head === null || head === 'unreadable' || head.segment < lastFile.segment;
    if (!lastFileHasSeal && lastEventOp !== 'AUDIT_STOPPED' && headBefore) {
      notes.push(
        `${previous} does not end with its final seal and ${lastFile.name} ${lastFileEmpty ? 'is still empty' : 'holds no seal yet'}: a rotation in progress, or interrupted by a crash; the next start completes it (seals ${previous} final and carries the chain on)`,
      );
      lastFileEmpty = false;
    } else {
      add(unfinishedRotation.fileIndex, unfinishedRotation.sortOffset, unfinishedRotation.p);
    }
  }
  if (lastFileEmpty) add(segments.length - 1, 0, { file: lastFile.name, line: 1, offset: 0, seq: null, problem: emptySegmentProblem(lastFile.segment) });

  if (stop !== null && stop.sealed && firstReadAfterStop !== null && !appendedAfterStop) {
    // Reads after a sealed stop and no AUDIT_STARTED in the log: a restarted recorder's reads
    // reach the log before its AUDIT_STARTED while that waits in the journal (moved at its
    // next commit). Without it there, no recorder wrote them.
    const after = stop.seq;
    const before = firstReadAfterStop.seq;
    const started = [...journaledStarts].find((seq) => seq > after && seq < before);
    if (started !== undefined) notes.push(`reads after the clean stop precede the restart's AUDIT_STARTED (seq ${started}), which is still in the write journal (a running recorder moves it at its next commit)`);
    else appendedAfter(stop, firstReadAfterStop, 'no AUDIT_STARTED of a restart comes before or after it');
  }

  const firstSegment = segments[0]!.segment;
  if (isDir && firstSegment !== 1) {
    // Retention removes the oldest segments and then records AUDIT_RETENTION (absent_through) in
    // a newer one; removing the segment that holds such a record writes a newer one in turn, so
    // what is left always holds a record naming every removed segment. A gap at the start that
    // no such record names is a deletion, not retention.
    const named = retention !== null && retention.through >= firstSegment - 1 ? retention : retentionUnsealed !== null && retentionUnsealed.through >= firstSegment - 1 ? { ...retentionUnsealed, sealed: false } : null;
    if (named !== null) {
      notes.push(
        `the log starts at segment ${firstSegment}: earlier segments are absent, removed by retention (AUDIT_RETENTION at ${named.file}:${named.line} names segments through ${named.through}${named.sealed ? '' : '; that record is not sealed yet'}); the chain is checked from there`,
      );
    } else {
      const newest = retention ?? retentionUnsealed;
      const copies = compressedCopies(1, firstSegment - 1);
      add(0, 0, {
        file: segments[0]!.name,
        line: 1,
        offset: 0,
        seq: null,
        problem: `segment(s) 1..${firstSegment - 1} are absent and no AUDIT_RETENTION record names their removal${newest === null ? '' : ` (the newest, ${newest.file}:${newest.line}, names segments through ${newest.through})`}: the oldest segments were deleted, not retained${copies?.problem ?? ''}`,
        ...(copies === null ? {} : { code: copies.code }),
      });
    }
  }

  if (isDir) {
    const endProblem = (problem: string, code?: VerifyProblem['code']): void =>
      add(segments.length - 1, Number.MAX_SAFE_INTEGER, { file: lastFile.name, line: 0, offset: statSync(lastFile.path).size, seq: null, problem, ...(code === undefined ? {} : { code }) });
    if (head === 'unreadable') endProblem('HEAD is unreadable: the last committed seal cannot be compared with the log');
    else if (head === null && key !== null && sealCount > 0) {
      // Keyed, HEAD is the only proof of where the log ended: without it a cut cannot be ruled out.
      endProblem(`no HEAD file in a keyed spool holding ${sealCount} seal(s): HEAD (MAC'd with the key) is the proof of where the log ended, so records or whole segments cut off the end cannot be ruled out; a recorder creates it at start and rewrites it at every commit`);
    } else if (head === null) {
      notes.push(
        sealCount > 0
          ? `no HEAD file, although the log holds ${sealCount} seal(s): a recorder creates HEAD when it starts and rewrites it at every commit, so it was deleted or not copied; without it, records or whole segments cut off the end of the log cannot be detected`
          : 'no HEAD file and no seal yet: records cut off the end of the log cannot be detected',
      );
    } else if (key !== null && head.mac !== headMac(head, key)) {
      endProblem(
        head.mac === undefined
          ? `HEAD carries no MAC although the spool is keyed: it was rewritten by someone without the key (a HEAD naming an earlier seal would hide records cut off the end)`
          : `HEAD's MAC does not match the key: HEAD was rewritten without the key (a HEAD naming an earlier seal would hide records cut off the end)`,
      );
    } else {
      const sealed = sealsByNumber.get(head.seal);
      if (sealed === undefined && head.seal > expectedSeal) {
        const copies = compressedCopies(lastFile.segment + 1, head.segment);
        endProblem(`truncated: HEAD records seal #${head.seal} (segment ${head.segment}) as committed, but the log ends at seal #${expectedSeal}${copies?.problem ?? ''}`, copies?.code);
      } else if (sealed !== undefined && (sealed.hash !== head.hash || sealed.segment !== head.segment)) {
        endProblem(`HEAD's seal #${head.seal} (${head.hash.slice(0, 12)}…) differs from the log's (${sealed.hash.slice(0, 12)}…): the log was rewritten after it was committed`);
      }
    }
  }
  if (unsealedRecords > 0 && !appendedAfterStop) notes.push(`${unsealedRecords} record(s) after the last seal are not sealed yet (a running recorder seals them at its next commit)`);
  return finish();

  function finish(): VerifyReport {
    const placed = placeProblems(found);
    const problems = placed.slice(0, MAX_PROBLEMS).map((f) => f.p);
    return {
      ok: problems.length === 0,
      path,
      files: segments.map((s) => (isDir ? s.name : `${basename(dirname(s.path))}/${s.name}`)),
      records,
      seals: sealCount,
      firstSeq,
      lastSeq,
      gaps,
      closed: lastEventOp === 'AUDIT_STOPPED',
      unsealedRecords,
      firstBad: firstBad(placed),
      problems,
      notes,
      keyRequired,
    };
  }
}

/**
 * How much of a segment verify holds at once, and the longest line it parses. A segment is read
 * in pieces of this size: whole, its memory grew with the segment (64 MiB by default, up to
 * 2 GiB configured, the same for a corrupt file of that size). No record comes near it (the
 * recorder's largest are tens of KiB), so a longer line is reported, not parsed.
 */
export const VERIFY_CHUNK_BYTES = 1 << 20;
/** How much of an over-long line is kept: enough for its seq and op_type. */
const LINE_HEAD_BYTES = 96;

/**
 * The lines of an open segment, read in VERIFY_CHUNK_BYTES pieces into one buffer. `text` is
 * valid until the next call. Reads to the end of the file as it is then (a live recorder
 * appends while we read, as readFileSync did), and closes the file there or on a read error.
 * Recovery reads the last segment with it too: a start must not hold a 2 GiB segment in memory.
 */
export class SegmentLines {
  readonly #buf = Buffer.allocUnsafe(VERIFY_CHUNK_BYTES);
  readonly #fd: number;
  /** File offset of buf[0]; buf[0, len) holds the file's bytes from there. */
  #base = 0;
  #len = 0;
  /** Index in buf of the next line's start. */
  #pos = 0;
  #eof = false;
  #closed = false;
  /** File offset of the line's first byte. */
  start = 0;
  /** File offset of its newline, -1 when the file ends inside it. */
  end = -1;
  /** The line without its newline, or null when it is longer than VERIFY_CHUNK_BYTES. */
  text: Buffer | null = null;
  /** An over-long line's first bytes, kept when the rest is skipped. */
  #longHead: Buffer | null = null;

  /** `from`: the file offset of the first line to return. */
  constructor(fd: number, from = 0) {
    this.#fd = fd;
    this.#base = from;
  }

  /** The line's first LINE_HEAD_BYTES bytes (or fewer, up to its end). */
  get head(): Buffer {
    return this.text === null ? this.#longHead! : this.text.subarray(0, LINE_HEAD_BYTES);
  }

  /** Bytes read so far: the file's length once next() has returned false. */
  get size(): number {
    return this.#base + this.#len;
  }

  next(): boolean {
    let scan = this.#pos;
    for (;;) {
      const nl = this.#find(scan);
      if (nl !== -1) return this.#line(this.#pos, nl, nl);
      if (this.#eof) {
        if (this.#pos >= this.#len) return false;
        return this.#line(this.#pos, this.#len, -1);
      }
      if (this.#pos > 0) {
        // Keep the unfinished line, move it to the front, read on after it.
        this.#buf.copy(this.#buf, 0, this.#pos, this.#len);
        this.#base += this.#pos;
        this.#len -= this.#pos;
        this.#pos = 0;
      }
      scan = this.#len;
      if (this.#len === this.#buf.length) return this.#overlong();
      this.#fill();
    }
  }

  /** Hashes file bytes [from, to), already read, from the buffer when it still holds them. */
  hash(hasher: ChainHasher, prev: string, from: number, to: number, scratch: () => Buffer): string {
    if (from >= this.#base && to <= this.#base + this.#len) return hasher.begin(prev).update(this.#buf.subarray(from - this.#base, to - this.#base)).digest('hex');
    try {
      return hashRange(this.#fd, from, to, prev, hasher, scratch());
    } catch (error) {
      this.close();
      throw error;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }

  #find(from: number): number {
    const at = this.#buf.indexOf(10, from);
    return at >= this.#len ? -1 : at;
  }

  #line(from: number, to: number, nl: number): boolean {
    this.start = this.#base + from;
    this.end = nl === -1 ? -1 : this.#base + nl;
    this.text = this.#buf.subarray(from, to);
    this.#pos = nl === -1 ? to : nl + 1;
    return true;
  }

  /** A line filling the whole buffer: its head is kept and the rest skipped to its newline. */
  #overlong(): boolean {
    this.start = this.#base;
    this.#longHead = Buffer.from(this.#buf.subarray(0, LINE_HEAD_BYTES));
    this.text = null;
    for (;;) {
      this.#base += this.#len;
      this.#len = 0;
      this.#pos = 0;
      this.#fill();
      const nl = this.#find(0);
      if (nl !== -1) {
        this.end = this.#base + nl;
        this.#pos = nl + 1;
        return true;
      }
      if (this.#eof) {
        this.end = -1;
        this.#pos = this.#len;
        return true;
      }
    }
  }

  #fill(): void {
    let got: number;
    try {
      got = readSync(this.#fd, this.#buf, this.#len, this.#buf.length - this.#len, this.#base + this.#len);
    } catch (error) {
      this.close();
      throw error;
    }
    if (got === 0) {
      this.#eof = true;
      this.close();
    }
    this.#len += got;
  }
}

const SEQ_FIELD = /"seq":([0-9]{1,16})[,}]/;
const STARTED_RECORD = /^\{"v":1,"seq":[0-9]+,"op_type":"AUDIT_STARTED"/;

function emptySegmentProblem(segment: number): string {
  return `the file is empty: every segment starts with its header line ({"type":"SEGMENT","segment":${segment}})`;
}

/** `absent_through` of an AUDIT_RETENTION record's detail (its `segment` if absent), or null. */
function retentionThrough(detail: string | null | undefined): number | null {
  if (typeof detail !== 'string') return null;
  try {
    const value = JSON.parse(detail) as { absent_through?: unknown; segment?: unknown };
    const through = value.absent_through ?? value.segment;
    return typeof through === 'number' && Number.isSafeInteger(through) && through > 0 ? through : null;
  } catch {
    return null;
  }
}

const inside = (b: NonNullable<Located['block']>, at: { fileIndex: number; sortOffset: number }): boolean =>
  at.fileIndex === b.fileIndex && at.sortOffset >= b.from && at.sortOffset < b.to;

/**
 * Every problem at the place that names it best, in log order. A missing seq's place is
 * inferred: the record stood before the next record of its own stream, and which stream it was
 * is unknown, so each stream's next record (or the end of the log) is a candidate. Inside a block
 * whose seal failed, that candidate (the record was removed from there); otherwise the latest
 * one, the furthest the record can have stood: a problem proven at a line before it (a missing
 * segment, a cut line) is then not hidden behind a hole that may lie after it.
 */
function placeProblems(found: readonly Located[]): Located[] {
  const blocks = found.filter((f) => f.kind === 'block').map((f) => f.block!);
  const placed = found.map((f): Located => {
    if (f.kind !== 'missing') return f;
    const candidates = f.candidates!; // in log order
    const c = candidates.find((at) => blocks.some((b) => inside(b, at))) ?? candidates.at(-1)!;
    // Cut off the end: after everything else at the end of the log, where HEAD's proof of the cut
    // (the committed seal that is gone) sorts, and which names it better than an inferred hole.
    return { ...f, p: c.p, fileIndex: c.fileIndex, sortOffset: c.atEnd ? Number.MAX_SAFE_INTEGER : c.sortOffset, inferredEnd: c.atEnd };
  });
  // Stable: at one place, problems keep the order they were found in (a segment's own problem
  // before its lines').
  return placed.sort((a, b) => a.fileIndex - b.fileIndex || a.sortOffset - b.sortOffset || Number(a.inferredEnd === true) - Number(b.inferredEnd === true));
}

/**
 * The first bad record: the earliest problem in the log (by segment, then byte). When that is a
 * sealed block whose bytes do not hash, something in it changed; a precise finding inside it
 * names the record (the line that does not parse, the duplicate, the pair out of order, the
 * place of a deleted seq), and the block itself is named when nothing more precise is known (a
 * flipped digit that still parses).
 */
function firstBad(placed: readonly Located[]): VerifyProblem | null {
  const first = placed[0];
  if (first === undefined) return null;
  if (first.kind !== 'block') return first.p;
  const b = first.block!;
  return (placed.find((f) => f.kind !== 'block' && inside(b, f)) ?? first).p;
}

/** The report as a person reads it (the CLI's output). */
export function formatVerifyReport(report: VerifyReport): string {
  const out: string[] = [];
  if (report.ok) {
    out.push(`OK: ${report.path}: ${report.records} records (seq ${report.firstSeq ?? '-'}..${report.lastSeq ?? '-'}), ${report.seals} seals, ${report.files.length} segment(s); chain intact`);
  } else {
    const f = report.firstBad!;
    out.push(`FAILED: ${report.path}`);
    out.push(`  first bad record: ${f.file}:${f.line}${f.seq === null ? '' : ` (seq ${f.seq})`} byte ${f.offset}: ${f.problem}`);
    // Every other problem, in log order: the first bad record need not be the first in the list
    // (a precise finding inside a failed block is named instead of the block).
    const others = report.problems.filter((p) => !(p.file === f.file && p.line === f.line && p.offset === f.offset && p.problem === f.problem));
    for (const p of others.slice(0, SHOWN_PROBLEMS)) out.push(`  also: ${p.file}:${p.line}${p.seq === null ? '' : ` (seq ${p.seq})`}: ${p.problem}`);
    if (others.length > SHOWN_PROBLEMS) out.push(`  … ${others.length - SHOWN_PROBLEMS} more (--json lists ${report.problems.length === MAX_PROBLEMS ? `the first ${MAX_PROBLEMS}` : 'them all'})`);
    out.push(`  ${report.records} records, ${report.seals} seals, ${report.files.length} segment(s)`);
  }
  if (report.gaps.length > 0) {
    out.push(`gaps (named losses, not tampering): ${report.gaps.map((g) => `${g.from}..${g.to} ${g.cause} (${g.file}:${g.line})`).join('; ')}`);
  }
  if (report.records > 0) out.push(report.closed ? 'the recorder stopped cleanly (AUDIT_STOPPED)' : 'the log is open: the recorder is running, or ended without AUDIT_STOPPED');
  for (const note of report.notes) out.push(`note: ${note}`);
  return out.join('\n');
}
