import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';
import { nextTurn } from './gc.ts';

const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

/** Runs the real CLI in a child process (asynchronously: the demo answers from this process). */
function govmap(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: root, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function leakSiteLine(): Promise<string> {
  const lines = (await readFile(join(root, 'demo/sandbox.ts'), 'utf8')).split('\n');
  const index = lines.findIndex((l) => l.includes("new GovernedMap<string, string>({ name: 'drill_quote_cache'"));
  assert.ok(index >= 0);
  return `demo/sandbox.ts:${index + 1}:`;
}

const TOKEN = 'sandbox-drill-test-token-0123';
/** The drill is an admin endpoint: it plants leak suspects an operator would act on. */
const admin = { authorization: `Bearer ${TOKEN}` };
let demo: DemoService;
let stateDirectory: string;
const suspects: string[] = [];
before(async () => {
  stateDirectory = await mkdtemp(join(tmpdir(), 'govmap-demo-sandbox-'));
  demo = await startDemo({
    port: 0,
    accounts: 20,
    adminToken: TOKEN,
    sandbox: { idleThresholdMs: 300, sweepIntervalMs: 100, advisorWindowMs: 2000, stateDirectory, onSuspect: (s) => suspects.push(s.kind) },
  });
});
after(async () => {
  await demo.close();
  await rm(stateDirectory, { recursive: true, force: true });
});

describe('govmap sandbox report against the running demo', () => {
  test('the drill\'s leaked maps are reported idle, with the line that creates them', async () => {
    const drill = await fetch(`${demo.url}/sandbox/drill/leak`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '{"maps":25}' });
    assert.equal(drill.status, 200);
    assert.deepEqual(await drill.json(), { created: 25, held: 25, idleSuspectsAfterMs: 300 });
    // Until a sweep has found them idle (idleThresholdMs 300, a sweep every 100 ms), not a fixed
    // 600 ms: on a loaded box the sweep timer runs late by more than the 200 ms that left.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const live: any = await (await fetch(`${demo.url}/sandbox/report`)).json();
      if (live.suspects.some((s: any) => s.kind === 'IDLE' && s.map === 'drill_quote_cache' && s.instances === 25)) break;
      assert.ok(Date.now() < deadline, `no IDLE suspect for the drill's 25 maps within 15 s: ${JSON.stringify(live.suspects)}`);
      await nextTurn(50);
    }

    const json = await govmap(['sandbox', 'report', '--url', demo.url, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    const idle = report.suspects.find((s: any) => s.kind === 'IDLE' && s.map === 'drill_quote_cache');
    assert.ok(idle !== undefined, json.stdout);
    assert.equal(idle.instances, 25);
    assert.ok(idle.site.frames[0].startsWith('leakOneMap ('), idle.site.frames[0]);
    assert.ok(idle.site.frames[0].includes(await leakSiteLine()), idle.site.frames[0]);
    // The ledger's map was created after the sandbox started: its site is known too.
    assert.ok(report.topSites.some((s: any) => s.maps.includes('balances') && /demo\/ledger\.ts:\d+/.test(s.site.frames[0])), JSON.stringify(report.topSites));
    assert.ok(suspects.includes('IDLE'), 'the demo was told');

    const text = await govmap(['sandbox', 'report', '--url', demo.url, '--fail-on-suspects']);
    assert.equal(text.code, 3, text.stderr);
    assert.match(text.stdout, /IDLE +25 x "drill_quote_cache"/);
    assert.match(text.stdout, /created at: leakOneMap \(demo\/sandbox\.ts:\d+:\d+\)/);

    const released = await fetch(`${demo.url}/sandbox/drill/leak`, { method: 'DELETE', headers: admin });
    assert.deepEqual(await released.json(), { released: 25 });
  });

  test('the drill refuses bad input and changes nothing', async () => {
    for (const body of ['{"maps":0}', '{"maps":1.5}', '{"maps":"3"}', '{"maps":5,"extra":1}']) {
      const response = await fetch(`${demo.url}/sandbox/drill/leak`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body });
      assert.equal(response.status, 400, body);
    }
    const report: any = await (await fetch(`${demo.url}/sandbox/report`)).json();
    assert.equal(report.suspects.filter((s: any) => s.map === 'drill_quote_cache' && s.kind === 'IDLE').reduce((n: number, s: any) => n + s.instances, 0) <= 25, true);
  });

  test('a service that is not there is reported as such', async () => {
    const port = await closedPort();
    const { code, stderr } = await govmap(['sandbox', 'report', '--url', `http://127.0.0.1:${port}/`, '--timeout', '2']);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`cannot read http://127\\.0\\.0\\.1:${port}/sandbox/report: .*ECONNREFUSED`));
    const usage = await govmap(['sandbox', 'report', '--url', 'ftp://x']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /must be an http\(s\) URL/);
  });
});

describe('govmap advise against the running demo', () => {
  test('/metrics carries the sandbox, GC and advisor series', async () => {
    const text = await (await fetch(`${demo.url}/metrics`)).text();
    for (const name of ['govmap_sandbox_live_maps', 'govmap_sandbox_suspects{kind="IDLE"}', 'govmap_gc_pause_seconds_bucket', 'govmap_advisor_recommendation{map="balances",recommendation="stay"} 1', 'govmap_advisor_window_seconds 2']) {
      assert.ok(text.includes(name), `${name} missing from /metrics`);
    }
  });

  test('--url reads the advisor\'s own evidence from one scrape', async () => {
    // Read-mostly traffic at 25:1, writes spread among the reads (any span of windows then
    // sees about 25:1), over more than one 2-second window.
    for (let i = 1; i <= 260; i++) {
      if (i % 26 === 0) {
        await fetch(`${demo.url}/accounts/acct-000001/credit`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '{"amount":"1"}' });
      } else {
        await fetch(`${demo.url}/accounts/acct-00000${i % 10}`);
      }
    }
    // Until a closed window holds that traffic (the demo's own /advisor judges the same windows):
    // a fixed 2.1 s wait failed on a loaded machine whose window timer fired late.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const served: any = await (await fetch(`${demo.url}/advisor`)).json();
      const signal = served.advice.find((a: any) => a.map === 'balances')?.signals.find((s: any) => s.id === 'READ_WRITE_RATIO');
      if (signal?.status === 'clear') break;
      assert.ok(Date.now() < deadline, `no advisor window held the traffic within 15 s: ${JSON.stringify(signal)}`);
      await nextTurn(100);
    }
    const { code, stdout, stderr } = await govmap(['advise', '--url', `${demo.url}/metrics`, '--json', '--map', 'balances']);
    assert.equal(code, 0, stderr);
    const { advice } = JSON.parse(stdout);
    assert.equal(advice.length, 1);
    assert.equal(advice[0].map, 'balances');
    assert.equal(advice[0].recommendation, 'stay');
    assert.equal(advice[0].evidence.keys, 20);
    const rw = advice[0].signals.find((s: any) => s.id === 'READ_WRITE_RATIO');
    assert.equal(rw.status, 'clear', JSON.stringify(advice[0], null, 2));
    assert.ok(advice[0].evidence.readWrite.ratio >= 20);

    const human = await govmap(['advise', '--url', `${demo.url}/metrics`]);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /^balances: stay/m);
    assert.match(human.stdout, /ok +keys +20 keys <= 50,000/);
  });

  test('GET /advisor serves the same advice as JSON', async () => {
    const body: any = await (await fetch(`${demo.url}/advisor`)).json();
    assert.equal(body.stateStore.kind, 'file');
    assert.equal(body.advice[0].map, 'balances');
    assert.equal(body.advice[0].source, 'in-process');
  });

  test('usage and source errors exit with their own codes and say why', async () => {
    const neither = await govmap(['advise']);
    assert.equal(neither.code, 2);
    assert.match(neither.stderr, /exactly one source/);
    const both = await govmap(['advise', '--url', 'http://a/metrics', '--prometheus', 'http://b']);
    assert.equal(both.code, 2);
    const down = await govmap(['advise', '--url', `http://127.0.0.1:${await closedPort()}/metrics`, '--timeout', '2']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach the metrics endpoint: .*ECONNREFUSED/);
    const notMetrics = await govmap(['advise', '--url', `${demo.url}/advisor`]);
    assert.equal(notMetrics.code, 1);
    assert.match(notMetrics.stderr, /line 1 is not Prometheus text format/);
  });
});
