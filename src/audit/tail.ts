import { closeSync, constants, existsSync, fstatSync, readSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AuditConfigurationError, AuditSpoolPathError } from './errors.ts';
import { COMPRESSED_SEGMENT_PATTERN, listCompressedSegments, listSegments, openSegmentFile, SEGMENT_PATTERN, segmentName } from './spool.ts';
import type { SegmentFile } from './spool.ts';

export interface TailOptions {
  /** How many of the last records to print first. Default 10. */
  readonly lines?: number;
  /** Keep printing records as they are written, across rotations, until `signal` aborts. */
  readonly follow?: boolean;
  /** Also print SEAL and SEGMENT lines. Default false: records only. */
  readonly seals?: boolean;
  /** How often to look for new bytes when following, ms, from 1 to 2,147,483,647. Default 200. */
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
  /** Receives each line (without its newline). */
  readonly write: (line: string) => void;
  /**
   * Following a spool that has no segment yet (its service not started), tail waits for the
   * first one, and says so once through this; so too when the file followed is gone, replaced or
   * truncated (a spool removed and started over). Default: nothing said.
   */
  readonly onWait?: (message: string) => void;
}

const CHAIN_LINE = /^\{"v":1,"type":"(SEAL|SEGMENT)"/;
const NEWLINE = 0x0a;

/**
 * `tail` for a spool: the last records of a directory of segments (or one segment file), then,
 * with `follow`, each new record as it is appended, moving to the next segment once the current
 * one is sealed final. Lines are printed exactly as stored (pipe them to `jq`).
 */
export async function tailSpool(path: string, options: TailOptions): Promise<void> {
  const keep = (line: string): boolean => line !== '' && (options.seals === true || !CHAIN_LINE.test(line));
  let isDir = existsSync(path) && statSync(path).isDirectory();
  const pollMs = options.pollMs ?? 200;
  // A timer's delay: past 2,147,483,647 ms (or 0, negative, NaN) Node waits 1 ms instead, and a
  // rare poll became a thousand reads of the segment a second.
  if (!(typeof pollMs === 'number' && pollMs >= 1 && pollMs <= 2_147_483_647)) {
    throw new AuditConfigurationError('pollMs', 'must be a number of ms from 1 to 2,147,483,647 (the longest delay a Node.js timer holds; a longer one would fire after 1 ms)', pollMs);
  }
  // Following a directory that has no segment yet (or is not there yet: the service has not
  // started) waits for it, as `tail -F` waits for a file; its records are then all new.
  let waited = false;
  if (options.follow === true && !SEGMENT_PATTERN.test(basename(path)) && (isDir || !existsSync(path)) && listSegments(path).length === 0) {
    // Only compressed segments there (an archive, or a spool whose old segments were gzipped):
    // said, or the wait looked like a spool with nothing in it.
    const gz = isDir ? [...listCompressedSegments(path).values()] : [];
    const archived = gz.length === 0 ? '' : `; found only compressed segments (${gz.length === 1 ? gz[0] : `${gz[0]} … ${gz.at(-1)}, ${gz.length} files`}), which tail does not read: decompress one to read it`;
    options.onWait?.(`waiting for audit segments at ${path}${archived} (Ctrl-C to stop)`);
    waited = true;
    while (options.signal?.aborted !== true && listSegments(path).length === 0) {
      await sleep(pollMs, undefined, { signal: options.signal }).catch(() => undefined);
    }
    if (options.signal?.aborted === true) return;
    isDir = statSync(path).isDirectory();
  }
  const segments = (): SegmentFile[] => {
    if (isDir) return listSegments(path);
    const match = SEGMENT_PATTERN.exec(basename(path));
    return [{ segment: match === null ? 0 : Number(match[1]), name: basename(path), path }];
  };
  if (!existsSync(path)) throw new AuditSpoolPathError(path, 'no such file or directory (give a spool directory, e.g. ./.govmap/audit, or one audit-NNNNNN.jsonl segment)', 'ENOENT');
  // Its bytes are not lines: printed, they were binary noise on the terminal and exit 0.
  const compressed = isDir ? null : COMPRESSED_SEGMENT_PATTERN.exec(basename(path));
  if (compressed !== null) throw new AuditSpoolPathError(path, `a compressed segment: decompress it (to ${basename(path).slice(0, -compressed[2]!.length - 1)}) to tail it`);
  let files: SegmentFile[];
  try {
    files = segments();
  } catch (error) {
    throw cannotOpen(path, error);
  }
  if (files.length === 0) {
    const gz = [...listCompressedSegments(path).values()];
    throw new AuditSpoolPathError(path, `no audit segments (audit-NNNNNN.jsonl) in this directory${gz.length === 0 ? '' : `; found ${gz.join(', ')}: decompress ${gz.length === 1 ? 'it' : 'them'} to tail`}`);
  }
  // The last N records: walk back through the segments until enough are found. Following, the
  // newest segment's end is read whatever N is: where following starts is the size it had when
  // opened (a stat taken later would skip what was appended in between), and the bytes after its
  // last newline are a record still being appended.
  const wanted = waited ? Number.POSITIVE_INFINITY : (options.lines ?? 10);
  // Pieces, newest first, joined at the end: spread into one call, 120,000+ lines (-n takes up to
  // 1,000,000) overflowed the stack.
  const pieces: string[][] = [];
  let found = 0;
  let newest: SegmentEnd | null = null;
  for (let i = files.length - 1; i >= 0; i--) {
    const following = options.follow === true && i === files.length - 1;
    if (found >= wanted && !following) break;
    const end = readSegmentEnd(files[i]!.path, wanted - found, keep);
    if (following) newest = end;
    pieces.push(end.lines);
    found += end.lines.length;
  }
  for (let p = pieces.length - 1; p >= 0; p--) for (const line of pieces[p]!) options.write(line);
  if (newest === null) return;

  let current = files.at(-1)!;
  let offset = newest.size;
  // The bytes after the last newline read so far: a line still being appended. Kept as bytes and
  // decoded only once its newline arrives, because a poll can end inside a multi-byte character
  // (decoded alone, each half would become U+FFFD). Printed whole once the rest arrives, not as
  // two broken halves.
  let carry: Buffer = newest.carry;
  // Kept across polls and taken from the first read too: a segment already sealed final when
  // following starts (an older segment given, a rotation between listing and reading) has no
  // later poll that reads its final seal, and was followed forever.
  let finalSeen = newest.lastLine !== null && isFinalSeal(newest.lastLine);
  // The file the offset belongs to: each poll opens the name again, and a spool removed and
  // started over puts a new, shorter segment under it. Read at the old offset it printed nothing
  // more, for good (or a record from its middle, were the new file longer).
  let identity: FileIdentity | undefined = newest.identity;
  let gone = false;
  while (options.signal?.aborted !== true) {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(current.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw cannotOpen(current.path, error);
      // Gone as `tail -F` finds a rotated log gone: waited for. A spool started over numbers its
      // segments from 1 again: its first segment is followed.
      const restarted = isDir ? listSegments(path) : [];
      if (restarted.length > 0 && restarted.at(-1)!.segment < current.segment) {
        options.onWait?.(`${current.path} is gone and the spool starts again at ${restarted[0]!.name}; following it from its start`);
        current = restarted[0]!;
        offset = 0;
        carry = Buffer.alloc(0);
        finalSeen = false;
        identity = undefined;
        gone = false;
        continue;
      }
      if (!gone) options.onWait?.(`${current.path} is gone (removed or moved); waiting for it (Ctrl-C to stop)`);
      gone = true;
      await sleep(pollMs, undefined, options.signal === undefined ? {} : { signal: options.signal }).catch(() => undefined);
      continue;
    }
    try {
      const stats = await fh.stat();
      if (identity !== undefined && (stats.ino !== identity.ino || stats.dev !== identity.dev || stats.size < offset)) {
        options.onWait?.(`${current.path} was replaced or truncated; following it from its start`);
        offset = 0;
        carry = Buffer.alloc(0);
        finalSeen = false;
      }
      identity = { dev: stats.dev, ino: stats.ino };
      gone = false;
      const size = stats.size;
      if (size > offset) {
        const buffer = Buffer.allocUnsafe(size - offset);
        const { bytesRead } = await fh.read(buffer, 0, buffer.length, offset);
        offset += bytesRead;
        const bytes = carry.length === 0 ? buffer.subarray(0, bytesRead) : Buffer.concat([carry, buffer.subarray(0, bytesRead)]);
        let lineStart = 0;
        for (let nl = bytes.indexOf(NEWLINE); nl !== -1; nl = bytes.indexOf(NEWLINE, lineStart)) {
          const line = bytes.toString('utf8', lineStart, nl);
          lineStart = nl + 1;
          if (keep(line)) options.write(line);
          if (isFinalSeal(line)) finalSeen = true;
        }
        // A copy: the read buffer is a whole poll's bytes, the carry at most one line.
        carry = Buffer.from(bytes.subarray(lineStart));
      }
    } finally {
      await fh.close();
    }
    // Beside the file followed, whether a directory or one of its segments was given (a segment
    // path followed alone stopped at its rotation). A file not named as a segment has no next.
    const next = isDir || SEGMENT_PATTERN.test(basename(path)) ? join(dirname(current.path), segmentName(current.segment + 1)) : null;
    if (finalSeen && next !== null && existsSync(next)) {
      current = { segment: current.segment + 1, name: basename(next), path: next };
      offset = 0;
      carry = Buffer.alloc(0);
      finalSeen = false;
      identity = undefined;
      continue;
    }
    // The promise timer removes its abort listener once it fires: one added per poll and left
    // until the abort piled up for as long as `tail -f` ran (five more a second).
    await sleep(pollMs, undefined, options.signal === undefined ? {} : { signal: options.signal }).catch(() => undefined);
  }
}

/** How much of a segment one read takes when tail walks back from its end. */
const TAIL_READ_BYTES = 1 << 20;

interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
}

interface SegmentEnd {
  /** The last `wanted` whole lines `keep` takes, oldest first. */
  readonly lines: string[];
  /** The file's size when opened: everything read lies below it. */
  readonly size: number;
  /** The bytes after the last newline: a record still being appended, or a crash's torn tail. */
  readonly carry: Buffer;
  /** The last whole line, kept or not (a final seal ends a segment), or null if there is none. */
  readonly lastLine: string | null;
  /** Which file was read: following notices a file put in its place. */
  readonly identity: FileIdentity;
}

/**
 * The end of a segment, read backwards in 1 MiB pieces until `wanted` lines are found, as `tail`
 * does: printing ten lines of a 64 MiB segment read 64 MiB and decoded it into one string (and a
 * segment past ~512 MiB, V8's longest string, could not be printed at all). Memory stays at the
 * lines asked for plus a piece. Lines are decoded whole, from newline to newline, so a multi-byte
 * character cut by a piece's edge is never split. Opened without blocking and checked once open:
 * a FIFO under a segment's name held `tail` until someone wrote to it.
 */
function readSegmentEnd(path: string, wanted: number, keep: (line: string) => boolean): SegmentEnd {
  let opened: ReturnType<typeof openSegmentFile>;
  try {
    opened = openSegmentFile(path);
  } catch (error) {
    throw cannotOpen(path, error);
  }
  if (typeof opened === 'string') throw new AuditSpoolPathError(path, opened);
  const { fd, size } = opened;
  try {
    const { dev, ino } = fstatSync(fd);
    const pieces: string[][] = [];
    let found = 0;
    let lastLine: string | null = null;
    let carry: Buffer | null = null;
    // Bytes from `pos` on not yet split into lines: the end of a line that began before `pos`.
    let rest: Buffer = Buffer.alloc(0);
    let pos = size;
    while (pos > 0 && (carry === null || lastLine === null || found < wanted)) {
      const from = Math.max(0, pos - TAIL_READ_BYTES);
      const piece = Buffer.allocUnsafe(pos - from);
      for (let got = 0; got < piece.length; ) {
        const n = readSync(fd, piece, got, piece.length - got, from + got);
        if (n === 0) throw new AuditSpoolPathError(path, 'the file shrank while tail read it (truncated or replaced); run tail again');
        got += n;
      }
      pos = from;
      let bytes = rest.length === 0 ? piece : Buffer.concat([piece, rest]);
      if (carry === null) {
        const nl = bytes.lastIndexOf(NEWLINE);
        if (nl === -1) {
          rest = bytes;
          continue;
        }
        carry = Buffer.from(bytes.subarray(nl + 1));
        bytes = bytes.subarray(0, nl + 1);
      }
      // `bytes` ends where a line ends; its first line is whole only at the start of the file.
      const first = pos === 0 ? 0 : bytes.indexOf(NEWLINE) + 1;
      rest = Buffer.from(bytes.subarray(0, first));
      if (first === bytes.length) continue;
      const lines = bytes.toString('utf8', first, bytes.length - 1).split('\n');
      lastLine ??= lines.at(-1)!;
      const kept = lines.filter(keep);
      const take = kept.slice(Math.max(0, kept.length - (wanted - found)));
      pieces.push(take);
      found += take.length;
    }
    const lines: string[] = [];
    for (let p = pieces.length - 1; p >= 0; p--) for (const line of pieces[p]!) lines.push(line);
    return { lines, size, carry: carry ?? Buffer.from(rest), lastLine, identity: { dev, ino } };
  } finally {
    closeSync(fd);
  }
}

function isFinalSeal(line: string): boolean {
  return line.startsWith('{"v":1,"type":"SEAL"') && line.includes('"final":true');
}

/** The system's refusal (EACCES, ELOOP, EIO) as a coded error naming the file. */
function cannotOpen(path: string, error: unknown): AuditSpoolPathError {
  const e = error as NodeJS.ErrnoException;
  return new AuditSpoolPathError(path, `cannot be opened (${e.code ?? 'error'}): ${e.message}`, e.code, error);
}
