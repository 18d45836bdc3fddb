import type { ClockAnchor } from './clock.ts';
import { toEpoch } from './clock.ts';
import { renderKey } from './event.ts';
import type { AuditRangeBounds, GapCause } from './event.ts';
import {
  FLAG_BOUNDS,
  FLAG_END,
  FLAG_INCLUSIVE,
  FLAG_KEY_CUT,
  FLAG_KEY_NUMBER,
  FLAG_KEY_PRESENT,
  FLAG_MAP_INLINE,
  FLAG_PREFIX,
  FLAG_REASON,
  FLAG_START,
  FLAG_TRACE,
  HEADER_WORDS,
  MAX_KEY_UNITS,
  NAME_MAX_UNITS,
  NAME_SLOT_WORDS,
  OP_LOAD,
  OP_RANGE,
} from './ring.ts';
import type { RingViews } from './ring.ts';

/**
 * Writes audit records as JSON lines straight into bytes: no intermediate object, no string
 * concatenation, no JSON.stringify. The drain worker encodes millions of records a second with
 * it, and the caller's thread encodes write records with it; both produce exactly what
 * `JSON.stringify` would for the same record (same field order, same escapes), which the tests
 * check, so a reader may parse lines with any JSON parser.
 */
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

const HEX = utf8('0123456789abcdef');
const P_START = utf8('{"v":1,"seq":');
const P_RESOURCE = utf8(',"resource_id":');
const P_TRACE = utf8(',"trace_id":"');
const P_SPAN = utf8('","span_id":"');
const P_NO_TRACE = utf8(',"trace_id":null,"span_id":null');
const P_BOUNDS_NULL = utf8(',"range_bounds":null,"timestamp":"');
/** P_NO_TRACE then P_BOUNDS_NULL: a write record has neither, so it is one copy. */
const P_NO_TRACE_NO_BOUNDS: Uint8Array = Buffer.concat([P_NO_TRACE, P_BOUNDS_NULL]);
const P_BOUNDS_START = utf8(',"range_bounds":{"start":');
const P_BOUNDS_END = utf8(',"end":');
const P_BOUNDS_INCL_TRUE = utf8(',"inclusive":true,"prefix":');
const P_BOUNDS_INCL_FALSE = utf8(',"inclusive":false,"prefix":');
const P_BOUNDS_CLOSE = utf8('},"timestamp":"');
const P_QUOTE = utf8('"');
const P_NULL = utf8('null');
const P_VALUE = utf8(',"value":');
const P_VALUE_ERROR = utf8(',"value_error":');
const P_KEY_LENGTH = utf8(',"resource_id_length":');
const P_GAP_FROM = utf8(',"gap":{"from":');
const P_GAP_TO = utf8(',"to":');
const P_GAP_CAUSE = utf8(',"cause":"');
const P_GAP_TORN_NULL = utf8('","torn":null}');
const P_GAP_TORN_SEGMENT = utf8('","torn":{"segment":');
const P_GAP_TORN_OFFSET = utf8(',"offset":');
const P_GAP_TORN_LENGTH = utf8(',"length":');
const P_GAP_TORN_CLOSE = utf8('}}');
const P_DETAIL = utf8(',"detail":');
const P_END = utf8('}\n');

/** The op names by ring op code, and every op's bytes from `,"op_type"` to `"map":`. */
const OP_CHUNKS = new Map<string, Uint8Array>();
function opChunk(op: string): Uint8Array {
  let chunk = OP_CHUNKS.get(op);
  if (chunk === undefined) {
    chunk = utf8(`,"op_type":"${op}","map":`);
    OP_CHUNKS.set(op, chunk);
  }
  return chunk;
}
const RING_OP_CHUNKS: Uint8Array[] = [];
RING_OP_CHUNKS[OP_LOAD] = opChunk('LOAD');
RING_OP_CHUNKS[OP_RANGE] = opChunk('RANGE');
/** By ring outcome code: the bytes from the end of the timestamp to `"reason":`. */
const OUTCOME_CHUNKS = ['ok', 'miss', 'rejected', 'error'].map((o) => utf8(`","outcome":"${o}","reason":`));
export const OUTCOME_NAMES = ['ok', 'miss', 'rejected', 'error'] as const;

/** A growable byte buffer with the JSON primitives the records need. */
export class ByteWriter {
  buf: Uint8Array;
  pos = 0;

  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity);
  }

  /** Makes room for `n` more bytes (cold: only a huge key or value grows it). */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
  }

  raw(bytes: Uint8Array): void {
    const n = bytes.length;
    const buf = this.buf;
    let p = this.pos;
    if (n <= 24) {
      for (let i = 0; i < n; i++) buf[p++] = bytes[i]!;
    } else {
      buf.set(bytes, p);
      p += n;
    }
    this.pos = p;
  }

  /** A non-negative safe integer in decimal. */
  uint(value: number): void {
    const buf = this.buf;
    if (value < 10) {
      buf[this.pos++] = 48 + value;
      return;
    }
    if (value <= 0x7fffffff) {
      // Seqs and lengths: int32 division, not Math.floor on doubles.
      let digits = 1;
      for (let v = value | 0; v >= 10; v = (v / 10) | 0) digits++;
      let p = this.pos + digits;
      this.pos = p;
      let v = value | 0;
      while (v >= 10) {
        const q = (v / 10) | 0;
        buf[--p] = 48 + (v - q * 10);
        v = q;
      }
      buf[--p] = 48 + v;
      return;
    }
    let digits = 1;
    for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
    let p = this.pos + digits;
    this.pos = p;
    let v = value;
    while (v >= 10) {
      const q = Math.floor(v / 10);
      buf[--p] = 48 + (v - q * 10);
      v = q;
    }
    buf[--p] = 48 + v;
  }

  /** `value` zero-padded to 9 digits (the nanoseconds of a timestamp). */
  nine(value: number): void {
    const buf = this.buf;
    let p = this.pos + 9;
    this.pos = p;
    // 0 <= value < 1e9 fits an int32: integer division, no Math.floor on doubles.
    let v = value | 0;
    for (let i = 0; i < 9; i++) {
      const q = (v / 10) | 0;
      buf[--p] = 48 + (v - q * 10);
      v = q;
    }
  }

  /** Bytes of `words[at..at+n)` (little-endian, as Int32Array lays them out) as lowercase hex. */
  hexWords(words: Int32Array, at: number, n: number): void {
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) {
      const w = words[at + i]!;
      for (let b = 0; b < 4; b++) {
        const byte = (w >>> (b * 8)) & 0xff;
        buf[p++] = HEX[byte >>> 4]!;
        buf[p++] = HEX[byte & 15]!;
      }
    }
    this.pos = p;
  }

  /** A JSON string from a JS string: quotes, escapes as JSON.stringify does, UTF-8. */
  jsonString(s: string): void {
    this.ensure(s.length * 6 + 2);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = 34;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x20 && c < 0x7f && c !== 34 && c !== 92) {
        buf[p++] = c;
      } else {
        this.pos = p;
        i = this.#escapeUnit(c, i, s.length, (k) => s.charCodeAt(k));
        p = this.pos;
      }
    }
    buf[p++] = 34;
    this.pos = p;
  }

  /** The same from UTF-16 units in shared memory (the ring), without making a string. */
  jsonUnits(units: Uint16Array, from: number, length: number): void {
    this.ensure(length * 6 + 2);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = 34;
    const end = from + length;
    for (let i = from; i < end; i++) {
      const c = units[i]!;
      if (c >= 0x20 && c < 0x7f && c !== 34 && c !== 92) {
        buf[p++] = c;
      } else {
        this.pos = p;
        i = this.#escapeUnit(c, i, end, (k) => units[k]!);
        p = this.pos;
      }
    }
    buf[p++] = 34;
    this.pos = p;
  }

  /** Escapes or UTF-8-encodes one code unit (or a surrogate pair); returns the last index used. */
  #escapeUnit(c: number, i: number, end: number, unitAt: (k: number) => number): number {
    const buf = this.buf;
    let p = this.pos;
    if (c === 34 || c === 92) {
      buf[p++] = 92;
      buf[p++] = c;
    } else if (c < 0x20) {
      buf[p++] = 92;
      const short = c === 8 ? 98 : c === 9 ? 116 : c === 10 ? 110 : c === 12 ? 102 : c === 13 ? 114 : 0;
      if (short !== 0) {
        buf[p++] = short;
      } else {
        buf[p++] = 117;
        buf[p++] = 48;
        buf[p++] = 48;
        buf[p++] = HEX[c >>> 4]!;
        buf[p++] = HEX[c & 15]!;
      }
    } else if (c < 0x80) {
      buf[p++] = c; // DEL
    } else if (c < 0x800) {
      buf[p++] = 0xc0 | (c >>> 6);
      buf[p++] = 0x80 | (c & 63);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < end ? unitAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        buf[p++] = 0xf0 | (cp >>> 18);
        buf[p++] = 0x80 | ((cp >>> 12) & 63);
        buf[p++] = 0x80 | ((cp >>> 6) & 63);
        buf[p++] = 0x80 | (cp & 63);
        i++;
      } else {
        // A lone surrogate: JSON.stringify writes it as \udXXX (well-formed JSON.stringify).
        buf[p++] = 92;
        buf[p++] = 117;
        buf[p++] = HEX[(c >>> 12) & 15]!;
        buf[p++] = HEX[(c >>> 8) & 15]!;
        buf[p++] = HEX[(c >>> 4) & 15]!;
        buf[p++] = HEX[c & 15]!;
      }
    } else {
      buf[p++] = 0xe0 | (c >>> 12);
      buf[p++] = 0x80 | ((c >>> 6) & 63);
      buf[p++] = 0x80 | (c & 63);
    }
    this.pos = p;
    return i;
  }

  /** A finite number as JSON.stringify writes it (numeric keys). Cold-ish: allocates a string. */
  jsonNumberAsString(value: number): void {
    // A numeric key becomes resource_id as a string: ids are names, not quantities.
    this.jsonString(String(value));
  }
}

/** What every record of one recorder ends with: actor and origin, encoded once. */
export function encodeIdentity(actor: string, origin: string): Uint8Array {
  return utf8(`,"actor":${JSON.stringify(actor)},"origin":${JSON.stringify(origin)}`);
}

/** Per-thread state the encoders share: clock anchor, identity bytes, scratch. */
export class EncodeContext {
  readonly anchor: ClockAnchor;
  readonly identity: Uint8Array;
  readonly #epoch = new Float64Array(2);

  constructor(anchor: ClockAnchor, identity: Uint8Array) {
    this.anchor = anchor;
    this.identity = identity;
    this.#tails = OUTCOME_CHUNKS.map((chunk) => Buffer.concat([chunk, P_NULL, identity]));
    this.#tailsWithValue = OUTCOME_CHUNKS.map((chunk) => Buffer.concat([chunk, P_NULL, identity, P_VALUE]));
  }

  /**
   * A record's bytes from `,"op_type":` to `"resource_id":` (op and map name as JSON), kept for
   * the last op and map seen: a run of writes to one map (the common case) copies them at once,
   * with no lookup and no escaping of the name. The caller's thread encodes writes while the
   * STORE waits; every ~10 ns there is the caller's.
   */
  #headOp = '';
  #headMap: string | null = '';
  #headBytes: Uint8Array = P_NULL;
  /**
   * What follows the timestamp when there is no reason, by outcome: `","outcome":"ok","reason":null`
   * then actor and origin, and in the second set `,"value":` too. One copy instead of four.
   */
  readonly #tails: Uint8Array[];
  readonly #tailsWithValue: Uint8Array[];
  readonly #scratch = new ByteWriter(256);

  /** Map names of the ring's names table as JSON strings, by id: escaped once per name (worker). */
  #ringNames: Array<Uint8Array | undefined> = [];
  /** The table those are from: ids mean nothing in another ring's. */
  #namesOf: Int32Array | null = null;

  /** The map name with table id `id` as JSON string bytes (read from the ring on first use). */
  ringMapName(ring: RingViews, id: number): Uint8Array {
    if (ring.names !== this.#namesOf) {
      this.#namesOf = ring.names;
      this.#ringNames = [];
    }
    let bytes = this.#ringNames[id];
    if (bytes === undefined) {
      const slot = id * NAME_SLOT_WORDS;
      const w = this.#scratch;
      w.pos = 0;
      w.jsonUnits(ring.nameUnits, (slot + 1) << 1, ring.names[slot]!);
      bytes = w.buf.slice(0, w.pos);
      this.#ringNames[id] = bytes;
    }
    return bytes;
  }

  /** `,"op_type":"<op>","map":<map>,"resource_id":` (see #headBytes). */
  headBytes(op: string, map: string | null): Uint8Array {
    if (op !== this.#headOp || map !== this.#headMap) {
      const w = this.#scratch;
      w.pos = 0;
      w.raw(opChunk(op));
      if (map === null) w.raw(P_NULL);
      else w.jsonString(map);
      w.ensure(P_RESOURCE.length);
      w.raw(P_RESOURCE);
      this.#headBytes = w.buf.slice(0, w.pos);
      this.#headOp = op;
      this.#headMap = map;
    }
    return this.#headBytes;
  }

  /** The bytes after the timestamp up to the value, for a record without a reason. */
  tailBytes(outcome: number, withValue: boolean): Uint8Array {
    return (withValue ? this.#tailsWithValue : this.#tails)[outcome]!;
  }

  /**
   * The decimal digits of the last epoch second written, reused while records fall in the same
   * second (nearly all of them at drain rates): the drain worker spent ~15% of its time turning
   * the same 10-digit second into digits again for every record.
   */
  readonly #secDigits = new Uint8Array(24);
  #secDigitsLength = 0;
  #lastSec = -1;

  timestamp(w: ByteWriter, perfMs: number): void {
    toEpoch(this.anchor, perfMs, this.#epoch);
    const sec = this.#epoch[0]!;
    if (sec !== this.#lastSec) {
      const pos = w.pos;
      w.uint(sec);
      this.#secDigitsLength = w.pos - pos;
      this.#secDigits.set(w.buf.subarray(pos, w.pos));
      this.#lastSec = sec;
    } else {
      const buf = w.buf;
      const digits = this.#secDigits;
      let p = w.pos;
      for (let i = 0; i < this.#secDigitsLength; i++) buf[p++] = digits[i]!;
      w.pos = p;
    }
    w.nine(this.#epoch[1]!);
  }
}

/** Upper bound of one ring entry's encoded size, so the worker can flush before it encodes. */
export function maxEncodedBytes(entryWords: number, identityBytes: number): number {
  // Each UTF-16 unit becomes at most 6 bytes (\uXXXX); fixed fields stay under 512; a map name
  // from the names table is not in the entry's words.
  return 512 + NAME_MAX_UNITS * 6 + identityBytes + entryWords * 2 * 6;
}

/** Encodes the ring entry at word `at` (drain worker). */
export function encodeRingEntry(w: ByteWriter, ring: RingViews, at: number, ctx: EncodeContext): void {
  const words = ring.words;
  const f64 = ring.f64;
  const units = ring.units;
  const head1 = words[at + 1]!;
  const op = head1 & 0xff;
  const outcome = (head1 >>> 8) & 0xff;
  const flags = head1 >>> 16;
  const lens = words[at + 2]!;
  const mapRef = lens & 0xffff;
  const reasonUnits = lens >>> 16;
  const keyLength = words[at + 3]!;
  const keyUnits = keyLength > MAX_KEY_UNITS ? MAX_KEY_UNITS : keyLength;
  w.raw(P_START);
  w.uint(f64[(at + 4) >> 1]!);
  w.raw(RING_OP_CHUNKS[op]!);
  // Optional fields after the fixed header, in this order (see ring.ts).
  const numberAt = at + HEADER_WORDS;
  const traceAt = numberAt + ((flags & FLAG_KEY_NUMBER) !== 0 ? 2 : 0);
  let u = (traceAt + ((flags & FLAG_TRACE) !== 0 ? 6 : 0)) << 1;
  if ((flags & FLAG_MAP_INLINE) !== 0) {
    w.jsonUnits(units, u, mapRef);
    u += mapRef;
  } else {
    w.raw(ctx.ringMapName(ring, mapRef));
  }
  const reasonAt = u;
  u += reasonUnits;
  w.raw(P_RESOURCE);
  if ((flags & FLAG_KEY_PRESENT) === 0) {
    w.raw(P_NULL);
  } else if ((flags & FLAG_KEY_NUMBER) !== 0) {
    w.jsonNumberAsString(f64[numberAt >> 1]!);
  } else {
    w.jsonUnits(units, u, keyUnits);
    u += keyUnits;
  }
  if ((flags & FLAG_TRACE) !== 0) {
    w.raw(P_TRACE);
    w.hexWords(words, traceAt, 4);
    w.raw(P_SPAN);
    w.hexWords(words, traceAt + 4, 2);
    w.raw(P_QUOTE);
  } else {
    w.raw(P_NO_TRACE);
  }
  if ((flags & FLAG_BOUNDS) === 0) {
    w.raw(P_BOUNDS_NULL);
  } else {
    const sl = units[u]!;
    const el = units[u + 1]!;
    const pl = units[u + 2]!;
    u += 4;
    w.raw(P_BOUNDS_START);
    if ((flags & FLAG_START) !== 0) w.jsonUnits(units, u, sl);
    else w.raw(P_NULL);
    u += sl;
    w.raw(P_BOUNDS_END);
    if ((flags & FLAG_END) !== 0) w.jsonUnits(units, u, el);
    else w.raw(P_NULL);
    u += el;
    w.raw((flags & FLAG_INCLUSIVE) !== 0 ? P_BOUNDS_INCL_TRUE : P_BOUNDS_INCL_FALSE);
    if ((flags & FLAG_PREFIX) !== 0) w.jsonUnits(units, u, pl);
    else w.raw(P_NULL);
    w.raw(P_BOUNDS_CLOSE);
  }
  ctx.timestamp(w, f64[(at + 6) >> 1]!);
  w.raw(OUTCOME_CHUNKS[outcome]!);
  if ((flags & FLAG_REASON) !== 0) w.jsonUnits(units, reasonAt, reasonUnits);
  else w.raw(P_NULL);
  w.raw(ctx.identity);
  if ((flags & FLAG_KEY_CUT) !== 0) {
    // The producer stored the first MAX_KEY_UNITS units; the record says how long the key was.
    w.raw(P_KEY_LENGTH);
    w.uint(keyLength);
  }
  w.raw(P_END);
}

function encodeGap(w: ByteWriter, from: number, to: number, cause: GapCause, torn: { segment: number; offset: number; length: number } | null): void {
  w.raw(P_GAP_FROM);
  w.uint(from);
  w.raw(P_GAP_TO);
  w.uint(to);
  w.raw(P_GAP_CAUSE);
  for (let i = 0; i < cause.length; i++) w.buf[w.pos++] = cause.charCodeAt(i);
  if (torn === null) {
    w.raw(P_GAP_TORN_NULL);
  } else {
    w.raw(P_GAP_TORN_SEGMENT);
    w.uint(torn.segment);
    w.raw(P_GAP_TORN_OFFSET);
    w.uint(torn.offset);
    w.raw(P_GAP_TORN_LENGTH);
    w.uint(torn.length);
    w.raw(P_GAP_TORN_CLOSE);
  }
}

/** A record written directly by the caller's thread: writes and lifecycle events. */
export interface DirectRecord {
  seq: number;
  op: string;
  map: string | null;
  key: unknown;
  /** 32 + 16 hex digits, or null. */
  traceId: string | null;
  spanId: string | null;
  bounds: AuditRangeBounds | null;
  perfMs: number;
  outcome: number;
  reason: string | null;
  /** undefined: no value field; null: `"value":null`. */
  value: string | null | undefined;
  /**
   * Why `value` is null although there was a value to record (the `recordValue` option threw or
   * returned something other than a string or null): `"value_error":"<code>"` after the value.
   * Absent or null: no such field. The record's outcome and reason stay the operation's own.
   */
  valueError?: string | null;
  gap: { from: number; to: number; cause: GapCause; torn: { segment: number; offset: number; length: number } | null } | null;
  detail: string | null;
}

export function encodeDirect(w: ByteWriter, r: DirectRecord, ctx: EncodeContext): void {
  w.ensure(1024 + ctx.identity.length);
  w.raw(P_START);
  w.uint(r.seq);
  const head = ctx.headBytes(r.op, r.map);
  w.ensure(head.length + 512);
  w.raw(head);
  const key = r.key;
  if (key === undefined || key === null) w.raw(P_NULL);
  else w.jsonString(renderKey(key));
  w.ensure(512);
  if (r.bounds === null && (r.traceId === null || r.spanId === null)) {
    w.raw(P_NO_TRACE_NO_BOUNDS);
    encodeTail(w, r, ctx);
    return;
  }
  if (r.traceId !== null && r.spanId !== null) {
    w.raw(P_TRACE);
    for (let i = 0; i < 32; i++) w.buf[w.pos++] = r.traceId.charCodeAt(i);
    w.raw(P_SPAN);
    for (let i = 0; i < 16; i++) w.buf[w.pos++] = r.spanId.charCodeAt(i);
    w.raw(P_QUOTE);
  } else {
    w.raw(P_NO_TRACE);
  }
  if (r.bounds === null) {
    w.raw(P_BOUNDS_NULL);
  } else {
    const b = r.bounds;
    w.raw(P_BOUNDS_START);
    if (b.start === null) w.raw(P_NULL);
    else w.jsonString(b.start);
    w.ensure(64);
    w.raw(P_BOUNDS_END);
    if (b.end === null) w.raw(P_NULL);
    else w.jsonString(b.end);
    w.ensure(64);
    w.raw(b.inclusive ? P_BOUNDS_INCL_TRUE : P_BOUNDS_INCL_FALSE);
    if (b.prefix === null) w.raw(P_NULL);
    else w.jsonString(b.prefix);
    w.ensure(64);
    w.raw(P_BOUNDS_CLOSE);
  }
  encodeTail(w, r, ctx);
}

/** From the timestamp to the end of the record. */
function encodeTail(w: ByteWriter, r: DirectRecord, ctx: EncodeContext): void {
  ctx.timestamp(w, r.perfMs);
  if (r.reason === null) {
    const tail = ctx.tailBytes(r.outcome, r.value !== undefined);
    w.ensure(tail.length + 256);
    w.raw(tail);
  } else {
    w.raw(OUTCOME_CHUNKS[r.outcome]!);
    w.jsonString(r.reason);
    w.ensure(ctx.identity.length + 256);
    w.raw(ctx.identity);
    if (r.value !== undefined) w.raw(P_VALUE);
  }
  if (r.value !== undefined) {
    if (r.value === null) w.raw(P_NULL);
    else w.jsonString(r.value);
  }
  w.ensure(256);
  if (r.valueError != null) {
    w.raw(P_VALUE_ERROR);
    w.jsonString(r.valueError);
    w.ensure(256);
  }
  if (r.gap !== null) encodeGap(w, r.gap.from, r.gap.to, r.gap.cause, r.gap.torn);
  if (r.detail !== null) {
    w.raw(P_DETAIL);
    w.jsonString(r.detail);
  }
  w.ensure(2);
  w.raw(P_END);
}
