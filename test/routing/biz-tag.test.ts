import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BizTag, BizTagError, formatBizTag, parseBizTag } from '../../src/routing/index.ts';

/**
 * The grammar of DESIGN.md written the obvious way (split and regex), as the oracle the
 * hand-written scanner is checked against.
 */
function reference(header: string): Array<[string, string]> | null {
  if (header.length === 0 || header.length > 512) return null;
  const parts = header.split('|');
  if (parts.length > 16) return null;
  const pairs: Array<[string, string]> = [];
  for (const part of parts) {
    const m = /^([A-Za-z][A-Za-z0-9_]{0,31}):([A-Za-z0-9_.-]{1,64})$/.exec(part);
    if (m === null) return null;
    if (pairs.some(([k]) => k === m[1])) return null;
    pairs.push([m[1]!, m[2]!]);
  }
  return pairs;
}

const key = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,31}$/);
const value = fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/);
const validPairs = fc
  .uniqueArray(fc.tuple(key, value), { minLength: 1, maxLength: 16, selector: ([k]) => k })
  .filter((pairs) => pairs.map(([k, v]) => `${k}:${v}`).join('|').length <= 512);

function rejects(input: unknown, rule: string): void {
  assert.throws(
    () => parseBizTag(input),
    (error: unknown) => error instanceof BizTagError && error.rule === rule && error.code === 'GOVMAP_BIZTAG_INVALID',
    `${JSON.stringify(input)} should be rejected by ${rule}`,
  );
}

describe('X-Biz-Tag: examples', () => {
  test('the typical header parses to its pairs, with the routing keys exposed', () => {
    const tag = parseBizTag('orgId:1001|txnType:pay');
    assert.deepEqual(tag.pairs, [
      ['orgId', '1001'],
      ['txnType', 'pay'],
    ]);
    assert.equal(tag.orgId, '1001');
    assert.equal(tag.txnType, 'pay');
    assert.equal(tag.header, 'orgId:1001|txnType:pay');
    assert.deepEqual(tag.toRecord(), { orgId: '1001', txnType: 'pay' });
    assert.ok(Object.isFrozen(tag) && Object.isFrozen(tag.pairs) && Object.isFrozen(tag.pairs[0]));
  });

  test('limits are inclusive: 16 pairs, 32-char keys, 64-char values, 512 bytes', () => {
    const sixteen = Array.from({ length: 16 }, (_, i) => `k${i}:v`).join('|');
    assert.equal(parseBizTag(sixteen).pairs.length, 16);
    assert.equal(parseBizTag(`${'k'.repeat(32)}:v`).pairs[0]![0].length, 32);
    assert.equal(parseBizTag(`k:${'v'.repeat(64)}`).pairs[0]![1].length, 64);
    const big = Array.from({ length: 7 }, (_, i) => `k${i}:${'v'.repeat(64)}`).join('|');
    assert.ok(big.length <= 512);
    assert.equal(parseBizTag(big).pairs.length, 7);
  });

  const bad: Array<[string, unknown, string]> = [
    ['empty', '', 'EMPTY'],
    ['a number', 42, 'NOT_A_STRING'],
    ['null', null, 'NOT_A_STRING'],
    ['two headers', ['orgId:1', 'orgId:2'], 'MULTIPLE_HEADERS'],
    ['no header values', [], 'MULTIPLE_HEADERS'],
    ['513 bytes', `k:${'v'.repeat(64)}|`.repeat(7) + 'k7:' + 'v'.repeat(64), 'TOO_LONG'],
    ['17 pairs', Array.from({ length: 17 }, (_, i) => `k${i}:v`).join('|'), 'TOO_MANY_PAIRS'],
    ['trailing pipe', 'orgId:1001|', 'EMPTY_PAIR'],
    ['leading pipe', '|orgId:1001', 'EMPTY_PAIR'],
    ['double pipe', 'orgId:1001||txnType:pay', 'EMPTY_PAIR'],
    ['no colon', 'orgId1001', 'MISSING_SEPARATOR'],
    ['empty key', ':1001', 'KEY_INVALID'],
    ['key starting with a digit', '1org:1001', 'KEY_INVALID'],
    ['key with a dash', 'org-id:1001', 'KEY_INVALID'],
    ['key of 33 chars', `${'k'.repeat(33)}:v`, 'KEY_INVALID'],
    ['space around the colon', 'orgId :1001', 'KEY_INVALID'],
    ['space in a value', 'orgId: 1001', 'VALUE_INVALID'],
    ['empty value', 'orgId:', 'VALUE_INVALID'],
    ['second colon', 'orgId:10:01', 'VALUE_INVALID'],
    ['value of 65 chars', `k:${'v'.repeat(65)}`, 'VALUE_INVALID'],
    ['non-ASCII value', 'orgId:10０1', 'VALUE_INVALID'],
    ['a comma (what joined headers look like)', 'orgId:1001, orgId:1002', 'VALUE_INVALID'],
    ['duplicate key', 'orgId:1001|txnType:pay|orgId:1002', 'DUPLICATE_KEY'],
    ['NUL byte', 'orgId:10\u000001', 'VALUE_INVALID'],
  ];
  for (const [label, input, rule] of bad) {
    test(`refused: ${label} (${rule})`, () => rejects(input, rule));
  }

  test('messages name the offending pair and character, escaped', () => {
    assert.throws(() => parseBizTag('orgId:1001|txnType:pa\ny'), /value of txnType: "\\n" at offset 21/);
    assert.throws(() => parseBizTag('orgId:1001|orgId:2'), /key orgId appears twice/);
  });

  test('a BizTag cannot be constructed unvalidated', () => {
    assert.throws(() => new BizTag([['bad key', '!']], 'bad key:!'), TypeError);
  });

  test('formatting validates too', () => {
    assert.equal(formatBizTag({ orgId: '1001', txnType: 'pay' }), 'orgId:1001|txnType:pay');
    assert.equal(formatBizTag([['b', '1'], ['a', '2']]), 'b:1|a:2');
    assert.throws(() => formatBizTag({ orgId: '10|01' }), { rule: 'VALUE_INVALID' });
    assert.throws(() => formatBizTag([['orgId', '1'], ['orgId', '2']]), { rule: 'DUPLICATE_KEY' });
    // From plain JavaScript: the tag's own error, naming what was given, not a TypeError.
    for (const given of [null, undefined, 'orgId:1', 42]) {
      assert.throws(() => formatBizTag(given as never), { code: 'GOVMAP_BIZTAG_INVALID', rule: 'NOT_PAIRS' });
      assert.throws(() => BizTag.of(given as never), { code: 'GOVMAP_BIZTAG_INVALID', rule: 'NOT_PAIRS' });
    }
    assert.throws(() => formatBizTag({}), { rule: 'EMPTY' });
    assert.throws(() => formatBizTag({ 'org id': '1' }), { rule: 'KEY_INVALID' });
  });
});

describe('X-Biz-Tag: properties', () => {
  test('round trip: format then parse gives the same pairs, and the header text back', () => {
    fc.assert(
      fc.property(validPairs, (pairs) => {
        const header = formatBizTag(pairs);
        const tag = parseBizTag(header);
        assert.deepEqual(tag.pairs, pairs);
        assert.equal(tag.header, header);
        assert.equal(formatBizTag(tag.pairs), header);
        assert.deepEqual(BizTag.of(tag.toRecord()).pairs, pairs);
      }),
      { numRuns: 300 },
    );
  });

  test('arbitrary bytes (as Node decodes header bytes: latin1) give a tag exactly when the grammar allows, else only a BizTagError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const header = Buffer.from(bytes).toString('latin1');
        agree(header);
      }),
      { numRuns: 500 },
    );
  });

  test('arbitrary strings (any UTF-16) and any JS value: a tag or a BizTagError, never anything else', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 600 }), fc.anything()), (input) => {
        if (typeof input === 'string') agree(input);
        else {
          try {
            parseBizTag(input);
          } catch (error) {
            // fc.stringify: String() itself throws for inputs such as {toString: ''}.
            assert.ok(error instanceof BizTagError, `non-BizTagError for ${fc.stringify(input)}: ${fc.stringify(error)}`);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  test('near-valid headers (one character inserted, removed or replaced) agree with the grammar', () => {
    const alphabet = fc.constantFrom(...'|:_.-aZ09 ,;=\u0000\u00e9\u200b');
    fc.assert(
      fc.property(validPairs, fc.nat(), alphabet, fc.constantFrom('insert', 'delete', 'replace'), (pairs, at, ch, how) => {
        const header = formatBizTag(pairs);
        const i = at % (header.length + 1);
        const mutated = how === 'insert' ? header.slice(0, i) + ch + header.slice(i) : how === 'delete' ? header.slice(0, i) + header.slice(i + 1) : header.slice(0, i) + ch + header.slice(i + 1);
        agree(mutated);
      }),
      { numRuns: 500 },
    );
  });
});

/** The scanner and the reference agree on `header`: same pairs when valid, a BizTagError when not. */
function agree(header: string): void {
  const expected = reference(header);
  let got: BizTag | null = null;
  try {
    got = parseBizTag(header);
  } catch (error) {
    assert.ok(error instanceof BizTagError, `non-BizTagError for ${JSON.stringify(header)}: ${String(error)}`);
  }
  if (expected === null) assert.equal(got, null, `accepted ${JSON.stringify(header)}, which the grammar refuses`);
  else assert.deepEqual(got?.pairs, expected, `refused ${JSON.stringify(header)}, which the grammar accepts`);
}
