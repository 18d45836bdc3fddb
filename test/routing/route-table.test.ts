import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { ConfigurationError } from '../../src/map/errors.ts';
import { RouteTable, RouteTableError, parseBizTag, sendRouteOutcome } from '../../src/routing/index.ts';

const rule = (id: string, orgId: string, txnType: string, target = `t-${id}`) => ({ id, orgId, txnType, target });
const table = (routes: unknown[]) => new RouteTable({ default: { target: 'core' }, routes });

describe('precedence', () => {
  const t = table([
    rule('any-any', '*', '*'),
    rule('any-pay', '*', 'pay'),
    rule('p10', '10*', '*'),
    rule('p100-pay', '100*', 'pay'),
    rule('p1001', '1001*', '*'),
    rule('e1001-refund', '1001', 'refund'),
    rule('e2002', '2002', '*'),
  ]);
  const cases: Array<[string | undefined, string | undefined, string]> = [
    ['1001', 'refund', 'e1001-refund'], // exact org beats every prefix
    ['1001', 'pay', 'p1001'], // exact org has no pay rule: longest prefix 1001* wins over 100*/pay
    ['10019', 'pay', 'p1001'], // orgId specificity decides before txnType specificity
    ['1002', 'pay', 'p100-pay'],
    ['1002', 'refund', 'p10'], // 100* has no refund rule and no *: fall back to the shorter prefix
    ['2002', 'pay', 'e2002'],
    ['3003', 'pay', 'any-pay'],
    ['3003', 'refund', 'any-any'],
    [undefined, 'pay', 'any-pay'], // * matches an absent orgId
    ['1001', undefined, 'p1001'], // and an absent txnType
  ];
  for (const [org, txn, expected] of cases) {
    test(`(${org ?? 'absent'}, ${txn ?? 'absent'}) -> ${expected}`, () => {
      const decision = t.decide(org, txn);
      assert.equal(decision.route.id, expected);
      assert.equal(decision.reason, 'rule');
    });
  }

  test('unmatched traffic goes to the default route as no_rule; untagged as untagged', () => {
    const narrow = table([rule('e1001', '1001', 'pay')]);
    assert.deepEqual([narrow.decide('1001', 'refund').route.id, narrow.decide('1001', 'refund').reason], ['default', 'no_rule']);
    assert.equal(narrow.decideTag(null).reason, 'untagged');
    assert.equal(narrow.decideTag(null).route.target, 'core');
    assert.equal(narrow.decideTag(parseBizTag('orgId:1001|txnType:pay')).route.id, 'e1001');
    // Even a catch-all rule does not take untagged traffic: no tag, no rule consulted.
    assert.equal(table([rule('all', '*', '*')]).decideTag(null).route.id, 'default');
  });

  test('rules are listed in precedence order, the default last', () => {
    assert.deepEqual(
      t.routes.map((r) => r.id),
      ['e1001-refund', 'e2002', 'p1001', 'p100-pay', 'p10', 'any-pay', 'any-any', 'default'],
    );
  });
});

/** Brute force over every rule with the documented precedence: the oracle for the indexed lookup. */
function oracle(rules: ReturnType<typeof rule>[], org: string | undefined, txn: string | undefined): string {
  const orgRank = (p: string): number | null => {
    if (p === '*') return 0;
    if (org === undefined) return null;
    if (p.endsWith('*')) return org.startsWith(p.slice(0, -1)) ? 1 + p.length : null;
    return org === p ? 1000 : null;
  };
  let best: { id: string; org: number; txn: number } | null = null;
  for (const r of rules) {
    const o = orgRank(r.orgId);
    const x = r.txnType === '*' ? 0 : r.txnType === txn ? 1 : null;
    if (o === null || x === null) continue;
    if (best === null || o > best.org || (o === best.org && x > best.txn)) best = { id: r.id, org: o, txn: x };
  }
  return best?.id ?? 'default';
}

describe('properties', () => {
  const orgChars = fc.constantFrom('1', '0', '2');
  const org = fc.string({ unit: orgChars, minLength: 1, maxLength: 5 });
  const orgPattern = fc.oneof(org, org.map((o) => `${o}*`), fc.constant('*'));
  const txn = fc.constantFrom('pay', 'refund', 'fx');
  const rules = fc
    .uniqueArray(fc.tuple(orgPattern, fc.oneof(txn, fc.constant('*'))), { maxLength: 25, selector: ([o, t]) => `${o}|${t}` })
    .map((pairs) => pairs.map(([o, t], i) => rule(`r${i}`, o, t)));

  test('the indexed lookup agrees with the brute-force precedence on random tables', () => {
    fc.assert(
      fc.property(rules, fc.option(org, { nil: undefined }), fc.option(txn, { nil: undefined }), (rs, o, t) => {
        assert.equal(table(rs).decide(o, t).route.id, oracle(rs, o, t));
      }),
      { numRuns: 400 },
    );
  });

  test('the order of rules in the document never changes a decision', () => {
    fc.assert(
      fc.property(
        rules.chain((rs) => fc.tuple(fc.constant(rs), fc.shuffledSubarray(rs, { minLength: rs.length, maxLength: rs.length }))),
        org,
        txn,
        ([rs, shuffled], o, t) => {
          assert.equal(table(rs).decide(o, t).route.id, table(shuffled).decide(o, t).route.id);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('validation', () => {
  const issuesOf = (document: unknown): string => {
    try {
      new RouteTable(document);
    } catch (error) {
      assert.ok(error instanceof RouteTableError);
      assert.equal(error.code, 'GOVMAP_ROUTE_TABLE_INVALID');
      return error.issues.map((i) => `${i.path}: ${i.rule}`).join('\n');
    }
    return assert.fail('expected a RouteTableError');
  };

  test('two rules with the same patterns are refused (one would never match)', () => {
    assert.match(issuesOf({ default: { target: 'core' }, routes: [rule('a', '1001*', 'pay'), rule('b', '1001*', 'pay')] }), /same orgId "1001\*" and txnType "pay" as route "a"/);
  });

  test('bad patterns, ids, targets and strategies are named with their path', () => {
    const text = issuesOf({
      default: { target: 'core' },
      routes: [
        rule('a', '10*01', 'pay'),
        rule('b', '1001', 'pa y'),
        rule('default', '1', 'pay'),
        { ...rule('c', '1', 'pay'), degradation: { kind: 'cache' } },
        { ...rule('d', '2', 'pay'), degradation: { kind: 'retry' } },
        { ...rule('e', '3', 'pay'), extra: true },
        rule('a', '4', 'pay'),
      ],
    });
    assert.match(text, /routes\[0\]\.orgId/);
    assert.match(text, /routes\[1\]\.txnType/);
    assert.match(text, /routes\[2\]\.id: "default" is the default route's id/);
    assert.match(text, /routes\[3\]\.degradation\.ttlMs/);
    assert.match(text, /routes\[4\]\.degradation/);
    assert.match(text, /routes\[5\]/);
  });

  test('messages name the rule, not zod\'s type check: an empty document, a missing field, a mock without its body', () => {
    for (const empty of [null, undefined]) assert.match(issuesOf(empty), /^\(root\): the document is empty; a route table is/);
    const text = issuesOf({ default: {}, routes: [{ ...rule('m', '1', '*'), degradation: { kind: 'mock', status: 202 } }] });
    assert.match(text, /default\.target: required/);
    assert.match(text, /routes\[0\]\.degradation\.body: required: the JSON a mock degradation answers with/);
    assert.doesNotMatch(text, /Invalid input|received undefined/);
    // null is a body (an empty one), not a missing one.
    assert.equal(table([{ ...rule('m', '1', '*'), degradation: { kind: 'mock', body: null } }]).route('m')!.degradation.kind, 'mock');
  });

  test('duplicate ids are refused', () => {
    assert.match(issuesOf({ default: { target: 'core' }, routes: [rule('a', '1', 'pay'), rule('a', '2', 'pay')] }), /duplicate route id "a"/);
  });

  test('a mock header named __proto__ (an own key after JSON.parse) is refused, not dropped; the others are kept', () => {
    const document = JSON.parse('{"default":{"target":"core"},"routes":[{"id":"m","orgId":"1","txnType":"*","target":"gw","degradation":{"kind":"mock","body":null,"headers":{"__proto__":"x"}}}]}') as unknown;
    assert.match(issuesOf(document), /routes\[0\]\.degradation\.headers\.__proto__: a header name is an HTTP token other than __proto__/);
    const kept = new RouteTable({ default: { target: 'core' }, routes: [{ ...rule('m', '1', '*'), degradation: { kind: 'mock', body: null, headers: { 'retry-after': '5' } } }] });
    assert.deepEqual((kept.route('m')!.degradation as { headers: unknown }).headers, { 'retry-after': '5' });
  });

  test('a mock header value Node cannot send (control character, non-ASCII) is refused at load, not thrown at every degraded answer', async () => {
    for (const value of ['line1\nline2', 'price \u20ac5', 'nul\u0000']) {
      const document = { default: { target: 'core' }, routes: [{ ...rule('m', '1', '*'), degradation: { kind: 'mock', body: null, headers: { 'x-note': value } } }] };
      assert.match(issuesOf(document), /routes\[0\]\.degradation\.headers\["x-note"\]: a header value is printable ASCII/, JSON.stringify(value));
    }
    // What is accepted can be sent: printable ASCII, spaces and tabs.
    const t = table([{ ...rule('m', '1', '*'), degradation: { kind: 'mock', body: null, headers: { 'x-note': 'pending\tsee /status ~ok' } } }]);
    const route = t.route('m')!;
    const d = route.degradation as { status: number; body: null; headers: Record<string, string> };
    const server = createServer((_req, res) => sendRouteOutcome(res, { kind: 'mock', route, reason: 'BREAKER_OPEN', status: d.status, body: d.body, headers: d.headers }, () => undefined));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const response = await fetch(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
      assert.equal(response.headers.get('x-note'), 'pending\tsee /status ~ok');
      await response.text();
    } finally {
      server.close();
    }
  });

  test('a mock header the answer writes itself or that frames it (transfer-encoding, content-length, content-type, x-govmap-route, ...) is refused at load, not sent corrupt or dropped', () => {
    for (const name of ['Transfer-Encoding', 'content-length', 'Content-Type', 'cache-control', 'connection', 'x-govmap-route', 'X-Govmap-Degraded']) {
      const document = { default: { target: 'core' }, routes: [{ ...rule('m', '1', '*'), degradation: { kind: 'mock', body: { status: 'PENDING' }, headers: { [name]: 'x' } } }] };
      assert.match(issuesOf(document), /routes\[0\]\.degradation\.headers.*: the degraded answer sets this header itself/, name);
    }
    // Two spellings of one header: Node would send only the last, silently.
    const twice = { default: { target: 'core' }, routes: [{ ...rule('m', '1', '*'), degradation: { kind: 'mock', body: null, headers: { 'Retry-After': '30', 'retry-after': '5' } } }] };
    assert.match(issuesOf(twice), /routes\[0\]\.degradation\.headers\["retry-after"\]: the same header as "Retry-After"/);
  });

  test('a mock answering 204, 205 or 304 has no body: a body configured for one is refused, and the answer carries no content-length', async () => {
    const withBody = { default: { target: 'core' }, routes: [{ ...rule('m', '1', '*'), degradation: { kind: 'mock', status: 204, body: { status: 'PENDING' } } }] };
    assert.match(issuesOf(withBody), /routes\[0\]\.degradation\.body: must be null with status 204, 205 or 304/);
    const t = table([{ ...rule('m', '1', '*'), degradation: { kind: 'mock', status: 204, body: null } }]);
    const route = t.route('m')!;
    const d = route.degradation as { status: number; body: null; headers: Record<string, string> };
    const server = createServer((_req, res) => sendRouteOutcome(res, { kind: 'mock', route, reason: 'BREAKER_OPEN', status: d.status, body: d.body, headers: d.headers }, () => undefined));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      // Raw bytes: a client library would hide the header a 204 must not carry.
      const head = await new Promise<string>((resolve, reject) => {
        const socket = connect((server.address() as { port: number }).port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
        let text = '';
        socket.on('data', (chunk) => (text += chunk.toString('latin1')));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      assert.match(head, /^HTTP\/1\.1 204 /);
      assert.match(head, /x-govmap-degraded: mock; reason=BREAKER_OPEN/i);
      assert.doesNotMatch(head, /content-length|content-type/i);
      assert.ok(head.endsWith('\r\n\r\n'), 'no body after the head');
    } finally {
      server.close();
    }
  });

  test('strategies get their documented defaults', () => {
    const t = new RouteTable({
      default: { target: 'core' },
      routes: [
        { ...rule('m', '1', '*'), degradation: { kind: 'mock', body: { status: 'PENDING' } } },
        { ...rule('a', '2', '*'), degradation: { kind: 'async', ratePerSec: 2.5 } },
        { ...rule('c', '3', '*'), degradation: { kind: 'cache', ttlMs: 1000 } },
      ],
    });
    assert.deepEqual(t.route('m')!.degradation, { kind: 'mock', status: 200, body: { status: 'PENDING' }, headers: {} });
    assert.deepEqual(t.route('a')!.degradation, { kind: 'async', ratePerSec: 2.5, burst: 3, maxQueued: 10_000, maxAttempts: 5 });
    assert.deepEqual(t.route('c')!.degradation, { kind: 'cache', ttlMs: 1000, maxEntries: 10_000 });
    assert.deepEqual(t.defaultRoute.degradation, { kind: 'none' });
    assert.deepEqual(t.route('m')!.bulkhead, { maxConcurrent: 64, maxQueued: 128 });
  });
});

test('a table version that is not a positive whole number is refused naming the option, not exported as NaN or routed on', () => {
  for (const version of [0, -1, 1.5, Number.NaN, Infinity, '2' as unknown as number]) {
    assert.throws(() => new RouteTable({ default: { target: 'core' }, routes: [] }, { version }), (error: unknown) =>
      error instanceof ConfigurationError && error.code === 'GOVMAP_INVALID_CONFIGURATION' && /"version"/.test(error.message) && /positive whole number/.test(error.message), `version ${String(version)}`);
  }
  assert.equal(new RouteTable({ default: { target: 'core' }, routes: [] }, { version: 7 }).version, 7);
});
