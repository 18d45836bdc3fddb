import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { govmap } from './govmap-process.ts';

/**
 * `govmap advise` as a CI gate: a misspelt --map or a URL that cannot be one fails with exit 2
 * (never a pass), and impossible figures from the source are refused with a note, never judged.
 */

let exposition = '';
let requests = 0;
let server: Server;
let metrics = '';
before(async () => {
  server = createServer((_req, res) => {
    requests++;
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(exposition);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  metrics = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
});
after(() => server.close());

/** A write-heavy map (read:write 2): --check exits 3 on it. */
const WRITE_HEAVY = ['syncmap_keys{map="balances"} 1000', 'syncmap_load_total{map="balances"} 5000', 'syncmap_read_write_ratio{map="balances"} 2'].join('\n');

describe('govmap advise', () => {
  test('a --map the source does not have exits 2 naming it and the maps there are, even with --check', async () => {
    exposition = WRITE_HEAVY;
    const typo = await govmap('advise', '--url', metrics, '--map', 'balancse', '--check');
    assert.equal(typo.code, 2, typo.stderr);
    assert.equal(typo.stderr, 'govmap advise: --map balancse: no such map at the source (it has: balances)\n');
    assert.doesNotMatch(typo.stdout, /no govmap maps found/);
    // One right, one wrong: the right one is advised, and the run still fails.
    const mixed = await govmap('advise', '--url', metrics, '--map', 'balances', 'positons', '--check');
    assert.equal(mixed.code, 2);
    assert.match(mixed.stdout, /^balances: not-a-map-workload/m);
    assert.match(mixed.stderr, /--map positons: no such map/);
    // All there: --check decides.
    const present = await govmap('advise', '--url', metrics, '--map', 'balances', '--check');
    assert.equal(present.code, 3, present.stderr);
  });

  for (const [flag, url] of [
    ['--url', 'notaurl'],
    ['--url', 'ftp://x/metrics'],
    ['--prometheus', 'ftp://x'],
  ] as const) {
    test(`${flag} ${url}: exit 2 before any request, naming the option and the rule`, async () => {
      const before = requests;
      const r = await govmap('advise', flag, url);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `govmap advise: ${flag} must be an http:// or https:// URL, e.g. ${flag === '--url' ? 'http://127.0.0.1:8080/metrics' : 'http://127.0.0.1:9090'} (got "${url}")\n`);
      assert.equal(requests, before);
    });
  }

  test('--json with a --map the source does not have prints no document (exit 2): a file of advice lacking that map must not look complete', async () => {
    exposition = WRITE_HEAVY;
    const mixed = await govmap('advise', '--url', metrics, '--map', 'balances', 'positons', '--json');
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.equal(mixed.stdout, '');
    assert.equal(mixed.stderr, 'govmap advise: --map positons: no such map at the source (it has: balances)\n');
    const all = await govmap('advise', '--url', metrics, '--map', 'balances', '--json');
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual((JSON.parse(all.stdout) as { advice: Array<{ map: string }> }).advice.map((a) => a.map), ['balances']);
  });

  test('an option given twice (--url, --prometheus, --timeout, --window, --auth-file) exits 2 naming it, before any request', async () => {
    exposition = WRITE_HEAVY;
    for (const args of [
      ['--url', metrics, '--url', 'http://127.0.0.1:9/metrics'],
      ['--prometheus', 'http://127.0.0.1:9', '--prometheus', 'http://127.0.0.1:10'],
      ['--url', metrics, '--timeout', '5', '--timeout', '7'],
      ['--prometheus', 'http://127.0.0.1:9', '--window', '60', '--window', '600'],
      ['--url', metrics, '--auth-file', 'a', '--auth-file', 'b'],
    ]) {
      const before = requests;
      const flag = args[args.length - 2]!;
      const r = await govmap('advise', ...args, '--check');
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${flag} is given more than once: give it once`));
      assert.equal(r.stdout, '');
      assert.equal(requests, before);
    }
  });

  test('--check against a source with no govmap map (the wrong port, node-exporter) fails with exit 1: nothing was judged', async () => {
    exposition = ['# TYPE node_load1 gauge', 'node_load1 0.42'].join('\n');
    const gate = await govmap('advise', '--url', metrics, '--check');
    assert.equal(gate.code, 1, gate.stderr);
    assert.match(gate.stderr, /has no govmap map metrics \(syncmap_\*\), so nothing was judged/);
    // Without --check it is a report, not a gate: it says so and exits 0.
    const report = await govmap('advise', '--url', metrics);
    assert.equal(report.code, 0, report.stderr);
    assert.match(report.stdout, /no govmap maps found/);
  });

  test('--window with --url exits 2 before any request: it shapes the --prometheus queries only', async () => {
    exposition = WRITE_HEAVY;
    const before = requests;
    const r = await govmap('advise', '--url', metrics, '--window', '60', '--check');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^govmap advise: --window applies to --prometheus only/);
    assert.equal(r.stdout, '');
    assert.equal(requests, before);
  });

  test('impossible figures are refused with the metric, the value and the rule, and judged as unknown', async () => {
    exposition = [
      'syncmap_keys{map="balances"} -5',
      'syncmap_load_total{map="balances"} NaN',
      'syncmap_miss_ratio{map="balances"} 7',
      'syncmap_read_write_ratio{map="balances"} +Inf',
    ].join('\n');
    const r = await govmap('advise', '--url', metrics);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /-5 keys/);
    assert.match(r.stdout, /no data {2}keys {13}key count unknown/);
    assert.match(r.stdout, /note: refused syncmap_keys\{map="balances"\} = -5: a key count is a whole number >= 0/);
    assert.match(r.stdout, /note: refused syncmap_load_total\{map="balances"\} = NaN: a counter is a finite number >= 0/);
    assert.match(r.stdout, /note: refused syncmap_miss_ratio\{map="balances"\} = 7: a miss ratio is misses \/ loads, from 0 to 1/);
    assert.match(r.stdout, /note: refused syncmap_read_write_ratio\{map="balances"\} = \+Inf: reads per write is a finite number >= 0/);
  });
});
