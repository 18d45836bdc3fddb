import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sandboxReportText } from '../sandbox/report-fixture.ts';
import { govmap } from './govmap-process.ts';

/**
 * `govmap sandbox report --url` against a server that answers whatever a test sets: a real
 * report prints, and anything that is not one (whatever its top-level fields look like) is one
 * line naming what is missing, exit 1, never a TypeError halfway through the printout.
 */

let answer = '';
let server: Server;
let url = '';
before(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

const realReport = (): string => sandboxReportText();

describe('govmap sandbox report', () => {
  test('a report from the sandbox prints, suspects included', async () => {
    answer = realReport();
    const r = await govmap('sandbox', 'report', '--url', url);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1 leak suspect\(s\):\n {2}IDLE {9}1 x "fx_rates_eod" \(1 keys\)/);
  });

  test('the GC trend names the window the service uses, also when it is not whole minutes', async () => {
    for (const [windowMs, shown] of [[30_000, '30-second'], [90_000, '90-second'], [2_000, '2-second'], [600_000, '10-minute']] as const) {
      const report = JSON.parse(realReport());
      report.gc = { observing: true, pauses: null, trend: { windowMs, recentPauseSeconds: 0.01, previousPauseSeconds: 0.01, recentPauseFraction: 0.001, ratio: 1, rising: false } };
      const kind = { count: 1, totalSeconds: 0.01, maxSeconds: 0.01, p50Seconds: 0.01, p99Seconds: 0.01 };
      report.gc.pauses = { minor: kind, major: kind, incremental: kind, weakcb: kind };
      answer = JSON.stringify(report);
      const r = await govmap('sandbox', 'report', '--url', url);
      assert.equal(r.code, 0, r.stderr);
      // Math.round(windowMs / 60 s) printed 30 s windows as "1-minute", 2 s as "0-minute".
      assert.match(r.stdout, new RegExp(`in the latest of two ${shown} windows`), r.stdout);
    }
  });

  const notReports: Array<[string, string, RegExp]> = [
    ['the reviewer\'s {"suspects":[],"instances":{}}', '{"suspects":[],"instances":{}}', /\(missing generatedAt, running, settings, sweeps, lastSweepAt, lastSweepMs, instances\.live, instances\.created, and \d+ more\)/],
    ['a suspect of an unknown kind', JSON.stringify({ ...JSON.parse(realReport()), suspects: [{ kind: 'LEAK' }] }), /\(suspects\.0\.kind: Invalid discriminator value\. Expected 'IDLE' \| 'SITE_GROWTH' \| 'KEY_GROWTH'\)/],
    ['gc without its pauses', JSON.stringify({ ...JSON.parse(realReport()), gc: { observing: true } }), /\(missing gc\.pauses, gc\.trend\)/],
    ['not JSON', '<html>', /not JSON: "<html>"/],
  ];
  for (const [name, body, missing] of notReports) {
    test(`${name}: one line naming what is missing, exit 1, no stack`, async () => {
      answer = body;
      const r = await govmap('sandbox', 'report', '--url', url);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^govmap sandbox report: cannot read http:\/\/127\.0\.0\.1:\d+\/sandbox\/report: the answer is not a govmap sandbox report \(/);
      assert.match(r.stderr, missing);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /TypeError|\n\s+at /);
      assert.equal(r.stdout, '');
    });
  }
});

test('a service that floods its answer is cut off at 64 MiB, one line, exit 1 (not read whole into memory)', async () => {
  // A body of 80 MiB, sent without a content-length so only counting can stop it.
  const flood = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(1 << 20, 0x20);
    let sent = 0;
    const more = (): void => {
      while (sent < 80 && res.write(chunk)) sent++;
      if (sent >= 80) res.end();
      else res.once('drain', more);
    };
    more();
  });
  await new Promise<void>((resolve) => flood.listen(0, '127.0.0.1', resolve));
  try {
    const r = await govmap('sandbox', 'report', '--url', `http://127.0.0.1:${(flood.address() as AddressInfo).port}`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^govmap sandbox report: cannot read .*: answered more than the 67108864 bytes read at most/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  } finally {
    flood.closeAllConnections();
    flood.close();
  }
});

test('a stopped sandbox says so, and --fail-on-suspects does not pass a gate on it (exit 1: nothing was judged)', async () => {
  answer = JSON.stringify({ ...JSON.parse(realReport()), running: false, suspects: [], suspectsNotListed: 0 });
  const shown = await govmap('sandbox', 'report', '--url', url);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /the sandbox is not running \(stopped\)/);
  const gate = await govmap('sandbox', 'report', '--url', url, '--fail-on-suspects');
  assert.equal(gate.code, 1, gate.stderr);
  assert.match(gate.stderr, /is not running \(stopped\): no map was judged, so no verdict/);
});

test('an option given twice (--url, --timeout, --auth-env) exits 2 naming it, before any request: which one was meant is not guessed', async () => {
  answer = realReport();
  for (const args of [
    ['--url', url, '--url', 'http://127.0.0.1:9/'],
    ['--url', url, '--timeout', '5', '--timeout', '7'],
    ['--url', url, '--auth-env', 'A', '--auth-env', 'B'],
  ]) {
    const flag = args[args.length - 2]!;
    const r = await govmap('sandbox', 'report', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${flag} is given more than once: give it once`));
    assert.equal(r.stdout, '');
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});

test('--url given as the report endpoint with a trailing slash reads that endpoint, not /sandbox/report/sandbox/report', async () => {
  const report = realReport();
  const strict = createServer((req, res) => {
    if (req.url !== '/sandbox/report') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`no route ${req.url}`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(report);
  });
  await new Promise<void>((resolve) => strict.listen(0, '127.0.0.1', resolve));
  try {
    const base = `http://127.0.0.1:${(strict.address() as AddressInfo).port}`;
    for (const given of [`${base}/sandbox/report/`, `${base}/sandbox/report`, `${base}/`]) {
      const r = await govmap('sandbox', 'report', '--url', given);
      assert.equal(r.code, 0, `${given}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^sandbox report of ${base}/sandbox/report\\n`));
    }
  } finally {
    strict.close();
  }
});

test('a service behind basic auth: --auth-file reads the report; without or with wrong credentials exit 4 naming the service; the password never printed', async () => {
  const report = realReport();
  const good = `Basic ${Buffer.from('ops:s3cret-pw-never-print').toString('base64')}`;
  const guarded = createServer((req, res) => {
    if (req.url === '/echo/sandbox/report') return void res.writeHead(502, { 'content-type': 'text/plain' }).end(`bad gateway for ${JSON.stringify(req.headers)}`);
    if (req.headers.authorization !== good) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="ops"' }).end(`who is ${req.headers.authorization ?? 'nobody'}?`);
    res.writeHead(200, { 'content-type': 'application/json' }).end(report);
  });
  await new Promise<void>((resolve) => guarded.listen(0, '127.0.0.1', resolve));
  const dir = mkdtempSync(join(tmpdir(), 'govmap-auth-'));
  try {
    const base = `http://127.0.0.1:${(guarded.address() as AddressInfo).port}`;
    const goodFile = join(dir, 'good');
    const wrongFile = join(dir, 'wrong');
    writeFileSync(goodFile, `${good}\r\n`);
    writeFileSync(wrongFile, `Basic ${Buffer.from('ops:s3cret-pw-never-print-old').toString('base64')}\n`);
    const secrets = new RegExp(`s3cret|${Buffer.from('ops:s3cret-pw-never-print').toString('base64').slice(0, 16)}`);
    for (const extra of [[], ['--json']]) {
      const r = await govmap('sandbox', 'report', '--url', base, '--auth-file', goodFile, ...extra);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, extra.length === 0 ? /1 leak suspect\(s\):/ : /"suspects": \[/);
      assert.doesNotMatch(r.stdout + r.stderr, secrets);
    }
    const none = await govmap('sandbox', 'report', '--url', base);
    assert.equal(none.code, 4, none.stderr);
    assert.equal(none.stderr, `govmap sandbox report: ${base}/sandbox/report: the service refused authentication (HTTP 401): it requires credentials and none were sent (give credentials with --auth-env <name> or --auth-file <file>)\n`);
    for (const extra of [[], ['--json'], ['--fail-on-suspects']]) {
      const wrong = await govmap('sandbox', 'report', '--url', base, '--auth-file', wrongFile, ...extra);
      assert.equal(wrong.code, 4, wrong.stderr);
      assert.match(wrong.stderr, /the service refused authentication \(HTTP 401\): the credentials sent were not accepted/);
      assert.equal(wrong.stdout, '');
      assert.doesNotMatch(wrong.stderr, secrets);
    }
    // A gateway error page echoing the request, and a connection refused: exit 1, nothing secret.
    const echo = await govmap('sandbox', 'report', '--url', `${base}/echo`, '--auth-file', goodFile);
    assert.equal(echo.code, 1, echo.stderr);
    assert.match(echo.stderr, /HTTP 502: bad gateway for .*"authorization":"Basic \*\*\*"/);
    assert.doesNotMatch(echo.stderr, secrets);
    guarded.close();
    const down = await govmap('sandbox', 'report', '--url', base, '--auth-file', goodFile);
    assert.equal(down.code, 1, down.stderr);
    assert.match(down.stderr, /cannot read .*ECONNREFUSED/);
    assert.doesNotMatch(down.stderr, secrets);
  } finally {
    guarded.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
