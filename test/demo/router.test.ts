import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { test } from 'node:test';
import fc from 'fast-check';
import { literalFirstSegment, Router } from '../../demo/router.ts';

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

/** The request a handler saw, or the status of the refusal. */
async function dispatch(router: Router, method: string, path: string): Promise<string> {
  let outcome = '';
  const res = {
    headersSent: false,
    writeHead(status: number) {
      outcome = `status ${status}`;
      return this;
    },
    end() {},
  } as unknown as ServerResponse;
  await router.handle({ method, url: path } as IncomingMessage, res);
  return outcome;
}

test('routes are found by first segment exactly as by trying every pattern in order: same route, same 404 and 405', async () => {
  const patterns = [/^\/accounts$/, /^\/accounts\/([^/]+)$/, /^\/accounts\/([^/]+)\/(credit|debit)$/, /^\/transfers$/, /^\/$/, /^\/app\.js$/, /^\/(accounts|payments)\/x$/, /^\/[a-z]+\/y$/, /^\/accounts/, /^\/Payments$/i];
  const segments = ['accounts', 'transfers', 'payments', 'Payments', 'app.js', 'appXjs', 'x', 'y', 'acct-1', 'credit', ''];
  const route = fc.record({ method: fc.constantFrom('GET', 'POST'), pattern: fc.integer({ min: 0, max: patterns.length - 1 }) });
  const path = fc.array(fc.constantFrom(...segments), { minLength: 1, maxLength: 3 }).map((parts) => `/${parts.join('/')}`);
  await fc.assert(
    fc.asyncProperty(fc.array(route, { maxLength: 12 }), fc.array(fc.tuple(fc.constantFrom('GET', 'POST', 'PUT'), path), { minLength: 1, maxLength: 8 }), async (routes, requests) => {
      const router = new Router();
      routes.forEach((r, i) => router.route(r.method, patterns[r.pattern]!, (_req, res) => void (res as unknown as { writeHead(s: number): void }).writeHead(1000 + i)));
      for (const [method, p] of requests) {
        // The reference: the first route whose pattern matches and whose method is the request's.
        const matching = routes.map((r, i) => ({ ...r, i })).filter((r) => patterns[r.pattern]!.test(p));
        const chosen = matching.find((r) => r.method === method);
        const expected = chosen !== undefined ? `status ${1000 + chosen.i}` : matching.length > 0 ? 'status 405' : 'status 404';
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
  assert.equal(await dispatch(router, 'GET', '/accounts/../accounts/acct-1'), 'status 201', 'dot segments are resolved');
  assert.equal(await dispatch(router, 'GET', 'http://['), 'status 400');
});
