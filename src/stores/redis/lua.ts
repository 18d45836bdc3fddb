import { createHash } from 'node:crypto';

/**
 * The Lua scripts behind every write. A script runs atomically on the Redis server that owns its
 * one key, so "read, compare, write" cannot interleave with another machine's write. Each script
 * touches exactly one key (KEYS[1]), so it runs unchanged on Redis Cluster (no CROSSSLOT, no
 * hash tags needed).
 *
 * Replies are arrays whose first element is a status code (the `Status` constants below),
 * followed by the value the key held, as a string, when the caller needs it.
 */
export interface LuaScript {
  readonly name: string;
  readonly source: string;
  /** SHA-1 of `source`, for EVALSHA; the link falls back to EVAL on NOSCRIPT. */
  readonly sha1: string;
}

function script(name: string, source: string): LuaScript {
  return Object.freeze({ name, source, sha1: createHash('sha1').update(source).digest('hex') });
}

/** Status codes, the first element of every reply. */
export const Status = Object.freeze({
  /** Applied. */
  APPLIED: 1,
  /** The key is absent; nothing written. */
  ABSENT: 0,
  /** The key holds another value than expected (reply carries it); nothing written. */
  CHANGED: 2,
  /** `add`: the result would fall below `bounds.min` (reply carries the current value). */
  BELOW_MIN: -1,
  /** `add`: the result would exceed `bounds.max` (reply carries the current value). */
  ABOVE_MAX: -2,
  /** `add`: the key does not hold a canonical int64 decimal (reply carries it). */
  NOT_INT64: -3,
});

/**
 * Compare-and-set. ARGV[1] = 'absent' (expect no key) or 'equals' (expect ARGV[2]);
 * ARGV[3] = the new value. Replies {1} written, {2, current} changed, {0} absent when a value
 * was expected.
 *
 * KEEPTTL (Redis >= 6.0, which RESP3 tracking needs anyway): an expiry another tool put on the
 * key ("daily limit used", reset at midnight) must survive our write as it survives INCRBY in
 * BOUNDED_ADD; a plain SET would drop it, so whether a key ever expires would depend on which
 * operation wrote it last.
 */
export const CAS_SET = script(
  'cas-set',
  `local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'absent' then
  if current then return {2, current} end
else
  if not current then return {0} end
  if current ~= ARGV[2] then return {2, current} end
end
redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
return {1}`,
);

/** Compare-and-delete. ARGV[1] = the value expected. Replies {1} deleted, {2, current}, {0} absent. */
export const CAS_DELETE = script(
  'cas-delete',
  `local current = redis.call('GET', KEYS[1])
if not current then return {0} end
if current ~= ARGV[1] then return {2, current} end
redis.call('DEL', KEYS[1])
return {1}`,
);

/**
 * Bounded increment: INCRBY KEYS[1] ARGV[3] only if the result stays within [min, max].
 *
 * Lua numbers are doubles, exact only to 2^53, so the script never does money arithmetic
 * itself. The caller passes the bounds shifted by the delta, computed exactly with bigint:
 *     min <= current + delta <= max   <=>   min - delta <= current <= max - delta
 * ARGV[1] = min - delta and ARGV[2] = max - delta, as decimal strings (they may lie outside
 * int64; the comparison below works on decimal strings of any length). INCRBY itself is exact
 * int64 arithmetic in Redis, and cannot overflow because the result is within [min, max].
 * Replies {1, previous}, {0} absent, {-1, current} below min, {-2, current} above max,
 * {-3, current} not a canonical int64.
 */
export const BOUNDED_ADD = script(
  'bounded-add',
  `local function cmp(a, b)
  local an, bn = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if an ~= bn then if an then return -1 else return 1 end end
  local am, bm = a, b
  if an then am, bm = string.sub(a, 2), string.sub(b, 2) end
  local c = 0
  if #am ~= #bm then
    if #am < #bm then c = -1 else c = 1 end
  elseif am ~= bm then
    if am < bm then c = -1 else c = 1 end
  end
  if an then return -c end
  return c
end
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
if not (current == '0' or string.match(current, '^%-?[1-9]%d*$')) then return {-3, current} end
if cmp(current, '-9223372036854775808') < 0 or cmp(current, '9223372036854775807') > 0 then return {-3, current} end
if cmp(current, ARGV[1]) < 0 then return {-1, current} end
if cmp(current, ARGV[2]) > 0 then return {-2, current} end
redis.call('INCRBY', KEYS[1], ARGV[3])
return {1, current}`,
);

/**
 * The bytes of KEYS[1] as lowercase hex (false when absent). node-redis decodes every reply as
 * UTF-8, turning each invalid sequence into U+FFFD; hex is ASCII, so it survives that decoding and
 * tells a value that really holds U+FFFD from bytes that are not text. Only asked for a value that
 * came back holding U+FFFD, so the usual read stays one GET.
 */
export const RAW_HEX = script(
  'raw-hex',
  `local v = redis.call('GET', KEYS[1])
if not v then return false end
return (string.gsub(v, '.', function(c) return string.format('%02x', string.byte(c)) end))`,
);
