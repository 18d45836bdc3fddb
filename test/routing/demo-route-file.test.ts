/**
 * The demo with a route file (GOVMAP_ROUTE_FILE / routing.routeFile): a reload that fails keeps
 * the last good table serving, and shows on /metrics where an alert can see it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DEMO_ROUTES } from '../../demo/routing.ts';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

const dir = mkdtempSync(join(tmpdir(), 'govmap-route-file-'));
const file = join(dir, 'routes.json');
let demo: DemoService;
before(async () => {
  writeFileSync(file, JSON.stringify(DEMO_ROUTES));
  demo = await startDemo({ port: 0, accounts: 5, routing: { routeFile: file, drainMs: 100 } });
});
after(async () => {
  await demo.close();
  rmSync(dir, { recursive: true, force: true });
});

async function sourceMetrics(): Promise<{ errors: number; healthy: number }> {
  const text = await (await fetch(`${demo.url}/metrics`)).text();
  const value = (name: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(name));
    assert.ok(line !== undefined, `${name} is exported`);
    return Number(line.split(' ').at(-1));
  };
  return { errors: value('govmap_route_table_source_errors_total'), healthy: value('govmap_route_table_source_healthy') };
}

test('a route file that stops loading is counted and marked unhealthy on /metrics, and the last good table keeps serving', async () => {
  assert.deepEqual(await sourceMetrics(), { errors: 0, healthy: 1 });
  writeFileSync(file, '{"routes": [');
  const deadline = Date.now() + 10_000;
  let seen = await sourceMetrics();
  while (seen.healthy !== 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    seen = await sourceMetrics();
  }
  assert.deepEqual(seen, { errors: 1, healthy: 0 });
  const answer = await fetch(`${demo.url}/accounts/acct-000001`, { headers: { 'x-biz-tag': 'orgId:1001|txnType:query' } });
  assert.equal(answer.status, 200);
  assert.equal(answer.headers.get('x-govmap-route'), 'org-1001', 'the last good table still routes');
});

test('a cache route rebuilt by a route file reload keeps its syncmap_* series on /metrics', async () => {
  const cacheKeys = async (): Promise<string | undefined> => {
    const text = await (await fetch(`${demo.url}/metrics`)).text();
    return text.split('\n').find((l) => l.startsWith('syncmap_keys{map="route_cache:fx-quotes"}'));
  };
  assert.ok((await cacheKeys()) !== undefined, 'the built-in cache route is measured');
  // A new TTL rebuilds the route's cache map (a new GovernedMap under the same name).
  const edited = { ...DEMO_ROUTES, routes: DEMO_ROUTES.routes.map((r) => (r.id === 'fx-quotes' ? { ...r, degradation: { kind: 'cache', ttlMs: 30_000 } } : r)) };
  writeFileSync(file, JSON.stringify(edited));
  const deadline = Date.now() + 10_000;
  let table: { degradation?: { ttlMs?: number } } | undefined;
  while (Date.now() < deadline) {
    const routes = (await (await fetch(`${demo.url}/routes`)).json()) as { table: { routes: Array<{ id: string; degradation?: { ttlMs?: number } }> } };
    table = routes.table.routes.find((r) => r.id === 'fx-quotes');
    if (table?.degradation?.ttlMs === 30_000) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(table?.degradation?.ttlMs, 30_000, 'the edited table is applied');
  assert.ok((await cacheKeys()) !== undefined, 'the rebuilt cache map is measured too');
});
