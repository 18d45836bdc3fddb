import { constants, existsSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { listSegments, readSegmentFile, SEGMENT_PATTERN, segmentName } from './spool.ts';
import type { SegmentFile } from './spool.ts';

export interface TailOptions {
  /** How many of the last records to print first. Default 10. */
  readonly lines?: number;
  /** Keep printing records as they are written, across rotations, until `signal` aborts. */
  readonly follow?: boolean;
  /** Also print SEAL and SEGMENT lines. Default false: records only. */
  readonly seals?: boolean;
  /** How often to look for new bytes when following, ms. Default 200. */
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
  /** Receives each line (without its newline). */
  readonly write: (line: string) => void;
  /**
   * Following a spool that has no segment yet (its service not started), tail waits for the
   * first one, and says so once through this. Default: nothing said.
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
  // Following a directory that has no segment yet (or is not there yet: the service has not
  // started) waits for it, as `tail -F` waits for a file; its records are then all new.
  let waited = false;
  if (options.follow === true && !SEGMENT_PATTERN.test(basename(path)) && (isDir || !existsSync(path)) && listSegments(path).length === 0) {
    options.onWait?.(`waiting for audit segments at ${path} (Ctrl-C to stop)`);
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
  if (!existsSync(path)) throw new Error(`no such file or directory: ${path}`);
  const files = segments();
  if (files.length === 0) throw new Error(`no audit segments at ${path}`);
  // Read without blocking: a FIFO under a segment's name held `tail` until someone wrote to it.
  const readSegment = (file: SegmentFile): Buffer => {
    const bytes = readSegmentFile(file.path);
    if (typeof bytes === 'string') throw new Error(`${file.path}: ${bytes}`);
    return bytes;
  };

  // The last N records: walk back through the segments until enough are found.
  const wanted = waited ? Number.POSITIVE_INFINITY : (options.lines ?? 10);
  const tail: string[] = [];
  // Following, the newest segment is read whatever `wanted` is: where following starts is the
  // end of the bytes read here (a stat taken after the read would skip what was appended in
  // between), and its last line, without its newline yet, is a record still being appended.
  const last = options.follow === true ? readSegment(files.at(-1)!) : null;
  const lineEnd = last === null ? 0 : last.lastIndexOf(NEWLINE) + 1;
  for (let i = files.length - 1; i >= 0 && tail.length < wanted; i--) {
    // Up to the last newline, followed or not: bytes after it are a record still being appended
    // (or a crash's torn tail), not a record; printed, they broke `| jq`.
    const bytes = i === files.length - 1 && last !== null ? last : readSegment(files[i]!);
    const text = bytes.toString('utf8', 0, bytes.lastIndexOf(NEWLINE) + 1);
    const lines = text.split('\n').filter(keep);
    tail.unshift(...lines.slice(Math.max(0, lines.length - (wanted - tail.length))));
  }
  for (const line of tail) options.write(line);
  if (last === null) return;

  let current = files.at(-1)!;
  let offset = last.length;
  // The bytes after the last newline read so far: a line still being appended. Kept as bytes and
  // decoded only once its newline arrives, because a poll can end inside a multi-byte character
  // (decoded alone, each half would become U+FFFD). Printed whole once the rest arrives, not as
  // two broken halves.
  let carry: Buffer = Buffer.from(last.subarray(lineEnd));
  // Kept across polls and taken from the first read too: a segment already sealed final when
  // following starts (an older segment given, a rotation between listing and reading) has no
  // later poll that reads its final seal, and was followed forever.
  let finalSeen = isFinalSeal(last.toString('utf8', last.lastIndexOf(NEWLINE, lineEnd - 2) + 1, Math.max(0, lineEnd - 1)));
  while (options.signal?.aborted !== true) {
    const fh = await open(current.path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const size = (await fh.stat()).size;
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
      continue;
    }
    // The promise timer removes its abort listener once it fires: one added per poll and left
    // until the abort piled up for as long as `tail -f` ran (five more a second).
    await sleep(pollMs, undefined, options.signal === undefined ? {} : { signal: options.signal }).catch(() => undefined);
  }
}

function isFinalSeal(line: string): boolean {
  return line.startsWith('{"v":1,"type":"SEAL"') && line.includes('"final":true');
}
