import { BizTagError, showHeader } from './errors.ts';

/**
 * X-Biz-Tag, exactly as DESIGN.md specifies it:
 *
 *   header = pair *( "|" pair )          at most 16 pairs, at most 512 bytes
 *   pair   = key ":" value
 *   key    = [A-Za-z][A-Za-z0-9_]{0,31}   unique within the header (case-sensitive)
 *   value  = [A-Za-z0-9_.-]{1,64}
 *
 * Nothing else is accepted: no spaces, no empty pairs, no trailing "|", no second ":", no
 * duplicate key, no non-ASCII. A header that deviates is refused with the rule it broke, never
 * repaired or guessed at: a guessed orgId routes money to the wrong place.
 *
 * `orgId` and `txnType` are the routing keys; the other keys travel with the request.
 */

export const BIZ_TAG_HEADER = 'x-biz-tag';
export const BIZ_TAG_MAX_PAIRS = 16;
/** Every valid character is ASCII, so the 512-byte limit is a 512-character limit. */
export const BIZ_TAG_MAX_BYTES = 512;
export const BIZ_TAG_KEY_MAX = 32;
export const BIZ_TAG_VALUE_MAX = 64;
export const BIZ_TAG_KEY = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
export const BIZ_TAG_VALUE = /^[A-Za-z0-9_.-]{1,64}$/;

const PIPE = 0x7c;
const COLON = 0x3a;
const LETTER = 1;
const KEY_CHAR = 2;
const VALUE_CHAR = 4;
/** Character classes of ASCII; anything >= 128 is in no class. One table lookup per character. */
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z]/.test(ch)) CLASS[c]! |= LETTER | KEY_CHAR | VALUE_CHAR;
  else if (/[0-9_]/.test(ch)) CLASS[c]! |= KEY_CHAR | VALUE_CHAR;
  else if (ch === '.' || ch === '-') CLASS[c]! |= VALUE_CHAR;
}

const is = (code: number, cls: number): boolean => code < 128 && (CLASS[code]! & cls) !== 0;

let construct = false;

/**
 * A parsed, valid tag: its pairs in header order, and its canonical header text. Immutable.
 * Only parseBizTag and BizTag.of make one, so holding a BizTag means holding a valid tag.
 */
export class BizTag {
  readonly pairs: readonly (readonly [string, string])[];
  /** The header text; parse(tag.header) gives back an equal tag. */
  readonly header: string;
  /**
   * The pairs as a frozen record, built once: what switch targeting evaluates for. Shared by
   * every request carrying this tag (the middleware caches parsed tags), so it must not change.
   */
  readonly targeting: Readonly<Record<string, string>>;
  /** The routing keys, read on every request: plain fields, not lookups. */
  readonly orgId: string | undefined;
  readonly txnType: string | undefined;

  constructor(pairs: readonly (readonly [string, string])[], header: string) {
    if (!construct) throw new TypeError('BizTag: use parseBizTag() or BizTag.of(), which validate');
    construct = false;
    this.pairs = pairs;
    this.header = header;
    // No prototype: a key such as "constructor" or "toString" (valid tag keys) must read as the
    // tag's value or as absent, never as an inherited function.
    const targeting = Object.create(null) as Record<string, string>;
    for (const [key, value] of pairs) targeting[key] = value;
    this.targeting = Object.freeze(targeting);
    this.orgId = targeting.orgId;
    this.txnType = targeting.txnType;
    Object.freeze(this);
  }

  /** Validates and builds a tag from pairs (in order) or a record. @throws BizTagError */
  static of(pairs: Iterable<readonly [string, string]> | Readonly<Record<string, string>>): BizTag {
    return parseBizTag(formatBizTag(pairs));
  }

  get(key: string): string | undefined {
    // `targeting` has no prototype and only the tag's keys: one property load.
    return this.targeting[key];
  }

  /** The pairs as a new (mutable) record; `targeting` is the same, frozen and shared. */
  toRecord(): Record<string, string> {
    return { ...this.targeting };
  }

  toString(): string {
    return this.header;
  }

  toJSON(): Record<string, string> {
    return this.toRecord();
  }
}

/**
 * Parses an X-Biz-Tag header value. Accepts what Node gives for a header: a string, or an array
 * of the values of repeated headers (one is fine, more is MULTIPLE_HEADERS: two tags on one
 * request are a conflict, not a merge). Any other input is NOT_A_STRING.
 * @throws BizTagError, and nothing else, whatever `input` is
 */
export function parseBizTag(input: unknown): BizTag {
  if (Array.isArray(input)) {
    if (input.length !== 1) {
      throw new BizTagError('MULTIPLE_HEADERS', `${input.length} X-Biz-Tag headers on one request; send exactly one`, { count: input.length });
    }
    input = input[0];
  }
  if (typeof input !== 'string') throw new BizTagError('NOT_A_STRING', `the tag must be a string (got ${input === null ? 'null' : typeof input})`);
  const text = input;
  const n = text.length;
  if (n === 0) throw new BizTagError('EMPTY', 'the header is present but empty; omit it or send key:value pairs');
  if (n > BIZ_TAG_MAX_BYTES) throw new BizTagError('TOO_LONG', `${n} characters; the limit is ${BIZ_TAG_MAX_BYTES} bytes`, { length: n });

  const pairs: (readonly [string, string])[] = [];
  let i = 0;
  for (;;) {
    const pairStart = i;
    const number = pairs.length + 1;
    if (number > BIZ_TAG_MAX_PAIRS) throw new BizTagError('TOO_MANY_PAIRS', `more than ${BIZ_TAG_MAX_PAIRS} pairs`, { position: i });
    if (i >= n || text.charCodeAt(i) === PIPE) throw new BizTagError('EMPTY_PAIR', `pair ${number} at offset ${i} is empty (a "|" with nothing after it, or "||")`, { position: i });

    // key: a letter, then letters, digits, "_"
    let c = text.charCodeAt(i);
    if (!is(c, LETTER)) {
      throw new BizTagError('KEY_INVALID', `pair ${number}: a key starts with a letter, found ${showHeader(text[i]!)} at offset ${i}`, { position: i });
    }
    i++;
    while (i < n) {
      c = text.charCodeAt(i);
      if (c === COLON || c === PIPE) break;
      if (!is(c, KEY_CHAR)) {
        throw new BizTagError('KEY_INVALID', `pair ${number}: ${showHeader(text[i]!)} at offset ${i} is not allowed in a key ([A-Za-z][A-Za-z0-9_]{0,31})`, { position: i });
      }
      i++;
    }
    const keyLength = i - pairStart;
    if (keyLength > BIZ_TAG_KEY_MAX) {
      throw new BizTagError('KEY_INVALID', `pair ${number}: key of ${keyLength} characters; keys are at most ${BIZ_TAG_KEY_MAX}`, { position: pairStart });
    }
    if (i >= n || c !== COLON) {
      throw new BizTagError('MISSING_SEPARATOR', `pair ${number} (${showHeader(text.slice(pairStart, i))}) has no ":" between key and value`, { position: i });
    }
    const key = text.slice(pairStart, i);
    i++;

    // value: letters, digits, "_", ".", "-" (a second ":" is a deviation, not part of the value)
    const valueStart = i;
    while (i < n) {
      c = text.charCodeAt(i);
      if (c === PIPE) break;
      if (!is(c, VALUE_CHAR)) {
        throw new BizTagError('VALUE_INVALID', `value of ${key}: ${showHeader(text[i]!)} at offset ${i} is not allowed ([A-Za-z0-9_.-]{1,64})`, { position: i, key });
      }
      i++;
    }
    const valueLength = i - valueStart;
    if (valueLength === 0) throw new BizTagError('VALUE_INVALID', `value of ${key} is empty`, { position: valueStart, key });
    if (valueLength > BIZ_TAG_VALUE_MAX) {
      throw new BizTagError('VALUE_INVALID', `value of ${key} has ${valueLength} characters; values are at most ${BIZ_TAG_VALUE_MAX}`, { position: valueStart, key });
    }
    for (const pair of pairs) {
      if (pair[0] === key) throw new BizTagError('DUPLICATE_KEY', `key ${key} appears twice; each key at most once`, { position: pairStart, key });
    }
    pairs.push([key, text.slice(valueStart, i)]);
    if (i >= n) break;
    i++; // the "|"
    if (i >= n) throw new BizTagError('EMPTY_PAIR', `the header ends with "|"`, { position: i - 1 });
  }
  for (const pair of pairs) Object.freeze(pair);
  construct = true;
  return new BizTag(Object.freeze(pairs), text);
}

/** parseBizTag without the throw: the tag, or the error saying why not. */
export function tryParseBizTag(input: unknown): { ok: true; tag: BizTag } | { ok: false; error: BizTagError } {
  try {
    return { ok: true, tag: parseBizTag(input) };
  } catch (error) {
    if (error instanceof BizTagError) return { ok: false, error };
    throw error;
  }
}

/**
 * Formats pairs (in order) or a record as a header value, validating each key and value, the
 * count, uniqueness and length. @throws BizTagError
 */
export function formatBizTag(pairs: Iterable<readonly [string, string]> | Readonly<Record<string, string>>): string {
  // Callers in plain JavaScript (or with `any`) can pass anything: the tag's own error, not a TypeError.
  if (pairs === null || typeof pairs !== 'object') {
    throw new BizTagError('NOT_PAIRS', `a tag is built from [key, value] pairs or a { key: value } object, not ${pairs === null ? 'null' : typeof pairs}`);
  }
  const list: (readonly [unknown, unknown])[] = Symbol.iterator in pairs ? [...pairs] : Object.entries(pairs);
  if (list.length === 0) throw new BizTagError('EMPTY', 'a tag has at least one pair');
  if (list.length > BIZ_TAG_MAX_PAIRS) throw new BizTagError('TOO_MANY_PAIRS', `${list.length} pairs; at most ${BIZ_TAG_MAX_PAIRS}`);
  const seen = new Set<string>();
  const parts: string[] = [];
  for (const entry of list) {
    const [key, value] = Array.isArray(entry) ? entry : [undefined, undefined];
    if (typeof key !== 'string' || !BIZ_TAG_KEY.test(key)) {
      throw new BizTagError('KEY_INVALID', `key ${showHeader(String(key))} does not match [A-Za-z][A-Za-z0-9_]{0,31}`);
    }
    if (typeof value !== 'string' || !BIZ_TAG_VALUE.test(value)) {
      throw new BizTagError('VALUE_INVALID', `value of ${key} (${showHeader(String(value))}) does not match [A-Za-z0-9_.-]{1,64}`, { key });
    }
    if (seen.has(key)) throw new BizTagError('DUPLICATE_KEY', `key ${key} appears twice`, { key });
    seen.add(key);
    parts.push(`${key}:${value}`);
  }
  const header = parts.join('|');
  if (header.length > BIZ_TAG_MAX_BYTES) throw new BizTagError('TOO_LONG', `the formatted tag has ${header.length} bytes; the limit is ${BIZ_TAG_MAX_BYTES}`);
  return header;
}
