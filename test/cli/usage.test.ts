import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { govmapSync as govmap } from './govmap-process.ts';

/**
 * Every usage error of the CLI exits 2 with one clear line and no stack trace, whatever the
 * command, so a script can tell "called wrong" from "ran and failed" (1: `audit verify` found
 * tampering, `demo --load --exit` saw a 5xx). Help is not an error.
 */

const refused: Array<[string[], RegExp]> = [
  [['demo', '--port', 'abc'], /--port must be a whole number from 0 to 65535 \(got "abc"\)/],
  [['demo', '--accounts', '-5'], /--accounts must be a whole number from 1 to 1000000/],
  [['demo', '--gateway-failure-rate', '2'], /--gateway-failure-rate must be a number from 0 to 1/],
  [['demo', '--bogus'], /unknown option '--bogus'/],
  [['no-such-command'], /unknown command 'no-such-command'/],
  [['audit', 'verify'], /missing required argument 'path'/],
  [['scan', '--format', 'xml'], /Allowed choices are text, json, sarif/],
  [['scan', '--output', '/nonexistent/dir/r.txt'], /^govmap scan: cannot write --output \/nonexistent\/dir\/r\.txt: directory \/nonexistent\/dir does not exist$/m],
  // An unset variable (`--output "$REPORT"`): refused before the scan, not after minutes of it.
  [['scan', '--output', '', 'no-such-path'], /^govmap scan: cannot write --output : the path is empty \(""\)/m],
  [['demo', '--exit'], /^govmap demo: --exit needs --load/],
  [['demo', '--host', '999.1.1.1'], /^govmap demo: --host 999\.1\.1\.1: not an IPv4 address/],
  [['demo', '--audit-dir', ''], /^govmap demo: --audit-dir must be a directory path \(got ""\)/],
  [['advise', '--url', 'notaurl'], /^govmap advise: --url must be an http:\/\/ or https:\/\/ URL/],
  [['advise', '--url', 'ftp://x/metrics'], /^govmap advise: --url must be an http:\/\/ or https:\/\/ URL/],
  [['sandbox', 'report', '--url', 'ftp://x'], /^govmap sandbox report: --url must be an http\(s\) URL/],
  [['audit', 'verify', '/nonexistent/audit'], /^govmap audit verify: no such file or directory/],
  [[], /Usage: govmap/],
];
for (const [args, message] of refused) {
  test(`govmap ${args.join(' ') || '(no command)'}: exit 2, said on stderr, no stack trace`, () => {
    const r = govmap(...args);
    assert.equal(r.status, 2, `exit status\n${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
}

test('govmap --help and govmap demo --help: exit 0, usage on stdout', () => {
  for (const args of [['--help'], ['demo', '--help']]) {
    const r = govmap(...args);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: govmap/);
  }
});

test('govmap --version and -V: the version package.json names, exit 0', () => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = govmap(flag);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${version}\n`);
  }
});

test('a source URL with a user and password (Prometheus behind basic auth): exit 2 naming the rule, and the password is never echoed', () => {
  for (const args of [
    ['advise', '--prometheus', 'https://ops:s3cret-pw@prometheus.internal:9090'],
    ['advise', '--url', 'http://ops:s3cret-pw@127.0.0.1:1/metrics'],
    ['sandbox', 'report', '--url', 'http://ops:s3cret-pw@127.0.0.1:1'],
  ]) {
    const r = govmap(...args);
    assert.equal(r.status, 2, `${args.join(' ')}\n${r.stderr}`);
    assert.match(r.stderr, /--(prometheus|url) .*ops:\*\*\*@.*: a URL with a user or password is not supported/);
    assert.doesNotMatch(r.stderr + r.stdout, /s3cret-pw/);
  }
});

test('--auth-env / --auth-file that give no usable Authorization header: exit 2 naming the flag and the rule, before any request, the value never echoed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'govmap-auth-'));
  const secret = 'p4ss-never-print-me';
  process.env.GOVMAP_TEST_AUTH_EMPTY = '';
  process.env.GOVMAP_TEST_AUTH_RAW = `ops:${secret}`;
  process.env.GOVMAP_TEST_AUTH_SCHEME = `Token ${secret}`;
  process.env.GOVMAP_TEST_AUTH_BASIC = `Basic ${secret}`;
  delete process.env.GOVMAP_TEST_AUTH_UNSET;
  try {
    writeFileSync(join(dir, 'empty'), '\n');
    writeFileSync(join(dir, 'raw'), `${secret}\n`);
    const sources = [['advise', '--prometheus', 'http://127.0.0.1:1'], ['sandbox', 'report', '--url', 'http://127.0.0.1:1']];
    const cases: Array<[string[], RegExp]> = [
      [['--auth-env', 'GOVMAP_TEST_AUTH_UNSET'], /: --auth-env GOVMAP_TEST_AUTH_UNSET: environment variable GOVMAP_TEST_AUTH_UNSET is not set$/m],
      [['--auth-env', 'GOVMAP_TEST_AUTH_EMPTY'], /: --auth-env GOVMAP_TEST_AUTH_EMPTY: environment variable GOVMAP_TEST_AUTH_EMPTY is set but empty$/m],
      [['--auth-env', 'GOVMAP_TEST_AUTH_RAW'], /: --auth-env GOVMAP_TEST_AUTH_RAW: the value must be "Bearer <token>" or "Basic <base64 of user:password>"/],
      [['--auth-env', 'GOVMAP_TEST_AUTH_SCHEME'], /: --auth-env GOVMAP_TEST_AUTH_SCHEME: the value must be "Bearer <token>"/],
      [['--auth-env', 'GOVMAP_TEST_AUTH_BASIC'], /: --auth-env GOVMAP_TEST_AUTH_BASIC: the value must be "Basic " and the base64 of user:password/],
      [['--auth-file', join(dir, 'missing')], /: --auth-file .*missing: cannot read the file: ENOENT/],
      [['--auth-file', join(dir, 'empty')], /: --auth-file .*empty: the first line of the file is empty/],
      // Read whole, a device or a FIFO never ended: the command hung before any request.
      [['--auth-file', '/dev/zero'], /: --auth-file \/dev\/zero: cannot read the file: \/dev\/zero is not a regular file/],
      [['--auth-file', dir], /: --auth-file .*: cannot read the file: .* is not a regular file/],
      [['--auth-file', join(dir, 'raw')], /: --auth-file .*raw: the value must be "Bearer <token>"/],
      [['--auth-file', join(dir, 'raw'), '--auth-env', 'GOVMAP_TEST_AUTH_RAW'], /option '--auth-env <name>' cannot be used with option '--auth-file <file>'/],
    ];
    for (const source of sources) {
      for (const [flags, message] of cases) {
        const r = govmap(...source, ...flags);
        assert.equal(r.status, 2, `${[...source, ...flags].join(' ')}\n${r.stderr}`);
        assert.match(r.stderr, message);
        assert.doesNotMatch(r.stderr + r.stdout, new RegExp(secret));
        assert.doesNotMatch(r.stderr, /cannot reach|cannot read http|\n\s+at /);
      }
    }
  } finally {
    for (const name of ['EMPTY', 'RAW', 'SCHEME', 'BASIC']) delete process.env[`GOVMAP_TEST_AUTH_${name}`];
    rmSync(dir, { recursive: true, force: true });
  }
});
