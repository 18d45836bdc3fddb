/**
 * GOVMAP_ASYNC_SPILL (the routing option spillFile): payments still queued when the demo stops
 * are written there and restored at the next start. Nothing accepted may be lost on the way: a
 * spill file that could not be written is refused at start, one that cannot be written at
 * shutdown after all gets the payments listed on stderr, and a damaged one is refused and kept.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

const TOKEN = 'spill-test-admin-token';
const scratch = mkdtempSync(join(tmpdir(), 'govmap-spill-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const start = (spillFile: string): Promise<DemoService> =>
  startDemo({ port: 0, accounts: 4, openingBalance: 10_000n, adminToken: TOKEN, routing: { drainMs: 50, spillFile }, sandbox: { stateDirectory: null }, traffic: false });

async function call(demo: DemoService, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const response = await fetch(demo.url + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), authorization: `Bearer ${TOKEN}`, ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

/** Queues `count` payments of org 100101 with its route forced to degrade, left forced: they stay queued. */
async function queueHeld(demo: DemoService, count: number): Promise<void> {
  const forced = await call(demo, 'POST', '/admin/switches', { set: { 'routing.force-degrade': { enabled: true, allow: [{ orgIds: ['1001*'] }] } }, reason: 'spill test' });
  assert.equal(forced.status, 200);
  for (let i = 0; i < count; i++) {
    const queued = await call(demo, 'POST', '/payments', { from: 'acct-000001', to: 'acct-000002', amount: '100' }, { 'x-biz-tag': 'orgId:100101|txnType:pay' });
    assert.equal(queued.status, 202, JSON.stringify(queued.json));
  }
}

/** Console output of `run`, stdout and stderr. */
async function captured<T>(run: () => Promise<T>): Promise<{ result: T; out: string; err: string }> {
  const log = console.log;
  const error = console.error;
  let out = '';
  let err = '';
  console.log = (...args: unknown[]) => void (out += `${args.join(' ')}\n`);
  console.error = (...args: unknown[]) => void (err += `${args.join(' ')}\n`);
  try {
    return { result: await run(), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('payments still queued at shutdown are written to the spill file and restored (and then booked) at the next start', async () => {
  const spill = join(scratch, 'queued.jsonl');
  const first = await start(spill);
  await queueHeld(first, 3);
  const closing = await captured(() => first.close());
  assert.match(closing.out, /3 queued payment\(s\) not processed; written to .*queued\.jsonl/);
  assert.equal(readFileSync(spill, 'utf8').trim().split('\n').length, 3);

  const { result: second, out } = await captured(() => start(spill));
  try {
    assert.match(out, /3 queued payment\(s\) restored from/);
    assert.equal(existsSync(spill), false, 'restored: the file is removed, so they are not restored twice');
    // The new process has no forced degradation: the restored payments are booked.
    const deadline = performance.now() + 10_000;
    let balance = '';
    while (performance.now() < deadline && balance !== '9700') {
      balance = (await call(second, 'GET', '/accounts/acct-000001')).json.balance;
      await sleep(50);
    }
    assert.equal(balance, '9700');
  } finally {
    await second.close();
  }
});

test('a spill file that cannot be written at shutdown after all: the queued payments are listed on stderr, whole', async () => {
  const spill = join(scratch, 'replaced.jsonl');
  const demo = await start(spill);
  await queueHeld(demo, 2);
  mkdirSync(spill); // the path became a directory while the demo ran
  const closing = await captured(() => demo.close());
  assert.match(closing.err, /2 queued payment\(s\) not processed \(.*replaced\.jsonl could not be written: EISDIR\)/);
  const listed = closing.err.split('\n').filter((line) => line.startsWith('{'));
  assert.equal(listed.length, 2);
  for (const line of listed) assert.match(line, /"amount":"100"/);
});

test('a spill file that could never be written, or a damaged one, is refused at start naming GOVMAP_ASYNC_SPILL; the damaged file is kept', async () => {
  const directory = join(scratch, 'a-directory');
  mkdirSync(directory);
  await assert.rejects(start(directory), (e: Error & { code?: string }) => e.code === 'GOVMAP_DEMO_ENVIRONMENT_INVALID' && /^GOVMAP_ASYNC_SPILL=.*a-directory: is a directory/.test(e.message));
  await assert.rejects(start(join(scratch, 'no-such-dir', 'queued.jsonl')), (e: Error & { code?: string }) => e.code === 'GOVMAP_DEMO_ENVIRONMENT_INVALID' && /cannot be written \(ENOENT\): payments still queued at shutdown would be lost/.test(e.message));
  await assert.rejects(start(''), (e: Error) => /^GOVMAP_ASYNC_SPILL is set but empty/.test(e.message));
  const damaged = join(scratch, 'damaged.jsonl');
  writeFileSync(damaged, '{"token":"a"\nnot json\n');
  await assert.rejects(start(damaged), (e: Error & { code?: string }) => e.code === 'GOVMAP_DEMO_ENVIRONMENT_INVALID' && /line 1 is not a queued payment this demo wrote .*the file is kept/.test(e.message));
  assert.equal(readFileSync(damaged, 'utf8'), '{"token":"a"\nnot json\n');
});

test('a spilled line that is JSON but not a queued payment is reported as damaged, naming the file and its line, and kept; one whose route is gone says so', async () => {
  const spill = join(scratch, 'half-damaged.jsonl');
  const damaged = '{"token":"t-damaged","attempts":0}';
  const routeGone = JSON.stringify({ token: 't-gone', lane: 'org-retired', payload: { tag: 'orgId:4004|txnType:pay', route: 'org-retired', payload: { from: 'acct-000001', to: 'acct-000002', amount: '100' } }, acceptedAt: new Date(0).toISOString(), attempts: 0 });
  writeFileSync(spill, `${damaged}\n${routeGone}\n`);
  const { result: demo, err } = await captured(() => start(spill));
  try {
    assert.match(err, /2 spilled payment\(s\) not restored, kept in .*half-damaged\.jsonl/);
    assert.match(err, /half-damaged\.jsonl line 1 \(now line 1\): damaged: not a queued payment this demo wrote \(it needs a token, attempts, a route and a valid X-Biz-Tag\): repair it/);
    assert.match(err, /half-damaged\.jsonl line 2 \(now line 2\): its route "org-retired" has no async lane any more/);
    assert.doesNotMatch(err.split('\n').filter((line) => line.includes('line 1')).join('\n'), /no async/, 'the damaged line is not said to have lost its route');
    assert.deepEqual(readFileSync(spill, 'utf8').trim().split('\n').map((line) => JSON.parse(line).token), ['t-damaged', 't-gone']);
  } finally {
    await demo.close();
  }
});

/**
 * Spilled payments the demo could not restore are "kept in" the spill file for an operator to
 * repair. The next shutdown with payments queued rewrote the file with those alone: the kept
 * ones, said to be safe, were gone.
 */
test('payments kept in the spill file (not restored) are still there after the next shutdown spills more', async () => {
  const spill = join(scratch, 'kept-then-more.jsonl');
  const routeGone = JSON.stringify({ token: 't-kept', lane: 'org-retired', payload: { tag: 'orgId:4004|txnType:pay', route: 'org-retired', payload: { from: 'acct-000001', to: 'acct-000002', amount: '100' } }, acceptedAt: new Date(0).toISOString(), attempts: 0 });
  writeFileSync(spill, `${routeGone}\n`);
  const { result: demo } = await captured(() => start(spill));
  await queueHeld(demo, 2);
  const closing = await captured(() => demo.close());
  assert.match(closing.out, /2 queued payment\(s\) not processed; written to .*kept-then-more\.jsonl/);
  const tokens = readFileSync(spill, 'utf8').trim().split('\n').map((line) => JSON.parse(line).token as string);
  assert.equal(tokens.length, 3, tokens.join(', '));
  assert.equal(tokens[0], 't-kept', 'the payment kept from before is still there');
});
