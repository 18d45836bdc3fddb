/**
 * `govmap demo --without <parts>`: each part left out is really absent (what `govmap bench cost`
 * relies on to measure it), the rest keeps working, and a list that names no part is refused.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OPTIONAL_PARTS, PartsListError, parseParts } from '../../demo/parts.ts';
import type { OptionalPart } from '../../demo/parts.ts';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';
import { required, service, uniquePrefix } from '../stores/redis-env.ts';

const TAG = { 'x-biz-tag': 'orgId:100101|txnType:pay' };

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'govmap-parts-'));
});
after(() => rm(scratch, { recursive: true, force: true }));

async function demoWithout(without: OptionalPart[]): Promise<{ demo: DemoService; auditDir: string }> {
  const auditDir = join(scratch, `audit-${without.join('-') || 'all'}`);
  const demo = await startDemo({ port: 0, accounts: 20, audit: { dir: auditDir }, without, adminToken: 'parts-test-token-0123456789' });
  return { demo, auditDir };
}

/** The first whole `state` event of the dashboard's stream. */
async function dashboardState(url: string): Promise<any> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 10_000);
  try {
    const response = await fetch(`${url}/events`, { signal: abort.signal });
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      const match = /event: state\ndata: (.*)\n\n/.exec(buffer);
      if (match !== null) return JSON.parse(match[1]!);
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  assert.fail('no state event');
}

async function balanceRead(url: string): Promise<Response> {
  const response = await fetch(`${url}/accounts/acct-000001`, { headers: TAG });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { id: 'acct-000001', balance: '1000000' });
  return response;
}

describe('the whole service (no --without) as the baseline of what the parts do', () => {
  test('audit spool written, route header sent, balances in shared memory and on /metrics, traffic observed', async () => {
    const { demo, auditDir } = await demoWithout([]);
    try {
      const read = await balanceRead(demo.url);
      assert.equal(read.headers.get('x-govmap-route'), 'org-1001');
      assert.ok(existsSync(auditDir));
      assert.match(await (await fetch(`${demo.url}/metrics`)).text(), /^syncmap_load_total\{map="balances"\}/m);
      assert.equal((await fetch(`${demo.url}/shared-memory`)).status, 200);
      const state = await dashboardState(demo.url);
      assert.equal(state.service.balances.store, 'shared-memory');
      assert.ok(state.orgs.some((o: { org: string }) => o.org === '100101'), JSON.stringify(state.orgs));
      assert.ok(!demo.announcements.some((line) => line.startsWith('without:')));
    } finally {
      await demo.close();
    }
  });
});

describe('each part left out is absent, and balances are still served', () => {
  test('audit: nothing is written under the audit directory', async () => {
    const { demo, auditDir } = await demoWithout(['audit']);
    try {
      await balanceRead(demo.url);
      assert.equal(existsSync(auditDir), false);
      assert.deepEqual(demo.auditSummary(), []);
      assert.ok(demo.announcements.includes('without: audit (left out to measure what they cost: this is not the whole reference service)'));
    } finally {
      await demo.close();
    }
  });

  test('routing: no route decision (no x-govmap-route header), and the dashboard sees no tagged traffic', async () => {
    const { demo } = await demoWithout(['routing']);
    try {
      const read = await balanceRead(demo.url);
      assert.equal(read.headers.get('x-govmap-route'), null);
      const state = await dashboardState(demo.url);
      assert.deepEqual(state.orgs, []);
    } finally {
      await demo.close();
    }
  });

  test('dashboard: requests are not observed (the org panel stays empty) while routing still answers', async () => {
    const { demo } = await demoWithout(['dashboard']);
    try {
      const read = await balanceRead(demo.url);
      assert.equal(read.headers.get('x-govmap-route'), 'org-1001');
      const state = await dashboardState(demo.url);
      assert.deepEqual(state.orgs, []);
    } finally {
      await demo.close();
    }
  });

  test('metrics: the balances map has no syncmap_* series', async () => {
    const { demo } = await demoWithout(['metrics']);
    try {
      await balanceRead(demo.url);
      const text = await (await fetch(`${demo.url}/metrics`)).text();
      assert.doesNotMatch(text, /^syncmap_[a-z_]+\{map="balances"/m);
      assert.match(text, /govmap_route_/, 'the rest of /metrics is still there');
    } finally {
      await demo.close();
    }
  });

  test('shared-memory: balances in the in-process store, no /shared-memory routes', async () => {
    const { demo } = await demoWithout(['shared-memory']);
    try {
      await balanceRead(demo.url);
      assert.equal((await fetch(`${demo.url}/shared-memory`)).status, 404);
      assert.equal(demo.ledger.balances.storeKind, 'in-process');
      const state = await dashboardState(demo.url);
      assert.equal(state.service.balances.store, 'in-process');
    } finally {
      await demo.close();
    }
  });
});

describe('parseParts', () => {
  test('a list of parts, in any order, comes back in the canonical order', () => {
    assert.deepEqual(parseParts('shared-memory,audit'), ['audit', 'shared-memory']);
    assert.deepEqual(parseParts(OPTIONAL_PARTS.join(',')), [...OPTIONAL_PARTS]);
    assert.deepEqual(parseParts(' routing , metrics '), ['routing', 'metrics']);
  });

  test('an unknown, empty or repeated name is refused, naming it and the parts there are', () => {
    for (const [text, rule] of [
      ['audit,bogus', '"bogus" is not a part'],
      ['Audit', '"Audit" is not a part'],
      ['', 'an empty name'],
      ['audit,', 'an empty name'],
      ['audit,audit', '"audit" is named twice'],
    ] as const) {
      assert.throws(
        () => parseParts(text),
        (e: unknown) => e instanceof PartsListError && e.code === 'GOVMAP_DEMO_PARTS_INVALID' && e.message.includes(rule) && e.message.includes('audit, routing, dashboard, metrics, shared-memory'),
        text,
      );
    }
  });
});

const redis = service('GOVMAP_REDIS_URL');

describe('balances in Redis (--redis)', { skip: redis.skip }, () => {
  test('the audit trail records the books in Redis, not an unused in-process copy: a second start records no opening balances, since Redis created none', async () => {
    const keyPrefix = uniquePrefix('demo-audit');
    const url = required(redis, 'GOVMAP_REDIS_URL');
    /** The STORE records of the balances in a spool, as `account=value`. */
    const stores = async (dir: string): Promise<string[]> =>
      (await readFile(join(dir, 'audit-000001.jsonl'), 'utf8'))
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line))
        .filter((r) => r.op_type === 'STORE' && r.map === 'balances')
        .map((r) => `${r.resource_id}=${r.value}`);
    try {
      const first = await startDemo({ port: 0, accounts: 2, redis: { url, keyPrefix }, audit: { dir: join(scratch, 'audit-redis-1') }, sandbox: { stateDirectory: null } });
      await first.close();
      assert.deepEqual(await stores(join(scratch, 'audit-redis-1')), ['acct-000000=1000000', 'acct-000001=1000000']);
      const second = await startDemo({ port: 0, accounts: 2, redis: { url, keyPrefix }, audit: { dir: join(scratch, 'audit-redis-2') }, sandbox: { stateDirectory: null } });
      try {
        assert.ok(second.announcements.some((line) => line.includes('0 accounts created, 2 already there')), second.announcements.join('\n'));
        await fetch(`${second.url}/accounts/acct-000001/debit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":"250"}' });
      } finally {
        await second.close();
      }
      assert.deepEqual(await stores(join(scratch, 'audit-redis-2')), ['acct-000001=999750']);
    } finally {
      await dropRedisKeys(url, keyPrefix);
    }
  });

  test('the advisor judges the balances in Redis, not the unused in-process copy: /advisor counts the accounts Redis holds', async () => {
    const keyPrefix = uniquePrefix('demo-parts');
    const demo = await startDemo({ port: 0, accounts: 4, redis: { url: required(redis, 'GOVMAP_REDIS_URL'), keyPrefix }, sandbox: { stateDirectory: null } });
    try {
      const body = (await (await fetch(`${demo.url}/advisor`)).json()) as { advice: Array<{ map: string; evidence: { keys: number | null } }> };
      assert.deepEqual(body.advice.map((a) => [a.map, a.evidence.keys]), [['balances', 4]]);
    } finally {
      await demo.close();
      await dropRedisKeys(required(redis, 'GOVMAP_REDIS_URL'), keyPrefix);
    }
  });

  test('no shared-memory exposure scan is offered: it would scan a copy of the opening balances, not the books in Redis', async () => {
    const keyPrefix = uniquePrefix('demo-parts');
    const demo = await startDemo({ port: 0, accounts: 4, redis: { url: required(redis, 'GOVMAP_REDIS_URL'), keyPrefix }, sandbox: { stateDirectory: null } });
    try {
      const debit = await fetch(`${demo.url}/accounts/acct-000001/debit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":"950000"}' });
      assert.deepEqual(await debit.json(), { id: 'acct-000001', balance: '50000' });
      // Before: 200 with every account at its opening 1,000,000, acct-000001 not below the floor.
      const exposure = await fetch(`${demo.url}/shared-memory/exposure?floor=100000`);
      assert.equal(exposure.status, 404, JSON.stringify(await exposure.json()));
      assert.equal((await fetch(`${demo.url}/shared-memory`)).status, 404);
      assert.ok(!demo.announcements.some((line) => line.startsWith('shared memory:')), demo.announcements.join('\n'));
    } finally {
      await demo.close();
      await dropRedisKeys(required(redis, 'GOVMAP_REDIS_URL'), keyPrefix);
    }
  });
});

/** Removes the keys a test's demo wrote under its prefix. */
async function dropRedisKeys(url: string, keyPrefix: string): Promise<void> {
  const { createClient } = await import('redis');
  const raw = createClient({ url });
  await raw.connect();
  for await (const keys of raw.scanIterator({ MATCH: `${keyPrefix}*`, COUNT: 100 })) if (keys.length > 0) await raw.del(keys);
  await raw.close();
}
