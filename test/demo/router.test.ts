import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { test } from 'node:test';
import fc from 'fast-check';
import { hasDotSegment, literalFirstSegment, Router } from '../../demo/router.ts';

test('literalFirstSegment: the segment a pattern spells out, or null when any path might match', () => {
  assert.equal(literalFirstSegment(/^\/accounts\/([^/]+)$/), 'accounts');
  assert.equal(literalFirstSegment(/^\/accounts$/), 'accounts');
  assert.equal(literalFirstSegment(/^\/shared-memory\/exposure$/), 'shared-memory');
  assert.equal(literalFirstSegment(/^\/app\.js$/), 'app.js');
  assert.equal(literalFirstSegment(/^\/$/), '');
  // Anything that could match another first segment stays null (tried for every path).
  for (const open of [/^\/accounts/, /^\/acc.unts$/, /^\/(accounts|transfers)$/, /^\/a$|^\/b$/, /^\/Accounts$/i, /accounts$/, /^\/ab?$/, /^\/[a-z]+$/]) {
    assert.equal(literalFirstSegment(open), null, String(open));
  }
});

/** The request a handler saw, or the status of the refusal, with its Allow header when it has one. */
async function dispatch(router: Router, method: string, path: string): Promise<string> {
  let outcome = '';
  const headers: Record<string, string> = {};
  const res = {
    headersSent: false,
    destroyed: false,
    setHeader(name: string, value: string) {
      headers[name.toLowerCase()] = value;
      return this;
    },
    writeHead(status: number, given: Record<string, string> = {}) {
      const allow = given.allow ?? headers.allow;
      outcome = allow === undefined ? `status ${status}` : `status ${status} allow ${allow}`;
      return this;
    },
    end() {},
  } as unknown as ServerResponse;
  await router.handle({ method, url: path } as IncomingMessage, res);
  return outcome;
}

test('routes are found by first segment exactly as by trying every pattern in order: same route, same 404, 405 and Allow; HEAD is GET\'s', async () => {
  const patterns = [/^\/accounts$/, /^\/accounts\/([^/]+)$/, /^\/accounts\/([^/]+)\/(credit|debit)$/, /^\/transfers$/, /^\/$/, /^\/app\.js$/, /^\/(accounts|payments)\/x$/, /^\/[a-z]+\/y$/, /^\/accounts/, /^\/Payments$/i];
  const segments = ['accounts', 'transfers', 'payments', 'Payments', 'app.js', 'appXjs', 'x', 'y', 'acct-1', 'credit', ''];
  const route = fc.record({ method: fc.constantFrom('GET', 'POST', 'HEAD'), pattern: fc.integer({ min: 0, max: patterns.length - 1 }) });
  const path = fc.array(fc.constantFrom(...segments), { minLength: 1, maxLength: 3 }).map((parts) => `/${parts.join('/')}`);
  await fc.assert(
    fc.asyncProperty(fc.array(route, { maxLength: 12 }), fc.array(fc.tuple(fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS'), path), { minLength: 1, maxLength: 8 }), async (routes, requests) => {
      const router = new Router();
      routes.forEach((r, i) => router.route(r.method, patterns[r.pattern]!, (_req, res) => void (res as unknown as { writeHead(s: number): void }).writeHead(1000 + i)));
      for (const [method, p] of requests) {
        // The reference: the first route whose pattern matches and whose method is the request's
        // (a GET route serves HEAD too); else 404 when no pattern matches, else the path's
        // methods in Allow (HEAD with GET, always OPTIONS), on a 204 for OPTIONS and a 405 otherwise.
        const matching = routes.map((r, i) => ({ ...r, i })).filter((r) => patterns[r.pattern]!.test(p));
        const chosen = matching.find((r) => r.method === method || (method === 'HEAD' && r.method === 'GET'));
        const methods = new Set<string>(matching.map((r) => r.method));
        if (methods.has('GET')) methods.add('HEAD');
        methods.add('OPTIONS');
        const allow = [...methods].join(', ');
        const expected =
          chosen !== undefined ? `status ${1000 + chosen.i}` : matching.length === 0 ? 'status 404' : `status ${method === 'OPTIONS' ? 204 : 405} allow ${allow}`;
        assert.equal(await dispatch(router, method, p), expected, `${method} ${p}`);
      }
    }),
    { numRuns: 300 },
  );
});

test('a route added after requests were served is found (the index is rebuilt)', async () => {
  const router = new Router();
  router.route('GET', /^\/a$/, (_req, res) => void res.writeHead(201));
  assert.equal(await dispatch(router, 'GET', '/b'), 'status 404');
  router.route('GET', /^\/b$/, (_req, res) => void res.writeHead(202));
  assert.equal(await dispatch(router, 'GET', '/b'), 'status 202');
  assert.equal(await dispatch(router, 'GET', '/a'), 'status 201');
});

test('the path is the request target\'s: "//x" is a path, not a host; an absolute target is parsed; a malformed one is a 400', async () => {
  const router = new Router();
  router.route('GET', /^\/$/, (_req, res) => void res.writeHead(200));
  router.route('GET', /^\/accounts\/([^/]+)$/, (_req, res) => void res.writeHead(201));
  assert.equal(await dispatch(router, 'GET', '//accounts/acct-1'), 'status 404', 'not the page at /');
  assert.equal(await dispatch(router, 'GET', 'http://127.0.0.1:8080/accounts/acct-1?x=1'), 'status 201');
  assert.equal(await dispatch(router, 'GET', 'http://['), 'status 400');
});

test('a dot segment, as written or percent-encoded in any case, is refused (400), never resolved', async () => {
  const router = new Router();
  router.route('GET', /^\/$/, (_req, res) => void res.writeHead(200));
  router.route('GET', /^\/metrics$/, (_req, res) => void res.writeHead(200));
  router.route('GET', /^\/accounts\/([^/]+)$/, (_req, res) => void res.writeHead(201));
  for (const target of ['/accounts/../accounts/acct-1', '/accounts/%2e%2e/metrics', '/accounts/.%2E/metrics', '/accounts/%2E./metrics', '/accounts/..', '/accounts/%2e', '/./metrics', '/accounts/..\\metrics', 'http://127.0.0.1:8080/accounts/%2e%2e/metrics']) {
    assert.equal(await dispatch(router, 'GET', target), 'status 400', target);
  }
});

test('hasDotSegment: only whole "." and ".." segments of the path, whatever their spelling', () => {
  for (const target of ['/..', '/.', '/a/./b', '/a/../b', '/a/%2e%2e', '/a/%2E%2e/', '/a/.%2e', '/a/%2e.', '/a/%2e', '/a\\..\\b', '..', '/a/..?x=1']) {
    assert.equal(hasDotSegment(target), true, target);
  }
  for (const target of ['/', '/accounts/acct-000001', '/app.js', '/a/...', '/a/.b', '/a/b.', '/a/%2e%2e%2e', '/a/%252e%252e', '/a?next=../..', '/a#../..', '/a/%2f', 'http://127.0.0.1:8080/accounts/x', '/a/..b']) {
    assert.equal(hasDotSegment(target), false, target);
  }
});

test('an error from a client that disconnected is dropped quietly: no 500, nothing logged', async () => {
  const router = new Router();
  const aborted = Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
  router.route('POST', /^\/x$/, () => {
    throw aborted;
  });
  const logged: unknown[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void logged.push(args);
  try {
    let written = false;
    const res = { headersSent: false, destroyed: true, writeHead: () => (written = true), end() {} } as unknown as ServerResponse;
    await router.handle({ method: 'POST', url: '/x' } as IncomingMessage, res);
    assert.equal(written, false, 'nothing is written to a gone client');
    // The same error with the client still there (a reset from a downstream) is a logged 500.
    assert.equal(await dispatch(router, 'POST', '/x'), 'status 500');
  } finally {
    console.error = original;
  }
  assert.equal(logged.length, 1, 'only the downstream reset is logged');
});
