import { closeSync, constants, existsSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AuditJournalError } from './errors.ts';
import { mapSharedFile } from './shared-mapping.ts';
import type { SharedFileMapping } from './shared-mapping.ts';

/**
 * The write journal (option `writeJournal`): how a write record reaches the operating system
 * without a system call.
 *
 * Without it, each STORE/DELETE hands its record to write(2) on the spool before it returns:
 * ~1,400 ns of kernel entry on the machines measured, most of an audited STORE. With it, the
 * recording thread copies the framed record into `JOURNAL`, a file of fixed size mapped shared
 * into the process: the bytes are then in the kernel's page cache, where a SIGKILL or an OOM kill
 * of the process cannot take them back, exactly as after write(2). The drain worker moves the
 * records from the journal into the spool (in the order they were framed, in its batches), and
 * recovery moves whatever a crash left in the journal before anything else is appended. Power
 * loss is the same as before: nothing is durable until the group-commit fsync, which the worker
 * runs after moving the records, so flush() and updateAsync keep their meaning.
 *
 * The file: a header, then a ring of frames.
 *   [0, 8)   "GOVMAPJ1"
 *   [8, 16)  the tail: offset of the first frame the worker has not yet moved into the spool
 *            (float64; written by the worker after the spool holds the frames before it)
 *   [16, 24) the seq of the last frame before the tail (float64, 0 before any): frames of the
 *            lap behind the tail are still there, and this tells them from pending ones
 *   [24, 64) reserved
 * A frame, 8-byte aligned: mark u32 | length u32 | seq float64 | the record's bytes | padding.
 * The mark is stored last, so a frame whose mark is present is complete (a crash in the middle of
 * a copy leaves the old mark, and a frame from an older lap has a lower seq, which ends the scan).
 * The mark's first byte (0xF7) never occurs in UTF-8, so record bytes are never taken for a mark.
 * A frame that does not fit before the end of the file is preceded by a wrap mark (length
 * WRAP_LENGTH) or, with less than a frame header left, by nothing: the reader wraps too.
 */
export const JOURNAL_FILE = 'JOURNAL';
export const JOURNAL_HEADER_BYTES = 64;
export const FRAME_HEADER_BYTES = 16;
const MAGIC = 'GOVMAPJ1';
const TAIL_OFFSET = 8;
const TAIL_SEQ_OFFSET = 16;
export const FRAME_MARK = 0xf7a3c19e;
export const WRAP_LENGTH = 0xffffffff;

export function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Where the frame at `pos` starts once the end of the file is accounted for. */
export function frameStart(pos: number, size: number): number {
  return size - pos < FRAME_HEADER_BYTES ? JOURNAL_HEADER_BYTES : pos;
}

/**
 * Bytes of frame area from position `from` to position `to` (as the writer leaves them: a frame
 * may end at the very end of the file; after a wrap the area starts again after the header).
 */
export function journalBytesBetween(from: number, to: number, size: number): number {
  return to >= from ? to - from : size - from + (to - JOURNAL_HEADER_BYTES);
}

/**
 * The recording thread's side: frames records into the mapping. `head` and `tail` are shared
 * with the worker through the ring's control words (the caller keeps them); this class only
 * knows the bytes.
 */
export class JournalWriter {
  readonly size: number;
  readonly #mapping: SharedFileMapping;
  readonly #bytes: Uint8Array;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  readonly #marks: Int32Array;

  constructor(mapping: SharedFileMapping) {
    this.#mapping = mapping;
    this.size = mapping.size;
    this.#bytes = new Uint8Array(mapping.buffer);
    this.#u32 = new Uint32Array(mapping.buffer);
    this.#f64 = new Float64Array(mapping.buffer);
    this.#marks = new Int32Array(mapping.buffer);
  }

  /** The largest record a frame can hold: a quarter of the ring, so one never waits on itself. */
  get maxRecordBytes(): number {
    return (this.size - JOURNAL_HEADER_BYTES) >> 2;
  }

  /**
   * Frames `bytes[from, to)` at `head` when the ring has room before `tail`; returns the new
   * head, or -1 (nothing written) when it is full.
   */
  tryAppend(head: number, tail: number, bytes: Uint8Array, from: number, to: number, seq: number): number {
    const length = to - from;
    const need = FRAME_HEADER_BYTES + align8(length);
    const size = this.size;
    let at = frameStart(head, size);
    if (at !== head || size - head < need) {
      // Wrapping: the frame goes to the start of the ring, which must be free up to `need`
      // (and not reach the tail: head === tail means empty).
      if (tail > head || tail <= JOURNAL_HEADER_BYTES + need) return -1;
      at = JOURNAL_HEADER_BYTES;
    } else if (tail > head && tail - head <= need) {
      return -1;
    }
    this.#bytes.set(bytes.subarray(from, to), at + FRAME_HEADER_BYTES);
    this.#u32[(at >> 2) + 1] = length;
    this.#f64[(at >> 3) + 1] = seq;
    // The mark last (a fenced store): whoever sees it sees the whole frame, after a crash too.
    Atomics.store(this.#marks, at >> 2, FRAME_MARK | 0);
    if (at !== head && size - head >= FRAME_HEADER_BYTES) {
      this.#u32[(head >> 2) + 1] = WRAP_LENGTH;
      Atomics.store(this.#marks, head >> 2, FRAME_MARK | 0);
    }
    return at + need;
  }

  unmap(): void {
    this.#mapping.unmap();
  }
}

/**
 * Creates (or reopens, after recovery has emptied it) the journal file at its size, with its
 * blocks allocated (so a copy into it never meets a full disk as SIGBUS), and maps it.
 */
export async function openJournal(dir: string, size: number): Promise<JournalWriter> {
  const path = join(dir, JOURNAL_FILE);
  const mapping = await mapSharedFile(path, size);
  const bytes = new Uint8Array(mapping.buffer);
  bytes.fill(0);
  bytes.set(Buffer.from(MAGIC, 'latin1'), 0);
  new Float64Array(mapping.buffer)[TAIL_OFFSET >> 3] = JOURNAL_HEADER_BYTES;
  return new JournalWriter(mapping);
}

/** One frame as a reader sees it. */
export interface JournalFrame {
  readonly seq: number;
  readonly bytes: Buffer;
}

/**
 * Reads the frames a crash left in `dir`'s journal, from its persisted tail on, in order; the
 * scan ends at the first position without a complete frame of a higher seq. Plain reads: the
 * mapping is not needed (the page cache holds what the dead process copied).
 */
export function readJournal(dir: string): JournalFrame[] {
  const path = join(dir, JOURNAL_FILE);
  if (!existsSync(path)) return [];
  // Without blocking, and checked once open: a FIFO named JOURNAL held verify and a start until
  // someone wrote to it.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new AuditJournalError(path, 'is not a regular file: the journal is a file of fixed size the recorder maps; not read');
    const size = stats.size;
    if (size < JOURNAL_HEADER_BYTES * 2) return [];
    const all = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = readSync(fd, all, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    // All zeros: the file was allocated and never initialised (openJournal writes the magic
    // before any frame, so a start that failed in between, on a full disk, left nothing in it).
    if (all.subarray(0, JOURNAL_HEADER_BYTES).every((b) => b === 0)) return [];
    if (all.toString('latin1', 0, MAGIC.length) !== MAGIC) {
      throw new AuditJournalError(path, `does not start with ${MAGIC}`);
    }
    const frames: JournalFrame[] = [];
    let pos = all.readDoubleLE(TAIL_OFFSET);
    if (!Number.isInteger(pos) || pos < JOURNAL_HEADER_BYTES || pos > size || pos % 8 !== 0) {
      throw new AuditJournalError(path, `its tail ${pos} is not a frame offset in [${JOURNAL_HEADER_BYTES}, ${size}]`);
    }
    let lastSeq = all.readDoubleLE(TAIL_SEQ_OFFSET);
    let wrapped = false;
    // At most one lap: the frames of one lap lie between the tail and the head.
    for (let steps = 0; steps < size; steps++) {
      const at = frameStart(pos, size);
      if (at !== pos) {
        if (wrapped) break;
        wrapped = true;
        pos = at;
        continue;
      }
      if (all.readUInt32LE(pos) !== FRAME_MARK) break;
      const length = all.readUInt32LE(pos + 4);
      if (length === WRAP_LENGTH) {
        if (wrapped) break;
        wrapped = true;
        pos = JOURNAL_HEADER_BYTES;
        continue;
      }
      const seq = all.readDoubleLE(pos + 8);
      const end = pos + FRAME_HEADER_BYTES + length;
      if (!Number.isInteger(seq) || seq <= lastSeq || end > size) break;
      frames.push({ seq, bytes: Buffer.from(all.subarray(pos + FRAME_HEADER_BYTES, end)) });
      lastSeq = seq;
      pos = pos + FRAME_HEADER_BYTES + align8(length);
    }
    return frames;
  } finally {
    closeSync(fd);
  }
}

/**
 * The drain worker's side: reads frames between the tail and the head with pread (the page cache
 * is shared with the mapping, so no mapping is needed here) and persists the tail.
 */
export class JournalReader {
  readonly #fd: number;
  readonly size: number;
  #chunk: Buffer;
  readonly #tailBytes = Buffer.alloc(16);
  /** The chunk holds the file's bytes [chunkFrom, chunkTo). */
  #chunkFrom = 0;
  #chunkTo = 0;

  constructor(path: string) {
    this.#fd = openSync(path, 'r+');
    this.size = fstatSync(this.#fd).size;
    this.#chunk = Buffer.allocUnsafe(Math.min(this.size, 1 << 20));
  }

  /**
   * Calls `take(bytes, from, to, seq, next)` for each frame in [tail, head), in order (`next`:
   * where the frame after it starts), until `take` returns false; returns the position of the
   * first frame not taken (`head` when all were).
   */
  read(tail: number, head: number, take: (bytes: Uint8Array, from: number, to: number, seq: number, next: number) => boolean): number {
    const size = this.size;
    let pos = tail;
    while (pos !== head) {
      const at = frameStart(pos, size);
      if (at !== pos) {
        pos = at;
        continue;
      }
      // The frame header, then the whole frame, must be in the chunk.
      if (!this.#has(pos, FRAME_HEADER_BYTES)) this.#load(pos, head);
      let o = pos - this.#chunkFrom;
      const length = this.#chunk.readUInt32LE(o + 4);
      if (length === WRAP_LENGTH) {
        pos = JOURNAL_HEADER_BYTES;
        continue;
      }
      const seq = this.#chunk.readDoubleLE(o + 8);
      const whole = FRAME_HEADER_BYTES + length;
      if (!this.#has(pos, whole)) {
        this.#load(pos, head, whole);
        o = 0;
      }
      // Not wrapped here: head and tail are compared as the writer left them (frameStart wraps).
      const next = pos + FRAME_HEADER_BYTES + align8(length);
      if (!take(this.#chunk, o + FRAME_HEADER_BYTES, o + whole, seq, next)) return pos;
      pos = next;
    }
    return pos;
  }

  /** Records that the spool holds every frame before `tail`, the last of them `seq` (recovery starts there). */
  persistTail(tail: number, seq: number): void {
    this.#tailBytes.writeDoubleLE(tail, 0);
    this.#tailBytes.writeDoubleLE(seq, 8);
    writeSync(this.#fd, this.#tailBytes, 0, 16, TAIL_OFFSET);
  }

  close(): void {
    closeSync(this.#fd);
  }

  #has(pos: number, n: number): boolean {
    return pos >= this.#chunkFrom && pos + n <= this.#chunkTo;
  }

  /** Reads from `pos` up to the head (or the end of the file), at least `min` bytes. */
  #load(pos: number, head: number, min = FRAME_HEADER_BYTES): void {
    // A frame larger than the chunk (a huge key or value) grows it: rare, and bounded by
    // JournalWriter.maxRecordBytes.
    if (min > this.#chunk.length) this.#chunk = Buffer.allocUnsafe(min);
    const end = head > pos ? head : this.size;
    const want = Math.max(min, Math.min(end - pos, this.#chunk.length));
    readFully(this.#fd, this.#chunk, want, pos);
    this.#chunkFrom = pos;
    this.#chunkTo = pos + want;
  }
}

function readFully(fd: number, buf: Buffer, n: number, position: number): void {
  let got = 0;
  while (got < n) {
    const r = readSync(fd, buf, got, n - got, position + got);
    if (r === 0) throw new Error(`journal: unexpected end of file at ${position + got}`);
    got += r;
  }
}
